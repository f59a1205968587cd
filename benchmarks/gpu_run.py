"""One prepared GPU run (issue 30): everything the project wants measured on a lent GPU, in one command
that ends inside a time budget and leaves its results under --out whatever happens to it.

    PYTHONPATH=. python3 -m ganparity bench gpu-run --out $OUT              # the GPU machine
    PYTHONPATH=. python3 -m ganparity bench gpu-run --dry-run --out /tmp/g   # any CPU, tiny widths

It runs from a copied tree without installing (Python 3.12, torch 2.11, numpy 2, no mxnet there)
and imports no framework itself: each part runs in a fresh process of its own (this module, with
--part), killed at the part's time cap, and writes its rows to a file after every row; this process
merges them into gpu_run.json and gpu_run.md under --out every few seconds, and its log into
gpu_run.log. A part, an arm or a check that fails is a row saying why; one that the budget does not
reach says "skipped: time budget". docs/bench.md says what each row means.

Parts, in the order they run (--only picks some):
  selfcheck          the parity check of every variant but the torch.compile ones, tiny widths
  peaks              versions, the device, and GEMM peaks (torch.mm, 8192^3): fp32, tf32, bf16
  dcgan-b<N>         full-width dcgan at batch N (128, 2048, 64): the source's eager fp32 step and
                     every torch variant, interleaved in the same rounds (the torch.compile ones in
                     a second set of rounds, with the source and default steps again)
  train              `ganparity train --device cuda` img/s against the harness step, same spec and batch
  finetune           resnet34-finetune at batch 128 (benchmarks/harness.py finetune_row)
  selfcheck-compile  the torch.compile variants' parity checks, with the time that is left
then the goals of issue 30 and everything left unmeasured, written down either way.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..common import flops, gpu, parity
from ..common import weights as W
from ..common.backend import build_nets, get_backend, is_installed
from ..common.errors import GanparityError
from ..common.files import write_json, write_text
from ..common.spec.registry import get_spec
from ..common.table import md_table
from .environment import metadata, peak_tflops, set_threads
from .harness import finetune_row, rate
from .results import peak_cell
from .selfcheck import run_checks
from .timing import time_interleaved, time_rounds
from .variants import DEFAULT, VARIANTS

MODULE = "ganparity.benchmarks.gpu_run"
SOURCE = "source"  # the arm that runs the spec's source loop (backends/torch/sources.py): eager fp32, as written
# The arms of a dcgan part, in the order they are set up (what comes first is measured first when
# time runs short); variants not named here follow, the torch.compile ones last of all.
PRIORITY = (SOURCE, DEFAULT, "fastest-cuda", "cuda-graph", "cudnn-benchmark", "cudnn-benchmark+tf32",
            "bf16-tuned-cuda", "channels_last", "bf16", "fused-adam", "foreach-adam",
            "compile-reduce-overhead", "compile", "tuned-cuda", "tuned", "compile-max-autotune")
GOALS = {"b128_ms": 2.2, "b128_speedup": 3.5, "b2048_tflops": 300.0, "train_fraction": 0.9}
DRY_DCGAN = dict(nz=8, ngf=4, ndf=4, image_size=64)  # the source loops build 64x64 DCGANs
DRY_FINETUNE = dict(width=4, blocks=1, image_size=32, num_classes=3, hidden=8)
FILES = ("gpu_run.json", "gpu_run.md", "gpu_run.log")  # everything written under --out (the GPU tool brings 8 back)


def _compiles(name: str) -> bool:
    return name != SOURCE and any(o.startswith("compile") for o in VARIANTS["torch"][name].options)


def arm_order(names: list[str] | None = None) -> list[str]:
    """The dcgan part's arms: the source loop, then the torch variants by PRIORITY, compile ones last.
    The source loop and the default step are always there: every other arm is compared with them."""
    known = [SOURCE, *VARIANTS["torch"]]
    chosen = known if not names else list(dict.fromkeys([SOURCE, DEFAULT, *names]))
    for n in chosen:
        if n not in known:
            raise GanparityError(f"unknown torch variant {n!r}; valid: {', '.join(known[1:])}")
    ranked = sorted(chosen, key=lambda n: (PRIORITY.index(n) if n in PRIORITY else len(PRIORITY)))
    return [n for n in ranked if n == SOURCE or not _compiles(n)] + [n for n in ranked if n != SOURCE and _compiles(n)]


def _reason(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:300]


# -- a part's own process -------------------------------------------------------------------------


class Sink:
    """A part's results, written whole to its file after every row (atomically: a kill between two
    rows leaves the file of the row before)."""

    def __init__(self, path: Path, part: str):
        self.path, self.data = path, {"part": part, "rows": [], "info": {}, "done": False}

    def row(self, row: dict) -> None:
        self.data["rows"].append(row)
        self.write()

    def info(self, **info) -> None:
        self.data["info"].update(info)
        self.write()

    def write(self) -> None:
        write_json(self.path, self.data, default=str)


def _say(msg: str) -> None:
    print(msg, flush=True)


def part_selfcheck(a, sink: Sink) -> None:
    """benchmarks/selfcheck.py's checks (every variant's one-step parity at tiny width) for the
    variants named, each one a row as soon as it is known."""
    run_checks(a.device, ["torch"], a.variants.split(","), train=None, report=_say, on_result=sink.row)


def part_peaks(a, sink: Sink) -> None:
    """Versions and the device, then the GEMM peak in each precision (be.peak_gemm)."""
    be = get_backend("torch")
    dev = be.resolve(a.device)
    name = be.describe(dev)
    sink.info(device_name=name, versions=be.versions(), flags=be.flags(), meta=metadata("torch", a.device, name))
    for prec in ("fp32", "tf32", "bf16") if a.device == "cuda" else ("fp32", "bf16"):
        try:
            r = be.peak_gemm(dev, prec, 256 if a.dry_run else 0)
            r |= {"status": "ok", "datasheet_tflops": peak_tflops(name, prec) if a.device == "cuda" else None}
            _say(f"peak {prec}: {r['tflops']:.3g} TFLOP/s ({r['how']})")
        except Exception as e:  # noqa: BLE001 - a failed measurement is a row
            r = {"precision": prec, "status": f"failed: {_reason(e)}"}
        sink.row(r)


@dataclass
class _Arm:
    """One way to run the step, set up and warm: its step callable and what its row says."""

    name: str
    step: Callable[[], object]
    row: dict
    trainer: object = None


def _flags_step(be, flags: dict, step: Callable[[], object]) -> Callable[[], object]:
    """The step under its variant's speed flags (set and restored around every call, so arms with
    different flags can share the rounds)."""
    if not flags:
        return step

    def run():
        with be.speed_flags(flags):
            return step()
    return run


def _setup_arm(be, dev, spec, name: str, inputs, real, noise, a) -> _Arm | dict:
    """Build one arm from the shared numpy weights and warm it up (first step apart: capture,
    compile, autotune). Returns the arm, or a row that says why it does not run here."""
    device = a.device
    if name == SOURCE:
        row = {"variant": SOURCE, "precision": "fp32", "options": [],
               "note": "the source's loop, eager fp32, as written (backends/torch/sources.py: it reads errD.item() "
                       "and errG.item() every step)"}
        loop = be.source_loop(spec, inputs.weights, "float32", device)
        row["note"] += f" ({loop.how})"
        return _warm_arm(be, dev, _Arm(name, lambda: loop.step(real, noise), row), a)
    v = VARIANTS["torch"][name]
    row = {"variant": name, "precision": v.precision, "options": sorted(v.options), "flags": v.flags, "note": v.note}
    with be.speed_flags(v.flags):  # the trainer is built as its rows are, under its flags
        nets = build_nets(be, spec, device=device)
        for n, m in spec.nets.items():
            be.set_arrays(nets[n], m, W.split(inputs.weights, n))
        tr = be.GANTrainer(spec, nets["G"], nets["D"], options=v.options)
    if v.cuda_only and device != "cuda":  # everything up to the device check has run
        return row | {"status": f"needs cuda: a CUDA-only variant, the device is {device}"}
    if a.dry_run and _compiles(name) and not a.with_compile:
        return row | {"status": "skipped: --dry-run leaves torch.compile out (minutes on a small CPU; "
                                "--with-compile runs it)"}
    arm = _Arm(name, _flags_step(be, v.flags, lambda: tr.step(real, noise)), row, tr)
    return _warm_arm(be, dev, arm, a, warmup=6 if _compiles(name) else 3)


def _warm_arm(be, dev, arm: _Arm, a, warmup: int = 3) -> _Arm:
    be.reset_peak_memory(dev)
    before, _ = be.peak_memory(dev)
    t = time.perf_counter()
    arm.step()
    be.sync(dev)
    first = time.perf_counter() - t
    t = time.perf_counter()
    for _ in range(warmup - 1):
        arm.step()
    be.sync(dev)
    per = (time.perf_counter() - t) / max(warmup - 1, 1)
    peak, kind = be.peak_memory(dev)
    arm.row |= {"status": "ok", "first_step_s": first, "warm_step_ms": per * 1000,
                "mem_bytes": None if peak is None else peak - (before or 0), "mem_kind": kind}
    return arm


def _guard(failed: dict, arm: _Arm) -> Callable[[], object]:
    """An arm that fails inside the rounds (out of memory, ...) is marked and then skipped, so the
    other arms keep their numbers."""
    def run():
        if arm.name in failed:
            return None
        try:
            return arm.step()
        except Exception as e:  # noqa: BLE001
            failed[arm.name] = _reason(e)
            return None
    return run


def _finite(be, last) -> bool | None:
    if isinstance(last, dict):
        try:
            return all(math.isfinite(be.scalar(v) if not isinstance(v, float) else v) for v in last.values())
        except Exception:  # noqa: BLE001
            return None
    return None


def _time_set(be, dev, arms: list[_Arm], a, left: Callable[[], float], label: str) -> dict[str, dict]:
    """The arms in the same interleaved rounds, as many as the time left allows (at least 3)."""
    if not arms:
        return {}
    per_round = sum(max(a.min_round_s, arm.row["warm_step_ms"] / 1000) + 0.002 for arm in arms)
    rounds = max(min(a.rounds, int(left() / max(per_round, 1e-6))), min(3, a.rounds))
    failed: dict[str, str] = {}
    _say(f"  timing {len(arms)} arms ({label}), {rounds} interleaved rounds (~{rounds * per_round:.0f} s)")
    times = time_interleaved({arm.name: _guard(failed, arm) for arm in arms}, lambda: be.sync(dev), rounds, 1,
                             a.min_round_s)
    out = {}
    for arm in arms:
        t = times[arm.name]
        if arm.name in failed:
            out[arm.name] = {"status": f"failed: {failed[arm.name]}"}
            continue
        out[arm.name] = {k: t[k] for k in ("median_ms", "p10_ms", "p90_ms", "rounds", "steps_per_round")} | {
            "finite": _finite(be, t["last"]), "set": label}
    return out


def part_dcgan(a, sink: Sink) -> None:
    """Full-width dcgan at one batch size: the source's eager fp32 step and every torch variant from
    the same numpy weights and inputs, timed in the same interleaved rounds. The torch.compile arms
    come after that set is written (a compile can take minutes), each timed in rounds of its own
    beside the source and default steps again, and written as soon as it is measured."""
    t0, budget = time.perf_counter(), a.part_budget_s
    left = lambda: budget - (time.perf_counter() - t0)  # noqa: E731
    be = get_backend("torch")
    dev = be.resolve(a.device)
    spec = get_spec("dcgan", **json.loads(a.knobs))
    flop = flops.step_flops(spec, a.batch)
    inputs = parity.make_inputs(spec, a.batch, 1, seed=0)
    nets = build_nets(be, spec, device=a.device)  # only to place the inputs: every arm reads the same two tensors
    real, noise = be.to_device(nets["D"], inputs.real[0]), be.to_device(nets["G"], inputs.noise[0])
    del nets
    widths = {k: spec.params[k] for k in ("nz", "ngf", "ndf", "image_size")}
    sink.info(spec="dcgan", knobs=widths, batch=a.batch, flops_per_step=flop, device_name=be.describe(dev),
              meta=metadata("torch", a.device, be.describe(dev)))
    base = {"spec": "dcgan", "batch": a.batch, "flops_per_step": flop}
    names = arm_order(a.variants.split(",") if a.variants else None)

    def setup(name: str, need_s: float) -> _Arm | None:
        """The arm set up and warm, or None after writing the row that says why not."""
        if left() < need_s:
            sink.row(base | {"variant": name, "status": "skipped: time budget"})
            return None
        _say(f"  setting up {name} ...")
        sink.info(doing=f"setting up {name}")  # a part killed at its cap says what it was doing
        try:
            got = _setup_arm(be, dev, spec, name, inputs, real, noise, a)
        except Exception as e:  # noqa: BLE001 - an arm that cannot be set up is a row
            got = {"variant": name, "precision": "-", "status": f"failed: {_reason(e)}"}
        if isinstance(got, dict):
            sink.row(base | got)
            return None
        _say(f"    first step {got.row['first_step_s']:.2f} s, warm step {got.row['warm_step_ms']:.2f} ms")
        return got

    def timed(arms: list[_Arm], label: str, write: list[str]) -> None:
        sink.info(doing=f"timing {label}")
        try:
            times = _time_set(be, dev, arms, a, lambda: max(left() - 3.0, 0.0), label)
        except Exception as e:  # noqa: BLE001
            times = {arm.name: {"status": f"failed in the rounds: {_reason(e)}"} for arm in arms}
        source = times.get(SOURCE, {}).get("median_ms")
        for arm in arms:
            if arm.name not in write:
                continue
            row = base | arm.row | times[arm.name]
            if "median_ms" in row:
                row |= {"status": "ok", "speedup_vs_source": source / row["median_ms"] if source else None}
                row |= rate(flop, a.batch, row["median_ms"], be, dev, row["precision"], a.device)
                if label != "plain":  # the references timed in this arm's rounds
                    row["same_rounds_ms"] = {n: t.get("median_ms") for n, t in times.items() if n != arm.name}
            sink.row(row)
        sink.info(doing=None)

    plain = [n for n in names if n == SOURCE or not _compiles(n)]
    arms = [got for n in plain if (got := setup(n, 8.0 + 0.3 * len(plain))) is not None]
    timed(arms, "plain", plain)
    refs = [arm for arm in arms if arm.name in (SOURCE, DEFAULT)]
    del arms, got  # the other arms' memory (CUDA graphs' pools) goes back before the compiles
    for name in (n for n in names if n not in plain):
        arm = setup(name, 45.0 if a.device == "cuda" else 5.0)  # a compile that cannot finish would lose its row
        if arm is not None:
            timed([*refs, arm], f"{name} with the source and default steps", [name])
            del arm


def _windows(metrics: list[dict]) -> list[tuple[int, float]]:
    """metrics.jsonl's steps grouped into the windows the loop read together: (images, seconds) each
    (every line of a window carries the window's img/s)."""
    out: list[list] = []
    for r in metrics:
        if out and out[-1][2] == (r["epoch"], r["img_per_s"]):
            out[-1][0] += 1
        else:
            out.append([1, r["img_per_s"], (r["epoch"], r["img_per_s"])])
    return [(n, rate) for n, rate, _ in out]


def train_summary(metrics: list[dict], batch: int) -> dict:
    """img/s of a training run while it trains: every window of steps read together but the first
    (cuDNN's choices, the first batches), its images over its wall time."""
    wins = _windows(metrics)
    steady = wins[1:] or wins
    images = sum(n * batch for n, _ in steady)
    seconds = sum(n * batch / rate for n, rate in steady if rate > 0)
    return {"steps": len(metrics), "windows": len(wins), "img_per_s": images / seconds if seconds else None,
            "window_img_per_s": [rate for _, rate in wins]}


def stream(cmd: list[str], timeout: float, prefix: str, log: Callable[[str], None],
           group: bool = True) -> tuple[int | None, list[str]]:
    """Run cmd, each output line to log(prefix + line) as it comes, killed at `timeout` s. group: in
    a process group of its own, killed whole (compile workers, the training run a part starts, which
    stays in the part's group: group=False). (returncode or None when killed, the last 30 lines)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=group, bufsize=1)
    tail: list[str] = []

    def pump() -> None:
        for line in proc.stdout:
            line = line.rstrip("\n")
            tail.append(line)
            del tail[:-30]
            log(prefix + line)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        proc.wait(timeout=max(timeout, 1.0))
        rc = proc.returncode
    except subprocess.TimeoutExpired:
        _kill(proc, group)
        rc = None
    except BaseException:
        _kill(proc, group)
        raise
    reader.join(5)
    return rc, tail


def _kill(proc: subprocess.Popen, group: bool) -> None:
    try:
        if group:
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def part_train(a, sink: Sink) -> None:
    """`ganparity train --device D` on the embedded discs at the spec's batch, as a user runs it
    (batches made ahead, values read every --log-every steps), then the same run the old way
    (--prefetch 0 --log-every 1: the copy and a host wait inside every step), then the harness's step
    on the same spec and batch in this process: img/s of each."""
    t0, budget = time.perf_counter(), a.part_budget_s
    left = lambda: budget - (time.perf_counter() - t0)  # noqa: E731
    knobs = json.loads(a.knobs)
    sets = [x for k, v in knobs.items() for x in ("--set", f"{k}={v}")]
    n_data = a.batch * a.train_steps
    log_every = max(1, a.train_steps // 4)  # four windows an epoch
    sink.info(spec="dcgan", knobs=knobs, batch=a.batch, n_data=n_data, epochs=a.train_epochs, log_every=log_every)
    runs = [("train (prefetched)", ["--log-every", str(log_every)]),
            ("train (old way: --prefetch 0 --log-every 1)", ["--prefetch", "0", "--log-every", "1"])]
    for label, extra in runs:
        if left() < 15:
            sink.row({"run": label, "status": "skipped: time budget"})
            continue
        with tempfile.TemporaryDirectory(prefix="ganparity-gpu-run-") as tmp:
            cmd = [sys.executable, "-m", "ganparity", "train", "--spec", "dcgan", "--backend", "torch", "--device",
                   a.device, "--n-data", str(n_data), "--epochs", str(a.train_epochs), "--batch-size", str(a.batch),
                   "--eval-samples", "16", "--no-gif", "--progress", "lines", "--out", f"{tmp}/run", *extra, *sets]
            t = time.perf_counter()
            rc, tail = stream(cmd, left() - 12, "    train: ", _say, group=False)
            wall = time.perf_counter() - t
            row = {"run": label, "command": " ".join(cmd[1:]).replace(tmp, "$TMP"), "wall_s": wall}
            metrics_path = Path(tmp) / "run" / "metrics.jsonl"
            metrics = [json.loads(x) for x in metrics_path.read_text().splitlines()] if metrics_path.exists() else []
            if rc != 0:
                why = "killed at the part's time cap" if rc is None else f"exit {rc}: {tail[-1] if tail else ''}"
                row["status"] = f"failed: {why}"
            elif metrics:
                row |= {"status": "ok"} | train_summary(metrics, a.batch)
            else:
                row["status"] = "failed: no metrics.jsonl"
        sink.row(row)
    if left() < 8:
        sink.row({"run": "harness step", "status": "skipped: time budget"})
        return
    try:
        be = get_backend("torch")
        dev = be.resolve(a.device)
        spec = get_spec("dcgan", **knobs, batch_size=a.batch)
        inputs = parity.make_inputs(spec, a.batch, 1, seed=0)
        nets = build_nets(be, spec, device=a.device)
        for n, m in spec.nets.items():
            be.set_arrays(nets[n], m, W.split(inputs.weights, n))
        tr = be.GANTrainer(spec, nets["G"], nets["D"])
        real, noise = be.to_device(nets["D"], inputs.real[0]), be.to_device(nets["G"], inputs.noise[0])
        t = time_rounds(lambda: tr.step(real, noise), lambda: be.sync(dev), a.rounds, 3, a.min_round_s)
        row = {"run": "harness step", "status": "ok", "note": "GANTrainer.step on device-resident inputs (the "
               "bench harness's default arm), synced only between rounds"} | {
            k: t[k] for k in ("median_ms", "p10_ms", "p90_ms", "rounds", "steps_per_round")}
        row["img_per_s"] = a.batch / (t["median_ms"] / 1000)
    except Exception as e:  # noqa: BLE001
        row = {"run": "harness step", "status": f"failed: {_reason(e)}"}
    sink.row(row)


def part_finetune(a, sink: Sink) -> None:
    """The dog-breed fine-tune step (frozen ResNet-34) at one batch size: benchmarks/harness.py's row."""
    row = finetune_row("resnet34-finetune", json.loads(a.knobs), VARIANTS["torch"][DEFAULT], a.device, a.batch,
                       rounds=a.rounds, warmup=2)
    sink.row(row)


PARTS: dict[str, Callable] = {"selfcheck": part_selfcheck, "peaks": part_peaks, "dcgan": part_dcgan,
                              "train": part_train, "finetune": part_finetune}


def run_part(a) -> int:
    set_threads(os.cpu_count() or 1)  # before torch is imported: the CPU rows of a dry run use every core
    sink = Sink(Path(a.part_out), a.part)
    sink.write()
    try:
        PARTS[a.part](a, sink)
    except Exception as e:  # noqa: BLE001 - the part's file says why, the parent goes on
        sink.info(error=_reason(e))
        _say(f"part {a.part} failed: {_reason(e)}")
        return 1
    finally:
        sink.data["done"] = True
        sink.write()
    return 0


# -- the whole run --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Part:
    """One part of the run: its name, the process it runs in (gpu_run --part ...), and its time cap
    as a share of the budget; `at_least` seconds left, or it is skipped."""

    name: str
    kind: str
    share: float
    at_least: float
    args: tuple[str, ...] = ()


def plan(a) -> list[Part]:
    torch_variants = list(VARIANTS["torch"])
    plain = [v for v in torch_variants if not _compiles(v)]
    compiled = [v for v in torch_variants if _compiles(v)]
    dcgan_knobs = json.dumps(DRY_DCGAN if a.dry_run else {})
    parts = [Part("selfcheck", "selfcheck", 0.12, 20, ("--variants", ",".join(plain))),
             Part("peaks", "peaks", 0.05, 10)]
    shares = {128: 0.22, 2048: 0.17, 64: 0.10}
    for b in a.batch_sizes:
        parts.append(Part(f"dcgan-b{b}", "dcgan", shares.get(b, 0.12), 30, ("--batch", str(b), "--knobs", dcgan_knobs,
                                                                             "--variants", a.variants)))
        if b == a.batch_sizes[0]:  # the train part comes after the first batch size (the goal's one)
            parts.append(Part("train", "train", 0.15, 25, ("--batch", str(a.train_batch), "--knobs", dcgan_knobs)))
    parts.append(Part("finetune", "finetune", 0.08, 15, (
        "--batch", str(a.finetune_batch), "--knobs", json.dumps(DRY_FINETUNE if a.dry_run else {}))))
    if compiled and (not a.dry_run or a.with_compile):
        parts.append(Part("selfcheck-compile", "selfcheck", 1.0, 30, ("--variants", ",".join(compiled))))
    if a.only:
        wanted = a.only.split(",")
        known = [p.name for p in parts]
        for w in wanted:
            if w not in known:
                raise GanparityError(f"unknown part {w!r}; valid: {', '.join(known)}")
        parts = [p for p in parts if p.name in wanted]
    return parts


class Run:
    """The run's results and its three files under --out, rewritten after every change."""

    def __init__(self, a, out: Path):
        self.a, self.out, self.t0 = a, out, time.perf_counter()
        out.mkdir(parents=True, exist_ok=True)
        self.log_file = (out / FILES[2]).open("a", buffering=1)
        gpus = gpu.list_gpus()
        self.results: dict = {
            "metadata": {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "command": " ".join(sys.argv),
                         "device": a.device, "dry_run": a.dry_run, "budget_s": a.budget_s,
                         "python": sys.version.split()[0], "numpy": np.__version__,
                         "gpus": [f"{g.name} (sm_{g.capability[0]}{g.capability[1]}, driver {g.driver})"
                                  for g in gpus]},
            "parts": {}, "mxnet": mxnet_row(a.device, gpus)}

    def log(self, msg: str) -> None:
        line = f"[{time.perf_counter() - self.t0:6.1f} s] {msg}"
        print(line, flush=True)
        self.log_file.write(line + "\n")

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def save(self) -> None:
        self.results["metadata"]["elapsed_s"] = self.elapsed()
        self.results["goals"] = goals(self.results)
        self.results["unmeasured"] = unmeasured(self.results)
        write_json(self.out / FILES[0], self.results, default=str)
        write_text(self.out / FILES[1], render(self.results))

    def close(self) -> None:
        self.log_file.close()


def mxnet_row(device: str, gpus: list) -> dict:
    """MXNet's GPU row: why there is no number (not installed on the GPU machine; MXNet 1.9.1 has no
    kernels for Hopper either way)."""
    if device != "cuda":
        return {"status": "not run", "reason": f"the device is {device}; MXNet's CPU rows are `ganparity bench step`'s"}
    why = [w for w in (gpu.mxnet_191_refusal(g) for g in gpus) if w]
    installed = is_installed("mxnet")
    reason = ("" if installed else "mxnet is not installed on this machine; ") + (
        "; ".join(why) if why else "no GPU here that MXNet 1.9.1 refuses")
    return {"status": "unavailable" if why or not installed else "not run", "reason": reason}


def _terminated(signum, frame) -> None:
    raise KeyboardInterrupt  # SIGTERM (a lease ending): kill the part's process group, write the results


def run_all(a) -> int:
    old = signal.signal(signal.SIGTERM, _terminated)
    try:
        return _run_all(a)
    finally:
        signal.signal(signal.SIGTERM, old)


def _run_all(a) -> int:
    out = Path(a.out)
    run = Run(a, out)
    parts = plan(a)
    run.log(f"gpu_run: {len(parts)} parts ({', '.join(p.name for p in parts)}), budget {a.budget_s:.0f} s, "
            f"device {a.device}{', dry run' if a.dry_run else ''}; results in {out}")
    run.save()
    tmp = Path(tempfile.mkdtemp(prefix="ganparity-gpu-run-parts-"))
    rc = 0
    try:
        for i, p in enumerate(parts):
            left = a.budget_s - run.elapsed()
            later = sum(q.at_least for q in parts[i + 1:]) * 0.5  # keep a little for the parts after this one
            cap = min(p.share * a.budget_s, left - later - 5) if p.share < 1 else left - 5
            entry = {"status": "running", "cap_s": cap}
            run.results["parts"][p.name] = entry
            if cap < p.at_least * (0.3 if a.dry_run else 1.0):
                entry["status"] = "skipped: time budget"
                run.log(f"part {p.name}: skipped, {left:.0f} s left of the budget")
                run.save()
                continue
            run.log(f"part {p.name}: up to {cap:.0f} s")
            entry.update(_run_part(a, p, cap, tmp, run))
            run.log(f"part {p.name}: {entry['status']} in {entry['seconds']:.1f} s")
            run.save()
    except KeyboardInterrupt:
        for entry in run.results["parts"].values():
            if entry.get("status") == "running":
                entry["status"] = "interrupted (SIGTERM or Ctrl-C): rows after the last one written are missing"
        run.log("interrupted: the results so far are written")
        rc = 130
    finally:
        run.save()
        run.log(f"wrote {', '.join(str(out / f) for f in FILES)} in {run.elapsed():.0f} s")
        print("\n" + summary(run.results), flush=True)
        run.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return rc


def _run_part(a, p: Part, cap: float, tmp: Path, run: Run) -> dict:
    """The part in a fresh process, killed at its cap; its file merged into the results every 2 s."""
    part_file = tmp / f"{p.name}.json"
    cmd = [sys.executable, "-m", MODULE, "--part", p.kind, "--part-out", str(part_file), "--device", a.device,
           "--part-budget-s", f"{max(cap - 10, 5):.0f}", "--rounds", str(a.rounds), "--min-round-s", str(a.min_round_s),
           "--train-steps", str(a.train_steps), "--train-epochs", str(a.train_epochs), *p.args]
    if a.dry_run:
        cmd.append("--dry-run")
    if a.with_compile:
        cmd.append("--with-compile")
    entry = run.results["parts"][p.name]
    stop = threading.Event()

    def merge() -> None:
        if part_file.exists():
            try:
                entry.update({k: v for k, v in json.loads(part_file.read_text()).items() if k != "part"})
            except (OSError, ValueError):
                return

    def watch() -> None:
        seen = None
        while not stop.wait(2.0):
            stamp = part_file.stat().st_mtime_ns if part_file.exists() else None
            if stamp != seen:
                seen = stamp
                merge()
                run.save()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    t = time.perf_counter()
    try:
        rc, tail = stream(cmd, cap, "  | ", run.log)
    finally:
        stop.set()
        watcher.join()
    merge()
    seconds = time.perf_counter() - t
    if rc is None:
        doing = entry.get("info", {}).get("doing")
        status = f"killed at its time cap ({cap:.0f} s)" + (f" while {doing}" if doing else "")
    elif rc != 0 or entry.get("info", {}).get("error"):
        status = f"failed: {entry.get('info', {}).get('error') or (tail[-1] if tail else f'exit {rc}')}"
    else:
        status = "done"
    return {"status": status, "seconds": seconds}


# -- what the run says ----------------------------------------------------------------------------


def _rows(results: dict, part: str) -> list[dict]:
    return results.get("parts", {}).get(part, {}).get("rows", [])


def _best(rows: list[dict], key: str, low: bool) -> dict | None:
    ok = [r for r in rows if r.get("status") == "ok" and r.get(key) is not None and r["variant"] != SOURCE]
    return (min if low else max)(ok, key=lambda r: r[key]) if ok else None


def goals(results: dict) -> list[dict]:
    """Issue 30's goals, each with what was measured in this run (None: not measured). A dry run or
    a CPU run measures them at other sizes: met is None then, never a pass."""
    real = results["metadata"]["device"] == "cuda" and not results["metadata"]["dry_run"]
    out = []

    def goal(name: str, target: str, measured, text: str, ok: bool | None) -> None:
        out.append({"goal": name, "target": target, "measured": measured, "text": text if measured is not None
                    else "not measured", "met": ok if (real and measured is not None) else None})

    b128 = _rows(results, "dcgan-b128")
    best = _best(b128, "median_ms", low=True)
    goal("dcgan b128: the fastest step", f"<= {GOALS['b128_ms']} ms", best and best["median_ms"],
         best and f"{best['median_ms']:.2f} ms ({best['variant']})", best and best["median_ms"] <= GOALS["b128_ms"])
    fast = _best(b128, "speedup_vs_source", low=False)
    goal("dcgan b128: speed-up over the source's eager fp32 step, same rounds", f">= {GOALS['b128_speedup']}x",
         fast and fast["speedup_vs_source"], fast and f"{fast['speedup_vs_source']:.2f}x ({fast['variant']})",
         fast and fast["speedup_vs_source"] >= GOALS["b128_speedup"])
    top = _best(_rows(results, "dcgan-b2048"), "tflops_achieved", low=False)
    goal("dcgan b2048: TFLOP/s", f">= {GOALS['b2048_tflops']:.0f}", top and top["tflops_achieved"],
         top and f"{top['tflops_achieved']:.0f} ({top['variant']})",
         top and top["tflops_achieved"] >= GOALS["b2048_tflops"])
    train = {r.get("run"): r for r in _rows(results, "train")}
    mine, harness = train.get("train (prefetched)", {}), train.get("harness step", {})
    frac = (mine["img_per_s"] / harness["img_per_s"]) if mine.get("img_per_s") and harness.get("img_per_s") else None
    goal("train --device cuda img/s against the harness step (same spec and batch)",
         f">= {100 * GOALS['train_fraction']:.0f}%", frac,
         frac and f"{100 * frac:.0f}% ({mine['img_per_s']:,.0f} against {harness['img_per_s']:,.0f} img/s)",
         frac and frac >= GOALS["train_fraction"])
    return out


def unmeasured(results: dict) -> list[str]:
    """Every part, arm and check of the plan that has no measurement in this run, with why."""
    out = []
    for name, part in results.get("parts", {}).items():
        if part.get("status") != "done":
            out.append(f"part {name}: {part.get('status')}")
        for r in part.get("rows", []):
            status = r.get("status", "")
            if status not in ("ok", "pass"):
                what = r.get("variant") or r.get("run") or r.get("name") or r.get("precision")
                out.append(f"{name} {what}: {status or r.get('detail', '')}")
    if results.get("mxnet", {}).get("status") != "ok":
        out.append(f"mxnet: {results['mxnet'].get('status')}: {results['mxnet'].get('reason')}")
    return out


def _f(x, digits: int = 2) -> str:
    return "-" if x is None else f"{x:,.{digits}f}"


def _g(x) -> str:
    """Three significant digits: TFLOP/s from a tiny CPU dry run (0.00123) to an H100 (312)."""
    return "-" if x is None else f"{x:.3g}"




def _goal_table(results: dict) -> str:
    met = {True: "yes", False: "no", None: "-"}
    return md_table(["goal", "target", "measured", "met"],
                    [[g["goal"], g["target"], g["text"], met[g["met"]]] for g in results.get("goals", [])])


def _dcgan_table(rows: list[dict]) -> str:
    order = {n: i for i, n in enumerate(arm_order())}
    rows = sorted(rows, key=lambda r: order.get(r["variant"], len(order)))
    head = ["variant", "precision", "status", "ms/step median", "p10-p90", "speed-up vs source", "img/s", "TFLOP/s",
            "% of measured peak", "first step s", "memory MiB", "rounds x steps"]
    body = []
    for r in rows:
        ok = r.get("status") == "ok"
        body.append([r["variant"], r.get("precision", "-"), r.get("status", "-"),
                     _f(r.get("median_ms"), 3) if ok else "-",
                     f"{r['p10_ms']:.3f}-{r['p90_ms']:.3f}" if ok else "-",
                     f"x{r['speedup_vs_source']:.2f}" if ok and r.get("speedup_vs_source") else "-",
                     _f(r.get("img_per_s"), 0) if ok else "-", _g(r.get("tflops_achieved")) if ok else "-",
                     peak_cell(r) if ok else "-", _f(r.get("first_step_s")),
                     _f(r["mem_bytes"] / 2**20, 0) if r.get("mem_bytes") is not None else "-",
                     f"{r['rounds']} x {r['steps_per_round']}" if ok else "-"])
    return md_table(head, body)


def render(results: dict) -> str:
    m = results["metadata"]
    peaks = results.get("parts", {}).get("peaks", {})
    info = peaks.get("info", {})
    lines = [f"# GPU run: {info.get('device_name') or m['device']}" + (" (dry run)" if m["dry_run"] else ""), "",
             f"Date {m['date']}; {m['elapsed_s']:.0f} s of a {m['budget_s']:.0f} s budget; python {m['python']}, "
             f"numpy {m['numpy']}; {info.get('versions', {})}; GPUs: {', '.join(m['gpus']) or 'none'}.", "",
             f"Command: `{m['command']}`", "",
             "Every number below was measured in this run (benchmarks/gpu_run.py; docs/bench.md says what each "
             "row means). Timing: warm-up apart, interleaved rounds synced only at their ends, median and "
             "p10-p90. % of measured peak: TFLOP/s (common/flops.py) over a GEMM of the same precision measured "
             "in the same process.", "", "## Goals (issue 30)", ""]
    lines.append(_goal_table(results))
    if peaks.get("rows"):
        lines += ["", "## GEMM peaks (torch.mm, random data, same run)", ""]
        lines.append(md_table(["precision", "TFLOP/s best", "TFLOP/s median", "datasheet", "how"], [
            [r.get("precision"), _g(r.get("tflops")), _g(r.get("median_tflops")),
             _g(r.get("datasheet_tflops")), r.get("how") or r.get("status")] for r in peaks["rows"]]))
    for name, part in results.get("parts", {}).items():
        if not name.startswith("dcgan-"):
            continue
        pi = part.get("info", {})
        lines += ["", f"## dcgan, batch {pi.get('batch', name[7:])} ({part.get('status')})", "",
                  f"Widths {pi.get('knobs', '-')}; {_g((pi.get('flops_per_step') or 0) / 1e9)} GFLOP per step "
                  "(common/flops.py). Speed-up vs source: the source's eager fp32 step's median over the row's, "
                  "in the same rounds: every arm but the torch.compile ones shares one set of interleaved rounds; "
                  "each torch.compile arm is timed after them, interleaved with the source and default steps again.",
                  ""]
        lines.append(_dcgan_table(part.get("rows", [])))
    train = results.get("parts", {}).get("train")
    if train:
        lines += ["", f"## `ganparity train` against the harness step ({train.get('status')})", "",
                  f"Batch {train.get('info', {}).get('batch')}, {train.get('info', {}).get('n_data')} disc images, "
                  f"{train.get('info', {}).get('epochs')} epochs; img/s while training: every window of steps read "
                  "together but the first, its images over its wall time.", ""]
        lines.append(md_table(["run", "status", "img/s", "ms/step", "wall s", "command"], [
            [r.get("run"), r.get("status"), _f(r.get("img_per_s"), 0),
             _f(r.get("median_ms"), 3) if r.get("median_ms") else "-", _f(r.get("wall_s"), 1),
             f"`{r['command']}`" if r.get("command") else r.get("note", "-")] for r in train.get("rows", [])]))
    ft = results.get("parts", {}).get("finetune")
    if ft:
        lines += ["", f"## resnet34-finetune ({ft.get('status')})", ""]
        lines.append(md_table(["batch", "status", "ms/step median", "p10-p90", "source ms", "img/s", "TFLOP/s",
                               "% of measured peak"], [
            [r.get("batch"), r.get("status") if r.get("status") == "ok" else f"{r.get('status')}: {r.get('reason')}",
             _f(r.get("median_ms"), 3), f"{r['p10_ms']:.3f}-{r['p90_ms']:.3f}" if "p10_ms" in r else "-",
             _f(r.get("source_ms"), 3), _f(r.get("img_per_s"), 0), _g(r.get("tflops_achieved")), peak_cell(r)]
            for r in ft.get("rows", [])]))
    lines += ["", "## mxnet", "", f"{results['mxnet']['status']}: {results['mxnet']['reason']}"]
    checks = [r | {"part": n} for n in ("selfcheck", "selfcheck-compile") for r in _rows(results, n)]
    if checks:
        lines += ["", "## Self-check (one-step parity of each variant at tiny width)", ""]
        lines.append(md_table(["check", "status", "s", "detail"], [
            [r["name"], r["status"], _f(r.get("seconds"), 1), r.get("detail", "")] for r in checks]))
    lines += ["", "## Not measured in this run", ""]
    lines += [f"- {u}" for u in results.get("unmeasured", [])] or ["- nothing"]
    return "\n".join(lines) + "\n"


def summary(results: dict) -> str:
    """The end of the command's output: the goals and the first dcgan table."""
    lines = [_goal_table(results)]
    for name, part in results.get("parts", {}).items():
        if name.startswith("dcgan-"):
            lines += ["", name, _dcgan_table(part.get("rows", []))]
    return "\n".join(lines)


# -- command line ---------------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The run's options: `ganparity bench gpu-run` and this module's own command line (each part's
    process) share them."""
    p.add_argument("--out", default=os.environ.get("OUT") or f"reports/gpu-run-{time.strftime('%Y%m%d-%H%M')}",
                   help="folder for gpu_run.json, gpu_run.md, gpu_run.log (default $OUT, else reports/gpu-run-TIME)")
    p.add_argument("--budget-s", type=float, default=None, help="the whole run's time (default 450; dry run 900): "
                   "parts and arms it does not reach say 'skipped: time budget'")
    p.add_argument("--device", default=None, choices=("cuda", "cpu"), help="default cuda; cpu with --dry-run")
    p.add_argument("--dry-run", action="store_true", help="tiny widths, batch 2, 2 rounds, on the CPU: every code "
                   "path of the GPU run (CUDA-only arms stop at the device check and say 'needs cuda')")
    p.add_argument("--with-compile", action="store_true", help="dry run: run the torch.compile arms and checks too")
    p.add_argument("--only", default="", help="comma list of parts to run (default: all; see the module's doc)")
    p.add_argument("--variants", default="", help="comma list of torch variants for the dcgan arms (default all)")
    p.add_argument("--batch-sizes", default=None, help="dcgan batch sizes, in run order (default 128,2048,64)")
    p.add_argument("--rounds", type=int, default=None, help="timed rounds per set (default 10; dry run 2)")
    p.add_argument("--min-round-s", type=float, default=None, help="a round lasts at least this (default 0.05)")
    p.add_argument("--train-batch", type=int, default=None, help="the train part's batch (default 128; dry run 4)")
    p.add_argument("--train-steps", type=int, default=None, help="train steps per epoch (default 40; dry run 4)")
    p.add_argument("--train-epochs", type=int, default=2, help="train epochs")
    p.add_argument("--finetune-batch", type=int, default=None, help="default 128; dry run 2")
    g = p.add_argument_group("one part (what the run starts in each fresh process)")
    g.add_argument("--part", choices=tuple(PARTS), help=argparse.SUPPRESS)
    g.add_argument("--part-out", help=argparse.SUPPRESS)
    g.add_argument("--part-budget-s", type=float, default=60.0, help=argparse.SUPPRESS)
    g.add_argument("--batch", type=int, default=2, help=argparse.SUPPRESS)
    g.add_argument("--knobs", default="{}", help=argparse.SUPPRESS)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__.split("\n\n")[0])
    add_arguments(p)
    return p


def resolve(a: argparse.Namespace) -> argparse.Namespace:
    """The defaults that depend on --dry-run; an unknown variant stops the run before anything starts."""
    dry = a.dry_run
    a.device = a.device or ("cpu" if dry else "cuda")
    a.budget_s = a.budget_s if a.budget_s is not None else (900.0 if dry else 450.0)  # dry: a busy CPU is slow
    a.rounds = a.rounds or (2 if dry else 10)
    a.min_round_s = a.min_round_s if a.min_round_s is not None else (0.0 if dry else 0.05)
    a.train_batch = a.train_batch or (4 if dry else 128)
    a.train_steps = a.train_steps or (4 if dry else 40)
    a.finetune_batch = a.finetune_batch or (2 if dry else 128)
    a.batch_sizes = [int(b) for b in (a.batch_sizes or ("2" if dry else "128,2048,64")).split(",")]
    if a.variants:
        arm_order(a.variants.split(","))
    return a


def resolve_args(argv: list[str] | None = None) -> argparse.Namespace:
    return resolve(parser().parse_args(argv))


def run(a: argparse.Namespace) -> int:
    """The whole run (or, with --part, one part of it) from parsed and resolved arguments."""
    return run_part(a) if a.part else run_all(a)


def main(argv: list[str] | None = None) -> int:
    """Each part's process (`--part`), and for one release the old door of the whole run."""
    try:
        a = resolve_args(argv)
        if not a.part:
            print(f"ganparity: note: python -m {MODULE} is deprecated; use ganparity bench gpu-run", file=sys.stderr)
        return run(a)
    except GanparityError as e:
        print(f"gpu_run: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
