"""The known differences between PyTorch and MXNet Gluon, as data.

Each backend handles every one of them explicitly. A backend built with `naive={key, ...}`
leaves those differences unhandled, as a first port would: the tests use that to show each naive
port diverging and the handled one agreeing, and `ganparity porting` prints this table.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import choose


@dataclass(frozen=True)
class Difference:
    key: str
    title: str
    torch: str  # what PyTorch does
    gluon: str  # what MXNet Gluon does
    handling: str  # what ganparity does about it
    naive: str  # what `naive={key}` does instead


DIFFERENCES: tuple[Difference, ...] = (
    Difference(
        "bn-momentum", "BatchNorm momentum convention",
        "running = (1 - m) * running + m * batch, default m = 0.1",
        "running = m * running + (1 - m) * batch, default m = 0.9",
        "specs store the PyTorch convention; backends/mxnet builds BatchNorm with momentum = 1 - m",
        "pass the spec's momentum to Gluon unchanged (0.1 means the running stats follow the last batch)",
    ),
    Difference(
        "bn-variance", "BatchNorm running variance and when it moves",
        "unbiased batch variance (n / (n - 1)), updated in every train-mode forward",
        "biased variance on CPU (unbiased with cuDNN), updated in backward, never for a forward "
        "without backward",
        "backends/mxnet freezes the native update (momentum 1.0) and updates the running stats "
        "itself in a forward hook, with the unbiased variance and the spec's momentum",
        "let MXNet update the running stats natively",
    ),
    Difference(
        "train-eval", "Train and eval mode",
        "module.train() / module.eval() flags decide batch or running statistics",
        "batch statistics only inside autograd.record() or autograd.train_mode()",
        "backends/mxnet runs mode='train' forwards inside autograd.train_mode() (record() in steps)",
        "call the net outside record(): a 'train' forward silently uses running statistics",
    ),
    Difference(
        "loss-reduction", "Loss reduction and Trainer.step scaling",
        "losses average over the batch by default (reduction='mean')",
        "losses are per sample; Trainer.step(batch_size) rescales gradients by 1 / batch_size",
        "backends/mxnet backpropagates the per-sample losses and calls trainer.step(batch_size), "
        "as the Gluon source does; exported gradients are divided by the batch size",
        "trainer.step(1): gradients batch_size times too large",
    ),
    Difference(
        "grad-req", "grad_req 'write' versus accumulation",
        "backward() accumulates into .grad until zero_grad(); the tutorial relies on it "
        "(errD_real.backward(); errD_fake.backward())",
        "grad_req='write' (the default) overwrites: two backward() calls keep only the second",
        "for recipes with separate D backward passes, backends/mxnet sets grad_req='add' on D and "
        "zeroes its gradients before each D step",
        "leave grad_req='write': the real-batch gradient is lost",
    ),
    Difference(
        "init", "Initialisers",
        "weights_init / normal_ as each source writes it; defaults are kaiming-uniform",
        "initialize(Normal(0.02)) touches weights only (gamma 1, beta 0, bias 0); default Uniform(0.07)",
        "initial weights are drawn once in numpy from the spec's init scheme and loaded into both",
        "each framework draws its own weights with its own initialiser and random stream",
    ),
    Difference(
        "adam-eps", "Adam epsilon placement",
        "lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)",
        "lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps): eps is not bias-corrected",
        "backends/mxnet sets epsilon = eps * sqrt(1 - b2^t) before each step t",
        "pass eps unchanged",
    ),
    Difference(
        "adam-beta-f32", "Adam betas rounded to float32 inside MXNet (found by this suite)",
        "1 - beta2 and the bias correction 1 - beta2^t both computed in double precision",
        "the adam_update op takes beta1/beta2 as float32 (0.999 -> 0.9990000129), so its (1 - beta2) "
        "is 1.3e-5 smaller than the Python-side bias correction assumes: the first step is 6.4e-6 too large",
        "backends/mxnet gives the optimizer the float32-rounded betas, so the op and the bias "
        "correction agree (PyTorch then differs by a 1.3e-8 change in the decay rate)",
        "pass the betas unchanged",
    ),
    Difference(
        "bce-clamp", "BCE on probabilities: clamping",
        "nn.BCELoss clamps log(p) at -100 (loss at most 100); gradient (p - y) / max(p(1 - p), 1e-12)",
        "SigmoidBinaryCrossEntropyLoss(from_sigmoid=True) computes log(p + 1e-12): at most 27.6",
        "backends/mxnet computes PyTorch's clamped BCE (forward and gradient) for 'bce' recipes; "
        "the logits forms ('bce_logits') already agree",
        "use SigmoidBinaryCrossEntropyLoss(from_sigmoid=True)",
    ),
    Difference(
        "leaky-slope", "LeakyReLU slope",
        "nn.LeakyReLU() defaults to 0.01",
        "nn.LeakyReLU(alpha) has no default; the raw mx.nd.LeakyReLU op defaults to 0.25",
        "specs always carry the slope; both backends pass it explicitly",
        "leave the slope to each framework's default (torch 0.01, MXNet op 0.25)",
    ),
    Difference(
        "dense-flatten", "Dense flattens its input",
        "nn.Linear acts on the last axis",
        "nn.Dense(flatten=True) by default reshapes (N, ...) to (N, prod(...)) first",
        "backends/mxnet builds Dense(flatten=False); a Flatten layer in the spec says where to flatten",
        "keep Gluon's default flatten=True",
    ),
)

BY_KEY = {d.key: d for d in DIFFERENCES}


def check_naive(naive) -> frozenset[str]:
    """Validate a set of difference keys (a bad key lists the valid ones)."""
    return frozenset(choose("difference", k, BY_KEY) for k in (naive or ()))
