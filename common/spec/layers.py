"""Layers as data. Each is a frozen dataclass with no framework in it; a backend's layers.py
says how its framework spells each one, and common.shapes says what each does to a shape.

BatchNorm stores ONE momentum convention, PyTorch's: running = (1 - momentum) * running +
momentum * batch_stat, so momentum=0.1 here is Gluon's momentum=0.9. The running variance is the
unbiased batch variance (PyTorch's choice); backends/mxnet converts both (see common.differences).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Linear:
    in_features: int
    out_features: int
    bias: bool = True


@dataclass(frozen=True)
class Conv2d:
    in_channels: int
    out_channels: int
    kernel: int
    stride: int = 1
    padding: int = 0
    bias: bool = True


@dataclass(frozen=True)
class ConvTranspose2d:
    in_channels: int
    out_channels: int
    kernel: int
    stride: int = 1
    padding: int = 0
    bias: bool = True


@dataclass(frozen=True)
class BatchNorm:
    num_features: int
    eps: float = 1e-5
    momentum: float = 0.1  # PyTorch convention (see module docstring)


@dataclass(frozen=True)
class ReLU:
    pass


@dataclass(frozen=True)
class LeakyReLU:
    slope: float  # no default on purpose: torch says 0.01, the raw MXNet op 0.25, Gluon none


@dataclass(frozen=True)
class Tanh:
    pass


@dataclass(frozen=True)
class Sigmoid:
    pass


@dataclass(frozen=True)
class Flatten:
    """(N, ...) -> (N, prod(...)), as torch.nn.Flatten and gluon.nn.Flatten."""


@dataclass(frozen=True)
class MaxPool2d:
    """torch.nn.MaxPool2d(kernel, stride, padding) / gluon.nn.MaxPool2D: floor mode, padding is -inf."""

    kernel: int
    stride: int
    padding: int = 0


@dataclass(frozen=True)
class GlobalAvgPool2d:
    """(C, H, W) -> (C, 1, 1): torch.nn.AdaptiveAvgPool2d(1) / gluon.nn.GlobalAvgPool2D."""


@dataclass(frozen=True)
class Sequential:
    """A group of layers with its own index space: tensor names nest, e.g. '4.0.body.0.weight'
    for layer 0 of block 0 of stage 4 (as torch.nn.Sequential and Gluon HybridSequential name them)."""

    layers: tuple = ()


@dataclass(frozen=True)
class Residual:
    """ResNet v1 BasicBlock (He et al. 2015, as torchvision and the Gluon model zoo build it):
    out = ReLU(body(x) + downsample(x)), downsample the identity when empty. Tensor names are
    'body.<i>.<tensor>' and 'downsample.<i>.<tensor>' (the Gluon model zoo's names)."""

    body: tuple = ()
    downsample: tuple = ()


Layer = (Linear | Conv2d | ConvTranspose2d | BatchNorm | ReLU | LeakyReLU | Tanh | Sigmoid | Flatten
         | MaxPool2d | GlobalAvgPool2d | Sequential | Residual)
CONTAINERS = (Sequential, Residual)

# Names of the tensors each layer owns, in the order the neutral weights list them.
# "running_*" are buffers (state), the rest trainable parameters.
PARAM_NAMES: dict[type, tuple[str, ...]] = {
    Linear: ("weight", "bias"),
    Conv2d: ("weight", "bias"),
    ConvTranspose2d: ("weight", "bias"),
    BatchNorm: ("weight", "bias", "running_mean", "running_var"),
}
BUFFER_NAMES = ("running_mean", "running_var")


def tensor_names(layer: Layer) -> tuple[str, ...]:
    """The tensor names a layer owns (no bias when bias=False)."""
    names = PARAM_NAMES.get(type(layer), ())
    if getattr(layer, "bias", True) is False:
        names = tuple(n for n in names if n != "bias")
    return names
