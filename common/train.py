"""One training loop for every GAN spec and both backends, through the backend's GANTrainer.step.

numpy is the only currency: the data batches, the noise, the shuffling (a numpy Generator, per the
recipe's `shuffle` flag) and the fixed noise of the progress pictures are made here, then handed to
the backend with to_device. A run directory holds everything needed to judge and continue a run:

    run.json            spec, knobs, recipe, data, seed, backend history
    metrics.jsonl       one line per step: step, epoch, loss_D, loss_G, D_x, D_G_z1, D_G_z2, img_per_s
    samples/epoch_NNN.png  G(fixed noise) after each epoch (a real-vs-generated scatter for 2-D specs)
    loss.png            G and D loss per iteration, as seed 001 plots it
    progress.gif        the sample pictures as an animation
    quality.jsonl       2-D specs: generated mean/cov and W2 to the true Gaussian, per epoch
    quality.json        the final measure (W2, or the Laplacian-pyramid SWD for images)
    checkpoint.npz      G, D (neutral names), both Adams' state, epoch, step, numpy RNG state, spec
                        and recipe; written atomically after every epoch and on Ctrl-C

A checkpoint is framework-neutral, so `--resume --backend <other>` hands a run over to the other
framework. On CPU, resuming gives the same numbers as never stopping.
"""

from __future__ import annotations

import dataclasses
import json
import math
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import weights as W
from .backend import build_pair, get_backend
from .data import Dataset, dataset_for
from .errors import GanparityError
from .registry import get_spec
from .spec.layers import BatchNorm
from .spec.model import GANSpec

CHECKPOINT = "checkpoint.npz"
RUN_JSON = "run.json"
METRICS = "metrics.jsonl"
FIELDS = ("loss_D", "loss_G", "D_x", "D_G_z1", "D_G_z2")
FIXED_IMAGES = 64  # seed 001: fixed_noise = torch.randn(64, nz, 1, 1)
FIXED_POINTS = 100  # seed 003 plots 100 generated points


class Diverged(GanparityError):
    """A loss became NaN or inf; the run stopped and kept its last good checkpoint."""


@dataclass
class TrainConfig:
    """What `ganparity train` takes. None means: the spec's recipe, or on --resume the run's own."""

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
    seed: int = 0
    out: str | None = None
    resume: bool = False
    eval_samples: int = 512
    sample_every: int = 1  # epochs between sample pictures (the last epoch always gets one)
    gif: bool = True
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


# -- checkpoints ---------------------------------------------------------------------------------


def save_checkpoint(path: Path, arrays: dict[str, np.ndarray], opt_state: dict[str, np.ndarray],
                    meta: dict, perm: np.ndarray) -> Path:
    """One .npz, written atomically: weights, Adam state, the epoch's order and a JSON meta string."""
    path = W.save(path, {**arrays, **opt_state, "loop.perm": np.asarray(perm, np.int64),
                         "meta": np.array(json.dumps(meta))})
    path.chmod(0o644)  # mkstemp makes it 0600
    return path


def load_checkpoint(path: Path) -> tuple[dict, dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray]:
    """-> (meta, weights, Adam state, epoch order)."""
    z = W.load(path)
    if "meta" not in z:
        raise GanparityError(f"{str(path)!r} is not a ganparity training checkpoint (no meta)")
    meta = json.loads(str(z.pop("meta")))
    perm = z.pop("loop.perm")
    opt = {k: v for k, v in z.items() if k.startswith("adam.")}
    arrays = {k: v for k, v in z.items() if not k.startswith("adam.")}
    return meta, arrays, opt, perm


# -- helpers -------------------------------------------------------------------------------------


def _scalar(v) -> float:
    """A backend's 0-d device value as a Python float (this is where the host waits)."""
    return float(v.asscalar()) if hasattr(v, "asscalar") else float(v.item())


def has_batchnorm(spec: GANSpec) -> bool:
    return any(isinstance(layer, BatchNorm) for layer in spec.G.layers)


def generate(be, G, spec: GANSpec, noise: np.ndarray, batch: int = FIXED_IMAGES) -> np.ndarray:
    """G(noise) in numpy, in train mode (batch statistics), as seed 001 draws its grids from a G it
    never puts in eval mode, but without side effects: BatchNorm running statistics are put back."""
    snapshot = be.get_arrays(G, spec.G) if has_batchnorm(spec) else None
    try:
        return np.concatenate([be.forward(G, noise[i:i + batch], "train") for i in range(0, len(noise), batch)])
    finally:
        if snapshot is not None:
            be.set_arrays(G, spec.G, snapshot)


def _fixed_noise(spec: GANSpec, seed: int) -> np.ndarray:
    n = FIXED_POINTS if tuple(spec.D.input_shape) == (2,) else FIXED_IMAGES
    return np.random.default_rng([seed, 1]).standard_normal((n, *spec.latent_shape)).astype(np.float32)


def _is_points(spec: GANSpec) -> bool:
    return tuple(spec.D.input_shape) == (2,)


def quality(be, G, spec: GANSpec, ds: Dataset, seed: int, n: int = 512, fid_weights: str | None = None) -> dict:
    """W2 to the true Gaussian (2-D specs) or the pyramid SWD to held-out data (images), and FID
    when a local Inception weights file is given."""
    from . import quality as Q

    rng = np.random.default_rng([seed, 3])
    if _is_points(spec):
        z = rng.standard_normal((10_000, *spec.latent_shape)).astype(np.float32)
        return Q.gaussian_report(generate(be, G, spec, z, 10_000))
    real, what = ds.reference(n, rng)
    z = rng.standard_normal((len(real), *spec.latent_shape)).astype(np.float32)
    fake = generate(be, G, spec, z)
    out = Q.swd(fake, real, seed=seed)
    out["reference"] = f"{what} data ({len(real)} images)"
    if fid_weights is not None:
        from .fid import fid

        out["fid"] = fid(fake, real, fid_weights)
        out["fid_weights"] = str(fid_weights)
    return out


def _write_json(path: Path, obj) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    tmp.replace(path)


def _read_metrics(path: Path, upto_step: int | None = None) -> list[dict]:
    if not path.is_file():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if upto_step is None or r["step"] <= upto_step]


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


# -- the run directory ---------------------------------------------------------------------------


def _prepare(cfg: TrainConfig) -> tuple[Path, dict, GANSpec, dict | None]:
    """Resolve spec, knobs, backend and data, from the config or (--resume) from run.json."""
    if cfg.resume:
        if not cfg.out:
            raise GanparityError("--resume needs --out RUN_DIR, the run to continue")
        run_dir = Path(cfg.out)
        if not (run_dir / RUN_JSON).is_file() or not (run_dir / CHECKPOINT).is_file():
            raise GanparityError(f"{str(run_dir)!r} is not a run to resume (no {RUN_JSON} and {CHECKPOINT})")
        run = json.loads((run_dir / RUN_JSON).read_text())
        if cfg.spec and cfg.spec != run["spec"]:
            raise GanparityError(f"run {str(run_dir)!r} trains {run['spec']!r}, not {cfg.spec!r}")
        knobs = dict(run["knobs"])
        for k, v in cfg.knobs.items():
            if knobs.get(k) != v and k not in ("epochs",):
                raise GanparityError(f"--set {k}={v} differs from the run's {k}={knobs.get(k)}; "
                                     "a resumed run keeps its architecture and batch size")
        if cfg.batch_size and cfg.batch_size != knobs.get("batch_size"):
            raise GanparityError(f"--batch-size {cfg.batch_size} differs from the run's {knobs.get('batch_size')}")
        if cfg.epochs:
            knobs["epochs"] = cfg.epochs
        spec = get_spec(run["spec"], **knobs)
        for key in ("data", "dataset", "n_data", "cache_dir"):
            if getattr(cfg, key) is None:
                setattr(cfg, key, run[key])
        cfg.seed = run["seed"]
        cfg.backend = cfg.backend or run["backend"]
        return run_dir, run | {"knobs": knobs}, spec, run
    if not cfg.spec:
        raise GanparityError("--spec is required (or --resume --out RUN_DIR)")
    knobs = dict(cfg.knobs)
    if cfg.epochs:
        knobs["epochs"] = cfg.epochs
    if cfg.batch_size:
        knobs["batch_size"] = cfg.batch_size
    spec = get_spec(cfg.spec, **knobs)
    cfg.backend = cfg.backend or "torch"
    run_dir = Path(cfg.out) if cfg.out else Path("runs") / f"{spec.name}-{cfg.backend}-{time.strftime('%Y%m%d-%H%M%S')}"
    if (run_dir / CHECKPOINT).exists() or (run_dir / RUN_JSON).exists():
        raise GanparityError(f"{str(run_dir)!r} already holds a run: pass --resume to continue it, "
                             "or another --out")
    run = {"spec": spec.name, "knobs": spec.params, "recipe": dataclasses.asdict(spec.recipe),
           "data": str(Path(cfg.data).resolve()) if cfg.data else None, "dataset": cfg.dataset,
           "n_data": cfg.n_data, "cache_dir": cfg.cache_dir, "seed": cfg.seed, "backend": cfg.backend,
           "history": []}
    return run_dir, run, spec, None


def train(cfg: TrainConfig, dataset: Dataset | None = None, on_step=None) -> RunResult:
    """Train (or continue) a run. `dataset` replaces the configured data (tests); `on_step(step,
    values)` is called after every step (tests use it to send Ctrl-C)."""
    if cfg.fid_weights is not None:  # refused before any work if the file is not there
        from .fid import check_weights_file

        check_weights_file(cfg.fid_weights)
    t_start = time.perf_counter()
    run_dir, run, spec, old = _prepare(cfg)
    be = get_backend(cfg.backend)
    ds = dataset if dataset is not None else dataset_for(spec, cfg.data, cfg.dataset, cfg.cache_dir, cfg.n_data)
    if len(ds) == 0:
        raise GanparityError("the dataset is empty")
    G, D = build_pair(be, spec, device=cfg.device)
    trainer = be.GANTrainer(spec, G, D)
    recipe = spec.recipe
    epochs, bs = recipe.epochs, recipe.batch_size
    n_batches = math.ceil(len(ds) / bs)

    if old is None:
        arrays = W.init_arrays(spec, cfg.seed)
        rng = np.random.default_rng(cfg.seed)
        epoch, batch_done, step, perm = 0, 0, 0, None
        run_dir.mkdir(parents=True, exist_ok=True)
    else:
        meta, arrays, opt_state, perm = load_checkpoint(run_dir / CHECKPOINT)
        arrays = W.validate(arrays, spec, what=f"checkpoint {str(run_dir / CHECKPOINT)!r}")
        be.load_optimizer_state(trainer, opt_state)
        rng = np.random.default_rng()
        rng.bit_generator.state = meta["rng"]
        epoch, batch_done, step = meta["epoch"], meta["batch_in_epoch"], meta["step"]
        if meta["backend"] != cfg.backend:
            _log(f"handing run over from {meta['backend']} to {cfg.backend} at step {step}: "
                 "neutral weights and Adam moments/step counts carried across")
        if epoch >= epochs:
            _log(f"{run_dir}: already trained {epoch} of {epochs} epochs; pass --epochs N to go further")
    for net, model in spec.nets.items():
        be.set_arrays(G if net == "G" else D, model, W.split(arrays, net))
    run["history"] = [*run.get("history", []), {"backend": cfg.backend, "from_step": step, "device": cfg.device}]
    run["backend"], run["knobs"], run["recipe"] = cfg.backend, spec.params, dataclasses.asdict(recipe)
    run["data_description"] = ds.description
    _write_json(run_dir / RUN_JSON, run)

    metrics_path = run_dir / METRICS
    rows = _read_metrics(metrics_path, step)  # drop lines past the checkpoint (a crash after it)
    metrics_path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    loss_g, loss_d = [r["loss_G"] for r in rows], [r["loss_D"] for r in rows]
    fixed = _fixed_noise(spec, cfg.seed)
    samples = run_dir / "samples"
    samples.mkdir(exist_ok=True)
    quality_log = run_dir / "quality.jsonl"
    if _is_points(spec) and step == 0:
        quality_log.write_text(json.dumps({"epoch": 0, "step": 0, **quality(be, G, spec, ds, cfg.seed)}) + "\n")

    def checkpoint(perm_now: np.ndarray, epoch_now: int, batch_now: int) -> Path:
        meta = {"version": 1, "spec": spec.name, "params": spec.params, "recipe": dataclasses.asdict(recipe),
                "backend": cfg.backend, "epoch": epoch_now, "batch_in_epoch": batch_now, "step": step,
                "rng": rng.bit_generator.state, "seed": cfg.seed}
        arrays_now = be.get_arrays(G, spec.G) | be.get_arrays(D, spec.D)
        return save_checkpoint(run_dir / CHECKPOINT, arrays_now, be.optimizer_state(trainer), meta, perm_now)

    progress = sys.stderr.isatty() if cfg.progress is None else cfg.progress
    interrupted = False
    latent = tuple(spec.latent_shape)
    values = {k: rows[-1][k] if rows else math.nan for k in FIELDS}
    with _Interrupt() as stop, metrics_path.open("a") as mf:
        while epoch < epochs and not interrupted:
            if batch_done == 0 or perm is None:
                perm = rng.permutation(len(ds)) if recipe.shuffle else np.arange(len(ds))
            bar = None
            if progress:
                from tqdm import tqdm

                bar = tqdm(total=n_batches, initial=batch_done, desc=f"epoch {epoch + 1}/{epochs}",
                           unit="batch", leave=True, dynamic_ncols=True)
            t_epoch, seen = time.perf_counter(), 0
            for b in range(batch_done, n_batches):
                idx = perm[b * bs:(b + 1) * bs]
                t0 = time.perf_counter()
                real = ds.batch(idx)
                noise = rng.standard_normal((len(idx), *latent)).astype(np.float32)
                try:
                    out = trainer.step(be.to_device(D, real), be.to_device(G, noise))
                    values = {k: _scalar(out[k]) for k in FIELDS}
                except RuntimeError as e:
                    # PyTorch's BCELoss raises on a NaN probability instead of returning NaN.
                    if "between 0 and 1" not in str(e):
                        raise
                    values = {"D output": math.nan}
                dt = time.perf_counter() - t0
                if not all(math.isfinite(v) for v in values.values()):
                    if bar is not None:
                        bar.close()
                    mf.flush()
                    bad = ", ".join(f"{k}={v}" for k, v in values.items() if not math.isfinite(v))
                    kept = (f"the last good checkpoint {str(run_dir / CHECKPOINT)!r} is kept"
                            if (run_dir / CHECKPOINT).exists() else "no checkpoint had been written yet")
                    raise Diverged(f"training diverged at step {step + 1} (epoch {epoch + 1}, batch {b + 1}): "
                                   f"{bad}; run stopped, {kept}")
                step += 1
                seen += len(idx)
                row = {"step": step, "epoch": epoch + 1, **values, "img_per_s": len(idx) / dt,
                       "backend": cfg.backend}
                mf.write(json.dumps(row) + "\n")
                loss_g.append(values["loss_G"])
                loss_d.append(values["loss_D"])
                if bar is not None:
                    bar.set_postfix(loss_D=f"{values['loss_D']:.3f}", loss_G=f"{values['loss_G']:.3f}",
                                    img_s=f"{row['img_per_s']:.0f}", refresh=False)
                    bar.update(1)
                if on_step is not None:
                    on_step(step, values)
                if stop.flag:
                    mf.flush()
                    path = checkpoint(perm, epoch, b + 1)
                    interrupted = True
                    if bar is not None:
                        bar.close()
                    _log(f"interrupted at step {step} (epoch {epoch + 1}, batch {b + 1}/{n_batches}); "
                         f"checkpoint saved to {path}; continue with: ganparity train --resume --out {run_dir}")
                    break
            if interrupted:
                break
            if bar is not None:
                bar.close()
            epoch += 1
            batch_done = 0
            mf.flush()
            rate = seen / max(time.perf_counter() - t_epoch, 1e-9)
            picture = samples / f"epoch_{epoch:03d}.png"
            draw = epoch % max(1, cfg.sample_every) == 0 or epoch == epochs
            fake = generate(be, G, spec, fixed) if draw else None
            if _is_points(spec):
                from .plots import save_scatter

                q = quality(be, G, spec, ds, cfg.seed)
                with quality_log.open("a") as qf:
                    qf.write(json.dumps({"epoch": epoch, "step": step, **q}) + "\n")
            if draw and _is_points(spec):
                save_scatter(picture, ds.array[:FIXED_POINTS], fake, f"{spec.name} ({cfg.backend}), epoch {epoch}, "
                             f"W2 {q['w2']:.3f}")
            elif draw:
                from .plots import save_grid

                save_grid(picture, fake, scale=max(1, 64 // spec.D.input_shape[-1]))
            checkpoint(np.arange(0), epoch, 0)
            _log(f"[{epoch}/{epochs}] step {step}  loss_D {values['loss_D']:.4f}  loss_G {values['loss_G']:.4f}  "
                 f"D(x) {values['D_x']:.4f}  D(G(z)) {values['D_G_z1']:.4f} / {values['D_G_z2']:.4f}  "
                 f"{rate:.0f} img/s")

    from .plots import save_gif, save_loss_curve

    if loss_g:
        save_loss_curve(run_dir / "loss.png", loss_g, loss_d, f"{spec.name}, {run['backend']}")
    if cfg.gif and not _is_points(spec):
        save_gif(run_dir / "progress.gif", sorted(samples.glob("epoch_*.png")))
    result = RunResult(run_dir, epoch, step, interrupted)
    if not interrupted and epoch >= epochs and step > 0:
        result.quality = quality(be, G, spec, ds, cfg.seed, cfg.eval_samples, cfg.fid_weights)
        result.quality.update(epoch=epoch, step=step, backend=cfg.backend)
        _write_json(run_dir / "quality.json", result.quality)
    result.seconds = time.perf_counter() - t_start
    return result


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
