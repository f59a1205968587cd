"""One training loop for every GAN spec and both backends, through the backend's GANTrainer.step.

numpy is the only currency: the data batches, the noise, the shuffling (a numpy Generator, per the
recipe's `shuffle` flag) and the fixed noise of the progress pictures are made here, then handed to
the backend's Feeder. What a run directory holds is in common/gan/run.py.

Feeding a GPU as fast as it steps: the next batches are made on a background thread while the step
runs (common/gan/feed.py; the backend's Feeder pins them and starts their copy on a stream of its
own), and the host reads the step's values (losses, D(x), ...) only every `log_every` steps, in one
copy for the whole window: in between nothing waits for the device. On CPU the default reads every
step, as before; on CUDA every 50 steps, the PyTorch DCGAN tutorial's print interval. A checkpoint
is written only after the values of every step before it were read and found finite. On CPU, resuming
gives the same numbers as never stopping, bit for bit (Ctrl-C mid-epoch, or kill -9 at any moment
and a resume from the last epoch's checkpoint); Ctrl-C saves a checkpoint between two steps. A
run directory has one writer at a time (run.lock) and a corrupt checkpoint falls back to the
previous one (common/gan/run.py).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import weights as W
from ..backend import build_nets, get_backend
from ..errors import GanparityError
from ..files import reason, write_json, write_text
from . import distributed as DP
from . import run as R
from .data import Dataset, dataset_for
from .feed import DEPTH, Batch, Prefetcher
from .quality import fid as fid_of
from .quality import gaussian_report, inception_backend, swd
from .sample import FIXED_POINTS, fixed_noise, generate, is_points


class Diverged(GanparityError):
    """A loss became NaN or inf; the run stopped and kept its last good checkpoint."""


CUDA_LOG_EVERY = 50  # the PyTorch DCGAN tutorial prints its losses every 50 iterations


def log_every(cfg: TrainConfig) -> int:
    """Steps between two reads of the step's values: the configured number, else every step on the CPU
    (a CPU step is synchronous: reading costs nothing) and CUDA_LOG_EVERY on a GPU (each read waits
    for the device, which would then idle while the host makes the next step's launches)."""
    if cfg.log_every is not None:
        return cfg.log_every
    return 1 if cfg.device == "cpu" else CUDA_LOG_EVERY


@dataclass
class TrainConfig:
    """What `ganparity train` takes. None means: the default (the spec's recipe for epochs and batch
    size, 0 for the seed, 512 evaluation samples, a picture every epoch, a GIF), or on --resume the
    run's own setting. Given on --resume, a setting must match the run's (common/gan/run.py KEPT),
    except the overrides: epochs, backend, device, data (a moved folder) and cache_dir."""

    spec: str | None = None
    backend: str | None = None
    knobs: dict = field(default_factory=dict)
    data: str | None = None
    dataset: str | None = None
    n_data: int | None = None
    cache_dir: str | None = None
    epochs: int | None = None
    batch_size: int | None = None
    device: str = "cpu"
    seed: int | None = None
    out: str | None = None
    resume: bool = False
    eval_samples: int | None = None  # generated and reference images of the final SWD (default 512)
    sample_every: int | None = None  # epochs between sample pictures (default 1; the last epoch always gets one)
    gif: bool | None = None
    fid_weights: str | None = None
    progress: bool | None = None  # None: a tqdm bar when stderr is a terminal, else a line per epoch
    log_every: int | None = None  # steps between reads of the step's values (None: 1 on cpu, 50 on cuda)
    prefetch: int = DEPTH  # batches made ahead on a background thread (0: none, each made when needed)


@dataclass
class RunResult:
    run_dir: Path
    epochs_done: int
    step: int
    interrupted: bool = False
    quality: dict = field(default_factory=dict)
    seconds: float = 0.0
    backend: str = ""


def quality(be, G, spec, ds: Dataset, seed: int, n: int = 512, fid_weights: str | None = None) -> dict:
    """W2 to the true Gaussian (2-D specs) or the pyramid SWD to held-out data (images), and FID
    when a local Inception weights file is given."""
    rng = np.random.default_rng([seed, 3])
    if is_points(spec):
        z = rng.standard_normal((10_000, *spec.latent_shape)).astype(np.float32)
        return gaussian_report(generate(be, G, spec, z, 10_000))
    real, what = ds.reference(n, rng)
    z = rng.standard_normal((len(real), *spec.latent_shape)).astype(np.float32)
    fake = generate(be, G, spec, z)
    out = swd(fake, real, seed=seed)
    out["reference"] = f"{what} data ({len(real)} images)"
    if fid_weights is not None:
        out["fid"] = fid_of(fake, real, fid_weights)
        out["fid_weights"] = str(fid_weights)
    return out


def describe_quality(q: dict) -> str:
    if "w2" in q:
        m, c = np.round(q["mean"], 3).tolist(), np.round(q["cov"], 3).tolist()
        true_c = np.round(q["true_cov"], 3).tolist()
        return (f"generated mean {m} (true {q['true_mean']}), cov {c} (true AᵀA {true_c}); "
                f"W2 to the true Gaussian {q['w2']:.4f}")
    if "swd_avg_x1e3" in q:
        levels = ", ".join(f"{r}px {v:.1f}" for r, v in zip(q["resolutions"], q["swd_x1e3"]))
        return f"SWD x1e3 vs {q['reference']}: {levels}; average {q['swd_avg_x1e3']:.1f}"
    return ""


class _Interrupt:
    """Ctrl-C sets a flag that the loop checks between steps, so the checkpoint it then writes is
    never of a half-done step. A second Ctrl-C raises at once."""

    def __init__(self) -> None:
        self.flag, self.old = False, None

    def __enter__(self):
        try:
            self.old = signal.signal(signal.SIGINT, self._handler)
        except ValueError:  # not the main thread: Ctrl-C keeps its usual meaning
            self.old = None
        return self

    def _handler(self, signum, frame) -> None:
        if self.flag:
            raise KeyboardInterrupt
        self.flag = True

    def __exit__(self, *exc) -> None:
        if self.old is not None:
            signal.signal(signal.SIGINT, self.old)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass
class _State:
    """Where the loop stands: what a checkpoint saves and a resume restores."""

    rng: np.random.Generator
    epoch: int = 0
    batch_done: int = 0  # batches of the current epoch already trained
    step: int = 0
    perm: np.ndarray | None = None  # the current epoch's order


class _Session:
    """One `train` call on one run directory: the nets, the trainer, the data and the writers."""

    def __init__(self, run: R.Run, dataset: Dataset | None, dp: DP.Context = DP.SINGLE):
        self.run, self.cfg, self.spec, self.dp = run, run.cfg, run.spec, dp
        cfg, spec = self.cfg, self.spec
        self.be = get_backend(cfg.backend)
        self.ds = dataset if dataset is not None else dataset_for(spec, cfg.data, cfg.dataset, cfg.cache_dir,
                                                                  cfg.n_data)
        if len(self.ds) == 0:
            raise GanparityError("the dataset is empty")
        nets = build_nets(self.be, spec, device=cfg.device)
        self.G, self.D = nets["G"], nets["D"]
        self.trainer = self.be.GANTrainer(spec, self.G, self.D)
        self.feeder = self.be.Feeder(self.D)
        self.log_every = log_every(cfg)
        self.n_batches = math.ceil(len(self.ds) / spec.recipe.batch_size)
        self.state = self._restore()
        self.saved_step: int | None = self.state.step if run.resumed else None  # of the last good checkpoint
        self.trainer = dp.wrap(self.be, self.trainer, self.G, self.D, spec)  # data parallel: common/gan/distributed.py
        dp.check_batches(len(self.ds), spec.recipe.batch_size)
        rows = R.read_metrics(run.dir / R.METRICS, self.state.step)  # drop lines past the checkpoint
        dp.barrier()  # every rank has read the run directory (run.json, checkpoints) before rank 0 writes
        if dp.writer:  # rank 0 alone writes the run directory
            R.write_record(run, cfg.backend, cfg.device, self.state.step, self.ds.description)
            write_text(run.dir / R.METRICS, "".join(json.dumps(r) + "\n" for r in rows))
            if is_points(spec) and (run.dir / R.QUALITY_LOG).exists():
                q = R.read_metrics(run.dir / R.QUALITY_LOG, self.state.step)
                write_text(run.dir / R.QUALITY_LOG, "".join(json.dumps(r) + "\n" for r in q))
            (run.dir / R.SAMPLES).mkdir(exist_ok=True)
        self.losses = {"G": [r["loss_G"] for r in rows], "D": [r["loss_D"] for r in rows]}
        self.values = {k: rows[-1][k] if rows else math.nan for k in R.FIELDS}

    def _restore(self) -> _State:
        run, cfg, spec, be = self.run, self.cfg, self.spec, self.be
        # Stopped before its first checkpoint was in place (run.json records a checkpoint's hash just
        # before the file is renamed into place): start again from step 0, with the run's settings.
        if not run.resumed or (not R.has_checkpoint(run.dir) and len(run.record.get("checkpoints") or []) <= 1):
            if run.resumed and self.dp.writer:
                _log(f"{run.dir}: no checkpoint yet; starting from step 0 with the run's settings")
            arrays, state = W.init_arrays(spec, cfg.seed), _State(np.random.default_rng(cfg.seed))
        else:
            def log(m: str) -> None:  # data parallel: rank 0 alone says which checkpoint it resumes from
                if self.dp.writer:
                    _log(f"ganparity: {m}")

            meta, arrays, opt_state, perm, path = R.load_best(run.dir, run.record, spec, log)
            run.latest_ok = path.name == R.CHECKPOINT
            rng = np.random.default_rng()
            try:
                rng.bit_generator.state = meta["rng"]
            except (TypeError, ValueError, KeyError) as e:
                raise GanparityError(f"checkpoint {str(path)!r} has a damaged RNG state ({e})") from None
            if cfg.epochs is not None and spec.recipe.epochs < meta["epoch"]:
                raise GanparityError(f"--epochs {cfg.epochs} is fewer than the {meta['epoch']} epochs run "
                                     f"{str(run.dir)!r} has trained; pass more to train further")
            be.load_optimizer_state(self.trainer, opt_state)
            state = _State(rng, meta["epoch"], meta["batch_in_epoch"], meta["step"], perm)
            if meta["backend"] != cfg.backend:
                _log(f"handing run over from {meta['backend']} to {cfg.backend} at step {state.step}: "
                     "neutral weights and Adam moments/step counts carried across")
            if state.epoch >= spec.recipe.epochs:
                _log(f"{run.dir}: already trained {state.epoch} of {spec.recipe.epochs} epochs; "
                     "pass --epochs N to go further")
        be.set_arrays(self.G, spec.G, W.split(arrays, "G"))
        be.set_arrays(self.D, spec.D, W.split(arrays, "D"))
        return state

    def checkpoint(self, perm: np.ndarray) -> Path:
        s, spec = self.state, self.spec
        if not self.dp.writer:
            return self.run.dir / R.CHECKPOINT
        meta = {"version": 1, "spec": spec.name, "params": spec.params, "recipe": dataclasses.asdict(spec.recipe),
                "backend": self.cfg.backend, "epoch": s.epoch, "batch_in_epoch": s.batch_done, "step": s.step,
                "rng": s.rng.bit_generator.state, "seed": self.cfg.seed}
        arrays = self.be.get_arrays(self.G, spec.G) | self.be.get_arrays(self.D, spec.D)
        try:
            path = R.save_checkpoint(self.run, arrays, self.be.optimizer_state(self.trainer), meta, perm)
        except GanparityError as e:  # a full disk: say what is left, and how to go on
            raise GanparityError(f"{e}; {self._kept()}; free some space and continue with: "
                                 f"ganparity train --resume --out {self.run.dir}") from e
        self.saved_step = s.step
        return path

    def _kept(self) -> str:
        if self.saved_step is None:
            return "no checkpoint had been written yet"
        return f"the last good checkpoint {str(self.run.dir / R.CHECKPOINT)!r} (step {self.saved_step}) is kept"

    def quality(self, n: int = 512, fid_weights: str | None = None) -> dict:
        return quality(self.be, self.G, self.spec, self.ds, self.cfg.seed, n, fid_weights)

    def batches(self, start: int) -> Prefetcher:
        """The current epoch's batches from number `start` on, made ahead on a background thread
        (common/gan/feed.py): the rows of the epoch's order, their data, fresh noise drawn from a copy
        of the run's Generator, staged for the device by the backend's Feeder."""
        s, spec, ds, dp, feeder = self.state, self.spec, self.ds, self.dp, self.feeder
        size, perm, gen = spec.recipe.batch_size, s.perm, copy.deepcopy(s.rng)

        def make(b: int) -> Batch:
            idx = perm[b * size:(b + 1) * size]
            real = ds.batch(dp.local_rows(idx))  # data parallel: this rank's rows and noise of the global batch
            noise = dp.noise(gen.standard_normal((len(idx), *spec.latent_shape)).astype(np.float32))
            return Batch(b, idx, feeder.stage((real, noise)), gen.bit_generator.state)

        return Prefetcher(make, start, self.n_batches, self.cfg.prefetch)

    def train_step(self, batch: Batch) -> dict:
        """One D+G step on a batch made ahead. Returns the step's values as device values, unread
        (read_values reads a window of them); the run's Generator takes the state after the
        batch's noise, as if this thread had drawn it."""
        real, noise = self.feeder.take(batch.staged)
        self.dp.start_batch(len(batch.rows))
        out = self.trainer.step(real, noise)
        self.state.rng.bit_generator.state = batch.rng_state
        return out

    def read_values(self, pending: list[tuple]) -> tuple[list[dict[str, float]], Diverged | None]:
        """The values of a window of steps, (step, epoch, batch, device values) each, in one read (the
        host waits here, once): those of the steps up to the first one with a NaN or inf value, and
        the error that stops the run there (None when every value is finite)."""
        flat = self.be.scalars([out[k] for *_, out in pending for k in R.FIELDS]) if pending else []
        rows: list[dict[str, float]] = []
        for i, (step, epoch, batch, _) in enumerate(pending):
            values = {k: float(v) for k, v in zip(R.FIELDS, flat[i * len(R.FIELDS):(i + 1) * len(R.FIELDS)])}
            if not all(math.isfinite(v) for v in values.values()):
                bad = ", ".join(f"{k}={v}" for k, v in values.items() if not math.isfinite(v))
                return rows, Diverged(f"training diverged at step {step} (epoch {epoch}, batch {batch}): "
                                      f"{bad}; run stopped, {self._kept()}")
            rows.append(values)
        return rows, None

    def end_of_epoch(self, rate: float) -> None:
        """The epoch's picture, the 2-D specs' quality line, a checkpoint and a log line."""
        s, cfg, spec, run = self.state, self.cfg, self.spec, self.run
        epochs = spec.recipe.epochs
        if not self.dp.writer:
            return
        picture = run.dir / R.SAMPLES / f"epoch_{s.epoch:03d}.png"
        draw = s.epoch % cfg.sample_every == 0 or s.epoch == epochs
        fake = generate(self.be, self.G, spec, fixed_noise(spec, cfg.seed)) if draw else None
        if is_points(spec):
            from .plots import save_scatter

            q = self.quality()
            with (run.dir / R.QUALITY_LOG).open("a") as qf:
                qf.write(json.dumps({"epoch": s.epoch, "step": s.step, **q}) + "\n")
            if draw:
                save_scatter(picture, self.ds.array[:FIXED_POINTS], fake,
                             f"{spec.name} ({cfg.backend}), epoch {s.epoch}, W2 {q['w2']:.3f}")
        elif draw:
            from .plots import save_grid

            save_grid(picture, fake, scale=max(1, 64 // spec.D.input_shape[-1]))
        self.checkpoint(np.arange(0))
        v = self.values
        _log(f"[{s.epoch}/{epochs}] step {s.step}  loss_D {v['loss_D']:.4f}  loss_G {v['loss_G']:.4f}  "
             f"D(x) {v['D_x']:.4f}  D(G(z)) {v['D_G_z1']:.4f} / {v['D_G_z2']:.4f}  {rate:.0f} img/s")

    def finish(self, interrupted: bool) -> RunResult:
        from .plots import save_gif, save_loss_curve

        s, cfg, run = self.state, self.cfg, self.run
        if not self.dp.writer:
            return RunResult(run.dir, s.epoch, s.step, interrupted)
        if self.losses["G"]:
            save_loss_curve(run.dir / "loss.png", self.losses["G"], self.losses["D"],
                            f"{self.spec.name}, {run.record['backend']}")
        if cfg.gif and not is_points(self.spec):
            save_gif(run.dir / "progress.gif", sorted((run.dir / R.SAMPLES).glob("epoch_*.png")))
        result = RunResult(run.dir, s.epoch, s.step, interrupted, backend=cfg.backend)
        if not interrupted and s.epoch >= self.spec.recipe.epochs and s.step > 0:
            result.quality = self.quality(cfg.eval_samples, cfg.fid_weights)
            result.quality.update(epoch=s.epoch, step=s.step, backend=cfg.backend)
            write_json(run.dir / R.QUALITY, result.quality)
        return result


def _bar(progress: bool, total: int, initial: int, desc: str):
    if not progress:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="batch", leave=True, dynamic_ncols=True)


def train(cfg: TrainConfig, dataset: Dataset | None = None, on_step=None) -> RunResult:
    """Train (or continue) a run. `dataset` replaces the configured data (tests); `on_step(step,
    values)` is called after every step (tests use it to send Ctrl-C)."""
    t_start = time.perf_counter()
    if cfg.fid_weights is not None:  # refused before any work if the file is not there
        inception_backend(cfg.fid_weights)
    DP.serve_if_server()  # an MXNet scheduler or server process does not come back
    dp = DP.join(cfg.backend or DP.engine() or "torch", cfg.device)  # one process: DP.SINGLE
    with R.open_run(cfg, writer=dp.writer) as run:  # rank 0 alone creates and locks the run directory
        if dp.engine is not None and run.cfg.backend != dp.engine:
            raise GanparityError(f"run {str(run.dir)!r} trains with {run.cfg.backend}, but this process was started "
                                 f"by the {dp.engine} launcher; pass --backend {dp.engine} to hand it over")
        if run.cfg.fid_weights is not None and cfg.fid_weights is None:  # the run's own, on --resume
            inception_backend(run.cfg.fid_weights)
        result = _train(_Session(run, dataset, dp), on_step)
    dp.close()
    result.seconds = time.perf_counter() - t_start
    return result


class _AppendLog:
    """metrics.jsonl, appended line by line; a failed write (a full disk) is a one-line error."""

    def __init__(self, path: Path, kept):
        self.path, self.kept, self.f = path, kept, None

    def __enter__(self) -> _AppendLog:
        self.f = self._do(lambda: self.path.open("a"))
        return self

    def _do(self, fn):
        try:
            return fn()
        except OSError as e:
            raise GanparityError(f"cannot write {str(self.path)!r}: {reason(e)}; {self.kept()}") from e

    def write(self, text: str) -> None:
        self._do(lambda: self.f.write(text))

    def flush(self) -> None:
        self._do(self.f.flush)

    def __exit__(self, *exc) -> None:
        try:
            self.f.close()
        except OSError:
            pass


class _StepLog:
    """The steps trained whose values are not read yet, and their logging once read: metrics.jsonl (one
    line per step; img/s is the window's images over its wall time, a true rate since every read waits
    for the device), the loss curves, the progress bar and on_step. A window is read in one go
    (_Session.read_values: one host wait) when it holds log_every steps, and before a checkpoint."""

    def __init__(self, session: _Session, mf: _AppendLog, on_step):
        self.session, self.mf, self.on_step = session, mf, on_step
        self.pending: list[tuple] = []  # (step, epoch, batch, device values)
        self.bar = None
        self.start(None)

    def start(self, bar) -> None:
        """A new window (and the epoch's bar), timed from now."""
        self.t0, self.images, self.bar = time.perf_counter(), 0, bar

    def add(self, step: int, epoch: int, batch: int, images: int, values: dict) -> None:
        self.pending.append((step, epoch, batch, values))
        self.images += images
        if len(self.pending) >= self.session.log_every:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        session, cfg = self.session, self.session.cfg
        rows, diverged = session.read_values(self.pending)
        now = time.perf_counter()
        rate = self.images / max(now - self.t0, 1e-9)
        for (step, epoch, _, _), values in zip(self.pending, rows):  # the good steps, also before a NaN
            self.mf.write(json.dumps({"step": step, "epoch": epoch, **values, "img_per_s": rate,
                                      "backend": cfg.backend}) + "\n")
            session.losses["G"].append(values["loss_G"])
            session.losses["D"].append(values["loss_D"])
            if self.on_step is not None:
                self.on_step(step, values)
        if diverged is not None:
            raise diverged
        session.values = rows[-1]
        if self.bar is not None:
            self.bar.set_postfix(loss_D=f"{rows[-1]['loss_D']:.3f}", loss_G=f"{rows[-1]['loss_G']:.3f}",
                                 img_s=f"{rate:.0f}", refresh=False)
            self.bar.update(len(rows))
        self.pending.clear()
        self.t0, self.images = now, 0


def _train(session: _Session, on_step) -> RunResult:
    s, spec, run, cfg = session.state, session.spec, session.run, session.cfg
    dp = session.dp
    recipe, progress = spec.recipe, sys.stderr.isatty() if cfg.progress is None else cfg.progress
    progress = progress and dp.writer
    if is_points(spec) and s.step == 0 and dp.writer:
        write_text(run.dir / R.QUALITY_LOG, json.dumps({"epoch": 0, "step": 0, **session.quality()}) + "\n")
    interrupted = False
    with _Interrupt() as stop, _AppendLog(run.dir / R.METRICS if dp.writer else Path(os.devnull), session._kept) as mf:
        log = _StepLog(session, mf, on_step)
        while s.epoch < recipe.epochs and not interrupted:
            if s.batch_done == 0 or s.perm is None:
                s.perm = s.rng.permutation(len(session.ds)) if recipe.shuffle else np.arange(len(session.ds))
            log.start(_bar(progress, session.n_batches, s.batch_done, f"epoch {s.epoch + 1}/{recipe.epochs}"))
            t_epoch, seen = time.perf_counter(), 0
            try:
                with session.batches(s.batch_done) as batches:  # made ahead on a background thread
                    for batch in batches:
                        values = session.train_step(batch)
                        s.step, s.batch_done, seen = s.step + 1, batch.index + 1, seen + len(batch.rows)
                        log.add(s.step, s.epoch + 1, s.batch_done, len(batch.rows), values)
                        dp.after_step(s.step)
                        if dp.any_rank(stop.flag):  # data parallel: every rank stops after the same step
                            log.flush()  # a NaN among the unread steps stops the run before any checkpoint
                            mf.flush()
                            path = session.checkpoint(s.perm)
                            interrupted = True
                            if dp.writer:  # data parallel: rank 0 saved it, and says so once
                                more = f" --nproc {dp.world}" if dp.world > 1 else ""
                                _log(f"interrupted at step {s.step} (epoch {s.epoch + 1}, batch {s.batch_done}/"
                                     f"{session.n_batches}); checkpoint saved to {path}; continue with: "
                                     f"ganparity train --resume --out {run.dir}{more}")
                            break
                log.flush()
            finally:
                mf.flush()
                if log.bar is not None:
                    log.bar.close()
            if interrupted:
                break
            s.epoch, s.batch_done = s.epoch + 1, 0
            session.end_of_epoch(seen / max(time.perf_counter() - t_epoch, 1e-9))
    return session.finish(interrupted)
