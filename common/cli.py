"""The `ganparity` command. Every subcommand has --help; a bad value exits 2 with one line."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from pathlib import Path

import numpy as np

from . import weights as W
from .backend import BACKENDS, available, get_backend
from .errors import GanparityError, choose
from .registry import GAN_SPECS, REGISTRY, get_spec, parse_knobs


def _spec_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--spec", required=required, metavar="NAME", help=f"one of: {', '.join(REGISTRY)}")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", default=[],
                   help="override a width knob, e.g. --set ngf=16 --set image_size=32 (repeatable)")


def _backends(text: str) -> list[str]:
    names = [b.strip() for b in text.split(",") if b.strip()]
    for b in names:
        choose("backend", b, BACKENDS)
    return names


def cmd_specs(a) -> None:
    from .porting import spec_table
    from .registry import CLASSIFIER_REGISTRY, get_classifier

    for name in [a.name] if a.name else [*GAN_SPECS, *CLASSIFIER_REGISTRY]:
        knobs = parse_knobs(a.set)
        spec = get_classifier(name, **knobs) if name in CLASSIFIER_REGISTRY else get_spec(name, **knobs)
        print(spec_table(spec))
        print()


def cmd_porting(a) -> None:
    from .porting import porting_sheet

    text = porting_sheet([a.spec] if a.spec else None)
    if a.out:
        Path(a.out).write_text(text)
        print(f"wrote {a.out}")
    else:
        print(text)


def cmd_init(a) -> None:
    spec = get_spec(a.spec, **parse_knobs(a.set))
    arrays = W.init_arrays(spec, a.seed)
    W.save(a.out, arrays)
    print(f"wrote {a.out}: {len(arrays)} tensors of {spec.name} {spec.params}, init {spec.init.name}, seed {a.seed}")


def cmd_forward(a) -> None:
    spec = get_spec(a.spec, **parse_knobs(a.set))
    arrays = W.validate(W.split(W.load(a.weights), a.net), spec, (a.net,), what=f"weights {a.weights!r}")
    x = np.load(a.input)
    model = spec.nets[a.net]
    if tuple(x.shape[1:]) != tuple(model.input_shape):
        raise GanparityError(f"input {a.input!r} has shape {x.shape}; {a.net} of {spec.name} takes "
                             f"(batch, {', '.join(map(str, model.input_shape))})")
    be = get_backend(a.backend)
    net = be.build(model, device=a.device)
    be.set_arrays(net, model, arrays)
    y = be.forward(net, x.astype(np.float32), a.mode)
    np.save(a.out, y)
    print(f"wrote {a.out}: {a.backend} {a.net}({tuple(x.shape)}) -> {tuple(y.shape)} in {a.mode} mode")


def cmd_convert(a) -> None:
    from .parity import compare

    spec = get_spec(a.spec, **parse_knobs(a.set))
    src, dst = get_backend(a.src), get_backend(a.dst)
    arrays = W.validate(src.load_native(a.input, spec.nets), spec, what=f"{a.src} checkpoint {a.input!r}")
    nets = {n: dst.build(m) for n, m in spec.nets.items()}
    for n, m in spec.nets.items():
        dst.set_arrays(nets[n], m, W.split(arrays, n))
    dst.save_native(a.output, {n: (nets[n], m) for n, m in spec.nets.items()})
    # Verify: reload what was written, and compare an eval-mode forward of both frameworks.
    back = W.validate(dst.load_native(a.output, spec.nets), spec, what=f"written {a.output!r}")
    src_nets = {n: src.build(m) for n, m in spec.nets.items()}
    rng = np.random.default_rng(0)
    worst = 0.0
    for n, m in spec.nets.items():
        src.set_arrays(src_nets[n], m, W.split(arrays, n))
        dst.set_arrays(nets[n], m, W.split(back, n))
        x = rng.standard_normal((4,) + tuple(m.input_shape)).astype(np.float32)
        diff = compare({n: src.forward(src_nets[n], x, "eval")}, {n: dst.forward(nets[n], x, "eval")})[0]
        worst = max(worst, diff.max_rel)
        if not diff.ok:
            raise GanparityError(f"conversion check failed: {n} outputs differ by {diff.max_rel:.2e} (relative)")
    print(f"wrote {a.output} ({a.dst}); verified: eval forward of G and D agree, max relative error {worst:.1e}")


def cmd_parity(a) -> None:
    from .report import parity_section, run_parity

    backends = _backends(a.backends)
    if len(backends) != 2:
        raise GanparityError(f"--backends takes two names (reference,candidate), got {a.backends!r}")
    specs = [a.spec] if a.spec else list(GAN_SPECS)
    checks = run_parity(specs, backends, a.steps, parse_knobs(a.set), a.batch, fp64=not a.no_fp64)
    print(parity_section(checks))
    if a.json:
        import json

        Path(a.json).write_text(json.dumps([c.to_dict() for c in checks], indent=1))
        print(f"wrote {a.json}")
    if not all(c.ok for c in checks):
        raise SystemExit(1)


def cmd_report(a) -> None:
    from .report import main_report

    main_report(Path(a.out), _backends(a.backends) if a.backends else available(), steps=a.steps)


# Subcommands that live beside their code: module.register(subparsers) adds them.
EXTENSIONS = ("common.train_cli", "benchmarks.cli", "common.dogs")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ganparity", description=(
        "One framework-neutral spec per GAN; PyTorch and MXNet Gluon backends; proof, with "
        "numbers, that they agree; and what each costs."))
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("specs", help="porting table of a spec: layers, shapes, params, both frameworks' calls")
    s.add_argument("name", nargs="?", help=f"one of: {', '.join(REGISTRY)}, resnet34-finetune (default: all)")
    s.add_argument("--set", action="append", metavar="KEY=VALUE", default=[], help="override a width knob")
    s.set_defaults(fn=cmd_specs)

    s = sub.add_parser("porting", help="the porting sheet: hyperparameters per backend and every framework difference")
    s.add_argument("spec", nargs="?", help="one spec (default: all)")
    s.add_argument("--out", metavar="FILE", help="write markdown here instead of printing it")
    s.set_defaults(fn=cmd_porting)

    s = sub.add_parser("init", help="draw a spec's initial weights in numpy and write them as .npz")
    _spec_args(s)
    s.add_argument("--seed", type=int, default=0, help="numpy seed (default 0)")
    s.add_argument("--out", required=True, metavar="FILE.npz", help="where to write the weights")
    s.set_defaults(fn=cmd_init)

    s = sub.add_parser("forward", help="run G or D of a backend on a .npy batch with neutral weights")
    _spec_args(s)
    s.add_argument("--backend", required=True, help=f"one of: {', '.join(BACKENDS)}")
    s.add_argument("--weights", required=True, metavar="FILE.npz", help="neutral weights (ganparity init)")
    s.add_argument("--net", required=True, choices=("G", "D"), help="which network")
    s.add_argument("--input", required=True, metavar="X.npy", help="a batch: (N, *input shape)")
    s.add_argument("--out", required=True, metavar="Y.npy", help="where to write the output")
    s.add_argument("--mode", default="eval", choices=("train", "eval"),
                   help="train: batch statistics; eval: running statistics (default)")
    s.add_argument("--device", default="cpu", help="cpu or cuda")
    s.set_defaults(fn=cmd_forward)

    s = sub.add_parser("convert", help="turn one framework's native GAN checkpoint into the other's, verified")
    _spec_args(s)
    s.add_argument("--from", dest="src", required=True, help=f"source backend: {', '.join(BACKENDS)}")
    s.add_argument("--to", dest="dst", required=True, help=f"target backend: {', '.join(BACKENDS)}")
    s.add_argument("input", metavar="IN", help="native checkpoint (.pt for torch, .params for mxnet)")
    s.add_argument("output", metavar="OUT", help="where to write the converted checkpoint")
    s.set_defaults(fn=cmd_convert)

    s = sub.add_parser("parity", help="numerical parity: forward, gradients, one step, lockstep")
    _spec_args(s, required=False)
    s.add_argument("--backends", default="torch,mxnet", help="reference,candidate (default torch,mxnet)")
    s.add_argument("--steps", type=int, default=20, help="lockstep steps (default 20)")
    s.add_argument("--batch", type=int, default=None, help="batch size (default: 32, gan-gaussian its own 8)")
    s.add_argument("--no-fp64", action="store_true", help="skip the float64 control runs")
    s.add_argument("--json", metavar="FILE", help="also write the full results as JSON")
    s.set_defaults(fn=cmd_parity)

    s = sub.add_parser("report", help="the main job: every spec x backend, written under reports/")
    s.add_argument("--out", default="reports", help="output folder (default reports/)")
    s.add_argument("--backends", default=None, help="comma list (default: every installed backend)")
    s.add_argument("--steps", type=int, default=20, help="lockstep steps (default 20)")
    s.set_defaults(fn=cmd_report)

    for module in EXTENSIONS:  # each has register(subparsers); imported lazily, framework-free
        if importlib.util.find_spec(module) is not None:
            importlib.import_module(module).register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.fn(args)
    except GanparityError as e:
        print(f"ganparity: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ganparity: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
