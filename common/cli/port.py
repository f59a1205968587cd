"""`ganparity port`: port a Gluon model to PyTorch and write the proof beside it.

    ganparity port --mxnet mypkg.models:make_block [--params net.params] --input-shape 1,3,224,224 \\
        --out ported/ [--semantics torch|mxnet] [--optimizer adam:lr=2e-4,beta1=0.5] [--steps 2] [--force]
    ganparity port --symbol model-symbol.json --params model-0000.params --input-shape 1,3,224,224 --out ported/
    ganparity port --zoo gluoncv:yolo3_darknet53_coco --input-shape 1,3,128,128 --out ported/
    ganparity port --mxnet nlp.py:bert --input-shape 2,8:int --input-shape 2,8:int --input-shape 2:int:1..8 ...

Writes model.py, weights.pt, weights.npz, mapping.json, port.json, test_port.py, proof.json and
PORT.md. Exit 0 when every row of the proof agrees, 1 when a row differs (the files are still
written: PORT.md says where), 3 when none differs but some cannot tell, 2 on bad input or an
unsupported layer (one line; nothing written). The work is in common/port/.
"""

from __future__ import annotations

import argparse
import os
import sys

from ..errors import GanparityError
from ..port import DEFAULT_OPTIMIZER, DEFAULT_STEPS, SEMANTICS, port
from ..port.report import console_lines
from ..usermodel import parse_input
from ..verdicts import AGREE, EXIT_CODES
from .args import Deprecated, nonnegative_int, seed


def _zoo_args(text: str | None) -> dict:
    """'classes=10,units=64,vocab_size=100' -> {'classes': 10, ...} (numbers, True/False, words)."""
    import ast

    out = {}
    for item in filter(None, (t.strip() for t in (text or "").split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key.strip().isidentifier():
            raise GanparityError(f"--zoo-args {text!r}: {item!r} is not KEY=VALUE")
        try:
            out[key.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            out[key.strip()] = value.strip()
    return out


def cmd_port(a) -> None:
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    if a.symbol:
        source = {"symbol": a.symbol} | ({"inputs": a.input_names.split(",")} if a.input_names else {})
    elif a.zoo:
        source = {"zoo": a.zoo} | ({"args": _zoo_args(a.zoo_args)} if a.zoo_args else {})
    else:
        source = a.mxnet
    if a.zoo_args and not a.zoo:
        raise GanparityError("--zoo-args goes with --zoo")
    if a.input_names and not a.symbol:
        raise GanparityError("--input-names goes with --symbol (a factory's block names its own inputs)")
    specs = [parse_input(t) for t in a.input_shape]
    result = port(source, specs if len(specs) > 1 or specs[0].kind != "float" else specs[0].shape, a.out,
                  params=a.params, semantics=a.semantics, optimizer=a.optimizer, steps=a.steps, force=a.force,
                  seed=a.seed, log=lambda line: print(f"ganparity: {line}", file=sys.stderr))
    p, proof = result.port, result.proof
    print(f"ported {p.class_name}: {len(p.layers)} layers, {len(p.tensor_map)} tensors, semantics {a.semantics}, "
          f"{result.seconds['port']:.1f} s (+ proof {result.seconds['proof']:.1f} s)")
    print("\n".join(console_lines(proof)))
    print(f"{proof.verdict}: wrote {result.out}/ (model.py, weights.pt, mapping.json, test_port.py, PORT.md, ...)")
    if proof.verdict != AGREE:
        raise SystemExit(EXIT_CODES[proof.verdict])


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser(
        "port", help="port a Gluon model to PyTorch, with the proof (test_port.py, PORT.md) beside it",
        description="Read the Gluon block's graph, write one readable torch.nn.Module with its weights, and prove it "
                    "against the block: the weights, forward (train and eval), gradients and K optimizer steps, each "
                    "row agree / differ / cannot tell here. Exit 0 when every row agrees, 1 when one differs, 3 when "
                    "none differs but some cannot tell, 2 on bad input or an unsupported layer.")
    what = s.add_mutually_exclusive_group(required=True)
    what.add_argument("--mxnet", metavar="MODULE:FUNCTION",
                      help="a factory returning the gluon.Block or SymbolBlock (pkg.mod:make_block or "
                           "path/file.py:make_block)")
    what.add_argument("--symbol", metavar="MODEL-symbol.json",
                      help="the symbol file export() wrote (with --params MODEL-0000.params): imported as a "
                           "SymbolBlock, ported in the flat form, names from the symbol's nodes")
    what.add_argument("--zoo", metavar="ZOO:NAME",
                      help="a model-zoo network, never downloaded (pretrained=False, pretrained_base=False): "
                           "gluon:resnet50_v1, gluoncv:yolo3_darknet53_coco, gluonnlp:NAME; local weights with "
                           "--params")
    s.add_argument("--zoo-args", metavar="KEY=VALUE,...", help="arguments of the zoo's get_model (classes=10)")
    s.add_argument("--input-names", metavar="NAME,...",
                   help="--symbol: its input variables in order (default: those --params does not hold)")
    s.add_argument("--params", metavar="FILE.params",
                   help="Gluon parameters to load (save_parameters' file, or export()'s MODEL-0000.params)")
    s.add_argument("--input-shape", required=True, action="append", metavar="N,C,H,W[:int[:LOW..HIGH]]",
                   help="an input batch shape, e.g. 1,3,224,224; once per input, in the block's order; ':int' "
                        "draws whole numbers (token ids: the range of the Embedding that reads them; or LOW..HIGH, "
                        "both included: 2:int:1..8 for valid lengths)")
    s.add_argument("--out", required=True, metavar="DIR",
                   help="the folder to write: new or empty (never '.', a parent of it or home); with --force, an "
                        "earlier port's folder")
    s.add_argument("--semantics", default="torch", choices=SEMANTICS,
                   help="torch: a native PyTorch port (default); mxnet: emulate MXNet's BatchNorm statistics and Adam")
    s.add_argument("--optimizer", default=DEFAULT_OPTIMIZER, metavar="NAME:KEY=VALUE,...",
                   help=f"the Gluon trainer to port: adam:lr=..,beta1=..,beta2=..,eps=..,wd=.. or "
                        f"sgd:lr=..,momentum=..,wd=.. (default {DEFAULT_OPTIMIZER})")
    s.add_argument("--trainer", dest="optimizer", action=Deprecated, new="--optimizer", metavar="NAME:KEY=VALUE,...",
                   help="deprecated: --optimizer")
    s.add_argument("--steps", type=nonnegative_int, default=DEFAULT_STEPS, metavar="K",
                   help=f"optimizer steps to prove (default {DEFAULT_STEPS}: momentum and betas act from step 2)")
    s.add_argument("--force", action="store_true",
                   help="replace an earlier port in --out (a folder holding anything else is refused, naming it)")
    s.add_argument("--seed", type=seed, default=0, help="numpy seed of the proof's input batches (default 0)")
    s.set_defaults(fn=cmd_port)
