"""MXNet's own files: the native checkpoint of a spec's nets, mx.nd.save of {'<net>.<key>': NDArray}
(.params), and the Gluon model zoo's pretrained ResNet parameters (.params, names in zoo.py).

Keys are what net.save_parameters() writes for each net ('1.gamma', '1.running_var'), prefixed
with the net, so one file holds G and D. The spec's 'weight'/'bias' of a BatchNorm are Gluon's
'gamma'/'beta' (layers.TENSOR_ALIASES).
"""

from __future__ import annotations

import os
from pathlib import Path

import mxnet as mx
import numpy as np

from ...common import shapes
from ...common.errors import GanparityError
from ...common.files import atomic_write
from ...common.readers import check_file
from ...common.spec.finetune import FinetuneSpec
from ...common.spec.model import ModelSpec
from . import zoo
from .build import _tensors
from .layers import TENSOR_ALIASES

SUFFIX = ".params"
PRETRAINED_SUFFIX = ".params"


def _native_names(name: str, model: ModelSpec) -> dict[str, str]:
    """Spec tensor name -> key in the native file ('G.1.weight' -> 'G.1.gamma')."""
    out = {}
    for full, layer in shapes.tensor_owners(model).items():
        prefix, short = full.rsplit(".", 1)
        out[full] = f"{prefix}.{TENSOR_ALIASES.get(type(layer), {}).get(short, short)}"
    return out


def save_native(path: str | os.PathLike, nets: dict[str, tuple[mx.gluon.Block, ModelSpec]]) -> Path:
    arrays = {}
    for name, (net, model) in nets.items():
        params, keys = _tensors(net, model), _native_names(name, model)
        arrays |= {keys[k]: p.data() for k, p in params.items()}
    return atomic_write(path, lambda tmp: mx.nd.save(tmp, arrays))


def read_file(path: str | os.PathLike) -> dict:
    """mx.nd.load of named NDArrays, or a GanparityError naming the file."""
    check_file(path, "MXNet file", f"an mx.nd.save file ({SUFFIX}) of named parameters")
    try:
        loaded = mx.nd.load(str(path))
    except Exception as e:  # noqa: BLE001 - any unreadable file is the user's bad input
        raise GanparityError(f"{str(path)!r} is not an MXNet .params file ({type(e).__name__}: {e})") from None
    if not isinstance(loaded, dict):
        raise GanparityError(f"{str(path)!r} holds an unnamed NDArray list, not named parameters")
    return loaded


def load_native(path: str | os.PathLike, models: dict[str, ModelSpec]) -> dict[str, np.ndarray]:
    loaded = read_file(path)
    out, unknown = {}, set(loaded)
    for name, model in models.items():
        for full, key in _native_names(name, model).items():
            if key in loaded:
                out[full] = loaded[key].asnumpy()
                unknown.discard(key)
    out |= {f"(unrecognised) {k}": loaded[k].asnumpy() for k in sorted(unknown)}
    return out


def load_pretrained(path: str | os.PathLike, spec: FinetuneSpec) -> dict[str, np.ndarray]:
    """vision.resnet34_v1().save_parameters(path) -> neutral backbone arrays (+ fc.* from output.*)."""
    loaded = read_file(path)
    return zoo.from_zoo({k: v.asnumpy() for k, v in loaded.items()}, spec, repr(str(path)))


def save_pretrained(path: str | os.PathLike, arrays: dict[str, np.ndarray], spec: FinetuneSpec) -> Path:
    nd = {k: mx.nd.array(v, dtype=v.dtype) for k, v in zoo.to_zoo(arrays, spec).items()}
    return atomic_write(path, lambda tmp: mx.nd.save(tmp, nd))
