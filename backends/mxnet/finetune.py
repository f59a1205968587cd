"""The fine-tune recipe in MXNet Gluon: the d2l Gluon loop body on a built backbone and head.

Mirrors backends/torch/finetune.py function by function. Both nets come from build.py's one
builder (the backbone is a ResNet stack, the head a Dense-relu-Dense stack).
"""

from __future__ import annotations

import numpy as np
from mxnet import autograd, gluon
from mxnet.gluon import nn

from ...common.differences import emulated
from ...common.spec.finetune import FinetuneRecipe, FinetuneSpec
from ...common.spec.layers import BUFFER_NAMES
from .build import _mode, _tensors, to_device


def logits(backbone: nn.Block, head: nn.Block, x: np.ndarray, mode: str = "eval") -> np.ndarray:
    """head(backbone(x)). 'train': every BatchNorm on batch statistics (running ones move; Gluon
    needs autograd.train_mode() for that: difference 'train-eval'); 'eval': running statistics."""
    with _mode(mode, frozenset()):
        return head(backbone(to_device(backbone, x))).asnumpy()


class FinetuneTrainer:
    """The d2l Gluon loop body: with autograd.record(): l = loss(net(X), y); l.backward();
    trainer.step(batch_size), with gluon.Trainer(head params, 'sgd', {learning_rate, momentum, wd})
    and the per-sample SoftmaxCrossEntropyLoss (step(batch_size) makes it a batch mean).

    Frozen backbone: grad_req 'null' on its parameters, and it runs outside autograd.record()
    (no graph to keep). bn_frozen_eval=False runs it under autograd.train_mode() (batch statistics,
    running statistics moving, as source 000's PyTorch port does); True in predict mode."""

    def __init__(self, spec: FinetuneSpec, backbone: nn.Block, head: nn.Block, recipe: FinetuneRecipe | None = None,
                 naive: frozenset[str] = frozenset()):
        self.spec, self.backbone, self.head, self.recipe = spec, backbone, head, recipe or spec.recipe
        r = self.recipe
        self.emulate = emulated(r.semantics, "mxnet", naive)
        for name, p in backbone.collect_params().items():
            if not name.endswith(BUFFER_NAMES):
                p.grad_req = "null" if r.freeze_backbone else "write"
        params = head.collect_params()
        if not r.freeze_backbone:
            params.update(backbone.collect_params())
        self.trainer = gluon.Trainer(params, "sgd", {"learning_rate": r.lr, "momentum": r.momentum,
                                                     "wd": r.weight_decay})
        self.loss = gluon.loss.SoftmaxCrossEntropyLoss()
        self.lr = r.lr
        self.batch = 1

    def set_lr(self, lr: float) -> None:
        """trainer.set_learning_rate(lr). MXNet keeps lr inside its momentum state (state = m * state
        - lr * (g + wd * w)); emulating PyTorch ('sgd-momentum'), the state is scaled by lr_new /
        lr_old, so the decay acts as PyTorch's param_group['lr'] = lr does."""
        if "sgd-momentum" in self.emulate:
            for updater in self.trainer._updaters:
                for state in updater.states.values():
                    if state is not None:
                        state *= lr / self.lr
        self.trainer.set_learning_rate(lr)
        self.lr = lr

    def backward(self, x: np.ndarray, y: np.ndarray) -> float:
        """Forward, per-sample cross-entropy, backward; no update. Returns the batch-mean loss."""
        train_bn = not self.recipe.bn_frozen_eval
        xb, yb = to_device(self.backbone, x), to_device(self.head, np.asarray(y, np.float32))
        self.batch = xb.shape[0]
        if self.recipe.freeze_backbone:
            with autograd.train_mode() if train_bn else autograd.predict_mode():
                feats = self.backbone(xb)
            with autograd.record():
                loss = self.loss(self.head(feats), yb)
        else:
            with autograd.record(train_mode=train_bn):
                loss = self.loss(self.head(self.backbone(xb)), yb)
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
        live = _tensors(self.backbone, self.spec.backbone) | _tensors(self.head, self.spec.head)
        return {k: p.grad().asnumpy() / self.batch for k, p in live.items()
                if k.rsplit(".", 1)[1] not in BUFFER_NAMES and p.grad_req != "null"}
