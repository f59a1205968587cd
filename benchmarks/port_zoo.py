"""Port the Gluon model zoo's vision models to PyTorch with `ganparity port` and tabulate the
proof: tensors mapped, forward error (train, eval), gradient error, K-step error under each
semantics, port time; every model that fails, with its one-line reason.

    ganparity bench zoo [--models resnet18_v1,...] [--shape 2,3,64,64] [--semantics torch,mxnet]
        [--optimizer sgd:lr=0.01] [--merge] [--stem port-zoo]   (--merge: replace only these models' rows)

GluonCV and GluonNLP (the zoo extra: pip install 'ganparity[zoo]'), one model of each family, with
the usual road out of MXNet beside each row (mx2onnx at opset 13, then onnx2torch: its eval forward
against the Gluon block's):
    ganparity bench zoo --models gluoncv --semantics torch --onnx --stem port-zoo-gluoncv
A model is a name of MXNet's vision zoo (resnet18_v1), ZOO:NAME (gluoncv:yolo3_mobilenet0.25_voc) or
a factory FILE.py:FUNCTION (tests/port_zoo_models.py:bert_small, run from the repository).

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

import numpy as np

from ..common.errors import GanparityError
from ..common.files import write_json, write_text
from ..common.port.write import DEFAULT_STEPS
from ..common.verdicts import distance, size

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
# One model of each GluonCV family (get_model_list()), GluonNLP's BERT and Transformer encoder at small
# widths (tests/port_zoo_models.py), each at an input a 2-core CPU proves in about a minute.
GLUONCV = ["gluoncv:resnet18_v1b", "gluoncv:resnet50_v1c", "gluoncv:resnet50_v1d", "gluoncv:resnext50_32x4d",
           "gluoncv:se_resnet18_v1", "gluoncv:resnest14", "gluoncv:mobilenet1.0", "gluoncv:mobilenetv2_0.25",
           "gluoncv:mobilenetv3_small", "gluoncv:xception", "gluoncv:darknet53", "gluoncv:vgg11_bn",
           "gluoncv:densenet121", "gluoncv:inceptionv3",
           "gluoncv:yolo3_mobilenet0.25_voc", "gluoncv:ssd_300_mobilenet0.25_voc",
           "gluoncv:faster_rcnn_resnet50_v1b_voc", "gluoncv:center_net_resnet18_v1b_voc",
           "gluoncv:fcn_resnet50_voc", "gluoncv:psp_resnet50_ade", "gluoncv:deeplab_resnet50_ade",
           "gluoncv:fastscnn_citys", "gluoncv:simple_pose_resnet18_v1b",
           # action recognition: R(2+1)D (resnet18_v1b_kinetics400 downloads its base whatever pretrained_base says)
           "gluoncv:r2plus1d_resnet18_kinetics400",
           "tests/port_zoo_models.py:bert_small", "tests/port_zoo_models.py:transformer_encoder_small"]
SIZES |= {"gluoncv:inceptionv3": (2, 3, 299, 299), "gluoncv:xception": (2, 3, 96, 96),
          "gluoncv:densenet121": (2, 3, 224, 224),  # its final 7x7 average pooling needs 224 px
          "gluoncv:yolo3_mobilenet0.25_voc": (2, 3, 128, 128), "gluoncv:ssd_300_mobilenet0.25_voc": (2, 3, 128, 128),
          "gluoncv:faster_rcnn_resnet50_v1b_voc": (1, 3, 128, 128),
          "gluoncv:center_net_resnet18_v1b_voc": (2, 3, 128, 128),
          # batch 2: their pyramid pooling's 1x1 bins hold one value per channel at batch 1, which
          # torch's BatchNorm refuses in train mode
          **{f"gluoncv:{m}": (2, 3, 64, 64) for m in ("fcn_resnet50_voc", "psp_resnet50_ade", "deeplab_resnet50_ade")},
          "gluoncv:fastscnn_citys": (2, 3, 128, 128), "gluoncv:simple_pose_resnet18_v1b": (2, 3, 128, 96),
          "gluoncv:r2plus1d_resnet18_kinetics400": (1, 3, 8, 32, 32),  # a clip: N, C, frames, H, W
          "tests/port_zoo_models.py:bert_small": ["2,8:int", "2,8:int:0..1", "2:int:1..8"],
          "tests/port_zoo_models.py:transformer_encoder_small": ["2,8:int", "2:int:1..8"]}
# the environment a model's row runs in, beyond this process's: MXNet 1.9.1's oneDNN fails in a training step's
# BatchNorm on 5-D inputs (Check failed: !is_view; the port says so and names this way out)
ZOO_ENV = {"gluoncv:r2plus1d_resnet18_kinetics400": {"MXNET_MKLDNN_ENABLED": "0"}}
ROOT = Path(__file__).resolve().parent / "results"


# --zoo-args of a model whose sizes are fixed when it is built (Fast-SCNN's crop: 1024 px by default)
# segmenters size their pooling for the crop they were built for (PSP's pyramid, DeepLab's image pool: 480 px
# by default): built for the table's input instead
ZOO_ARGS = {"gluoncv:fastscnn_citys": {"height": 128, "width": 128, "crop_size": 128, "base_size": 128},
            **{f"gluoncv:{m}": {"height": 64, "width": 64, "crop_size": 64, "base_size": 64}
               for m in ("psp_resnet50_ade", "deeplab_resnet50_ade")}}


def _source(name: str) -> str | dict:
    """What `ganparity port` reads for a model of this table: a zoo name, a factory, or a name of
    MXNet's vision zoo (the plain names of the first table)."""
    zoo = name.partition(":")[0]
    if zoo in ("gluon", "gluoncv", "gluonnlp"):
        return {"zoo": name} | ({"args": ZOO_ARGS[name]} if name in ZOO_ARGS else {})
    return name if ":" in name else f"mxnet.gluon.model_zoo.vision:{name}"


def _shape_text(shape) -> str:
    """An input shape as --shape takes it: '2,3,64,64', or inputs joined by ';' ('2,8:int;2:int:1..8')."""
    return ";".join(shape) if isinstance(shape, list) else ",".join(map(str, shape))


def _parse_shape(text: str):
    parts = text.split(";")
    return parts if len(parts) > 1 or ":" in text else tuple(int(v) for v in text.split(","))


def _one(name: str, shape, semantics: str, optimizer: str, steps: int, work: Path, onnx: bool = False) -> dict:
    from ..common.port import port

    t0 = time.perf_counter()
    arm = {"onnx": onnx_arm(name, shape)} if onnx else {}
    try:
        r = port(_source(name), shape, work / f"{name.replace('/', '_').replace(':', '_')}-{semantics}",
                 semantics=semantics, optimizer=optimizer, steps=steps)
    except GanparityError as e:
        return {"model": name, "semantics": semantics, "input": list(shape), "verdict": "refused", "error": str(e),
                **arm}
    rows = {row.check: row for row in r.proof.rows}
    last = [row for c, row in rows.items() if c.startswith(f"step {steps} ")] if steps else []
    counts = {v: sum(row.verdict == v for row in r.proof.rows) for v in ("agree", "cannot tell here", "differ")}
    return {"model": name, "semantics": semantics, "input": list(shape), "verdict": r.proof.verdict,
            "rows": counts, "tensors": len(r.port.tensor_map), "weights": rows["weights"].max_rel,
            "forward_train": rows["forward train"].max_rel, "forward_eval": rows["forward eval"].max_rel,
            "gradients": rows["gradients"].max_rel, "k_step": max((s.max_rel for s in last), default=None),
            "port_s": r.seconds["port"], "proof_s": r.seconds["proof"], "total_s": time.perf_counter() - t0,
            "error": r.proof.failures(), **arm}


def onnx_arm(name: str, shape, seed: int = 0) -> dict:
    """The usual road out of MXNet for the same block, weights and input as the port's proof: mx2onnx
    at opset 13 (backends/mxnet/onnx.py), onnx2torch (backends/torch/onnx.py), the converted
    module's eval forward against the Gluon block's, max relative error over the outputs (max |a - b|
    over max |b|). Nothing on that road checks training mode, gradients or a step."""
    import importlib

    from ..common.backend import get_backend
    from ..common.port.checks import draw_batch, input_specs, port_backend

    M, T = port_backend("mxnet"), port_backend("torch")
    to_onnx, from_onnx = (importlib.import_module(".onnx", get_backend(b).__package__) for b in ("mxnet", "torch"))
    stage = "build"
    try:
        block = M.load(_source(name))
        specs = input_specs(shape)
        M.read(block, specs, None, seed)  # the port's own initialisation: the same weights as its proof
        x = draw_batch(specs, np.random.default_rng(seed))
        stage = "mx2onnx"
        with tempfile.TemporaryDirectory() as tmp:
            path = to_onnx.onnx_model(block, x, Path(tmp) / "model.onnx")
            stage = "onnx2torch"
            net = from_onnx.onnx_model(path)
            stage = "forward"
            got = T.outputs(net, x, "float32", "eval")
        want = M.outputs(block, x, "float32", "eval")
    except Exception as e:  # noqa: BLE001 - the arm's failure is its row, in its own words
        line = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        return {"opset": to_onnx.ONNX_OPSET, "verdict": f"fails at {stage}", "error": line}
    if len(got) != len(want) or any(a.shape != b.shape for a, b in zip(got, want)):
        return {"opset": to_onnx.ONNX_OPSET, "verdict": "wrong outputs",
                "error": f"shapes {[a.shape for a in got]} for {[b.shape for b in want]}"}
    rel = max((distance(a, b) / max(size(b), 1e-30) for a, b in zip(got, want)), default=0.0)
    return {"opset": to_onnx.ONNX_OPSET, "verdict": "ran", "max_rel": rel, "error": ""}


def verdict_of(row: dict) -> str:
    """A row's verdict; files written before the three verdicts say ok True/False."""
    return row.get("verdict") or ("agree" if row.get("ok") else "differ")


def _isolated(name: str, shape, semantics: str, optimizer: str, steps: int, onnx: bool = False) -> dict:
    """_one in its own process: MXNet and torch keep what a large model allocated (the whole zoo in
    one process ran out of 24 GB at densenet161), and a model that does not fit is a row, not a crash."""
    cmd = [sys.executable, "-m", "ganparity.benchmarks.port_zoo", "--one", name, "--semantics", semantics,
           "--shape", _shape_text(shape), "--optimizer", optimizer, "--steps", str(steps)]
    cmd += ["--onnx"] if onnx else []
    env = os.environ | ZOO_ENV.get(name, {})
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT.parents[1], env=env)
    if res.returncode == 0:
        return json.loads(res.stdout.strip().splitlines()[-1])
    why = ("killed (SIGKILL: out of memory on this machine)" if res.returncode == -9 else
           (res.stderr.strip().splitlines() or [f"exit code {res.returncode}"])[-1])
    return {"model": name, "semantics": semantics, "input": list(shape), "verdict": "refused", "error": why}


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.3g}" if isinstance(v, float) else str(v)


def _size(shape) -> str:
    """An input as the tables show it: 2x3x64x64, or several inputs ('2,8:int + 2:int:1..8')."""
    return " + ".join(shape) if shape and isinstance(shape[0], str) else "x".join(map(str, shape))


def _onnx_cell(arm: dict | None) -> str:
    if not arm:
        return "-"
    return f"ran, max rel {arm['max_rel']:.3g}" if arm["verdict"] == "ran" else f"{arm['verdict']}: {arm['error']}"


def write(rows: list[dict], meta: dict, stem: str = "port-zoo") -> None:
    ROOT.mkdir(parents=True, exist_ok=True)
    write_json(ROOT / f"{stem}.json", {"meta": meta, "rows": rows})
    onnx = "onnx" in meta
    title = "GluonCV and GluonNLP" if meta["which"] == "gluoncv" else "the Gluon model zoo"
    lines = [f"# `ganparity port` on {title}", "",
             f"Machine: {meta['machine']}; {meta.get('versions', '')}; input {_size(meta['shape'])} unless the row "
             f"says; optimizer {_optimizer(meta)}, K = {meta['steps']}; models: {meta['which']}. Each proof's "
             "verdict (agree / cannot tell here / differ), its rows' verdicts, the fp32 max relative error of its "
             "main rows, and every row that did not agree, with why."
             + (f" The ONNX column: {meta['onnx']} (max |a - b| / max |b| over the outputs, float32)." if onnx
                else ""),
             "",
             *[f"- {m}: built with --zoo-args {','.join(f'{k}={v}' for k, v in ZOO_ARGS[m].items())}"
               for m in dict.fromkeys(r["model"] for r in rows) if m in ZOO_ARGS],
             *[f"- {m}: run with {' '.join(f'{k}={v}' for k, v in ZOO_ENV[m].items())} (MXNet 1.9.1's oneDNN fails "
               "in its training step's BatchNorm on 5-D inputs; the port says so and names this way out)"
               for m in dict.fromkeys(r["model"] for r in rows) if m in ZOO_ENV],
             "",
             "| model | semantics | input | proof | rows agree / cannot tell / differ | tensors | fwd train | fwd eval "
             "| grads | step K | port s | proof s | rows that did not agree |"
             + (" ONNX + onnx2torch |" if onnx else ""),
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|" + ("---|" if onnx else "")]
    for r in rows:
        size = _size(r.get("input") or SIZES.get(r["model"], meta["shape"]))
        counts = " / ".join(str(r["rows"][v]) for v in ("agree", "cannot tell here", "differ")) if "rows" in r \
            else "-"
        lines.append("| " + " | ".join(_fmt(r.get(k)) for k in ("model", "semantics")) + f" | {size} | "
                     + f"{verdict_of(r)} | {counts} | "
                     + " | ".join(_fmt(r.get(k)) for k in ("tensors", "forward_train", "forward_eval",
                                                          "gradients", "k_step", "port_s", "proof_s"))
                     + f" | {r.get('error', '')} |" + (f" {_onnx_cell(r.get('onnx'))} |" if onnx else ""))
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


def _refusal_ops(error: str) -> str:
    """The ops a refusal names ('unsupported: the op X at ...; the op Y ...'), or its first words."""
    import re

    ops = list(dict.fromkeys(re.findall(r"the op ([\w.]+)", error)))
    if ops:
        return ", ".join(ops)
    return error if len(error) <= 90 else error[:87] + "..."


def counts(vision: dict, zoos: dict | None) -> str:
    """A few lines for the README: how many models of each zoo table port and what their proofs say,
    the ops in the way of the rest, and how far the usual road (mx2onnx + onnx2torch) gets."""
    lines = []
    for data, what in ((vision, "MXNet's vision zoo"), (zoos, "GluonCV and GluonNLP (a model of each family)")):
        if not data:
            continue
        rows = [r for r in data["rows"] if r["semantics"] == "torch"] or data["rows"]
        ported = [r for r in rows if verdict_of(r) != "refused"]
        tally = {v: sum(verdict_of(r) == v for r in ported) for v in ("agree", "cannot tell here", "differ")}
        line = (f"- {what}: {len(ported)} of {len(rows)} port; their proofs (torch semantics): "
                f"{tally['agree']} agree, {tally['cannot tell here']} cannot tell here, {tally['differ']} differ")
        refused = [f"{r['model'].split(':')[-1]} ({_refusal_ops(r.get('error', ''))})" for r in rows
                   if verdict_of(r) == "refused"]
        line += f"; refused: {'; '.join(refused)}" if refused else ""
        arms = [r["onnx"] for r in rows if r.get("onnx")]
        if arms:
            ran = sum(a["verdict"] == "ran" for a in arms)
            close = sum(a["verdict"] == "ran" and a["max_rel"] <= 1e-4 for a in arms)
            line += (f". The usual road (mx2onnx at opset {arms[0]['opset']}, onnx2torch) converts and runs {ran} "
                     f"of {len(arms)} ({close} within 1e-4 of the Gluon block's eval forward; it checks no "
                     "training mode, gradient or step)")
        lines.append(line + ".")
    return "\n".join(lines)


def times_table(data: dict) -> str:
    """Per row: the model, its input, how long the port took to write and its proof to run."""
    lines = ["| model | semantics | input | tensors | port s | proof s | proof |", "|---|---|---|---|---|---|---|"]
    for r in data["rows"]:
        size = _size(r["input"])
        lines.append(f"| {r['model']} | {r['semantics']} | {size} | {r.get('tensors', '-')} | {_fmt(r.get('port_s'))} "
                     f"| {_fmt(r.get('proof_s'))} | {verdict_of(r)} |")
    return "\n".join(lines)


def _optimizer(meta: dict) -> str:
    return meta.get("optimizer") or meta.get("trainer", "")  # files written before the rename say 'trainer'


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models", default=",".join(SUBSET),
                   help="comma-separated models (a vision zoo name, ZOO:NAME, FILE.py:FUNCTION), 'all' (MXNet's "
                        "vision zoo) or 'gluoncv' (a model of each GluonCV family, GluonNLP's BERT and Transformer)")
    p.add_argument("--shape", default="2,3,64,64", help="the input batch shape (some models have their own: SIZES)")
    p.add_argument("--semantics", default="torch,mxnet", help="comma list of the port's semantics: torch, mxnet")
    p.add_argument("--optimizer", default="sgd:lr=0.01", metavar="NAME:KEY=VALUE,...",
                   help="the Gluon trainer each port's proof steps (as `ganparity port --optimizer`)")
    p.add_argument("--trainer", dest="optimizer", action=_DeprecatedTrainer, help="deprecated: --optimizer")
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="optimizer steps each proof compares")
    p.add_argument("--onnx", action="store_true",
                   help="also convert each model the usual way (mx2onnx at opset 13, onnx2torch) and compare its "
                        "eval forward (the zoo extra)")
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
            print(json.dumps(_one(a.one, _parse_shape(a.shape), a.semantics, a.optimizer, a.steps, Path(tmp),
                                  a.onnx)))
        return
    names = {"all": ZOO, "gluoncv": GLUONCV}.get(a.models) or a.models.split(",")
    shape = _parse_shape(a.shape)
    meta = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs", "shape": shape,
            "optimizer": a.optimizer, "steps": a.steps,
            "which": a.models if a.models in ("all", "gluoncv") else ", ".join(names), "versions": _versions()}
    if a.onnx:
        meta["onnx"] = "mx2onnx (mxnet's exporter) at opset 13, then onnx2torch; eval forward only"
    rows, kept = [], []
    if a.merge:
        old = json.loads((ROOT / f"{a.stem}.json").read_text())
        meta, kept = old["meta"], old["rows"]
    order = {n: i for i, n in enumerate(ZOO + GLUONCV + [n for n in names if n not in ZOO + GLUONCV])}
    for name in names:
        for sem in a.semantics.split(","):
            rows.append(_isolated(name, SIZES.get(name, shape), sem, a.optimizer, a.steps, a.onnx))
            print(json.dumps(rows[-1]), flush=True)
            new = {(r["model"], r["semantics"]) for r in rows}
            every = [r for r in kept if (r["model"], r["semantics"]) not in new and r["model"] in order] + rows
            write(sorted(every, key=lambda r: (order.get(r["model"], len(order)), r["semantics"])), meta, a.stem)


def _versions() -> str:
    """The versions behind a table: the frameworks, and the model zoos and ONNX packages where installed."""
    from importlib import metadata as md

    found = []
    for dist in ("torch", "mxnet", "numpy", "gluoncv", "gluonnlp", "onnx", "onnx2torch"):
        try:
            found.append(f"{dist} {md.version(dist)}")
        except md.PackageNotFoundError:
            pass
    return ", ".join(found)


if __name__ == "__main__":
    main()
