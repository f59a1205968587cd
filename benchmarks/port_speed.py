"""The speed of what `ganparity port` writes: each Gluon model-zoo model's written model.py against
torchvision's hand-written twin of the same network, per train step (SGD with momentum: forward,
cross-entropy, backward, step) and per eval forward (no_grad), contiguous and channels_last, all
arms interleaved in the same rounds (one process, the same threads, the same inputs).

    ganparity bench port-speed [--models resnet18_v1,...] [--shape 4,3,224,224] [--rounds 7]

Where the Gluon network is not torchvision's, the twin is torchvision's model edited into Gluon's
network (TWINS: resnet50_v1's stride and 1x1 biases, mobilenet_v2_1_0's first expansion and head),
and the stock torchvision model is timed beside it; each row counts both models' FLOPs
(torch.utils.flop_counter) and parameters, so "the same network" is measured, not assumed.

Writes benchmarks/results/port-speed.md and .json. A benchmark, not a test: the ratios are this
machine's, and a ratio inside the rounds' spread is not a finding.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path

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


def _resnet50_v1(tv):
    """torchvision's resnet50 (v1.5: a bottleneck strides in its 3x3 convolution, its 1x1
    convolutions have no bias) edited into Gluon's resnet50_v1 (the stride in the first 1x1, both
    1x1 convolutions with a bias)."""
    from torch import nn

    m = tv.resnet50()
    for stage in (m.layer1, m.layer2, m.layer3, m.layer4):
        for b in stage:
            stride = b.conv2.stride
            b.conv1 = nn.Conv2d(b.conv1.in_channels, b.conv1.out_channels, 1, stride=stride, bias=True)
            b.conv2.stride = (1, 1)
            b.conv3 = nn.Conv2d(b.conv3.in_channels, b.conv3.out_channels, 1, bias=True)
    return m


def _mobilenet_v2_1_0(tv):
    """torchvision's mobilenet_v2 edited into Gluon's mobilenet_v2_1_0: Gluon's first bottleneck
    (expansion t=1) keeps its 1x1 expansion convolution, BatchNorm and ReLU6, which torchvision
    leaves out at t=1; Gluon's head is a 1x1 convolution without bias (torchvision: dropout 0.2 and
    a Linear with bias)."""
    from torch import nn
    from torchvision.ops.misc import Conv2dNormActivation

    m = tv.mobilenet_v2()
    first = m.features[1]
    first.conv = nn.Sequential(Conv2dNormActivation(32, 32, kernel_size=1, activation_layer=nn.ReLU6), *first.conv)
    m.classifier = nn.Linear(1280, 1000, bias=False)
    return m


# Gluon zoo name -> (torchvision's model, the twin edited into Gluon's network or None where they are one)
TWINS = {"resnet18_v1": ("resnet18", None), "resnet34_v1": ("resnet34", None),
         "resnet50_v1": ("resnet50", _resnet50_v1),
         "mobilenet_v2_1_0": ("mobilenet_v2", _mobilenet_v2_1_0), "densenet121": ("densenet121", None),
         "densenet169": ("densenet169", None), "vgg11_bn": ("vgg11_bn", None), "vgg16_bn": ("vgg16_bn", None)}
# what differs between the Gluon network and torchvision's, said in the results beside the ratios
DIFFERENCES = {
    "resnet50_v1": "Gluon's v1 bottleneck strides in its first 1x1 convolution (torchvision's v1.5 in the 3x3) and "
                   "its 1x1 convolutions have a bias: fewer FLOPs than torchvision's resnet50",
    "mobilenet_v2_1_0": "Gluon's first bottleneck keeps a 1x1 expansion convolution + BatchNorm + ReLU6 at "
                        "expansion 1 (torchvision leaves it out); its head is a 1x1 convolution without bias "
                        "(torchvision: dropout and a Linear with bias)",
    **{v: "torchvision's head starts with AdaptiveAvgPool2d((7, 7)) (an identity at 224 px); otherwise one network"
       for v in ("vgg11_bn", "vgg16_bn")},
}


def _load_written(folder: Path):
    """The written model.py's build() and load(), imported as a user would import their port."""
    spec = importlib.util.spec_from_file_location(f"written_{folder.name}", folder / "model.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.load()


def _count(model, x) -> tuple[float, int]:
    """(forward GFLOPs at x, parameters and buffers) of a torch model."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(x)
    size = sum(p.numel() for p in model.parameters()) + sum(
        b.numel() for n, b in model.named_buffers() if not n.endswith("num_batches_tracked"))
    return fc.get_total_flops() / 1e9, size


def _arms(models: dict, shape: tuple, layouts: list[str], seed: int) -> dict:
    """The step callables: for each model, layout and mode, one arm; every model starts each arm
    from the same input and labels."""
    import torch

    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g)
    y = torch.randint(0, 1000, (shape[0],), generator=g)
    arms = {}
    for name, model in models.items():
        for layout in layouts:
            fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
            m = copy.deepcopy(model).to(memory_format=fmt)  # .to() converts in place: one copy per layout
            xi = x.contiguous(memory_format=fmt)
            opt = torch.optim.SGD(m.parameters(), lr=1e-3, momentum=0.9)

            def train(m=m, xi=xi, opt=opt):
                m.train()
                opt.zero_grad(set_to_none=True)
                out = m(xi)
                loss = torch.nn.functional.cross_entropy(out.flatten(1), y)
                loss.backward()
                opt.step()
                return loss

            def evaluate(m=m, xi=xi):
                m.eval()
                with torch.no_grad():
                    return m(xi)

            arms[f"{name} {layout} train"] = train
            arms[f"{name} {layout} eval"] = evaluate
    return arms


def measure(name: str, shape: tuple, rounds: int, layouts: list[str], threads: int, work: Path, log=print) -> dict:
    """One model's row: port it, build its twin (and torchvision's stock model where they differ),
    count each one's FLOPs and size, time every arm interleaved; the ratios written / twin."""
    import torch
    import torchvision

    from ..common.port import port

    tv_name, edit = TWINS[name]
    pshape = PORT_SHAPES.get(name, (1, 3, 64, 64))
    t0 = time.perf_counter()
    r = port(f"mxnet.gluon.model_zoo.vision:{name}", pshape, work / name, steps=0)
    log(f"port-speed: {name} ported at {'x'.join(map(str, pshape))} in {time.perf_counter() - t0:.0f} s "
        f"(proof: {r.proof.verdict})")
    set_threads(threads)  # importing mxnet resets torch's thread pool
    torch.manual_seed(0)
    models = {"written": _load_written(r.out),
              "twin": edit(torchvision.models) if edit else getattr(torchvision.models, tv_name)()}
    if edit:
        models["torchvision"] = getattr(torchvision.models, tv_name)()
    x = torch.randn(shape)
    counted = {k: _count(m, x) for k, m in models.items()}
    log(f"port-speed: {name}: " + ", ".join(f"{k} {f:.2f} GFLOPs {s:,} values" for k, (f, s) in counted.items()))
    timed = time_interleaved(_arms(models, shape, layouts, 0), lambda: None, rounds=rounds, warmup=2,
                             min_round_s=0.2)
    arms = {k: {q: v[q] for q in ("median_ms", "p10_ms", "p90_ms", "steps_per_round")} for k, v in timed.items()}
    ratios = {}
    for layout in layouts:
        for mode in ("train", "eval"):
            w, t = arms[f"written {layout} {mode}"], arms[f"twin {layout} {mode}"]
            ratios[f"{layout} {mode}"] = w["median_ms"] / t["median_ms"]
    return {"model": name, "twin": tv_name + (" (edited into Gluon's network)" if edit else ""),
            "shape": list(shape), "port_shape": list(pshape), "proof": r.proof.verdict,
            "gflops": {k: f for k, (f, _) in counted.items()}, "values": {k: s for k, (_, s) in counted.items()},
            "same_network": counted["written"] == counted["twin"], "arms": arms, "ratios": ratios,
            "worst": max(ratios.values()), "difference": DIFFERENCES.get(name, "")}


def markdown(data: dict) -> str:
    meta, rows = data["meta"], data["rows"]
    layouts = meta["layouts"]
    head = ["model", "twin", "GFLOPs written / twin", "same network"] + [f"x twin {k}" for k in
                                                                          (f"{lay} {m}" for lay in layouts
                                                                           for m in ("train", "eval"))] + \
        ["written train ms", "twin train ms", f"within x{GOAL}"]
    body = []
    for r in rows:
        lay = layouts[0]
        w, t = r["arms"][f"written {lay} train"], r["arms"][f"twin {lay} train"]
        body.append([r["model"], r["twin"], f"{r['gflops']['written']:.3g} / {r['gflops']['twin']:.3g}",
                     "yes" if r["same_network"] else "no"] + [f"x{v:.3f}" for v in r["ratios"].values()] +
                    [f"{w['median_ms']:.0f} ({w['p10_ms']:.0f}-{w['p90_ms']:.0f})",
                     f"{t['median_ms']:.0f} ({t['p10_ms']:.0f}-{t['p90_ms']:.0f})",
                     "yes" if r["worst"] <= GOAL else f"no (x{r['worst']:.3f})"])
    stock = [r for r in rows if "torchvision" in r["gflops"]]
    lines = ["# What `ganparity port` writes, against torchvision's hand-written twin", "",
             f"{meta['machine']}, {meta['threads']} threads, torch {meta['torch']}; input "
             f"{'x'.join(map(str, meta['shape']))}; median of {meta['rounds']} interleaved rounds "
             "(ms, p10-p90 in brackets); ratio = written / twin (below 1: the written code is faster).", "",
             md_table(head, body), ""]
    if stock:
        lines += ["Where Gluon's network is not torchvision's, the twin above is torchvision's model edited into "
                  "Gluon's network; the stock torchvision model, timed in the same rounds:", ""]
        sb = []
        for r in stock:
            for lay in layouts:
                s, w = r["arms"][f"torchvision {lay} train"], r["arms"][f"written {lay} train"]
                se, we = r["arms"][f"torchvision {lay} eval"], r["arms"][f"written {lay} eval"]
                sb.append([r["model"], lay, f"{r['gflops']['torchvision']:.3g}", f"{s['median_ms']:.0f}",
                           f"x{w['median_ms'] / s['median_ms']:.3f}", f"x{we['median_ms'] / se['median_ms']:.3f}"])
        lines += [md_table(["model", "layout", "torchvision GFLOPs", "torchvision train ms", "x torchvision train",
                            "x torchvision eval"], sb), ""]
    lines += ["Differences between the Gluon network and torchvision's:", ""]
    lines += [f"- {r['model']}: {r['difference']}" for r in rows if r["difference"]]
    lines += ["", f"Written by `{meta['command']}` ({meta['date']}, load average at the start "
              f"{meta['load_start']}, at the end {meta['load_end']})."]
    return "\n".join(lines) + "\n"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models", default=",".join(DEFAULT_MODELS),
                   help=f"comma list of Gluon zoo names with a torchvision twin: {', '.join(TWINS)}")
    p.add_argument("--shape", default="4,3,224,224", help="the batch each arm is timed at")
    p.add_argument("--rounds", type=int, default=7, help="interleaved rounds per model")
    p.add_argument("--layouts", default="contiguous,channels_last", help="comma list: contiguous, channels_last")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--stem", default="port-speed", help="results file name under benchmarks/results")


def run(a: argparse.Namespace) -> None:
    import os
    import platform

    import torch

    from ..common.errors import choose

    names = a.models.split(",")
    for n in names:
        choose("model", n, list(TWINS))
    layouts = a.layouts.split(",")
    for lay in layouts:
        choose("layout", lay, ["contiguous", "channels_last"])
    shape = tuple(int(v) for v in a.shape.split(","))
    set_threads(a.threads)
    meta = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "threads": a.threads,
            "torch": torch.__version__, "shape": list(shape), "rounds": a.rounds, "layouts": layouts,
            "load_start": f"{os.getloadavg()[0]:.2f}"} | {k: v for k, v in metadata("torch", "cpu").items()
                                                        if k in ("date", "git_commit", "command")}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            rows.append(measure(name, shape, a.rounds, layouts, a.threads, Path(tmp),
                                log=lambda s: print(s, file=sys.stderr, flush=True)))
            print(json.dumps({k: rows[-1][k] for k in ("model", "ratios", "gflops")}), flush=True)
    meta["load_end"] = f"{os.getloadavg()[0]:.2f}"
    data = {"meta": meta, "rows": rows}
    ROOT.mkdir(parents=True, exist_ok=True)
    write_json(ROOT / f"{a.stem}.json", data)
    write_text(ROOT / f"{a.stem}.md", markdown(data))
    print(f"wrote {ROOT / a.stem}.md and .json", file=sys.stderr)
    worst = max(r["worst"] for r in rows)
    print(f"worst ratio x{worst:.3f} ({'within' if worst <= GOAL else 'beyond'} x{GOAL})")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(p)
    run(p.parse_args(argv))


if __name__ == "__main__":
    main()
