"""Output-shape and parameter-count inference in pure Python, with the sources' formulas.

Conv2d (000, D_block):          n' = floor((n + 2p - k) / s) + 1
MaxPool2d (000, ResNet stem):   n' = floor((n + 2p - k) / s) + 1   (floor mode, as both frameworks)
ConvTranspose2d (000, G_block): n' = (n - 1) * s - 2p + k   ( = k + s(n-1) - 2p )

Shapes are per sample (no batch axis). An impossible stack raises GanparityError naming the layer
and the shapes, before any framework is touched.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import GanparityError
from .spec.layers import (
    BUFFER_NAMES,
    BatchNorm,
    Conv2d,
    ConvTranspose2d,
    Flatten,
    GlobalAvgPool2d,
    Layer,
    LeakyReLU,
    Linear,
    MaxPool2d,
    ReLU,
    Residual,
    Sequential,
    Sigmoid,
    Tanh,
    tensor_names,
)
from .spec.model import ModelSpec

Shape = tuple[int, ...]


@dataclass(frozen=True)
class LayerInfo:
    index: int
    name: str  # e.g. "G.3"
    layer: Layer
    in_shape: Shape
    out_shape: Shape
    tensors: dict[str, Shape]  # full tensor name -> shape, parameters and buffers
    n_params: int  # trainable only (buffers excluded), as sum(p.numel() for p in parameters())


def describe(layer: Layer) -> str:
    fields = ", ".join(f"{k}={v}" for k, v in vars(layer).items())
    return f"{type(layer).__name__}({fields})"


def _fail(where: str, layer: Layer, in_shape: Shape, why: str) -> GanparityError:
    return GanparityError(f"{where} {describe(layer)} cannot take input shape {in_shape}: {why}")


def _spatial(where: str, layer: Layer, in_shape: Shape, channels: int) -> tuple[int, int]:
    if len(in_shape) != 3:
        raise _fail(where, layer, in_shape, "expected (channels, height, width)")
    if in_shape[0] != channels:
        raise _fail(where, layer, in_shape, f"expected {channels} input channels, got {in_shape[0]}")
    return in_shape[1], in_shape[2]


def output_shape(layer: Layer, in_shape: Shape, where: str = "layer") -> Shape:
    """The per-sample output shape of one layer, or GanparityError naming layer and shapes."""
    if isinstance(layer, Linear):
        if not in_shape or in_shape[-1] != layer.in_features:
            raise _fail(where, layer, in_shape, f"last axis must be {layer.in_features}")
        return in_shape[:-1] + (layer.out_features,)
    if isinstance(layer, Conv2d):
        h, w = _spatial(where, layer, in_shape, layer.in_channels)
        out = tuple(conv2d_out(n, layer.kernel, layer.stride, layer.padding) for n in (h, w))
        if min(out) < 1:
            raise _fail(where, layer, in_shape, f"output would be {out}, smaller than 1x1")
        return (layer.out_channels,) + out
    if isinstance(layer, ConvTranspose2d):
        h, w = _spatial(where, layer, in_shape, layer.in_channels)
        out = tuple(conv_transpose2d_out(n, layer.kernel, layer.stride, layer.padding) for n in (h, w))
        if min(out) < 1:
            raise _fail(where, layer, in_shape, f"output would be {out}, smaller than 1x1")
        return (layer.out_channels,) + out
    if isinstance(layer, BatchNorm):
        if not in_shape or in_shape[0] != layer.num_features:
            raise _fail(where, layer, in_shape, f"axis 1 must be {layer.num_features}")
        return in_shape
    if isinstance(layer, ReLU | LeakyReLU | Tanh | Sigmoid):
        return in_shape
    if isinstance(layer, Flatten):
        return (math.prod(in_shape),)
    if isinstance(layer, MaxPool2d):
        h, w = _spatial(where, layer, in_shape, in_shape[0] if in_shape else 0)
        out = tuple(conv2d_out(n, layer.kernel, layer.stride, layer.padding) for n in (h, w))
        if min(out) < 1:
            raise _fail(where, layer, in_shape, f"output would be {out}, smaller than 1x1")
        return (in_shape[0],) + out
    if isinstance(layer, GlobalAvgPool2d):
        _spatial(where, layer, in_shape, in_shape[0] if in_shape else 0)
        return (in_shape[0], 1, 1)
    if isinstance(layer, Sequential):
        return _chain(layer.layers, in_shape, where)
    if isinstance(layer, Residual):
        out = _chain(layer.body, in_shape, f"{where}.body")
        skip = _chain(layer.downsample, in_shape, f"{where}.downsample")
        if out != skip:
            raise _fail(where, layer, in_shape, f"body gives {out} but the shortcut gives {skip}")
        return out
    raise GanparityError(f"{where}: unknown layer type {type(layer).__name__}")


def _chain(layers: tuple, in_shape: Shape, where: str) -> Shape:
    shape = tuple(in_shape)
    for i, layer in enumerate(layers):
        shape = output_shape(layer, shape, f"{where}.{i}")
    return shape


def _nested(prefix: str, layers: tuple) -> dict[str, Shape]:
    return {f"{prefix}{i}.{n}": s for i, layer in enumerate(layers)
            for n, s in layer_tensor_shapes(layer).items()}


def layer_tensor_shapes(layer: Layer) -> dict[str, Shape]:
    """Shapes of the tensors a layer owns, by short name. Layouts agree across torch and Gluon:
    Linear/Dense (out, in); Conv2d (out, in, k, k); ConvTranspose2d (in, out, k, k).
    Containers name their tensors by path: Sequential '0.1.weight', Residual 'body.0.weight'."""
    if isinstance(layer, Sequential):
        return _nested("", layer.layers)
    if isinstance(layer, Residual):
        return _nested("body.", layer.body) | _nested("downsample.", layer.downsample)
    if isinstance(layer, Linear):
        full = {"weight": (layer.out_features, layer.in_features), "bias": (layer.out_features,)}
    elif isinstance(layer, Conv2d):
        full = {"weight": (layer.out_channels, layer.in_channels, layer.kernel, layer.kernel),
                "bias": (layer.out_channels,)}
    elif isinstance(layer, ConvTranspose2d):
        full = {"weight": (layer.in_channels, layer.out_channels, layer.kernel, layer.kernel),
                "bias": (layer.out_channels,)}
    elif isinstance(layer, BatchNorm):
        full = {n: (layer.num_features,) for n in ("weight", "bias", *BUFFER_NAMES)}
    else:
        full = {}
    return {n: full[n] for n in tensor_names(layer)}


def infer(model: ModelSpec) -> list[LayerInfo]:
    """Walk the stack: every layer's input and output shape and the tensors it owns."""
    infos, shape = [], tuple(model.input_shape)
    for i, layer in enumerate(model.layers):
        where = f"{model.name}.{i}"
        out = output_shape(layer, shape, where)
        short = layer_tensor_shapes(layer)
        tensors = {f"{where}.{n}": s for n, s in short.items()}
        n_params = sum(math.prod(s) for n, s in short.items() if n.rsplit(".", 1)[-1] not in BUFFER_NAMES)
        infos.append(LayerInfo(i, where, layer, shape, out, tensors, n_params))
        shape = out
    return infos


def leaves(model: ModelSpec, sums: bool = False):
    """(name, layer, in_shape, out_shape) of every leaf layer in spec order, containers opened up
    ('backbone.4.0.body.1'); with sums=True a Residual also yields itself after its leaves, named
    '<block> (sum)' (the porting table's row for relu(body(x) + downsample(x)))."""

    def walk(layers: tuple, in_shape: Shape, prefix: str):
        shape = tuple(in_shape)
        for i, layer in enumerate(layers):
            name, out = f"{prefix}.{i}", output_shape(layer, shape)
            if isinstance(layer, Sequential):
                yield from walk(layer.layers, shape, name)
            elif isinstance(layer, Residual):
                yield from walk(layer.body, shape, f"{name}.body")
                yield from walk(layer.downsample, shape, f"{name}.downsample")
                if sums:
                    yield f"{name} (sum)", layer, shape, out
            else:
                yield name, layer, shape, out
            shape = out

    yield from walk(model.layers, model.input_shape, model.name)


def has_batchnorm(model: ModelSpec) -> bool:
    return any(isinstance(layer, BatchNorm) for _, layer, _, _ in leaves(model))


def tensor_owners(model: ModelSpec) -> dict[str, Layer]:
    """Every tensor name -> the leaf layer that owns it, in spec order (a backend asks it how its
    framework names that tensor: Gluon calls a BatchNorm's weight 'gamma')."""
    return {f"{name}.{t}": layer for name, layer, _, _ in leaves(model) for t in tensor_names(layer)}


def output_of(model: ModelSpec) -> Shape:
    infos = infer(model)
    return infos[-1].out_shape if infos else tuple(model.input_shape)


def tensor_shapes(model: ModelSpec) -> dict[str, Shape]:
    """Every tensor of the model, parameters and buffers, in spec order: the neutral weights' keys."""
    return {name: s for info in infer(model) for name, s in info.tensors.items()}


def param_count(model: ModelSpec) -> int:
    return sum(info.n_params for info in infer(model))


def conv2d_out(n: int, k: int, s: int, p: int) -> int:
    return (n + 2 * p - k) // s + 1


def conv_transpose2d_out(n: int, k: int, s: int, p: int) -> int:
    return (n - 1) * s - 2 * p + k
