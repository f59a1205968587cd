"""ClassifierSpec -> torch.nn.Module (ResNet backbone + head); neutral arrays; one SGD step.

Mirrors backends/mxnet/resnet.py function by function. The module's own state_dict names are the
neutral names ('backbone.4.0.body.0.weight', 'head.2.bias'): nn.Sequential numbers its children
and Residual keeps 'body' and 'downsample', as the spec does.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from common import pretrained
from common.spec.classifier import ClassifierSpec, FinetuneRecipe
from common.spec.layers import BUFFER_NAMES, Residual, Sequential
from common.weights import atomic_write

from .build import build as build_stack
from .checkpoint import read_file
from .device import resolve
from .layers import layer_call


class ResidualBlock(nn.Module):
    """ReLU(body(x) + downsample(x)); an empty downsample is the identity."""

    def __init__(self, body: nn.Sequential, downsample: nn.Sequential):
        super().__init__()
        self.body, self.downsample = body, downsample

    def forward(self, x):
        return torch.relu(self.body(x) + self.downsample(x))


class Classifier(nn.Module):
    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, x):
        return self.head(self.backbone(x))


def _build_layers(layers: tuple, in_shape: tuple[int, ...]) -> nn.Sequential:
    from common import shapes

    blocks, shape = [], tuple(in_shape)
    for layer in layers:
        if isinstance(layer, Sequential):
            block = _build_layers(layer.layers, shape)
        elif isinstance(layer, Residual):
            block = ResidualBlock(_build_layers(layer.body, shape), _build_layers(layer.downsample, shape))
        else:
            name, args, kwargs = layer_call(layer, shape)
            block = getattr(nn, name)(*args, **kwargs)
        blocks.append(block)
        shape = shapes.output_shape(layer, shape)
    return nn.Sequential(*blocks)


def build_classifier(spec: ClassifierSpec, device: str = "cpu", dtype: str = "float32") -> Classifier:
    """Framework default weights until set_arrays() loads neutral ones (pretrained.init_classifier)."""
    net = Classifier(_build_layers(spec.backbone.layers, spec.backbone.input_shape), build_stack(spec.head))
    return net.to(device=resolve(device), dtype=getattr(torch, dtype))


def _tensors(net: Classifier, spec: ClassifierSpec) -> dict[str, torch.Tensor]:
    """Neutral name -> live tensor, in spec order (backbone, then head)."""
    from common import shapes

    live = dict(net.named_parameters()) | dict(net.named_buffers())
    return {k: live[k] for k in [*shapes.tensor_shapes(spec.backbone), *shapes.tensor_shapes(spec.head)]}


def get_arrays(net: Classifier, spec: ClassifierSpec) -> dict[str, np.ndarray]:
    return {k: t.detach().cpu().numpy().copy() for k, t in _tensors(net, spec).items()}


def set_arrays(net: Classifier, spec: ClassifierSpec, arrays: dict[str, np.ndarray], strict: bool = True) -> None:
    """Load neutral arrays; strict=False loads what is there (a pretrained backbone without head)."""
    with torch.no_grad():
        for k, t in _tensors(net, spec).items():
            if k in arrays or strict:
                t.copy_(torch.as_tensor(arrays[k], dtype=t.dtype))


def to_device(net: Classifier, array: np.ndarray) -> torch.Tensor:
    p = next(iter(net.parameters()))
    return torch.as_tensor(np.asarray(array), device=p.device, dtype=p.dtype)


def forward(net: Classifier, x: np.ndarray, mode: str = "eval") -> np.ndarray:
    """Logits. 'train': every BatchNorm on batch statistics (running ones move); 'eval': running."""
    net.train(mode == "train")
    with torch.no_grad():
        return net(to_device(net, x)).cpu().numpy()


def param_count(net: Classifier, part: str | None = None) -> int:
    """Trainable values (requires_grad), of the whole net or one part ('backbone', 'head')."""
    module = getattr(net, part) if part else net
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


class ClassifierTrainer:
    """Seed 000's loop body: optimizer.zero_grad(); l = CrossEntropyLoss()(net(X), y); l.backward();
    optimizer.step(), with optim.SGD(net.fc.parameters(), lr, momentum=0.9, weight_decay=wd).

    Frozen backbone: requires_grad False on its parameters, only the head in the optimizer.
    bn_frozen_eval=False leaves the backbone in train mode (seed 000: batch statistics, running
    statistics moving); True puts it in eval mode for the step."""

    def __init__(self, spec: ClassifierSpec, net: Classifier, recipe: FinetuneRecipe | None = None):
        self.spec, self.net, self.recipe = spec, net, recipe or spec.recipe
        r = self.recipe
        for p in net.backbone.parameters():
            p.requires_grad_(not r.freeze_backbone)
        params = net.head.parameters() if r.freeze_backbone else net.parameters()
        self.optimizer = torch.optim.SGD(params, lr=r.lr, momentum=r.momentum, weight_decay=r.weight_decay)
        self.loss = nn.CrossEntropyLoss()
        self.lr = r.lr

    def set_lr(self, lr: float) -> None:
        """The seed's decay: param_group['lr'] = lr (the momentum buffer is kept as it is)."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.lr = lr

    def _modes(self) -> None:
        self.net.train()
        if self.recipe.bn_frozen_eval:
            self.net.backbone.eval()

    def backward(self, x: np.ndarray, y: np.ndarray) -> float:
        """Forward, mean cross-entropy, backward; no update. Returns the loss."""
        self._modes()
        self.optimizer.zero_grad()
        logits = self.net(to_device(self.net, x))
        loss = self.loss(logits, torch.as_tensor(np.asarray(y), dtype=torch.long, device=logits.device))
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
        return {k: t.grad.detach().cpu().numpy().copy() for k, t in _tensors(self.net, self.spec).items()
                if k.rsplit(".", 1)[1] not in BUFFER_NAMES and t.grad is not None}


# -- pretrained files: torchvision's resnet state_dict layout -------------------------------------

SUFFIX = ".pth"


def load_pretrained(path: str | os.PathLike, spec: ClassifierSpec) -> dict[str, np.ndarray]:
    """torch.save(torchvision.models.resnet34().state_dict()) -> neutral backbone arrays (+ fc.*)."""
    state = read_file(path)
    return pretrained.from_torchvision({k: v.numpy() for k, v in state.items()}, spec, repr(str(path)))


def save_pretrained(path: str | os.PathLike, arrays: dict[str, np.ndarray], spec: ClassifierSpec) -> Path:
    state = {k: torch.as_tensor(v) for k, v in pretrained.to_torchvision(arrays, spec).items()}
    return atomic_write(path, lambda tmp: torch.save(state, tmp))
