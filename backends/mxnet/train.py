"""One GAN training step for every GAN spec, as MXNet Gluon writes it; the recipe says where the
sources' loops differ. Inputs are NDArrays already on the device (see to_device), and the step
returns NDArrays: MXNet is asynchronous, so nothing here waits; the caller reads them."""

from __future__ import annotations

import mxnet as mx
from mxnet import autograd, gluon
from mxnet.gluon import nn

from ...common import shapes
from ...common.differences import emulated
from ...common.errors import GanparityError, choose
from ...common.spec.model import Adam, GANSpec
from .emulations import TorchAdam

# Speed options of the step (benchmarks/variants.py), none by default. 'hybridize' compiles G and D
# to static graphs. A hybridized graph never calls build.py's EmulatedStatsBatchNorm.forward, so
# it is refused where the spec follows PyTorch's BatchNorm statistics (it would silently follow
# none); with MXNet's own statistics (semantics=mxnet) it is MXNet's native step.
OPTIONS = ("hybridize",)


def _options(options) -> frozenset[str]:
    return frozenset(choose("mxnet GANTrainer option", o, OPTIONS) for o in options)


def _torch_bce(p: mx.nd.NDArray, y: mx.nd.NDArray) -> mx.nd.NDArray:
    """PyTorch's BCELoss per sample (difference 'bce-clamp'): log clamped at -100 in forward, and
    PyTorch's gradient (p - y) / max(p (1 - p), 1e-12), finite even where p is exactly 0 or 1.

    Built from native ops (a custom autograd.Function can deadlock MXNet's threaded engine): value
    and gradient are constants computed outside the tape, and s - s.detach() (exactly 0 in forward)
    carries the gradient. Forward returns the value bit for bit.
    """
    with autograd.pause():
        value = -(y * mx.nd.maximum(mx.nd.log(p), -100) + (1 - y) * mx.nd.maximum(mx.nd.log(1 - p), -100))
        grad = (p - y) / mx.nd.maximum(p * (1 - p), 1e-12)
    surrogate = p * grad
    return value + (surrogate - surrogate.detach())


def _adam(net: nn.Block, opt: Adam, emulate: tuple[str, ...]) -> gluon.Trainer:
    return gluon.Trainer(net.collect_params(), TorchAdam(opt, emulate))


def _loss(kind: str, emulate: tuple[str, ...], naive: frozenset[str]):
    """Per-sample losses (difference 'loss-reduction'): Trainer.step(batch_size) averages.
    On probabilities: Gluon's log(p + 1e-12), or PyTorch's clamped BCE ('bce-clamp')."""
    if kind == "bce_logits":
        return gluon.loss.SigmoidBinaryCrossEntropyLoss(from_sigmoid=False)
    if "bce-clamp" in emulate:
        return _torch_bce
    return gluon.loss.SigmoidBinaryCrossEntropyLoss(from_sigmoid=True)


def _prob(output: mx.nd.NDArray, kind: str) -> mx.nd.NDArray:
    """D's mean belief that its input is real, as the sources log D(x) and D(G(z))."""
    return (output if kind == "bce" else mx.nd.sigmoid(output)).mean()


class GANTrainer:
    """Trainers and the D-then-G step of a GANSpec's recipe for built G and D."""

    def __init__(self, spec: GANSpec, G: nn.Block, D: nn.Block, naive: frozenset[str] = frozenset(),
                 options=frozenset()):
        self.spec, self.G, self.D, self.naive = spec, G, D, naive
        self.options = _options(options)
        r = spec.recipe
        if "hybridize" in self.options:
            with_bn = any(map(shapes.has_batchnorm, spec.nets.values()))
            if with_bn and "bn-stats" in emulated(r.semantics, "mxnet", naive):
                raise GanparityError(
                    f"{spec.name} follows PyTorch's BatchNorm statistics (semantics {r.semantics.name}), which "
                    "MXNet emulates in Python at every forward, and a hybridized graph runs no Python: use "
                    "--set semantics=mxnet (MXNet's own statistics) or a variant without hybridize")
            G.hybridize(static_alloc=True, static_shape=True)
            D.hybridize(static_alloc=True, static_shape=True)
        # Difference 'grad-req': two backward() calls accumulate only with grad_req='add'.
        self.accumulate = r.d_backward == "separate" and "grad-req" not in naive
        if self.accumulate:
            D.collect_params().setattr("grad_req", "add")
        # The semantic differences (common/differences.py) whose PyTorch numbers this trainer emulates.
        self.emulate = emulated(r.semantics, "mxnet", naive)
        self.opt_D = _adam(D, r.opt_D, self.emulate)
        self.opt_G = _adam(G, r.opt_G, self.emulate)
        self.criterion = _loss(r.loss, self.emulate, naive)
        self.d_scale = 0.5 if r.d_loss == "mean" else 1.0
        # Trainer.step(n) divides gradients by n: the batch size, unless ported naively.
        self.step_size = None if "loss-reduction" in naive else "batch"
        self.grad_scale = 1.0  # set per batch: 1 / batch_size, what Trainer.step applies
        self.batch = 1  # the batch size of the last D step: Trainer.step(batch_size)

    def d_backward(self, real: mx.nd.NDArray, noise: mx.nd.NDArray) -> tuple[mx.nd.NDArray, dict]:
        """Gradients of the D loss into D. Returns the fake batch for the G step."""
        r, D = self.spec.recipe, self.D
        batch = self.batch = real.shape[0]
        self.grad_scale = 1.0 / batch if self.step_size == "batch" else 1.0
        if self.accumulate:
            D.collect_params().zero_grad()
        ones = mx.nd.full((batch,), r.real_label, ctx=real.context, dtype=real.dtype)
        zeros = mx.nd.full((batch,), r.fake_label, ctx=real.context, dtype=real.dtype)
        separate = r.d_backward == "separate"
        with autograd.record():  # train mode: batch statistics (difference 'train-eval')
            out_real = D(real).reshape((-1,))
            err_real = self.criterion(out_real, ones)
            if separate:
                err_real = err_real * self.d_scale
                err_real.backward()
            fake = self.G(noise)
            out_fake = D(fake.detach() if r.detach_fake else fake).reshape((-1,))
            err_fake = self.criterion(out_fake, zeros)
            if separate:
                err_fake = err_fake * self.d_scale
                err_fake.backward()
                loss_D = err_real + err_fake
            else:  # one scale of the sum: bit for bit the sum of the scaled halves (d_scale is 1 or 0.5)
                loss_D = (err_real + err_fake) * self.d_scale
                loss_D.backward()
        return fake, {"loss_D": loss_D.mean(), "D_x": _prob(out_real, r.loss),
                      "D_G_z1": _prob(out_fake, r.loss)}

    def g_backward(self, fake: mx.nd.NDArray, noise: mx.nd.NDArray) -> dict:
        """Gradients of the G loss into G (grad_req='write' on G overwrites the old ones)."""
        r = self.spec.recipe
        with autograd.record():
            if r.regenerate_fake:
                fake = self.G(noise)
            out = self.D(fake).reshape((-1,))
            err = self.criterion(out, mx.nd.full((out.shape[0],), r.real_label, ctx=out.context, dtype=out.dtype))
            err.backward()
        return {"loss_G": err.mean(), "D_G_z2": _prob(out, r.loss)}

    def d_update(self) -> None:
        self.opt_D.step(self.batch if self.step_size == "batch" else 1)

    def g_update(self) -> None:
        self.opt_G.step(self.batch if self.step_size == "batch" else 1)

    def step(self, real: mx.nd.NDArray, noise: mx.nd.NDArray) -> dict:
        """One full D+G step. Values are NDArrays (nothing waits here)."""
        fake, m_d = self.d_backward(real, noise)
        self.d_update()
        m_g = self.g_backward(fake, noise)
        self.g_update()
        return m_d | m_g
