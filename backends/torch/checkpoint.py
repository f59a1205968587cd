"""PyTorch's own files: the native checkpoint of a spec's nets, torch.save({'G': state_dict,
'D': state_dict}) (.pt), and torchvision's pretrained ResNet state dicts (.pth, names in zoo.py).

State-dict keys are the spec's tensor names without the net prefix ('1.running_var'), so the
neutral name is '<net>.<key>'. num_batches_tracked is PyTorch bookkeeping with no Gluon twin.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ...common.errors import GanparityError
from ...common.files import atomic_write
from ...common.readers import check_file
from ...common.spec.finetune import FinetuneSpec
from ...common.spec.model import ModelSpec
from . import zoo

SUFFIX = ".pt"
PRETRAINED_SUFFIX = ".pth"


def save_native(path: str | os.PathLike, nets: dict[str, tuple[torch.nn.Module, ModelSpec]]) -> Path:
    state = {name: net.state_dict() for name, (net, _) in nets.items()}
    return atomic_write(path, lambda tmp: torch.save(state, tmp))


def read_file(path: str | os.PathLike) -> dict:
    """torch.load of a dict (weights only), or a GanparityError naming the file."""
    check_file(path, "PyTorch file", f"a torch.save file ({SUFFIX} or {PRETRAINED_SUFFIX}) of state dicts")
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the user's bad input
        raise GanparityError(f"{str(path)!r} is not a PyTorch checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(obj, dict):
        raise GanparityError(f"{str(path)!r} holds a {type(obj).__name__}, not a dict of state dicts or tensors")
    return obj


def load_native(path: str | os.PathLike, models: dict[str, ModelSpec]) -> dict[str, np.ndarray]:
    ckpt = read_file(path)
    missing = [n for n in models if n not in ckpt]
    if missing:
        raise GanparityError(f"{str(path)!r} has no state dict for {', '.join(missing)} (keys: {list(ckpt)})")
    bad = [n for n in models if not isinstance(ckpt[n], dict)
           or not all(isinstance(v, torch.Tensor) for v in ckpt[n].values())]
    if bad:
        raise GanparityError(f"{str(path)!r}: {', '.join(bad)} is not a state dict of tensors")
    return {f"{name}.{k}": v.cpu().numpy() for name in models for k, v in ckpt[name].items()
            if not k.endswith("num_batches_tracked")}


def load_pretrained(path: str | os.PathLike, spec: FinetuneSpec) -> dict[str, np.ndarray]:
    """torch.save(torchvision.models.resnet34().state_dict()) -> neutral backbone arrays (+ fc.*)."""
    state = read_file(path)
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise GanparityError(f"{str(path)!r} is not a state dict of tensors: {', '.join(bad[:5])} are not tensors")
    return zoo.from_zoo({k: v.numpy() for k, v in state.items()}, spec, repr(str(path)))


def save_pretrained(path: str | os.PathLike, arrays: dict[str, np.ndarray], spec: FinetuneSpec) -> Path:
    state = {k: torch.as_tensor(v) for k, v in zoo.to_zoo(arrays, spec).items()}
    return atomic_write(path, lambda tmp: torch.save(state, tmp))
