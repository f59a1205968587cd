"""Model and GAN specs: architecture, init scheme and training recipe, all as frozen data.

A spec keeps what its own source tutorial wrote, including the choices that look odd (the d2l
port's BatchNorm eps=0.8, its averaged D loss). The recipe fields name the places where the
sources' training loops differ, so one training step per backend can run every spec.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Literal

from .layers import Layer


@dataclass(frozen=True)
class ModelSpec:
    """A feed-forward stack. Tensor names are '<name>.<layer index>.<tensor>', e.g. 'G.1.weight'."""

    name: str
    input_shape: tuple[int, ...]  # one sample, no batch axis
    layers: tuple[Layer, ...]


@dataclass(frozen=True)
class InitScheme:
    """How the source draws initial weights, tensor by tensor in spec order from one numpy stream.

    weight: 'normal'           Linear/Conv/ConvTranspose weight ~ N(0, weight_std)
            'kaiming-fan-out'  ~ N(0, 2 / fan_out), fan_out = out_channels * k * k (torchvision's ResNet)
            'torch-linear'     ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (torch.nn.Linear's default)
    bias:   'zeros', or 'torch-linear' (the same uniform as the weight, torch.nn.Linear's default)
    BatchNorm weight (gamma) ~ N(1, bn_weight_std) (0 means exactly 1); BatchNorm beta 0, running
    mean 0, running var 1.
    """

    name: str
    weight_std: float = 0.02
    bn_weight_std: float = 0.02
    source_code: str = ""  # the source's own words, for the porting sheet
    weight: Literal["normal", "kaiming-fan-out", "torch-linear"] = "normal"
    bias: Literal["zeros", "torch-linear"] = "zeros"


DCGAN_INIT = InitScheme(
    "dcgan-weights-init", 0.02, 0.02,
    "weights_init: Conv* weight N(0, 0.02); BatchNorm weight N(1, 0.02), bias 0",
)
GLUON_NORMAL_INIT = InitScheme(
    "gluon-normal", 0.02, 0.0,
    "net.initialize(mx.init.Normal(0.02)): weights N(0, 0.02); gamma 1, beta 0, bias 0 (their own initialisers)",
)
D2L_LINEAR_INIT = InitScheme(
    "d2l-linear", 0.02, 0.0,
    "_initialize_weights: Linear weight.normal_(0, 0.02), bias.zero_()",
)


Framework = Literal["torch", "mxnet"]
FRAMEWORKS: tuple[str, ...] = ("torch", "mxnet")


@dataclass(frozen=True)
class Semantics:
    """Whose numbers a spec follows, for every framework difference that changes numbers
    (common/differences.py, kind 'semantics'): 'torch' or 'mxnet'. A spec follows its source's
    framework; each backend is native where its framework already behaves so, and emulates the
    other framework otherwise.

    adam_eps:      PyTorch adds eps to the bias-corrected sqrt(v_hat); MXNet to the raw sqrt(v)
    adam_betas:    MXNet's adam_update op takes beta1/beta2 as float32, its bias correction doubles
    bn_stats:      PyTorch moves BatchNorm running stats in every train-mode forward, with the
                   unbiased variance; MXNet (CPU) in backward, with the biased one, in backward order
    bce_clamp:     BCE on probabilities: PyTorch clamps log at -100, Gluon computes log(p + 1e-12)
    sgd_momentum:  MXNet keeps lr inside its momentum buffer, so an lr change acts differently
    """

    adam_eps: Framework = "torch"
    adam_betas: Framework = "torch"
    bn_stats: Framework = "torch"
    bce_clamp: Framework = "torch"
    sgd_momentum: Framework = "torch"

    @classmethod
    def of(cls, framework: str) -> Semantics:
        """Every difference the way one framework computes it."""
        return cls(**dict.fromkeys((f.name for f in fields(cls)), framework))

    def follows(self, key: str) -> str:
        """'adam-eps' -> 'torch' or 'mxnet'."""
        return getattr(self, key.replace("-", "_"))

    @property
    def name(self) -> str:
        """'torch', 'mxnet', or the mixture spelled out."""
        values = {getattr(self, f.name) for f in fields(self)}
        if len(values) == 1:
            return values.pop()
        return ", ".join(f"{f.name.replace('_', '-')}={getattr(self, f.name)}" for f in fields(self))

    @staticmethod
    def keys() -> tuple[str, ...]:
        return tuple(f.name.replace("_", "-") for f in fields(Semantics))


@dataclass(frozen=True)
class Adam:
    lr: float
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8  # PyTorch's placement: lr * m_hat / (sqrt(v_hat) + eps)


@dataclass(frozen=True)
class GANRecipe:
    """One D step then one G step per batch, as the sources write it.

    loss:            'bce' on probabilities (D ends in Sigmoid) or 'bce_logits' (D ends in a logit).
    d_loss:          'sum' -> errD = errD_real + errD_fake (001, 002); 'mean' -> (real + fake) / 2 (000, 003).
    d_backward:      'separate' -> errD_real.backward(); errD_fake.backward(), gradients accumulate
                     (001); 'joint' -> one backward of errD (000, 002, 003).
    detach_fake:     the D step sees fake.detach() (001, 002) or a graph through G (000, 003).
    regenerate_fake: the G step calls G(z) again (000, 002, 003) or reuses the D step's fake (001);
                     it decides how often G's BatchNorm running statistics move per step.
    sample_mode:     how the source draws its pictures: 'train' (001 and 000 never call netG.eval():
                     batch statistics) or 'eval' (002 calls netG outside autograd.record(): running
                     statistics).
    semantics:       whose numbers the recipe follows where the frameworks differ (Semantics).
    """

    batch_size: int
    epochs: int
    opt_D: Adam
    opt_G: Adam
    loss: Literal["bce", "bce_logits"] = "bce"
    d_loss: Literal["sum", "mean"] = "sum"
    d_backward: Literal["separate", "joint"] = "joint"
    detach_fake: bool = True
    regenerate_fake: bool = False
    shuffle: bool = True
    real_label: float = 1.0
    fake_label: float = 0.0
    sample_mode: Literal["train", "eval"] = "train"
    semantics: Semantics = Semantics()


@dataclass(frozen=True)
class GANSpec:
    name: str
    source: str  # the source tutorial(s) it mirrors (../shared/seeds)
    description: str
    G: ModelSpec
    D: ModelSpec
    latent_shape: tuple[int, ...]
    init: InitScheme
    recipe: GANRecipe
    params: dict = field(default_factory=dict, compare=False)  # the width knobs it was built with

    @property
    def nets(self) -> dict[str, ModelSpec]:
        return {"G": self.G, "D": self.D}

    @property
    def inits(self) -> dict[str, InitScheme]:
        return {"G": self.init, "D": self.init}
