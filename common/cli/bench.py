"""`ganparity bench SUB-COMMAND`: the one door to the benchmarks (benchmarks/).

    step       what one training step costs per backend x variant x batch (benchmarks/harness.py)
    scaling    data-parallel scaling of `train --nproc N` (benchmarks/scaling.py)
    zoo        `ganparity port` over the Gluon model zoo, with each proof (benchmarks/port_zoo.py)
    port-cost  what one port costs: time and peak memory of port + proof (benchmarks/port_cost.py)
    port-speed the written model.py against torchvision's twin, per step (benchmarks/port_speed.py)
    gpu-check  every variant's parity and one training epoch on the device (benchmarks/selfcheck.py)
    gpu-run    the one prepared GPU run, inside a time budget (benchmarks/gpu_run.py)

Arguments only: each sub-command's options are declared by its benchmark module (add_arguments)
and run by it (run)."""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

from ..backend import BACKENDS, available, get_backend
from ..errors import GanparityError, choose
from ..files import check_own_files, json_with, text_starting, writing
from ..spec.registry import REGISTRY, parse_knobs
from .args import DEVICES, choice, nonnegative_int, output_dir, positive_int, positive_int_list


def _progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def cuda_unusable(backends: list[str]) -> str | None:
    """Why nothing can run on CUDA here, in one line (the driver fails, no GPU, no backend with
    CUDA), or None when a backend can. nvidia-smi first (no framework); else each backend's own
    resolve('cuda'), which names the reason (torch: the driver's own words)."""
    from ..gpu import driver_problem

    problem = driver_problem()
    if problem:
        return problem
    reasons = []
    for b in backends:
        try:
            get_backend(b).resolve("cuda")
            return None
        except GanparityError as e:
            reasons.append(f"{b}: {e}")
    return "; ".join(reasons) or "no backend is installed"


def stem_name(text: str) -> str:
    """--stem: a file name without a folder (bench writes STEM.json, STEM.md, STEM.png into --out)."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", text) or text.endswith((".json", ".md", ".png")):
        raise argparse.ArgumentTypeError(f"expected a file name stem (letters, digits, '.', '_', '-', no folder and "
                                         f"no suffix), got {text!r}")
    return text


def own_results(out: Path, stem: str) -> dict:
    """The files bench writes into --out, each with the test that recognises an earlier bench's."""
    ours = json_with("metadata", "rows")
    return {f"{stem}.json": ours, f"{stem}.md": text_starting("# Step cost"),
            f"{stem}.png": lambda _png: ours(out / f"{stem}.json")}


def cmd_bench(a) -> None:
    from ...benchmarks.environment import set_threads
    from ...benchmarks.harness import run_matrix
    from ...benchmarks.results import markdown, write_results
    from ...benchmarks.variants import parse_list

    # before any framework import: both start with the same pool
    set_threads(a.threads if a.threads is not None else os.cpu_count() or 1)
    backends = parse_list(a.backends) or available()
    for b in backends:
        choose("backend", b, BACKENDS)
    specs = parse_list(a.spec)
    stem, label = a.stem, f"--out {a.out!r}"
    if a.device == "cuda":  # refused before anything runs or is written
        why = cuda_unusable(backends)
        if why:
            raise GanparityError(f"bench --device cuda: no CUDA device to measure on ({why}); nothing was run "
                                 "or written")
    with writing(a.out, kind="dir") as out:
        check_own_files(out, own_results(out, stem), label=label, command="ganparity bench",
                        instead="give another --out or --stem")
        rows: list[dict] = []

        def measured() -> bool:  # a row that timed steps (a parity failure is a measured result too)
            return any("median_ms" in r for r in rows)

        def save(_row=None) -> None:  # after every row: Ctrl-C keeps the finished ones
            if measured():
                write_results(rows, out, stem, with_plot=False)

        try:
            run_matrix(specs, parse_knobs(a.set), backends, a.device, a.batch_sizes,
                       parse_list(a.variants), a.rounds, a.warmup, check=not a.no_check,
                       progress=_progress, on_row=lambda r: (rows.append(r), save()), semantics=a.semantics,
                       isolate=not a.same_process)
        finally:
            if measured():
                written = write_results(rows, out, stem)
                _progress(f"wrote {', '.join(map(str, written))} ({len(rows)} rows)")
        if not measured():
            first = next((r for r in rows if r.get("reason")), None)
            why = f"{first['status']}: {first['reason']}" if first else "no rows"
            raise GanparityError(f"bench measured nothing: none of its {len(rows)} rows ran ({why}); nothing was "
                                 "written")
    print(markdown(rows))


SUBCOMMANDS = ("step", "scaling", "zoo", "port-cost", "port-speed", "gpu-check", "gpu-run")
OLD_SEMANTICS = {"native": "own", "faithful": "source"}  # bench's words before `semantics` meant one thing


def register(sub) -> None:
    s = sub.add_parser("bench", help="what things cost: step, scaling, zoo, port-cost, port-speed, gpu-check, gpu-run",
                       description="The benchmarks, one door: `ganparity bench step` (a training step per backend "
                                   "x variant), `scaling` (data parallel), `zoo` (port the Gluon model zoo), "
                                   "`port-cost` and `port-speed` (a port's time and memory; the written code's "
                                   "speed), "
                                   "`gpu-check` (the CUDA self-check), `gpu-run` (the one prepared GPU run).")
    bench = s.add_subparsers(dest="bench_command", required=True, metavar="SUB-COMMAND")
    register_step(bench)
    register_scaling(bench)
    register_zoo(bench)
    register_port_benchmarks(bench)
    register_gpu_check(bench)
    register_gpu_run(bench)


def register_step(sub) -> None:
    from ...benchmarks.harness import SEMANTICS
    from ...benchmarks.variants import DEFAULT, all_variant_names

    s = sub.add_parser("step", help="step cost: ms/step, img/s, FLOPs, memory per backend x variant",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    s.add_argument("--spec", default="dcgan", metavar="NAMES",
                   help=f"comma list of specs: {', '.join(REGISTRY)}")
    s.add_argument("--set", action="append", metavar="KEY=VALUE", default=[],
                   help="override a width knob of the image specs, e.g. --set ngf=16 (repeatable; "
                        "gan-gaussian runs as specified)")
    s.add_argument("--backends", default="", help=f"comma list of {', '.join(BACKENDS)} (default: every installed)")
    s.add_argument("--device", default="cpu", choices=DEVICES, help="cpu or cuda")
    s.add_argument("--batch-sizes", default="16,64", type=positive_int_list, help="comma list of batch sizes")
    s.add_argument("--variants", default=DEFAULT,
                   help=f"comma list, or 'all': {', '.join(all_variant_names())}; each runs on the backends "
                        "that have it, CUDA-only ones are reported as skipped on cpu")
    s.add_argument("--rounds", type=positive_int, default=10, help="timed rounds per row (median, p10, p90 over them)")
    s.add_argument("--warmup", type=nonnegative_int, default=3, help="warm-up steps per row, timed apart")
    s.add_argument("--threads", type=positive_int, default=None,
                   help="CPU threads for both frameworks (default: all cores)")
    s.add_argument("--semantics", default="own", type=choice("--semantics", SEMANTICS, OLD_SEMANTICS),
                   help="whose numbers the reported step follows: 'own' each backend its own framework's "
                        "(MXNet's BatchNorm statistics and Adam on mxnet, PyTorch's on torch: the fair framework "
                        "comparison), 'source' the spec's (its source's framework), 'torch' or 'mxnet' that "
                        "framework's; each row also times the step under the other framework's semantics and "
                        "the source's loop")
    s.add_argument("--no-check", action="store_true", help="skip each variant's parity check")
    s.add_argument("--same-process", action="store_true",
                   help="run every row in this one process (default: each row in a fresh one, since in one "
                        "process a row's times depend on the rows before it)")
    s.add_argument("--out", default=f"reports/bench-{time.strftime('%Y%m%d')}", type=output_dir, help="output folder")
    s.add_argument("--stem", default="results", type=stem_name, help="file names: STEM.json, STEM.md, STEM.png")
    s.set_defaults(fn=cmd_bench)


def cmd_scaling(a) -> None:
    from ...benchmarks import scaling

    rc = scaling.run(a)
    if rc:
        raise SystemExit(rc)


def register_scaling(sub) -> None:
    from ...benchmarks import scaling

    s = sub.add_parser("scaling", help="data-parallel scaling: step time and img/s of train --nproc N, N = 1, 2, 4",
                       description=scaling.__doc__.split("\n\n")[0],
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    scaling.add_arguments(s)
    s.set_defaults(fn=cmd_scaling)


def cmd_zoo(a) -> None:
    from ...benchmarks import port_zoo

    port_zoo.run(a)


def register_zoo(sub) -> None:
    from ...benchmarks import port_zoo

    s = sub.add_parser("zoo", help="`ganparity port` over the Gluon model zoo: each proof and its time, one table",
                       description=port_zoo.__doc__.split("\n\n")[0],
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    port_zoo.add_arguments(s)
    s.set_defaults(fn=cmd_zoo)


def register_port_benchmarks(sub) -> None:
    """port-cost and port-speed: options and run are their benchmark modules' (add_arguments, run)."""
    from ...benchmarks import port_cost, port_speed

    for name, mod, text in (("port-cost", port_cost, "what one port costs: port + proof in a fresh process, its "
                                                      "time and peak memory against the goals"),
                            ("port-speed", port_speed, "the written model.py against torchvision's hand-written "
                                                       "twin: train step and eval forward, interleaved")):
        s = sub.add_parser(name, help=text, description=mod.__doc__.split("\n\n")[0],
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        mod.add_arguments(s)
        s.set_defaults(fn=mod.run)


def cmd_gpu_run(a) -> None:
    from ...benchmarks import gpu_run

    rc = gpu_run.run(gpu_run.resolve(a))
    if rc:
        raise SystemExit(rc)


def register_gpu_run(sub) -> None:
    from ...benchmarks import gpu_run

    s = sub.add_parser("gpu-run", help="the one prepared GPU run: self-check, peaks, every variant, train, goals; "
                                       "inside a time budget (docs/bench.md)",
                       description=gpu_run.__doc__.split("\n\n")[0])
    gpu_run.add_arguments(s)
    s.set_defaults(fn=cmd_gpu_run)


def cmd_gpu_check(a) -> None:
    from ...benchmarks.selfcheck import failures, run_checks, train_tiny
    from ...benchmarks.variants import parse_list

    t = time.perf_counter()
    backends = parse_list(a.backends)
    for b in backends:
        choose("backend", b, BACKENDS)
    if a.device == "cuda":  # a self-check of the CUDA paths without CUDA checks nothing: it must not pass
        why = cuda_unusable(backends or available())
        if why:
            raise GanparityError(f"gpu-check: no CUDA device to check ({why}); nothing was checked")
    results = run_checks(a.device, backends or None, parse_list(a.variants) or None,
                         train=None if a.no_train else train_tiny, report=lambda line: print(line, flush=True))
    failed = failures(results)
    counts = {s: sum(r["status"] == s for r in results) for s in ("pass", "FAIL", "skipped")}
    print(f"{counts['pass']} passed, {counts['FAIL']} failed, {counts['skipped']} skipped "
          f"in {time.perf_counter() - t:.0f} s on {a.device}")
    if failed:
        raise GanparityError(f"{len(failed)} check(s) failed: " + " | ".join(failed))
    if not counts["pass"]:
        first = next((r for r in results if r["status"] == "skipped"), None)
        why = f": {first['name']}: {first['detail']}" if first else ""
        raise GanparityError(f"gpu-check checked nothing on {a.device}: every check was skipped{why}")


def register_gpu_check(sub) -> None:
    s = sub.add_parser("gpu-check", help="self-check of every CUDA path: each variant's parity and the training "
                                         "loop, at tiny width; exit 2 naming each failure",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    s.add_argument("--device", default="cuda", choices=("cuda", "cpu"),
                   help="where to run (cpu runs the checks a CPU has; the CUDA-only variants are skipped)")
    s.add_argument("--backends", default="", help=f"comma list of {', '.join(BACKENDS)} (default: every installed)")
    s.add_argument("--variants", default="", help="comma list of variant names (default: all)")
    s.add_argument("--no-train", action="store_true", help="skip the one-epoch training run per backend")
    s.set_defaults(fn=cmd_gpu_check)
