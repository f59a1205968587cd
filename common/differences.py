"""The known differences between PyTorch and MXNet Gluon, as data, each handled in both directions.

Two kinds:
- 'convention': the frameworks spell the same computation differently (a momentum written the
  other way round, a default that differs). Each backend always gets the spec's behaviour.
- 'semantics': the frameworks compute different numbers for the "same" code (where Adam adds eps,
  when BatchNorm moves its statistics). A spec names whose numbers it follows (Semantics, in its
  recipe); each backend is native where its framework already behaves so and emulates the other
  framework otherwise.

`naive={key}` builds a backend as a first port would, in either direction: backends/torch as a
naive port of Gluon code, backends/mxnet as a naive port of PyTorch code (for a 'semantics' key:
the backend's own framework's numbers even where the spec follows the other's). The tests use it
to show each naive port diverging and the handled one agreeing (tests/test_differences.py), and
`ganparity differences` prints this table (docs/differences.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .errors import choose
from .spec.model import Semantics


@dataclass(frozen=True)
class Difference:
    key: str
    title: str
    kind: Literal["convention", "semantics"]
    torch: str  # what PyTorch does
    gluon: str  # what MXNet Gluon does
    in_torch: str  # how backends/torch gets the spec's behaviour ('semantics': how it emulates MXNet's)
    in_mxnet: str  # how backends/mxnet gets it ('semantics': how it emulates PyTorch's)
    naive_torch: str  # what naive={key} does in backends/torch: a naive port of Gluon code
    naive_mxnet: str  # what naive={key} does in backends/mxnet: a naive port of PyTorch code


_NATIVE = "its own framework's numbers, even where the spec follows the other's"

DIFFERENCES: tuple[Difference, ...] = (
    Difference(
        "bn-momentum", "BatchNorm momentum convention", "convention",
        "running = (1 - m) * running + m * batch, default m = 0.1",
        "running = m * running + (1 - m) * batch, default m = 0.9",
        "specs store PyTorch's convention: nn.BatchNorm2d(momentum=m)",
        "nn.BatchNorm(momentum=1 - m)",
        "copy Gluon's momentum (1 - m) into nn.BatchNorm2d: the running stats follow the last batch",
        "pass the spec's momentum to Gluon unchanged (0.1 means the running stats follow the last batch)",
    ),
    Difference(
        "bn-stats", "BatchNorm running statistics: when they move, which variance, in what order", "semantics",
        "unbiased batch variance (n / (n - 1)), updated in every train-mode forward, in forward order",
        "biased variance on CPU (unbiased with cuDNN), updated in backward, so in backward order (the D "
        "step's fake batch before its real one) and never for a forward without backward (a detached "
        "fake leaves G's statistics alone)",
        "emulates MXNet: EmulatedStatsBatchNorm takes the batch moments from F.batch_norm (into scratch "
        "buffers) and a hook on the output's gradient moves the running stats, biased, when backward "
        "reaches the layer",
        "emulates PyTorch: EmulatedStatsBatchNorm freezes the native update (momentum 1.0) and moves the "
        "running stats in every train-mode forward, unbiased (a hybridized graph skips it)",
        _NATIVE, _NATIVE,
    ),
    Difference(
        "train-eval", "Train and eval mode", "convention",
        "module.train() / module.eval() flags decide batch or running statistics",
        "batch statistics only inside autograd.record() or autograd.train_mode()",
        "net.train(mode == 'train') before every forward",
        "mode='train' forwards run inside autograd.train_mode() (record() in steps)",
        "forget net.eval(): an 'eval' forward (Gluon's plain call) still uses batch statistics",
        "call the net outside record(): a 'train' forward silently uses running statistics",
    ),
    Difference(
        "loss-reduction", "Loss reduction and Trainer.step scaling", "convention",
        "losses average over the batch by default (reduction='mean')",
        "losses are per sample; Trainer.step(batch_size) rescales gradients by 1 / batch_size",
        "batch-mean losses (reduction='mean')",
        "per-sample losses and trainer.step(batch_size), as the Gluon source does; exported gradients "
        "are divided by the batch size",
        "backpropagate the sum of the per-sample losses, as Gluon code does, without Trainer.step's "
        "1 / batch_size (reduction='sum'): gradients batch_size times too large",
        "trainer.step(1): gradients batch_size times too large",
    ),
    Difference(
        "grad-req", "grad_req 'write' versus accumulation", "convention",
        "backward() accumulates into .grad until zero_grad(); the tutorial relies on it "
        "(errD_real.backward(); errD_fake.backward())",
        "grad_req='write' (the default) overwrites: two backward() calls keep only the second, and no "
        "zero_grad() is needed",
        "zero_grad() before each backward pass of a step, as the PyTorch sources do",
        "for recipes with separate D backward passes, grad_req='add' on D and zero_grad() before each D step",
        "no zero_grad(), as Gluon code with grad_req='write' needs none: gradients pile up across steps",
        "leave grad_req='write': the real-batch gradient is lost",
    ),
    Difference(
        "init", "Initialisers", "convention",
        "weights_init / normal_ as each source writes it; defaults are kaiming-uniform",
        "initialize(Normal(0.02)) touches weights only (gamma 1, beta 0, bias 0); default Uniform(0.07)",
        "initial weights drawn once in numpy from the spec's init scheme, loaded with tensor.copy_()",
        "initial weights drawn once in numpy from the spec's init scheme, loaded with param.set_data()",
        "keep PyTorch's own initialisation and random stream",
        "keep Gluon's own initialisation and random stream",
    ),
    Difference(
        "adam-eps", "Adam epsilon placement", "semantics",
        "lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)",
        "lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps): eps is not bias-corrected",
        "emulates MXNet: eps / sqrt(1 - b2^t) in the parameter group before step t",
        "emulates PyTorch: epsilon = eps * sqrt(1 - b2^t) before each step t",
        _NATIVE, _NATIVE,
    ),
    Difference(
        "adam-betas", "Adam betas rounded to float32 inside MXNet (found by this suite)", "semantics",
        "1 - beta2 and the bias correction 1 - beta2^t both computed in double precision",
        "the adam_update op takes beta1/beta2 as float32 (0.999 -> 0.9990000129), so its (1 - beta2) "
        "is 1.3e-5 smaller than the Python-side bias correction assumes: the first step is 6.4e-6 too large",
        "emulates MXNet: torch.optim.Adam gets the float32-rounded betas, and lr at step t is rescaled "
        "by the ratio of the double-precision bias corrections to the float32 ones",
        "emulates PyTorch: the optimizer gets the float32-rounded betas, so the op and the bias "
        "correction agree (PyTorch then differs by a 1.3e-8 change in the decay rate)",
        _NATIVE, _NATIVE,
    ),
    Difference(
        "bce-clamp", "BCE on probabilities: clamping", "semantics",
        "nn.BCELoss clamps log(p) at -100 (loss at most 100); gradient (p - y) / max(p(1 - p), 1e-12)",
        "SigmoidBinaryCrossEntropyLoss(from_sigmoid=True) computes log(p + 1e-12): at most 27.6",
        "emulates MXNet: Gluon's -(y log(p + 1e-12) + (1 - y) log(1 - p + 1e-12)) in torch ops, its "
        "gradient from autograd",
        "emulates PyTorch: the clamped BCE and its gradient from native ops (the logits forms, "
        "'bce_logits', already agree)",
        _NATIVE, _NATIVE,
    ),
    Difference(
        "sgd-momentum", "SGD momentum and a change of lr", "semantics",
        "buf = m * buf + (g + wd * w); w -= lr * buf: a new lr scales the whole next step",
        "mom = m * mom - lr * (g + wd * w); w += mom: lr sits inside the buffer, so a new lr reaches "
        "the old momentum only as it decays",
        "emulates MXNet: at an lr change, the momentum buffers are scaled by lr_old / lr_new",
        "emulates PyTorch: at an lr change, the momentum states are scaled by lr_new / lr_old",
        _NATIVE, _NATIVE,
    ),
    Difference(
        "leaky-slope", "LeakyReLU slope", "convention",
        "nn.LeakyReLU() defaults to 0.01",
        "nn.LeakyReLU(alpha) has no default; the raw mx.nd.LeakyReLU op defaults to 0.25",
        "the spec always carries the slope: nn.LeakyReLU(slope)",
        "the spec always carries the slope: nn.LeakyReLU(slope)",
        "nn.LeakyReLU(): PyTorch's default 0.01",
        "the raw MXNet op's default 0.25",
    ),
    Difference(
        "dense-flatten", "Dense flattens its input", "convention",
        "nn.Linear acts on the last axis",
        "nn.Dense(flatten=True) by default reshapes (N, ...) to (N, prod(...)) first",
        "a Flatten layer in the spec says where to flatten: nn.Flatten()",
        "Dense(flatten=False); the spec's Flatten is nn.Flatten()",
        "port Dense to nn.Linear and drop the flatten it implied: the Linear meets an unflattened input",
        "keep Gluon's default flatten=True",
    ),
)

BY_KEY = {d.key: d for d in DIFFERENCES}
SEMANTIC_KEYS = tuple(d.key for d in DIFFERENCES if d.kind == "semantics")


def check_naive(naive) -> frozenset[str]:
    """Validate a set of difference keys (a bad key lists the valid ones)."""
    return frozenset(choose("difference", k, BY_KEY) for k in (naive or ()))


def native(semantics: Semantics, key: str, framework: str, naive=frozenset()) -> bool:
    """Does a backend of `framework` compute this semantic difference its own framework's way?
    Yes where the spec follows that framework, or where the port is naive about it."""
    return key in naive or semantics.follows(key) == framework


def emulated(semantics: Semantics, framework: str, naive=frozenset()) -> tuple[str, ...]:
    """The semantic differences a backend of `framework` must emulate for these semantics."""
    return tuple(k for k in SEMANTIC_KEYS if not native(semantics, k, framework, naive))
