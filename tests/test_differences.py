"""Each framework difference of common.differences, in both directions: porting PyTorch code to
Gluon (into mxnet) and Gluon code to PyTorch (into torch). In each, the naive port (naive={key})
diverges from the framework it is ported from, and the handled one agrees with it.

For a 'semantics' difference the spec follows the framework ported from (semantics=torch into
mxnet, semantics=mxnet into torch): the handled backend emulates it, the naive one computes its
own framework's numbers.
"""

from dataclasses import replace

import numpy as np
import pytest

from ganparity.common import parity
from ganparity.common.backend import get_backend
from ganparity.common.differences import DIFFERENCES, SEMANTIC_KEYS
from ganparity.common.spec.layers import Flatten, Linear
from ganparity.common.spec.model import Adam, ModelSpec, Semantics

from .conftest import small_spec

INTO = ("mxnet", "torch")
OTHER = {"torch": "mxnet", "mxnet": "torch"}
TESTED: set[tuple[str, str]] = set()


def covers(key):
    for into in INTO:
        TESTED.add((key, into))
    return lambda f: f


@pytest.fixture(autouse=True)
def _frameworks(both):
    return both


def rel(a: dict, b: dict, prefix: str = "") -> float:
    keys = [k for k in b if k.startswith(prefix)]
    return max(float(np.abs(a[k].astype(np.float64) - b[k]).max() / max(np.abs(b[k]).max(), 1e-30)) for k in keys)


def trio(name, key, into, dtype="float32", batch=8, spec=None):
    """(reference, handled, naive) runners on the same weights and inputs: the reference in the
    framework ported from, the handled and naive ports in the framework ported into."""
    spec = spec or small_spec(name)
    if key in SEMANTIC_KEYS:  # the spec follows the framework the code is ported from
        spec = with_semantics(spec, OTHER[into])
    inputs = parity.make_inputs(spec, batch, 1, 0)
    ref, port = get_backend(OTHER[into]), get_backend(into)
    return (parity.Runner(ref, spec, inputs, dtype), parity.Runner(port, spec, inputs, dtype),
            parity.Runner(port, spec, inputs, dtype, naive={key}))


def with_semantics(spec, framework, **recipe):
    return replace(spec, recipe=replace(spec.recipe, semantics=Semantics.of(framework), **recipe))


def after_train_forward(r, net="D"):
    r.layer_outputs(net, "train")
    return r.state()


@covers("bn-momentum")
@pytest.mark.parametrize("into", INTO)
def test_bn_momentum(into):
    ref, ok, naive = trio("dcgan", "bn-momentum", into)
    want = after_train_forward(ref)
    assert rel(after_train_forward(ok), want, "D.3.running") < 1e-5
    assert rel(after_train_forward(naive), want, "D.3.running_mean") > 1.0  # follows the batch ~9x too fast


@covers("bn-stats")
def test_bn_stats_into_mxnet():
    """PyTorch's statistics in Gluon: unbiased, moved by every train-mode forward."""
    ref, ok, naive = trio("dcgan", "bn-stats", "mxnet")
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


def test_bn_stats_into_torch():
    """MXNet's statistics in PyTorch: biased, moved in backward only, in backward order. In
    dcgan-gluon's step G's fake batch is detached in the D step, so G's statistics move once
    per step (G step), D's three times (fake, real, then the G step's fake)."""
    ref, ok, naive = trio("dcgan-gluon", "bn-stats", "torch", dtype="float64")
    want = after_train_forward(ref, "G")
    assert np.array_equal(want["G.1.running_var"], np.ones_like(want["G.1.running_var"]))
    assert rel(after_train_forward(ok, "G"), want, "G.") == 0  # no backward: nothing moves
    assert rel(after_train_forward(naive, "G"), want, "G.1.running_var") > 1e-3  # PyTorch moves them
    want_step = ref.run_steps(1)[0]
    stats = [k for k in want_step if "running" in k]
    # 1e-6, not exact: D's G-step batch moments come from D after its Adam step, and MXNet passes
    # lr to its op as a float32 (2e-4 -> 1.9999999e-4): 1.9e-9 measured
    assert rel(ok.run_steps(1)[0], {k: want_step[k] for k in stats}) < 1e-6
    assert rel(naive.run_steps(1)[0], {k: want_step[k] for k in stats}) > 1e-3


@covers("train-eval")
@pytest.mark.parametrize("into", INTO)
def test_train_and_eval_mode(into):
    ref, ok, naive = trio("dcgan", "train-eval", into)
    last = lambda outs: list(outs.values())[-1]
    # into mxnet, the naive port's 'train' forward uses running stats; into torch, its 'eval' uses batch stats
    mode, wrong = ("train", "eval") if into == "mxnet" else ("eval", "train")
    want = last(ref.layer_outputs("G", mode))
    assert rel({"x": last(ok.layer_outputs("G", mode))}, {"x": want}) < 1e-5
    got = last(naive.layer_outputs("G", mode))
    assert rel({"x": got}, {"x": want}) > 1e-2
    assert np.allclose(got, last(naive.layer_outputs("G", wrong)), atol=1e-6)  # silently the other mode


@covers("loss-reduction")
@pytest.mark.parametrize("into", INTO)
def test_loss_reduction(into):
    ref, ok, naive = trio("dcgan-gluon", "loss-reduction", into, batch=8)
    want = ref.grads()
    assert rel(ok.grads(), want) < 1e-5
    got = naive.grads()
    ratio = np.abs(got["D.0.weight"]).sum() / np.abs(want["D.0.weight"]).sum()
    assert ratio == pytest.approx(8, rel=1e-3)  # gradients batch_size times too large


@covers("grad-req")
def test_two_backward_calls_accumulate_into_mxnet():
    ref, ok, naive = trio("dcgan", "grad-req", "mxnet")  # 001 calls errD_real.backward(); errD_fake.backward()
    want = ref.grads()
    assert rel(ok.grads(), want, "D.") < 1e-5
    assert rel(naive.grads(), want, "D.") > 1e-2  # grad_req='write' kept only the fake half


def test_no_zero_grad_piles_up_into_torch():
    """Gluon code needs no zero_grad(); its naive PyTorch port then sums every step's gradients."""
    ref, ok, naive = trio("dcgan-gluon", "grad-req", "torch", dtype="float64", batch=8)
    ref.inputs = ok.inputs = naive.inputs = parity.make_inputs(ref.spec, 8, 2, 0)
    want = ref.run_steps(2)[0]
    assert rel(ok.run_steps(2)[0], want) < 1e-6
    assert rel(naive.run_steps(2)[0], want) > 1e-3


@covers("init")
@pytest.mark.parametrize("into", INTO)
def test_init_drawn_once_in_numpy(into):
    ref, ok, naive = trio("dcgan", "init", into)
    ref.reset()
    ok.reset()
    assert rel(ok.state(), ref.state()) == 0.0  # identical starts, bit for bit
    naive.reset()
    spec_gamma, own = ref.state()["D.3.weight"], naive.state()
    assert spec_gamma.std() > 0.005  # weights_init: gamma ~ N(1, 0.02)
    assert (own["D.3.weight"] == 1).all()  # both frameworks' own default: gamma = 1
    assert rel(own, ref.state(), "D.0.weight") > 0.5  # another draw, another distribution


@covers("adam-eps")
@pytest.mark.parametrize("into", INTO)
def test_adam_epsilon_placement(into):
    big_eps = Adam(2e-4, 0.5, 0.999, eps=1e-3)  # makes the placement visible in one step
    spec = small_spec("dcgan")
    spec = replace(spec, recipe=replace(spec.recipe, opt_D=big_eps, opt_G=big_eps))
    ref, ok, naive = trio("dcgan", "adam-eps", into, spec=spec)
    want = ref.run_steps(1)[0]
    assert rel(ok.run_steps(1)[0], want, "D.0") < 1e-5
    assert rel(naive.run_steps(1)[0], want, "D.0") > 1e-3


@covers("adam-betas")
@pytest.mark.parametrize("into", INTO)
def test_adam_betas_as_float32(into):
    ref, ok, naive = trio("dcgan-gluon", "adam-betas", into, dtype="float64")
    want = ref.run_steps(1)[0]
    assert rel(ok.run_steps(1)[0], want) < 1e-6
    assert rel(naive.run_steps(1)[0], want) > 5e-6  # 6.4e-6: (1 - beta2) off by 1.3e-5


P = np.array([0.0, 1e-30, 0.3, 1.0], np.float32)
Y = np.array([1.0, 1.0, 1.0, 0.0], np.float32)


def _torch_loss(emulate, naive=frozenset()):
    import torch

    from ganparity.backends.torch.train import _loss

    tp = torch.tensor(P, requires_grad=True)
    out = _loss("bce", emulate, naive)(tp, torch.tensor(Y)) * len(P)  # batch mean -> sum
    out.backward()
    return out.item(), tp.grad.numpy()


def _mxnet_loss(emulate):
    import mxnet as mx

    from ganparity.backends.mxnet.train import _loss

    mp = mx.nd.array(P)
    mp.attach_grad()
    with mx.autograd.record():
        out = _loss("bce", emulate, frozenset())(mp, mx.nd.array(Y))
    out.backward()
    return out.asnumpy(), mp.grad.asnumpy()


@covers("bce-clamp")
def test_bce_clamps_like_pytorch_into_mxnet():
    import torch

    tp = torch.tensor(P, requires_grad=True)
    want = torch.nn.functional.binary_cross_entropy(tp, torch.tensor(Y), reduction="none")
    want.sum().backward()
    value, grad = _mxnet_loss(("bce-clamp",))
    np.testing.assert_allclose(value, want.detach().numpy(), rtol=1e-6)
    np.testing.assert_allclose(grad, tp.grad.numpy(), rtol=1e-6)
    value, _ = _mxnet_loss(())  # naive: Gluon's own log(p + 1e-12)
    assert value[0] == pytest.approx(27.631, abs=1e-3) and want[0].item() == 100.0


def test_bce_log_eps_like_gluon_into_torch():
    value, grad = _mxnet_loss(())  # Gluon's SigmoidBinaryCrossEntropyLoss(from_sigmoid=True), per sample
    got, got_grad = _torch_loss(("bce-clamp",))
    assert got == pytest.approx(float(value.sum()), rel=1e-6)
    finite = np.isfinite(grad)
    np.testing.assert_allclose(got_grad[finite], grad[finite], rtol=1e-5)
    naive, _ = _torch_loss(())  # naive: PyTorch's clamp at -100
    # PyTorch clamps log(0) at -100 where Gluon gives log(1e-12) = -27.6
    assert naive == pytest.approx(100 - np.log(np.float32(1e-30)) - np.log(0.3) + 100, rel=1e-5)
    assert value[0] == pytest.approx(27.631, abs=1e-3)


@covers("sgd-momentum")
@pytest.mark.parametrize("into", INTO)
def test_sgd_momentum_across_an_lr_change(into):
    from ganparity.common import weights as W
    from ganparity.common.backend import build_nets
    from ganparity.common.spec.finetune import FinetuneRecipe
    from ganparity.common.spec.registry import get_spec

    spec = get_spec("resnet34-finetune", width=8, blocks=1, image_size=32, num_classes=5, hidden=16,
                    semantics=OTHER[into])
    recipe = replace(spec.recipe, bn_frozen_eval=True, lr=0.3)
    w = W.init_arrays(spec, 0)

    def run(backend, naive=frozenset()):
        be = get_backend(backend)
        nets = build_nets(be, spec)
        for n, m in spec.nets.items():
            be.set_arrays(nets[n], m, W.split(w, n))
        tr = be.FinetuneTrainer(spec, nets["backbone"], nets["head"], recipe, naive)
        for step, lr in enumerate((0.3, 0.3, 0.03, 0.03)):
            rng = np.random.default_rng(10 + step)
            x = rng.standard_normal((8, 3, 32, 32)).astype(np.float32)
            if tr.lr != lr:
                tr.set_lr(lr)
            tr.step(x, rng.integers(0, 5, 8))
        return be.get_arrays(nets["head"], spec.head)

    assert isinstance(recipe, FinetuneRecipe)
    want = run(OTHER[into])
    assert rel(run(into), want) < 1e-5
    assert rel(run(into, frozenset({"sgd-momentum"})), want) > 1e-3


@covers("leaky-slope")
@pytest.mark.parametrize("into", INTO)
def test_leaky_relu_slope_is_explicit(into):
    ref, ok, naive = trio("dcgan", "leaky-slope", into)
    out = lambda r: {"x": r.layer_outputs("D", "train")["D.1 output"]}
    want = out(ref)
    assert rel(out(ok), want) < 1e-5
    assert rel(out(naive), want) > 1e-2  # torch's 0.01 or the MXNet op's 0.25 instead of 0.2


@covers("dense-flatten")
@pytest.mark.parametrize("into", INTO)
def test_dense_flatten(into):
    """Into mxnet: Linear acts on the last axis, which Dense does only with flatten=False. Into
    torch: Gluon's Dense on a (N, C, H) input implied a flatten, which the naive port drops."""
    model = (ModelSpec("X", (4, 2), (Linear(2, 3),)) if into == "mxnet"
             else ModelSpec("X", (4, 2), (Flatten(), Linear(8, 3))))
    n_in = model.layers[-1].in_features
    x = np.random.default_rng(0).standard_normal((5, 4, 2)).astype(np.float32)
    weights = {"X.0.weight" if into == "mxnet" else "X.1.weight": np.ones((3, n_in), np.float32),
               "X.0.bias" if into == "mxnet" else "X.1.bias": np.zeros(3, np.float32)}
    ref, port = get_backend(OTHER[into]), get_backend(into)
    nets = {}
    for name, be, naive in (("ref", ref, frozenset()), ("ok", port, frozenset()), ("naive", port, {"dense-flatten"})):
        nets[name] = be.build(model, frozenset(naive))
        be.set_arrays(nets[name], model, weights)
    want = ref.forward(nets["ref"], x)
    assert want.shape == ((5, 4, 3) if into == "mxnet" else (5, 3))
    np.testing.assert_allclose(port.forward(nets["ok"], x), want, rtol=1e-6)
    with pytest.raises(Exception, match="(?i)shape|size"):  # a weight meets an input of the wrong width
        port.forward(nets["naive"], x)


def test_every_difference_has_a_test_in_both_directions():
    assert TESTED == {(d.key, into) for d in DIFFERENCES for into in INTO}


def test_the_semantic_differences_are_the_recipe_fields():
    assert set(SEMANTIC_KEYS) == set(Semantics.keys())
    assert Semantics.of("mxnet").name == "mxnet" and Semantics().name == "torch"
    assert replace(Semantics(), bn_stats="mxnet").name.startswith("adam-eps=torch")


def test_torch_gluon_bce_node_has_the_formulas_gradient_bit_for_bit():
    """The one-node emulation of Gluon's BCE (backends/torch/train.py) against the formula that
    autograd differentiates op by op: equal values and gradients, fp32 and fp64, p at 0 and 1,
    for the GAN labels 1 and 0 (one term each) and a smoothed 0.9 (both terms)."""
    torch = pytest.importorskip("torch")
    from ganparity.backends.torch.train import _gluon_bce

    gen = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.float64):
        for label in (1.0, 0.0, 0.9):
            p0 = torch.rand(64, dtype=dtype, generator=gen)
            p0[:2] = torch.tensor([0.0, 1.0], dtype=dtype)
            y = torch.full((64,), label, dtype=dtype)
            p1, p2 = p0.clone().requires_grad_(), p0.clone().requires_grad_()
            fast = _gluon_bce(p1, label)
            (fast * torch.linspace(0.5, 2, 64, dtype=dtype)).mean().backward()  # an upstream gradient of many values
            formula = -(y * torch.log(p2 + 1e-12) + (1 - y) * torch.log(1 - p2 + 1e-12))
            (formula * torch.linspace(0.5, 2, 64, dtype=dtype)).mean().backward()
            assert torch.equal(fast, formula) and torch.equal(p1.grad, p2.grad), (dtype, label)


def test_mxnet_batched_statistics_update_equals_the_per_layer_one_bit_for_bit():
    """backends/mxnet/build.py applies a built net's emulated BatchNorm updates (PyTorch's
    statistics) as one op at the end of its forward: the same running statistics, bit for bit, as
    one op per layer; a layer called on its own (outside its net's forward) updates at once."""
    mx = pytest.importorskip("mxnet")
    from ganparity.backends.mxnet import build as B
    from ganparity.common import weights as W
    from ganparity.common.backend import build_nets, get_backend
    from ganparity.common.spec.registry import get_spec

    be = get_backend("mxnet")
    spec = get_spec("resnet34-finetune", kind="finetune", width=4, blocks=1, image_size=32, num_classes=5,
                    hidden=8, semantics="torch")
    arrays = W.init_arrays(spec, 0)
    x = mx.nd.array(np.random.default_rng(0).standard_normal((4, 3, 32, 32)).astype(np.float32))
    stats, firsts = [], []
    for batched in (True, False):
        nets = build_nets(be, spec)
        be.set_arrays(nets["backbone"], spec.backbone, W.split(arrays, "backbone"))
        layers = [b for b in B._blocks(nets["backbone"]) if isinstance(b, B.EmulatedStatsBatchNorm)]
        assert len(layers) > 3
        firsts.append(layers[0])
        if not batched:
            for b in layers:
                b._deferred = None
        for _ in range(2):
            with mx.autograd.train_mode():
                nets["backbone"](x)
        stats.append(be.get_arrays(nets["backbone"], spec.backbone))
    assert stats[0].keys() == stats[1].keys()
    assert all(np.array_equal(stats[0][k], stats[1][k]) for k in stats[0])
    moved = [k for k in stats[0] if k.endswith("running_mean") and np.abs(stats[0][k]).max() > 0]
    assert moved, "the running statistics did not move"
    first = firsts[0]  # a layer of the batched net called on its own: updates at once
    assert first._deferred is not None
    rm = first.running_mean.data().asnumpy().copy()
    with mx.autograd.train_mode():
        first(mx.nd.ones((2, first.running_mean.shape[0], 4, 4)))
    assert not np.array_equal(first.running_mean.data().asnumpy(), rm)
