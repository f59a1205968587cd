"""Data-parallel scaling, a benchmark (never a timed test): step cost and img/s of `ganparity train
--nproc N` for N = 1, 2, 4 on this machine, for each backend, from the runs' own metrics.jsonl.

    ganparity bench scaling [--backends torch,mxnet] [--nprocs 1,2,4]
        [--spec dcgan --set ngf=16 ...] [--batch-size 64] [--steps 12] [--device cuda] [--out benchmarks/results]

Each configuration is a real run: N worker processes through the framework's launcher, the global
batch B split B/N per worker, OMP_NUM_THREADS = max(1, cores // N) per process (recorded). A step's
time is rank 0's wall time of the whole D+G step (it includes waiting for the others), median
after `--warmup` steps. The communication share of a step is estimated as
    1 - t(one process, batch B/N, the same threads) / t(N workers, batch B)
which is what a worker spends beyond computing its own piece: the all-reduce or push/pull, the
wait for the slowest worker, and, when N processes outnumber the cores, the contention for them.
Nothing here compares with a bound; the numbers go to results/scaling-*.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..common.gan.distributed import package_root

ROOT = Path(__file__).resolve().parents[1]


def _run(backend: str, nproc: int, batch: int, threads: int, args: argparse.Namespace, out: Path) -> dict:
    n_data = batch * (args.steps + args.warmup)
    cmd = [sys.executable, "-m", "ganparity", "train", "--spec", args.spec, "--backend", backend,
           "--batch-size", str(batch), "--n-data", str(n_data), "--epochs", "1", "--out", str(out),
           "--eval-samples", "16", "--no-gif", "--progress", "lines", "--sample-every", "1000", "--device", args.device]
    for kv in args.set:
        cmd += ["--set", kv]
    if nproc > 1:
        cmd += ["--nproc", str(nproc)]
    env = dict(os.environ, PYTHONPATH=str(package_root()), OMP_NUM_THREADS=str(threads))
    t0 = time.perf_counter()
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    if res.returncode != 0:
        raise SystemExit(f"scaling: {backend} --nproc {nproc} failed:\n{res.stderr[-3000:]}")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    times = [batch / r["img_per_s"] for r in rows[args.warmup:]]
    step = statistics.median(times)
    return {"backend": backend, "nproc": nproc, "global_batch": batch, "per_worker_batch": batch // nproc,
            "threads_per_process": threads, "step_ms": 1e3 * step,
            "step_ms_spread": [1e3 * min(times), 1e3 * max(times)], "img_per_s": batch / step,
            "steps_timed": len(times), "wall_s": time.perf_counter() - t0}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backends", default="torch,mxnet", help="comma list of backends")
    p.add_argument("--nprocs", default="1,2,4", help="comma list of worker counts")
    p.add_argument("--spec", default="dcgan", help="a GAN spec")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a width knob (default for dcgan: nz=32 ngf=16 ndf=16 image_size=32)")
    p.add_argument("--batch-size", type=int, default=64, help="the global batch")
    p.add_argument("--steps", type=int, default=10, help="timed steps per run")
    p.add_argument("--warmup", type=int, default=2, help="warm-up steps per run")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="cpu or cuda")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"),
                   help="folder for scaling-DEVICE-DATE.json and .md")


def main(argv: list[str] | None = None) -> int:
    """For one release, the old door: `python -m ganparity.benchmarks.scaling`."""
    print("ganparity: note: python -m ganparity.benchmarks.scaling is deprecated; use ganparity bench scaling",
          file=sys.stderr)
    p = argparse.ArgumentParser(prog="python -m ganparity.benchmarks.scaling", description=__doc__.split("\n\n")[0])
    add_arguments(p)
    return run(p.parse_args(argv))


def run(a: argparse.Namespace) -> int:
    """Every backend x worker count of `a` (add_arguments), written to --out."""
    if not a.set and a.spec == "dcgan":
        a.set = ["nz=32", "ngf=16", "ndf=16", "image_size=32"]
    cores = os.cpu_count() or 1
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for backend in a.backends.split(","):
            configs = [(n, max(1, cores // n)) for n in map(int, a.nprocs.split(","))]
            if cores > 1 and (1, cores) in configs:  # one process with one thread too: on the 2-core CPU
                configs.insert(configs.index((1, cores)) + 1, (1, 1))  # here 2 threads ran slower than 1
            for nproc, threads in configs:
                row = _run(backend, nproc, a.batch_size, threads, a, Path(tmp) / f"{backend}-{nproc}-{threads}")
                if nproc > 1:  # the same per-worker piece on one process alone
                    alone = _run(backend, 1, a.batch_size // nproc, threads, a, Path(tmp) / f"{backend}-{nproc}-alone")
                    row["alone_step_ms"] = alone["step_ms"]
                    row["comm_share"] = max(0.0, 1 - alone["step_ms"] / row["step_ms"])
                rows.append(row)
                print(f"{backend} nproc {nproc} x {threads} threads: {row['step_ms']:.1f} ms/step, "
                      f"{row['img_per_s']:.0f} img/s"
                      + (f", communication share {row['comm_share']:.0%}" if "comm_share" in row else ""),
                      file=sys.stderr, flush=True)
    env = {"machine": platform.machine(), "cpu_count": cores, "python": platform.python_version(),
           "platform": platform.platform(), "spec": a.spec, "knobs": a.set, "global_batch": a.batch_size,
           "device": a.device,
           "note": f"{cores} cores; more processes than cores oversubscribe the CPU"}
    try:
        import importlib.metadata as md

        env["versions"] = {k: md.version(k) for k in ("torch", "mxnet", "numpy") if _has(md, k)}
    except Exception:  # noqa: BLE001 - versions are a courtesy
        pass
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"scaling-{a.device}-{time.strftime('%Y-%m-%d')}"
    data = {"environment": env, "rows": rows}
    lines = [f"# Data-parallel scaling on CPU ({env['note']})", "",
             f"{a.spec} {' '.join(a.set)}, global batch {a.batch_size}, median of {a.steps} steps after "
             f"{a.warmup} warm-up; {env.get('versions', {})}", "", table(data), "",
             "Communication share = 1 - (one process alone on the per-worker batch, same threads) / "
             "(N workers): all-reduce or kvstore push/pull, waiting for the slowest worker, and CPU "
             "contention where processes outnumber cores. Not measured: GPUs, several machines."]
    stem.with_suffix(".json").write_text(json.dumps(data, indent=1) + "\n")
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {stem}.json and .md", file=sys.stderr)
    return 0


def table(data: dict) -> str:
    """One line per backend x worker count of a scaling results file (its JSON): the step time and
    its spread, img/s, the same per-worker piece alone, and the communication share."""
    lines = ["| backend | processes | threads/process | batch/worker | step ms (min-max) | img/s | alone ms "
             "| communication share |",
             "|---|---|---|---|---|---|---|---|"]
    for r in data["rows"]:
        alone = (f"{r['alone_step_ms']:.1f} | {r['comm_share']:.0%}" if "comm_share" in r else "- | -")
        lines.append(f"| {r['backend']} | {r['nproc']} | {r['threads_per_process']} | {r['per_worker_batch']} | "
                     f"{r['step_ms']:.1f} ({r['step_ms_spread'][0]:.1f}-{r['step_ms_spread'][1]:.1f}) | "
                     f"{r['img_per_s']:.0f} | {alone} |")
    return "\n".join(lines)


def _has(md, name: str) -> bool:
    try:
        md.version(name)
        return True
    except md.PackageNotFoundError:
        return False


if __name__ == "__main__":
    sys.exit(main())
