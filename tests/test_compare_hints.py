"""`ganparity compare` names the cause of a wrong port in a parameter-free layer: a corpus of wrong
ports (a ReLU6 ported as ReLU, a hard-sigmoid's slope, GELU's tanh approximation, a pooling's
ceil_mode, count_include_pad or padding, a resize's align_corners or mode, a BatchNorm ported as
InstanceNorm, an ELU's alpha, a Swish's beta, a LeakyReLU's slope), each caught at its layer with
the hint that names it; and the right port of each agrees (so the hint is about the edit, not
about the layer kind)."""

from __future__ import annotations

import pytest

from ganparity.common.errors import GanparityError

from .conftest import need

torch = pytest.importorskip("torch")
mx = pytest.importorskip("mxnet")
need("torch")
need("mxnet")

from mxnet.gluon import nn as gnn  # noqa: E402
from torch import nn  # noqa: E402

import ganparity  # noqa: E402


class Lambda(gnn.HybridBlock):
    """A parameter-free Gluon block of the user's own: its op is read from its symbol."""

    def __init__(self, fn, **kw):
        super().__init__(**kw)
        self.fn = fn

    def hybrid_forward(self, F, x):
        return self.fn(F, x)


def gluon(*layers):
    net = gnn.HybridSequential()
    net.add(gnn.Conv2D(4, 3, 1, 1, in_channels=3), *layers)
    return net


def torch_net(*layers, scale=1.0):
    conv = nn.Conv2d(3, 4, 3, 1, 1)
    with torch.no_grad():
        conv.weight.mul_(scale)  # large enough that activations pass 6 (a ReLU6 clip engages)
    return nn.Sequential(conv, *layers)


RELU6 = lambda F, x: F.clip(x, 0, 6)  # noqa: E731 - the model zoo's RELU6
HARD_SIGMOID = lambda F, x: F.hard_sigmoid(x)  # noqa: E731 - MXNet's: alpha 0.2, beta 0.5
RESIZE = lambda F, x: F.contrib.BilinearResize2D(x, scale_height=2.0, scale_width=2.0)  # noqa: E731

# name -> (torch layers (wrong port), torch layers (right port), gluon layers, input, torch conv scale, hint key)
CASES = {
    "relu6-as-relu": ([nn.ReLU()], [nn.ReLU6()], [Lambda(RELU6)], (2, 3, 8, 8), 40.0, "activation"),
    "hard-sigmoid-slope": ([nn.Hardsigmoid()], None, [Lambda(HARD_SIGMOID)], (2, 3, 8, 8),
                           4.0, "activation"),
    "gelu-tanh": ([nn.GELU(approximate="tanh")], [nn.GELU()], [gnn.GELU()], (2, 3, 8, 8), 3.0, "activation"),
    "elu-alpha": ([nn.ELU(alpha=1.0)], [nn.ELU(alpha=0.5)], [gnn.ELU(alpha=0.5)], (2, 3, 8, 8), 3.0, "activation"),
    "swish-beta": ([nn.SiLU()], None, [gnn.Swish(beta=2.0)], (2, 3, 8, 8), 3.0, "activation"),
    "leaky-slope": ([nn.LeakyReLU()], [nn.LeakyReLU(0.2)], [gnn.LeakyReLU(0.2)], (2, 3, 8, 8), 3.0, "leaky-slope"),
    "maxpool-ceil-mode": ([nn.MaxPool2d(2, 2, ceil_mode=True)], [nn.MaxPool2d(2, 2)], [gnn.MaxPool2D(2, 2)],
                          (2, 3, 7, 7), 1.0, "pool-ceil-mode"),
    "avgpool-count-include-pad": ([nn.AvgPool2d(3, 2, 1)], [nn.AvgPool2d(3, 2, 1, count_include_pad=False)],
                                  [gnn.AvgPool2D(3, 2, 1, count_include_pad=False)], (2, 3, 8, 8), 1.0,
                                  "pool-count-include-pad"),
    "avgpool-padding": ([nn.AvgPool2d(3, 1, 0)], [nn.AvgPool2d(3, 1, 1)], [gnn.AvgPool2D(3, 1, 1)], (2, 3, 8, 8),
                        1.0, "pool-config"),
    "resize-align-corners": ([nn.Upsample(scale_factor=2.0, mode="bilinear")],
                             [nn.Upsample(scale_factor=2.0, mode="bilinear", align_corners=True)], [Lambda(RESIZE)],
                             (2, 3, 8, 8), 1.0, "upsample"),
    "resize-mode": ([nn.Upsample(scale_factor=2.0, mode="nearest")],
                    [nn.Upsample(scale_factor=2.0, mode="bilinear", align_corners=True)], [Lambda(RESIZE)],
                    (2, 3, 8, 8), 1.0, "upsample"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_a_wrong_parameter_free_layer_is_named(name):
    wrong, right, g_layers, shape, scale, key = CASES[name]
    torch.manual_seed(0)
    report = ganparity.compare_models(torch_net(*wrong, scale=scale), gluon(*g_layers), shape, steps=0)
    assert report.verdict == "differ", report.summary()
    d = report.first_divergence
    assert d is not None and d.torch_layer == "1", (d.line() if d else None, report.summary())
    assert key in d.keys, (name, d.keys, [h.line() for h in d.hints])
    if right is not None:  # the same layer ported right agrees: the hint was about the edit
        torch.manual_seed(0)
        ok = ganparity.compare_models(torch_net(*right, scale=scale), gluon(*g_layers), shape, steps=0)
        assert ok.verdict != "differ", ok.summary()


def test_batchnorm_ported_as_instancenorm_is_named():
    """Their tensors cannot pair (InstanceNorm keeps no running statistics): the one-line refusal
    names the normalisation kind."""
    net = gnn.HybridSequential()
    net.add(gnn.Conv2D(4, 3, 1, 1, in_channels=3), gnn.BatchNorm(in_channels=4))
    with pytest.raises(GanparityError, match=r"\[norm-kind\].*InstanceNorm2d.*batchnorm"):
        ganparity.compare_models(torch_net(nn.InstanceNorm2d(4, affine=True)), net, (2, 3, 8, 8), steps=0)


def test_a_nan_weight_is_named_not_blamed_on_the_port():
    t = torch_net(nn.ReLU())
    with torch.no_grad():
        t[0].weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(GanparityError, match=r"the torch model holds non-finite values: '0.weight' \(1 NaN"):
        ganparity.compare_models(t, gluon(gnn.Activation("relu")), (2, 3, 8, 8))


class GluonFusion(gnn.HybridBlock):
    """Two branches fused, the low one first (Fast-SCNN's feature fusion): conv-BN-relu on one,
    conv-BN on the other, a relu after the sum."""

    def __init__(self, **kw):
        super().__init__(**kw)
        with self.name_scope():
            self.low = gnn.HybridSequential()
            self.low.add(gnn.Conv2D(4, 3, 1, 1, in_channels=3), gnn.BatchNorm(in_channels=4), gnn.Activation("relu"))
            self.high = gnn.HybridSequential()
            self.high.add(gnn.Conv2D(4, 1, in_channels=3), gnn.BatchNorm(in_channels=4))
            self.relu = gnn.Activation("relu")

    def hybrid_forward(self, F, x):
        low = self.low(x)
        return self.relu(self.high(x) + low)


class TorchFusion(nn.Module):
    """The same, as a port may write it: the high branch first."""

    def __init__(self):
        super().__init__()
        self.low = nn.Sequential(nn.Conv2d(3, 4, 3, 1, 1), nn.BatchNorm2d(4), nn.ReLU())
        self.high = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
        self.relu = nn.ReLU()

    def forward(self, x):
        high = self.high(x)
        return self.relu(high + self.low(x))


def test_branches_run_in_another_order_pair_their_parameter_free_layers():
    """The layers without tensors are aligned between anchors that keep their order in both walks:
    with the branches swapped, the low branch's relu pairs with the Gluon low branch's relu, not
    with the relu after the sum (which made a correct port 'differ' at that layer, max rel 1.4 on
    GluonCV's Fast-SCNN); a wrong relu in that branch (a LeakyReLU) is still named there."""
    torch.manual_seed(0)
    report = ganparity.compare_models(TorchFusion(), GluonFusion(), (2, 3, 8, 8), steps=0)
    assert report.verdict == "agree", report.summary()
    paired = {p.torch.path: p.mxnet.path for p in report.pairs}
    assert paired["low.2"] == "low.2" and paired["relu"] == "relu", paired
    wrong = TorchFusion()
    wrong.low[2] = nn.LeakyReLU(0.5)
    report = ganparity.compare_models(wrong, GluonFusion(), (2, 3, 8, 8), steps=0)
    assert report.verdict == "differ" and report.first_divergence.torch_layer == "low.2", report.summary()
