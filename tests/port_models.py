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


def mobilenet():
    """mobilenet_v2_1_0 of the Gluon model zoo (ReLU6 as a clip, depthwise convolutions), no weights."""
    return vision.mobilenet_v2_1_0(pretrained=False)


def raising():
    raise RuntimeError("no GPU here")


def exiting():
    import sys

    sys.exit(3)


def with_nan_weight():

    net = nn.HybridSequential()
    net.add(nn.Dense(4, in_units=6))
    net.initialize()
    w = net[0].weight.data()
    w[0, 0] = float("nan")
    net[0].weight.set_data(w)
    return net


class _Swish(nn.HybridBlock):
    def hybrid_forward(self, F, x):
        return F.broadcast_mul(x, F.sigmoid(x)) + F.arctan(x)


def with_arctan():
    net = nn.HybridSequential()
    net.add(nn.Dense(4, in_units=6), _Swish())
    return net


# -- user-style blocks with branches (issue 19's proof beyond Sequential) ---------------------------


class ResidualProjection(nn.HybridBlock):
    """A residual block whose shortcut is a strided 1x1 projection with its own BatchNorm."""

    def __init__(self, channels=8, **kw):
        super().__init__(**kw)
        self.conv1 = nn.Conv2D(channels, 3, 2, 1, use_bias=False)
        self.bn1 = nn.BatchNorm()
        self.conv2 = nn.Conv2D(channels, 3, 1, 1, use_bias=False)
        self.bn2 = nn.BatchNorm()
        self.proj = nn.Conv2D(channels, 1, 2, 0, use_bias=False)
        self.proj_bn = nn.BatchNorm()

    def hybrid_forward(self, F, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + self.proj_bn(self.proj(x)))


class ConcatBranches(nn.HybridBlock):
    """An Inception-style block: three branches joined by a channel concat, then a Dense head."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.b1 = nn.Conv2D(4, 1)
        self.b3 = nn.HybridSequential()
        self.b3.add(nn.Conv2D(4, 3, padding=1), nn.BatchNorm(), nn.LeakyReLU(0.1))
        self.pool = nn.MaxPool2D(3, 1, 1)
        self.head = nn.Dense(5)

    def hybrid_forward(self, F, x):
        y = F.concat(self.b1(x), self.b3(x), self.pool(x), dim=1)
        return self.head(y)


class Upsampler(nn.HybridBlock):
    """A decoder stage: nearest upsampling then a convolution, and a transposed-conv branch summed in."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.conv = nn.Conv2D(6, 3, padding=1)
        self.deconv = nn.Conv2DTranspose(6, 4, 2, 1)
        self.bn = nn.BatchNorm()

    def hybrid_forward(self, F, x):
        up = self.conv(F.UpSampling(x, scale=2, sample_type="nearest"))
        return F.tanh(self.bn(up + self.deconv(x)))


class TinyUNet(nn.HybridBlock):
    """A two-level U-Net: the encoder's features skip across and are concatenated in the decoder."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.enc1 = nn.HybridSequential()
        self.enc1.add(nn.Conv2D(8, 3, padding=1), nn.BatchNorm(), nn.Activation("relu"))
        self.down = nn.MaxPool2D(2)
        self.enc2 = nn.HybridSequential()
        self.enc2.add(nn.Conv2D(16, 3, padding=1), nn.BatchNorm(), nn.Activation("relu"))
        self.up = nn.Conv2DTranspose(8, 2, 2)
        self.dec = nn.HybridSequential()
        self.dec.add(nn.Conv2D(8, 3, padding=1), nn.BatchNorm(), nn.Activation("relu"))
        self.out = nn.Conv2D(1, 1)

    def hybrid_forward(self, F, x):
        e1 = self.enc1(x)
        e2 = self.enc2(self.down(e1))
        return self.out(self.dec(F.concat(self.up(e2), e1, dim=1)))


class DenseResidualMLP(nn.HybridBlock):
    """Dense layers with a residual sum, LayerNorm and Dropout(0) (an MLP block of a user's model)."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.fc1 = nn.Dense(12, in_units=12, flatten=False)
        self.norm = nn.LayerNorm(in_channels=12)
        self.fc2 = nn.Dense(3, in_units=12)
        self.drop = nn.Dropout(0.0)

    def hybrid_forward(self, F, x):
        return self.fc2(self.drop(self.norm(F.relu(self.fc1(x)) + x)))


class EmbeddingBag(nn.HybridBlock):
    """6 token ids (floats, as Gluon takes them) -> Embedding(7, 5) -> Dense (which flattens)."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.embed = nn.Embedding(7, 5)
        self.fc = nn.Dense(3, in_units=30)

    def hybrid_forward(self, F, x):
        return self.fc(self.embed(x))


def embedding_bag():
    return EmbeddingBag()


def residual_projection():
    return ResidualProjection()


def concat_branches():
    return ConcatBranches()


def upsampler():
    return Upsampler()


def tiny_unet():
    return TinyUNet()


def dense_residual_mlp():
    return DenseResidualMLP()


# -- the project's own specs, built natively by the mxnet backend -------------------------------------

SMALL = dict(nz=8, ngf=4, ndf=4, image_size=16)
SPEC_NETS = {  # factory name -> (spec, knobs, net, input shape)
    "gan_gaussian_G": ("gan-gaussian", {}, "G", (4, 2)),
    "gan_gaussian_D": ("gan-gaussian", {}, "D", (4, 2)),
    "dcgan_G": ("dcgan", SMALL, "G", (4, 8, 1, 1)),
    "dcgan_D": ("dcgan", SMALL, "D", (4, 3, 16, 16)),
    "dcgan_gluon_G": ("dcgan-gluon", SMALL, "G", (4, 8, 1, 1)),
    "dcgan_gluon_D": ("dcgan-gluon", SMALL, "D", (4, 3, 16, 16)),
    "dcgan_d2l_G": ("dcgan-d2l", SMALL, "G", (4, 8, 1, 1)),
    "dcgan_d2l_D": ("dcgan-d2l", SMALL, "D", (4, 3, 16, 16)),
    "resnet34_finetune_backbone": ("resnet34-finetune", dict(width=4, image_size=32), "backbone", (2, 3, 32, 32)),
    "resnet34_finetune_head": ("resnet34-finetune", dict(width=4, image_size=32), "head", (2, 32)),
}


def _spec_net(spec_name, knobs, net):
    import ganparity
    from ganparity.common.backend import build_nets

    spec = ganparity.get_spec(spec_name, semantics="mxnet", **knobs)
    return build_nets(ganparity.get_backend("mxnet"), spec)[net]


for _name, (_spec, _knobs, _net, _shape) in SPEC_NETS.items():
    globals()[_name] = (lambda s=_spec, k=_knobs, n=_net: _spec_net(s, k, n))


class BNLeakyBlock(nn.HybridBlock):
    """A hand-written block of the kind users port: convolutions with BatchNorm and LeakyReLU(0.2),
    a skip connection, average pooling that leaves its padding out of the count, dropout, a head."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.conv1 = nn.Conv2D(8, 3, 1, 1)
        self.bn1 = nn.BatchNorm()
        self.act1 = nn.LeakyReLU(0.2)
        self.conv2 = nn.Conv2D(8, 3, 1, 1, use_bias=False)
        self.bn2 = nn.BatchNorm()
        self.act2 = nn.LeakyReLU(0.2)
        self.pool = nn.AvgPool2D(3, 2, 1, count_include_pad=False)
        self.drop = nn.Dropout(0.3)
        self.head = nn.Dense(10)

    def hybrid_forward(self, F, x):
        x = self.act1(self.bn1(self.conv1(x)))
        x = x + self.act2(self.bn2(self.conv2(x)))
        return self.head(self.drop(self.pool(x)))


def bn_leaky_block():
    return BNLeakyBlock()


def mobilenet_trained_scale():
    """mobilenet_v2_1_0 with weights at the scale a trained one has (BatchNorm gamma drawn in
    [2, 4]): its ReLU6 clips engage, as in real use (at random init no activation reaches 6)."""
    import mxnet as mx
    import numpy as np

    net = vision.mobilenet_v2_1_0(pretrained=False)
    mx.random.seed(7)
    net.initialize(mx.init.Xavier())
    net(mx.nd.zeros((1, 3, 32, 32)))
    rng = np.random.default_rng(7)
    for name, p in net.collect_params().items():
        if name.endswith("gamma"):
            p.set_data(mx.nd.array(rng.uniform(2.0, 4.0, p.shape).astype(np.float32)))
    return net


class ConvUnit(nn.HybridBlock):
    """A user's repeated unit: conv-BN-ReLU twice, and a 1x1 projection where the shape changes."""

    def __init__(self, channels, stride=1, in_channels=0, proj=False, **kw):
        super().__init__(**kw)
        self.conv1 = nn.Conv2D(channels, 3, stride, 1, use_bias=False, in_channels=in_channels)
        self.bn1 = nn.BatchNorm(in_channels=channels)
        self.conv2 = nn.Conv2D(channels, 3, 1, 1, use_bias=False, in_channels=channels)
        self.bn2 = nn.BatchNorm(in_channels=channels)
        self.proj = nn.Conv2D(channels, 1, stride, use_bias=False, in_channels=in_channels) if proj else None

    def hybrid_forward(self, F, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (self.proj(x) if self.proj is not None else x))


class UnitNet(nn.HybridBlock):
    def __init__(self, **kw):
        super().__init__(**kw)
        self.stem = nn.Conv2D(8, 3, 1, 1, in_channels=3)
        self.units = nn.HybridSequential()
        self.units.add(ConvUnit(8, 1, 8), ConvUnit(8, 1, 8), ConvUnit(16, 2, 8, proj=True), ConvUnit(16, 1, 16))
        self.head = nn.Dense(5, in_units=16)

    def hybrid_forward(self, F, x):
        x = self.units(F.relu(self.stem(x)))
        return self.head(F.Pooling(x, kernel=(1, 1), global_pool=True, pool_type="avg"))


def repeated_units():
    return UnitNet()


# -- the model zoos' ops (issue 26): a block that trains through several of them -----------------------


class ZooOps(nn.HybridBlock):
    """Ops of GluonCV and GluonNLP models around a convolution and a Dense layer: adaptive pooling
    and a bilinear resize back (a segmentation head's context branch), reflect padding, a split
    into two outputs, a transposed and reshaped self-attention with a temperature, L2Normalization,
    hard_sigmoid, maximum with a number, slicing and a log_softmax: the port's proof trains it."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.conv = nn.Conv2D(8, 3, padding=1, in_channels=3)
        self.proj = nn.Dense(5, in_units=4)

    def hybrid_forward(self, F, x):
        y = self.conv(x)
        context = F.contrib.AdaptiveAvgPooling2D(y, output_size=(3, 2))
        y = y + F.contrib.BilinearResize2D(context, y, mode="like", align_corners=False)
        y = F.pad(y, mode="reflect", pad_width=(0, 0, 0, 0, 1, 1, 1, 1))
        a, b = F.split(y, num_outputs=2, axis=1)
        q = F.reshape(F.transpose(a, axes=(0, 2, 3, 1)), shape=(0, -1, 4))
        k = F.reshape(b, shape=(0, 0, -1))
        attention = F.softmax(F.batch_dot(q, k), axis=-1, temperature=2.0)
        v = F.L2Normalization(F.swapaxes(F.batch_dot(attention, q), 1, 2), mode="channel")
        first = F.squeeze(F.slice_axis(v, axis=2, begin=0, end=1), axis=2)
        pooled = F.hard_sigmoid(F.mean(v, axis=2) * 3) + F.maximum(first, 0.1)
        return self.proj(pooled), F.log_softmax(F.sum(F.square(b), axis=(2, 3)), axis=1)


def zoo_ops():
    return ZooOps()


class ResizeSteps(nn.HybridBlock):
    """A segmentation net's shape in small: conv-BatchNorm-relu down, a bilinear resize up (MXNet's
    BilinearResize2D keeps its interpolation weights in float32 in float64: a correct port's fp64
    forward differs by ~3e-7), conv-BatchNorm-relu; at batch 1 the training steps amplify that gap."""

    def __init__(self, **kw):
        super().__init__(**kw)
        with self.name_scope():
            self.a = nn.HybridSequential()
            self.a.add(nn.Conv2D(8, 3, padding=1), nn.BatchNorm(), nn.Activation("relu"))
            self.b = nn.HybridSequential()
            self.b.add(nn.Conv2D(8, 3, padding=1, strides=2), nn.BatchNorm(), nn.Activation("relu"))
            self.c = nn.HybridSequential()
            self.c.add(nn.Conv2D(4, 3, padding=1), nn.BatchNorm(), nn.Activation("relu"), nn.Conv2D(3, 1))

    def hybrid_forward(self, F, x):
        y = F.contrib.BilinearResize2D(self.b(self.a(x)), height=13, width=13, align_corners=True)
        return self.c(y)


def resize_steps():
    return ResizeSteps()


def nested_concurrent():
    """Inception's shape in small: a HybridConcurrent whose branch holds another HybridConcurrent
    (Inception v3's InceptionE), so one Gluon class is built inside itself."""
    from mxnet.gluon.contrib.nn import HybridConcurrent

    def conv(channels, kernel, padding):
        s = nn.HybridSequential()
        s.add(nn.Conv2D(channels, kernel, padding=padding, use_bias=False), nn.BatchNorm(), nn.Activation("relu"))
        return s

    inner = HybridConcurrent(axis=1)
    inner.add(conv(4, (1, 3), (0, 1)), conv(4, (3, 1), (1, 0)))
    branch = nn.HybridSequential()
    branch.add(conv(6, 1, 0), inner)
    outer = HybridConcurrent(axis=1)
    outer.add(conv(4, 1, 0), branch)
    net = nn.HybridSequential()
    net.add(conv(8, 3, 1), outer, nn.GlobalAvgPool2D(), nn.Flatten(), nn.Dense(5))
    return net


class SharedActivation(nn.HybridBlock):
    """One `self.relu` block for every activation (GluonCV's Xception, and common in Gluon code
    written like PyTorch): each call makes a graph node of the same name."""

    def __init__(self, **kw):
        super().__init__(**kw)
        with self.name_scope():
            self.conv1 = nn.Conv2D(4, 3, padding=1)
            self.bn1 = nn.BatchNorm()
            self.conv2 = nn.Conv2D(6, 3, padding=1)
            self.bn2 = nn.BatchNorm()
            self.relu = nn.Activation("relu")
            self.fc = nn.Dense(3)

    def hybrid_forward(self, F, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        return self.fc(self.relu(x))


def shared_activation():
    return SharedActivation()


class Head(nn.HybridBlock):
    """GluonCV's RPN's signature: hybrid_forward(F, img, *x), called with the image and a feature map."""

    def __init__(self, **kw):
        super().__init__(**kw)
        with self.name_scope():
            self.conv = nn.Conv2D(4, 3, padding=1)

    def hybrid_forward(self, F, img, *x):
        return F.broadcast_add(self.conv(x[0]), F.mean(img, axis=1, keepdims=True))


class VarargsCall(nn.HybridBlock):
    def __init__(self, **kw):
        super().__init__(**kw)
        with self.name_scope():
            self.stem = nn.Conv2D(6, 3, padding=1)
            self.head = Head()

    def hybrid_forward(self, F, x):
        return self.head(x, self.stem(x))


def varargs_call():
    return VarargsCall()


def symbol_batchnorm():
    """A graph built from symbols as GluonCV's SSD feature expander builds it: mx.sym.BatchNorm with
    the op's defaults, fix_gamma=True among them (gamma fixed at 1, never trained)."""
    import mxnet as mx

    data = mx.sym.var("data")
    y = mx.sym.Convolution(data, kernel=(3, 3), pad=(1, 1), num_filter=4, name="conv0")
    y = mx.sym.Activation(mx.sym.BatchNorm(y, name="bn0"), act_type="relu")
    y = mx.sym.FullyConnected(mx.sym.flatten(y), num_hidden=3, name="fc0")
    return mx.gluon.SymbolBlock(y, [data])


def symbol_batchnorm_gamma_2():
    """The same graph holding a gamma of 2, which MXNet ignores (fix_gamma): refused, not ported wrong."""
    import mxnet as mx

    block = symbol_batchnorm()
    block.initialize()
    block(mx.nd.zeros((2, 3, 6, 6)))
    next(p for n, p in block.collect_params().items() if n.endswith("gamma")).set_data(mx.nd.full((4,), 2.0))
    return block


class ResizeChain(nn.HybridBlock):
    """Fast-SCNN's kind of forward: bilinear resizes up and down between convolutions. MXNet computes
    the sample weights in float32 in a float64 run, so a correct port's float64 forward sits ~1e-6
    from the Gluon block's."""

    def __init__(self, **kw):
        super().__init__(**kw)
        with self.name_scope():
            self.conv0, self.conv1 = nn.Conv2D(4, 3, padding=1), nn.Conv2D(3, 3, padding=1)

    def hybrid_forward(self, F, x):
        y = F.contrib.BilinearResize2D(self.conv0(x), height=157, width=151)
        y = F.contrib.BilinearResize2D(self.conv1(y), height=37, width=41, align_corners=False)
        return F.contrib.BilinearResize2D(y, height=149, width=163)


def resize_chain():
    return ResizeChain()


class UnusedConstant(nn.HybridBlock):
    """A constant the forward never reads (Faster R-CNN's training-target encoder holds its means
    and stds so): the port leaves it out and says so."""

    def __init__(self, **kw):
        super().__init__(**kw)
        with self.name_scope():
            self.means = self.params.get_constant("means", [[0.0, 0.1, 0.2, 0.3]])
            self.fc = nn.Dense(3)

    def hybrid_forward(self, F, x, means):
        return self.fc(x)


def unused_constant():
    return UnusedConstant()


class CudnnOffBatchNorm(nn.BatchNorm):
    """GluonCV's BatchNormCudnnOff: nn.BatchNorm's op with cuDNN off (its simple-pose models use it)."""

    def hybrid_forward(self, F, x, gamma, beta, running_mean, running_var):
        return F.BatchNorm(x, gamma, beta, running_mean, running_var, name="fwd", cudnn_off=True, **self._kwargs)


def batchnorm_subclass():
    net = nn.HybridSequential()
    net.add(nn.Conv2D(4, 3, padding=1), CudnnOffBatchNorm(), nn.Activation("relu"), nn.GlobalAvgPool2D(),
            nn.Dense(3))
    return net


# -- issue 26: several inputs, every missing op at once ---------------------------------------------


class TokensAndLength(nn.HybridBlock):
    """Two inputs, as an NLP encoder takes them: token ids (2, 6) through an Embedding and a valid
    length (2,) that masks the positions past it (SequenceMask), then a Dense per sample."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.embed = nn.Embedding(9, 4)
        self.fc = nn.Dense(3, in_units=24)

    def hybrid_forward(self, F, tokens, length):
        h = self.embed(tokens)  # (N, T, 4)
        h = F.SequenceMask(h, sequence_length=length, use_sequence_length=True, axis=1)
        return self.fc(h)


def tokens_and_length():
    return TokensAndLength()


class _TwoMissing(nn.HybridBlock):
    def hybrid_forward(self, F, x):
        return F.arctan(x) + F.cbrt(x)


def with_two_missing_ops():
    net = nn.HybridSequential()
    net.add(nn.Dense(4, in_units=6), _TwoMissing())
    return net


class SharedSum(nn.HybridBlock):
    """A residual sum whose BatchNorm operand is read again after it: torchvision's in-place
    `out += identity` would change that second read."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.conv = nn.Conv2D(4, 3, 1, 1, in_channels=4, use_bias=False)
        self.bn = nn.BatchNorm(in_channels=4)

    def hybrid_forward(self, F, x):
        y = self.bn(self.conv(x))
        return F.relu(y + x) * y


def shared_sum():
    return SharedSum()
