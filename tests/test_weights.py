"""The neutral weight format: init schemes drawn in numpy, exact round trips, clear refusals."""

import numpy as np
import pytest

from ganparity.common import shapes
from ganparity.common import weights as W
from ganparity.common.errors import GanparityError
from ganparity.common.spec.registry import get_spec

from .conftest import small_spec


def test_init_follows_each_source():
    dcgan = W.init_arrays(get_spec("dcgan"), 0)
    assert abs(dcgan["G.0.weight"].std() - 0.02) < 1e-3 and abs(dcgan["G.0.weight"].mean()) < 1e-3
    gamma = dcgan["G.1.weight"]
    assert abs(gamma.mean() - 1) < 0.01 and 0.01 < gamma.std() < 0.03  # weights_init: N(1, 0.02)
    assert not dcgan["G.1.bias"].any() and (dcgan["G.1.running_var"] == 1).all()
    gluon = W.init_arrays(get_spec("dcgan-gluon"), 0)
    assert (gluon["G.1.weight"] == 1).all()  # Normal(0.02) leaves gamma at 1
    gauss = W.init_arrays(get_spec("gan-gaussian"), 0)
    assert not gauss["G.0.bias"].any() and gauss["D.0.weight"].std() < 0.05


def test_order_and_shapes_follow_the_spec():
    spec = small_spec("dcgan")
    arrays = W.init_arrays(spec, 3)
    assert list(arrays) == list(shapes.tensor_shapes(spec.G)) + list(shapes.tensor_shapes(spec.D))
    assert all(a.dtype == np.float32 for a in arrays.values())
    assert W.init_arrays(spec, 3)["D.0.weight"].tobytes() == arrays["D.0.weight"].tobytes()


def test_npz_round_trip_is_exact(tmp_path):
    arrays = W.init_arrays(small_spec("dcgan-d2l"), 1)
    back = W.load(W.save(tmp_path / "w.npz", arrays))
    assert list(back) == list(arrays)
    assert all(np.array_equal(back[k], arrays[k]) for k in arrays)


def test_validate_names_every_offender():
    spec = small_spec("dcgan")
    arrays = W.init_arrays(spec, 0)
    del arrays["G.1.running_mean"]
    arrays["D.0.weight"] = np.zeros((1, 2, 3), np.float32)
    arrays["D.99.weight"] = np.zeros(1, np.float32)
    with pytest.raises(GanparityError) as e:
        W.validate(arrays, spec)
    msg = str(e.value)
    assert "missing G.1.running_mean" in msg and "extra D.99.weight" in msg
    assert "D.0.weight has shape (1, 2, 3)" in msg


def test_spec_weights_mismatch_is_refused():
    arrays = W.init_arrays(small_spec("dcgan"), 0)
    with pytest.raises(GanparityError, match="do not fit spec dcgan"):
        W.validate(arrays, get_spec("dcgan"))  # full-width spec, small weights


def test_backend_round_trip_is_exact(backend):
    spec = small_spec("dcgan")
    arrays = W.init_arrays(spec, 2)
    for net, model in spec.nets.items():
        built = backend.build(model)
        backend.set_arrays(built, model, W.split(arrays, net))
        got = backend.get_arrays(built, model)
        assert list(got) == list(W.split(arrays, net))
        assert all(np.array_equal(got[k], arrays[k]) for k in got)


def test_load_refuses_a_non_npz(tmp_path):
    bad = tmp_path / "w.npz"
    bad.write_text("not a zip")
    with pytest.raises(GanparityError, match="not a readable .npz"):
        W.load(bad)
    with pytest.raises(GanparityError, match="does not exist"):
        W.load(tmp_path / "missing.npz")
