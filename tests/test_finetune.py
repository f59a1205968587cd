"""Source 000 end to end on tiny data: pretrained files of both frameworks, `ganparity finetune
convert`, `finetune train` in both backends, `finetune predict` and the submission format."""

import csv
import json

import numpy as np
import pytest

from ganparity.common import weights as W
from ganparity.common.backend import get_backend
from ganparity.common.cli import main
from ganparity.common.errors import GanparityError
from ganparity.common.finetune import images
from ganparity.common.spec.registry import get_spec

TINY_SET = ["--set", "width=8", "--set", "blocks=1", "--set", "image_size=32", "--set", "hidden=16"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A torchvision resnet34 state_dict (.pth) and a Gluon model-zoo resnet34_v1 (.params), both
    random but with non-trivial BatchNorm statistics, plus each framework's own ImageNet logits."""
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    mx = pytest.importorskip("mxnet")
    from mxnet.gluon.model_zoo import vision

    d = tmp_path_factory.mktemp("pretrained")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 64, 64)).astype(np.float32)
    torch.manual_seed(0)
    tv = torchvision.models.resnet34(weights=None)
    with torch.no_grad():
        for name, b in tv.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(torch.as_tensor(0.1 * rng.standard_normal(b.shape), dtype=b.dtype))
            elif name.endswith("running_var"):
                b.copy_(torch.as_tensor(rng.uniform(0.5, 1.5, b.shape), dtype=b.dtype))
    torch.save(tv.state_dict(), d / "resnet34.pth")
    tv_logits = tv.eval()(torch.as_tensor(x)).detach().numpy()
    gl = vision.resnet34_v1()
    gl.initialize(mx.init.Xavier())
    gl(mx.nd.array(x))  # the model zoo defers its parameters' shapes to the first forward
    for name, p in gl.collect_params().items():
        if name.endswith("running_mean"):
            p.set_data(mx.nd.array(0.1 * rng.standard_normal(p.shape)))
        elif name.endswith("running_var"):
            p.set_data(mx.nd.array(rng.uniform(0.5, 1.5, p.shape)))
    gl.save_parameters(str(d / "resnet34_v1.params"))
    gl_logits = gl(mx.nd.array(x)).asnumpy()
    return {"dir": d, "x": x, "tv": tv_logits, "gl": gl_logits}


def _imagenet_logits(be, spec, arrays, x):
    """Our spec-built backbone, then the file's own fc: must equal the source model's logits."""
    net = be.build(spec.backbone)
    be.set_arrays(net, spec.backbone, W.split(arrays, "backbone"))
    f = be.forward(net, x, "eval")
    return f.astype(np.float64) @ arrays["fc.weight"].T.astype(np.float64) + arrays["fc.bias"]


@pytest.mark.slow
def test_pretrained_files_load_into_both_backends(files):
    spec = get_spec("resnet34-finetune", image_size=64)
    tb, mb = get_backend("torch"), get_backend("mxnet")
    from_tv = tb.load_pretrained(files["dir"] / "resnet34.pth", spec)
    from_gl = mb.load_pretrained(files["dir"] / "resnet34_v1.params", spec)
    assert len(from_tv) == len(from_gl) == 182
    for be in (tb, mb):  # either framework runs either file and reproduces the source model
        for arrays, ref in ((from_tv, files["tv"]), (from_gl, files["gl"])):
            got = _imagenet_logits(be, spec, arrays, files["x"])
            rel = np.abs(got - ref).max() / np.abs(ref).max()
            assert rel < 1e-5, (be.NAME, rel)


@pytest.mark.slow
def test_convert_torch_to_mxnet_and_back(files, tmp_path, capsys):
    import mxnet as mx
    import torch
    import torchvision
    from mxnet.gluon.model_zoo import vision

    d = files["dir"]
    out = tmp_path / "from_torch.params"
    assert main(["finetune", "convert", "--from", "torch", "--to", "mxnet", str(d / "resnet34.pth"), str(out)]) == 0
    assert "verified" in capsys.readouterr().out
    gl = vision.resnet34_v1()
    gl.load_parameters(str(out))  # strict: every name of the model zoo's layout, nothing extra
    got = gl(mx.nd.array(files["x"])).asnumpy()
    assert np.abs(got - files["tv"]).max() / np.abs(files["tv"]).max() < 1e-5
    back = tmp_path / "from_mxnet.pth"
    assert main(["finetune", "convert", "--from", "mxnet", "--to", "torch", str(d / "resnet34_v1.params"),
                 str(back)]) == 0
    tv = torchvision.models.resnet34(weights=None)
    tv.load_state_dict(torch.load(back, weights_only=True))  # strict
    got = tv.eval()(torch.as_tensor(files["x"])).detach().numpy()
    assert np.abs(got - files["gl"]).max() / np.abs(files["gl"]).max() < 1e-5


def test_convert_refuses_a_file_of_another_width(files, tmp_path, capsys):
    code = main(["finetune", "convert", "--from", "torch", "--to", "mxnet", *TINY_SET,
                 str(files["dir"] / "resnet34.pth"), str(tmp_path / "x.params")])
    assert code == 2
    assert "do not fit spec resnet34-finetune" in capsys.readouterr().err


# -- the tiny Kaggle-shaped folder --------------------------------------------------------------

BREEDS = ["affenpinscher", "afghan_hound", "basenji"]


@pytest.fixture(scope="module")
def kaggle(tmp_path_factory):
    from PIL import Image

    d = tmp_path_factory.mktemp("kaggle")
    (d / "train").mkdir()
    (d / "test").mkdir()
    rng = np.random.default_rng(0)
    rows = ["id,breed"]
    for i in range(24):
        w, h = rng.integers(40, 80, 2)
        img = (rng.uniform(0, 255, (h, w, 3)) * [1.0, 0.5 + 0.25 * (i % 3), 0.5]).astype(np.uint8)
        Image.fromarray(img).save(d / "train" / f"id{i:03d}.jpg", quality=90)
        rows.append(f"id{i:03d},{BREEDS[i % 3]}")
    for i in range(5):
        Image.fromarray(rng.integers(0, 255, (50, 70, 3), dtype=np.uint8)).save(d / "test" / f"t{i}.jpg")
    (d / "labels.csv").write_text("\n".join(rows) + "\n")
    out = d / "reorg"
    assert main(["finetune", "reorganize", "--data", str(d), "--out", str(out), "--valid-ratio", "0.25"]) == 0
    return out


def test_transforms_shapes_and_determinism(kaggle):
    folder = images.class_folder(kaggle / "train")
    assert folder.classes == tuple(BREEDS)
    a = list(images.batches(folder, 32, 7, True, np.random.default_rng(3)))
    b = list(images.batches(folder, 32, 7, True, np.random.default_rng(3)))
    assert [x.shape for x, _, _ in a] == [(7, 3, 32, 32), (7, 3, 32, 32), (4, 3, 32, 32)]
    assert all(np.array_equal(p[0], q[0]) and np.array_equal(p[1], q[1]) for p, q in zip(a, b))
    x = images.eval_transform(folder.files[0], 32)
    assert x.shape == (3, 32, 32) and x.dtype == np.float32
    for w, h in ((10, 100), (100, 10), (50, 50)):  # fallback centre crop and ordinary tries
        left, top, cw, ch = images.random_resized_crop_box(w, h, np.random.default_rng(0))
        assert 0 <= left and left + cw <= w and 0 <= top and top + ch <= h


@pytest.mark.parametrize("backend", ["torch", "mxnet"])
def test_train_one_epoch_and_predict(kaggle, tmp_path, backend, capsys):
    pytest.importorskip(backend)
    run = tmp_path / "run"
    assert main(["finetune", "train", "--backend", backend, "--data", str(kaggle), "--epochs", "1",
                 "--batch-size", "8", *TINY_SET, "--out", str(run)]) == 0
    meta = json.loads((run / "run.json").read_text())
    assert meta["classes"] == BREEDS and meta["recipe"]["lr"] == 0.03 and len(meta["history"]) == 1
    assert np.isfinite(meta["history"][0]["train_loss"]) and "valid_acc" in meta["history"][0]
    other = "mxnet" if backend == "torch" else "torch"
    subs = []
    for b in (backend, other):  # either backend predicts from either's run, to the same numbers
        pytest.importorskip(b)
        sub = tmp_path / f"submission_{b}.csv"
        assert main(["finetune", "predict", "--backend", b, "--data", str(kaggle), "--run", str(run),
                     "--out", str(sub)]) == 0
        with open(sub, newline="") as f:
            rows = list(csv.reader(f))
        assert rows[0] == ["id", *BREEDS]
        assert [r[0] for r in rows[1:]] == [f"t{i}" for i in range(5)]
        probs = np.array([[float(v) for v in r[1:]] for r in rows[1:]])
        assert probs.shape == (5, 3) and (probs >= 0).all()
        assert np.allclose(probs.sum(1), 1.0, atol=1e-9)
        subs.append(probs)
    assert np.allclose(subs[0], subs[1], atol=1e-5)


@pytest.mark.slow
def test_full_run_uses_train_valid_and_settings(kaggle, tmp_path):
    from ganparity.common.finetune.loop import parse_settings, train

    pytest.importorskip("torch")
    knobs, recipe = parse_settings(["width=8", "blocks=1", "image_size=32", "hidden=16", "bn_frozen_eval=true",
                                    "lr=0.01", "epochs=2", "lr_period=1", "batch_size=12"])
    assert recipe == {"bn_frozen_eval": True, "lr": 0.01, "epochs": 2, "lr_period": 1, "batch_size": 12}
    lines = []
    meta = train("torch", kaggle, tmp_path / "run", full=True, knobs=knobs, recipe=recipe, log=lines.append)
    assert meta["full"] and [h["lr"] for h in meta["history"]] == pytest.approx([0.01, 0.001])
    assert "valid_acc" not in meta["history"][0] and "randomly initialised" in lines[0]
    # a neutral .npz backbone as --weights: the new run starts from the first run's backbone
    again = train("torch", kaggle, tmp_path / "run2", knobs=knobs, recipe=dict(recipe, epochs=1),
                  weights=str(tmp_path / "run" / "weights.npz"), log=lines.append)
    assert again["weights"].endswith("weights.npz")
    w1, w2 = (np.load(tmp_path / r / "weights.npz") for r in ("run", "run2"))
    assert np.array_equal(w1["backbone.0.weight"], w2["backbone.0.weight"])
    with pytest.raises(GanparityError, match="not a valid bool"):
        parse_settings(["bn_frozen_eval=maybe"])
    with pytest.raises(GanparityError, match="unknown setting"):
        parse_settings(["ngf=3"])
