"""The report's data-parallel parity: real `ganparity train --nproc 2` runs through each framework's
own launcher (torchrun with gloo; mxnet's launch.py with the dist_sync kvstore), one thread per
process, against one process with the whole batch and across the frameworks, compared by the runs'
last checkpoints (docs/distributed.md)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ..errors import GanparityError
from ..gan.distributed import package_root
from ..verdicts import AGREE, DIFFER

GAUSS = ("--spec", "gan-gaussian", "--n-data", "64", "--epochs", "2")  # batch 8: 16 global steps
DCGAN = ("--spec", "dcgan", "--set", "nz=8", "--set", "ngf=4", "--set", "ndf=4", "--set", "image_size=16",
         "--n-data", "32", "--batch-size", "16", "--epochs", "1", "--eval-samples", "16", "--no-gif")
# Adam's first steps divide by sqrt(v) + eps: where a gradient is a cancellation near zero (the
# gan-gaussian D biases), fp32 summation order moves a weight by up to ~1e-4 of lr 0.05.
PARITY_ATOL = 5e-4
# (what, run a, run b, bound on the weights or None: a measured difference); a run is
# (backend, workers, arguments).
PARITY_CHECKS = (
    ("torch DDP: 2 workers x batch 4 vs 1 process x batch 8; gan-gaussian, 16 steps",
     ("torch", 1, GAUSS), ("torch", 2, GAUSS), PARITY_ATOL),
    ("mxnet dist_sync: 2 workers x batch 4 vs 1 process x batch 8; gan-gaussian, 16 steps",
     ("mxnet", 1, GAUSS), ("mxnet", 2, GAUSS), PARITY_ATOL),
    ("torch DDP 2 workers vs mxnet dist_sync 2 workers; gan-gaussian, same numpy weights and data",
     ("torch", 2, GAUSS), ("mxnet", 2, GAUSS), PARITY_ATOL),
    ("torch, SyncBatchNorm: 2 x 8 vs 1 x 16; dcgan nz 8, ngf/ndf 4, 16 px, 2 steps",
     ("torch", 1, DCGAN), ("torch", 2, (*DCGAN, "--sync-bn")), 1e-6),
    ("torch, per-rank BatchNorm: 2 x 8 vs 1 x 16; same dcgan", ("torch", 1, DCGAN), ("torch", 2, DCGAN), None),
    ("mxnet, per-rank BatchNorm (MXNet 1.9 has no cross-process SyncBatchNorm): 2 x 8 vs 1 x 16; same dcgan",
     ("mxnet", 1, DCGAN), ("mxnet", 2, DCGAN), None),
)
MEASURED = "measured"  # the verdict column of a row with no bound: a real difference, measured


def _train_run(run: tuple, out: Path) -> None:
    """One `ganparity train` command (through the launcher for 2+ workers), 1 thread per process."""
    backend, workers, argv = run
    cmd = [sys.executable, "-m", "ganparity", "train", *argv, "--backend", backend, "--out", str(out),
           "--progress", "lines", *(["--nproc", str(workers)] if workers > 1 else [])]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(package_root()), *filter(None, [env.get("PYTHONPATH")])])
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        last = (res.stderr.strip().splitlines() or [f"exit code {res.returncode}"])[-1]
        raise GanparityError(f"{' '.join(cmd[3:])}: {last}")


def parity_checks(backends: list[str], work: Path, progress=lambda msg: None) -> list[dict]:
    """The PARITY_CHECKS whose backends are all installed: real runs under `work`, compared by
    their last checkpoints."""
    from ..gan.run import checkpoint_differences

    made: dict[tuple, Path] = {}
    rows = []
    for what, a, b, bound in PARITY_CHECKS:
        if not {a[0], b[0]} <= set(backends):
            continue
        progress(f"data parallel: {what} ...")
        for run in (a, b):
            if run not in made:
                made[run] = work / f"{run[0]}-{run[1]}-{len(made)}"
                _train_run(run, made[run])
        w, adam = checkpoint_differences(made[a], made[b])
        rows.append({"what": what, "weights": w, "adam": adam, "bound": bound,
                     "ok": True if bound is None else w < bound})
    return rows


def parity_table(rows: list[dict]) -> str:
    """One line per comparison: the differences, the bound, agree / differ (or 'measured': no bound)."""
    lines = ["| comparison | max abs weight difference | max abs Adam state difference | bound | verdict |",
             "|---|---|---|---|---|"]
    for r in rows:
        bound = "none" if r["bound"] is None else f"{r['bound']:g}"
        verdict = MEASURED if r["bound"] is None else (AGREE if r["ok"] else DIFFER)
        lines.append(f"| {r['what']} | {r['weights']:.1e} | {r['adam']:.1e} | {bound} | {verdict} |")
    return "\n".join(lines)
