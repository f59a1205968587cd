"""The commands over the core: specs, differences, init, forward, convert."""

from __future__ import annotations

import argparse

import numpy as np

from .. import weights as W
from ..backend import BACKENDS, build_nets, get_backend
from ..errors import GanparityError
from ..files import write_npy, write_text, writing
from ..readers import check_finite, non_finite, read_npy, read_npz
from ..spec.registry import REGISTRY, get_spec, parse_knobs
from .args import DEVICES, backend_name, output_file, seed, spec_args


def cmd_specs(a) -> None:
    from ..sheets import spec_table

    for name in [a.name] if a.name else list(REGISTRY):
        print(spec_table(get_spec(name, **parse_knobs(a.set))))
        print()


def cmd_differences(a) -> None:
    from ..sheets import differences_sheet

    text = differences_sheet([a.spec] if a.spec else None)
    if a.out:
        with writing(a.out) as out:
            write_text(out, text)
        print(f"wrote {a.out}")
    else:
        print(text)


def cmd_init(a) -> None:
    spec = get_spec(a.spec, kind="gan", **parse_knobs(a.set))
    arrays = W.init_arrays(spec, a.seed)
    with writing(a.out) as out:
        W.save(out, arrays)
    print(f"wrote {a.out}: {len(arrays)} tensors of {spec.name} {spec.params}, init {spec.init.name}, seed {a.seed}")


def cmd_forward(a) -> None:
    spec = get_spec(a.spec, kind="gan", **parse_knobs(a.set))
    model = spec.nets[a.net]
    arrays = W.validate(W.split(read_npz(a.weights, "--weights"), a.net), spec, (a.net,),
                        what=f"weights {a.weights!r}")
    x = read_npy(a.input, f"--input (a batch for {a.net} of {spec.name})", shape=(None, *model.input_shape))
    x = check_finite(x.astype(np.float32), f"--input {a.input!r}")  # a float64 beyond float32's range: inf
    with writing(a.out) as out:  # one writer per output, from here to the rename
        be = get_backend(a.backend)
        net = be.build(model, device=a.device, semantics=spec.recipe.semantics)
        be.set_arrays(net, model, arrays)
        y = be.forward(net, x, a.mode)
        bad = non_finite(y)
        if bad:
            raise GanparityError(f"the output of {a.backend} {a.net} holds non-finite values ({bad}) although the "
                                 f"weights and the input are finite: an overflow in float32; nothing was written")
        write_npy(out, y)
    print(f"wrote {a.out}: {a.backend} {a.net}({tuple(x.shape)}) -> {tuple(y.shape)} in {a.mode} mode")


def cmd_convert(a) -> None:
    from ..parity import compare

    spec = get_spec(a.spec, kind="gan", **parse_knobs(a.set))
    src, dst = get_backend(a.src), get_backend(a.dst)
    arrays = W.validate(src.load_native(a.input, spec.nets), spec, what=f"{a.src} checkpoint {a.input!r}")
    nets = build_nets(dst, spec)
    for n, m in spec.nets.items():
        dst.set_arrays(nets[n], m, W.split(arrays, n))
    with writing(a.output, what="OUT") as out:
        dst.save_native(out, {n: (nets[n], m) for n, m in spec.nets.items()})
    # Verify: reload what was written, and compare an eval-mode forward of both frameworks.
    back = W.validate(dst.load_native(out, spec.nets), spec, what=f"written {a.output!r}")
    src_nets = build_nets(src, spec)
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


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("specs", help="the layer table of a spec: layers, shapes, params, both frameworks' calls")
    s.add_argument("name", nargs="?", help=f"one of: {', '.join(REGISTRY)} (default: all)")
    s.add_argument("--set", action="append", metavar="KEY=VALUE", default=[], help="override a width knob")
    s.set_defaults(fn=cmd_specs)

    s = sub.add_parser("differences", help="the differences sheet: hyperparameters and calls per backend, and every "
                                           "framework difference with what each backend does about it")
    s.add_argument("spec", nargs="?", help="one spec (default: all)")
    s.add_argument("--out", metavar="FILE", type=output_file, help="write markdown here instead of printing it")
    s.set_defaults(fn=cmd_differences)

    s = sub.add_parser("init", help="draw a spec's initial weights in numpy and write them as .npz")
    spec_args(s)
    s.add_argument("--seed", type=seed, default=0, help="numpy seed (default 0)")
    s.add_argument("--out", required=True, metavar="FILE.npz", type=output_file, help="where to write the weights")
    s.set_defaults(fn=cmd_init)

    s = sub.add_parser("forward", help="run G or D of a backend on a .npy batch with neutral weights")
    spec_args(s)
    s.add_argument("--backend", required=True, type=backend_name, help=f"one of: {', '.join(BACKENDS)}")
    s.add_argument("--weights", required=True, metavar="FILE.npz", help="neutral weights (ganparity init)")
    s.add_argument("--net", required=True, choices=("G", "D"), help="which network")
    s.add_argument("--input", required=True, metavar="X.npy", help="a batch: (N, *input shape)")
    s.add_argument("--out", required=True, metavar="Y.npy", type=output_file,
                   help="where to write the output (this exact name)")
    s.add_argument("--mode", default="eval", choices=("train", "eval"),
                   help="train: batch statistics; eval: running statistics (default)")
    s.add_argument("--device", default="cpu", choices=DEVICES, help="cpu or cuda (default cpu)")
    s.set_defaults(fn=cmd_forward)

    s = sub.add_parser("convert", help="turn one framework's native GAN checkpoint into the other's, verified")
    spec_args(s)
    s.add_argument("--from", dest="src", required=True, type=backend_name,
                   help=f"source backend: {', '.join(BACKENDS)}")
    s.add_argument("--to", dest="dst", required=True, type=backend_name, help=f"target backend: {', '.join(BACKENDS)}")
    s.add_argument("input", metavar="IN", help="native checkpoint (.pt for torch, .params for mxnet)")
    s.add_argument("output", metavar="OUT", type=output_file, help="where to write the converted checkpoint")
    s.set_defaults(fn=cmd_convert)
