"""PyTorch's semantics, in MXNet Gluon: the one place they are written. The backend builds with
them (build.py, train.py: a spec that follows PyTorch), and the port's proof runs a user's Gluon
block with them under `--semantics torch` (emulated_stats, TorchAdam).

backends/torch/emulations.py mirrors it: MXNet's semantics in PyTorch.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import math

import mxnet as mx
import numpy as np
from mxnet import autograd
from mxnet.gluon import nn

from ...common.spec.model import Adam


class TorchBatchNorm(nn.BatchNorm):
    """Difference 'bn-stats', emulating PyTorch: every train-mode forward moves the running stats
    as PyTorch does, with the unbiased batch variance: running = m * running + (1 - m) * batch
    (Gluon's m). Same parameters and names as nn.BatchNorm.

    Cheap by construction (it costs ~1% of an MXNet dcgan step on 2 CPU cores; eager NDArray ops
    cost ~0.5x the step): the batch moments are the BatchNorm op's own (output_mean_var=True gives
    the mean and 1 / sqrt(var + eps)), the op gets scratch moving arrays in training (so its own
    backward-time update lands there and no engine dependency ties it to the real statistics), and
    the updates of all a built net's layers wait for the end of the net's forward and run as one
    cached graph writing every statistic in place (one op per layer cost ResNet-34's fine-tune step
    +19% on 2 CPU cores; one op for the net, +4%). A layer called on its own updates at once.
    A hybridized graph never calls this forward: GANTrainer refuses 'hybridize' with it."""

    def __init__(self, momentum: float = 0.9, **kwargs):
        super().__init__(momentum=1.0, **kwargs)
        self.gluon_momentum = momentum
        self._scratch: dict = {}
        self._deferred: _Deferred | None = None  # set by build(): the root net applies the updates in one op

    def forward(self, x):
        if not (autograd.is_training() and isinstance(x, mx.nd.NDArray)):
            return super().forward(x)  # running statistics (or hybridize tracing Symbols)
        ctx = x.context
        gamma, beta, rm, rv = (p.data(ctx) for p in (self.gamma, self.beta, self.running_mean, self.running_var))
        if ctx not in self._scratch:
            self._scratch[ctx] = (mx.nd.zeros(rm.shape, ctx=ctx, dtype=rm.dtype),
                                  mx.nd.ones(rv.shape, ctx=ctx, dtype=rv.dtype))
        out, mean, invstd = mx.nd.BatchNorm(x, gamma, beta, *self._scratch[ctx], output_mean_var=True, **self._kwargs)
        update = ((self.gluon_momentum, x.size // x.shape[1], self._kwargs["eps"]), rm, rv, mean, invstd)
        if self._deferred is None or not self._deferred.active:  # a layer called outside its built net
            _apply_stats_updates([update])
        else:
            self._deferred.add(update)
        return out


class _Deferred:
    """The statistics updates of one built net's emulated BatchNorm layers, held from the net's
    forward pre-hook to its forward hook, then applied as one op."""

    def __init__(self):
        self.active, self.pending = False, []

    def start(self, *_) -> None:
        self.active = True

    def add(self, update: tuple) -> None:
        if any(u[1] is update[1] for u in self.pending):  # a layer called twice: its first update first
            self.flush()
        self.pending.append(update)

    def flush(self, *_) -> None:
        _apply_stats_updates(self.pending)
        self.pending = []

    def finish(self, *_) -> None:
        self.flush()
        self.active = False


def _apply_stats_updates(updates: list) -> None:
    """The running-statistics updates of several layers as one cached graph (one engine call
    instead of one per layer: over ResNet-34's 36 BatchNorm layers that was most of the cost)."""
    if not updates:
        return
    op, order = _stats_update(tuple(u[0] for u in updates))
    inputs = {f"{name}{i}": a for i, u in enumerate(updates) for name, a in zip(("rm", "rv", "mean", "invstd"), u[1:])}
    with autograd.pause():
        op(*(inputs[name] for name in order), out=[a for u in updates for a in u[1:3]])


@functools.cache
def _stats_update(layers: tuple[tuple[float, int, float], ...]) -> tuple[mx.nd.CachedOp, list[str]]:
    """For layers of (momentum m, rows per channel n, eps): (running_mean 'rmI', running_var 'rvI',
    batch 'meanI', batch 'invstdI' = 1/sqrt(var + eps)) -> the new running pairs, layer by layer,
    with the unbiased variance n / (n - 1) * (1 / invstd^2 - eps); and the order the op takes its
    inputs in (its symbol's list_arguments)."""
    outs = []
    for i, (m, n, eps) in enumerate(layers):
        rm, rv, mean, invstd = (mx.sym.var(f"{name}{i}") for name in ("rm", "rv", "mean", "invstd"))
        a = (1 - m) * n / max(n - 1, 1)
        outs += [m * rm + (1 - m) * mean, m * rv + a / mx.sym.square(invstd) - a * eps]
    graph = mx.sym.Group(outs)
    return mx.nd.CachedOp(graph), graph.list_arguments()


class GlobalStatsBatchNorm(nn.BatchNorm):
    """BatchNorm(use_global_stats=True): Gluon's own spelling of a layer whose running statistics
    normalise in train mode too, and never move (the torch side needs a class for it)."""

    def __init__(self, **kwargs):
        super().__init__(use_global_stats=True, **kwargs)


def torch_adam_eps(eps: float, beta2: float, t: int) -> float:
    """The epsilon that puts PyTorch's eps where MXNet's Adam adds its own (difference 'adam-eps'):
    MXNet adds eps to sqrt(v) and folds the corrections into lr; PyTorch adds it to
    sqrt(v / (1 - beta2^t)), the same as eps * sqrt(1 - beta2^t) on MXNet's side."""
    return eps * math.sqrt(1 - beta2 ** t)


class TorchAdam(mx.optimizer.Adam):
    """MXNet's Adam, emulating PyTorch's where the spec says so.

    'adam-eps': MXNet folds the bias corrections into the learning rate and leaves eps
    uncorrected; epsilon = eps * sqrt(1 - beta2^t) at step t puts it where PyTorch has it.
    'adam-betas': the adam_update op receives beta1/beta2 as float32 (0.999 -> 0.99900001),
    so its (1 - beta2) is 1.3e-5 smaller than the double-precision bias correction assumes;
    giving the optimizer the float32-rounded betas makes the two agree with each other and, to
    1e-8, with PyTorch.
    """

    def __init__(self, opt: Adam, emulate: tuple[str, ...]):
        f32 = "adam-betas" in emulate
        super().__init__(learning_rate=opt.lr, epsilon=opt.eps,
                         beta1=float(np.float32(opt.beta1)) if f32 else opt.beta1,
                         beta2=float(np.float32(opt.beta2)) if f32 else opt.beta2)
        self.torch_eps, self.fix_eps = opt.eps, "adam-eps" in emulate

    def update(self, index, weight, grad, state):
        if self.fix_eps:
            t = self._index_update_count.get(index, self.begin_num_update) + 1
            self.epsilon = torch_adam_eps(self.torch_eps, self.beta2, t)
        super().update(index, weight, grad, state)


@contextlib.contextmanager
def emulated_stats(model: nn.Block):
    """While inside, every BatchNorm of `model` (but those with use_global_stats) moves its running
    statistics as PyTorch does (TorchBatchNorm: in every train-mode forward, unbiased variance),
    with its own momentum; afterwards it is the layer it was. A subclass of nn.BatchNorm counts
    (GluonCV's BatchNormCudnnOff, the same op with cuDNN off: its simple-pose models' statistics
    moved by Gluon's rule while the port's moved by PyTorch's). The model must run un-hybridized."""
    changed = []
    for b in _walk(model):
        if isinstance(b, nn.BatchNorm) and not isinstance(b, TorchBatchNorm | GlobalStatsBatchNorm) and \
                not b._kwargs.get("use_global_stats"):
            changed.append((b, b.__class__, b._kwargs))
            b.__class__ = TorchBatchNorm
            b.gluon_momentum, b._kwargs = b._kwargs["momentum"], dict(b._kwargs, momentum=1.0)
            b._scratch, b._deferred = {}, None
    try:
        yield len(changed)
    finally:
        for b, cls, kwargs in changed:
            b.__class__, b._kwargs = cls, kwargs


def _walk(block: nn.Block):
    yield block
    for child in block._children.values():
        yield from _walk(child)


def source(names):
    """The source text of these classes and functions, by name (the mirror of the torch side's,
    for a port in the other direction)."""
    return "\n\n\n".join(inspect.getsource(globals()[n]).rstrip() for n in names)
