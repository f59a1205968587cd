"""Shape and parameter-count inference, against the numbers the sources print."""

import pytest

from ganparity.common import shapes
from ganparity.common.errors import GanparityError
from ganparity.common.spec.gans import d_block, g_block
from ganparity.common.spec.model import ModelSpec
from ganparity.common.spec.registry import GAN_SPECS, get_spec


def test_dcgan_seed_shapes_and_counts():
    spec = get_spec("dcgan")
    assert shapes.output_of(spec.G) == (3, 64, 64)  # 000/001: G(z) is (1, 3, 64, 64)
    assert shapes.output_of(spec.D) == (1, 1, 1)  # D(x) is (1, 1, 1, 1)
    assert shapes.param_count(spec.G) == 3_576_704  # the PyTorch tutorial's netG
    assert shapes.param_count(spec.D) == 2_765_568


def test_d2l_block_examples():
    """000: G_block(3, 20) doubles 16x16 -> 32x32; with strides 1, padding 0: 1x1 -> 4x4;
    D_block(3, 20) halves 16x16 -> 8x8."""
    out = lambda layers, shape: shapes.output_of(ModelSpec("X", shape, tuple(layers)))
    assert out(g_block(3, 20), (3, 16, 16)) == (20, 32, 32)
    assert out(g_block(3, 20, strides=1, padding=0), (3, 1, 1)) == (20, 4, 4)
    assert out(d_block(3, 20), (3, 16, 16)) == (20, 8, 8)


def test_d2l_batchnorm_eps_is_as_written():
    spec = get_spec("dcgan-d2l")
    bns = [layer for layer in spec.D.layers if type(layer).__name__ == "BatchNorm"]
    assert len(bns) == 4 and all(b.eps == 0.8 for b in bns)  # BN on every D block, eps 0.8
    assert shapes.param_count(spec.D) == 2_765_568 + 2 * 64  # the first block's BN


@pytest.mark.parametrize("name", GAN_SPECS)
def test_every_spec_infers(name):
    spec = get_spec(name)
    assert shapes.output_of(spec.G) == tuple(spec.D.input_shape)
    names = list(shapes.tensor_shapes(spec.G))
    assert names[0].startswith("G.0.")


def test_width_knobs_scale_the_model():
    small = get_spec("dcgan", ngf=8, ndf=8, nz=16, image_size=32)
    assert shapes.output_of(small.G) == (3, 32, 32)
    assert shapes.param_count(small.G) < shapes.param_count(get_spec("dcgan").G)


def test_impossible_image_size_names_the_layer_and_shapes():
    with pytest.raises(GanparityError, match=r"G's last layer G\.10 outputs \(3, 32, 32\) but D takes \(3, 48, 48\)"):
        get_spec("dcgan", image_size=48)


def test_layer_that_cannot_take_its_input_is_named():
    stack = ModelSpec("D", (3, 2, 2), d_block(3, 8, kernel_size=4, strides=1, padding=0))
    message = r"D\.0 Conv2d\(.*\) cannot take input shape \(3, 2, 2\): output would be \(-1, -1\)"
    with pytest.raises(GanparityError, match=message):
        shapes.infer(stack)


@pytest.mark.parametrize("knobs, message", [
    (dict(ngf=0), "ngf must be a positive integer, got 0"),
    (dict(image_size=4), "image_size must be at least 8"),
    (dict(width=3), "unknown knob for dcgan 'width'; valid: nz, ngf, ndf, nc, image_size, batch_size, epochs"),
])
def test_bad_knobs(knobs, message):
    with pytest.raises(GanparityError, match=message):
        get_spec("dcgan", **knobs)


def test_unknown_spec_lists_valid_ones():
    with pytest.raises(GanparityError, match="unknown spec 'wgan'; valid: gan-gaussian, dcgan, dcgan-d2l, dcgan-gluon"):
        get_spec("wgan")
