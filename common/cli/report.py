"""`ganparity report` (the main job: every spec x backend, as markdown, JSON and plots in one folder)
and `ganparity parity` (the numerical checks of some specs): arguments only; the work is the report
application's (common/report/)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..backend import available
from ..errors import GanparityError, choose
from ..files import check_own_files, json_with, text_starting, write_json, writing
from ..report import parity as P
from ..spec.registry import GAN_SPECS, REGISTRY, parse_knobs
from .args import Deprecated, backend_list, choice, output_dir, output_file, positive_int, spec_args


def _progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def cmd_parity(a) -> None:
    backends = backend_list(a.backends)
    if len(backends) != 2:
        raise GanparityError(f"--backends takes two names (reference,candidate), got {a.backends!r}")
    specs = [choose("GAN spec", a.spec, GAN_SPECS)] if a.spec else list(GAN_SPECS)
    knobs = parse_knobs(a.set)
    known = {k for name in specs for k in REGISTRY[name].knobs()}
    for k in knobs:
        choose(f"knob for {', '.join(specs)}", k, sorted(known))
    checks = P.run_parity(specs, backends, a.steps, knobs, a.batch, fp64=not a.no_fp64, semantics=a.semantics,
                          progress=_progress)
    print(P.parity_table([c.to_dict() for c in checks]))
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


def main_report(out: Path, backends: list[str], steps: int = 20) -> dict:
    from ...benchmarks.results import report_section  # the step-cost section lives with the benchmarks
    from ..report.write import write_report

    return write_report(out, backends, steps, step_cost=report_section, progress=_progress)


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
    s.add_argument("--semantics", default="source", type=choice("--semantics", P.SEMANTICS),
                   help="whose numbers each backend's step follows: 'source' the spec's own (its source's "
                        "framework, emulated by the other backend; default); 'own' each backend its own "
                        "framework's (the candidate computes adam-eps, adam-betas, bn-stats, bce-clamp and "
                        "sgd-momentum as a native port would: what porting natively rather than faithfully "
                        "changes); 'torch' or 'mxnet' both backends that framework's")
    s.add_argument("--native", dest="semantics", action=Deprecated, new="--semantics own", value="own",
                   help="deprecated: --semantics own")
    s.add_argument("--json", metavar="FILE", type=output_file, help="also write the full results as JSON")
    s.set_defaults(fn=cmd_parity)

    s = sub.add_parser("report", help="the main job: every spec x backend, written under reports/")
    s.add_argument("--out", default="reports", type=output_dir, help="output folder (default reports/)")
    s.add_argument("--backends", default=None, help="comma list (default: every installed backend)")
    s.add_argument("--steps", type=positive_int, default=20, help="lockstep steps (default 20)")
    s.set_defaults(fn=cmd_report)
