"""Training: the shared loop, run directories, checkpoints, resume, hand-over, the guards.

Models are tiny (SMALL widths, 16 px) and datasets a few dozen items, so the file runs in well
under a minute on two CPU cores; the gan-gaussian runs use the full recipe of source 003.
"""

from __future__ import annotations

import json
import shutil
import signal
import warnings

import numpy as np
import pytest

from ganparity.common.errors import GanparityError
from ganparity.common.gan import data as Dt
from ganparity.common.gan.loop import Diverged, TrainConfig, train
from ganparity.common.gan.run import CHECKPOINT, load_checkpoint
from ganparity.common.inputs import GAUSSIAN_B

from .conftest import SMALL, need

# W2 to the true Gaussian after source 003's recipe (20 epochs, batch 8, 1000 points, lr_D 0.05,
# lr_G 0.005, seed 0), measured on CPU: torch 0.2005, mxnet 0.1502. Bounds: twice that.
W2_BOUND = {"torch": 0.40, "mxnet": 0.30}
BACKEND_NAMES = ("torch", "mxnet")


def tiny(out, backend="torch", epochs=2, **kw) -> TrainConfig:
    base = dict(spec="dcgan", backend=backend, knobs=dict(SMALL), n_data=48, epochs=epochs, batch_size=16,
                out=str(out), progress=False, eval_samples=16, gif=False)
    return TrainConfig(**(base | kw))


def rows(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def assert_same_checkpoint(a, b, atol=0.0):
    ma, wa, oa, _ = load_checkpoint(a / CHECKPOINT)
    mb, wb, ob, _ = load_checkpoint(b / CHECKPOINT)
    assert (ma["epoch"], ma["step"]) == (mb["epoch"], mb["step"])
    assert wa.keys() == wb.keys() and oa.keys() == ob.keys()
    for k in wa:
        np.testing.assert_allclose(wa[k], wb[k], rtol=0, atol=atol, err_msg=k)
    for k in oa:
        np.testing.assert_allclose(oa[k], ob[k], rtol=0, atol=atol, err_msg=k)


# -- an image folder with the usual trouble in it -------------------------------------------------


def write_folder(root, n_rgb=10):
    """ImageFolder layout (two class folders), non-square sizes, JPEG and PNG, one grayscale, one
    RGBA, one palette image, and one corrupt file."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(n_rgb):
        cls = root / ("a" if i % 2 else "b")
        cls.mkdir(parents=True, exist_ok=True)
        h, w = (20 + i, 30) if i % 3 else (24, 24)
        im = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        im.save(cls / f"img{i}.{'jpg' if i % 4 == 0 else 'png'}")
    Image.fromarray(rng.integers(0, 256, (18, 18), dtype=np.uint8), "L").save(root / "a" / "gray.png")
    Image.fromarray(rng.integers(0, 256, (18, 22, 4), dtype=np.uint8), "RGBA").save(root / "b" / "rgba.png")
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).convert("P").save(root / "b" / "pal.png")
    (root / "a" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    (root / "a" / "notes.txt").write_text("not an image: ignored")
    return n_rgb + 3


def test_image_folder_loads_crops_converts_and_caches(tmp_path, monkeypatch):
    root = tmp_path / "faces"
    good = write_folder(root)
    with pytest.warns(UserWarning, match=r"1 of 14 files .* skipped: a/broken.jpg"):
        ds = Dt.image_folder(root, 16, 3, cache_dir=tmp_path / "cache")
    assert ds.array.shape == (good, 3, 16, 16) and ds.array.dtype == np.uint8 and ds.skipped == 1
    x = ds.batch(np.arange(len(ds)))
    assert x.dtype == np.float32 and x.min() >= -1.0 and x.max() <= 1.0
    files = [p.relative_to(root).as_posix() for p in Dt.list_images(root)]
    gray = files.index("a/gray.png") - 1  # the broken file sorts before it and was skipped
    assert np.array_equal(ds.array[gray, 0], ds.array[gray, 1])  # grayscale became RGB
    # the cache: a memory-mapped .npy that a second load reads without decoding anything
    monkeypatch.setattr(Dt, "load_image", lambda *a: pytest.fail("decoded again despite the cache"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = Dt.image_folder(root, 16, 3, cache_dir=tmp_path / "cache")
    assert isinstance(again.array, np.memmap)
    np.testing.assert_array_equal(again.array, ds.array)
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 1


def test_resize_shorter_side_then_centre_crop(tmp_path):
    """As Resize(size) + CenterCrop(size): a 40x20 image whose middle 20 columns are white."""
    from PIL import Image

    a = np.zeros((20, 40, 3), np.uint8)
    a[:, 10:30] = 255
    Image.fromarray(a).save(tmp_path / "wide.png")
    x = Dt.load_image(tmp_path / "wide.png", 10, 3)
    assert x.shape == (3, 10, 10)
    assert x[:, :, 1:-1].min() >= 250  # only the white middle survives the crop
    assert Dt.load_image(tmp_path / "wide.png", 10, 1).shape == (1, 10, 10)


def test_cache_key_follows_the_files(tmp_path):
    root = tmp_path / "flat"
    root.mkdir()
    from PIL import Image

    for i in range(3):
        Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(root / f"{i}.png")
    Dt.image_folder(root, 8, cache_dir=tmp_path / "c")
    Image.fromarray(np.full((8, 8, 3), 200, np.uint8)).save(root / "3.png")
    ds = Dt.image_folder(root, 8, cache_dir=tmp_path / "c")
    assert len(ds) == 4 and len(list((tmp_path / "c").glob("*.npy"))) == 2


def test_large_folders_hold_out_a_fixed_split_without_copying_the_cache(tmp_path):
    from PIL import Image

    root = tmp_path / "many"
    root.mkdir()
    for i in range(60):
        Image.fromarray(np.full((8, 8, 3), i * 4, np.uint8)).save(root / f"{i:02d}.png")
    ds = Dt.image_folder(root, 8, cache_dir=tmp_path / "c")
    assert len(ds) == 54 and len(ds.holdout) == 6 and isinstance(ds.array, np.memmap)
    train_values = {int(v) for v in ds.array[ds.rows, 0, 0, 0]}
    held_values = {int(v) for v in ds.holdout[:, 0, 0, 0]}
    assert not train_values & held_values
    ref, what = ds.reference(100, np.random.default_rng(0))
    assert what == "held-out" and ref.shape == (6, 3, 8, 8)
    assert ds.batch(np.array([0, 53])).shape == (2, 3, 8, 8)


def test_missing_empty_and_unreadable_folders_are_clear_errors(tmp_path):
    with pytest.raises(GanparityError, match="does not exist"):
        Dt.image_folder(tmp_path / "nope", 16)
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    with pytest.raises(GanparityError, match="holds no image files"):
        Dt.image_folder(tmp_path / "empty", 16)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.png").write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="skipped"), pytest.raises(GanparityError, match="none of its 1 image"):
        Dt.image_folder(bad, 16, cache_dir=tmp_path / "c")


def test_default_datasets_per_spec():
    from ganparity.common.spec.registry import get_spec

    g = Dt.dataset_for(get_spec("gan-gaussian"))
    assert g.name == "gaussian" and g.array.shape == (1000, 2)
    d = Dt.dataset_for(get_spec("dcgan", **SMALL), n=20)
    assert d.name == "discs" and d.array.shape == (20, 3, 16, 16) and d.holdout is not None
    with pytest.raises(GanparityError, match="does not fit"):
        Dt.dataset_for(get_spec("dcgan", **SMALL), dataset="gaussian")


# -- quality measures -----------------------------------------------------------------------------


def test_w2_closed_form():
    from ganparity.common.gan.quality import sqrtm_psd, w2_gaussians

    s = np.array([[2.0, 0.5], [0.5, 1.0]])
    r = sqrtm_psd(s)
    np.testing.assert_allclose(r @ r, s, atol=1e-12)
    assert w2_gaussians(np.zeros(2), s, np.zeros(2), s) == pytest.approx(0, abs=1e-6)
    assert w2_gaussians(np.zeros(2), s, np.array([3.0, 4.0]), s) == pytest.approx(5.0, abs=1e-6)
    # 1-D scaled Gaussians: W2 = |sigma1 - sigma2|
    assert w2_gaussians(np.zeros(2), np.eye(2), np.zeros(2), 4 * np.eye(2)) == pytest.approx(np.sqrt(2), 1e-9)


def test_swd_tells_discs_from_noise():
    from ganparity.common.gan.quality import swd

    a = Dt.to_float(Dt.discs_dataset(64, 16, 3, seed=0, holdout=0).array)
    b = Dt.to_float(Dt.discs_dataset(64, 16, 3, seed=7, holdout=0).array)
    noise = np.random.default_rng(0).uniform(-1, 1, a.shape).astype(np.float32)
    same, other = swd(a, b)["swd_avg_x1e3"], swd(a, noise)["swd_avg_x1e3"]
    assert same < other / 2


# -- training -------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", BACKEND_NAMES)
def test_gan_gaussian_reaches_the_true_distribution(name, tmp_path):
    need(name)
    res = train(TrainConfig(spec="gan-gaussian", backend=name, out=str(tmp_path / "run"), progress=False,
                            sample_every=20))
    log = [json.loads(line) for line in (tmp_path / "run" / "quality.jsonl").read_text().splitlines()]
    w2_init, w2 = log[0]["w2"], res.quality["w2"]
    assert (res.epochs_done, res.step) == (20, 2500)
    assert w2 < W2_BOUND[name], f"W2 {w2:.4f} (at init {w2_init:.4f})"
    assert w2 < w2_init / 8
    np.testing.assert_allclose(res.quality["mean"], GAUSSIAN_B, atol=0.25)
    assert (tmp_path / "run" / "samples" / "epoch_020.png").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("name", BACKEND_NAMES)
def test_dcgan_on_an_image_folder_writes_every_artefact(name, tmp_path):
    need(name)
    root = tmp_path / "data"
    n = write_folder(root)
    run = tmp_path / "run"
    with pytest.warns(UserWarning, match="could not be read"):
        res = train(TrainConfig(spec="dcgan", backend=name, knobs=dict(SMALL), data=str(root), epochs=2,
                                batch_size=4, out=str(run), progress=False, cache_dir=str(tmp_path / "cache")))
    steps = 2 * -(-n // 4)
    assert res.step == steps
    lines = rows(run)
    assert [r["step"] for r in lines] == list(range(1, steps + 1))
    for r in lines:
        assert set(r) >= {"step", "epoch", "loss_D", "loss_G", "D_x", "D_G_z1", "D_G_z2", "img_per_s"}
        assert all(np.isfinite(r[k]) for k in ("loss_D", "loss_G", "D_x", "D_G_z1", "D_G_z2", "img_per_s"))
    for f in ("samples/epoch_001.png", "samples/epoch_002.png", "loss.png", "progress.gif", "quality.json",
              "run.json", CHECKPOINT):
        assert (run / f).is_file(), f
    meta, weights, opt, _ = load_checkpoint(run / CHECKPOINT)
    assert meta["epoch"] == 2 and meta["step"] == steps and meta["backend"] == name
    assert meta["recipe"]["batch_size"] == 4 and meta["params"]["ngf"] == SMALL["ngf"]
    assert any(k.startswith("G.") for k in weights) and any(k.startswith("D.") for k in weights)
    assert int(opt["adam.G.step"]) == steps and int(opt["adam.D.step"]) == steps
    q = json.loads((run / "quality.json").read_text())
    assert np.isfinite(q["swd_avg_x1e3"]) and "training data" in q["reference"]
    from PIL import Image

    with Image.open(run / "samples" / "epoch_002.png") as im:
        assert im.size == ((8 * (16 + 2) + 2) * 4,) * 2  # 8x8 grid of 16 px samples, drawn at 4x


@pytest.mark.slow
@pytest.mark.parametrize("name", BACKEND_NAMES)
def test_resume_equals_an_uninterrupted_run(name, tmp_path):
    need(name)
    train(tiny(tmp_path / "straight", name, epochs=4))
    train(tiny(tmp_path / "halves", name, epochs=2))
    train(tiny(tmp_path / "halves", name, epochs=4, resume=True))
    assert_same_checkpoint(tmp_path / "straight", tmp_path / "halves", atol=1e-7)
    assert [r["loss_D"] for r in rows(tmp_path / "straight")] == pytest.approx(
        [r["loss_D"] for r in rows(tmp_path / "halves")], abs=1e-6)


@pytest.mark.slow
def test_ctrl_c_saves_mid_epoch_and_resume_matches(tmp_path):
    need("torch")
    train(tiny(tmp_path / "straight", epochs=2))

    def press_ctrl_c(step, values):
        if step == 4:  # mid-epoch: 3 batches per epoch
            signal.raise_signal(signal.SIGINT)

    res = train(tiny(tmp_path / "cut", epochs=2), on_step=press_ctrl_c)
    assert res.interrupted and res.step == 4
    meta, *_ = load_checkpoint(tmp_path / "cut" / CHECKPOINT)
    assert (meta["epoch"], meta["batch_in_epoch"], meta["step"]) == (1, 1, 4)
    train(tiny(tmp_path / "cut", epochs=2, resume=True))
    assert_same_checkpoint(tmp_path / "straight", tmp_path / "cut", atol=1e-7)
    assert len(rows(tmp_path / "cut")) == 6


@pytest.mark.slow
def test_hand_over_torch_to_mxnet_continues_smoothly(tmp_path, capsys):
    need("torch")
    need("mxnet")
    train(tiny(tmp_path / "a", "torch", epochs=2))
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    train(tiny(tmp_path / "a", "torch", epochs=3, resume=True))
    train(tiny(tmp_path / "b", "mxnet", epochs=3, resume=True))
    assert "handing run over from torch to mxnet" in capsys.readouterr().err
    same, other = rows(tmp_path / "a")[6:], rows(tmp_path / "b")[6:]
    assert len(same) == len(other) == 3 and {r["backend"] for r in other} == {"mxnet"}
    for r, s in zip(same, other):
        for k in ("loss_D", "loss_G", "D_x", "D_G_z1", "D_G_z2"):
            assert np.isfinite(s[k]) and s[k] == pytest.approx(r[k], abs=1e-4), k
    assert_same_checkpoint(tmp_path / "a", tmp_path / "b", atol=1e-5)
    history = json.loads((tmp_path / "b" / "run.json").read_text())["history"]
    assert [h["backend"] for h in history] == ["torch", "mxnet"]


class _PoisonedAfter(Dt.Dataset):
    """Good points until `after` batches were drawn, then NaN."""

    def __init__(self, after: int):
        super().__init__("poisoned", Dt.gaussian(32))
        self.after, self.calls = after, 0

    def batch(self, index):
        self.calls += 1
        x = super().batch(index)
        return x * np.nan if self.calls > self.after else x


@pytest.mark.parametrize("name", BACKEND_NAMES)
def test_nan_stops_the_run_naming_the_step_and_keeps_the_checkpoint(name, tmp_path):
    """MXNet's loss turns NaN; PyTorch's BCELoss refuses a NaN probability with an error: both stop."""
    need(name)
    cfg = TrainConfig(spec="gan-gaussian", backend=name, epochs=3, out=str(tmp_path / "run"), progress=False)
    with pytest.raises(Diverged, match=r"diverged at step 6 \(epoch 2, batch 2\).*last good checkpoint"):
        train(cfg, dataset=_PoisonedAfter(5))
    meta, *_ = load_checkpoint(tmp_path / "run" / CHECKPOINT)
    assert (meta["epoch"], meta["step"]) == (1, 4)
    assert len(rows(tmp_path / "run")) == 5


@pytest.mark.slow
def test_guards_on_run_directories_and_fid(tmp_path):
    need("torch")
    with pytest.raises(GanparityError, match="'inception.pth' does not exist"):
        train(tiny(tmp_path / "r", fid_weights="inception.pth"))  # refused before any work
    with pytest.raises(GanparityError, match="not a run to resume"):
        train(tiny(tmp_path / "r", resume=True))
    train(tiny(tmp_path / "r", epochs=1))
    with pytest.raises(GanparityError, match="already holds a run"):
        train(tiny(tmp_path / "r", epochs=1))
    with pytest.raises(GanparityError, match="keeps its architecture"):
        train(tiny(tmp_path / "r", epochs=2, resume=True, knobs={"ngf": 8}))


# -- the commands ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_train_then_sample(tmp_path, capsys):
    need("torch")
    from ganparity.common.cli import main

    run = tmp_path / "run"
    assert main(["train", "--spec", "dcgan", "--backend", "torch", "--set", "ngf=4", "--set", "ndf=4",
                 "--set", "nz=8", "--set", "image_size=16", "--n-data", "32", "--epochs", "1",
                 "--batch-size", "16", "--out", str(run), "--eval-samples", "16", "--no-gif"]) == 0
    out = capsys.readouterr()
    assert "SWD x1e3" in out.out and "[1/1] step 2" in out.err
    assert main(["sample", "--run", str(run), "--n", "16", "--out", str(tmp_path / "g.png")]) == 0
    assert main(["sample", "--run", str(run), "--interpolate", "--n", "16"]) == 0
    assert (tmp_path / "g.png").is_file() and (run / "interpolation.png").is_file()
    assert main(["sample", "--run", str(tmp_path / "nothing")]) == 2
    assert "is not a run directory" in capsys.readouterr().err
    assert main(["train", "--spec", "dcgan", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "x")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_help_covers_every_option(capsys):
    from ganparity.common.cli import build_parser

    p = build_parser()
    for cmd, opts in (("train", ["--spec", "--backend", "--data", "--dataset", "--epochs", "--batch-size",
                                 "--device", "--seed", "--out", "--resume", "--set", "--cache-dir", "--fid-weights",
                                 "--log-every", "--prefetch"]),
                      ("sample", ["--run", "--n", "--out", "--interpolate"])):
        with pytest.raises(SystemExit):
            p.parse_args([cmd, "--help"])
        text = capsys.readouterr().out
        for o in opts:
            assert o in text, (cmd, o)
