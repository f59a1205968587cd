"""Spec -> torch.nn.Sequential; neutral numpy arrays in and out; forwards in either mode."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from common import shapes
from common.spec.layers import BUFFER_NAMES
from common.spec.model import ModelSpec

from .device import resolve
from .layers import TENSOR_ALIASES, layer_call


def build(model: ModelSpec, naive: frozenset[str] = frozenset(), device: str = "cpu",
          dtype: str = "float32") -> nn.Sequential:
    """One builder for every spec. Weights are PyTorch's defaults until set_arrays() loads the
    neutral ones (see common.weights.init_arrays)."""
    calls = [layer_call(info.layer, info.in_shape, naive) for info in shapes.infer(model)]
    net = nn.Sequential(*(getattr(nn, name)(*args, **kwargs) for name, args, kwargs in calls))
    return net.to(device=resolve(device), dtype=getattr(torch, dtype))


def _tensors(net: nn.Sequential, model: ModelSpec) -> dict[str, torch.Tensor]:
    """Spec tensor name ('G.1.weight') -> the live tensor in the module."""
    out = {}
    for info, block in zip(shapes.infer(model), net):
        aliases = TENSOR_ALIASES.get(type(info.layer), {})
        for full in info.tensors:
            short = full.rsplit(".", 1)[1]
            out[full] = getattr(block, aliases.get(short, short))
    return out


def get_arrays(net: nn.Sequential, model: ModelSpec) -> dict[str, np.ndarray]:
    return {k: t.detach().cpu().numpy().copy() for k, t in _tensors(net, model).items()}


def set_arrays(net: nn.Sequential, model: ModelSpec, arrays: dict[str, np.ndarray]) -> None:
    with torch.no_grad():
        for k, t in _tensors(net, model).items():
            t.copy_(torch.as_tensor(arrays[k], dtype=t.dtype))


def get_grads(net: nn.Sequential, model: ModelSpec, scale: float = 1.0) -> dict[str, np.ndarray]:
    """Gradients of the trainable tensors, times scale (1: PyTorch's are already batch means)."""
    return {k: t.grad.detach().cpu().numpy() * scale
            for k, t in _tensors(net, model).items() if k.rsplit(".", 1)[1] not in BUFFER_NAMES}


def _device(net: nn.Sequential) -> torch.device:
    return next(iter(net.parameters()), torch.empty(0)).device


def to_device(net: nn.Sequential, array: np.ndarray) -> torch.Tensor:
    """A numpy batch as a tensor on the net's device, in the net's dtype."""
    param = next(iter(net.parameters()))
    return torch.as_tensor(np.asarray(array), device=param.device, dtype=param.dtype)


def layer_outputs(net: nn.Sequential, x: np.ndarray, mode: str = "train",
                  naive: frozenset[str] = frozenset()) -> list[np.ndarray]:
    """Every layer's output. mode='train' uses batch statistics (and moves the running ones, as
    PyTorch does in any train-mode forward); 'eval' uses the running statistics."""
    net.train(mode == "train")
    outs, h = [], to_device(net, x)
    with torch.no_grad():
        for block in net:
            h = block(h)
            outs.append(h.cpu().numpy())
    return outs


def forward(net: nn.Sequential, x: np.ndarray, mode: str = "train",
            naive: frozenset[str] = frozenset()) -> np.ndarray:
    return layer_outputs(net, x, mode, naive)[-1]


def param_count(net: nn.Sequential) -> int:
    """Trainable values, counted the framework's way."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)
