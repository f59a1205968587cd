"""`ganparity report`, the main job: every spec x backend, as markdown, JSON and plots in one
folder; and `ganparity parity`, the numerical checks of some specs, with the same tables."""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from .. import parity
from ..backend import available, get_backend
from ..differences import SEMANTIC_KEYS
from ..errors import GanparityError, choose
from ..files import atomic_write, check_own_files, json_with, text_starting, write_json, write_text, writing
from ..spec.registry import GAN_SPECS, REGISTRY, get_spec, parse_knobs
from ..table import md_table
from .args import backend_list, output_dir, output_file, positive_int, spec_args

# Parity runs small widths so the report finishes in minutes on 2 CPU cores; the architecture
# (layer kinds, order, strides, recipe) is the spec's own. gan-gaussian is tiny and runs as is.
PARITY_KNOBS = {"gan-gaussian": {}, "dcgan": dict(nz=32, ngf=16, ndf=16, image_size=32),
                "dcgan-d2l": dict(nz=32, ngf=16, ndf=16, image_size=32),
                "dcgan-gluon": dict(nz=32, ngf=16, ndf=16, image_size=32)}
PARITY_BATCH = {"gan-gaussian": 8}
DEFAULT_BATCH = 32


DATA_PARALLEL = True  # the data-parallel section: real 2-worker runs (~30 s)


def _progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_parity(specs: list[str], backends: list[str], steps: int, knobs: dict | None = None,
               batch: int | None = None, fp64: bool = True, native: bool = False) -> list[parity.Check]:
    """Each spec at the report's widths, overridden by knobs (each spec takes the knobs it has).
    native: the candidate computes every semantic difference its own framework's way (a naive port)."""
    checks = []
    naive = frozenset(SEMANTIC_KEYS) if native else frozenset()
    for name in specs:
        own = REGISTRY[choose("GAN spec", name, GAN_SPECS)].knobs()
        spec = get_spec(name, kind="gan", **(PARITY_KNOBS.get(name, {}) | {k: v for k, v in (knobs or {}).items()
                                                                              if k in own}))
        b = batch if batch is not None else PARITY_BATCH.get(name, DEFAULT_BATCH)
        _progress(f"parity {name} {spec.params} batch {b} ...")
        checks += parity.check_all(spec, b, steps, reference=backends[0], candidate=backends[1], with_fp64=fp64,
                                   naive=naive)
    return checks


def parity_section(checks: list[parity.Check]) -> str:
    rows = []
    for c in checks:
        worst = max(c.tensors, key=lambda t: t.max_rel, default=None)
        fp64 = max((t.fp64_rel for t in c.tensors), default=float("nan"))
        nref = max((t.noise_ref for t in c.tensors), default=float("nan"))
        ncand = max((t.noise_cand for t in c.tensors), default=float("nan"))
        if c.check.startswith("lockstep"):
            e = c.extra
            nref, ncand = (max(e.get(k, [float("nan")])) for k in
                           ("reference_fp32_noise_per_step", "candidate_fp32_noise_per_step"))
            beyond = e.get("beyond_floor")
            where = (f"step {beyond['step']} ({beyond['dtype']}), {beyond['tensor']}" if beyond
                     else f"step {e['first_step_over']}" if e["first_step_over"] else "never")
            floor = max(e.get("fp32_floor_per_step", [float("nan")]))
            rows.append([c.spec, c.semantics, c.check, e.get("verdict", c.ok), e["max_loss_rel"], nref, ncand,
                         e.get("fp64_max_loss_rel", float("nan")), floor, where, f"params {e['max_param_rel']:.1e}"])
        else:
            rows.append([c.spec, c.semantics, c.check, c.ok, c.max_rel, nref, ncand, fp64, "-",
                         c.first_divergent or "-", worst.name if worst else "-"])
    names = (checks[0].reference, checks[0].candidate) if checks else ("reference", "candidate")
    head = ["spec", "semantics", "check", "verdict", "max rel err (fp32)", f"{names[0]} own fp32 error",
            f"{names[1]} own fp32 error", "max rel err (fp64)", "sensitivity floor (fp32, max)",
            "first over tolerance", "worst tensor"]
    return md_table(head, rows)


def shape_section(results: list[parity.ShapeCheck]) -> str:
    rows = [[r.spec, r.backend, r.ok, r.params_spec["G"], r.params_backend["G"], r.params_spec["D"],
             r.params_backend["D"], f"{r.build_seconds * 1000:.0f} ms", "; ".join(r.mismatches) or "-"]
            for r in results]
    return md_table(["spec", "backend", "shape parity", "G params (spec)", "G params (built)",
                     "D params (spec)", "D params (built)", "build time", "mismatches"], rows)


def plot_lockstep(checks: list[parity.Check], path: Path) -> Path | None:
    locks = [c for c in checks if c.check.startswith("lockstep")]
    if not locks:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(locks), figsize=(4.2 * len(locks), 3.4), squeeze=False)
    for ax, c in zip(axes[0], locks):
        e = c.extra
        steps = range(1, len(e["loss_rel_per_step"]) + 1)
        if "fp32_floor_per_step" in e:  # the band: NOISE_FACTOR x the reference's own sensitivity floor
            band = [max(parity.NOISE_FACTOR * v, 1e-17) for v in e["fp32_floor_per_step"]]
            ax.fill_between(steps, 1e-17, band, color="tab:orange", alpha=0.15, step="mid",
                            label=f"{parity.NOISE_FACTOR:g}x {c.reference}'s sensitivity floor (fp32)")
        ax.semilogy(steps, e["loss_rel_per_step"], "o-", ms=3, label=f"{c.candidate} vs {c.reference}, fp32")
        if "fp64_loss_rel_per_step" in e:
            ax.semilogy(steps, e["reference_fp32_noise_per_step"], "s--", ms=3, label=f"{c.reference} fp32 vs fp64")
            ax.semilogy(steps, e["candidate_fp32_noise_per_step"], "v--", ms=3, label=f"{c.candidate} fp32 vs fp64")
            ax.semilogy(steps, [max(v, 1e-17) for v in e["fp64_loss_rel_per_step"]], "^-", ms=3,
                        label=f"{c.candidate} vs {c.reference}, fp64")
        ax.axhline(parity.LOCKSTEP_RTOL, color="grey", lw=0.8, ls=":")
        ax.set_title(f"{c.spec}: {e.get('verdict', '')}", fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylabel("relative loss difference")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)
    return path


def environment(backends: list[str]) -> dict:
    env = {"python": platform.python_version(), "platform": platform.platform(),
           "processor": platform.processor() or platform.machine(), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    import numpy

    env["numpy"] = numpy.__version__
    for b in backends:
        env |= get_backend(b).versions()
    return env


def main_report(out: Path, backends: list[str], steps: int = 20) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    env = environment(backends)
    _progress(f"ganparity report -> {out}/ (backends: {', '.join(backends)})")
    shape_results = []
    for name in GAN_SPECS:
        spec = get_spec(name)
        for b in backends:
            _progress(f"shapes {name} {b} ...")
            shape_results.append(parity.check_shapes(b, spec))
    checks = run_parity(list(GAN_SPECS), backends, steps) if len(backends) >= 2 else []
    plot = plot_lockstep(checks, out / "lockstep.png")

    md = ["# ganparity report", "",
          "Environment: " + ", ".join(f"{k} {v}" for k, v in env.items()), "",
          "## Shape parity (full-size specs, CPU)", "",
          "Every layer's output shape and every tensor's shape of the natively built G and D equal "
          "what common/shapes.py infers from the spec; parameter counts are counted the framework's way.", "",
          shape_section(shape_results), ""]
    if checks:
        md += ["## Numerical parity (fp32, CPU)", "",
               f"{backends[1]} against {backends[0]}, same numpy weights and inputs. Widths: "
               + "; ".join(f"{k} {v or 'as specified'}" for k, v in PARITY_KNOBS.items())
               + f"; batch {DEFAULT_BATCH} (gan-gaussian 8). Tolerances: relative {parity.RTOL:g} "
               f"(forward, gradients, one step), {parity.LOCKSTEP_RTOL:g} on the loss in the "
               f"{steps}-step lockstep, or within {parity.NOISE_FACTOR:g}x the larger of the two frameworks' "
               "own fp32 error (each one's fp32 result against its fp64 result). The fp64 column repeats "
               "each check with both frameworks in float64: it shows whether the ports compute the same "
               "thing once rounding is gone. Each spec runs with its own semantics (its source's "
               "framework's numbers, emulated by the other backend; `ganparity porting` says how).", "",
               "The lockstep has three verdicts: **agree** (within the tolerance above); **within the "
               "sensitivity floor** (beyond it, but at every step, in fp32 and in fp64, within "
               f"{parity.NOISE_FACTOR:g}x of how far the reference drifts from itself when its scalars are "
               "rounded to float32 or its initial weights are jittered by its own one-step error: the run "
               "is sensitive, the port computes the same thing); **differ** (beyond that floor: the first "
               "step and tensor are named, and the check fails).", "",
               parity_section(checks), ""]
        if plot:
            md += [f"![lockstep]({plot.name})", ""]
    dp_rows = []
    if DATA_PARALLEL:
        from . import distributed

        with tempfile.TemporaryDirectory(prefix="ganparity-dp-") as work:
            dp_rows = distributed.parity_checks(backends, Path(work), _progress)
        md += ["## Data-parallel parity (2 CPU workers)", "",
               "`ganparity train --nproc 2` through each framework's own launcher (torchrun with gloo; "
               "mxnet's launch.py with the dist_sync kvstore), one thread per process, against one process "
               "with the whole batch, and across the frameworks; compared by the runs' last checkpoints. "
               "gan-gaussian agrees up to fp32 reduction order (Adam's first steps amplify it where a bias "
               "gradient is a cancellation near zero); synchronised BatchNorm gives one process's numbers; "
               "per-rank BatchNorm normalises each half-batch by its own moments, a real, measured "
               "difference (docs/distributed.md).", "",
               distributed.parity_section(dp_rows), ""]
    from ...benchmarks.results import report_section  # the step-cost section lives with the benchmarks

    _progress("step cost (CPU) ...")
    md += [report_section(backends, out), ""]
    md.append(f"Report took {time.perf_counter() - t0:.0f} s.")
    write_text(out / "report.md", "\n".join(md) + "\n")
    results = {"environment": env, "shapes": [asdict(r) for r in shape_results],
               "parity": [c.to_dict() for c in checks], "data_parallel": dp_rows}
    write_json(out / "results.json", results)
    print("\n".join(md))
    print(f"\nwrote {out / 'report.md'}, {out / 'results.json'}" + (f", {plot}" if plot else ""))
    return results


def cmd_parity(a) -> None:
    backends = backend_list(a.backends)
    if len(backends) != 2:
        raise GanparityError(f"--backends takes two names (reference,candidate), got {a.backends!r}")
    specs = [choose("GAN spec", a.spec, GAN_SPECS)] if a.spec else list(GAN_SPECS)
    knobs = parse_knobs(a.set)
    known = {k for name in specs for k in REGISTRY[name].knobs()}
    for k in knobs:
        choose(f"knob for {', '.join(specs)}", k, sorted(known))
    checks = run_parity(specs, backends, a.steps, knobs, a.batch, fp64=not a.no_fp64, native=a.native)
    print(parity_section(checks))
    if a.json:
        with writing(a.json, what="--json") as out:
            write_json(out, [c.to_dict() for c in checks])
        print(f"wrote {a.json}")
    if not all(c.ok for c in checks):
        raise SystemExit(1)


def report_files(out: Path) -> dict:
    """The files `report` writes into --out, each with the test that recognises an earlier report's."""
    ours = json_with("environment", "shapes", "parity")
    return {"report.md": text_starting("# ganparity report"), "results.json": ours,
            "lockstep.png": lambda _png: ours(out / "results.json"), "step_cost.json": json_with()}


def cmd_report(a) -> None:
    backends = backend_list(a.backends) if a.backends else available()
    with writing(a.out, kind="dir") as out:  # checked and locked before the minutes of work
        check_own_files(out, report_files(out), label=f"--out {a.out!r}", command="ganparity report")
        main_report(out, backends, steps=a.steps)


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("parity", help="numerical parity: forward, gradients, one step, lockstep")
    spec_args(s, required=False)
    s.add_argument("--backends", default="torch,mxnet", help="reference,candidate (default torch,mxnet)")
    s.add_argument("--steps", type=positive_int, default=20, help="lockstep steps (default 20)")
    s.add_argument("--batch", type=positive_int, default=None, help="batch size (default: 32, gan-gaussian its own 8)")
    s.add_argument("--no-fp64", action="store_true", help="skip the float64 control runs")
    s.add_argument("--native", action="store_true",
                   help="the candidate computes every semantic difference (adam-eps, adam-betas, bn-stats, bce-clamp, "
                        "sgd-momentum) its own framework's way, as a native port would: shows what porting "
                        "natively rather than faithfully changes")
    s.add_argument("--json", metavar="FILE", type=output_file, help="also write the full results as JSON")
    s.set_defaults(fn=cmd_parity)

    s = sub.add_parser("report", help="the main job: every spec x backend, written under reports/")
    s.add_argument("--out", default="reports", type=output_dir, help="output folder (default reports/)")
    s.add_argument("--backends", default=None, help="comma list (default: every installed backend)")
    s.add_argument("--steps", type=positive_int, default=20, help="lockstep steps (default 20)")
    s.set_defaults(fn=cmd_report)
