"""The four GAN specs, each a function of its width knobs, each mirroring its source tutorial.

Where the sources disagree, each spec keeps its own source's choice (see the table in
README.md and `ganparity differences`).
"""

from __future__ import annotations

import math

from ..errors import GanparityError, choose
from .layers import BatchNorm, Conv2d, ConvTranspose2d, LeakyReLU, Linear, ReLU, Sigmoid, Tanh
from .model import (
    D2L_LINEAR_INIT,
    DCGAN_INIT,
    FRAMEWORKS,
    GLUON_NORMAL_INIT,
    Adam,
    GANRecipe,
    GANSpec,
    ModelSpec,
    Semantics,
)


def positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise GanparityError(f"{name} must be a positive integer, got {value!r}")
    return value


def _semantics(value: str) -> Semantics:
    """The `semantics` knob: every number-changing difference the way one framework computes it."""
    return Semantics.of(choose("semantics", value, FRAMEWORKS))


# -- building blocks, named as source 000 names them ------------------------------------------


def g_block(in_channels: int, out_channels: int, kernel_size: int = 4, strides: int = 2,
            padding: int = 1, eps: float = 0.8, momentum: float = 0.1) -> tuple:
    """d2l's G_block: ConvTranspose2d(bias=False) -> BatchNorm2d(c, 0.8) -> ReLU.

    `nn.BatchNorm2d(out_channels, 0.8)` passes 0.8 as the second positional argument, which is
    eps, not momentum (a mistranslation of Keras' BatchNormalization(momentum=0.8)). Kept as written.
    """
    return (ConvTranspose2d(in_channels, out_channels, kernel_size, strides, padding, bias=False),
            BatchNorm(out_channels, eps=eps, momentum=momentum), ReLU())


def d_block(in_channels: int, out_channels: int, kernel_size: int = 4, strides: int = 2,
            padding: int = 1, alpha: float = 0.2, eps: float = 0.8, momentum: float = 0.1,
            batch_norm: bool = True) -> tuple:
    """d2l's D_block: Conv2d(bias=False) -> BatchNorm2d(c, 0.8) -> LeakyReLU(alpha)."""
    bn = (BatchNorm(out_channels, eps=eps, momentum=momentum),) if batch_norm else ()
    return (Conv2d(in_channels, out_channels, kernel_size, strides, padding, bias=False), *bn,
            LeakyReLU(alpha))


def _n_doublings(image_size: int) -> int:
    """DCGAN grows 1x1 -> 4x4, doubles to image_size/2, then a last doubling: 64 -> 3 middle blocks.
    The count is taken from floor(log2); a size that is not a power of two then fails the shape
    check at the layer where the stack cannot go on."""
    positive_int("image_size", image_size)
    if image_size < 8:
        raise GanparityError(f"image_size must be at least 8 (the stack starts at 4x4), got {image_size}")
    return int(math.log2(image_size)) - 3


def _dcgan_nets(nz: int, ngf: int, ndf: int, nc: int, image_size: int, eps: float,
                d_first_bn: bool, d_sigmoid: bool) -> tuple[ModelSpec, ModelSpec]:
    """Radford's G and D, written with the d2l blocks (the PyTorch tutorial's layers are the same)."""
    for name, v in (("nz", nz), ("ngf", ngf), ("ndf", ndf), ("nc", nc)):
        positive_int(name, v)
    n = _n_doublings(image_size)
    top = 2 ** n  # ngf * 8 at 64x64
    g = list(g_block(nz, ngf * top, strides=1, padding=0, eps=eps))
    for i in range(n, 0, -1):
        g += g_block(ngf * 2 ** i, ngf * 2 ** (i - 1), eps=eps)
    g += [ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), Tanh()]
    d = list(d_block(nc, ndf, eps=eps, batch_norm=d_first_bn))
    for i in range(n):
        d += d_block(ndf * 2 ** i, ndf * 2 ** (i + 1), eps=eps)
    d.append(Conv2d(ndf * top, 1, 4, 1, 0, bias=False))
    if d_sigmoid:
        d.append(Sigmoid())
    return (ModelSpec("G", (nz, 1, 1), tuple(g)),
            ModelSpec("D", (nc, image_size, image_size), tuple(d)))


def gan_gaussian(batch_size: int = 8, epochs: int = 20, semantics: str = "torch") -> GANSpec:
    """d2l's basic GAN (003; part 2 of 000): fit X·A+b with a linear G and a 2-5-3-1 D."""
    G = ModelSpec("G", (2,), (Linear(2, 2),))
    D = ModelSpec("D", (2,), (Linear(2, 5), Tanh(), Linear(5, 3), Tanh(), Linear(3, 1), Sigmoid()))
    recipe = GANRecipe(
        batch_size=positive_int("batch_size", batch_size), epochs=positive_int("epochs", epochs),
        opt_D=Adam(0.05), opt_G=Adam(0.005), loss="bce", d_loss="mean", d_backward="joint",
        detach_fake=False, regenerate_fake=True, shuffle=False, semantics=_semantics(semantics),
    )
    return GANSpec("gan-gaussian", "003 (and 000 part 2)", "basic GAN on a 2-D Gaussian",
                   G, D, (2,), D2L_LINEAR_INIT, recipe,
                   dict(batch_size=batch_size, epochs=epochs, semantics=semantics))


def dcgan(nz: int = 100, ngf: int = 64, ndf: int = 64, nc: int = 3, image_size: int = 64,
          batch_size: int = 128, epochs: int = 5, semantics: str = "torch") -> GANSpec:
    """The PyTorch DCGAN tutorial (001, 004): BCELoss on probabilities, Adam 2e-4 / beta1 0.5,
    errD_real.backward(); errD_fake.backward() accumulating, fake reused for the G step."""
    G, D = _dcgan_nets(nz, ngf, ndf, nc, image_size, eps=1e-5, d_first_bn=False, d_sigmoid=True)
    recipe = GANRecipe(
        batch_size=positive_int("batch_size", batch_size), epochs=positive_int("epochs", epochs),
        opt_D=Adam(2e-4, 0.5), opt_G=Adam(2e-4, 0.5), loss="bce", d_loss="sum",
        d_backward="separate", detach_fake=True, regenerate_fake=False, shuffle=True,
        sample_mode="train", semantics=_semantics(semantics),
    )
    return GANSpec("dcgan", "001, 004", "Radford DCGAN, the PyTorch tutorial on CelebA", G, D,
                   (nz, 1, 1), DCGAN_INIT, recipe,
                   dict(nz=nz, ngf=ngf, ndf=ndf, nc=nc, image_size=image_size,
                        batch_size=batch_size, epochs=epochs, semantics=semantics))


def dcgan_d2l(nz: int = 100, ngf: int = 64, ndf: int = 64, nc: int = 3, image_size: int = 64,
              batch_size: int = 256, epochs: int = 50, semantics: str = "torch") -> GANSpec:
    """d2l's DCGAN on Pokemon (000 part 3): G_block/D_block with BatchNorm2d(c, 0.8) = eps 0.8,
    BN on every D block, (loss_real + loss_fake) / 2, Adam 0.005 / beta1 0.5, batch 256."""
    G, D = _dcgan_nets(nz, ngf, ndf, nc, image_size, eps=0.8, d_first_bn=True, d_sigmoid=True)
    recipe = GANRecipe(
        batch_size=positive_int("batch_size", batch_size), epochs=positive_int("epochs", epochs),
        opt_D=Adam(0.005, 0.5), opt_G=Adam(0.005, 0.5), loss="bce", d_loss="mean",
        d_backward="joint", detach_fake=False, regenerate_fake=True, shuffle=True,
        sample_mode="train", semantics=_semantics(semantics),
    )
    return GANSpec("dcgan-d2l", "000 part 3", "d2l DCGAN on Pokemon sprites", G, D, (nz, 1, 1),
                   DCGAN_INIT, recipe,
                   dict(nz=nz, ngf=ngf, ndf=ndf, nc=nc, image_size=image_size,
                        batch_size=batch_size, epochs=epochs, semantics=semantics))


def dcgan_gluon(nz: int = 100, ngf: int = 64, ndf: int = 64, nc: int = 3, image_size: int = 64,
                batch_size: int = 64, epochs: int = 2, semantics: str = "mxnet") -> GANSpec:
    """The Gluon DCGAN on LFW (002): D ends in a logit, SigmoidBinaryCrossEntropyLoss,
    mx.init.Normal(0.02), errD = errD_real + errD_fake, trainer.step(batch_size)."""
    G, D = _dcgan_nets(nz, ngf, ndf, nc, image_size, eps=1e-5, d_first_bn=False, d_sigmoid=False)
    recipe = GANRecipe(
        batch_size=positive_int("batch_size", batch_size), epochs=positive_int("epochs", epochs),
        opt_D=Adam(2e-4, 0.5), opt_G=Adam(2e-4, 0.5), loss="bce_logits", d_loss="sum",
        d_backward="joint", detach_fake=True, regenerate_fake=True, shuffle=False,
        sample_mode="eval", semantics=_semantics(semantics),
    )
    return GANSpec("dcgan-gluon", "002", "Gluon DCGAN on LFW faces", G, D, (nz, 1, 1),
                   GLUON_NORMAL_INIT, recipe,
                   dict(nz=nz, ngf=ngf, ndf=ndf, nc=nc, image_size=image_size,
                        batch_size=batch_size, epochs=epochs, semantics=semantics))
