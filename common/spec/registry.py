"""One registry of every spec (the GANs and the fine-tune): name -> factory, source and kind.
get_spec builds a spec from its width knobs and validates the whole stack before any framework
is touched."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from .. import shapes
from ..errors import GanparityError, choose
from . import finetune, gans
from .finetune import FinetuneSpec
from .model import GANSpec

Spec = GANSpec | FinetuneSpec


@dataclass(frozen=True)
class Entry:
    name: str
    kind: Literal["gan", "finetune"]
    factory: Callable[..., Spec]
    source: str
    summary: str

    def knobs(self) -> dict[str, object]:
        """The factory's keyword parameters and their defaults (the spec's width knobs)."""
        return {p.name: p.default for p in inspect.signature(self.factory).parameters.values()}


REGISTRY: dict[str, Entry] = {
    e.name: e
    for e in (
        Entry("gan-gaussian", "gan", gans.gan_gaussian, "003 (and 000)",
              "G Linear(2,2); D 2-5-3-1 Tanh/Sigmoid; Adam lr_D 0.05, lr_G 0.005; batch 8"),
        Entry("dcgan", "gan", gans.dcgan, "001, 004",
              "Radford G/D; BCE on probabilities; Adam 2e-4, beta1 0.5; batch 128"),
        Entry("dcgan-d2l", "gan", gans.dcgan_d2l, "000",
              "G_block/D_block, BatchNorm2d(c, 0.8) = eps 0.8, BN on every D block; lr 0.005; batch 256"),
        Entry("dcgan-gluon", "gan", gans.dcgan_gluon, "002",
              "D ends in a logit; SigmoidBinaryCrossEntropyLoss; Normal(0.02) on weights only; batch 64"),
        Entry("resnet34-finetune", "finetune", finetune.resnet34_finetune, "000",
              "frozen ResNet-34 v1 + Linear(512,256)-ReLU-Linear(256,120); SGD 0.03, momentum 0.9, "
              "wd 1e-4, lr x0.1 every 10 epochs; 20 epochs; batch 128"),
    )
}


def names(kind: str | None = None) -> tuple[str, ...]:
    """Every registered spec name, or those of one kind ('gan', 'finetune')."""
    return tuple(n for n, e in REGISTRY.items() if kind is None or e.kind == kind)


KIND_LABELS = {"gan": "GAN spec", "finetune": "fine-tune spec"}
GAN_SPECS = names("gan")
FINETUNE_SPECS = names("finetune")


def _check_gan(spec: GANSpec) -> None:
    """Both stacks infer, G's output is D's input, and D gives one score per sample."""
    g_out = shapes.output_of(spec.G)  # raises naming the layer that cannot take its input
    d_out = shapes.output_of(spec.D)
    if tuple(spec.G.input_shape) != tuple(spec.latent_shape):
        raise GanparityError(f"{spec.name}: latent shape {spec.latent_shape} != G input {spec.G.input_shape}")
    if g_out != tuple(spec.D.input_shape):
        last = len(spec.G.layers) - 1
        raise GanparityError(
            f"{spec.name}: G's last layer G.{last} outputs {g_out} but D takes {tuple(spec.D.input_shape)}")
    if math.prod(d_out) != 1:
        raise GanparityError(f"{spec.name}: D must give one score per sample, its output is {d_out}")


def _check_finetune(spec: FinetuneSpec) -> None:
    """The backbone infers and feeds the head, and the head gives num_classes logits."""
    feats = shapes.output_of(spec.backbone)
    if feats != tuple(spec.head.input_shape):
        raise GanparityError(f"{spec.name}: backbone outputs {feats} but the head takes {spec.head.input_shape}")
    out = shapes.output_of(spec.head)
    if out != (spec.num_classes,):
        raise GanparityError(f"{spec.name}: head outputs {out}, expected ({spec.num_classes},)")


def check(spec: Spec) -> Spec:
    (_check_gan if isinstance(spec, GANSpec) else _check_finetune)(spec)
    return spec


def get_spec(name: str, kind: str | None = None, **knobs) -> Spec:
    """Build a registered spec with its defaults, overridden by knobs (e.g. ngf=8 for tests).
    kind='gan' or 'finetune' refuses a spec of the other kind, listing the valid names."""
    entry = REGISTRY[choose(KIND_LABELS.get(kind, "spec"), name, names(kind))]
    valid = entry.knobs()
    for k in knobs:
        choose(f"knob for {name}", k, valid)
    return check(entry.factory(**knobs))


STR_KNOBS = ("semantics",)  # every other knob is an integer


def parse_knobs(pairs: list[str] | None) -> dict[str, int | str]:
    """['ngf=16', 'semantics=mxnet'] -> {'ngf': 16, 'semantics': 'mxnet'}; the spec's factory
    then checks each value (a bad one is refused naming it and the valid choices)."""
    out: dict[str, int | str] = {}
    for pair in pairs or ():
        key, sep, value = (s.strip() for s in pair.partition("="))
        if not sep:
            raise GanparityError(f"--set takes KEY=VALUE, got {pair!r}")
        if key in STR_KNOBS:
            out[key] = value
            continue
        try:
            out[key] = int(value)
        except ValueError:
            raise GanparityError(f"--set {key}: {value!r} is not an integer") from None
    return out
