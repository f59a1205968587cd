"""One training loop for every GAN spec and both backends, through the backend's GANTrainer.step.

numpy is the only currency: the data batches, the noise, the shuffling (a numpy Generator, per the
recipe's `shuffle` flag) and the fixed noise of the progress pictures are made here, then handed to
the backend with to_device. What a run directory holds is in common/gan/run.py. On CPU, resuming
gives the same numbers as never stopping, bit for bit (Ctrl-C mid-epoch, or kill -9 at any moment
and a resume from the last epoch's checkpoint); Ctrl-C saves a checkpoint between two steps. A
run directory has one writer at a time (run.lock) and a corrupt checkpoint falls back to the
previous one (common/gan/run.py).
"""

from __future__ import annotations

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
from .quality import fid as fid_of
from .quality import gaussian_report, inception_backend, swd
from .sample import FIXED_POINTS, fixed_noise, generate, is_points


class Diverged(GanparityError):
    """A loss became NaN or inf; the run stopped and kept its last good checkpoint."""


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

    def train_step(self, idx: np.ndarray) -> dict[str, float]:
        """One D+G step on the rows idx with fresh noise; a NaN or inf value stops the run."""
        s, be = self.state, self.be
        real = self.ds.batch(self.dp.rows(idx))  # data parallel: this rank's rows and noise of the global batch
        noise = self.dp.noise(s.rng.standard_normal((len(idx), *self.spec.latent_shape)).astype(np.float32))
        out = self.trainer.step(be.to_device(self.D, real), be.to_device(self.G, noise))
        values = {k: be.scalar(out[k]) for k in R.FIELDS}
        if not all(math.isfinite(v) for v in values.values()):
            bad = ", ".join(f"{k}={v}" for k, v in values.items() if not math.isfinite(v))
            raise Diverged(f"training diverged at step {s.step + 1} (epoch {s.epoch + 1}, batch {s.batch_done + 1}): "
                           f"{bad}; run stopped, {self._kept()}")
        return values

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


def _train(session: _Session, on_step) -> RunResult:
    s, spec, run, cfg = session.state, session.spec, session.run, session.cfg
    dp = session.dp
    recipe, progress = spec.recipe, sys.stderr.isatty() if cfg.progress is None else cfg.progress
    progress = progress and dp.writer
    if is_points(spec) and s.step == 0 and dp.writer:
        write_text(run.dir / R.QUALITY_LOG, json.dumps({"epoch": 0, "step": 0, **session.quality()}) + "\n")
    interrupted = False
    with _Interrupt() as stop, _AppendLog(run.dir / R.METRICS if dp.writer else Path(os.devnull), session._kept) as mf:
        while s.epoch < recipe.epochs and not interrupted:
            if s.batch_done == 0 or s.perm is None:
                s.perm = s.rng.permutation(len(session.ds)) if recipe.shuffle else np.arange(len(session.ds))
            bar = _bar(progress, session.n_batches, s.batch_done, f"epoch {s.epoch + 1}/{recipe.epochs}")
            t_epoch, seen = time.perf_counter(), 0
            try:
                for b in range(s.batch_done, session.n_batches):
                    idx = s.perm[b * recipe.batch_size:(b + 1) * recipe.batch_size]
                    t0 = time.perf_counter()
                    session.values = values = session.train_step(idx)
                    dt = time.perf_counter() - t0
                    s.step, s.batch_done, seen = s.step + 1, b + 1, seen + len(idx)
                    row = {"step": s.step, "epoch": s.epoch + 1, **values, "img_per_s": len(idx) / dt,
                           "backend": cfg.backend}
                    mf.write(json.dumps(row) + "\n")
                    session.losses["G"].append(values["loss_G"])
                    session.losses["D"].append(values["loss_D"])
                    if bar is not None:
                        bar.set_postfix(loss_D=f"{values['loss_D']:.3f}", loss_G=f"{values['loss_G']:.3f}",
                                        img_s=f"{row['img_per_s']:.0f}", refresh=False)
                        bar.update(1)
                    dp.after_step(s.step)
                    if on_step is not None:
                        on_step(s.step, values)
                    if dp.any_rank(stop.flag):  # data parallel: every rank stops after the same step
                        mf.flush()
                        path = session.checkpoint(s.perm)
                        interrupted = True
                        if dp.writer:  # data parallel: rank 0 saved it, and says so once
                            more = f" --nproc {dp.world}" if dp.world > 1 else ""
                            _log(f"interrupted at step {s.step} (epoch {s.epoch + 1}, batch {b + 1}/"
                                 f"{session.n_batches}); checkpoint saved to {path}; continue with: "
                                 f"ganparity train --resume --out {run.dir}{more}")
                        break
            finally:
                mf.flush()
                if bar is not None:
                    bar.close()
            if interrupted:
                break
            s.epoch, s.batch_done = s.epoch + 1, 0
            session.end_of_epoch(seen / max(time.perf_counter() - t_epoch, 1e-9))
    return session.finish(interrupted)
