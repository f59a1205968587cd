"""Gluon factories the port tests port (imported by path as 'tests/port_models.py:NAME'): the
DCGAN G and D of seed 002 at small widths, resnet18_v1 without weights, and bad inputs."""

from mxnet.gluon import nn
from mxnet.gluon.model_zoo import vision


def netG(nc=3, ngf=8):
    """Seed 002's generator, ngf=8 (the source has 64)."""
    net = nn.Sequential()
    with net.name_scope():
        for i, c in enumerate((ngf * 8, ngf * 4, ngf * 2, ngf)):
            net.add(nn.Conv2DTranspose(c, 4, 1 if i == 0 else 2, 0 if i == 0 else 1, use_bias=False))
            net.add(nn.BatchNorm())
            net.add(nn.Activation("relu"))
        net.add(nn.Conv2DTranspose(nc, 4, 2, 1, use_bias=False))
        net.add(nn.Activation("tanh"))
    return net


def netD(ndf=8):
    """Seed 002's discriminator, ndf=8; it ends in a logit."""
    net = nn.Sequential()
    with net.name_scope():
        net.add(nn.Conv2D(ndf, 4, 2, 1, use_bias=False))
        net.add(nn.LeakyReLU(0.2))
        for c in (ndf * 2, ndf * 4, ndf * 8):
            net.add(nn.Conv2D(c, 4, 2, 1, use_bias=False))
            net.add(nn.BatchNorm())
            net.add(nn.LeakyReLU(0.2))
        net.add(nn.Conv2D(1, 4, 1, 0, use_bias=False))
    return net


def resnet18():
    return vision.resnet18_v1(pretrained=False)


def raising():
    raise RuntimeError("no GPU here")


class _Swish(nn.HybridBlock):
    def hybrid_forward(self, F, x):
        return F.broadcast_mul(x, F.sigmoid(x)) + F.arctan(x)


def with_arctan():
    net = nn.HybridSequential()
    net.add(nn.Dense(4, in_units=6), _Swish())
    return net
