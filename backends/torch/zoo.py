"""torchvision's ResNet state-dict names <-> the neutral names: pure data and renaming, no torch
import (checkpoint.py reads and writes the files with it).

  torchvision resnet34 state_dict      neutral
  conv1.weight                         backbone.0.weight
  bn1.{weight,bias,running_*}          backbone.1.*
  layer1.0.conv1.weight                backbone.4.0.body.0.weight
  layer1.0.bn1.*  / conv2 / bn2        backbone.4.0.body.1.* / .3 / .4
  layer2.0.downsample.0/1.*            backbone.5.0.downsample.0/1.*
  fc.{weight,bias} (ImageNet, 1000)    fc.*  (not part of the spec: the head replaces it)
  bn*.num_batches_tracked              dropped on reading; written as 0
"""

from __future__ import annotations

import re

import numpy as np

from ...common.errors import GanparityError
from ...common.spec.finetune import IMAGENET_FC, FinetuneSpec
from ...common.weights import validate

_BODY = {"0": "conv1", "1": "bn1", "3": "conv2", "4": "bn2"}
_BODY_BACK = {v: k for k, v in _BODY.items()}


def zoo_name(neutral: str) -> str:
    """'backbone.4.0.body.1.weight' -> 'layer1.0.bn1.weight'."""
    parts = neutral.split(".")
    if parts[0] == "fc":
        return neutral
    if parts[0] != "backbone":
        raise GanparityError(f"{neutral!r} is not a backbone tensor")
    if parts[1] in ("0", "1"):
        return ("conv1." if parts[1] == "0" else "bn1.") + ".".join(parts[2:])
    stage, block, kind, idx, rest = int(parts[1]) - 3, parts[2], parts[3], parts[4], ".".join(parts[5:])
    mid = _BODY[idx] if kind == "body" else f"downsample.{idx}"
    return f"layer{stage}.{block}.{mid}.{rest}"


def neutral_name(name: str) -> str:
    """'layer1.0.bn1.weight' -> 'backbone.4.0.body.1.weight'; a name of no ResNet is kept, so that
    validation reports it as extra."""
    if name.startswith("fc."):
        return name
    if name.startswith("conv1."):
        return "backbone.0." + name[len("conv1."):]
    if name.startswith("bn1."):
        return "backbone.1." + name[len("bn1."):]
    m = re.fullmatch(r"layer(\d+)\.(\d+)\.(conv1|bn1|conv2|bn2|downsample\.\d)\.(\w+)", name)
    if not m:
        return f"(unrecognised) {name}"
    stage, block, mid, rest = m.groups()
    mid = f"body.{_BODY_BACK[mid]}" if not mid.startswith("downsample") else mid
    return f"backbone.{int(stage) + 3}.{block}.{mid}.{rest}"


def from_zoo(state: dict[str, np.ndarray], spec: FinetuneSpec, what: str = "state_dict") -> dict[str, np.ndarray]:
    """A torchvision resnet state_dict (as numpy) -> neutral backbone arrays (+ fc.* if present)."""
    out = {neutral_name(k): v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    return validate(out, spec, ("backbone",), what, allow=IMAGENET_FC)


def to_zoo(arrays: dict[str, np.ndarray], spec: FinetuneSpec) -> dict[str, np.ndarray]:
    """Neutral -> torchvision names, with num_batches_tracked = 0 so resnet34().load_state_dict works."""
    arrays = validate({k: v for k, v in arrays.items() if k.startswith("backbone.") or k in IMAGENET_FC},
                      spec, ("backbone",), allow=IMAGENET_FC)
    out = {}
    for k, v in arrays.items():
        out[zoo_name(k)] = v
        if k.endswith(".running_var"):
            out[zoo_name(k)[: -len("running_var")] + "num_batches_tracked"] = np.zeros((), np.int64)
    return out
