"""Port the Gluon model zoo's vision models to PyTorch with `ganparity port` and tabulate the
proof: tensors mapped, forward error (train, eval), gradient error, K-step error under each
semantics, port time; every model that fails, with its one-line reason.

    ganparity bench zoo [--models resnet18_v1,...] [--shape 2,3,64,64] [--semantics torch,mxnet]
        [--optimizer sgd:lr=0.01] [--merge] [--stem port-zoo]   (--merge: replace only these models' rows)

The port-time figure of issue 19 (resnet50_v1 at 224 px, test file included):
    ... --models resnet50_v1 --shape 1,3,224,224 --stem port-resnet50-224

Writes benchmarks/results/port-zoo.md and .json. The models are built with pretrained=False (no
download). A benchmark, not a test: the times are this machine's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..common.errors import GanparityError
from ..common.files import write_json, write_text
from ..common.port.write import DEFAULT_STEPS

ZOO = ["alexnet", "densenet121", "densenet161", "densenet169", "densenet201", "inception_v3",
       "mobilenet0_25", "mobilenet0_5", "mobilenet0_75", "mobilenet1_0",
       "mobilenet_v2_0_25", "mobilenet_v2_0_5", "mobilenet_v2_0_75", "mobilenet_v2_1_0",
       "resnet18_v1", "resnet34_v1", "resnet50_v1", "resnet101_v1", "resnet152_v1",
       "resnet18_v2", "resnet34_v2", "resnet50_v2", "resnet101_v2", "resnet152_v2",
       "squeezenet1_0", "squeezenet1_1", "vgg11", "vgg13", "vgg16", "vgg19",
       "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn"]
SUBSET = ["resnet18_v1", "resnet18_v2", "resnet50_v1", "mobilenet0_25", "mobilenet_v2_0_25", "squeezenet1_1",
          "alexnet", "vgg11_bn"]
SIZES = {"inception_v3": (2, 3, 299, 299), **{f"densenet{n}": (2, 3, 224, 224) for n in (121, 161, 169, 201)},
         "alexnet": (2, 3, 96, 96), "squeezenet1_0": (2, 3, 224, 224),
         "squeezenet1_1": (2, 3, 224, 224)}
ROOT = Path(__file__).resolve().parent / "results"


def _one(name: str, shape: tuple, semantics: str, optimizer: str, steps: int, work: Path) -> dict:
    from ..common.port import port

    t0 = time.perf_counter()
    try:
        r = port(f"mxnet.gluon.model_zoo.vision:{name}", shape, work / f"{name}-{semantics}", semantics=semantics,
                 optimizer=optimizer, steps=steps)
    except GanparityError as e:
        return {"model": name, "semantics": semantics, "input": list(shape), "verdict": "refused", "error": str(e)}
    rows = {row.check: row for row in r.proof.rows}
    last = [row for c, row in rows.items() if c.startswith(f"step {steps} ")] if steps else []
    counts = {v: sum(row.verdict == v for row in r.proof.rows) for v in ("agree", "cannot tell here", "differ")}
    return {"model": name, "semantics": semantics, "input": list(shape), "verdict": r.proof.verdict,
            "rows": counts, "tensors": len(r.port.tensor_map), "weights": rows["weights"].max_rel,
            "forward_train": rows["forward train"].max_rel, "forward_eval": rows["forward eval"].max_rel,
            "gradients": rows["gradients"].max_rel, "k_step": max((s.max_rel for s in last), default=None),
            "port_s": r.seconds["port"], "proof_s": r.seconds["proof"], "total_s": time.perf_counter() - t0,
            "error": r.proof.failures()}


def verdict_of(row: dict) -> str:
    """A row's verdict; files written before the three verdicts say ok True/False."""
    return row.get("verdict") or ("agree" if row.get("ok") else "differ")


def _isolated(name: str, shape: tuple, semantics: str, optimizer: str, steps: int) -> dict:
    """_one in its own process: MXNet and torch keep what a large model allocated (the whole zoo in
    one process ran out of 24 GB at densenet161), and a model that does not fit is a row, not a crash."""
    cmd = [sys.executable, "-m", "ganparity.benchmarks.port_zoo", "--one", name, "--semantics", semantics,
           "--shape", ",".join(map(str, shape)), "--optimizer", optimizer, "--steps", str(steps)]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT.parents[1])
    if res.returncode == 0:
        return json.loads(res.stdout.strip().splitlines()[-1])
    why = ("killed (SIGKILL: out of memory on this machine)" if res.returncode == -9 else
           (res.stderr.strip().splitlines() or [f"exit code {res.returncode}"])[-1])
    return {"model": name, "semantics": semantics, "input": list(shape), "verdict": "refused", "error": why}


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.3g}" if isinstance(v, float) else str(v)


def write(rows: list[dict], meta: dict, stem: str = "port-zoo") -> None:
    ROOT.mkdir(parents=True, exist_ok=True)
    write_json(ROOT / f"{stem}.json", {"meta": meta, "rows": rows})
    lines = ["# `ganparity port` on the Gluon model zoo", "",
             f"Machine: {meta['machine']}; input {meta['shape']}; optimizer {_optimizer(meta)}, K = {meta['steps']}; "
             f"models: {meta['which']}. Each proof's verdict (agree / cannot tell here / differ), its rows' "
             "verdicts, the fp32 max relative error of its main rows, and every row that did not agree, with why.",
             "",
             "| model | semantics | input | proof | rows agree / cannot tell / differ | tensors | fwd train | fwd eval "
             "| grads | step K | port s | proof s | rows that did not agree |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        size = "x".join(map(str, r.get("input") or SIZES.get(r["model"], meta["shape"])))
        counts = " / ".join(str(r["rows"][v]) for v in ("agree", "cannot tell here", "differ")) if "rows" in r \
            else "-"
        lines.append("| " + " | ".join(_fmt(r.get(k)) for k in ("model", "semantics")) + f" | {size} | "
                     + f"{verdict_of(r)} | {counts} | "
                     + " | ".join(_fmt(r.get(k)) for k in ("tensors", "forward_train", "forward_eval",
                                                          "gradients", "k_step", "port_s", "proof_s"))
                     + f" | {r.get('error', '')} |")
    write_text(ROOT / f"{stem}.md", "\n".join(lines) + "\n" + meta.get("footer", ""))


def summary(data: dict) -> str:
    """Per semantics of a zoo results file (its JSON): how many models were ported, how many proofs
    agree, cannot tell, differ (and which: the file's table says why)."""
    lines = ["| semantics | models | proof agrees | cannot tell here | differs or refused |", "|---|---|---|---|---|"]
    for sem in dict.fromkeys(r["semantics"] for r in data["rows"]):
        rows = [r for r in data["rows"] if r["semantics"] == sem]
        unsure = [r["model"] for r in rows if verdict_of(r) == "cannot tell here"]
        bad = [r["model"] + ("" if verdict_of(r) == "differ" else f" ({verdict_of(r)})") for r in rows
               if verdict_of(r) not in ("agree", "cannot tell here")]
        agree = len(rows) - len(unsure) - len(bad)
        lines.append(f"| {sem} | {len(rows)} | {agree} | {', '.join(unsure) or '-'} | {', '.join(bad) or '-'} |")
    return "\n".join(lines)


def times_table(data: dict) -> str:
    """Per row: the model, its input, how long the port took to write and its proof to run."""
    lines = ["| model | semantics | input | tensors | port s | proof s | proof |", "|---|---|---|---|---|---|---|"]
    for r in data["rows"]:
        size = "x".join(map(str, r["input"]))
        lines.append(f"| {r['model']} | {r['semantics']} | {size} | {r.get('tensors', '-')} | {_fmt(r.get('port_s'))} "
                     f"| {_fmt(r.get('proof_s'))} | {verdict_of(r)} |")
    return "\n".join(lines)


def _optimizer(meta: dict) -> str:
    return meta.get("optimizer") or meta.get("trainer", "")  # files written before the rename say 'trainer'


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models", default=",".join(SUBSET), help="comma-separated zoo names, or 'all'")
    p.add_argument("--shape", default="2,3,64,64", help="the input batch shape (some models have their own: SIZES)")
    p.add_argument("--semantics", default="torch,mxnet", help="comma list of the port's semantics: torch, mxnet")
    p.add_argument("--optimizer", default="sgd:lr=0.01", metavar="NAME:KEY=VALUE,...",
                   help="the Gluon trainer each port's proof steps (as `ganparity port --optimizer`)")
    p.add_argument("--trainer", dest="optimizer", action=_DeprecatedTrainer, help="deprecated: --optimizer")
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="optimizer steps each proof compares")
    p.add_argument("--merge", action="store_true", help="keep the committed table's other rows (same settings)")
    p.add_argument("--stem", default="port-zoo", help="results file name (default port-zoo: .md and .json)")
    p.add_argument("--one", metavar="MODEL", help=argparse.SUPPRESS)  # one row, printed as JSON (a child process)


class _DeprecatedTrainer(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        print("ganparity: note: --trainer is deprecated; use --optimizer", file=sys.stderr)
        setattr(namespace, self.dest, values)


def main(argv: list[str] | None = None) -> None:
    """Each model's own process (`--one`), and for one release the old door of the whole table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(p)
    a = p.parse_args(argv)
    if not a.one:
        print("ganparity: note: python -m ganparity.benchmarks.port_zoo is deprecated; use ganparity bench zoo",
              file=sys.stderr)
    run(a)


def run(a: argparse.Namespace) -> None:
    """The table of `a` (add_arguments), or with --one a single row printed as JSON."""
    if a.one:
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(_one(a.one, tuple(int(v) for v in a.shape.split(",")), a.semantics, a.optimizer, a.steps,
                                  Path(tmp))))
        return
    names = ZOO if a.models == "all" else a.models.split(",")
    shape = tuple(int(v) for v in a.shape.split(","))
    meta = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs", "shape": shape,
            "optimizer": a.optimizer, "steps": a.steps, "which": "all" if a.models == "all" else ", ".join(names)}
    rows, kept = [], []
    if a.merge:
        old = json.loads((ROOT / f"{a.stem}.json").read_text())
        meta, kept = old["meta"], old["rows"]
    order = {n: i for i, n in enumerate(ZOO)}
    for name in names:
        for sem in a.semantics.split(","):
            rows.append(_isolated(name, SIZES.get(name, shape), sem, a.optimizer, a.steps))
            print(json.dumps(rows[-1]), flush=True)
            new = {(r["model"], r["semantics"]) for r in rows}
            every = [r for r in kept if (r["model"], r["semantics"]) not in new and r["model"] in order] + rows
            write(sorted(every, key=lambda r: (order.get(r["model"], len(order)), r["semantics"])), meta, a.stem)


if __name__ == "__main__":
    main()
