"""A GAN run directory: what `ganparity train` writes and what `--resume` reads back.

    run.json            spec, knobs, recipe, data, seed, the settings a resume keeps, backend
                        history, and the sha256 of every checkpoint written lately
    metrics.jsonl       one line per step: step, epoch, loss_D, loss_G, D_x, D_G_z1, D_G_z2, img_per_s
    samples/epoch_NNN.png  G(fixed noise) after each epoch (a real-vs-generated scatter for 2-D specs)
    loss.png            G and D loss per iteration, as source 001 plots it
    progress.gif        the sample pictures as an animation
    quality.jsonl       2-D specs: generated mean/cov and W2 to the true Gaussian, per epoch
    quality.json        the final measure (W2, or the Laplacian-pyramid SWD for images)
    checkpoint.npz      G, D (neutral names), both Adams' state, epoch, step, numpy RNG state, spec
                        and recipe; written atomically after every epoch and on Ctrl-C
    checkpoint.prev.npz the checkpoint before it (a hard link: no extra space)
    run.lock            held while a `train` writes here (fcntl.flock: a crashed run never leaves
                        it stuck); a second writer is refused

A checkpoint is framework-neutral, so `--resume --backend <other>` hands a run over to the other
framework. On --resume a checkpoint is used only if its sha256 is one run.json recorded and it
loads and fits the spec; otherwise the previous one is used, with a one-line warning that says
how many steps that loses.

Why the hashes never raise a false alarm: the new checkpoint is written whole to a temp file,
its hash is added to run.json, the old one is linked to checkpoint.prev.npz, and only then is the
temp file renamed into place. A crash between any two of these leaves files whose hashes are
all recorded.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import weights as W
from ..errors import GanparityError, choose
from ..files import DirLock, atomic_write, folder_entries, keep_copy, reason, write_json
from ..readers import check_finite, read_json, read_jsonl, read_npz, sha256
from ..spec.model import GANSpec
from ..spec.registry import GAN_SPECS, get_spec

CHECKPOINT = "checkpoint.npz"
PREVIOUS = "checkpoint.prev.npz"
RUN_JSON = "run.json"
LOCK = "run.lock"
METRICS = "metrics.jsonl"
QUALITY_LOG = "quality.jsonl"
QUALITY = "quality.json"
SAMPLES = "samples"
FIELDS = ("loss_D", "loss_G", "D_x", "D_G_z1", "D_G_z2")
KEPT_HASHES = 4  # run.json remembers the last few checkpoints' sha256 (latest, previous, and slack)
CHECKPOINT_KIND = "a ganparity training checkpoint (.npz with weights, Adam state, meta and loop.perm)"
META_KEYS = ("spec", "params", "backend", "epoch", "batch_in_epoch", "step", "rng")

# Settings a run records at its start and a resume takes back: cfg attribute -> (default, flag).
# Given again on --resume, the same value is fine and a different one is refused.
KEPT = {"dataset": (None, "--dataset"), "n_data": (None, "--n-data"), "seed": (0, "--seed"),
        "eval_samples": (512, "--eval-samples"), "sample_every": (1, "--sample-every"),
        "gif": (True, "--no-gif"), "fid_weights": (None, "--fid-weights")}
# What --resume may change on purpose (the help of each flag says so).
OVERRIDES = "--epochs (train further), --backend (hand over), --device, --data (the folder moved), --cache-dir"
# Numbers a TrainConfig may hold, and the least each may be (None: the default).
LIMITS = {"epochs": 1, "batch_size": 1, "n_data": 1, "eval_samples": 2, "sample_every": 1, "seed": 0}


# -- checkpoints -----------------------------------------------------------------------------------


def optimizer_keys(spec: GANSpec) -> dict[str, tuple[int, ...]]:
    """The neutral Adam state a checkpoint of `spec` holds (backends/*/state.py): m and v per
    trainable tensor (BatchNorm running statistics are not trained), a step count per net."""
    out: dict[str, tuple[int, ...]] = {}
    for net in spec.nets:
        for k, shape in W.expected(spec, (net,)).items():
            if not k.endswith(("running_mean", "running_var")):
                out[f"adam.{k}.m"] = shape
                out[f"adam.{k}.v"] = shape
        out[f"adam.{net}.step"] = ()
    return out


def load_checkpoint(path: Path, spec: GANSpec | None = None
                    ) -> tuple[dict, dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray]:
    """The one reader of a training checkpoint -> (meta, weights, Adam state, epoch order).
    With `spec`, the weights and the Adam state must fit it. Any failure is a one-line error."""
    path = Path(path)
    z = read_npz(path, "checkpoint", required=("meta", "loop.perm"), expected=CHECKPOINT_KIND)
    try:
        meta = json.loads(str(z.pop("meta")))
        missing = [k for k in META_KEYS if k not in meta]
    except (json.JSONDecodeError, TypeError):
        meta, missing = None, ["a JSON meta record"]
    if not isinstance(meta, dict) or missing:
        raise GanparityError(f"checkpoint {str(path)!r} has no {', '.join(missing or ['meta'])}, "
                             f"expected {CHECKPOINT_KIND}")
    perm = z.pop("loop.perm")
    opt = {k: v for k, v in z.items() if k.startswith("adam.")}
    arrays = {k: v for k, v in z.items() if not k.startswith("adam.")}
    if spec is not None:
        if meta["spec"] != spec.name:
            raise GanparityError(f"checkpoint {str(path)!r} is of spec {meta['spec']!r}, expected {spec.name!r}")
        arrays = W.validate(arrays, spec, what=f"the weights of checkpoint {str(path)!r}")
        check_finite(opt, f"the Adam state of checkpoint {str(path)!r}")
        want = optimizer_keys(spec)
        bad = [f"missing {k}" for k in want if k not in opt]
        bad += [f"{k} has shape {tuple(opt[k].shape)}, expected {want[k]}" for k in want
                if k in opt and tuple(opt[k].shape) != want[k]]
        if bad:
            raise GanparityError(f"the Adam state of checkpoint {str(path)!r} does not fit spec {spec.name}: "
                                 + "; ".join(bad[:4]) + (f"; and {len(bad) - 4} more" if len(bad) > 4 else ""))
    return meta, arrays, opt, perm


def save_checkpoint(run: Run, arrays: dict[str, np.ndarray], opt_state: dict[str, np.ndarray],
                    meta: dict, perm: np.ndarray) -> Path:
    """checkpoint.npz, whole or not at all; the one it replaces becomes checkpoint.prev.npz and
    run.json records the new one's sha256 (see the module docstring for the order)."""
    path, previous = run.dir / CHECKPOINT, run.dir / PREVIOUS
    payload = {**arrays, **opt_state, "loop.perm": np.asarray(perm, np.int64), "meta": np.array(json.dumps(meta))}

    def record_and_keep_previous(tmp: Path) -> None:
        entry = {"sha256": sha256(tmp), "step": meta["step"], "epoch": meta["epoch"],
                 "batch_in_epoch": meta["batch_in_epoch"], "time": time.strftime("%Y-%m-%d %H:%M:%S")}
        run.record["checkpoints"] = [*run.record.get("checkpoints", [])[-(KEPT_HASHES - 1):], entry]
        write_json(run.dir / RUN_JSON, run.record)
        if path.exists() and run.latest_ok:  # never let a corrupt latest replace a good previous
            keep_copy(path, previous)

    atomic_write(path, lambda f: np.savez(f, **payload), stream=True, before_replace=record_and_keep_previous)
    run.latest_ok = True
    return path


def checkpoint_differences(a: Path, b: Path) -> tuple[float, float]:
    """(max |weight difference|, max |Adam state difference|) of two runs' latest checkpoints, which
    must be at the same step (data-parallel parity: docs/distributed.md)."""
    ma, wa, oa, _ = load_checkpoint(Path(a) / CHECKPOINT)
    mb, wb, ob, _ = load_checkpoint(Path(b) / CHECKPOINT)
    if (ma["epoch"], ma["step"]) != (mb["epoch"], mb["step"]) or wa.keys() != wb.keys() or oa.keys() != ob.keys():
        raise GanparityError(f"runs {str(a)!r} (step {ma['step']}) and {str(b)!r} (step {mb['step']}) do not hold "
                             "the same tensors at the same step")
    return (max(float(np.abs(wa[k].astype(np.float64) - wb[k]).max()) for k in wa),
            max(float(np.abs(oa[k].astype(np.float64) - ob[k]).max()) for k in oa))


def load_best(run_dir: Path, record: dict, spec: GANSpec, log, doing: str = "resuming"
              ) -> tuple[dict, dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray, Path]:
    """The latest usable checkpoint of a run -> (meta, weights, Adam state, order, its path).

    Usable: its sha256 is one run.json recorded (runs from before the hashes: not checked), it
    loads, and it fits the spec. If checkpoint.npz is not, checkpoint.prev.npz is used and `log`
    gets one line saying why and how many steps that loses; if neither is, a one-line error."""
    history = record.get("checkpoints") or []
    known = {c.get("sha256"): c for c in history if isinstance(c, dict)}
    problems = []
    for path in (run_dir / CHECKPOINT, run_dir / PREVIOUS):
        if not path.is_file():
            problems.append(f"{path.name} is missing" if path.name == CHECKPOINT else f"there is no {path.name}")
            continue
        recorded = True
        try:
            recorded = not known or sha256(path) in known
            meta, arrays, opt, perm = load_checkpoint(path, spec)
            if not recorded:
                raise GanparityError("it loads, but was changed since it was written")
        except (GanparityError, OSError) as e:
            why = str(e) if isinstance(e, GanparityError) else reason(e)
            q = repr(str(path))
            why = why.replace(f" of checkpoint {q}", "").replace(f"checkpoint {q} ", "it ").replace(q, "it")
            mismatch = "" if recorded else "its sha256 does not match run.json; "
            problems.append(f"{path.name} is corrupt ({mismatch}{why})")
            continue
        if problems:
            newest = max((c.get("step", 0) for c in history), default=None)
            lost = (f"which loses {newest - meta['step']} steps (the latest was at step {newest})"
                    if newest is not None and newest >= meta["step"] else "losing the steps after it")
            log(f"warning: {problems[0]}; {doing} from {path} at step {meta['step']} (epoch {meta['epoch']}), {lost}")
        return meta, arrays, opt, perm, path
    raise GanparityError(f"cannot use run {str(run_dir)!r}: " + "; ".join(problems))


def has_checkpoint(run_dir: Path) -> bool:
    return (run_dir / CHECKPOINT).exists() or (run_dir / PREVIOUS).exists()


def read_metrics(path: Path, upto_step: int | None = None) -> list[dict]:
    """metrics.jsonl (or quality.jsonl) up to a step; a line cut short by kill -9 is dropped."""
    rows = read_jsonl(path, "metrics log")
    return [r for r in rows if upto_step is None or r.get("step", 0) <= upto_step]


def is_run(run_dir: Path) -> bool:
    return (run_dir / RUN_JSON).is_file()


def read_run(run_dir: Path) -> dict:
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise GanparityError(f"{str(run_dir)!r} is a file, expected a run directory (written by ganparity train)")
    if not is_run(run_dir):
        raise GanparityError(f"{str(run_dir)!r} is not a run directory (no {RUN_JSON}; written by ganparity train)")
    record = read_json(run_dir / RUN_JSON, "run record", "the run.json that ganparity train writes")
    lacking = [k for k in ("spec", "knobs", "backend") if k not in record]
    if lacking or not isinstance(record.get("knobs"), dict):
        raise GanparityError(f"run record {str(run_dir / RUN_JSON)!r} has no {', '.join(lacking or ['knobs'])}, "
                             "expected the run.json that ganparity train writes")
    return record


def spec_of(record: dict) -> GANSpec:
    return get_spec(record["spec"], kind="gan", **record["knobs"])


# -- opening a run directory ----------------------------------------------------------------------


@dataclass
class Run:
    """A run directory resolved from a TrainConfig: the spec, the settings it trains with (the
    config's, or on --resume the run's own), and run.json's contents. Holds the directory's lock
    until close()."""

    dir: Path
    spec: GANSpec
    cfg: object  # the TrainConfig with every None filled in
    record: dict  # run.json
    resumed: bool
    lock: DirLock | None = None
    created: bool = False  # the directory was made by this run: close() removes it if still empty
    latest_ok: bool = True  # checkpoint.npz is good (False after resuming from the previous one)

    def close(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None
        if self.created:
            try:
                self.dir.rmdir()  # only if nothing was written: a refused start leaves no trace
            except OSError:
                pass

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def check_config(cfg) -> None:
    """The numbers of a TrainConfig (the CLI's argument types say the same, earlier)."""
    for key, least in LIMITS.items():
        value = getattr(cfg, key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
            what = "a positive integer" if least == 1 else f"an integer of at least {least}"
            raise GanparityError(f"{key} must be {what}, got {value!r}")


def _shown(key: str, value) -> str:
    if key == "gif":
        return "gif off" if value is False else "gif on"
    return repr(value)


def _resume(cfg, run_dir: Path) -> Run:
    if not is_run(run_dir):
        raise GanparityError(f"{str(run_dir)!r} is not a run to resume (no {RUN_JSON})")
    record = read_run(run_dir)
    if cfg.spec and cfg.spec != record["spec"]:
        raise GanparityError(f"run {str(run_dir)!r} trains {record['spec']!r}, not {cfg.spec!r}")
    knobs = dict(record["knobs"])
    for k, v in cfg.knobs.items():
        if knobs.get(k) != v and k not in ("epochs",):
            raise GanparityError(f"--set {k}={v} differs from the run's {k}={knobs.get(k)}; "
                                 "a resumed run keeps its architecture and batch size")
    if cfg.batch_size is not None and cfg.batch_size != knobs.get("batch_size"):
        raise GanparityError(f"--batch-size {cfg.batch_size} differs from the run's {knobs.get('batch_size')}; "
                             "a resumed run keeps its architecture and batch size")
    if cfg.epochs is not None:
        knobs["epochs"] = cfg.epochs
    elif "epochs" in cfg.knobs:
        knobs["epochs"] = cfg.knobs["epochs"]
    spec = get_spec(record["spec"], kind="gan", **knobs)
    settings = {}
    for key, (default, flag) in KEPT.items():
        recorded, given = record.get(key, default), getattr(cfg, key)
        if key == "fid_weights" and given is not None:
            given = str(Path(given).resolve())
        if given is not None and given != recorded:
            raise GanparityError(f"{flag} {_shown(key, given)} differs from the run's {_shown(key, recorded)}: a "
                                 f"resumed run keeps the settings it started with (use a new --out to change "
                                 f"them); --resume may change {OVERRIDES}")
        settings[key] = recorded
    if cfg.data is not None and record.get("data") is None:
        raise GanparityError(f"--data {cfg.data!r}: run {str(run_dir)!r} trains on the dataset "
                             f"{record.get('dataset') or 'default'!r}, not an image folder")
    settings["data"] = str(Path(cfg.data).resolve()) if cfg.data is not None else record.get("data")
    settings["cache_dir"] = cfg.cache_dir if cfg.cache_dir is not None else record.get("cache_dir")
    resolved = dataclasses.replace(cfg, **settings, backend=cfg.backend or record["backend"])
    return Run(run_dir, spec, resolved, record | {"knobs": knobs}, True)


def _start(cfg, run_dir: Path) -> Run:
    knobs = dict(cfg.knobs)
    if cfg.epochs is not None:
        knobs["epochs"] = cfg.epochs
    if cfg.batch_size is not None:
        knobs["batch_size"] = cfg.batch_size
    spec = get_spec(cfg.spec, kind="gan", **knobs)
    if is_run(run_dir) or has_checkpoint(run_dir):
        raise GanparityError(f"{str(run_dir)!r} already holds a run: pass --resume to continue it, "
                             "or another --out")
    settings = {key: default if getattr(cfg, key) is None else getattr(cfg, key) for key, (default, _) in KEPT.items()}
    if settings["fid_weights"] is not None:
        settings["fid_weights"] = str(Path(settings["fid_weights"]).resolve())
    backend = cfg.backend or "torch"
    record = {"spec": spec.name, "knobs": spec.params, "recipe": dataclasses.asdict(spec.recipe),
              "data": str(Path(cfg.data).resolve()) if cfg.data else None, "cache_dir": cfg.cache_dir,
              **settings, "backend": backend, "history": [], "checkpoints": []}
    resolved = dataclasses.replace(cfg, **settings, backend=backend)
    return Run(run_dir, spec, resolved, record, False)


def check_new_run_dir(run_dir: Path) -> None:
    """A new run goes into a new or empty folder: one that holds a run is refused (pass --resume),
    and so is one that holds anything else (named), since a run would write its files among them."""
    if is_run(run_dir) or has_checkpoint(run_dir):
        raise GanparityError(f"{str(run_dir)!r} already holds a run: pass --resume to continue it, "
                             "or another --out")
    if not run_dir.is_dir():
        return
    names = [n for n in folder_entries(run_dir) if n != LOCK]
    if names:
        more = f" (and {len(names) - 1} more)" if len(names) > 1 else ""
        raise GanparityError(f"--out {str(run_dir)!r} holds {names[0]!r}{more} and is not a run directory: a new "
                             "run goes into a new or empty folder")


def _claim(run_dir: Path, create: bool) -> tuple[DirLock, bool]:
    """Make (a new run) and lock the run directory; refuse a file in its place or another writer."""
    if run_dir.exists() and not run_dir.is_dir():
        raise GanparityError(f"--out {str(run_dir)!r} is a file, expected a run directory")
    created = False
    if not run_dir.exists():
        if not create:
            raise GanparityError(f"{str(run_dir)!r} is not a run to resume (no such folder)")
        try:
            run_dir.mkdir(parents=True)
            created = True
        except FileExistsError:
            pass
        except OSError as e:
            raise GanparityError(f"--out {str(run_dir)!r}: cannot create the run directory ({reason(e)})") from None
    try:
        return DirLock(run_dir / LOCK, f"run directory {str(run_dir)!r}").acquire(), created
    except BaseException:
        if created:
            run_dir.rmdir()
        raise


def default_run_dir(spec: str, backend: str) -> Path:
    """Where a run goes without --out: runs/SPEC-BACKEND-DATE-TIME."""
    return Path("runs") / f"{spec}-{backend}-{time.strftime('%Y%m%d-%H%M%S')}"


def open_run(cfg, writer: bool = True) -> Run:
    """Resolve spec, knobs, backend, data and settings, from the config or (--resume) from
    run.json, and lock the run directory. The config is not changed: Run.cfg is a filled-in copy.
    Close the Run (or use it as a context manager) to release the lock. The other workers of a
    data-parallel run (writer=False) only read: rank 0 alone creates and locks the directory."""
    check_config(cfg)
    if not writer and not cfg.out:
        raise GanparityError("a data-parallel worker needs --out RUN_DIR, the same on every rank "
                             "(ganparity train --nproc N names one itself)")
    if cfg.resume:
        if not cfg.out:
            raise GanparityError("--resume needs --out RUN_DIR, the run to continue")
        run_dir = Path(cfg.out)
    else:
        if not cfg.spec:
            raise GanparityError("--spec is required (or --resume --out RUN_DIR)")
        choose("GAN spec", cfg.spec, GAN_SPECS)
        run_dir = Path(cfg.out) if cfg.out else default_run_dir(cfg.spec, cfg.backend or "torch")
    if not writer:
        if cfg.resume and not run_dir.is_dir():
            raise GanparityError(f"{str(run_dir)!r} is not a run to resume (no such folder)")
        return _resume(cfg, run_dir) if cfg.resume else _start(cfg, run_dir)
    lock, created = _claim(run_dir, create=not cfg.resume)
    try:
        if not cfg.resume:
            check_new_run_dir(run_dir)
        run = _resume(cfg, run_dir) if cfg.resume else _start(cfg, run_dir)
    except BaseException:
        lock.release()
        if created:
            run_dir.rmdir()
        raise
    run.lock, run.created = lock, created
    return run


def write_record(run: Run, backend: str, device: str, step: int, data_description: str) -> None:
    """run.json at the start of a session: the backend history grows by one entry."""
    record = run.record
    record["history"] = [*record.get("history", []), {"backend": backend, "from_step": step, "device": device}]
    record |= {"backend": backend, "knobs": run.spec.params, "recipe": dataclasses.asdict(run.spec.recipe),
               "data_description": data_description}
    write_json(run.dir / RUN_JSON, record)
