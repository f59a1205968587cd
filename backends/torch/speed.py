"""The networks a port's speed is measured against, and one train step and one eval forward of
each (`ganparity bench port-speed`): here torchvision's hand-written twin of a Gluon model-zoo
network; in backends/mxnet/speed.py the Gluon network itself.

Where Gluon's network is not torchvision's, zoo_model(name, edited=True) is torchvision's model
edited into Gluon's network (EDITS), and DIFFERENCES says what differs; model_size counts FLOPs
(torch.utils.flop_counter) and values, so "the same network" is measured, not assumed.
"""

from __future__ import annotations

import copy

import torch
import torchvision
from torch import nn
from torchvision.ops.misc import Conv2dNormActivation

LAYOUTS = ("contiguous", "channels_last")


def _resnet50_v1(m: nn.Module) -> nn.Module:
    """torchvision's resnet50 (v1.5: a bottleneck strides in its 3x3 convolution, its 1x1
    convolutions have no bias) edited into Gluon's resnet50_v1 (the stride in the first 1x1, both
    1x1 convolutions with a bias)."""
    for stage in (m.layer1, m.layer2, m.layer3, m.layer4):
        for b in stage:
            stride = b.conv2.stride
            b.conv1 = nn.Conv2d(b.conv1.in_channels, b.conv1.out_channels, 1, stride=stride, bias=True)
            b.conv2.stride = (1, 1)
            b.conv3 = nn.Conv2d(b.conv3.in_channels, b.conv3.out_channels, 1, bias=True)
    return m


def _mobilenet_v2_1_0(m: nn.Module) -> nn.Module:
    """torchvision's mobilenet_v2 edited into Gluon's mobilenet_v2_1_0: Gluon's first bottleneck
    (expansion t=1) keeps its 1x1 expansion convolution, BatchNorm and ReLU6, which torchvision
    leaves out at t=1; Gluon's head is a 1x1 convolution without bias (torchvision: dropout 0.2 and
    a Linear with bias)."""
    first = m.features[1]
    first.conv = nn.Sequential(Conv2dNormActivation(32, 32, kernel_size=1, activation_layer=nn.ReLU6), *first.conv)
    m.classifier = nn.Linear(1280, 1000, bias=False)
    return m


def _linear_head(m: nn.Module) -> nn.Module:
    """The written model with its head as torchvision writes it: Gluon's 1x1 convolution on the
    pooled 1x1 map, then Flatten, is one matrix product; here Flatten, then nn.Linear holding the
    same weight. One network, one result; only the op that computes it differs."""
    conv = m.output[0]
    head = nn.Linear(conv.in_channels, conv.out_channels, bias=conv.bias is not None)
    with torch.no_grad():
        head.weight.copy_(conv.weight.flatten(1))
        if conv.bias is not None:
            head.bias.copy_(conv.bias)
    m.output = nn.Sequential(nn.Flatten(), head)
    return m


# Gluon zoo name -> torchvision's model of the same network
ZOO = {"resnet18_v1": "resnet18", "resnet34_v1": "resnet34", "resnet50_v1": "resnet50",
       "mobilenet_v2_1_0": "mobilenet_v2", "densenet121": "densenet121", "densenet169": "densenet169",
       "vgg11_bn": "vgg11_bn", "vgg16_bn": "vgg16_bn"}
SPEED_MODELS = tuple(ZOO)
EDITS = {"resnet50_v1": _resnet50_v1, "mobilenet_v2_1_0": _mobilenet_v2_1_0}
# what differs between the Gluon network and torchvision's, said in the results beside the ratios
DIFFERENCES = {
    "resnet50_v1": "Gluon's v1 bottleneck strides in its first 1x1 convolution (torchvision's v1.5 in the 3x3) and "
                   "its 1x1 convolutions have a bias: fewer FLOPs than torchvision's resnet50",
    "mobilenet_v2_1_0": "Gluon's first bottleneck keeps a 1x1 expansion convolution + BatchNorm + ReLU6 at "
                        "expansion 1 (torchvision leaves it out); its head is a 1x1 convolution without bias "
                        "(torchvision: dropout and a Linear with bias)",
    **{v: "torchvision's head starts with AdaptiveAvgPool2d((7, 7)) (an identity at 224 px); otherwise one network"
       for v in ("vgg11_bn", "vgg16_bn")},
}

# the written model edited in one place where a run read x1.02 or more against the twin: timed beside it, the
# edit measures what that place costs
WRITTEN_EDITS = {
    "mobilenet_v2_1_0": (_linear_head, "its head as torchvision writes it: nn.Linear on the flattened pooled map "
                                       "for Gluon's 1x1 convolution and Flatten"),
}


def zoo_model(name: str, edited: bool = True, seed: int = 0) -> tuple[nn.Module, dict]:
    """(torchvision's twin of the Gluon zoo network `name`, {'name', 'edited', 'difference'}: what
    it is, whether it was edited into Gluon's network, what differs between torchvision's network and
    Gluon's); edited=False: the stock torchvision model even where Gluon's network differs."""
    torch.manual_seed(seed)
    m = getattr(torchvision.models, ZOO[name])()
    edit = edited and name in EDITS
    about = {"name": f"torchvision {ZOO[name]}" + (" (edited into Gluon's network)" if edit else ""),
             "edited": edit, "difference": DIFFERENCES.get(name, "")}
    return (EDITS[name](m) if edit else m), about


def edit_written(name: str, model: nn.Module) -> tuple[nn.Module, str] | None:
    """(a copy of the written model of `name` edited in one place, what the edit is) where
    WRITTEN_EDITS has one, else None: timed beside the written model, it names what a ratio beyond
    x1.02 comes from."""
    if name not in WRITTEN_EDITS:
        return None
    edit, what = WRITTEN_EDITS[name]
    return edit(copy.deepcopy(model)), what


def model_size(model: nn.Module, shape: tuple[int, ...]) -> tuple[float | None, int]:
    """(forward GFLOPs at an input of `shape`, parameters and running statistics)."""
    from torch.utils.flop_counter import FlopCounterMode

    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(torch.zeros(shape))
    size = sum(p.numel() for p in model.parameters()) + sum(
        b.numel() for n, b in model.named_buffers() if not n.endswith("num_batches_tracked"))
    return fc.get_total_flops() / 1e9, size


def speed_arms(models: dict, x, labels, layouts: tuple[str, ...] | None = None) -> dict:
    """For each model and layout (None: both), '{name} {layout} train' (SGD with momentum: forward,
    cross-entropy, backward, step) and '{name} {layout} eval' (a forward without gradients), from
    the same input (numpy) and labels."""
    x, y = torch.from_numpy(x), torch.from_numpy(labels).long()
    arms = {}
    for name, model in models.items():
        for layout in layouts or LAYOUTS:
            fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
            m = copy.deepcopy(model).to(memory_format=fmt)  # .to() converts in place: one copy per layout
            xi = x.contiguous(memory_format=fmt)
            opt = torch.optim.SGD(m.parameters(), lr=1e-3, momentum=0.9)

            def train(m=m, xi=xi, opt=opt):
                m.train()
                opt.zero_grad(set_to_none=True)
                loss = nn.functional.cross_entropy(m(xi).flatten(1), y)
                loss.backward()
                opt.step()
                return loss

            def evaluate(m=m, xi=xi):
                m.eval()
                with torch.no_grad():
                    return m(xi)

            arms[f"{name} {layout} train"] = train
            arms[f"{name} {layout} eval"] = evaluate
    return arms
