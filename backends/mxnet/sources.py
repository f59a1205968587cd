"""The sources' own training loops in MXNet Gluon: the nets as the source builds them, its labels,
losses, backward() calls and Trainer steps, its literal hyperparameters. Nothing here shares code
with build.py or train.py: these loops are what the project's step is checked against
(tests/test_sources.py) and timed against (benchmarks: the source arm of every row).

Transcribed (the sources written in Gluon):
    dcgan-gluon        002: the Gluon DCGAN on LFW faces
Written in Gluon idioms (the source is PyTorch; what a Gluon user writes for the same loop, MXNet's
own numbers): per-sample losses and Trainer.step(batch_size), grad_req='add' where the source calls
backward twice into one net, gluon.Trainer('adam' / 'sgd'), BatchNorm's statistics as Gluon moves
them; the source's structure otherwise (what it detaches, which fake batch it reuses):
    gan-gaussian       after 003: d2l's basic GAN, update_D / update_G
    dcgan              after 001: the PyTorch DCGAN tutorial's training loop
    dcgan-d2l          after 000 part 3: d2l's DCGAN with G_block / D_block
    resnet34-finetune  after 000 part 1: the dog-breed fine-tune, d2l's Gluon form (features run
                       outside autograd.record, a new output head on the trainer)

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
    how = "transcribed"  # or "idiomatic": the loop as this framework's user writes it
    nets: dict[str, nn.Block]

    def _setup(self, spec, arrays: dict, dtype: str, device: str, first_inputs: dict) -> None:
        self.spec, self.dtype = spec, dtype
        self._ctx(device)
        self.names = {n: list(shapes.tensor_shapes(m)) for n, m in spec.nets.items()}
        for n, block in self.nets.items():
            block(nd.zeros(first_inputs[n], ctx=self.ctx))  # Gluon defers shapes to the first forward
            if dtype != "float32":
                block.cast(dtype)
            _load(block, arrays, self.names[n])

    def _array(self, a) -> mx.nd.NDArray:
        """A batch from numpy (tests) or already on the device (the benchmarks' arm)."""
        if isinstance(a, mx.nd.NDArray):
            return a
        return mx.nd.array(np.asarray(a), ctx=self.ctx, dtype=self.dtype)

    def _init(self, init: object = "uniform") -> None:
        for block in self.nets.values():
            block.initialize(init, ctx=self.ctx)

    def _ctx(self, device: str):
        self.ctx = mx.cpu() if device == "cpu" else mx.gpu(0)
        return self.ctx

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
        ctx = self._ctx(device)
        netG.initialize(mx.init.Normal(0.02), ctx=ctx)
        netD.initialize(mx.init.Normal(0.02), ctx=ctx)
        self._setup(spec, arrays, dtype, device, {"G": (1, latent_z_size, 1, 1), "D": (1, nc, 64, 64)})
        self.trainerG = gluon.Trainer(netG.collect_params(), 'adam', {'learning_rate': lr, 'beta1': beta1})
        self.trainerD = gluon.Trainer(netD.collect_params(), 'adam', {'learning_rate': lr, 'beta1': beta1})

    def step(self, real: np.ndarray, noise: np.ndarray) -> dict[str, float]:
        netD, netG, loss = self.netD, self.netG, self.loss
        batch_size = real.shape[0]
        real_label = nd.ones((batch_size,), ctx=self.ctx, dtype=self.dtype)  # the source's ctx=ctx
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


def _mean(loss: mx.nd.NDArray) -> float:
    return nd.mean(loss).asscalar().item()


def _ones_zeros(batch_size: int, X: mx.nd.NDArray):
    return nd.ones((batch_size,), ctx=X.context, dtype=X.dtype), nd.zeros((batch_size,), ctx=X.context, dtype=X.dtype)


# -- after 003: the basic GAN on a 2-D Gaussian, in Gluon -----------------------------------------------


class _GaussianGANInGluon(_Loop):
    source, how = "003", "idiomatic"

    def __init__(self, spec, arrays, dtype="float32", device="cpu"):
        net_G = nn.Sequential()
        net_G.add(nn.Dense(2))
        net_D = nn.Sequential()
        net_D.add(nn.Dense(5, activation='tanh'), nn.Dense(3, activation='tanh'), nn.Dense(1),
                  nn.Activation('sigmoid'))  # the source's D ends in nn.Sigmoid() and takes nn.BCELoss()
        self.net_G, self.net_D = net_G, net_D
        self.nets = {"G": net_G, "D": net_D}
        self._ctx(device)
        self._init()
        self._setup(spec, arrays, dtype, device, {"G": (1, 2), "D": (1, 2)})
        lr_D, lr_G = 0.05, 0.005
        self.loss = gluon.loss.SigmoidBCELoss(from_sigmoid=True)
        self.trainer_D = gluon.Trainer(net_D.collect_params(), 'adam', {'learning_rate': lr_D})
        self.trainer_G = gluon.Trainer(net_G.collect_params(), 'adam', {'learning_rate': lr_G})

    def update_D(self, X, Z):
        batch_size = X.shape[0]
        ones, zeros = _ones_zeros(batch_size, X)
        with autograd.record():
            real_Y = self.net_D(X)
            fake_X = self.net_G(Z)
            fake_Y = self.net_D(fake_X)
            loss_D = (self.loss(real_Y, ones) + self.loss(fake_Y, zeros)) / 2
        loss_D.backward()
        self.trainer_D.step(batch_size)
        return _mean(loss_D)

    def update_G(self, Z):
        batch_size = Z.shape[0]
        ones, _ = _ones_zeros(batch_size, Z)
        with autograd.record():
            fake_X = self.net_G(Z)
            fake_Y = self.net_D(fake_X)
            loss_G = self.loss(fake_Y, ones)
        loss_G.backward()
        self.trainer_G.step(batch_size)
        return _mean(loss_G)

    def step(self, real, noise) -> dict[str, float]:
        X, Z = self._array(real), self._array(noise)
        d_loss = self.update_D(X, Z)  # grad_req='write': no zero_grad() needed
        g_loss = self.update_G(Z)
        return {"loss_D": d_loss, "loss_G": g_loss}


# -- after 001: the PyTorch DCGAN tutorial, in Gluon ---------------------------------------------------


def _dcgan_G(nz, ngf, nc, eps=1e-5, block=nn.Sequential):
    netG = block()
    for i, c in enumerate((ngf * 8, ngf * 4, ngf * 2, ngf)):
        netG.add(nn.Conv2DTranspose(c, 4, 1 if i == 0 else 2, 0 if i == 0 else 1, use_bias=False,
                                    in_channels=nz if i == 0 else 2 * c))
        netG.add(nn.BatchNorm(epsilon=eps, in_channels=c))
        netG.add(nn.Activation('relu'))
    netG.add(nn.Conv2DTranspose(nc, 4, 2, 1, use_bias=False, in_channels=ngf))
    netG.add(nn.Activation('tanh'))
    return netG


def _dcgan_D(nc, ndf, first_bn=False, eps=1e-5):
    netD = nn.Sequential()
    for i, c in enumerate((ndf, ndf * 2, ndf * 4, ndf * 8)):
        netD.add(nn.Conv2D(c, 4, 2, 1, use_bias=False, in_channels=nc if i == 0 else c // 2))
        if i > 0 or first_bn:
            netD.add(nn.BatchNorm(epsilon=eps, in_channels=c))
        netD.add(nn.LeakyReLU(0.2))
    netD.add(nn.Conv2D(1, 4, 1, 0, use_bias=False, in_channels=ndf * 8))
    netD.add(nn.Activation('sigmoid'))
    return netD


class _DCGANInGluon(_Loop):
    source, how = "001", "idiomatic"

    def __init__(self, spec, arrays, dtype="float32", device="cpu"):
        _need_64px(spec)
        p = spec.params
        self.netG, self.netD = _dcgan_G(p["nz"], p["ngf"], p["nc"]), _dcgan_D(p["nc"], p["ndf"])
        self.nets = {"G": self.netG, "D": self.netD}
        self._ctx(device)
        self._init(mx.init.Normal(0.02))
        self._setup(spec, arrays, dtype, device, {"G": (1, p["nz"], 1, 1), "D": (1, p["nc"], 64, 64)})
        lr, beta1 = 0.0002, 0.5
        self.criterion = gluon.loss.SigmoidBCELoss(from_sigmoid=True)
        self.real_label, self.fake_label = 1, 0
        # the source calls backward() twice into D per step: Gluon accumulates only with grad_req='add'
        self.netD.collect_params().setattr('grad_req', 'add')
        self.optimizerD = gluon.Trainer(self.netD.collect_params(), 'adam', {'learning_rate': lr, 'beta1': beta1})
        self.optimizerG = gluon.Trainer(self.netG.collect_params(), 'adam', {'learning_rate': lr, 'beta1': beta1})

    def step(self, real, noise) -> dict[str, float]:
        netD, netG, criterion = self.netD, self.netG, self.criterion
        # (1) Update D network: maximize log(D(x)) + log(1 - D(G(z)))
        netD.collect_params().zero_grad()
        real_cpu = self._array(real)
        b_size = real_cpu.shape[0]
        label = nd.full((b_size,), self.real_label, ctx=self.ctx, dtype=real_cpu.dtype)
        with autograd.record():
            output = netD(real_cpu).reshape((-1,))
            errD_real = criterion(output, label)
            errD_real.backward()
            noise = self._array(noise)
            fake = netG(noise)
            label = nd.full((b_size,), self.fake_label, ctx=self.ctx, dtype=real_cpu.dtype)
            output = netD(fake.detach()).reshape((-1,))
            errD_fake = criterion(output, label)
            errD_fake.backward()
        errD = errD_real + errD_fake
        self.optimizerD.step(b_size)
        # (2) Update G network: maximize log(D(G(z))), through the fake batch of the D step
        label = nd.full((b_size,), self.real_label, ctx=self.ctx, dtype=real_cpu.dtype)
        with autograd.record():
            output = netD(fake).reshape((-1,))
            errG = criterion(output, label)
        errG.backward()
        self.optimizerG.step(b_size)
        return {"loss_D": _mean(errD), "loss_G": _mean(errG)}


# -- after 000 part 3: d2l's DCGAN on Pokemon, in Gluon -------------------------------------------------


class _D2LDCGANInGluon(_Loop):
    source, how = "000 part 3", "idiomatic"

    def __init__(self, spec, arrays, dtype="float32", device="cpu"):
        _need_64px(spec)
        p = spec.params
        # G_block / D_block: Conv2DTranspose or Conv2D, BatchNorm(epsilon=0.8) (the source's
        # BatchNorm2d(c, 0.8)), then the activation; BatchNorm on every D block
        self.net_G, self.net_D = _dcgan_G(p["nz"], p["ngf"], p["nc"], eps=0.8), _dcgan_D(p["nc"], p["ndf"], True, 0.8)
        self.nets = {"G": self.net_G, "D": self.net_D}
        self._ctx(device)
        self._init(mx.init.Normal(0.02))
        self._setup(spec, arrays, dtype, device, {"G": (1, p["nz"], 1, 1), "D": (1, p["nc"], 64, 64)})
        lr = 0.005
        self.loss = gluon.loss.SigmoidBCELoss(from_sigmoid=True)
        hp = {'learning_rate': lr, 'beta1': 0.5, 'beta2': 0.999}
        self.trainer_D = gluon.Trainer(self.net_D.collect_params(), 'adam', hp)
        self.trainer_G = gluon.Trainer(self.net_G.collect_params(), 'adam', hp)

    def update_D(self, X, Z):
        batch_size = X.shape[0]
        ones, zeros = _ones_zeros(batch_size, X)
        with autograd.record():
            real_Y = self.net_D(X).reshape((batch_size, -1))
            fake_X = self.net_G(Z)  # not detached, as the source: backward reaches G (its grads are overwritten)
            fake_Y = self.net_D(fake_X).reshape((batch_size, -1))
            loss_D = (self.loss(real_Y, ones) + self.loss(fake_Y, zeros)) / 2
        loss_D.backward()
        self.trainer_D.step(batch_size)
        return _mean(loss_D)

    def update_G(self, Z):
        batch_size = Z.shape[0]
        ones, _ = _ones_zeros(batch_size, Z)
        with autograd.record():
            fake_X = self.net_G(Z)
            fake_Y = self.net_D(fake_X).reshape((batch_size, -1))
            loss_G = self.loss(fake_Y, ones)
        loss_G.backward()
        self.trainer_G.step(batch_size)
        return _mean(loss_G)

    def step(self, real, noise) -> dict[str, float]:
        X, Z = self._array(real), self._array(noise)
        d_loss = self.update_D(X, Z)
        g_loss = self.update_G(Z)
        return {"loss_D": d_loss, "loss_G": g_loss}


# -- after 000 part 1: the dog-breed fine-tune, d2l's Gluon form ----------------------------------------


class _FinetuneInGluon(_Loop):
    source, how = "000 part 1", "idiomatic"

    def __init__(self, spec, arrays, dtype="float32", device="cpu"):
        from mxnet.gluon.model_zoo.vision.resnet import BasicBlockV1, ResNetV1

        p = spec.params
        if p["width"] != 64:
            raise GanparityError(f"Gluon's ResNetV1 has width 64; {spec.name} has width={p['width']}")
        # model_zoo.vision.resnet34_v1() for blocks (3, 4, 6, 3); its .features end in global pooling
        features = ResNetV1(BasicBlockV1, list(p["blocks"]), [64, 64, 128, 256, 512]).features
        output_new = nn.HybridSequential()
        output_new.add(nn.Dense(p["hidden"], activation='relu'), nn.Dense(p["num_classes"]))
        self.features, self.output_new = features, output_new
        self.nets = {"backbone": features, "head": output_new}
        self._ctx(device)
        self._init()
        size = spec.image_size
        self._setup(spec, arrays, dtype, device, {"backbone": (1, 3, size, size), "head": (1, 512)})
        self.lr, wd = 0.03, 1e-4
        self.loss = gluon.loss.SoftmaxCrossEntropyLoss()
        self.trainer = gluon.Trainer(output_new.collect_params(), 'sgd',
                                     {'learning_rate': self.lr, 'momentum': 0.9, 'wd': wd})

    def set_lr(self, lr: float) -> None:
        self.trainer.set_learning_rate(lr)
        self.lr = lr

    def step(self, x, y) -> dict[str, float]:
        X, y = self._array(x), self._array(np.asarray(y, np.float32))
        with autograd.train_mode():  # the PyTorch source keeps the frozen backbone in train mode
            output_features = self.features(X)
        with autograd.record():
            output = self.output_new(output_features)
            l = self.loss(output, y).sum()  # noqa: E741 - the source's name
        l.backward()
        self.trainer.step(X.shape[0])
        return {"loss": l.asscalar().item() / X.shape[0]}


SOURCE_LOOPS = {"gan-gaussian": _GaussianGANInGluon, "dcgan": _DCGANInGluon, "dcgan-d2l": _D2LDCGANInGluon,
                "dcgan-gluon": _GluonDCGAN, "resnet34-finetune": _FinetuneInGluon}


def source_loop(spec, arrays: dict[str, np.ndarray], dtype: str = "float32", device: str = "cpu"):
    """The spec's source loop in MXNet Gluon, from neutral weights: .step(batch...) -> losses,
    .state() -> neutral arrays (and .set_lr(lr) for the fine-tune); .how says whether it is the
    source transcribed or the same loop in Gluon idioms."""
    if spec.name not in SOURCE_LOOPS:
        raise GanparityError(f"no Gluon loop for {spec.name}; Gluon's are: {', '.join(SOURCE_LOOPS)}")
    return SOURCE_LOOPS[spec.name](spec, arrays, dtype, device)
