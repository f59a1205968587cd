"""Spec -> gluon.nn.HybridSequential, one builder for every spec: layer stacks and ResNet alike
(a Sequential nests, a Residual becomes a ResidualBlock); neutral numpy arrays in and out;
forwards in either mode.

Gluon's structural parameter names (_collect_params_with_prefix) are the spec's tensor names
without the net prefix, except that a BatchNorm's weight and bias are 'gamma' and 'beta'
('4.0.body.1.gamma'): the Gluon model zoo's own layout.
"""

from __future__ import annotations

import contextlib

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon
from mxnet.gluon import nn

from ...common import shapes
from ...common.differences import native
from ...common.spec.layers import BUFFER_NAMES, BatchNorm, Residual, Sequential
from ...common.spec.model import ModelSpec, Semantics
from .device import resolve
from .emulations import TorchBatchNorm as EmulatedStatsBatchNorm  # difference 'bn-stats', emulating PyTorch
from .emulations import _Deferred
from .layers import TENSOR_ALIASES, layer_call

TORCH = Semantics()


class ResidualBlock(nn.HybridBlock):
    """ReLU(body(x) + downsample(x)); an empty downsample is the identity (Gluon's BasicBlockV1)."""

    def __init__(self, body: nn.HybridSequential, downsample: nn.HybridSequential):
        super().__init__()
        self.body, self.downsample = body, downsample

    def hybrid_forward(self, F, x):
        return F.relu(self.body(x) + self.downsample(x))


def _leaf(layer, shape: tuple[int, ...], naive: frozenset[str], semantics: Semantics) -> nn.Block:
    name, args, kwargs = layer_call(layer, shape, naive)
    if isinstance(layer, BatchNorm) and not native(semantics, "bn-stats", "mxnet", naive):
        return EmulatedStatsBatchNorm(*args, **kwargs)
    return getattr(nn, name)(*args, **kwargs)


def _build_layers(layers: tuple, in_shape: tuple, naive: frozenset[str], semantics: Semantics) -> nn.HybridSequential:
    seq, shape = nn.HybridSequential(), tuple(in_shape)
    for layer in layers:
        if isinstance(layer, Sequential):
            block = _build_layers(layer.layers, shape, naive, semantics)
        elif isinstance(layer, Residual):
            body, down = (_build_layers(part, shape, naive, semantics) for part in (layer.body, layer.downsample))
            block = ResidualBlock(body, down)
        else:
            block = _leaf(layer, shape, naive, semantics)
        seq.add(block)
        shape = shapes.output_shape(layer, shape)
    return seq


def _blocks(block: nn.Block):
    yield block
    for child in block._children.values():
        yield from _blocks(child)


def build(model: ModelSpec, naive: frozenset[str] = frozenset(), device: str = "cpu",
          dtype: str = "float32", semantics: Semantics = TORCH) -> nn.HybridSequential:
    """One builder for every spec. Weights are Gluon's defaults until set_arrays() loads the
    neutral ones (see common.weights.init_arrays). `semantics` decides the BatchNorm statistics
    (difference 'bn-stats': native, or PyTorch's emulated)."""
    ctx = resolve(device)
    net = _build_layers(model.layers, model.input_shape, naive, semantics)
    emulated = [b for b in _blocks(net) if isinstance(b, EmulatedStatsBatchNorm)]
    if emulated:  # their statistics updates wait for the end of the net's forward, then run as one op
        deferred = _Deferred()
        for b in emulated:
            b._deferred = deferred
        net.register_forward_pre_hook(deferred.start)
        net.register_forward_hook(deferred.finish)
    net.initialize(ctx=ctx)  # in_units / in_channels given: parameters exist now, not at first forward
    if dtype != "float32":
        net.cast(dtype)
    return net


def _tensors(net: nn.Block, model: ModelSpec) -> dict[str, gluon.Parameter]:
    """Spec tensor name ('G.1.weight') -> the Gluon parameter (a BatchNorm's weight is 'gamma')."""
    live = net._collect_params_with_prefix()
    out = {}
    for full, layer in shapes.tensor_owners(model).items():
        path, short = full.split(".", 1)[1].rsplit(".", 1)
        out[full] = live[f"{path}.{TENSOR_ALIASES.get(type(layer), {}).get(short, short)}"]
    return out


def get_arrays(net: nn.Block, model: ModelSpec) -> dict[str, np.ndarray]:
    return {k: p.data().asnumpy().copy() for k, p in _tensors(net, model).items()}


def set_arrays(net: nn.Block, model: ModelSpec, arrays: dict[str, np.ndarray]) -> None:
    for k, p in _tensors(net, model).items():
        p.set_data(mx.nd.array(arrays[k], dtype=p.dtype))


def get_grads(net: nn.Block, model: ModelSpec, scale: float = 1.0) -> dict[str, np.ndarray]:
    """Gradients of the trainable tensors, times scale (1 / batch_size for per-sample losses:
    difference 'loss-reduction')."""
    return {k: p.grad().asnumpy() * scale for k, p in _tensors(net, model).items()
            if k.rsplit(".", 1)[1] not in BUFFER_NAMES and p.grad_req != "null"}


def to_device(net: nn.Block, array: np.ndarray) -> mx.nd.NDArray:
    """A numpy batch as an NDArray on the net's device, in the net's dtype."""
    param = next(iter(net.collect_params().values()))
    return mx.nd.array(np.asarray(array), ctx=param.list_ctx()[0], dtype=param.dtype)


def scalar(value: mx.nd.NDArray) -> float:
    """A 0-d (or one-element) device value as a Python float (this is where the host waits)."""
    return float(value.asscalar())


def scalars(values: list[mx.nd.NDArray]) -> np.ndarray:
    """Many 0-d (or one-element) device values as one float64 numpy array (the torch backend stacks
    them into one copy; MXNet's asscalar per value costs little on the CPU it runs on here)."""
    return np.array([float(v.asscalar()) for v in values], np.float64)


def _mode(mode: str, naive: frozenset[str]):
    """mode='train' means batch statistics, which Gluon gives only inside autograd.train_mode()
    or record() (difference 'train-eval'); 'eval' uses the running statistics."""
    return autograd.train_mode() if mode == "train" and "train-eval" not in naive else contextlib.nullcontext()


def layer_outputs(net: nn.HybridSequential, x: np.ndarray, mode: str = "train",
                  naive: frozenset[str] = frozenset()) -> list[np.ndarray]:
    """Every layer's output, in the mode's statistics (see _mode)."""
    outs, h = [], to_device(net, x)
    with _mode(mode, naive):
        for block in net:
            h = block(h)
            outs.append(h.asnumpy())
    return outs


def forward(net: nn.Block, x: np.ndarray, mode: str = "train",
            naive: frozenset[str] = frozenset()) -> np.ndarray:
    """The net's output, in the mode's statistics as layer_outputs."""
    with _mode(mode, naive):
        return net(to_device(net, x)).asnumpy()


def param_count(net: nn.Block) -> int:
    """Trainable values, counted the framework's way (running stats and frozen parameters have
    grad_req 'null')."""
    return sum(p.data().size for p in net.collect_params().values() if p.grad_req != "null")
