"""FID from a local Inception-v3 weights file of either framework's model zoo (the tests make one:
random weights, the real file format)."""

import numpy as np
import pytest

from ganparity.common.errors import GanparityError
from ganparity.common.gan.quality import INCEPTION_FILES, fid, frechet_distance, inception_backend

from .conftest import need

pytestmark = pytest.mark.slow  # FID's Inception network and real training runs: minutes


def _torch_file(d):
    torch = pytest.importorskip("torch")
    from torchvision.models import inception_v3

    torch.manual_seed(0)
    net = inception_v3(weights=None, aux_logits=True, init_weights=False)
    torch.save(net.state_dict(), d / "inception_v3.pth")
    return d / "inception_v3.pth"


def _gluon_file(d):
    mx = pytest.importorskip("mxnet")
    from mxnet.gluon.model_zoo import vision

    mx.random.seed(0)
    net = vision.inception_v3()
    net.initialize(mx.init.Xavier())
    net(mx.nd.zeros((1, 3, 299, 299)))  # the model zoo defers its parameters' shapes
    net.save_parameters(str(d / "inception_v3.params"))
    return d / "inception_v3.params"


@pytest.fixture(scope="module", params=["torch", "mxnet"])
def weights(request, tmp_path_factory):
    d = tmp_path_factory.mktemp(f"fid-{request.param}")
    return (_torch_file if request.param == "torch" else _gluon_file)(d)


def test_frechet_distance_closed_form():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((4000, 3))
    b = rng.standard_normal((4000, 3)) * 2 + 1  # N(1, 4I): d = 3 * 1 + 3 * (1 + 4 - 2 * 2) = 6
    assert frechet_distance(a, a) == pytest.approx(0, abs=1e-9)
    assert frechet_distance(a, b) == pytest.approx(6, rel=0.1)


def test_fid_of_a_set_with_itself_is_zero_and_grows_with_difference(weights):
    rng = np.random.default_rng(0)
    real = rng.uniform(-1, 1, (4, 3, 32, 32)).astype(np.float32)
    be = inception_backend(weights)
    assert be.NAME == INCEPTION_FILES[weights.suffix] and weights.suffix in be.INCEPTION_SUFFIXES
    net = be.load_inception(weights)
    f_real = be.inception_features(real, net)
    f_shift = be.inception_features(np.clip(real + 0.5, -1, 1), net)
    assert f_real.shape == (4, 2048)
    apart = frechet_distance(f_real, f_shift)
    assert apart > 0 and abs(frechet_distance(f_real, f_real)) < 1e-6 * apart
    f_gray = be.inception_features(real[:2, :1], net)  # 1-channel images are repeated to RGB
    assert np.isfinite(f_gray).all() and f_gray.shape == (2, 2048)


def test_train_writes_fid_to_quality_json(weights, tmp_path):
    import json

    from ganparity.common.gan.loop import TrainConfig, train

    need("torch")
    cfg = TrainConfig(spec="dcgan", backend="torch", knobs=dict(nz=8, ngf=4, ndf=4, image_size=16), n_data=16,
                      epochs=1, batch_size=8, out=str(tmp_path / "run"), progress=False, eval_samples=4, gif=False,
                      fid_weights=str(weights))
    train(cfg)
    q = json.loads((tmp_path / "run" / "quality.json").read_text())
    assert q["fid"] > 0 and q["fid_weights"] == str(weights)


def test_bad_weights_files(tmp_path):
    torch = pytest.importorskip("torch")
    need("mxnet")

    with pytest.raises(GanparityError, match="does not exist"):
        fid(np.zeros((2, 3, 8, 8)), np.zeros((2, 3, 8, 8)), tmp_path / "nope.pth")
    other = tmp_path / "other.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, other)
    with pytest.raises(GanparityError, match="not an Inception-v3 state dict"):
        fid(np.zeros((2, 3, 8, 8)), np.zeros((2, 3, 8, 8)), other)
    junk = tmp_path / "junk.params"
    junk.write_bytes(b"not a params file")
    with pytest.raises(GanparityError, match="not a Gluon inception_v3 .params file"):
        fid(np.zeros((2, 3, 8, 8)), np.zeros((2, 3, 8, 8)), junk)
    wrong = tmp_path / "weights.onnx"
    wrong.write_bytes(b"x")
    with pytest.raises(GanparityError, match=r"expected one of \.pth, \.pt, \.params"):
        fid(np.zeros((2, 3, 8, 8)), np.zeros((2, 3, 8, 8)), wrong)
