"""The speed of what `ganparity port` writes: each Gluon model-zoo model's written model.py against
torchvision's hand-written twin of the same network, per train step (SGD with momentum: forward,
cross-entropy, backward, step) and per eval forward (no_grad), contiguous and channels_last, all
arms interleaved in the same rounds (one process, the same threads, the same inputs). The port
itself runs first, in a child process (`ganparity port`, as a user runs it), so the timing process
holds only what it times; MXNet is loaded only after the torch rounds.

    ganparity bench port-speed [--models resnet18_v1,...] [--shape 4,3,224,224] [--rounds 15]

Where the Gluon network is not torchvision's, the twin is torchvision's model edited into Gluon's
network (backends/torch/speed.py: resnet50_v1's stride and 1x1 biases, mobilenet_v2_1_0's first
expansion and head), and the stock torchvision model is timed beside it; each row counts the models'
FLOPs (torch.utils.flop_counter) and parameters, so "the same network" is measured, not assumed.
The Gluon network itself (the source, hybridized) is timed after them, in rounds of its own
(--source, on by default): what moving off MXNet costs or saves per step. Where a copy of the
written model edited in one place names the cause of a ratio beyond x1.02 (edit_written), the copy
is timed in the same rounds.

Writes benchmarks/results/port-speed.md and .json. A benchmark, not a test: the ratios are this
machine's, and a ratio whose 90% interval reaches the goal is not a finding.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ..common.backend import get_backend
from ..common.errors import GanparityError
from ..common.files import write_json, write_text
from ..common.table import md_table
from .environment import metadata, set_threads
from .timing import time_interleaved

ROOT = Path(__file__).resolve().parent / "results"
GOAL = 1.02  # the written code's step and forward within x1.02 of the hand-written twin's (issue 27)
# the input each model is ported at (its proof runs there; the timing runs at --shape): a model whose
# head has a fixed input size (vgg's Dense, densenet's 7x7 pooling) is ported at 224 px
PORT_SHAPES = {"densenet121": (1, 3, 224, 224), "vgg11_bn": (1, 3, 224, 224)}
DEFAULT_MODELS = ["resnet18_v1", "resnet50_v1", "mobilenet_v2_1_0", "densenet121", "vgg11_bn"]


def _load_written(folder: Path):
    """The written model.py's build() and load(), imported as a user would import their port."""
    spec = importlib.util.spec_from_file_location(f"written_{folder.name}", folder / "model.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.load()


def _port_in_child(name: str, pshape: tuple, out: Path) -> str:
    """Port the model as a user would, `ganparity port` in a process of its own; the proof's verdict.
    In the timing process, the port's history (MXNet loaded, the proof's freed GBs) moved vgg11_bn's
    contiguous train step by ~4% against its twin, in both models alike only where both layouts' models
    were alive: ported in a child, the timing process holds only what it times."""
    cmd = [sys.executable, "-m", "ganparity", "port", "--mxnet", f"mxnet.gluon.model_zoo.vision:{name}",
           "--input-shape", ",".join(map(str, pshape)), "--out", str(out), "--steps", "0"]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT.parents[1])
    try:
        return json.loads((out / "proof.json").read_text())["verdict"]
    except (OSError, ValueError, KeyError):
        raise GanparityError(f"port-speed {name}: `ganparity port` failed (exit {res.returncode}): "
                             f"{(res.stderr.strip().splitlines() or ['no output'])[-1]}") from None


def measure(name: str, shape: tuple, rounds: int, layouts: list[str], threads: int, work: Path,
            source: bool = True, log=print) -> dict:
    """One model's row: port it (in a child process), build its twin (and torchvision's stock model
    where they differ), count each one's FLOPs and size, time every torch arm interleaved; then, with
    source=True, the Gluon network itself in rounds of its own; the ratios written / twin (and
    written / Gluon)."""
    tb = get_backend("torch")
    pshape = PORT_SHAPES.get(name, (1, 3, 64, 64))
    t0 = time.perf_counter()
    verdict = _port_in_child(name, pshape, work / name)
    log(f"port-speed: {name} ported at {'x'.join(map(str, pshape))} in {time.perf_counter() - t0:.0f} s "
        f"(proof: {verdict})")
    set_threads(threads)
    twin, about = tb.zoo_model(name)
    models = {"written": _load_written(work / name), "twin": twin}
    if about["edited"]:
        models["torchvision"] = tb.zoo_model(name, edited=False)[0]
    edit = tb.edit_written(name, models["written"])  # the written model edited in one place: a ratio's cause
    if edit:
        models["written-edited"] = edit[0]
    counted = {k: tb.model_size(m, shape) for k, m in models.items()}
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape, dtype=np.float32)
    labels = rng.integers(0, 1000, shape[0])
    arms = tb.speed_arms(models, x, labels, tuple(layouts))
    cpu = tb.resolve("cpu")
    timed = time_interleaved(arms, lambda: tb.sync(cpu), rounds=rounds, warmup=2, min_round_s=0.2)
    del arms, models, twin
    if source:  # MXNet is loaded only now, its rounds after torch's: interleaved, MXNet's idle OpenMP
        # threads (still spinning) and its engine's workers slowed the torch arm after them (+-20%)
        mb = get_backend("mxnet")
        gluon = {"gluon": mb.zoo_model(name)[0]}
        counted["gluon"] = mb.model_size(gluon["gluon"], shape)
        mcpu = mb.resolve("cpu")
        timed |= time_interleaved(mb.speed_arms(gluon, x, labels, tuple(layouts)), lambda: mb.sync(mcpu),
                                  rounds=rounds, warmup=2, min_round_s=0.2)
    log(f"port-speed: {name}: " + ", ".join(
        f"{k} {'-' if f is None else f'{f:.2f}'} GFLOPs {s:,} values" for k, (f, s) in counted.items()))
    arms = {k: {q: v[q] for q in ("median_ms", "p10_ms", "p90_ms", "steps_per_round", "times_ms")}
            for k, v in timed.items()}
    source_ratios = {f"{layout} {mode}": arms[f"written {layout} {mode}"]["median_ms"] /
                     arms[f"gluon {layout} {mode}"]["median_ms"]
                     for layout in layouts for mode in ("train", "eval") if f"gluon {layout} {mode}" in arms}
    return judged({"model": name, "twin": about["name"], "shape": list(shape), "port_shape": list(pshape),
                   "proof": verdict, "gflops": {k: f for k, (f, _) in counted.items()},
                   "values": {k: s for k, (_, s) in counted.items()},
                   "same_network": counted["written"] == counted["twin"], "arms": arms,
                   "source_ratios": source_ratios, "difference": about["difference"]}
                  | ({"written_edit": edit[1]} if edit else {}), layouts)


def judged(row: dict, layouts: list[str]) -> dict:
    """The row with its ratios written / twin per layout and mode (paired: each round's own ratio),
    their 90% intervals, and the worst of them, all from the arms' per-round times."""
    ratios, ci = {}, {}
    for layout in layouts:
        for mode in ("train", "eval"):
            ratios[f"{layout} {mode}"], *ci[f"{layout} {mode}"] = _vs(row, "written", "twin", f"{layout} {mode}")
    worst = max(ratios, key=ratios.get)
    return row | {"ratios": ratios, "ci90": ci, "worst": ratios[worst], "worst_ci": ci[worst]}


def _vs(row: dict, a: str, b: str, arm: str) -> tuple[float, float, float]:
    """Arm a / arm b of one row ('written', 'twin', ...; arm 'contiguous train'), paired per round."""
    return paired(row["arms"][f"{a} {arm}"]["times_ms"], row["arms"][f"{b} {arm}"]["times_ms"])


def paired(written: list[float], twin: list[float], resamples: int = 2000) -> tuple[float, float, float]:
    """written / twin as the median of the rounds' own ratios (both arms ran in every round, next
    to each other: the machine's speed, which moves by up to 1.5x over minutes on this VM, cancels
    out of each round's ratio; a ratio of the two medians keeps it, and put the ResNets at
    x1.03-1.09 in runs where the rounds' ratios gave x0.97-1.02), and the 90% interval of that
    median (bootstrap over the rounds, a fixed seed): (median, low, high)."""
    r = np.asarray(written, dtype=float) / np.asarray(twin, dtype=float)
    boot = np.median(np.random.default_rng(0).choice(r, (resamples, r.size)), axis=1)
    return float(np.median(r)), float(np.percentile(boot, 5)), float(np.percentile(boot, 95))


def goal_met(row: dict) -> str:
    """'yes' (the worst ratio within GOAL), 'no (x1.08, ...)' (its 90% interval beyond GOAL), or
    'cannot tell (x1.03, 90% in x0.99-1.05)' (beyond GOAL, but its interval reaches it: noise or
    not, these rounds cannot say)."""
    worst, (low, high) = row["worst"], row["worst_ci"]
    if worst <= GOAL:
        return "yes"
    return f"{'no' if low > GOAL else 'cannot tell'} (x{worst:.3f}, 90% in x{low:.3f}-{high:.3f})"


def _interval(r: tuple[float, float, float]) -> str:
    return f"x{r[0]:.3f} (90% in x{r[1]:.3f}-{r[2]:.3f})"


def _ms(a: dict) -> str:
    return f"{a['median_ms']:.0f} ({a['p10_ms']:.0f}-{a['p90_ms']:.0f})"


def table(data: dict) -> str:
    """Per model: the twin, both FLOP counts, whether they are one network, written / twin per layout
    and mode, both train steps' times, and whether the worst ratio is within GOAL."""
    meta = data["meta"]
    layouts = meta["layouts"]
    rows = [judged(r, layouts) for r in data["rows"]]  # from the rounds' own times, by today's rule
    head = ["model", "twin", "GFLOPs written / twin", "same network"] + [f"x twin {k}" for k in
                                                                          (f"{lay} {m}" for lay in layouts
                                                                           for m in ("train", "eval"))] + \
        ["written train ms", "twin train ms", f"within x{GOAL}"]
    body = []
    for r in rows:
        lay = layouts[0]
        body.append([r["model"], r["twin"], f"{r['gflops']['written']:.3g} / {r['gflops']['twin']:.3g}",
                     "yes" if r["same_network"] else "no"] + [f"x{v:.3f}" for v in r["ratios"].values()] +
                    [_ms(r["arms"][f"written {lay} train"]), _ms(r["arms"][f"twin {lay} train"]),
                     goal_met(r)])
    return md_table(head, body)


def markdown(data: dict) -> str:
    meta, rows = data["meta"], data["rows"]
    layouts = meta["layouts"]
    source = [r for r in rows if r.get("source_ratios")]
    stock = [r for r in rows if "torchvision" in r["gflops"]]
    lines = ["# What `ganparity port` writes, against torchvision's hand-written twin", "",
             f"{meta['machine']}, {meta['threads']} threads, torch {meta['torch']}; input "
             f"{'x'.join(map(str, meta['shape']))}; median of {meta['rounds']} interleaved rounds "
             "(ms, p10-p90 in brackets); ratio = the median over the rounds of written / twin (or / torchvision, "
             "/ edited) in the same round "
             f"(below 1: the written code is faster); a ratio beyond x{GOAL} whose 90% interval (bootstrap over the "
             f"rounds) reaches x{GOAL} is 'cannot tell'.", "",
             table(data), ""]
    if stock:
        lines += ["Where Gluon's network is not torchvision's, the twin above is torchvision's model edited into "
                  "Gluon's network; the stock torchvision model, timed in the same rounds:", ""]
        sb = []
        for r in stock:
            for lay in layouts:
                sb.append([r["model"], lay, f"{r['gflops']['torchvision']:.3g}",
                           f"{r['arms'][f'torchvision {lay} train']['median_ms']:.0f}"] +
                          [f"x{_vs(r, 'written', 'torchvision', f'{lay} {m}')[0]:.3f}" for m in ("train", "eval")])
        lines += [md_table(["model", "layout", "torchvision GFLOPs", "torchvision train ms", "x torchvision train",
                            "x torchvision eval"], sb), ""]
    edited = [r for r in rows if r.get("written_edit")]
    if edited:
        lines += ["The written model edited in one place (the same values, the same network) where an earlier run "
                  "read x1.02 or more, timed in the same rounds: written / edited is what that one place costs.", ""]
        eb = []
        for r in edited:
            for lay in layouts:
                for arm in (f"{lay} train", f"{lay} eval"):
                    eb.append([r["model"], r["written_edit"], arm] + [_interval(_vs(r, a, b, arm)) for a, b in (
                        ("written", "twin"), ("written-edited", "twin"), ("written", "written-edited"))])
        lines += [md_table(["model", "edit", "arm", "written / twin", "edited / twin", "written / edited"], eb), ""]
    if source:
        lines += [f"The Gluon network itself (the source, hybridized; mxnet {meta.get('mxnet', '?')}), timed after "
                  "the torch arms in rounds of its own: below 1, the written PyTorch step is faster than the MXNet "
                  "step it replaces.", ""]
        lines += [md_table(["model", "gluon train ms", "gluon eval ms", "x gluon train", "x gluon eval"],
                           [[r["model"], _ms(r["arms"]["gluon contiguous train"]),
                             _ms(r["arms"]["gluon contiguous eval"]),
                             f"x{r['source_ratios']['contiguous train']:.3f}",
                             f"x{r['source_ratios']['contiguous eval']:.3f}"] for r in source]), ""]
    lines += ["Differences between the Gluon network and torchvision's:", ""]
    lines += [f"- {r['model']}: {r['difference']}" for r in rows if r["difference"]]
    for run in meta.get("reruns", []):
        before = [r for r in data.get("earlier", []) if r.get("replaced_by") == run["date"]]
        load = ", ".join(f"at the {w} {run[k]}" for w, k in (("start", "load_start"), ("end", "load_end")) if k in run)
        load = f", load average {load}" if load else ""  # (reruns before 2026-12-06 22:30 recorded none)
        lines += ["", f"Rerun by `{run['command']}` ({run['date']}, commit {run['git_commit'][:10]}{load}): "
                  f"{', '.join(run['models'])}. The rows it replaced (in the JSON): "
                  + "; ".join(f"{r['model']} {goal_met(judged(r, layouts))} ({r['measured']['date']})"
                              for r in before) + "."]
    lines += ["", f"Written by `{meta['command']}` ({meta['date']}, load average at the start "
              f"{meta['load_start']}, at the end {meta['load_end']})."]
    return "\n".join(lines) + "\n"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models", default=",".join(DEFAULT_MODELS),
                   help="comma list of Gluon zoo names with a torchvision twin (backends/torch/speed.py's ZOO)")
    p.add_argument("--shape", default="4,3,224,224", help="the batch each arm is timed at")
    p.add_argument("--rounds", type=int, default=15, help="interleaved rounds per model")
    p.add_argument("--layouts", default="contiguous,channels_last", help="comma list: contiguous, channels_last")
    p.add_argument("--threads", type=int, default=2, help="threads of each framework")
    p.add_argument("--source", action=argparse.BooleanOptionalAction, default=True,
                   help="time the Gluon network itself, after the torch arms (needs mxnet)")
    p.add_argument("--stem", default="port-speed", help="results file name under benchmarks/results")
    p.add_argument("--rerun", action="store_true",
                   help="measure --models again into the committed table (same settings): their new rows replace "
                        "the old, which the table keeps and lists as earlier runs")
    p.add_argument("--one", help=argparse.SUPPRESS)  # a child process: one model's row, printed as JSON


def run(a: argparse.Namespace) -> None:
    import os
    import platform

    from ..common.errors import choose

    names = a.models.split(",")
    tb = get_backend("torch")
    for n in names:
        choose("model", n, list(tb.SPEED_MODELS))
    layouts = a.layouts.split(",")
    for lay in layouts:
        choose("layout", lay, ["contiguous", "channels_last"])
    shape = tuple(int(v) for v in a.shape.split(","))
    set_threads(a.threads)
    if a.one:  # a child process: one model's row, printed as JSON (MXNet not
        # loaded before its rounds)
        with tempfile.TemporaryDirectory() as tmp:
            row = measure(a.one, shape, a.rounds, layouts, a.threads, Path(tmp), a.source,
                          log=lambda s: print(s, file=sys.stderr, flush=True))
        print(json.dumps(row))
        return
    meta = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "threads": a.threads,
            "torch": tb.versions()["torch"], "mxnet": get_backend("mxnet").versions()["mxnet"] if a.source else None,
            "shape": list(shape), "rounds": a.rounds, "layouts": layouts,
            "load_start": f"{os.getloadavg()[0]:.2f}"} | {k: v for k, v in metadata("torch", "cpu").items()
                                                        if k in ("date", "git_commit", "command")}
    rows, kept, earlier = [], [], []
    if a.rerun:  # the committed table's other rows stay; the rerun models' old rows become earlier runs
        try:
            old = json.loads((ROOT / f"{a.stem}.json").read_text())
        except (OSError, ValueError) as e:
            raise GanparityError(f"--rerun: no table to measure into: benchmarks/results/{a.stem}.json "
                                 f"({type(e).__name__}: {e}); run without --rerun first") from None
        same = ("shape", "rounds", "layouts", "threads")
        wrong = [f"{k} {old['meta'].get(k)}, not {meta[k]}" for k in same if old["meta"].get(k) != meta[k]]
        if wrong:
            raise GanparityError(f"--rerun: benchmarks/results/{a.stem}.json was measured with {'; '.join(wrong)} "
                                 f"(a rerun keeps its {', '.join(same)})")
        kept = [r for r in old["rows"] if r["model"] not in names]
        # each replaced row keeps the run that measured it (a rerun's rows carry theirs) and names the rerun
        # that replaced it, so each rerun lists only the rows it replaced
        first = {k: old["meta"].get(k) for k in ("date", "git_commit", "command")}
        earlier = old.get("earlier", []) + [r | {"measured": r.get("measured", first), "replaced_by": meta["date"]}
                                             for r in old["rows"] if r["model"] in names]
        meta = old["meta"] | {"reruns": old["meta"].get("reruns", []) + [
            {"models": names} | {k: meta[k] for k in ("date", "git_commit", "command", "load_start")}]}
    order = {n: i for i, n in enumerate(DEFAULT_MODELS + [n for n in names if n not in DEFAULT_MODELS])}
    for name in names:  # each model in a fresh process: in one, a model's times depended on the models before it
        cmd = [sys.executable, "-m", "ganparity.benchmarks.port_speed", "--one", name, "--shape", a.shape,
               "--rounds", str(a.rounds), "--layouts", a.layouts, "--threads", str(a.threads),
               "--source" if a.source else "--no-source"]
        res = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT.parents[1])
        if res.returncode != 0:
            raise GanparityError(f"port-speed {name}: the child process failed (exit {res.returncode}; its error "
                                 "is above)")
        rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
        if a.rerun:
            rows[-1]["measured"] = {k: meta["reruns"][-1][k] for k in ("date", "git_commit", "command")}
        print(json.dumps({k: rows[-1][k] for k in ("model", "ratios", "gflops")}), flush=True)
        (meta["reruns"][-1] if a.rerun else meta)["load_end"] = f"{os.getloadavg()[0]:.2f}"  # the run's own
        every = sorted(kept + rows, key=lambda r: order.get(r["model"], len(order)))
        data = {"meta": meta, "rows": every} | ({"earlier": earlier} if earlier else {})
        ROOT.mkdir(parents=True, exist_ok=True)
        write_json(ROOT / f"{a.stem}.json", data)  # after every row: Ctrl-C keeps the finished ones
        write_text(ROOT / f"{a.stem}.md", markdown(data))
    print(f"wrote {ROOT / a.stem}.md and .json", file=sys.stderr)
    for r in rows:
        print(f"{r['model']}: worst ratio x{r['worst']:.3f}, within x{GOAL}: {goal_met(r)}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(p)
    run(p.parse_args(argv))


if __name__ == "__main__":
    main()
