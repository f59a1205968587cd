"""Spec -> torch.nn.Sequential, one builder for every spec: layer stacks and ResNet alike
(a Sequential nests, a Residual becomes a ResidualBlock); neutral numpy arrays in and out;
forwards in either mode.

The module's own state-dict names are the spec's tensor names without the net prefix
('1.running_var', '4.0.body.0.weight'): nn.Sequential numbers its children as the spec does.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ...common import shapes
from ...common.differences import native
from ...common.spec.layers import BUFFER_NAMES, BatchNorm, Flatten, Residual, Sequential
from ...common.spec.model import ModelSpec, Semantics
from .device import resolve
from .emulations import MXNetBatchNorm as EmulatedStatsBatchNorm  # difference 'bn-stats', emulating MXNet
from .layers import TENSOR_ALIASES, layer_call

TORCH = Semantics()


class ResidualBlock(nn.Module):
    """ReLU(body(x) + downsample(x)); an empty downsample is the identity (torchvision's BasicBlock)."""

    def __init__(self, body: nn.Sequential, downsample: nn.Sequential):
        super().__init__()
        self.body, self.downsample = body, downsample

    def forward(self, x):
        return torch.relu(self.body(x) + self.downsample(x))


def _leaf(layer, shape: tuple[int, ...], naive: frozenset[str], semantics: Semantics) -> nn.Module:
    if isinstance(layer, Flatten) and "dense-flatten" in naive:
        return nn.Identity()  # the naive port of a Gluon Dense drops the flatten it implied
    name, args, kwargs = layer_call(layer, shape, naive)
    if isinstance(layer, BatchNorm) and not native(semantics, "bn-stats", "torch", naive):
        return EmulatedStatsBatchNorm(*args, **kwargs)
    return getattr(nn, name)(*args, **kwargs)


def _build_layers(layers: tuple, in_shape: tuple, naive: frozenset[str], semantics: Semantics) -> nn.Sequential:
    blocks, shape = [], tuple(in_shape)
    for layer in layers:
        if isinstance(layer, Sequential):
            block = _build_layers(layer.layers, shape, naive, semantics)
        elif isinstance(layer, Residual):
            body, down = (_build_layers(part, shape, naive, semantics) for part in (layer.body, layer.downsample))
            block = ResidualBlock(body, down)
        else:
            block = _leaf(layer, shape, naive, semantics)
        blocks.append(block)
        shape = shapes.output_shape(layer, shape)
    return nn.Sequential(*blocks)


def build(model: ModelSpec, naive: frozenset[str] = frozenset(), device: str = "cpu",
          dtype: str = "float32", semantics: Semantics = TORCH) -> nn.Sequential:
    """One builder for every spec. Weights are PyTorch's defaults until set_arrays() loads the
    neutral ones (see common.weights.init_arrays). `semantics` decides the BatchNorm statistics
    (difference 'bn-stats': native, or MXNet's emulated)."""
    net = _build_layers(model.layers, model.input_shape, naive, semantics)
    return net.to(device=resolve(device), dtype=getattr(torch, dtype))


def _tensors(net: nn.Module, model: ModelSpec) -> dict[str, torch.Tensor]:
    """Spec tensor name ('G.1.weight') -> the live parameter or buffer in the module."""
    live = dict(net.named_parameters()) | dict(net.named_buffers())
    out = {}
    for full, layer in shapes.tensor_owners(model).items():
        path, short = full.split(".", 1)[1].rsplit(".", 1)
        out[full] = live[f"{path}.{TENSOR_ALIASES.get(type(layer), {}).get(short, short)}"]
    return out


def get_arrays(net: nn.Module, model: ModelSpec) -> dict[str, np.ndarray]:
    return {k: t.detach().cpu().numpy().copy() for k, t in _tensors(net, model).items()}


def set_arrays(net: nn.Module, model: ModelSpec, arrays: dict[str, np.ndarray]) -> None:
    with torch.no_grad():
        for k, t in _tensors(net, model).items():
            t.copy_(torch.as_tensor(arrays[k], dtype=t.dtype))


def get_grads(net: nn.Module, model: ModelSpec, scale: float = 1.0) -> dict[str, np.ndarray]:
    """Gradients of the trainable tensors, times scale (1: PyTorch's are already batch means)."""
    return {k: t.grad.detach().cpu().numpy() * scale for k, t in _tensors(net, model).items()
            if k.rsplit(".", 1)[1] not in BUFFER_NAMES and t.grad is not None}


def to_device(net: nn.Module, array: np.ndarray) -> torch.Tensor:
    """A numpy batch as a tensor on the net's device, in the net's dtype."""
    param = next(iter(net.parameters()))
    return torch.as_tensor(np.asarray(array), device=param.device, dtype=param.dtype)


def scalar(value: torch.Tensor) -> float:
    """A 0-d device value as a Python float (this is where the host waits for the device)."""
    return float(value.item())


def scalars(values: list[torch.Tensor]) -> np.ndarray:
    """Many 0-d device values as one float64 numpy array: one host wait and one copy for all of them
    (scalar() waits once per value). The training loop reads a window of steps' losses this way."""
    if not values or values[0].device.type == "cpu":  # nothing to wait for: item() is ten times cheaper
        return np.array([v.item() for v in values], np.float64)
    flat = [v.detach().reshape(()) for v in values]
    device = flat[0].device
    if any(v.device != device or v.dtype != flat[0].dtype for v in flat):  # a NaN stand-in made on the CPU
        flat = [v.to(device, torch.float64) for v in flat]
    return torch.stack(flat).to(torch.float64).cpu().numpy()


def _mode(net: nn.Module, mode: str, naive: frozenset[str]) -> None:
    """mode='train' uses batch statistics, 'eval' the running ones, as module.train()/eval() say;
    a naive port of Gluon code forgets net.eval() (difference 'train-eval')."""
    net.train(mode == "train" or "train-eval" in naive)


def layer_outputs(net: nn.Sequential, x: np.ndarray, mode: str = "train",
                  naive: frozenset[str] = frozenset()) -> list[np.ndarray]:
    """Every layer's output, in the mode's statistics (see _mode). A train-mode forward moves the
    running statistics, as PyTorch does in any train-mode forward (with MXNet's 'bn-stats' it
    does not: no backward follows)."""
    _mode(net, mode, naive)
    outs, h = [], to_device(net, x)
    with torch.no_grad():
        for block in net:
            h = block(h)
            outs.append(h.cpu().numpy())
    return outs


def forward(net: nn.Module, x: np.ndarray, mode: str = "train",
            naive: frozenset[str] = frozenset()) -> np.ndarray:
    """The net's output, in the mode's statistics as layer_outputs."""
    _mode(net, mode, naive)
    with torch.no_grad():
        return net(to_device(net, x)).cpu().numpy()


def param_count(net: nn.Module) -> int:
    """Trainable values, counted the framework's way (a frozen parameter does not count)."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)
