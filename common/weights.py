"""The neutral weight format: an ordered {name: float32 ndarray}, '.npz' on disk.

Names are '<net>.<layer index>.<tensor>' in spec order, e.g. 'G.0.weight', 'G.1.weight' (BatchNorm
gamma), 'G.1.bias' (beta), 'G.1.running_mean', 'G.1.running_var', 'D.0.weight'; containers nest
('backbone.4.0.body.1.weight'). Layouts are the frameworks' own, which agree: Linear/Dense
(out, in), Conv2d (out, in, k, k), ConvTranspose2d (in, out, k, k). Initial weights are drawn
here, once, in numpy: never rely on two frameworks' random streams agreeing.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from . import shapes
from .errors import GanparityError
from .files import atomic_write
from .readers import check_finite
from .spec.layers import BatchNorm
from .spec.model import InitScheme, ModelSpec

MAX_SHOWN = 6  # problems listed in a refusal before "and N more"


def _uniform_bound(tensors: dict[str, tuple[int, ...]], name: str) -> float:
    """1 / sqrt(fan_in) of the layer that owns `name` (torch.nn.Linear's default init)."""
    return 1.0 / math.sqrt(tensors[name.rsplit(".", 1)[0] + ".weight"][1])


def init_model(model: ModelSpec, scheme: InitScheme, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Draw one model's tensors from an init scheme, in spec order (see InitScheme)."""
    tensors, owners = shapes.tensor_shapes(model), shapes.tensor_owners(model)
    out = {}
    for name, shape in tensors.items():
        short = name.rsplit(".", 1)[1]
        if isinstance(owners[name], BatchNorm):
            if short == "weight" and scheme.bn_weight_std:
                a = 1.0 + scheme.bn_weight_std * rng.standard_normal(shape)
            else:
                a = np.ones(shape) if short in ("weight", "running_var") else np.zeros(shape)
        elif short == "weight" and scheme.weight == "normal":
            a = scheme.weight_std * rng.standard_normal(shape)
        elif short == "weight" and scheme.weight == "kaiming-fan-out":
            a = rng.standard_normal(shape) * math.sqrt(2.0 / (shape[0] * math.prod(shape[2:])))
        elif short == "weight" or scheme.bias == "torch-linear":
            bound = _uniform_bound(tensors, name)
            a = rng.uniform(-bound, bound, shape)
        else:  # bias
            a = np.zeros(shape)
        out[name] = a.astype(np.float32)
    return out


def init_arrays(spec, seed: int = 0) -> dict[str, np.ndarray]:
    """Initial weights of every net of a spec (G then D; backbone then head), from one numpy stream."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for net, model in spec.nets.items():
        out |= init_model(model, spec.inits[net], rng)
    return out


def split(arrays: dict[str, np.ndarray], net: str) -> dict[str, np.ndarray]:
    return {k: v for k, v in arrays.items() if k.split(".", 1)[0] == net}


def expected(spec, nets: tuple[str, ...] | None = None) -> dict[str, tuple[int, ...]]:
    out = {}
    for n in nets or tuple(spec.nets):
        out |= shapes.tensor_shapes(spec.nets[n])
    return out


def validate(arrays: dict[str, np.ndarray], spec, nets: tuple[str, ...] | None = None,
             what: str = "weights", allow: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """The arrays of `nets` (default: all of the spec's), in spec order as float32, or a
    GanparityError naming every missing, extra and mis-shaped tensor, or those holding NaN or inf
    (readers.check_finite; a float64 value beyond float32's range becomes inf here, and is
    refused). Names in `allow` may be there too (a pretrained file's ImageNet classifier) and are
    passed on."""
    want = expected(spec, nets)
    # mis-shaped first: a wrong width or --set shows there, before the layers it leaves missing
    problems = [f"{k} has shape {tuple(arrays[k].shape)}, spec {spec.name} needs {want[k]}"
                for k in want if k in arrays and tuple(arrays[k].shape) != want[k]]
    problems += [f"missing {k} {want[k]}" for k in want if k not in arrays]
    problems += [f"extra {k}" for k in arrays if k not in want and k not in allow]
    if problems:
        shown = "; ".join(problems[:MAX_SHOWN])
        more = f"; and {len(problems) - MAX_SHOWN} more" if len(problems) > MAX_SHOWN else ""
        raise GanparityError(f"{what} do not fit spec {spec.name} ({spec.params}): {shown}{more}")
    out = {k: np.asarray(arrays[k], np.float32) for k in [*want, *(k for k in allow if k in arrays)]}
    return check_finite(out, what)


def save(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> Path:
    """Write .npz atomically."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    return atomic_write(path, write)


def load(path: str | os.PathLike) -> dict[str, np.ndarray]:
    path = Path(path)
    if not path.is_file():
        raise GanparityError(f"weights file {str(path)!r} does not exist")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (ValueError, OSError) as e:
        raise GanparityError(f"{str(path)!r} is not a readable .npz file ({e})") from None
