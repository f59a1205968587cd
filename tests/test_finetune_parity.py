"""resnet34-finetune (source 000): spec shapes, and torch vs Gluon parity of the forward, the head's
gradients, one SGD step, the lr decay, and the frozen backbone's BatchNorm in both modes."""

import numpy as np
import pytest

from ganparity.backends.mxnet import zoo as gluon_zoo
from ganparity.backends.torch import zoo as torchvision_zoo
from ganparity.common import shapes
from ganparity.common import weights as W
from ganparity.common.backend import build_nets, get_backend
from ganparity.common.errors import GanparityError
from ganparity.common.parity import compare
from ganparity.common.spec.finetune import FinetuneRecipe
from ganparity.common.spec.layers import Conv2d, Residual
from ganparity.common.spec.registry import GAN_SPECS, get_spec

HEAD = 512 * 256 + 256 + 256 * 120 + 120
TINY = dict(width=8, blocks=1, image_size=32, num_classes=5, hidden=16)
RTOL_TRAIN = 1e-4  # train-mode BatchNorm through the whole backbone (see the parity test's note)


def test_full_spec_shapes_and_param_counts():
    spec = get_spec("resnet34-finetune")
    assert shapes.param_count(spec.backbone) == 21_284_672
    assert shapes.param_count(spec.head) == HEAD == 162_168
    assert shapes.output_of(spec.backbone) == (512,)
    names = list(shapes.tensor_shapes(spec.backbone))
    assert len(names) == 180  # the Gluon model zoo's 182 minus output.weight/bias
    assert names[:2] == ["backbone.0.weight", "backbone.1.weight"]
    assert "backbone.5.0.downsample.0.weight" in names and "backbone.4.0.downsample.0.weight" not in names
    assert spec.recipe == FinetuneRecipe(128, 20, 0.03, 0.9, 1e-4, 10, 0.1, True, False)
    assert [spec.recipe.lr_at(e) for e in (0, 9, 10, 19)] == pytest.approx([0.03, 0.03, 0.003, 0.003])
    assert "resnet34-finetune" not in GAN_SPECS


def test_bad_knobs_and_sizes_are_refused():
    with pytest.raises(GanparityError, match="unknown knob"):
        get_spec("resnet34-finetune", depth=3)
    block = Residual((Conv2d(4, 8, 3, 1, 1, bias=False),), ())  # widens without a downsample
    with pytest.raises(GanparityError, match=r"net.0 Residual.*body gives \(8, 6, 6\) but the shortcut "
                                               r"gives \(4, 6, 6\)"):
        shapes.output_shape(block, (4, 6, 6), "net.0")


def test_name_maps_round_trip():
    spec = get_spec("resnet34-finetune")
    names = list(shapes.tensor_shapes(spec.backbone))
    tv = torchvision_zoo
    assert tv.zoo_name("backbone.4.0.body.1.weight") == "layer1.0.bn1.weight"
    assert tv.zoo_name("backbone.7.2.body.3.weight") == "layer4.2.conv2.weight"
    assert tv.zoo_name("backbone.6.0.downsample.1.running_var") == "layer3.0.downsample.1.running_var"
    assert all(tv.neutral_name(tv.zoo_name(n)) == n for n in names)
    assert gluon_zoo.zoo_name("backbone.1.weight", spec) == "features.1.gamma"
    assert gluon_zoo.zoo_name("backbone.4.0.body.0.weight", spec) == "features.4.0.body.0.weight"


@pytest.fixture(scope="module")
def nets():
    pytest.importorskip("torch")
    pytest.importorskip("mxnet")
    return get_backend("torch"), get_backend("mxnet")


def _built(be, spec, arrays=None) -> dict:
    nets = build_nets(be, spec)
    for n, m in spec.nets.items():
        if arrays is not None:
            be.set_arrays(nets[n], m, W.split(arrays, n))
    return nets


def _arrays(be, nets, spec) -> dict:
    return {k: v for n, m in spec.nets.items() for k, v in be.get_arrays(nets[n], m).items()}


def test_backends_count_and_name_the_same_tensors(nets):
    spec = get_spec("resnet34-finetune", image_size=64)
    for be in nets:
        built = _built(be, spec)
        assert be.param_count(built["backbone"]) == 21_284_672
        assert be.param_count(built["head"]) == HEAD
        arrays = _arrays(be, built, spec)
        want = shapes.tensor_shapes(spec.backbone) | shapes.tensor_shapes(spec.head)
        assert {k: a.shape for k, a in arrays.items()} == want
        be.FinetuneTrainer(spec, built["backbone"], built["head"])
        assert be.param_count(built["backbone"]) == 0  # frozen
        assert be.param_count(built["backbone"]) + be.param_count(built["head"]) == HEAD


def _random_stats(arrays, rng):
    """Non-trivial BatchNorm statistics and affine terms, so eval-mode parity tests them."""
    out = dict(arrays)
    for k, v in arrays.items():
        if k.endswith("running_mean") or (k.endswith(".bias") and k.startswith("backbone")):
            out[k] = (0.1 * rng.standard_normal(v.shape)).astype(np.float32)
        elif k.endswith("running_var") or (k.startswith("backbone") and v.ndim == 1):
            out[k] = rng.uniform(0.5, 1.5, v.shape).astype(np.float32)
    return out


@pytest.mark.slow
def test_eval_forward_parity_full_resnet34(nets):
    """Real ResNet-34 widths at 64x64, batch 2: eval logits within 1e-5 (relative)."""
    torch_be, mx_be = nets
    spec = get_spec("resnet34-finetune", image_size=64)
    rng = np.random.default_rng(0)
    w = _random_stats(W.init_arrays(spec, 0), rng)
    x = rng.standard_normal((2, 3, 64, 64)).astype(np.float32)
    out = []
    for be in nets:
        built = _built(be, spec, w)
        out.append(be.logits(built["backbone"], built["head"], x, "eval"))
    diff = compare({"logits": out[0]}, {"logits": out[1]})[0]
    assert out[0].shape == (2, 120)
    assert diff.max_rel <= 1e-5, diff


def _pair(nets, spec, recipe, seed=0):
    w = W.init_arrays(spec, seed)
    pairs = []
    for be in nets:
        built = _built(be, spec, w)
        pairs.append((be, built, be.FinetuneTrainer(spec, built["backbone"], built["head"], recipe)))
    return w, pairs


def _batch(spec, n=8, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n,) + spec.input_shape).astype(np.float32)
    return x, rng.integers(0, spec.num_classes, n)


@pytest.mark.parametrize("bn_frozen_eval", [False, True])
def test_head_gradients_and_one_sgd_step(nets, bn_frozen_eval):
    """Same numpy weights and batch: losses, the head's gradients (batch means) and every tensor
    after one optimizer step agree. With bn_frozen_eval=False the backbone normalises with batch
    statistics (a different fp32 summation order per framework), hence RTOL_TRAIN there."""
    spec = get_spec("resnet34-finetune", **TINY)
    recipe = FinetuneRecipe(bn_frozen_eval=bn_frozen_eval)
    _, pairs = _pair(nets, spec, recipe)
    x, y = _batch(spec)
    losses = [tr.backward(x, y) for _, _, tr in pairs]
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    g = [tr.grads() for _, _, tr in pairs]
    assert list(g[0]) == list(g[1]) == ["head.0.weight", "head.0.bias", "head.2.weight", "head.2.bias"]
    rtol = 1e-5 if bn_frozen_eval else RTOL_TRAIN
    bad = [d for d in compare(g[0], g[1], group=True) if d.max_rel > rtol]
    assert not bad, bad
    for _, _, tr in pairs:
        tr.update()
    after = [_arrays(be, net, spec) for be, net, _ in pairs]
    bad = [d for d in compare(after[0], after[1]) if d.max_rel > rtol]
    assert not bad, bad


def test_sgd_parity_across_the_lr_decay(nets):
    """MXNet keeps lr inside its momentum state; set_lr rescales it so that steps after the x0.1
    decay still follow torch.optim.SGD (which keeps its buffer and applies the new lr)."""
    spec = get_spec("resnet34-finetune", **TINY)
    recipe = FinetuneRecipe(bn_frozen_eval=True, lr=0.3)
    _, pairs = _pair(nets, spec, recipe)
    for step, lr in enumerate((0.3, 0.3, 0.03, 0.03)):
        x, y = _batch(spec, seed=10 + step)
        for _, _, tr in pairs:
            if tr.lr != lr:
                tr.set_lr(lr)
            tr.step(x, y)
    a, b = (_arrays(be, net, spec) for be, net, _ in pairs)
    bad = [d for d in compare(a, b) if d.max_rel > 1e-5]
    assert not bad, bad


@pytest.mark.parametrize("bn_frozen_eval", [False, True])
def test_frozen_backbone_batchnorm(nets, bn_frozen_eval):
    """Backbone weights never change; its running statistics move (source 000's PyTorch port,
    bn_frozen_eval=False) or stay put (the MXNet version, True), identically in both backends."""
    spec = get_spec("resnet34-finetune", **TINY)
    w, pairs = _pair(nets, spec, FinetuneRecipe(bn_frozen_eval=bn_frozen_eval))
    x, y = _batch(spec)
    for be, net, tr in pairs:
        tr.step(x, y)
        after = _arrays(be, net, spec)
        stats = [k for k in w if k.startswith("backbone") and k.endswith(("running_mean", "running_var"))]
        weights = [k for k in w if k.startswith("backbone") and k not in stats]
        assert all(np.array_equal(after[k], w[k]) for k in weights), be.__name__
        moved = [k for k in stats if not np.array_equal(after[k], w[k])]
        assert (len(moved) == len(stats)) if not bn_frozen_eval else not moved, (be.__name__, moved)
        assert not np.array_equal(after["head.2.weight"], w["head.2.weight"])
    a, b = (_arrays(be, net, spec) for be, net, _ in pairs)
    stats_a = {k: v for k, v in a.items() if "running" in k}
    bad = [d for d in compare(stats_a, {k: b[k] for k in stats_a}) if d.max_rel > RTOL_TRAIN]
    assert not bad, bad
