"""Each framework difference of common.differences: the naive port diverges, the handled one agrees.

`naive={key}` builds the mxnet backend (and, for slopes, the torch one) as a first port would.
"""

from dataclasses import replace

import numpy as np
import pytest

from ganparity.common import parity
from ganparity.common.differences import DIFFERENCES
from ganparity.common.spec.layers import Linear
from ganparity.common.spec.model import Adam, ModelSpec

from .conftest import small_spec

TESTED = set()


def covers(key):
    TESTED.add(key)
    return lambda f: f


@pytest.fixture(autouse=True)
def _frameworks(both):
    return both


def rel(a: dict, b: dict, prefix: str = "") -> float:
    keys = [k for k in b if k.startswith(prefix)]
    return max(float(np.abs(a[k].astype(np.float64) - b[k]).max() / max(np.abs(b[k]).max(), 1e-30)) for k in keys)


def pair(name, naive, dtype="float32", batch=8, spec=None):
    """(torch runner, mxnet handled runner, mxnet naive runner) on the same weights and inputs."""
    from ganparity.common.backend import get_backend

    spec = spec or small_spec(name)
    inputs = parity.make_inputs(spec, batch, 1, 0)
    t, m = get_backend("torch"), get_backend("mxnet")
    return (parity.Runner(t, spec, inputs, dtype), parity.Runner(m, spec, inputs, dtype),
            parity.Runner(m, spec, inputs, dtype, naive={naive}))


def after_train_forward(r, net="D"):
    r.layer_outputs(net, "train")
    return r.state()


@covers("bn-momentum")
def test_bn_momentum():
    ref, ok, naive = pair("dcgan", "bn-momentum")
    want = after_train_forward(ref)
    assert rel(after_train_forward(ok), want, "D.3.running") < 1e-5
    assert rel(after_train_forward(naive), want, "D.3.running_mean") > 1.0  # follows the batch ~9x too fast


@covers("bn-variance")
def test_bn_running_variance_and_timing():
    ref, ok, naive = pair("dcgan", "bn-variance")
    want = after_train_forward(ref)
    assert rel(after_train_forward(ok), want, "D.3.running_var") < 1e-5
    got = after_train_forward(naive)  # native MXNet: a forward without backward moves nothing
    assert np.array_equal(got["D.3.running_var"], np.ones_like(got["D.3.running_var"]))
    assert rel(got, want, "D.3.running_var") > 1e-3
    want_step, got_step = ref.run_steps(1)[0], naive.run_steps(1)[0]  # after a step: biased variance
    # G runs forward once per dcgan step: running_var = 0.9 * 1 + 0.1 * batch_var; compare the batch term
    moved = lambda state: {"G.1": state["G.1.running_var"] - 0.9}
    assert rel(moved(got_step), moved(want_step)) > 3e-3  # biased: n / (n - 1) = 128 / 127 off
    assert rel(moved(ok.run_steps(1)[0]), moved(want_step)) < 5e-4


@covers("train-eval")
def test_train_mode_needs_train_mode_scope():
    ref, ok, naive = pair("dcgan", "train-eval")
    last = lambda outs: list(outs.values())[-1]
    want = last(ref.layer_outputs("G", "train"))
    assert rel({"x": last(ok.layer_outputs("G", "train"))}, {"x": want}) < 1e-5
    got = last(naive.layer_outputs("G", "train"))
    assert rel({"x": got}, {"x": want}) > 1e-2
    assert np.allclose(got, last(naive.layer_outputs("G", "eval")))  # silently used running stats


@covers("loss-reduction")
def test_per_sample_losses_and_trainer_step():
    ref, ok, naive = pair("dcgan-gluon", "loss-reduction", batch=8)
    want = ref.grads()
    assert rel(ok.grads(), want) < 1e-5
    got = naive.grads()
    ratio = np.abs(got["D.0.weight"]).sum() / np.abs(want["D.0.weight"]).sum()
    assert ratio == pytest.approx(8, rel=1e-3)  # gradients batch_size times too large


@covers("grad-req")
def test_two_backward_calls_accumulate():
    ref, ok, naive = pair("dcgan", "grad-req")  # 001 calls errD_real.backward(); errD_fake.backward()
    want = ref.grads()
    assert rel(ok.grads(), want, "D.") < 1e-5
    assert rel(naive.grads(), want, "D.") > 1e-2  # grad_req='write' kept only the fake half


@covers("init")
def test_init_drawn_once_in_numpy():
    import mxnet as mx

    ref, ok, _ = pair("dcgan", "init")
    ref.reset()
    ok.reset()
    assert rel(ok.state(), ref.state()) == 0.0  # identical starts, bit for bit
    # The naive port of 001's weights_init to Gluon: initialize(Normal(0.02)) leaves gamma at 1.
    ok.D.initialize(mx.init.Normal(0.02), force_reinit=True)
    gamma_naive, gamma_torch = ok.state()["D.3.weight"], ref.state()["D.3.weight"]
    assert (gamma_naive == 1).all() and gamma_torch.std() > 0.005


@covers("adam-eps")
def test_adam_epsilon_placement():
    spec = small_spec("dcgan")
    big_eps = Adam(2e-4, 0.5, 0.999, eps=1e-3)  # makes the placement visible in one step
    spec = replace(spec, recipe=replace(spec.recipe, opt_D=big_eps, opt_G=big_eps))
    ref, ok, naive = pair("dcgan", "adam-eps", spec=spec)
    want = ref.run_steps(1)[0]
    assert rel(ok.run_steps(1)[0], want, "D.0") < 1e-5
    assert rel(naive.run_steps(1)[0], want, "D.0") > 1e-3


@covers("adam-beta-f32")
def test_adam_betas_as_float32():
    ref, ok, naive = pair("dcgan-gluon", "adam-beta-f32", dtype="float64")
    want = ref.run_steps(1)[0]
    assert rel(ok.run_steps(1)[0], want) < 1e-6
    assert rel(naive.run_steps(1)[0], want) > 5e-6  # 6.4e-6: (1 - beta2) off by 1.3e-5


@covers("bce-clamp")
def test_bce_clamps_like_pytorch():
    import mxnet as mx
    import torch

    from ganparity.backends.mxnet.train import _loss

    p = np.array([0.0, 1e-30, 0.3, 1.0], np.float32)
    y = np.array([1.0, 1.0, 1.0, 0.0], np.float32)
    tp = torch.tensor(p, requires_grad=True)
    want = torch.nn.functional.binary_cross_entropy(tp, torch.tensor(y), reduction="none")
    want.sum().backward()

    def mx_loss(naive):
        mp = mx.nd.array(p)
        mp.attach_grad()
        with mx.autograd.record():
            out = _loss("bce", naive)(mp, mx.nd.array(y))
        out.backward()
        return out.asnumpy(), mp.grad.asnumpy()

    value, grad = mx_loss(frozenset())
    np.testing.assert_allclose(value, want.detach().numpy(), rtol=1e-6)
    np.testing.assert_allclose(grad, tp.grad.numpy(), rtol=1e-6)
    value, _ = mx_loss(frozenset({"bce-clamp"}))
    assert value[0] == pytest.approx(27.631, abs=1e-3) and want[0].item() == 100.0


@covers("leaky-slope")
def test_leaky_relu_slope_is_explicit():
    from ganparity.common.backend import get_backend

    spec = small_spec("dcgan")
    inputs = parity.make_inputs(spec, 8, 1, 0)
    t, m = get_backend("torch"), get_backend("mxnet")
    out = lambda be, naive: parity.Runner(be, spec, inputs, naive=naive).layer_outputs("D", "train")["D.1 output"]
    handled = frozenset()
    assert rel({"x": out(m, handled)}, {"x": out(t, handled)}) < 1e-5
    naive = frozenset({"leaky-slope"})
    assert rel({"x": out(m, naive)}, {"x": out(t, naive)}) > 1e-2  # 0.25 (MXNet op) vs 0.01 (torch)


@covers("dense-flatten")
def test_dense_does_not_flatten():
    from ganparity.common.backend import get_backend

    model = ModelSpec("X", (4, 2), (Linear(2, 3),))
    x = np.random.default_rng(0).standard_normal((5, 4, 2)).astype(np.float32)
    t, m = get_backend("torch"), get_backend("mxnet")
    weights = {"X.0.weight": np.ones((3, 2), np.float32), "X.0.bias": np.zeros(3, np.float32)}
    nets = {}
    for name, be, naive in (("torch", t, frozenset()), ("mx", m, frozenset()), ("mx naive", m, {"dense-flatten"})):
        nets[name] = be.build(model, frozenset(naive))
        be.set_arrays(nets[name], model, weights)
    want = t.forward(nets["torch"], x)
    assert want.shape == (5, 4, 3)
    np.testing.assert_allclose(m.forward(nets["mx"], x), want, rtol=1e-6)
    with pytest.raises(Exception, match="(?i)shape"):  # flatten=True: (5, 8) meets a (3, 2) weight
        m.forward(nets["mx naive"], x)


def test_every_difference_has_a_test():
    assert TESTED == {d.key for d in DIFFERENCES}
