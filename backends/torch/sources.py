"""The sources' own training loops in PyTorch: the nets as the source builds them, its labels,
losses, zero_grad() and backward() calls and optimizer steps, its literal hyperparameters. Nothing
here shares code with build.py or train.py: these loops are what the project's step is checked
against (tests/test_sources.py) and timed against (benchmarks: the source arm of every row).

Transcribed (the sources written in PyTorch):
    gan-gaussian       003 (and 000 part 2): d2l's basic GAN, update_D / update_G
    dcgan              001 (and 004): the PyTorch DCGAN tutorial's training loop
    dcgan-d2l          000 part 3: d2l's DCGAN with G_block / D_block
    resnet34-finetune  000 part 1: the Kaggle dog-breed fine-tune (torchvision's ResNet, new fc)
Written in PyTorch idioms (the source is Gluon; what a PyTorch user writes for the same loop,
PyTorch's own numbers):
    dcgan-gluon        after 002: BCEWithLogitsLoss, torch.optim.Adam, one backward of errD

A loop takes neutral numpy weights, which it loads into its own modules tensor by tensor in
their own order (their state_dict, num_batches_tracked aside): that order and every shape must
be the spec's, which checks the architecture too. Width knobs (nz, ngf, ndf, nc; the head's
sizes) come from the spec, as the sources keep them in variables; everything else is the source's.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ...common import shapes
from ...common.errors import GanparityError


def _load(module: nn.Module, arrays: dict[str, np.ndarray], names: list[str]) -> None:
    state = {k: v for k, v in module.state_dict().items() if not k.endswith("num_batches_tracked")}
    if len(state) != len(names):
        raise GanparityError(f"the source's module has {len(state)} tensors, the spec {len(names)}")
    with torch.no_grad():
        for (key, t), name in zip(state.items(), names):
            if tuple(t.shape) != tuple(arrays[name].shape):
                raise GanparityError(f"the source's {key} is {tuple(t.shape)}, the spec's {name} {arrays[name].shape}")
            t.copy_(torch.as_tensor(arrays[name]))


def _read(module: nn.Module, names: list[str]) -> dict[str, np.ndarray]:
    state = [v for k, v in module.state_dict().items() if not k.endswith("num_batches_tracked")]
    return {name: t.detach().cpu().numpy().copy() for name, t in zip(names, state)}


def _need_64px(spec) -> None:
    if spec.params.get("image_size") != 64:
        raise GanparityError(f"source {spec.source} builds its nets for 64x64 images; {spec.name} has "
                             f"image_size={spec.params.get('image_size')}")


class _Loop:
    """What every loop shares: its nets (source order) and the spec's names for them."""

    source = ""
    how = "transcribed"  # or "idiomatic": the loop as this framework's user writes it
    nets: dict[str, nn.Module]

    def _setup(self, spec, arrays: dict, dtype: str, device: str) -> None:
        self.spec, self.device, self.dtype = spec, torch.device(device), getattr(torch, dtype)
        self.names = {n: list(shapes.tensor_shapes(m)) for n, m in spec.nets.items()}
        for n, module in self.nets.items():
            module.to(device=self.device, dtype=self.dtype)
            _load(module, arrays, self.names[n])

    def _tensor(self, a) -> torch.Tensor:
        """A batch from numpy (tests) or already on the device (the benchmarks' arm)."""
        if isinstance(a, torch.Tensor):
            return a
        return torch.as_tensor(np.asarray(a), device=self.device, dtype=self.dtype)

    def state(self) -> dict[str, np.ndarray]:
        return {k: v for n, module in self.nets.items() for k, v in _read(module, self.names[n]).items()}


# -- 003 (and 000 part 2): the basic GAN on a 2-D Gaussian ------------------------------------------


class _GaussianGAN(_Loop):
    source = "003"

    def __init__(self, spec, arrays, dtype="float32", device="cpu"):
        net_G = nn.Sequential(nn.Linear(2, 2))
        net_D = nn.Sequential(nn.Linear(2, 5), nn.Tanh(), nn.Linear(5, 3), nn.Tanh(), nn.Linear(3, 1), nn.Sigmoid())
        self.net_G, self.net_D = net_G, net_D
        self.nets = {"G": net_G, "D": net_D}
        self._setup(spec, arrays, dtype, device)
        lr_D, lr_G = 0.05, 0.005
        self.loss = nn.BCELoss()
        self.trainer_D = torch.optim.Adam(net_D.parameters(), lr=lr_D)
        self.trainer_G = torch.optim.Adam(net_G.parameters(), lr=lr_G)

    def update_D(self, X, Z):
        batch_size = X.shape[0]
        ones = torch.ones(batch_size, dtype=X.dtype).view(batch_size, 1)
        zeros = torch.zeros(batch_size, dtype=X.dtype).view(batch_size, 1)
        real_Y = self.net_D(X)
        fake_X = self.net_G(Z)
        fake_Y = self.net_D(fake_X)
        loss_D = (self.loss(real_Y, ones) + self.loss(fake_Y, zeros)) / 2
        loss_D.backward()
        self.trainer_D.step()
        return float(loss_D.detach().sum())  # d2l: metric.add(update_D(...)) reads it

    def update_G(self, Z):
        batch_size = Z.shape[0]
        ones = torch.ones(batch_size, dtype=Z.dtype).view(batch_size, 1)
        fake_X = self.net_G(Z)
        fake_Y = self.net_D(fake_X)
        loss_G = self.loss(fake_Y, ones)
        loss_G.backward()
        self.trainer_G.step()
        return float(loss_G.detach().sum())

    def step(self, real: np.ndarray, noise: np.ndarray) -> dict[str, float]:
        X, Z = self._tensor(real), self._tensor(noise)
        self.trainer_D.zero_grad()
        d_loss = self.update_D(X, Z)
        self.trainer_G.zero_grad()
        g_loss = self.update_G(Z)
        return {"loss_D": d_loss, "loss_G": g_loss}


# -- 001 (and 004): the PyTorch DCGAN tutorial -----------------------------------------------------


class _Generator(nn.Module):
    def __init__(self, nz, ngf, nc):
        super().__init__()
        self.main = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 8), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 4), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(True),
            nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh())

    def forward(self, input):
        return self.main(input)


class _Discriminator(nn.Module):
    def __init__(self, nc, ndf, sigmoid=True):
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 2), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 4), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 8), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False), *([nn.Sigmoid()] if sigmoid else []))

    def forward(self, input):
        return self.main(input)


class _DCGAN(_Loop):
    source = "001"

    def __init__(self, spec, arrays, dtype="float32", device="cpu"):
        _need_64px(spec)
        p = spec.params
        self.netG, self.netD = _Generator(p["nz"], p["ngf"], p["nc"]), _Discriminator(p["nc"], p["ndf"])
        self.nets = {"G": self.netG, "D": self.netD}
        self._setup(spec, arrays, dtype, device)
        lr, beta1 = 0.0002, 0.5
        self.criterion = nn.BCELoss()
        self.real_label, self.fake_label = 1, 0
        self.optimizerD = torch.optim.Adam(self.netD.parameters(), lr=lr, betas=(beta1, 0.999))
        self.optimizerG = torch.optim.Adam(self.netG.parameters(), lr=lr, betas=(beta1, 0.999))

    def step(self, real: np.ndarray, noise: np.ndarray) -> dict[str, float]:
        netD, netG, criterion, device = self.netD, self.netG, self.criterion, self.device
        # (1) Update D network: maximize log(D(x)) + log(1 - D(G(z)))
        netD.zero_grad()
        real_cpu = self._tensor(real)
        b_size = real_cpu.size(0)
        # the tutorial's torch.full((b_size,), real_label, device=device); recent torch needs the dtype
        label = torch.full((b_size,), self.real_label, dtype=self.dtype, device=device)
        output = netD(real_cpu).view(-1)
        errD_real = criterion(output, label)
        errD_real.backward()
        noise = self._tensor(noise)
        fake = netG(noise)
        label.fill_(self.fake_label)
        output = netD(fake.detach()).view(-1)
        errD_fake = criterion(output, label)
        errD_fake.backward()
        errD = errD_real + errD_fake
        self.optimizerD.step()
        # (2) Update G network: maximize log(D(G(z)))
        netG.zero_grad()
        label.fill_(self.real_label)
        output = netD(fake).view(-1)
        errG = criterion(output, label)
        errG.backward()
        self.optimizerG.step()
        return {"loss_D": errD.item(), "loss_G": errG.item()}


# -- 000 part 3: d2l's DCGAN on Pokemon -------------------------------------------------------------


class _G_block(nn.Module):
    def __init__(self, in_channels, out_channels, kernel_size=4, strides=2, padding=1):
        super().__init__()
        self.conv2d_trans = nn.ConvTranspose2d(in_channels, out_channels, kernel_size=kernel_size,
                                               stride=strides, padding=padding, bias=False)
        self.batch_norm = nn.BatchNorm2d(out_channels, 0.8)
        self.activation = nn.ReLU()

    def forward(self, x):
        return self.activation(self.batch_norm(self.conv2d_trans(x)))


class _NetG(nn.Module):
    def __init__(self, in_channels, n_G=64, nc=3):
        super().__init__()
        self.model = nn.Sequential(
            _G_block(in_channels, n_G * 8, strides=1, padding=0), _G_block(n_G * 8, n_G * 4),
            _G_block(n_G * 4, n_G * 2), _G_block(n_G * 2, n_G),
            nn.ConvTranspose2d(n_G, nc, kernel_size=4, stride=2, padding=1, bias=False), nn.Tanh())

    def forward(self, x):
        return self.model(x)


class _D_block(nn.Module):
    def __init__(self, in_channels, out_channels, kernel_size=4, strides=2, padding=1, alpha=0.2):
        super().__init__()
        self.conv2d = nn.Conv2d(in_channels, out_channels, kernel_size, strides, padding, bias=False)
        self.batch_norm = nn.BatchNorm2d(out_channels, 0.8)
        self.activation = nn.LeakyReLU(alpha)

    def forward(self, X):
        return self.activation(self.batch_norm(self.conv2d(X)))


class _NetD(nn.Module):
    def __init__(self, in_channels, n_D=64):
        super().__init__()
        self.model = nn.Sequential(_D_block(in_channels, n_D), _D_block(n_D, n_D * 2),
                                   _D_block(n_D * 2, n_D * 4), _D_block(n_D * 4, n_D * 8))
        self.conv = nn.Conv2d(n_D * 8, 1, kernel_size=4, bias=False)
        self.activation = nn.Sigmoid()

    def forward(self, x):
        return self.activation(self.conv(self.model(x)))


class _D2LDCGAN(_Loop):
    source = "000 part 3"

    def __init__(self, spec, arrays, dtype="float32", device="cpu"):
        _need_64px(spec)
        p = spec.params
        self.net_G, self.net_D = _NetG(p["nz"], p["ngf"], p["nc"]), _NetD(p["nc"], p["ndf"])
        self.nets = {"G": self.net_G, "D": self.net_D}
        self._setup(spec, arrays, dtype, device)
        lr = 0.005
        self.loss = nn.BCELoss()
        self.trainer_D = torch.optim.Adam(self.net_D.parameters(), lr=lr, betas=(0.5, 0.999))
        self.trainer_G = torch.optim.Adam(self.net_G.parameters(), lr=lr, betas=(0.5, 0.999))

    def update_D(self, X, Z):
        batch_size = X.shape[0]
        ones = torch.ones(batch_size, dtype=X.dtype, device=X.device).view(batch_size, 1)
        zeros = torch.zeros(batch_size, dtype=X.dtype, device=X.device).view(batch_size, 1)
        real_Y = self.net_D(X).view(batch_size, -1)
        fake_X = self.net_G(Z)
        fake_Y = self.net_D(fake_X).view(batch_size, -1)
        loss_D = (self.loss(real_Y, ones) + self.loss(fake_Y, zeros)) / 2
        loss_D.backward()
        self.trainer_D.step()
        return float(loss_D.detach().sum())  # d2l: metric.add(update_D(...)) reads it

    def update_G(self, Z):
        batch_size = Z.shape[0]
        ones = torch.ones(batch_size, dtype=Z.dtype, device=Z.device).view(batch_size, 1)
        fake_X = self.net_G(Z)
        fake_Y = self.net_D(fake_X).view(batch_size, -1)
        loss_G = self.loss(fake_Y, ones)
        loss_G.backward()
        self.trainer_G.step()
        return float(loss_G.detach().sum())

    def step(self, real: np.ndarray, noise: np.ndarray) -> dict[str, float]:
        X, Z = self._tensor(real), self._tensor(noise)
        self.trainer_D.zero_grad()
        d_loss = self.update_D(X, Z)
        self.trainer_G.zero_grad()
        g_loss = self.update_G(Z)
        return {"loss_D": d_loss, "loss_G": g_loss}


# -- 000 part 1: the dog-breed fine-tune --------------------------------------------------------------


class _Finetune(_Loop):
    source = "000 part 1"

    def __init__(self, spec, arrays, dtype="float32", device="cpu"):
        from torchvision.models.resnet import BasicBlock, ResNet

        p = spec.params
        if p["width"] != 64:
            raise GanparityError(f"torchvision's ResNet has width 64; {spec.name} has width={p['width']}")
        finetune_net = ResNet(BasicBlock, list(p["blocks"]))  # models.resnet34() for blocks (3, 4, 6, 3)
        for param in finetune_net.parameters():
            param.requires_grad = False
        finetune_net.fc = nn.Sequential(nn.Linear(in_features=512, out_features=p["hidden"]), nn.ReLU(),
                                        nn.Linear(in_features=p["hidden"], out_features=p["num_classes"]))
        self.net = finetune_net
        self.nets = {"backbone": nn.Sequential(*list(finetune_net.children())[:-1]), "head": finetune_net.fc}
        self._setup(spec, arrays, dtype, device)
        self.lr, wd = 0.03, 1e-4
        self.loss = nn.CrossEntropyLoss()
        self.optimizer = torch.optim.SGD(self.net.fc.parameters(), lr=self.lr, momentum=0.9, weight_decay=wd)

    def set_lr(self, lr: float) -> None:
        for param_group in self.optimizer.param_groups:
            param_group["lr"] = lr
        self.lr = lr

    def step(self, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
        X, y = self._tensor(x), torch.as_tensor(np.asarray(y), dtype=torch.long, device=self.device)
        self.optimizer.zero_grad()
        y_hat = self.net(X)
        l = self.loss(y_hat, y)  # noqa: E741 - the source's name
        l.backward()
        self.optimizer.step()
        return {"loss": l.item()}


# -- after 002, in PyTorch idioms: the Gluon DCGAN as a PyTorch user writes it -----------------------


class _GluonDCGANInTorch(_Loop):
    source, how = "002", "idiomatic"

    def __init__(self, spec, arrays, dtype="float32", device="cpu"):
        _need_64px(spec)
        p = spec.params
        self.netG, self.netD = _Generator(p["nz"], p["ngf"], p["nc"]), _Discriminator(p["nc"], p["ndf"], sigmoid=False)
        self.nets = {"G": self.netG, "D": self.netD}
        self._setup(spec, arrays, dtype, device)
        lr, beta1 = 0.0002, 0.5
        self.criterion = nn.BCEWithLogitsLoss()
        self.optimizerD = torch.optim.Adam(self.netD.parameters(), lr=lr, betas=(beta1, 0.999))
        self.optimizerG = torch.optim.Adam(self.netG.parameters(), lr=lr, betas=(beta1, 0.999))

    def step(self, real, noise) -> dict[str, float]:
        netD, netG, criterion = self.netD, self.netG, self.criterion
        data, latent_z = self._tensor(real), self._tensor(noise)
        ones = torch.ones(data.shape[0], dtype=data.dtype, device=data.device)
        zeros = torch.zeros(data.shape[0], dtype=data.dtype, device=data.device)
        netD.zero_grad()
        errD_real = criterion(netD(data).view(-1), ones)
        fake = netG(latent_z)
        errD_fake = criterion(netD(fake.detach()).view(-1), zeros)
        errD = errD_real + errD_fake
        errD.backward()
        self.optimizerD.step()
        netG.zero_grad()
        errG = criterion(netD(netG(latent_z)).view(-1), ones)
        errG.backward()
        self.optimizerG.step()
        return {"loss_D": errD.item(), "loss_G": errG.item()}


SOURCE_LOOPS = {"gan-gaussian": _GaussianGAN, "dcgan": _DCGAN, "dcgan-d2l": _D2LDCGAN,
                "dcgan-gluon": _GluonDCGANInTorch, "resnet34-finetune": _Finetune}


def source_loop(spec, arrays: dict[str, np.ndarray], dtype: str = "float32", device: str = "cpu"):
    """The spec's source loop in PyTorch, from neutral weights: .step(batch...) -> losses,
    .state() -> neutral arrays (and .set_lr(lr) for the fine-tune); .how says whether it is the
    source transcribed or the same loop in PyTorch idioms."""
    if spec.name not in SOURCE_LOOPS:
        raise GanparityError(f"no PyTorch loop for {spec.name}; PyTorch's are: {', '.join(SOURCE_LOOPS)}")
    return SOURCE_LOOPS[spec.name](spec, arrays, dtype, device)
