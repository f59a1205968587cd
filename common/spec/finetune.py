"""The fine-tune spec: a frozen backbone and a trainable head, as frozen data.

resnet34_finetune mirrors source 000's Kaggle dog-breed notebook: torchvision's ResNet-34 (v1: the
stride sits in the first 3x3 conv of a block, as in the Gluon model zoo's resnet34_v1), its fc
replaced by Linear(512, 256)-ReLU-Linear(256, 120), the backbone frozen, only the head trained
with SGD(lr 0.03, momentum 0.9, weight_decay 1e-4), lr x0.1 every 10 epochs, 20 epochs, batch 128.

Neutral tensor names follow the spec structure, which is the Gluon model zoo's own layout with
'features' renamed 'backbone' and gamma/beta called weight/bias:

    backbone.0.weight                      stem conv 7x7/2            (torchvision conv1.weight)
    backbone.1.{weight,bias,running_*}     stem BatchNorm             (bn1.*)
    backbone.2 ReLU, backbone.3 MaxPool 3x3/2
    backbone.<4+s>.<b>.body.0.weight       stage s block b, conv 3x3  (layer<s+1>.<b>.conv1.weight)
    backbone.<4+s>.<b>.body.1.*            its BatchNorm              (layer<s+1>.<b>.bn1.*)
    backbone.<4+s>.<b>.body.3.weight / .4.* the second conv and BN    (conv2 / bn2)
    backbone.<4+s>.<b>.downsample.0/.1.*   1x1 conv + BN shortcut     (layer<s+1>.<b>.downsample.0/1)
    backbone.8 GlobalAvgPool2d, backbone.9 Flatten
    head.0.{weight,bias}, head.2.{weight,bias}   Linear(512,256), ReLU, Linear(256,num_classes)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import choose
from .layers import (
    BatchNorm,
    Conv2d,
    Flatten,
    GlobalAvgPool2d,
    Linear,
    MaxPool2d,
    ReLU,
    Residual,
    Sequential,
)
from .model import FRAMEWORKS, InitScheme, ModelSpec, Semantics


@dataclass(frozen=True)
class FinetuneRecipe:
    """Source 000's fine-tune loop.

    lr schedule:    lr * lr_decay ** (epoch // lr_period)  (set at the start of an epoch, as the source).
    SGD:            PyTorch's form, buf = m * buf + (g + wd * w); w -= lr * buf. MXNet's sgd_mom_update
                    folds lr into its momentum state (mom = m * mom - lr * (g + wd * w)); the two agree
                    while lr is constant, and the mxnet backend rescales its state by lr_new / lr_old
                    when lr changes so that both follow the PyTorch form across the decay.
    loss:           mean softmax cross-entropy over the batch (torch CrossEntropyLoss; Gluon's
                    per-sample SoftmaxCrossEntropyLoss with trainer.step(batch_size)).
    freeze_backbone: only the head is given to the optimizer (requires_grad False / grad_req 'null').
    bn_frozen_eval: what the frozen backbone's BatchNorm does while the head trains.
                    False (source 000's PyTorch port, the default here): net.train() puts every
                    BatchNorm in training mode, so the backbone normalises with batch statistics and
                    its running mean/var keep moving although no weight is trained.
                    True (the d2l MXNet version: features computed outside autograd.record()): the
                    backbone runs in inference mode, running statistics used and never changed.
    semantics:      whose numbers it follows where the frameworks differ: the BatchNorm statistics
                    and the SGD momentum buffer across an lr change (source 000 is PyTorch's).
    """

    batch_size: int = 128
    epochs: int = 20
    lr: float = 0.03
    momentum: float = 0.9
    weight_decay: float = 1e-4
    lr_period: int = 10
    lr_decay: float = 0.1
    freeze_backbone: bool = True
    bn_frozen_eval: bool = False
    semantics: Semantics = Semantics()

    def lr_at(self, epoch: int) -> float:
        return self.lr * self.lr_decay ** (epoch // self.lr_period)


# The ImageNet classifier a pretrained ResNet file carries beside the backbone (torchvision's fc,
# the Gluon model zoo's output): read and written with the backbone, never part of the spec.
IMAGENET_FC = ("fc.weight", "fc.bias")

# Source 000: torchvision's ResNet-34 draws its convs kaiming_normal_(mode='fan_out'), BatchNorm
# weight 1 and bias 0; the new head keeps torch.nn.Linear's default init.
RESNET_INIT = InitScheme("torchvision-resnet", bn_weight_std=0.0, weight="kaiming-fan-out",
                         source_code="torchvision.models.resnet34(): kaiming_normal_(fan_out) convs, BN 1 / 0")
TORCH_LINEAR_INIT = InitScheme("torch-linear-default", bn_weight_std=0.0, weight="torch-linear", bias="torch-linear",
                               source_code="nn.Linear's reset_parameters: U(-1/sqrt(fan_in), 1/sqrt(fan_in))")


@dataclass(frozen=True)
class FinetuneSpec:
    name: str
    source: str
    description: str
    backbone: ModelSpec
    head: ModelSpec
    num_classes: int
    image_size: int
    recipe: FinetuneRecipe
    params: dict = field(default_factory=dict, compare=False)
    backbone_init: InitScheme = RESNET_INIT
    head_init: InitScheme = TORCH_LINEAR_INIT

    @property
    def nets(self) -> dict[str, ModelSpec]:
        return {"backbone": self.backbone, "head": self.head}

    @property
    def inits(self) -> dict[str, InitScheme]:
        return {"backbone": self.backbone_init, "head": self.head_init}

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.backbone.input_shape)


def basic_block(c_in: int, c_out: int, stride: int) -> Residual:
    body = (Conv2d(c_in, c_out, 3, stride, 1, bias=False), BatchNorm(c_out), ReLU(),
            Conv2d(c_out, c_out, 3, 1, 1, bias=False), BatchNorm(c_out))
    down = ((Conv2d(c_in, c_out, 1, stride, 0, bias=False), BatchNorm(c_out))
            if stride != 1 or c_in != c_out else ())
    return Residual(body, down)


def resnet_v1(width: int = 64, blocks: tuple[int, ...] = (3, 4, 6, 3), image_size: int = 224,
              name: str = "backbone") -> ModelSpec:
    """ResNet v1 with BasicBlocks: stem, len(blocks) stages of widths width * 2**s, pool, flatten."""
    layers: list = [Conv2d(3, width, 7, 2, 3, bias=False), BatchNorm(width), ReLU(), MaxPool2d(3, 2, 1)]
    c = width
    for s, n in enumerate(blocks):
        c_out = width * 2 ** s
        stage = [basic_block(c if b == 0 else c_out, c_out, 2 if (b == 0 and s > 0) else 1) for b in range(n)]
        layers.append(Sequential(tuple(stage)))
        c = c_out
    layers += [GlobalAvgPool2d(), Flatten()]
    return ModelSpec(name, (3, image_size, image_size), tuple(layers))


def resnet34_finetune(num_classes: int = 120, image_size: int = 224, width: int = 64,
                      blocks: int | tuple[int, ...] = (3, 4, 6, 3), hidden: int = 256,
                      semantics: str = "torch") -> FinetuneSpec:
    """Source 000's finetune_net. Width knobs for tests: width (64), blocks (an int means that many
    per stage), hidden (256), num_classes (120), image_size (224); semantics ('torch')."""
    if isinstance(blocks, int):
        blocks = (blocks,) * 4
    backbone = resnet_v1(width, tuple(blocks), image_size)
    features = width * 2 ** (len(blocks) - 1)
    head = ModelSpec("head", (features,), (Linear(features, hidden), ReLU(), Linear(hidden, num_classes)))
    return FinetuneSpec(
        "resnet34-finetune", "000", "frozen ResNet-34 v1 + Linear(512,256)-ReLU-Linear(256,120)",
        backbone, head, num_classes, image_size,
        FinetuneRecipe(semantics=Semantics.of(choose("semantics", semantics, FRAMEWORKS))),
        dict(num_classes=num_classes, image_size=image_size, width=width, blocks=tuple(blocks), hidden=hidden,
             semantics=semantics))
