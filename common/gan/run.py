"""A GAN run directory: what `ganparity train` writes and what `--resume` reads back.

    run.json            spec, knobs, recipe, data, seed, backend history
    metrics.jsonl       one line per step: step, epoch, loss_D, loss_G, D_x, D_G_z1, D_G_z2, img_per_s
    samples/epoch_NNN.png  G(fixed noise) after each epoch (a real-vs-generated scatter for 2-D specs)
    loss.png            G and D loss per iteration, as source 001 plots it
    progress.gif        the sample pictures as an animation
    quality.jsonl       2-D specs: generated mean/cov and W2 to the true Gaussian, per epoch
    quality.json        the final measure (W2, or the Laplacian-pyramid SWD for images)
    checkpoint.npz      G, D (neutral names), both Adams' state, epoch, step, numpy RNG state, spec
                        and recipe; written atomically after every epoch and on Ctrl-C

A checkpoint is framework-neutral, so `--resume --backend <other>` hands a run over to the other
framework.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import weights as W
from ..errors import GanparityError
from ..files import write_json
from ..spec.model import GANSpec
from ..spec.registry import get_spec

CHECKPOINT = "checkpoint.npz"
RUN_JSON = "run.json"
METRICS = "metrics.jsonl"
QUALITY_LOG = "quality.jsonl"
QUALITY = "quality.json"
SAMPLES = "samples"
FIELDS = ("loss_D", "loss_G", "D_x", "D_G_z1", "D_G_z2")
# Settings a run records at its start and a resume takes back (cfg attribute = run.json key).
DATA_SETTINGS = ("data", "dataset", "n_data", "cache_dir")


def save_checkpoint(path: Path, arrays: dict[str, np.ndarray], opt_state: dict[str, np.ndarray],
                    meta: dict, perm: np.ndarray) -> Path:
    """One .npz, written atomically: weights, Adam state, the epoch's order and a JSON meta string."""
    return W.save(path, {**arrays, **opt_state, "loop.perm": np.asarray(perm, np.int64),
                         "meta": np.array(json.dumps(meta))})


def load_checkpoint(path: Path) -> tuple[dict, dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray]:
    """-> (meta, weights, Adam state, epoch order)."""
    z = W.load(path)
    if "meta" not in z or "loop.perm" not in z:
        raise GanparityError(f"{str(path)!r} is not a ganparity training checkpoint (no meta)")
    meta = json.loads(str(z.pop("meta")))
    perm = z.pop("loop.perm")
    opt = {k: v for k, v in z.items() if k.startswith("adam.")}
    arrays = {k: v for k, v in z.items() if not k.startswith("adam.")}
    return meta, arrays, opt, perm


def read_metrics(path: Path, upto_step: int | None = None) -> list[dict]:
    if not path.is_file():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if upto_step is None or r["step"] <= upto_step]


def is_run(run_dir: Path) -> bool:
    return (run_dir / RUN_JSON).is_file() and (run_dir / CHECKPOINT).is_file()


def read_run(run_dir: Path) -> dict:
    if not is_run(run_dir):
        raise GanparityError(f"{str(run_dir)!r} is not a run directory (no {CHECKPOINT} and {RUN_JSON})")
    return json.loads((run_dir / RUN_JSON).read_text())


@dataclass
class Run:
    """A run directory resolved from a TrainConfig: the spec, the settings it trains with (the
    config's, or on --resume the run's own), and run.json's contents."""

    dir: Path
    spec: GANSpec
    cfg: object  # the TrainConfig with every None filled in
    record: dict  # run.json
    resumed: bool


def _resume(cfg) -> Run:
    if not cfg.out:
        raise GanparityError("--resume needs --out RUN_DIR, the run to continue")
    run_dir = Path(cfg.out)
    if not is_run(run_dir):
        raise GanparityError(f"{str(run_dir)!r} is not a run to resume (no {RUN_JSON} and {CHECKPOINT})")
    record = read_run(run_dir)
    if cfg.spec and cfg.spec != record["spec"]:
        raise GanparityError(f"run {str(run_dir)!r} trains {record['spec']!r}, not {cfg.spec!r}")
    knobs = dict(record["knobs"])
    for k, v in cfg.knobs.items():
        if knobs.get(k) != v and k not in ("epochs",):
            raise GanparityError(f"--set {k}={v} differs from the run's {k}={knobs.get(k)}; "
                                 "a resumed run keeps its architecture and batch size")
    if cfg.batch_size and cfg.batch_size != knobs.get("batch_size"):
        raise GanparityError(f"--batch-size {cfg.batch_size} differs from the run's {knobs.get('batch_size')}")
    if cfg.epochs:
        knobs["epochs"] = cfg.epochs
    spec = get_spec(record["spec"], kind="gan", **knobs)
    settings = {key: record[key] if getattr(cfg, key) is None else getattr(cfg, key) for key in DATA_SETTINGS}
    resolved = dataclasses.replace(cfg, **settings, seed=record["seed"], backend=cfg.backend or record["backend"])
    return Run(run_dir, spec, resolved, record | {"knobs": knobs}, True)


def _start(cfg) -> Run:
    if not cfg.spec:
        raise GanparityError("--spec is required (or --resume --out RUN_DIR)")
    knobs = dict(cfg.knobs)
    if cfg.epochs:
        knobs["epochs"] = cfg.epochs
    if cfg.batch_size:
        knobs["batch_size"] = cfg.batch_size
    spec = get_spec(cfg.spec, kind="gan", **knobs)
    backend = cfg.backend or "torch"
    run_dir = Path(cfg.out) if cfg.out else Path("runs") / f"{spec.name}-{backend}-{time.strftime('%Y%m%d-%H%M%S')}"
    if (run_dir / CHECKPOINT).exists() or (run_dir / RUN_JSON).exists():
        raise GanparityError(f"{str(run_dir)!r} already holds a run: pass --resume to continue it, "
                             "or another --out")
    record = {"spec": spec.name, "knobs": spec.params, "recipe": dataclasses.asdict(spec.recipe),
              "data": str(Path(cfg.data).resolve()) if cfg.data else None, "dataset": cfg.dataset,
              "n_data": cfg.n_data, "cache_dir": cfg.cache_dir, "seed": cfg.seed, "backend": backend,
              "history": []}
    return Run(run_dir, spec, dataclasses.replace(cfg, backend=backend), record, False)


def open_run(cfg) -> Run:
    """Resolve spec, knobs, backend and data, from the config or (--resume) from run.json. The
    config is not changed: Run.cfg is a filled-in copy."""
    return _resume(cfg) if cfg.resume else _start(cfg)


def write_record(run: Run, backend: str, device: str, step: int, data_description: str) -> None:
    """run.json at the start of a session: the backend history grows by one entry."""
    record = run.record
    record["history"] = [*record.get("history", []), {"backend": backend, "from_step": step, "device": device}]
    record |= {"backend": backend, "knobs": run.spec.params, "recipe": dataclasses.asdict(run.spec.recipe),
               "data_description": data_description}
    write_json(run.dir / RUN_JSON, record)
