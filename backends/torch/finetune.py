"""The fine-tune recipe in PyTorch: source 000's loop body on a built backbone and head.

Mirrors backends/mxnet/finetune.py function by function. Both nets come from build.py's one
builder (the backbone is a ResNet stack, the head a Linear-ReLU-Linear stack).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ...common.differences import emulated
from ...common.spec.finetune import FinetuneRecipe, FinetuneSpec
from ...common.spec.layers import BUFFER_NAMES
from .build import _tensors, to_device


def logits(backbone: nn.Module, head: nn.Module, x: np.ndarray, mode: str = "eval") -> np.ndarray:
    """head(backbone(x)). 'train': every BatchNorm on batch statistics (running ones move);
    'eval': running statistics."""
    backbone.train(mode == "train")
    head.train(mode == "train")
    with torch.no_grad():
        return head(backbone(to_device(backbone, x))).cpu().numpy()


class FinetuneTrainer:
    """Source 000's loop body: optimizer.zero_grad(); l = CrossEntropyLoss()(net(X), y); l.backward();
    optimizer.step(), with optim.SGD(net.fc.parameters(), lr, momentum=0.9, weight_decay=wd).

    Frozen backbone: requires_grad False on its parameters, only the head in the optimizer.
    bn_frozen_eval=False leaves the backbone in train mode (source 000: batch statistics, running
    statistics moving); True puts it in eval mode for the step."""

    def __init__(self, spec: FinetuneSpec, backbone: nn.Module, head: nn.Module, recipe: FinetuneRecipe | None = None,
                 naive: frozenset[str] = frozenset()):
        self.spec, self.backbone, self.head, self.recipe = spec, backbone, head, recipe or spec.recipe
        r = self.recipe
        self.emulate = emulated(r.semantics, "torch", naive)
        for p in backbone.parameters():
            p.requires_grad_(not r.freeze_backbone)
        params = list(head.parameters()) if r.freeze_backbone else [*backbone.parameters(), *head.parameters()]
        self.optimizer = torch.optim.SGD(params, lr=r.lr, momentum=r.momentum, weight_decay=r.weight_decay)
        self.loss = nn.CrossEntropyLoss()
        self.lr = r.lr

    def set_lr(self, lr: float) -> None:
        """The source's decay: param_group['lr'] = lr (the momentum buffer is kept as it is).
        Emulating MXNet ('sgd-momentum'), whose buffer holds lr * momentum: the buffers are scaled
        by lr_old / lr_new, so the old momentum keeps the old lr inside it."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr
            if "sgd-momentum" in self.emulate:
                for p in group["params"]:
                    buf = self.optimizer.state.get(p, {}).get("momentum_buffer")
                    if buf is not None:
                        buf.mul_(self.lr / lr)
        self.lr = lr

    def backward(self, x: np.ndarray, y: np.ndarray) -> float:
        """Forward, mean cross-entropy, backward; no update. Returns the loss."""
        self.backbone.train(not self.recipe.bn_frozen_eval)
        self.head.train()
        self.optimizer.zero_grad()
        out = self.head(self.backbone(to_device(self.backbone, x)))
        loss = self.loss(out, torch.as_tensor(np.asarray(y), dtype=torch.long, device=out.device))
        loss.backward()
        return float(loss.item())

    def update(self) -> None:
        self.optimizer.step()

    def step(self, x: np.ndarray, y: np.ndarray) -> float:
        loss = self.backward(x, y)
        self.update()
        return loss

    def grads(self) -> dict[str, np.ndarray]:
        """Gradients of the trainable tensors by neutral name (batch means, PyTorch's own)."""
        live = _tensors(self.backbone, self.spec.backbone) | _tensors(self.head, self.spec.head)
        return {k: t.grad.detach().cpu().numpy().copy() for k, t in live.items()
                if k.rsplit(".", 1)[1] not in BUFFER_NAMES and t.grad is not None}
