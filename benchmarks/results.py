"""Step-cost results as files a person reads: markdown tables, plots, JSON with the run's
metadata, and the quick CPU section of `ganparity report`."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ..common.files import atomic_write, write_json, write_text
from ..common.table import md_table
from ..common.verdicts import AGREE, DIFFER
from .environment import set_threads
from .harness import SOURCE_FLAG, bench_row, in_fresh_process
from .variants import DEFAULT, LOW_PRECISION_RTOL, VARIANTS


def _fmt_mem(row: dict) -> str:
    b = row.get("peak_mem_bytes")
    if b is None:
        return "-"
    return f"{b / 2**20:,.0f} MiB" + (" RSS" if "RSS" in row.get("peak_mem_kind", "") else "")


def _source_cells(row: dict) -> list[str]:
    """'source loop ms (how)', 'x source' (marked '!' above SOURCE_FLAG), 'emulating other ms (+%)'."""
    arms = row.get("arms", {})
    src = arms.get("source", {})
    if "source_ms" in row:
        cells = [f"{row['source_ms']:.2f} ({row['source_how']})",
                 f"x{row['x_source']:.2f}" + (" !" if row["over_source_flag"] else "")]
    else:
        cells = [f"none: {src['refused']}" if "refused" in src else "-", "-"]
    other = arms.get("emulating" if row.get("semantics") == row.get("backend") else "native", {})
    if "median_ms" in other and "emulation_cost" in row:
        cells.append(f"{other['median_ms']:.2f} ({100 * row['emulation_cost']:+.0f}%)")
    else:
        cells.append(f"refused: {other['refused']}" if "refused" in other else "-")
    return cells


def pct(fraction: float) -> str:
    """12.3% or, below one percent, two significant digits (0.047%)."""
    return f"{100 * fraction:.1f}%" if fraction >= 0.01 else f"{100 * fraction:.2g}%"


def peak_cell(row: dict) -> str:
    """'12.3% of 0.13 fp32': the row's TFLOP/s over the GEMM peak measured beside it, and that peak."""
    if row.get("fraction_of_peak"):
        return f"{pct(row['fraction_of_peak'])} of {row['peak_tflops']:.3g} {row['peak_precision']}"
    if row.get("peak_how"):  # no GEMM in that precision: the reason
        return f"no peak: {row['peak_how']}"
    return "-"


def parity_cell(par: dict | None, short: bool = False) -> str:
    """A variant's one-step parity check as a verdict (common/verdicts.py's words) and its numbers."""
    if par is None:
        return "-"
    word = AGREE if par["ok"] else DIFFER
    if par["precision"] in LOW_PRECISION_RTOL:
        cos = min(par["grad_cosine"].values(), default=float("nan"))
        return word + f" (losses {par['max_rel']['losses']:.0e} rel, grad cosine {cos:.3g} vs {par['reference']})"
    worst = max(par["max_rel"].values())
    if short:
        return word + (f" ({worst:.0e} vs {par['reference']})" if worst else f" (0 vs {par['reference']})")
    return word + f" ({worst:.0e} vs {par['reference']}, rtol {par['rtol']:g})"


def markdown(rows: list[dict]) -> str:
    head = ["spec", "backend", "variant", "semantics", "device", "batch", "status", "ms/step median", "p10-p90",
            "source loop ms", "x source", "emulating other ms (+%)", "img/s",
            "GFLOP/step", "TFLOP/s", "% of peak", "peak mem", "phases D / G ms", "warm-up s", "parity"]
    out = []
    for r in rows:
        ph = r.get("phases_ms")
        out.append([
            r["spec"], r["backend"], r["variant"], r.get("semantics", "-"), r.get("device_name") or r["device"],
            r["batch"], r["status"] if r["status"] == "ok" else f"{r['status']}: {r['reason']}",
            r.get("median_ms"), f"{r['p10_ms']:.2f}-{r['p90_ms']:.2f}" if "p10_ms" in r else "-",
            *_source_cells(r), r.get("img_per_s"), r["flops_per_step"] / 1e9, r.get("tflops_achieved"),
            peak_cell(r),
            _fmt_mem(r), f"{ph['D']:.2f} / {ph['G']:.2f}" if ph else "-", r.get("warmup_s"),
            parity_cell(r.get("parity"))])
    return md_table(head, out)


# -- the docs' tables (`ganparity docs`), from a results file's rows ------------------------------------------


def _ms(row: dict | None) -> str:
    """'31.3 (x1.04)': a row's step and its ratio to its source loop ('!' above SOURCE_FLAG)."""
    if row is None:
        return "-"
    if "median_ms" not in row:
        return f"{row['status']}"
    text = f"{row['median_ms']:.3g}"
    if "x_source" in row:
        text += f" (x{row['x_source']:.2f}{' !' if row['over_source_flag'] else ''})"
    return text


def summary_table(rows: list[dict]) -> str:
    """Per spec, each framework's step in its row's semantics with its ratio to its source loop, MXNet
    hybridized, and what emulating the other framework costs (the fair framework comparison)."""
    by = {(r["spec"], r["backend"], r["variant"]): r for r in rows if r["batch"] == rows[0]["batch"]}
    specs = list(dict.fromkeys(r["spec"] for r in rows))
    out = []
    for s in specs:
        t, m, h = (by.get((s, b, v)) for b, v in (("torch", DEFAULT), ("mxnet", DEFAULT), ("mxnet", "hybridize")))
        cost = " / ".join(f"{100 * r['emulation_cost']:+.0f}%" if r and "emulation_cost" in r else "-" for r in (t, m))
        out.append([s, _ms(t), _ms(m), _ms(h), cost])
    return md_table(["spec", "torch ms (x source)", "mxnet ms (x source)", "mxnet hybridize ms (x source)",
                     "emulation cost torch / mxnet"], out)


def variants_table(rows: list[dict]) -> str:
    """Per spec x backend x variant, ms/step at each batch size, img/s at the largest, and the
    variant's one-step parity verdict."""
    batches = sorted({r["batch"] for r in rows})
    keys = list(dict.fromkeys((r["spec"], r["backend"], r["variant"]) for r in rows))
    by = {(r["spec"], r["backend"], r["variant"], r["batch"]): r for r in rows}
    out = []
    for k in keys:
        cells = [by.get((*k, b)) for b in batches]
        if all(c is None or "median_ms" not in c for c in cells):
            continue  # a variant that ran nowhere here (CUDA only): the results file says why
        last = cells[-1] or {}
        par = next((c["parity"] for c in cells if c and c.get("parity")), None)
        out.append([*k, *(c["median_ms"] if c and "median_ms" in c else "-" for c in cells),
                     round(last["img_per_s"]) if "img_per_s" in last else "-", parity_cell(par, short=True)])
    return md_table(["spec", "backend", "variant", *(f"batch {b} ms/step" for b in batches),
                     f"batch {batches[-1]} img/s", "parity (one step)"], out)


def source_line(path: str, meta: dict) -> str:
    """The caption of a generated table: its data file, when and where it was measured."""
    threads = (meta.get("threads") or {}).get("OMP_NUM_THREADS") if isinstance(meta.get("threads"), dict) else None
    where = ", ".join(str(x) for x in (str(meta.get("date", ""))[:10], meta.get("processor"),
                                      f"{threads} threads" if threads else None) if x)
    return f"_From `{path}`" + (f" ({where})" if where else "") + "; regenerated by `ganparity docs`._"


def describe_run(rows: list[dict], meta: dict) -> str:
    # a spec's knobs, less the semantics: each row says its own (native semantics differ by backend)
    knobs = {r["spec"]: {k: v for k, v in r["knobs"].items() if k != "semantics"} for r in rows}
    lines = [f"Command: `{meta.get('command', '')}`", "",
             f"Date {meta.get('date')}, commit {meta.get('git_commit', '')[:10]}"
             + (" (uncommitted changes)" if meta.get("git_dirty") else "")
             + f", {meta.get('platform')}, {meta.get('processor')}, python {meta.get('python')}, "
             f"numpy {meta.get('numpy')}; threads {meta.get('threads')}; load average at start "
             f"{meta.get('load_average')}.", "",
             "Specs: " + "; ".join(f"{k} {v}" for k, v in knobs.items()) + ".", "",
             "ms/step: one full GANTrainer.step (D step + G step of the spec's recipe), median and p10-p90 over "
             "rounds, device synced only between rounds. GFLOP/step from common/flops.py (2 FLOPs per "
             "multiply-add; forward + backward = 3x forward per pass; the recipe's passes). % of peak: TFLOP/s "
             "over the TFLOP/s of a large square GEMM of the same framework (torch.mm; MXNet's FullyConnected), in the "
             "precision the step computes in (a CUDA 'fp32' step's convolutions run in TF32) and with the same "
             "threads, measured in the same process; the peak is written after the %. Peak memory on CPU is "
             "the process's peak RSS so far (monotonic, includes the framework), not the step's own. Phases: D step "
             "and G step timed in separate rounds with a sync between them. Warm-up s: first step (compile, "
             "trace) plus the other warm-up steps. Semantics: the framework whose numbers the reported step "
             "follows (BatchNorm statistics, Adam's eps and betas; `--semantics own`, the default, runs each "
             "backend in its own framework's). Source loop: the spec's source tutorial's loop in this backend's "
             "framework (backends/<name>/sources.py; 'transcribed' as written, or 'idiomatic' in this framework's "
             "idioms), timed in the same rounds, interleaved, from the same weights and inputs; x source is the "
             f"reported step over it, marked ! above {SOURCE_FLAG:.2f}. Emulating other: the same step following "
             "the other framework's semantics, and what that costs over the native step. "
             "Parity: one step of the variant against the reference "
             "(see benchmarks/variants.py check_variant)."]
    notes = sorted({f"{r['backend']}/{r['variant']}: {r['note']}" for r in rows if r.get("note")})
    lines += ["", "Variants:", *[f"- {n}" for n in notes]]
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> Path | None:
    ok = [r for r in rows if "median_ms" in r]
    if not ok:
        return None
    try:
        import matplotlib
    except ImportError:  # the GPU machine may lack it: JSON and markdown still get written
        print("benchmarks: matplotlib not installed, no plot", file=sys.stderr)
        return None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    specs = list(dict.fromkeys(r["spec"] for r in ok))
    fig, axes = plt.subplots(len(specs), 2, figsize=(10, 3.6 * len(specs)), squeeze=False)
    for ax_row, s in zip(axes, specs):
        series = {}
        for r in ok:
            if r["spec"] == s:
                series.setdefault(f"{r['backend']}/{r['variant']}", []).append(r)
        for label, rs in series.items():
            rs = sorted(rs, key=lambda r: r["batch"])
            bs = [r["batch"] for r in rs]
            ax_row[0].plot(bs, [r["median_ms"] for r in rs], "o-", label=label)
            ax_row[1].plot(bs, [r["img_per_s"] for r in rs], "o-", label=label)
        for ax, what in zip(ax_row, ("ms / step (median)", "images / s")):
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("batch size")
            ax.set_ylabel(what)
            ax.set_title(f"{s} {ok[0].get('device_name', ok[0]['device'])}", fontsize=9)
        ax_row[0].legend(fontsize=7)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)
    return path


def write_results(rows: list[dict], out: Path, stem: str = "results", meta: dict | None = None,
                  with_plot: bool = True) -> list[Path]:
    """<stem>.json (rows + run metadata), <stem>.md and, unless with_plot is False, <stem>.png."""
    out.mkdir(parents=True, exist_ok=True)
    meta = meta or (rows[0].get("meta", {}) if rows else {})
    paths = [out / f"{stem}.json", out / f"{stem}.md"]
    write_json(paths[0], {"metadata": meta, "rows": rows}, default=str)
    png = plot(rows, out / f"{stem}.png") if with_plot else None
    md = ["# Step cost", "", describe_run(rows, meta), "", markdown(rows), ""]
    if png:
        md += [f"![step cost]({png.name})", ""]
        paths.append(png)
    write_text(paths[1], "\n".join(md))
    return paths


REPORT_SPECS = {"gan-gaussian": {}, "dcgan": dict(nz=32, ngf=16, ndf=16, image_size=64)}  # sources: 64 px
REPORT_BATCH = 16
REPORT_VARIANTS = {"torch": [DEFAULT], "mxnet": [DEFAULT, "hybridize"]}


def report_section(backends: list[str], out: Path | None = None, rounds: int = 5) -> str:
    """The 'Step cost (CPU)' section of `ganparity report`: small widths, one batch size, the
    default variants (and MXNet's hybridize), a few rounds; parity is the report's own section. ~10-20 s."""
    set_threads(os.cpu_count() or 1)
    rows = []
    for s, k in REPORT_SPECS.items():
        for b in backends:
            for v in REPORT_VARIANTS.get(b, [DEFAULT]):
                rows.append(in_fresh_process(bench_row, s, k, VARIANTS[b][v], "cpu", REPORT_BATCH, rounds,
                                             warmup=2, check=False, phases=False))  # each row: its own process
    if out is not None:
        write_json(out / "step_cost.json", rows, default=str)
    meta = rows[0]["meta"] if rows else {}
    return "\n".join([
        "## Step cost (CPU)", "",
        f"One full training step (D step + G step), batch {REPORT_BATCH}, {rounds} rounds after 2 warm-up "
        f"steps, threads {meta.get('threads', {}).get('OMP_NUM_THREADS')} for both "
        "frameworks. Widths: " + "; ".join(f"{k} {v or 'as specified'}" for k, v in REPORT_SPECS.items())
        + ". Each backend in its own framework's semantics (the fair framework comparison: what a user of "
        "that framework writes), beside its source loop timed in the same rounds and the cost of emulating "
        "the other framework. A quick look; `ganparity bench step` measures more (variants, batch sizes, parity "
        "per variant).", "",
        markdown(rows), ""])
