"""The neutral weight format: an ordered {name: float32 ndarray}, '.npz' on disk.

Names are '<net>.<layer index>.<tensor>' in spec order, e.g. 'G.0.weight', 'G.1.weight' (BatchNorm
gamma), 'G.1.bias' (beta), 'G.1.running_mean', 'G.1.running_var', 'D.0.weight'. Layouts are the
frameworks' own, which agree: Linear/Dense (out, in), Conv2d (out, in, k, k), ConvTranspose2d
(in, out, k, k). Initial weights are drawn here, once, in numpy: never rely on two frameworks'
random streams agreeing.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from . import shapes
from .errors import GanparityError
from .spec.layers import BatchNorm
from .spec.model import GANSpec, InitScheme, ModelSpec


def init_model(model: ModelSpec, scheme: InitScheme, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Draw one model's tensors from an init scheme, in spec order."""
    out = {}
    for info in shapes.infer(model):
        is_bn = isinstance(info.layer, BatchNorm)
        for name, shape in info.tensors.items():
            short = name.rsplit(".", 1)[1]
            if short == "weight" and is_bn:
                a = 1.0 + scheme.bn_weight_std * rng.standard_normal(shape) if scheme.bn_weight_std else np.ones(shape)
            elif short == "weight":
                a = scheme.weight_std * rng.standard_normal(shape)
            elif short == "running_var":
                a = np.ones(shape)
            else:  # bias, BatchNorm beta, running_mean
                a = np.zeros(shape)
            out[name] = a.astype(np.float32)
    return out


def init_arrays(spec: GANSpec, seed: int = 0) -> dict[str, np.ndarray]:
    """Initial G and D weights of a GAN spec, G first, from one numpy stream."""
    rng = np.random.default_rng(seed)
    return init_model(spec.G, spec.init, rng) | init_model(spec.D, spec.init, rng)


def split(arrays: dict[str, np.ndarray], net: str) -> dict[str, np.ndarray]:
    return {k: v for k, v in arrays.items() if k.split(".", 1)[0] == net}


def expected(spec: GANSpec, nets: tuple[str, ...] = ("G", "D")) -> dict[str, tuple[int, ...]]:
    out = {}
    for n in nets:
        out |= shapes.tensor_shapes(spec.nets[n])
    return out


def validate(arrays: dict[str, np.ndarray], spec: GANSpec, nets: tuple[str, ...] = ("G", "D"),
             what: str = "weights") -> dict[str, np.ndarray]:
    """Refuse missing, extra or mis-shaped tensors, naming every offender."""
    want = expected(spec, nets)
    problems = [f"missing {k} {want[k]}" for k in want if k not in arrays]
    problems += [f"extra {k}" for k in arrays if k not in want]
    problems += [f"{k} has shape {tuple(arrays[k].shape)}, spec {spec.name} needs {want[k]}"
                 for k in want if k in arrays and tuple(arrays[k].shape) != want[k]]
    if problems:
        raise GanparityError(f"{what} do not fit spec {spec.name} ({spec.params}): " + "; ".join(problems))
    return {k: np.asarray(arrays[k], np.float32) for k in want}


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call write(tmp_path) on a temp file beside `path`, then rename it into place: a crash or
    Ctrl-C never leaves half a file where a good one was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


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
