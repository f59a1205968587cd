"""`ganparity compare`: check your own port, any PyTorch module against any Gluon block.

    ganparity compare --torch mypkg.models:make_net --mxnet mypkg.models:make_block \\
        --input-shape 4,3,64,64 --mode train --optimizer adam:lr=2e-4,beta1=0.5 --steps 2 --out reports/port

Exit status: 0 when every row agrees, 1 when the models differ (the report names the first
diverging layer and a hint), 3 when none differs but some row cannot tell, 2 for bad input (a
one-line error: a factory that does not import or fails, tensors that do not pair, an input
shape that one model rejects). The work is in common/compare/; the frameworks are reached
through get_backend.
"""

from __future__ import annotations

import argparse
import os
import sys

from ..compare import DEFAULT_OPTIMIZER, LOSSES, MODES, OPTIMIZERS, compare_models, load_factory, parse_shape
from ..files import check_output_path
from ..verdicts import AGREE, EXIT_CODES
from .args import deprecation_note, nonnegative_int, seed


def cmd_compare(a) -> None:
    if os.getcwd() not in sys.path:  # `ganparity` (a console script) cannot import from . otherwise
        sys.path.insert(0, os.getcwd())
    shape = parse_shape(a.input_shape)
    if "follow=" in a.optimizer:
        deprecation_note("follow= in --optimizer", "--semantics")
    if a.out:  # the report's folder: checked before anything runs (common/files.py)
        check_output_path(a.out, kind="dir", manifest="report.json", owned=("report.md",), update=True)
    torch_model = load_factory(a.torch, "--torch")
    mxnet_model = load_factory(a.mxnet, "--mxnet")
    report = compare_models(torch_model, mxnet_model, shape, mode=a.mode, loss=a.loss, optimizer=a.optimizer,
                            steps=a.steps, mapping=a.mapping, fp64=not a.no_fp64, seed=a.seed,
                            sources={"torch": a.torch, "mxnet": a.mxnet}, semantics=a.semantics,
                            weights=a.weights)
    print(report.summary())
    if a.out:
        md, js = report.write(a.out)
        print(f"wrote {md} and {js}")
    if report.verdict != AGREE:
        raise SystemExit(EXIT_CODES[report.verdict])


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser(
        "compare", help="check your own port: a PyTorch module against a Gluon block, layer by layer",
        description="Walk both models with forward hooks, pair their tensors by kind and shape, copy the weights "
                    "as numpy, and compare every layer's output (train and eval mode), the gradients and K "
                    "optimizer steps (their updates), each row agree / differ / cannot tell here. Exit 0 when every "
                    "row agrees, 1 when one differs, 3 when none differs but some cannot tell, 2 on bad input.")
    s.add_argument("--torch", required=True, metavar="MODULE:FUNCTION",
                   help="a factory returning the torch.nn.Module (pkg.mod:make_net or path/file.py:make_net)")
    s.add_argument("--mxnet", required=True, metavar="MODULE:FUNCTION",
                   help="a factory returning the gluon.Block (its parameters may be uninitialized)")
    s.add_argument("--input-shape", required=True, metavar="N,C,H,W",
                   help="the batch to draw (N(0, 1) in numpy), batch axis first, e.g. 4,3,64,64")
    s.add_argument("--mode", default="train", choices=MODES,
                   help="mode of the gradient and step checks (the forward is compared in both; default train)")
    s.add_argument("--loss", default="projection", choices=LOSSES,
                   help="loss to back-propagate (default projection: the outputs dotted with a fixed random tensor)")
    s.add_argument("--optimizer", default=DEFAULT_OPTIMIZER, metavar="NAME:KEY=VALUE,...",
                   help=f"{' or '.join(OPTIMIZERS)} with settings, e.g. adam:lr=2e-4,beta1=0.5 or "
                        f"sgd:lr=0.1,momentum=0.9,wd=1e-4 (default {DEFAULT_OPTIMIZER})")
    s.add_argument("--steps", type=nonnegative_int, default=1, metavar="K",
                   help="optimizer steps to compare (default 1)")
    s.add_argument("--mapping", metavar="FILE.json",
                   help='pairs auto-mapping cannot infer: {"layers": {torch: mxnet}, "tensors": {torch: mxnet}, '
                        '"ignore": {"torch": [...], "mxnet": [...]}}')
    s.add_argument("--out", metavar="DIR", help="write report.md and report.json here")
    s.add_argument("--semantics", default=None, choices=("torch", "mxnet"),
                   help="whose Adam both optimizers follow (eps placement, float32 betas; default torch)")
    s.add_argument("--weights", default="torch", choices=("torch", "mxnet", "own"),
                   help="whose initial weights both start from; own: each keeps its own, and a first row checks "
                        "they are equal (a port copies; default torch)")
    s.add_argument("--seed", type=seed, default=0, help="numpy seed of the input batch and targets (default 0)")
    s.add_argument("--no-fp64", action="store_true",
                   help="skip the float64 control run (judge on the fixed tolerance alone)")
    s.set_defaults(fn=cmd_compare)
