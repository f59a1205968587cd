"""Hints: what can explain a difference at a layer pair, read from both layers' configurations
(common/differences.py holds the framework defaults and semantics; CONFIG_HINTS the layer
settings a port can get wrong). Parameter-free layers are described by what they compute, in
neutral words (the backends' walks read an unknown block's ops: a Gluon block by its symbol, a
torch module by torch.fx), so a ReLU6 ported as ReLU, a hard-sigmoid's slope, GELU's tanh
approximation, a pooling's ceil_mode or a resize's align_corners is named at that very layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..differences import BY_KEY

if TYPE_CHECKING:
    from .pairing import Pair, WalkedLayer

ACTIVATIONS = frozenset({"relu", "clip", "leakyrelu", "elu", "selu", "gelu", "silu", "hardsigmoid", "hardswish",
                         "sigmoid", "tanh", "softplus", "softsign", "prelu", "identity"})
NORMS = frozenset({"batchnorm", "instancenorm", "layernorm", "groupnorm"})
POOLS = frozenset({"maxpool", "avgpool", "globalmaxpool", "globalavgpool", "adaptivemaxpool", "adaptiveavgpool"})


@dataclass
class Hint:
    key: str  # a common/differences.py key, or a layer-configuration key (CONFIG_HINTS)
    layer: str  # the torch layer's path
    text: str
    affects: frozenset[str]  # which checks it can explain: train, eval, grad, stats

    def line(self) -> str:
        return f"[{self.key}] {self.text}"


# Layer-configuration differences that common/differences.py (framework defaults and semantics)
# does not list, with the checks they can explain.
CONFIG_HINTS = {
    "bn-eps": "BatchNorm eps: both frameworks default to 1e-5, so a port that drops a non-default eps changes "
              "the normalisation (torch eps=, gluon epsilon=)",
    "bn-affine": "BatchNorm affine: torch affine=False has no weight/bias; gluon scale=False / center=False fixes them",
    "convtranspose-padding": "ConvTranspose padding: out = (in - 1) * stride - 2 * padding + kernel + output_padding "
                             "in both; Gluon spells output_padding as Conv2DTranspose(output_padding=) ('adj')",
    "conv-config": "Convolution configuration (channels, kernel, stride, padding, dilation, groups, bias)",
    "linear-config": "Linear / Dense configuration (in_features / in_units, out_features / units, bias)",
    "pool-ceil-mode": "Pooling ceil_mode: torch ceil_mode=True is Gluon ceil_mode=True (pooling_convention='full'); "
                      "both default to floor",
    "pool-count-include-pad": "Average pooling count_include_pad: both default to True; torch's "
                              "AvgPool2d(count_include_pad=False) needs Gluon AvgPool2D(count_include_pad=False)",
    "pool-config": "Pooling window (kernel, stride, padding); Gluon's stride defaults to the kernel size, as torch's",
    "activation": "Activation: both layers are parameter-free, so only their kind and constants can differ "
                  "(ReLU6 is clip(0, 6): torch nn.ReLU6; hard-sigmoid is clip(alpha x + beta, 0, 1): torch's "
                  "Hardsigmoid has alpha 1/6, MXNet's hard_sigmoid 0.2; GELU: MXNet's is the erf form, torch "
                  "nn.GELU(approximate='tanh') the tanh approximation; Swish's beta)",
    "norm-kind": "Normalisation kind: BatchNorm normalises over the batch and keeps running statistics, "
                 "InstanceNorm over each sample's spatial axes, LayerNorm over the last axes, GroupNorm over groups",
    "pool-kind": "Pooling kind or window (max vs average, global vs windowed)",
    "layer-kind": "The two layers compute different things (their kinds differ)",
    "dropout": "Dropout: each framework draws its own masks; compare sets every nn.Dropout / gluon Dropout to rate 0 "
               "in train-mode checks (a functional dropout inside a custom forward it cannot reach)",
    "upsample": "Upsampling: torch nn.Upsample(mode='bilinear') defaults to align_corners=False "
                "(UpsamplingBilinear2d: True); mx.nd.contrib.BilinearResize2D defaults to align_corners=True, "
                "and UpSampling(sample_type='bilinear') is a fixed-weight deconvolution",
    "norm-eps": "Normalisation eps (LayerNorm / GroupNorm / InstanceNorm)",
    "trainable": "Trainable flags: torch requires_grad against Gluon grad_req ('null' is frozen)",
    "optimizer": "The gradients agree and the update does not: the optimizer settings or their translation "
                 "(adam-eps, adam-betas, sgd-momentum, weight decay)",
    "combination": "Every paired layer agrees and the output does not: the models combine the layers differently "
                   "(the order of a concatenation or a residual sum, or a functional op between layers)",
    "unexplained": "No configuration difference found at this layer: it computes differently (a custom forward, "
                   "a functional op inside it), or its input is put together differently from the layers before "
                   "it (a concatenation's order, a residual sum, a functional op between layers, or two branches "
                   "that auto-pairing crossed: pair them with a mapping file)",
    "bn-eval-backward": "BatchNorm gradients in eval mode: Gluon back-propagates the batch-statistics formula "
                        "unless backward is told the mode: loss.backward(train_mode=False) (compare does so), "
                        "or BatchNorm(use_global_stats=True); PyTorch's eval() gradient is the running-statistics "
                        "one (apache/mxnet#9580)",
}
_NUMBERS = frozenset({"train", "eval", "grad"})


def _fmt(v) -> str:
    return repr(v) if not isinstance(v, float) else f"{v:g}"


def _flat(shape: tuple) -> tuple:
    return (shape[0], int(np.prod(shape[1:]))) if shape and len(shape) > 2 else shape


def _differ(t: WalkedLayer, m: WalkedLayer, key: str) -> bool:
    a, b = t.config.get(key), m.config.get(key)
    if isinstance(a, float) and isinstance(b, float):
        return not math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-12)
    return a != b and key in t.config and key in m.config


def config_hints(t: WalkedLayer, m: WalkedLayer) -> list[Hint]:
    """Both layers' configurations read for the known differences; one Hint per difference."""
    out: list[Hint] = []
    add = lambda key, text, affects: out.append(Hint(key, t.path, text, frozenset(affects)))
    tc, mc = t.config, m.config
    if t.kind == m.kind == "batchnorm":
        if tc.get("momentum") is None:
            add("bn-momentum", "torch momentum=None (a cumulative average) has no Gluon equivalent", {"stats"})
        elif _differ(t, m, "momentum"):
            known = BY_KEY["bn-momentum"]
            add("bn-momentum", f"torch momentum={_fmt(tc['momentum'])} is Gluon momentum="
                f"{_fmt(round(1 - tc['momentum'], 12))}; the mxnet BatchNorm has "
                f"momentum={_fmt(mc['momentum_native'])} (= torch {_fmt(mc['momentum'])}). "
                f"{known.torch}; Gluon: {known.gluon}", {"stats"})
        if _differ(t, m, "eps"):
            add("bn-eps", f"torch eps={_fmt(tc['eps'])}, mxnet epsilon={_fmt(mc['eps'])}: both default to 1e-5, "
                "so one side dropped (or mistyped) a non-default eps", _NUMBERS)
        if _differ(t, m, "affine"):
            add("bn-affine", f"torch affine={tc['affine']}, mxnet scale/center={mc['affine']}", _NUMBERS)
        if tc.get("batch_stats_always") or mc.get("global_stats"):
            which = ("torch track_running_stats=False: batch statistics in eval() too" if tc.get("batch_stats_always")
                     else "mxnet use_global_stats=True: running statistics even inside autograd.record()")
            add("train-eval", f"{which}. torch: {BY_KEY['train-eval'].torch}; Gluon: {BY_KEY['train-eval'].gluon}",
                _NUMBERS | {"stats"})
    if t.kind == m.kind == "leakyrelu" and _differ(t, m, "slope"):
        add("leaky-slope", f"torch negative_slope={_fmt(tc['slope'])}, mxnet alpha={_fmt(mc['slope'])}: "
            f"{BY_KEY['leaky-slope'].torch}; {BY_KEY['leaky-slope'].gluon}", _NUMBERS)
    if t.kind == m.kind == "linear" and t.in_shape and m.in_shape:
        # Flattening explains a difference when both see the same batch and only one flattens it, or
        # when torch flattened before its Linear and Gluon's Dense(flatten=False) did not.
        same = t.in_shape == m.in_shape and len(t.in_shape) > 2 and mc.get("flatten")
        unflat = not mc.get("flatten") and len(m.in_shape) > 2 and _flat(m.in_shape) == t.in_shape
        if same or unflat:
            how = (f"Dense(flatten=True) flattens its {m.in_shape} input to {_flat(m.in_shape)}" if same
                   else f"Dense(flatten=False) acts on the last axis of {m.in_shape}")
            fix = ("add nn.Flatten() before the nn.Linear, or give Dense flatten=False" if same
                   else "give Dense flatten=True (its default)")
            add("dense-flatten", f"mxnet {how}; torch nn.Linear acts on the last axis of {t.in_shape}: {fix}. "
                f"{BY_KEY['dense-flatten'].gluon}", _NUMBERS)
        other = [k for k in ("in_features", "out_features", "bias") if _differ(t, m, k)]
        if other and not same:
            add("linear-config", ", ".join(f"{k}: torch {tc[k]}, mxnet {mc[k]}" for k in other), _NUMBERS)
    if t.kind == m.kind and t.kind in ("conv", "convtranspose"):
        keys = [k for k in ("padding", "output_padding") if _differ(t, m, k)] if t.kind == "convtranspose" else []
        if keys:
            spell = {"padding": "padding", "output_padding": "output_padding (adj)"}
            add("convtranspose-padding", ", ".join(f"torch {k}={tc[k]}, mxnet {spell[k]}={mc[k]}" for k in keys)
                + f": {CONFIG_HINTS['convtranspose-padding']}", _NUMBERS)
        other = [k for k in ("in_channels", "out_channels", "kernel", "stride", "dilation", "groups", "bias",
                             "padding_mode")
                 + (("padding",) if t.kind == "conv" else ()) if _differ(t, m, k)]
        if other:
            add("conv-config", ", ".join(f"{k}: torch {tc[k]}, mxnet {mc[k]}" for k in other), _NUMBERS)
    if t.kind == m.kind and t.kind in ("maxpool", "avgpool"):
        if _differ(t, m, "ceil_mode"):
            add("pool-ceil-mode", f"torch ceil_mode={tc['ceil_mode']}, mxnet ceil_mode={mc['ceil_mode']}: "
                f"{CONFIG_HINTS['pool-ceil-mode']}", _NUMBERS)
        if _differ(t, m, "count_include_pad"):
            add("pool-count-include-pad", f"torch count_include_pad={tc['count_include_pad']}, mxnet "
                f"{mc['count_include_pad']}: {CONFIG_HINTS['pool-count-include-pad']}", _NUMBERS)
        other = [k for k in ("kernel", "stride", "padding") if _differ(t, m, k)]
        if other:
            add("pool-config", ", ".join(f"{k}: torch {tc[k]}, mxnet {mc[k]}" for k in other), _NUMBERS)
    if t.kind == m.kind == "dropout" and _differ(t, m, "rate"):
        add("dropout", f"torch p={_fmt(tc['rate'])}, mxnet rate={_fmt(mc['rate'])}: {CONFIG_HINTS['dropout']}",
            {"train", "grad"})
    if t.kind == m.kind == "upsample":
        diffs = [k for k in ("mode", "scale", "align_corners") if k in tc and k in mc and _differ(t, m, k)]
        if diffs:
            add("upsample", ", ".join(f"{k}: torch {tc[k]}, mxnet {mc[k]}" for k in diffs)
                + f": {CONFIG_HINTS['upsample']}", _NUMBERS)
    if t.kind == m.kind and t.kind in ("layernorm", "groupnorm", "instancenorm"):
        diffs = [k for k in ("eps", "groups", "affine") if _differ(t, m, k)]
        if diffs:
            add("norm-eps", ", ".join(f"{k}: torch {tc[k]}, mxnet {mc[k]}" for k in diffs), _NUMBERS)
    if t.kind != m.kind or t.kind in ACTIVATIONS:
        out += _kind_hints(t, m)
    frozen = [r for r in t.trainable if r in m.trainable and t.trainable[r] != m.trainable[r]]
    if frozen:
        add("trainable", ", ".join(f"{r}: torch {'trainable' if t.trainable[r] else 'frozen'}, mxnet "
                                   f"{'trainable' if m.trainable[r] else 'frozen'}" for r in frozen), {"grad", "stats"})
    return out


def kind_hints(pair: Pair, category: str, info: dict) -> list[Hint]:
    """What can make two equally configured layers of this kind differ in this check."""
    t = pair.torch
    if t is None:
        return []
    mk = lambda key, text: [Hint(key, t.path, text, frozenset({category}))]
    if t.kind == "batchnorm" and category == "stats":
        return mk("bn-stats", f"{BY_KEY['bn-stats'].torch}; Gluon: {BY_KEY['bn-stats'].gluon}. compare corrects "
                  f"Gluon's biased variance ({info['mxnet']['bn_stats']}) before comparing")
    if t.kind == "batchnorm" and category == "train":
        return mk("train-eval", f"torch: {BY_KEY['train-eval'].torch}; Gluon: {BY_KEY['train-eval'].gluon}")
    if t.kind == "batchnorm" and category == "grad" and info.get("mode") == "eval":
        return mk("bn-eval-backward", CONFIG_HINTS["bn-eval-backward"])
    if t.kind == "dropout":
        return mk("dropout", CONFIG_HINTS["dropout"])
    if t.kind == "upsample":
        return mk("upsample", CONFIG_HINTS["upsample"])
    if t.kind in ("maxpool", "avgpool"):
        return mk("pool-ceil-mode", CONFIG_HINTS["pool-ceil-mode"])
    return mk("unexplained", CONFIG_HINTS["unexplained"])



def describe(layer: WalkedLayer) -> str:
    """A parameter-free layer in neutral words: 'clip(0, 6) (ReLU6)', 'gelu(approximate=tanh)'."""
    c, k = layer.config, layer.kind
    if k == "clip":
        lo, hi = c.get("lo"), c.get("hi")
        name = " (ReLU6)" if (lo, hi) == (0.0, 6.0) else ""
        return f"clip({_fmt(lo)}, {_fmt(hi)}){name}"
    if k == "ops":
        return f"ops {' -> '.join(c.get('ops', [])) or '?'}"
    shown = {key: v for key, v in c.items() if key not in ("act_type", "momentum_native")}
    return k + (f"({', '.join(f'{key}={_fmt(v)}' for key, v in shown.items())})" if shown else "")


def _kind_hints(t: WalkedLayer, m: WalkedLayer) -> list[Hint]:
    """Two layers of different kinds, or two activations with other constants: which difference."""
    pair = f"torch {t.type} computes {describe(t)}, mxnet {m.type} computes {describe(m)}"
    act = lambda layer: layer.kind in ACTIVATIONS or (layer.kind == "ops" and not layer.tensors)
    if act(t) and act(m):
        if t.kind == m.kind == "leakyrelu":
            return []  # 'leaky-slope' (config_hints) says it with the frameworks' defaults
        if t.kind == m.kind and not any(_differ(t, m, key) for key in set(t.config) | set(m.config)
                                        if key not in ("act_type",)):
            return []
        return [Hint("activation", t.path, f"{pair}: {CONFIG_HINTS['activation']}", _NUMBERS)]
    if t.kind in NORMS and m.kind in NORMS:
        return [Hint("norm-kind", t.path, f"{pair}: {CONFIG_HINTS['norm-kind']}", _NUMBERS | {"stats"})]
    if t.kind in POOLS and m.kind in POOLS:
        return [Hint("pool-kind", t.path, f"{pair}: {CONFIG_HINTS['pool-kind']}", _NUMBERS)]
    if t.kind == m.kind:
        return []
    return [Hint("layer-kind", t.path, pair, _NUMBERS)]
