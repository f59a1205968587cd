"""Pretrained ResNet weights: the two frameworks' file layouts <-> the neutral names, pure numpy.

  torchvision resnet34 state_dict      Gluon model zoo resnet34_v1 save_parameters   neutral
  conv1.weight                         features.0.weight                             backbone.0.weight
  bn1.{weight,bias,running_*}          features.1.{gamma,beta,running_*}             backbone.1.*
  layer1.0.conv1.weight                features.4.0.body.0.weight                    backbone.4.0.body.0.weight
  layer1.0.bn1.*  / conv2 / bn2        features.4.0.body.1.* / .3 / .4               backbone.4.0.body.1.* ...
  layer2.0.downsample.0/1.*            features.5.0.downsample.0/1.*                 backbone.5.0.downsample.0/1.*
  fc.{weight,bias} (ImageNet, 1000)    output.{weight,bias}                          fc.*  (not part of the spec)
  bn*.num_batches_tracked              (none)                                        dropped; written as 0

Reading the files needs the framework (backends/<name>/resnet.py: load_pretrained/save_pretrained);
the renaming here does not. Every conversion is validated against the spec's tensor shapes.
"""

from __future__ import annotations

import math
import re

import numpy as np

from . import shapes
from .errors import GanparityError
from .spec.classifier import ClassifierSpec

EXTRA = ("fc.weight", "fc.bias")  # the ImageNet classifier a pretrained file carries along
_TV_BODY = {"0": "conv1", "1": "bn1", "3": "conv2", "4": "bn2"}
_TV_BODY_BACK = {v: k for k, v in _TV_BODY.items()}


def _bn_prefixes(names) -> set[str]:
    return {n.rsplit(".", 1)[0] for n in names if n.endswith(".running_mean")}


def torchvision_name(neutral: str) -> str:
    """'backbone.4.0.body.1.weight' -> 'layer1.0.bn1.weight'."""
    parts = neutral.split(".")
    if parts[0] == "fc":
        return neutral
    if parts[0] != "backbone":
        raise GanparityError(f"{neutral!r} is not a backbone tensor")
    if parts[1] in ("0", "1"):
        return ("conv1." if parts[1] == "0" else "bn1.") + ".".join(parts[2:])
    stage, block, kind, idx, rest = int(parts[1]) - 3, parts[2], parts[3], parts[4], ".".join(parts[5:])
    mid = _TV_BODY[idx] if kind == "body" else f"downsample.{idx}"
    return f"layer{stage}.{block}.{mid}.{rest}"


def neutral_from_torchvision_name(name: str) -> str:
    if name.startswith("fc."):
        return name
    if name.startswith("conv1."):
        return "backbone.0." + name[len("conv1."):]
    if name.startswith("bn1."):
        return "backbone.1." + name[len("bn1."):]
    m = re.fullmatch(r"layer(\d+)\.(\d+)\.(conv1|bn1|conv2|bn2|downsample\.\d)\.(\w+)", name)
    if not m:
        raise GanparityError(f"{name!r} is not a torchvision ResNet tensor name")
    stage, block, mid, rest = m.groups()
    mid = f"body.{_TV_BODY_BACK[mid]}" if not mid.startswith("downsample") else mid
    return f"backbone.{int(stage) + 3}.{block}.{mid}.{rest}"


def gluon_name(neutral: str, bn: set[str]) -> str:
    """'backbone.4.0.body.1.weight' -> 'features.4.0.body.1.gamma' (bn: the BatchNorm prefixes)."""
    if neutral.startswith("fc."):
        return "output." + neutral[3:]
    prefix, short = neutral.rsplit(".", 1)
    if prefix in bn:
        short = {"weight": "gamma", "bias": "beta"}.get(short, short)
    return "features." + prefix.split(".", 1)[1] + "." + short


def _expected(spec: ClassifierSpec) -> dict[str, tuple[int, ...]]:
    return shapes.tensor_shapes(spec.backbone)


def _check(out: dict[str, np.ndarray], spec: ClassifierSpec, what: str) -> dict[str, np.ndarray]:
    want = _expected(spec)
    problems = [f"missing {k} {want[k]}" for k in want if k not in out]
    problems += [f"extra {k}" for k in out if k not in want and k not in EXTRA]
    problems += [f"{k} has shape {tuple(out[k].shape)}, the spec needs {want[k]}"
                 for k in want if k in out and tuple(out[k].shape) != want[k]]
    if problems:
        shown = "; ".join(problems[:6]) + (f"; and {len(problems) - 6} more" if len(problems) > 6 else "")
        raise GanparityError(f"{what} does not fit {spec.name} {spec.params}: {shown}")
    return {k: np.asarray(out[k], np.float32) for k in [*want, *(e for e in EXTRA if e in out)]}


def from_torchvision(state: dict[str, np.ndarray], spec: ClassifierSpec, what: str = "state_dict") -> dict:
    """A torchvision resnet state_dict (as numpy) -> neutral backbone arrays (+ fc.* if present)."""
    out = {neutral_from_torchvision_name(k): v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    return _check(out, spec, what)


def to_torchvision(arrays: dict[str, np.ndarray], spec: ClassifierSpec) -> dict[str, np.ndarray]:
    """Neutral -> torchvision names, with num_batches_tracked = 0 so resnet34().load_state_dict works."""
    arrays = _check({k: v for k, v in arrays.items() if k.startswith("backbone.") or k in EXTRA}, spec, "weights")
    out = {}
    for k, v in arrays.items():
        out[torchvision_name(k)] = v
        if k.endswith(".running_var"):
            out[torchvision_name(k)[: -len("running_var")] + "num_batches_tracked"] = np.zeros((), np.int64)
    return out


def from_gluon(params: dict[str, np.ndarray], spec: ClassifierSpec, what: str = ".params") -> dict:
    """A Gluon model-zoo resnet_v1 save_parameters dict -> neutral backbone arrays (+ fc.*)."""
    bn = _bn_prefixes(_expected(spec))
    back = {gluon_name(k, bn): k for k in [*_expected(spec), *EXTRA]}
    unknown = [k for k in params if k not in back]
    out = {back[k]: v for k, v in params.items() if k in back}
    out |= {f"(unrecognised) {k}": params[k] for k in unknown}
    return _check(out, spec, what)


def to_gluon(arrays: dict[str, np.ndarray], spec: ClassifierSpec) -> dict[str, np.ndarray]:
    arrays = _check({k: v for k, v in arrays.items() if k.startswith("backbone.") or k in EXTRA}, spec, "weights")
    bn = _bn_prefixes(arrays)
    return {gluon_name(k, bn): v for k, v in arrays.items()}


def init_classifier(spec: ClassifierSpec, seed: int = 0) -> dict[str, np.ndarray]:
    """Fresh weights, drawn once in numpy: torchvision's ResNet init for the backbone (conv weight
    N(0, 2 / fan_out), BN gamma 1, beta 0, running mean 0, var 1) and torch.nn.Linear's default for
    the head (U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias)."""
    rng = np.random.default_rng(seed)
    out, bn = {}, _bn_prefixes(shapes.tensor_shapes(spec.backbone))
    for name, shape in shapes.tensor_shapes(spec.backbone).items():
        prefix, short = name.rsplit(".", 1)
        if prefix in bn:
            a = np.ones(shape) if short in ("weight", "running_var") else np.zeros(shape)
        else:
            a = rng.standard_normal(shape) * math.sqrt(2.0 / (shape[0] * math.prod(shape[2:])))
        out[name] = a.astype(np.float32)
    out |= init_head(spec, rng)
    return out


def init_head(spec: ClassifierSpec, rng: np.random.Generator) -> dict[str, np.ndarray]:
    out = {}
    tensors = shapes.tensor_shapes(spec.head)
    for name, shape in tensors.items():
        fan_in = tensors[name.rsplit(".", 1)[0] + ".weight"][1]
        bound = 1.0 / math.sqrt(fan_in)
        out[name] = rng.uniform(-bound, bound, shape).astype(np.float32)
    return out


def validate(arrays: dict[str, np.ndarray], spec: ClassifierSpec, what: str = "weights") -> dict[str, np.ndarray]:
    """All of backbone and head, nothing else, with the spec's shapes."""
    want = shapes.tensor_shapes(spec.backbone) | shapes.tensor_shapes(spec.head)
    problems = [f"missing {k}" for k in want if k not in arrays]
    problems += [f"extra {k}" for k in arrays if k not in want]
    problems += [f"{k} has shape {tuple(arrays[k].shape)}, needs {want[k]}"
                 for k in want if k in arrays and tuple(arrays[k].shape) != want[k]]
    if problems:
        raise GanparityError(f"{what} do not fit {spec.name} {spec.params}: " + "; ".join(problems[:6]))
    return {k: np.asarray(arrays[k], np.float32) for k in want}
