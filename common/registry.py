"""Spec name -> factory, each naming its source seed. get_spec validates the whole stack."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass

from . import shapes
from .errors import GanparityError, choose
from .spec import classifier, gans
from .spec.classifier import ClassifierSpec
from .spec.model import GANSpec


@dataclass(frozen=True)
class Entry:
    name: str
    factory: Callable[..., GANSpec]
    source: str
    summary: str

    def knobs(self) -> dict[str, object]:
        """The factory's keyword parameters and their defaults (the spec's width knobs)."""
        return {p.name: p.default for p in inspect.signature(self.factory).parameters.values()}


REGISTRY: dict[str, Entry] = {
    e.name: e
    for e in (
        Entry("gan-gaussian", gans.gan_gaussian, "003 (and 000)",
              "G Linear(2,2); D 2-5-3-1 Tanh/Sigmoid; Adam lr_D 0.05, lr_G 0.005; batch 8"),
        Entry("dcgan", gans.dcgan, "001, 004",
              "Radford G/D; BCE on probabilities; Adam 2e-4, beta1 0.5; batch 128"),
        Entry("dcgan-d2l", gans.dcgan_d2l, "000",
              "G_block/D_block, BatchNorm2d(c, 0.8) = eps 0.8, BN on every D block; lr 0.005; batch 256"),
        Entry("dcgan-gluon", gans.dcgan_gluon, "002",
              "D ends in a logit; SigmoidBinaryCrossEntropyLoss; Normal(0.02) on weights only; batch 64"),
    )
}
GAN_SPECS = tuple(REGISTRY)


def check_gan(spec: GANSpec) -> GANSpec:
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
    return spec


def get_spec(name: str, **knobs) -> GANSpec:
    """Build a registered spec with its defaults, overridden by knobs (e.g. ngf=8 for tests)."""
    entry = REGISTRY[choose("spec", name, REGISTRY)]
    valid = entry.knobs()
    for k in knobs:
        choose(f"knob for {name}", k, valid)
    return check_gan(entry.factory(**knobs))


def parse_knobs(pairs: list[str] | None) -> dict[str, int]:
    """['ngf=16', 'image_size=32'] -> {'ngf': 16, 'image_size': 32} (every knob is an integer)."""
    out = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep:
            raise GanparityError(f"--set takes KEY=VALUE, got {pair!r}")
        try:
            out[key.strip()] = int(value)
        except ValueError:
            raise GanparityError(f"--set {key}: {value!r} is not an integer") from None
    return out


# -- supervised fine-tuning specs (seed 000's dog-breed task); kept apart from the GAN registry --


@dataclass(frozen=True)
class ClassifierEntry:
    name: str
    factory: Callable[..., ClassifierSpec]
    source: str
    summary: str

    def knobs(self) -> dict[str, object]:
        return {p.name: p.default for p in inspect.signature(self.factory).parameters.values()}


CLASSIFIER_REGISTRY: dict[str, ClassifierEntry] = {
    e.name: e
    for e in (
        ClassifierEntry("resnet34-finetune", classifier.resnet34_finetune, "000",
                        "frozen ResNet-34 v1 + Linear(512,256)-ReLU-Linear(256,120); SGD 0.03, momentum 0.9, "
                        "wd 1e-4, lr x0.1 every 10 epochs; 20 epochs; batch 128"),
    )
}
CLASSIFIER_SPECS = tuple(CLASSIFIER_REGISTRY)


def check_classifier(spec: ClassifierSpec) -> ClassifierSpec:
    """The backbone infers and feeds the head, and the head gives num_classes logits."""
    feats = shapes.output_of(spec.backbone)
    if feats != tuple(spec.head.input_shape):
        raise GanparityError(f"{spec.name}: backbone outputs {feats} but the head takes {spec.head.input_shape}")
    out = shapes.output_of(spec.head)
    if out != (spec.num_classes,):
        raise GanparityError(f"{spec.name}: head outputs {out}, expected ({spec.num_classes},)")
    return spec


def get_classifier(name: str, **knobs) -> ClassifierSpec:
    """Build a registered classifier spec, e.g. get_classifier('resnet34-finetune', width=8, blocks=1)."""
    entry = CLASSIFIER_REGISTRY[choose("classifier spec", name, CLASSIFIER_REGISTRY)]
    valid = entry.knobs()
    for k in knobs:
        choose(f"knob for {name}", k, valid)
    return check_classifier(entry.factory(**knobs))
