"""ClassifierSpec -> gluon Block (ResNet backbone + head); neutral arrays; one SGD step.

Mirrors backends/torch/resnet.py function by function. Gluon's structural parameter names
(_collect_params_with_prefix) are the neutral names except that a BatchNorm's weight/bias are
'gamma'/'beta' ('backbone.4.0.body.1.gamma'): the Gluon model zoo's resnet_v1 layout.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon
from mxnet.gluon import nn

from common import pretrained
from common.spec.classifier import ClassifierSpec, FinetuneRecipe
from common.spec.layers import BUFFER_NAMES, BatchNorm, Residual, Sequential
from common.weights import atomic_write

from .build import build as build_stack
from .build import running_stats_hook
from .checkpoint import read_file
from .device import resolve
from .layers import TENSOR_ALIASES, layer_call


class ResidualBlock(nn.HybridBlock):
    """ReLU(body(x) + downsample(x)); an empty downsample is the identity (Gluon's BasicBlockV1)."""

    def __init__(self, body: nn.HybridSequential, downsample: nn.HybridSequential):
        super().__init__()
        self.body, self.downsample = body, downsample

    def hybrid_forward(self, F, x):
        return F.relu(self.body(x) + self.downsample(x))


class Classifier(nn.HybridBlock):
    def __init__(self, backbone: nn.HybridBlock, head: nn.HybridBlock):
        super().__init__()
        self.backbone, self.head = backbone, head

    def hybrid_forward(self, F, x):
        return self.head(self.backbone(x))


def _build_layers(layers: tuple, in_shape: tuple[int, ...]) -> nn.HybridSequential:
    from common import shapes

    seq, shape = nn.HybridSequential(), tuple(in_shape)
    for layer in layers:
        if isinstance(layer, Sequential):
            block = _build_layers(layer.layers, shape)
        elif isinstance(layer, Residual):
            block = ResidualBlock(_build_layers(layer.body, shape), _build_layers(layer.downsample, shape))
        else:
            name, args, kwargs = layer_call(layer, shape)
            if isinstance(layer, BatchNorm):  # difference 'bn-variance': PyTorch's running stats
                gluon_momentum, kwargs = kwargs["momentum"], dict(kwargs, momentum=1.0)
            block = getattr(nn, name)(*args, **kwargs)
            if isinstance(layer, BatchNorm):
                block.register_forward_hook(running_stats_hook(gluon_momentum))
        seq.add(block)
        shape = shapes.output_shape(layer, shape)
    return seq


def build_classifier(spec: ClassifierSpec, device: str = "cpu", dtype: str = "float32") -> Classifier:
    """Framework default weights until set_arrays() loads neutral ones (pretrained.init_classifier)."""
    ctx = resolve(device)
    net = Classifier(_build_layers(spec.backbone.layers, spec.backbone.input_shape),
                     build_stack(spec.head, device=device))
    net.backbone.initialize(ctx=ctx)
    if dtype != "float32":
        net.cast(dtype)
    return net


def _tensors(net: Classifier, spec: ClassifierSpec) -> dict[str, gluon.Parameter]:
    """Neutral name -> Gluon parameter, in spec order (BatchNorm weight/bias are gamma/beta)."""
    from common import shapes

    live = net._collect_params_with_prefix()
    names = [*shapes.tensor_shapes(spec.backbone), *shapes.tensor_shapes(spec.head)]
    bn = {n.rsplit(".", 1)[0] for n in names if n.endswith(".running_mean")}
    alias = TENSOR_ALIASES[BatchNorm]
    out = {}
    for k in names:
        prefix, short = k.rsplit(".", 1)
        out[k] = live[f"{prefix}.{alias.get(short, short) if prefix in bn else short}"]
    return out


def get_arrays(net: Classifier, spec: ClassifierSpec) -> dict[str, np.ndarray]:
    return {k: p.data().asnumpy().copy() for k, p in _tensors(net, spec).items()}


def set_arrays(net: Classifier, spec: ClassifierSpec, arrays: dict[str, np.ndarray], strict: bool = True) -> None:
    """Load neutral arrays; strict=False loads what is there (a pretrained backbone without head)."""
    for k, p in _tensors(net, spec).items():
        if k in arrays or strict:
            p.set_data(mx.nd.array(arrays[k], dtype=p.dtype))


def to_device(net: Classifier, array: np.ndarray) -> mx.nd.NDArray:
    p = next(iter(net.collect_params().values()))
    return mx.nd.array(np.asarray(array), ctx=p.list_ctx()[0], dtype=p.dtype)


def forward(net: Classifier, x: np.ndarray, mode: str = "eval") -> np.ndarray:
    """Logits. 'train': every BatchNorm on batch statistics (running ones move; Gluon needs
    autograd.train_mode() for that: difference 'train-eval'); 'eval': running statistics."""
    with autograd.train_mode() if mode == "train" else contextlib.nullcontext():
        return net(to_device(net, x)).asnumpy()


def param_count(net: Classifier, part: str | None = None) -> int:
    """Trainable values (grad_req not 'null'), of the whole net or one part ('backbone', 'head')."""
    block = getattr(net, part) if part else net
    return sum(p.data().size for p in block.collect_params().values() if p.grad_req != "null")


class ClassifierTrainer:
    """The d2l Gluon loop body: with autograd.record(): l = loss(net(X), y); l.backward();
    trainer.step(batch_size), with gluon.Trainer(head params, 'sgd', {learning_rate, momentum, wd})
    and the per-sample SoftmaxCrossEntropyLoss (step(batch_size) makes it a batch mean).

    Frozen backbone: grad_req 'null' on its parameters, and it runs outside autograd.record()
    (no graph to keep). bn_frozen_eval=False runs it under autograd.train_mode() (batch statistics,
    running statistics moving, as seed 000's PyTorch port does); True in predict mode."""

    def __init__(self, spec: ClassifierSpec, net: Classifier, recipe: FinetuneRecipe | None = None):
        self.spec, self.net, self.recipe = spec, net, recipe or spec.recipe
        r = self.recipe
        for name, p in net.backbone.collect_params().items():
            if not name.endswith(BUFFER_NAMES):
                p.grad_req = "null" if r.freeze_backbone else "write"
        params = net.head.collect_params() if r.freeze_backbone else net.collect_params()
        self.trainer = gluon.Trainer(params, "sgd", {"learning_rate": r.lr, "momentum": r.momentum,
                                                     "wd": r.weight_decay})
        self.loss = gluon.loss.SoftmaxCrossEntropyLoss()
        self.lr = r.lr
        self.batch = 1

    def set_lr(self, lr: float) -> None:
        """MXNet keeps lr inside its momentum state (state = m * state + lr * (g + wd * w)); scaling
        the state by lr_new / lr_old makes the decay act as PyTorch's param_group['lr'] = lr does."""
        for updater in self.trainer._updaters:
            for state in updater.states.values():
                if state is not None:
                    state *= lr / self.lr
        self.trainer.set_learning_rate(lr)
        self.lr = lr

    def backward(self, x: np.ndarray, y: np.ndarray) -> float:
        """Forward, per-sample cross-entropy, backward; no update. Returns the batch-mean loss."""
        train_bn = not self.recipe.bn_frozen_eval
        xb, yb = to_device(self.net, x), to_device(self.net, np.asarray(y, np.float32))
        self.batch = xb.shape[0]
        if self.recipe.freeze_backbone:
            with autograd.train_mode() if train_bn else autograd.predict_mode():
                feats = self.net.backbone(xb)
            with autograd.record():
                loss = self.loss(self.net.head(feats), yb)
        else:
            with autograd.record(train_mode=train_bn):
                loss = self.loss(self.net(xb), yb)
        loss.backward()
        return float(loss.mean().asscalar())

    def update(self) -> None:
        self.trainer.step(self.batch)

    def step(self, x: np.ndarray, y: np.ndarray) -> float:
        loss = self.backward(x, y)
        self.update()
        return loss

    def grads(self) -> dict[str, np.ndarray]:
        """Gradients of the trainable tensors by neutral name, as batch means (per-sample sums / B:
        difference 'loss-reduction')."""
        return {k: p.grad().asnumpy() / self.batch for k, p in _tensors(self.net, self.spec).items()
                if k.rsplit(".", 1)[1] not in BUFFER_NAMES and p.grad_req != "null"}


# -- pretrained files: the Gluon model zoo's resnet_v1 save_parameters layout ---------------------

SUFFIX = ".params"


def load_pretrained(path: str | os.PathLike, spec: ClassifierSpec) -> dict[str, np.ndarray]:
    """vision.resnet34_v1().save_parameters(path) -> neutral backbone arrays (+ fc.* from output.*)."""
    loaded = read_file(path)
    return pretrained.from_gluon({k: v.asnumpy() for k, v in loaded.items()}, spec, repr(str(path)))


def save_pretrained(path: str | os.PathLike, arrays: dict[str, np.ndarray], spec: ClassifierSpec) -> Path:
    nd = {k: mx.nd.array(v, dtype=v.dtype) for k, v in pretrained.to_gluon(arrays, spec).items()}
    return atomic_write(path, lambda tmp: mx.nd.save(tmp, nd))
