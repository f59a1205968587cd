"""What compare_models takes besides the two models: the mapping file for pairs that cannot be
inferred, the input batch (drawn or given) and the loss targets, each checked in one line.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import GanparityError, choose
from ..usermodel import FRAMEWORKS, Inputs, parse_shape
from ..verdicts import nonfinite


@dataclass
class MappingFile:
    """What cannot be inferred: {"layers": {torch path: mxnet path}, "tensors": {torch name:
    mxnet name}, "ignore": {"torch": [names], "mxnet": [names]}} (all keys optional)."""

    layers: dict[str, str] = field(default_factory=dict)
    tensors: dict[str, str] = field(default_factory=dict)
    ignore: dict[str, list[str]] = field(default_factory=lambda: {"torch": [], "mxnet": []})
    source: str = ""


def load_mapping(mapping: str | os.PathLike | dict | None) -> MappingFile:
    if mapping is None:
        return MappingFile()
    source = "a dict"
    if not isinstance(mapping, dict):
        source = str(mapping)
        try:
            mapping = json.loads(Path(mapping).read_text())
        except OSError as e:
            raise GanparityError(f"mapping file {source!r}: {e.strerror or e}") from None
        except json.JSONDecodeError as e:
            raise GanparityError(f"mapping file {source!r}: not JSON ({e.msg}, line {e.lineno})") from None
    if not isinstance(mapping, dict):
        raise GanparityError(f"mapping {source!r}: expected a JSON object with layers / tensors / ignore")
    for key in mapping:
        choose(f"mapping {source!r} key", key, ("layers", "tensors", "ignore"))
    ignore = mapping.get("ignore", {})
    for key in ignore:
        choose(f"mapping {source!r} ignore key", key, FRAMEWORKS)
    for key in ("layers", "tensors"):
        if not isinstance(mapping.get(key, {}), dict):
            raise GanparityError(f"mapping {source!r}: {key!r} must map torch names to mxnet names")
    return MappingFile(dict(mapping.get("layers", {})), dict(mapping.get("tensors", {})),
                       {f: list(ignore.get(f, [])) for f in FRAMEWORKS}, source)


def draw_inputs(inputs: Any, seed: int) -> tuple[np.ndarray, str]:
    """A numpy batch and how it was made: a shape draws N(0, 1) in numpy (the same batch for both
    frameworks); an array is taken as given, and must be finite. A model of several inputs: a
    list of them (arrays or shapes), handed on as one Inputs."""
    if isinstance(inputs, Inputs) or isinstance(inputs, list) and inputs and not all(
            isinstance(s, int | np.integer) for s in inputs):
        drawn = [draw_inputs(a, seed + k) for k, a in enumerate(inputs)]
        return Inputs(x for x, _ in drawn), "; ".join(f"input {k}: {how}" for k, (_, how) in enumerate(drawn))
    if isinstance(inputs, str):
        inputs = parse_shape(inputs)
    if isinstance(inputs, tuple | list) and all(isinstance(s, int | np.integer) for s in inputs):
        shape = parse_shape(",".join(map(str, inputs)))
        return (np.random.default_rng(seed).standard_normal(shape).astype(np.float32),
                f"drawn N(0, 1) in numpy, seed {seed}")
    x = np.asarray(inputs)
    if x.ndim < 1 or x.size == 0 or not np.issubdtype(x.dtype, np.number):
        raise GanparityError(f"inputs: expected a numeric array with a batch axis or a shape, got {x.dtype} {x.shape}")
    bad = nonfinite(x.astype(np.float64))
    if bad:
        raise GanparityError(f"inputs: the input batch holds {bad}; compare needs finite inputs")
    return x.astype(np.float32), "given"


def targets(loss: str, outputs: list[np.ndarray], seed: int) -> list[np.ndarray] | None:
    """What the loss compares the outputs with, drawn in numpy: 'projection' one N(0, 1) tensor per
    output (the loss is sum(output * R)), 'mse' a N(0, 1) target, 'cross-entropy' class labels."""
    rng = np.random.default_rng(seed + 1)
    if loss in ("sum", "mean"):
        return None
    if loss == "projection":
        return [rng.standard_normal(o.shape).astype(np.float32) for o in outputs]
    if len(outputs) != 1:
        raise GanparityError(f"loss {loss!r} needs one output; the models return {len(outputs)}")
    out = outputs[0]
    if loss == "mse":
        return [rng.standard_normal(out.shape).astype(np.float32)]
    if out.ndim != 2:
        raise GanparityError(f"loss 'cross-entropy' needs (batch, classes) outputs; the models return {out.shape}")
    return [rng.integers(0, out.shape[1], out.shape[0]).astype(np.float32)]
