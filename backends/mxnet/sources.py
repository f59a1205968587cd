"""The sources' own training loops, transcribed in MXNet Gluon as their tutorials write them: the
nets as the source builds them, its labels, losses, backward() calls and Trainer steps, its
literal hyperparameters. Nothing here shares code with build.py or train.py: these loops are what
the project's step is checked against (tests/test_sources.py).

Transcribed here (the sources written in Gluon):
    dcgan-gluon        002: the Gluon DCGAN on LFW faces

A loop takes neutral numpy weights, which it loads into its own blocks parameter by parameter in
their own order (collect_params(), after the first forward has made Gluon's deferred shapes):
that order and every shape must be the spec's, which checks the architecture too. Width knobs
(latent_z_size, ngf, ndf, nc) come from the spec, as the source keeps them in variables;
everything else is the source's. The accuracy metric the source logs changes no number and is
left out.
"""

from __future__ import annotations

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon
from mxnet import ndarray as nd
from mxnet.gluon import nn

from ...common import shapes
from ...common.errors import GanparityError


def _load(block: nn.Block, arrays: dict[str, np.ndarray], names: list[str]) -> None:
    params = list(block.collect_params().values())
    if len(params) != len(names):
        raise GanparityError(f"the source's block has {len(params)} parameters, the spec {len(names)}")
    for p, name in zip(params, names):
        if tuple(p.shape) != tuple(arrays[name].shape):
            raise GanparityError(f"the source's {p.name} is {tuple(p.shape)}, the spec's {name} {arrays[name].shape}")
        p.set_data(mx.nd.array(arrays[name], dtype=p.dtype))


def _read(block: nn.Block, names: list[str]) -> dict[str, np.ndarray]:
    return {name: p.data().asnumpy().copy() for name, p in zip(names, block.collect_params().values())}


def _need_64px(spec) -> None:
    if spec.params.get("image_size") != 64:
        raise GanparityError(f"source {spec.source} builds its nets for 64x64 images; {spec.name} has "
                             f"image_size={spec.params.get('image_size')}")


class _Loop:
    """What every transcription shares: its nets (source order) and the spec's names for them."""

    source = ""
    nets: dict[str, nn.Block]

    def _setup(self, spec, arrays: dict, dtype: str, device: str, first_inputs: dict) -> None:
        self.spec, self.ctx, self.dtype = spec, mx.cpu() if device == "cpu" else mx.gpu(0), dtype
        self.names = {n: list(shapes.tensor_shapes(m)) for n, m in spec.nets.items()}
        for n, block in self.nets.items():
            block(nd.zeros(first_inputs[n], ctx=self.ctx))  # Gluon defers shapes to the first forward
            if dtype != "float32":
                block.cast(dtype)
            _load(block, arrays, self.names[n])

    def _array(self, a: np.ndarray) -> mx.nd.NDArray:
        return mx.nd.array(np.asarray(a), ctx=self.ctx, dtype=self.dtype)

    def state(self) -> dict[str, np.ndarray]:
        return {k: v for n, block in self.nets.items() for k, v in _read(block, self.names[n]).items()}


# -- 002: the Gluon DCGAN on LFW ----------------------------------------------------------------------


class _GluonDCGAN(_Loop):
    source = "002"

    def __init__(self, spec, arrays, dtype="float32", device="cpu"):
        _need_64px(spec)
        p = spec.params
        nc, ngf, ndf, latent_z_size = p["nc"], p["ngf"], p["ndf"], p["nz"]
        lr, beta1 = 0.0002, 0.5
        netG = nn.Sequential()
        with netG.name_scope():
            netG.add(nn.Conv2DTranspose(ngf * 8, 4, 1, 0, use_bias=False))
            netG.add(nn.BatchNorm())
            netG.add(nn.Activation('relu'))
            netG.add(nn.Conv2DTranspose(ngf * 4, 4, 2, 1, use_bias=False))
            netG.add(nn.BatchNorm())
            netG.add(nn.Activation('relu'))
            netG.add(nn.Conv2DTranspose(ngf * 2, 4, 2, 1, use_bias=False))
            netG.add(nn.BatchNorm())
            netG.add(nn.Activation('relu'))
            netG.add(nn.Conv2DTranspose(ngf, 4, 2, 1, use_bias=False))
            netG.add(nn.BatchNorm())
            netG.add(nn.Activation('relu'))
            netG.add(nn.Conv2DTranspose(nc, 4, 2, 1, use_bias=False))
            netG.add(nn.Activation('tanh'))
        netD = nn.Sequential()
        with netD.name_scope():
            netD.add(nn.Conv2D(ndf, 4, 2, 1, use_bias=False))
            netD.add(nn.LeakyReLU(0.2))
            netD.add(nn.Conv2D(ndf * 2, 4, 2, 1, use_bias=False))
            netD.add(nn.BatchNorm())
            netD.add(nn.LeakyReLU(0.2))
            netD.add(nn.Conv2D(ndf * 4, 4, 2, 1, use_bias=False))
            netD.add(nn.BatchNorm())
            netD.add(nn.LeakyReLU(0.2))
            netD.add(nn.Conv2D(ndf * 8, 4, 2, 1, use_bias=False))
            netD.add(nn.BatchNorm())
            netD.add(nn.LeakyReLU(0.2))
            netD.add(nn.Conv2D(1, 4, 1, 0, use_bias=False))
        self.loss = gluon.loss.SigmoidBinaryCrossEntropyLoss()
        self.netG, self.netD, self.latent_z_size = netG, netD, latent_z_size
        self.nets = {"G": netG, "D": netD}
        ctx = mx.cpu() if device == "cpu" else mx.gpu(0)
        netG.initialize(mx.init.Normal(0.02), ctx=ctx)
        netD.initialize(mx.init.Normal(0.02), ctx=ctx)
        self._setup(spec, arrays, dtype, device, {"G": (1, latent_z_size, 1, 1), "D": (1, nc, 64, 64)})
        self.trainerG = gluon.Trainer(netG.collect_params(), 'adam', {'learning_rate': lr, 'beta1': beta1})
        self.trainerD = gluon.Trainer(netD.collect_params(), 'adam', {'learning_rate': lr, 'beta1': beta1})

    def step(self, real: np.ndarray, noise: np.ndarray) -> dict[str, float]:
        netD, netG, loss = self.netD, self.netG, self.loss
        batch_size = real.shape[0]
        real_label = nd.ones((batch_size,), ctx=self.ctx, dtype=self.dtype)
        fake_label = nd.zeros((batch_size,), ctx=self.ctx, dtype=self.dtype)
        data = self._array(real)
        latent_z = self._array(noise)  # the source draws mx.nd.random_normal(0, 1, (batch_size, nz, 1, 1))
        # (1) Update D network: maximize log(D(x)) + log(1 - D(G(z)))
        with autograd.record():
            output = netD(data).reshape((-1, 1))
            errD_real = loss(output, real_label)
            fake = netG(latent_z)
            output = netD(fake.detach()).reshape((-1, 1))
            errD_fake = loss(output, fake_label)
            errD = errD_real + errD_fake
            errD.backward()
        self.trainerD.step(data.shape[0])
        # (2) Update G network: maximize log(D(G(z)))
        with autograd.record():
            fake = netG(latent_z)
            output = netD(fake).reshape((-1, 1))
            errG = loss(output, real_label)
            errG.backward()
        self.trainerG.step(data.shape[0])
        return {"loss_D": nd.mean(errD).asscalar().item(), "loss_G": nd.mean(errG).asscalar().item()}


SOURCE_LOOPS = {"dcgan-gluon": _GluonDCGAN}


def source_loop(spec, arrays: dict[str, np.ndarray], dtype: str = "float32", device: str = "cpu"):
    """The spec's source loop in MXNet Gluon, from neutral weights: .step(batch...) -> losses,
    .state() -> neutral arrays."""
    if spec.name not in SOURCE_LOOPS:
        raise GanparityError(f"no Gluon source loop for {spec.name} (source {spec.source} is not a Gluon "
                             f"tutorial); Gluon's are: {', '.join(SOURCE_LOOPS)}")
    return SOURCE_LOOPS[spec.name](spec, arrays, dtype, device)
