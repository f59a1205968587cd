"""The whole report, in one folder: report.md, results.json (every number of it, which the docs'
tables are regenerated from) and lockstep.png."""

from __future__ import annotations

import platform
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from .. import parity
from ..backend import get_backend
from ..files import write_json, write_text
from ..spec.registry import GAN_SPECS, get_spec
from . import data_parallel
from .parity import DEFAULT_BATCH, parity_table, plot_lockstep, run_parity, shape_table, widths

DATA_PARALLEL = True  # the data-parallel section: real 2-worker runs (~30 s)


def environment(backends: list[str]) -> dict:
    env = {"python": platform.python_version(), "platform": platform.platform(),
           "processor": platform.processor() or platform.machine(), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    import numpy

    env["numpy"] = numpy.__version__
    for b in backends:
        env |= get_backend(b).versions()
    return env


def parity_intro(backends: list[str], steps: int) -> str:
    return (f"{backends[1]} against {backends[0]}, same numpy weights and inputs. Widths: {widths()}; batch "
            f"{DEFAULT_BATCH} (gan-gaussian 8). Tolerances: relative {parity.RTOL:g} (forward, gradients, one step), "
            f"{parity.LOCKSTEP_RTOL:g} on the loss in the {steps}-step lockstep, or within "
            f"{parity.NOISE_FACTOR:g}x the larger of the two frameworks' own fp32 error (each one's fp32 result "
            "against its fp64 result). The fp64 column repeats each check with both frameworks in float64: it "
            "shows whether the ports compute the same thing once rounding is gone. Each spec runs with its own "
            "semantics (its source's framework's numbers, emulated by the other backend; `ganparity differences` "
            "says how).\n\n"
            "The lockstep has three verdicts: **agree** (within the tolerance above); **cannot tell here** "
            "(beyond it, but at every step, in fp32 and in fp64, within "
            f"{parity.NOISE_FACTOR:g}x of how far the reference drifts from itself when its scalars are rounded "
            "to float32 or its initial weights are jittered by its own one-step error: the run is too sensitive "
            "for the lockstep to see a port difference); **differ** (beyond that floor: the first step and "
            "tensor are named, and the check fails).")


DATA_PARALLEL_INTRO = (
    "`ganparity train --nproc 2` through each framework's own launcher (torchrun with gloo; mxnet's launch.py "
    "with the dist_sync kvstore), one thread per process, against one process with the whole batch, and across "
    "the frameworks; compared by the runs' last checkpoints. gan-gaussian agrees up to fp32 reduction order "
    "(Adam's first steps amplify it where a bias gradient is a cancellation near zero); synchronised BatchNorm "
    "gives one process's numbers; per-rank BatchNorm normalises each half-batch by its own moments, a real, "
    "measured difference (docs/distributed.md).")


def write_report(out: Path, backends: list[str], steps: int = 20,
                 step_cost: Callable[[list[str], Path], str] | None = None,
                 progress: Callable[[str], None] = lambda msg: None) -> dict:
    """Every GAN spec x backend: shapes, numerical parity (two backends), data-parallel parity and,
    given step_cost(backends, out) -> markdown (the command passes the benchmarks' section), a
    quick step cost. Writes report.md, results.json and lockstep.png into out; returns the results."""
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    env = environment(backends)
    progress(f"ganparity report -> {out}/ (backends: {', '.join(backends)})")
    shape_results = []
    for name in GAN_SPECS:
        spec = get_spec(name)
        for b in backends:
            progress(f"shapes {name} {b} ...")
            shape_results.append(parity.check_shapes(b, spec))
    checks = run_parity(list(GAN_SPECS), backends, steps, progress=progress) if len(backends) >= 2 else []
    results = {"environment": env, "shapes": [asdict(r) for r in shape_results],
               "parity": [c.to_dict() for c in checks], "data_parallel": []}
    plot = plot_lockstep(results["parity"], out / "lockstep.png")

    md = ["# ganparity report", "",
          "Environment: " + ", ".join(f"{k} {v}" for k, v in env.items()), "",
          "## Shape parity (full-size specs, CPU)", "",
          "Every layer's output shape and every tensor's shape of the natively built G and D equal "
          "what common/shapes.py infers from the spec; parameter counts are counted the framework's way.", "",
          shape_table(results["shapes"]), ""]
    if checks:
        md += ["## Numerical parity (fp32, CPU)", "", parity_intro(backends, steps), "",
               parity_table(results["parity"]), ""]
        if plot:
            md += [f"![lockstep]({plot.name})", ""]
    if DATA_PARALLEL:
        with tempfile.TemporaryDirectory(prefix="ganparity-dp-") as work:
            results["data_parallel"] = data_parallel.parity_checks(backends, Path(work), progress)
        md += ["## Data-parallel parity (2 CPU workers)", "", DATA_PARALLEL_INTRO, "",
               data_parallel.parity_table(results["data_parallel"]), ""]
    if step_cost is not None:
        progress("step cost (CPU) ...")
        md += [step_cost(backends, out), ""]
    md.append(f"Report took {time.perf_counter() - t0:.0f} s.")
    write_text(out / "report.md", "\n".join(md) + "\n")
    write_json(out / "results.json", results)
    print("\n".join(md))
    print(f"\nwrote {out / 'report.md'}, {out / 'results.json'}" + (f", {plot}" if plot else ""))
    return results
