"""The prefetching loader (common/gan/feed.py and the backends' Feeder) and the loop's deferred reads of
the step's values: the same batches in the same order as an unprefetched loop, bit for bit on CPU; the
last partial batch; resume mid-epoch; Ctrl-C and errors leave no thread running; a NaN found in a
window of unread steps still names its step and keeps the last good checkpoint."""

from __future__ import annotations

import hashlib
import json
import signal
import threading
import time

import numpy as np
import pytest

from ganparity.common.gan import data as Dt
from ganparity.common.gan.feed import THREAD_NAME, Prefetcher
from ganparity.common.gan.loop import Diverged, TrainConfig, log_every, train
from ganparity.common.gan.run import CHECKPOINT, load_checkpoint

from .conftest import SMALL, need
from .test_train import assert_same_checkpoint, rows

VALUES = ("loss_D", "loss_G", "D_x", "D_G_z1", "D_G_z2")


def prefetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == THREAD_NAME and t.is_alive()]


def tiny(out, epochs=2, **kw) -> TrainConfig:
    """dcgan at test widths on 50 disc images in batches of 16: 4 batches an epoch, the last of 2."""
    base = dict(spec="dcgan", backend="torch", knobs=dict(SMALL), n_data=50, epochs=epochs, batch_size=16,
                out=str(out), progress=False, eval_samples=16, gif=False)
    return TrainConfig(**(base | kw))


# -- the prefetcher alone -------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [0, 1, 2, 5])
def test_items_come_in_order_and_are_made_in_order(depth):
    made = []

    def make(i):
        made.append(i)
        time.sleep(0.002 * (i % 3))  # uneven work
        return i * i

    with Prefetcher(make, 3, 11, depth) as p:
        got = list(p)
    assert got == [i * i for i in range(3, 11)] and made == list(range(3, 11))
    assert not prefetch_threads()


def test_an_error_is_raised_at_its_item_and_the_thread_ends():
    def make(i):
        if i == 3:
            raise OSError("disk read failed")
        return i

    got = []
    with pytest.raises(OSError, match="disk read failed"), Prefetcher(make, 0, 10, 2) as p:
        for item in p:
            got.append(item)
    assert got == [0, 1, 2] and not prefetch_threads()


def test_close_mid_way_stops_a_thread_blocked_on_a_full_queue():
    p = Prefetcher(lambda i: i, 0, 1000, 2)
    assert next(p) == 0
    time.sleep(0.05)  # the producer is now waiting on the full queue
    assert p.running
    p.close()
    assert not p.running and not prefetch_threads()
    assert list(p) == []  # closed: nothing more comes out


def test_keyboard_interrupt_in_the_consumer_leaves_no_thread():
    with pytest.raises(KeyboardInterrupt), Prefetcher(lambda i: np.zeros(4) + i, 0, 100, 3) as p:
        for item in p:
            if item[0] == 5:
                raise KeyboardInterrupt
    assert not prefetch_threads()


def test_a_slow_consumer_never_gets_more_than_depth_ahead():
    made = []
    with Prefetcher(lambda i: made.append(i) or i, 0, 50, 2) as p:
        for i in p:
            time.sleep(0.01)
            assert len(made) <= i + 1 + 2 + 1  # the items taken, the queue, and the one being made
    assert made == list(range(50))


# -- the backends' feeders ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["torch", "mxnet"])
def test_feeder_gives_what_to_device_gives(name):
    be = need(name)
    from ganparity.common.backend import build_nets
    from ganparity.common.spec.registry import get_spec

    nets = build_nets(be, get_spec("dcgan", **SMALL))
    rng = np.random.default_rng(0)
    real, noise = rng.standard_normal((3, 3, 16, 16)).astype(np.float32), rng.standard_normal((3, 8, 1, 1))
    feeder = be.Feeder(nets["D"])
    got = feeder.take(feeder.stage((real, noise)))
    want = (be.to_device(nets["D"], real), be.to_device(nets["G"], noise))
    for g, w in zip(got, want):
        assert type(g) is type(w) and g.dtype == w.dtype
        np.testing.assert_array_equal(g.asnumpy() if name == "mxnet" else g.numpy(), w.asnumpy()
                                      if name == "mxnet" else w.numpy())


@pytest.mark.parametrize("name", ["torch", "mxnet"])
def test_scalars_reads_a_window_in_one_go(name):
    be = need(name)
    from ganparity.common.backend import build_nets
    from ganparity.common.spec.registry import get_spec

    spec = get_spec("gan-gaussian")
    nets = build_nets(be, spec)
    tr = be.GANTrainer(spec, nets["G"], nets["D"])
    rng = np.random.default_rng(0)
    outs = [tr.step(be.to_device(nets["D"], rng.standard_normal((8, 2)).astype(np.float32)),
                    be.to_device(nets["G"], rng.standard_normal((8, 2)).astype(np.float32))) for _ in range(3)]
    flat = [o[k] for o in outs for k in VALUES]
    np.testing.assert_array_equal(be.scalars(flat), [be.scalar(v) for v in flat])
    assert be.scalars([]).shape == (0,)


# -- the training loop ----------------------------------------------------------------------------


def _record_steps(monkeypatch):
    """Every (real, noise) the torch trainer steps on, as a digest of its bytes."""
    from ganparity.backends.torch import train as T

    seen, step = [], T.GANTrainer.step

    def recording(self, real, noise):
        seen.append(hashlib.sha256(real.numpy().tobytes() + noise.numpy().tobytes()).hexdigest()[:16])
        return step(self, real, noise)

    monkeypatch.setattr(T.GANTrainer, "step", recording)
    return seen


@pytest.mark.slow
def test_prefetched_training_is_bit_for_bit_the_unprefetched_loop(tmp_path, monkeypatch):
    """The same batches in the same order, the last partial batch of each epoch included, and the same
    weights, Adam state and logged values, whether batches are made ahead or not and whether the
    values are read every step or in windows."""
    need("torch")
    seen = _record_steps(monkeypatch)
    runs = {"plain": dict(prefetch=0, log_every=1), "ahead": dict(prefetch=2), "deep": dict(prefetch=4, log_every=3)}
    batches = {}
    for name, kw in runs.items():
        seen.clear()
        res = train(tiny(tmp_path / name, **kw))
        assert res.step == 8 and not prefetch_threads()
        batches[name] = list(seen)
    assert len(set(batches["plain"])) == 8 and batches["ahead"] == batches["plain"] == batches["deep"]
    for name in ("ahead", "deep"):
        assert_same_checkpoint(tmp_path / "plain", tmp_path / name)
        got, want = rows(tmp_path / name), rows(tmp_path / "plain")
        assert [r["step"] for r in got] == list(range(1, 9)) and [r["epoch"] for r in got] == [1] * 4 + [2] * 4
        assert [[r[k] for k in VALUES] for r in got] == [[r[k] for k in VALUES] for r in want]
    meta, *_ = load_checkpoint(tmp_path / "plain" / CHECKPOINT)
    assert meta["step"] == 8 and meta["batch_in_epoch"] == 0
    ds = Dt.dataset_for(_spec(), n=50)
    assert len(ds) % 16 == 2  # the last batch of each epoch is the short one


def _spec():
    from ganparity.common.spec.registry import get_spec

    return get_spec("dcgan", **SMALL)


@pytest.mark.slow
@pytest.mark.parametrize("every", [1, 2])
def test_ctrl_c_mid_epoch_resumes_to_the_same_batches_and_weights(tmp_path, monkeypatch, every):
    """Ctrl-C while batches are made ahead: the checkpoint holds the Generator state of the last step
    trained (not of the batches made ahead), the thread is gone, and the resumed run trains the same
    batches as an uninterrupted one, to the same weights bit for bit."""
    need("torch")
    seen = _record_steps(monkeypatch)
    train(tiny(tmp_path / "straight", prefetch=2, log_every=every))
    straight = list(seen)
    seen.clear()

    def press_ctrl_c(step, values):
        if step == 5:  # epoch 2, batch 1: the thread is already making batches 2 and 3
            signal.raise_signal(signal.SIGINT)

    res = train(tiny(tmp_path / "cut", prefetch=2, log_every=every), on_step=press_ctrl_c)
    assert res.interrupted and not prefetch_threads()
    stopped = res.step  # with a window of 2 the flag is seen after the window's read: step 6
    assert stopped == (5 if every == 1 else 6)
    meta, *_ = load_checkpoint(tmp_path / "cut" / CHECKPOINT)
    assert (meta["epoch"], meta["batch_in_epoch"], meta["step"]) == (1, stopped - 4, stopped)
    train(tiny(tmp_path / "cut", prefetch=2, log_every=every, resume=True))
    assert seen == straight
    assert_same_checkpoint(tmp_path / "straight", tmp_path / "cut")
    assert [r["step"] for r in rows(tmp_path / "cut")] == list(range(1, 9))


def test_a_second_ctrl_c_stops_at_once_and_leaves_no_thread(tmp_path):
    need("torch")

    def interrupt(step, values):
        if step == 2:
            raise KeyboardInterrupt  # what a second Ctrl-C raises inside the loop

    with pytest.raises(KeyboardInterrupt):
        train(tiny(tmp_path / "run", prefetch=3), on_step=interrupt)
    assert not prefetch_threads()


class _PoisonedAfter(Dt.Dataset):
    """Good points until `after` batches were drawn, then NaN."""

    def __init__(self, after: int):
        super().__init__("poisoned", Dt.gaussian(32))
        self.after, self.calls = after, 0

    def batch(self, index):
        self.calls += 1
        x = super().batch(index)
        return x * np.nan if self.calls > self.after else x


@pytest.mark.parametrize("name", ["torch", "mxnet"])
def test_nan_in_a_window_of_unread_steps_names_its_step(name, tmp_path):
    """Values read every 3 steps: the NaN of step 6 is found at the window's read, named, and no
    checkpoint is written after it (the epoch-1 one, step 4, is kept); lines only for good steps."""
    need(name)
    cfg = TrainConfig(spec="gan-gaussian", backend=name, epochs=3, out=str(tmp_path / "run"), progress=False,
                      log_every=3)
    with pytest.raises(Diverged, match=r"diverged at step 6 \(epoch 2, batch 2\).*last good checkpoint"):
        train(cfg, dataset=_PoisonedAfter(5))
    meta, *_ = load_checkpoint(tmp_path / "run" / CHECKPOINT)
    assert (meta["epoch"], meta["step"]) == (1, 4)
    assert [r["step"] for r in rows(tmp_path / "run")] == [1, 2, 3, 4, 5]
    assert not prefetch_threads()


def test_windowed_img_per_s_is_shared_by_the_window(tmp_path):
    need("torch")
    train(tiny(tmp_path / "run", log_every=3, epochs=1))
    got = [r["img_per_s"] for r in rows(tmp_path / "run")]
    assert len(got) == 4 and got[0] == got[1] == got[2] and all(v > 0 for v in got)
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert all(json.loads(line)["backend"] == "torch" for line in lines)


def test_log_every_defaults():
    assert log_every(TrainConfig(device="cpu")) == 1
    assert log_every(TrainConfig(device="cuda")) == 50
    assert log_every(TrainConfig(device="cuda", log_every=7)) == 7


@pytest.mark.gpu
def test_cuda_feeder_copies_on_its_stream_and_training_matches_the_batches(tmp_path, monkeypatch):
    """On a GPU: the pinned, non-blocking copy gives to_device's values; and a prefetched CUDA run
    trains on the same batches, in the same order, as the unprefetched one."""
    be = need("torch")
    import torch

    from ganparity.backends.torch import train as T
    from ganparity.common.backend import build_nets

    nets = build_nets(be, _spec(), device="cuda")
    feeder = be.Feeder(nets["D"])
    assert feeder.stream is not None
    real = np.random.default_rng(0).standard_normal((5, 3, 16, 16)).astype(np.float32)
    staged = feeder.stage((real,))
    (got,) = feeder.take(staged)
    assert got.is_cuda and torch.equal(got.cpu(), be.to_device(nets["D"], real).cpu())
    seen, step = [], T.GANTrainer.step

    def recording(self, r, z):
        seen.append(hashlib.sha256(r.cpu().numpy().tobytes() + z.cpu().numpy().tobytes()).hexdigest()[:16])
        return step(self, r, z)

    monkeypatch.setattr(T.GANTrainer, "step", recording)
    runs = {}
    for name, kw in {"plain": dict(prefetch=0, log_every=1), "ahead": dict(prefetch=2, log_every=3)}.items():
        seen.clear()
        train(tiny(tmp_path / name, device="cuda", **kw))
        runs[name] = list(seen)
    assert runs["plain"] == runs["ahead"] and len(runs["plain"]) == 8 and not prefetch_threads()
