"""Spec -> gluon.nn.HybridSequential; neutral numpy arrays in and out; forwards in either mode."""

from __future__ import annotations

import contextlib

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon
from mxnet.gluon import nn

from common import shapes
from common.spec.layers import BUFFER_NAMES, BatchNorm
from common.spec.model import ModelSpec

from .device import resolve
from .layers import TENSOR_ALIASES, layer_call


def build(model: ModelSpec, naive: frozenset[str] = frozenset(), device: str = "cpu",
          dtype: str = "float32") -> nn.HybridSequential:
    """One builder for every spec. Weights are Gluon's defaults until set_arrays() loads the
    neutral ones (see common.weights.init_arrays)."""
    ctx = resolve(device)
    net = nn.HybridSequential()
    for info in shapes.infer(model):
        name, args, kwargs = layer_call(info.layer, info.in_shape, naive)
        if isinstance(info.layer, BatchNorm) and "bn-variance" not in naive:
            gluon_momentum, kwargs = kwargs["momentum"], dict(kwargs, momentum=1.0)
        block = getattr(nn, name)(*args, **kwargs)
        if isinstance(info.layer, BatchNorm) and "bn-variance" not in naive:
            block.register_forward_hook(running_stats_hook(gluon_momentum))
        net.add(block)
    net.initialize(ctx=ctx)  # in_units / in_channels given: parameters exist now, not at first forward
    if dtype != "float32":
        net.cast(dtype)
    return net


def running_stats_hook(gluon_momentum: float):
    """Difference 'bn-variance': the native update (biased variance, in backward) is frozen by
    momentum=1.0; this hook moves the running stats in every train-mode forward, as PyTorch does,
    with the unbiased batch variance: running = m * running + (1 - m) * batch (Gluon's m)."""

    def hook(block: nn.BatchNorm, inputs, output) -> None:
        x = inputs[0]
        if not autograd.is_training() or not isinstance(x, mx.nd.NDArray):
            return  # hybridize traces with Symbols, and its compiled graph runs no hooks at all
        with autograd.pause():
            axes = (0,) + tuple(range(2, x.ndim))
            n = x.size // x.shape[1]
            mean = x.mean(axis=axes)
            centred = x - mean.reshape((1, -1) + (1,) * (x.ndim - 2))
            var = (centred * centred).sum(axis=axes) / max(n - 1, 1)
            rm, rv = block.running_mean.data(x.context), block.running_var.data(x.context)
            rm[:] = gluon_momentum * rm + (1 - gluon_momentum) * mean
            rv[:] = gluon_momentum * rv + (1 - gluon_momentum) * var

    return hook


def _tensors(net: nn.HybridSequential, model: ModelSpec) -> dict[str, gluon.Parameter]:
    """Spec tensor name ('G.1.weight') -> the Gluon parameter (BatchNorm weight is 'gamma')."""
    out = {}
    for info, block in zip(shapes.infer(model), net):
        aliases = TENSOR_ALIASES.get(type(info.layer), {})
        for full in info.tensors:
            short = full.rsplit(".", 1)[1]
            out[full] = getattr(block, aliases.get(short, short))
    return out


def get_arrays(net: nn.HybridSequential, model: ModelSpec) -> dict[str, np.ndarray]:
    return {k: p.data().asnumpy().copy() for k, p in _tensors(net, model).items()}


def set_arrays(net: nn.HybridSequential, model: ModelSpec, arrays: dict[str, np.ndarray]) -> None:
    for k, p in _tensors(net, model).items():
        p.set_data(mx.nd.array(arrays[k], dtype=p.dtype))


def get_grads(net: nn.HybridSequential, model: ModelSpec, scale: float = 1.0) -> dict[str, np.ndarray]:
    """Gradients of the trainable tensors, times scale (1 / batch_size for per-sample losses:
    difference 'loss-reduction')."""
    return {k: p.grad().asnumpy() * scale
            for k, p in _tensors(net, model).items() if k.rsplit(".", 1)[1] not in BUFFER_NAMES}


def _device(net: nn.HybridSequential) -> mx.Context:
    return next(iter(net.collect_params().values())).list_ctx()[0]


def to_device(net: nn.HybridSequential, array: np.ndarray) -> mx.nd.NDArray:
    """A numpy batch as an NDArray on the net's device, in the net's dtype."""
    param = next(iter(net.collect_params().values()))
    return mx.nd.array(np.asarray(array), ctx=param.list_ctx()[0], dtype=param.dtype)


def layer_outputs(net: nn.HybridSequential, x: np.ndarray, mode: str = "train",
                  naive: frozenset[str] = frozenset()) -> list[np.ndarray]:
    """Every layer's output. mode='train' uses batch statistics, which Gluon gives only inside
    autograd.train_mode()/record() (difference 'train-eval'); 'eval' uses the running statistics."""
    train = mode == "train" and "train-eval" not in naive
    outs, h = [], to_device(net, x)
    with autograd.train_mode() if train else contextlib.nullcontext():
        for block in net:
            h = block(h)
            outs.append(h.asnumpy())
    return outs


def forward(net: nn.HybridSequential, x: np.ndarray, mode: str = "train",
            naive: frozenset[str] = frozenset()) -> np.ndarray:
    return layer_outputs(net, x, mode, naive)[-1]


def param_count(net: nn.HybridSequential) -> int:
    """Trainable values, counted the framework's way (running stats have grad_req 'null')."""
    return sum(p.data().size for p in net.collect_params().values() if p.grad_req != "null")
