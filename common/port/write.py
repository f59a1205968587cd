"""`ganparity port`, the writer: read the Gluon block, write model.py and everything beside it into a
temporary folder next to --out, prove it there (checks.py), and rename it into place only when all
of it exists: nothing is ever half-written.

    model.py      the readable nn.Module (emit.py), build(), load(), make_optimizer(), gluon_step()
    weights.pt    its weights (and weights.npz, neutral, by torch name)
    mapping.json  torch name -> Gluon name of every tensor, and the BatchNorm layers
    port.json     what the proof needs to run again: the factory, its parameters, the input shape,
                  the optimizer, the steps, the semantics, the seed
    source.params the Gluon block's parameters as ported, when no --params was given
    test_port.py  the proof under pytest, through ganparity's public API (templates/test_port.py)
    proof.json    the proof's rows, as written (test_port.py holds each row to its verdict)
    PORT.md       every semantic choice and every row, in words and numbers
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..compare.run import refuse_nonfinite
from ..errors import GanparityError
from ..files import check_output_path, replacing_folder
from ..usermodel import optimizer_text, parse_input, parse_optimizer
from .checks import Proof, input_specs, port_backend, prove
from .emit import MXNET_ADAM, SEMANTICS, Port, emit
from .ops import missing_ops
from .report import port_md

DEFAULT_OPTIMIZER = "sgd:lr=0.01"
MANIFEST = "PORT.md"  # written last: a folder that holds it is a port
PORT_FILES = ("model.py", "weights.pt", "weights.npz", "mapping.json", "port.json", "source.params", "test_port.py",
              "proof.json", "__pycache__", ".pytest_cache")
DEFAULT_STEPS = 2  # SGD's momentum and Adam's betas act from the second step on
TEMPLATES = Path(__file__).with_name("templates")


@dataclass
class PortResult:
    out: Path
    port: Port
    proof: Proof
    seconds: dict[str, float]


def _trainer_text(setting: dict) -> str:
    return optimizer_text({k: v for k, v in setting.items() if k != "follow"})


def _mults_code(setting: dict, mults: dict[str, list[float]]) -> tuple[str, str]:
    """The parameter groups of Gluon's lr_mult / wd_mult (GluonCV's segmentation heads train at 10x
    the learning rate): the lines that make `params` groups, and the choice in words."""
    if not mults:
        return "    params = [p for p in model.parameters() if p.requires_grad]\n", ""
    entries = "".join(f"        {n!r}: ({float(a)!r}, {float(b)!r}),\n" for n, (a, b) in sorted(mults.items()))
    code = (f"    mults = {{  # Gluon's lr_mult and wd_mult, by parameter (the others: 1.0)\n{entries}    }}\n"
            "    groups = {}\n"
            "    for name, p in model.named_parameters():\n"
            "        if p.requires_grad:\n"
            "            groups.setdefault(mults.get(name, (1.0, 1.0)), []).append(p)\n"
            f"    params = [{{\"params\": ps, \"lr\": {setting['lr']!r} * lr_mult, "
            f"\"weight_decay\": {setting.get('wd', 0.0)!r} * wd_mult}}\n"
            "              for (lr_mult, wd_mult), ps in groups.items()]\n")
    kinds = sorted({tuple(v) for v in mults.values()})
    why = (f"lr-mult: Gluon's Parameter.lr_mult / wd_mult ({len(mults)} parameters: "
           + ", ".join(f"lr x{a:g}, wd x{b:g}" for a, b in kinds)
           + ") are parameter groups of make_optimizer with lr and weight_decay scaled so")
    return code, why


def _optimizer_code(setting: dict, semantics: str, mults: dict | None = None) -> tuple[str, str]:
    """make_optimizer(model) for the --trainer, and the choice in words."""
    wd = setting.get("wd", 0.0)
    if setting["name"] == "sgd":
        call = f"torch.optim.SGD(params, lr={setting['lr']!r}, momentum={setting['momentum']!r}, weight_decay={wd!r})"
        why = ("sgd: torch.optim.SGD; Gluon's wd is L2 added to the gradient (torch weight_decay); at a constant lr "
               "MXNet's momentum SGD takes the same steps")
    elif semantics == "mxnet":
        call = (f"MXNetAdam(params, lr={setting['lr']!r}, betas=({setting['beta1']!r}, {setting['beta2']!r}), "
                f"eps={setting['eps']!r}, weight_decay={wd!r})")
        why = ("adam-eps: MXNetAdam (in model.py) follows MXNet's Adam: bias corrections folded into lr, eps added to "
               "sqrt(v) unscaled, betas as float32; wd as L2")
    else:
        call = (f"torch.optim.Adam(params, lr={setting['lr']!r}, betas=({setting['beta1']!r}, {setting['beta2']!r}), "
                f"eps={setting['eps']!r}, weight_decay={wd!r})")
        why = ("adam-eps: torch.optim.Adam, PyTorch's eps placement (eps added to sqrt(v / (1 - beta2^t))); MXNet adds "
               "it to sqrt(v) before folding the corrections into lr: the proof's Gluon side follows PyTorch's here")
    groups, mult_why = _mults_code(setting, mults or {})
    if mult_why:
        why += "; " + mult_why
    code = f'''

def make_optimizer(model):
    """The optimizer of the Gluon Trainer this port was written for:
    {_trainer_text(setting)}."""
{groups}    return {call}


def gluon_step(optimizer, batch_size=1):
    """Gluon's trainer.step(batch_size): the gradients rescaled by 1 / batch_size (rescale_grad),
    then one step. With a per-sample (unreduced) loss summed into backward(), this is the same
    update as Gluon's; with a batch-mean loss, call it with batch_size=1."""
    if batch_size != 1:
        for group in optimizer.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.grad.div_(batch_size)
    optimizer.step()
'''
    return code, why


def _model_file(p: Port, graph: dict, setting: dict, semantics: str, factory: str) -> tuple[str, list[str]]:
    to_torch = {g: t for t, g in p.tensor_map.items()}
    mults = {to_torch[g]: m for g, m in (graph.get("mults") or {}).items() if g in to_torch}
    opt_code, opt_why = _optimizer_code(setting, semantics, mults)
    names = list(p.helpers) + (list(MXNET_ADAM) if "MXNetAdam(" in opt_code else [])
    helpers = [port_backend("torch").emulation_source(names)] if names else []
    needs = set(p.imports)  # what the translations asked for (ctx.need), beside what the helpers use
    imports = ["import math"] if "import math" in needs or any("math." in h for h in helpers) else []
    imports += ["", "import torch"]
    if "import torch.nn.functional as F" in needs or any("F." in h for h in helpers) or "F." in p.source:
        imports.append("import torch.nn.functional as F")
    imports += sorted(needs - {"import math", "import torch", "import torch.nn.functional as F"})
    imports.append("from torch import nn")
    if p.frozen:
        frozen = ", ".join(repr(n) for n in p.frozen)
        build_body = (f"    net = {p.class_name}()\n    for name in ({frozen},):  # Gluon grad_req 'null': not "
                      "trained\n        net.get_parameter(name).requires_grad_(False)\n    return net")
    else:
        build_body = f"    return {p.class_name}()"
    head = f'''"""{graph["class"]} ({factory}) ported to PyTorch by `ganparity port`, semantics '{semantics}'.

Only torch is needed. Load the ported weights with `load()`; PORT.md lists every choice made and
the measured errors, test_port.py proves the port against the Gluon block.
"""

from __future__ import annotations

{chr(10).join(imports).lstrip()}

'''
    tail = f'''

def build():
    """The architecture, with torch's default initialisation (load() puts the ported weights in)."""
{build_body}


def load(path=None):
    """The ported model with its weights (weights.pt beside this file, or `path`)."""
    from pathlib import Path

    net = build()
    net.load_state_dict(torch.load(path or Path(__file__).with_name("weights.pt"), weights_only=True))
    return net
'''
    text = head + "".join(f"\n{h.rstrip()}\n\n" for h in helpers) + "\n" + p.source + tail + opt_code
    return text, p.choices + [opt_why]


def source_of(factory: str | dict) -> dict:
    """What the Gluon block comes from, as port.json records it: {'factory': 'pkg.mod:make'},
    {'symbol': path, 'inputs': [...]} (what export() wrote) or {'zoo': 'gluoncv:NAME', 'args': {...}}."""
    return dict(factory) if isinstance(factory, dict) else {"factory": factory}


def source_text(source: dict) -> str:
    if "symbol" in source:
        return f"--symbol {source['symbol']}"
    if "zoo" in source:
        args = ",".join(f"{k}={v}" for k, v in (source.get("args") or {}).items())
        return f"--zoo {source['zoo']}" + (f" --zoo-args {args}" if args else "")
    return f"--mxnet {source['factory']}"


def scan_symbol(path: str) -> None:
    """The ops of a symbol file (what export() wrote), checked against the table before anything
    is loaded: every op without a translation refused at once, with the node that holds it."""
    try:
        nodes = json.loads(Path(path).read_text())["nodes"]
        ops = [{"op": n["op"], "name": n["name"]} for n in nodes]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise GanparityError(f"--symbol {path}: not a symbol file export() wrote ({type(e).__name__}: "
                             f"{str(e)[:200]})") from None
    names = [n["name"] for n in ops if n["op"] != "null"]
    prefix = os.path.commonprefix(names) if len(names) > 1 else ""
    prefix = prefix[: prefix.rfind("_") + 1]
    for n in ops:
        n["path"] = n["name"].removeprefix(prefix).removesuffix("_fwd") or n["name"]
    error = missing_ops(ops)
    if error is not None:
        raise error


def _refuse_missing(nodes: list[dict]) -> None:
    error = missing_ops(nodes)
    if error is not None:
        raise error


def prove_port(folder: str | Path, block=None, progress=None) -> Proof:
    """The proof of the port written in `folder` (what test_port.py runs): model.py and its own
    load() against the Gluon block of port.json's source (a factory, the files export() wrote, a
    model-zoo name) with its parameters (or `block`, whose parameters are loaded from them),
    through mapping.json."""
    folder = Path(folder)
    try:
        info = json.loads((folder / "port.json").read_text())
        mapping = json.loads((folder / "mapping.json").read_text())
    except (OSError, ValueError) as e:
        raise GanparityError(f"{folder}: not a folder written by `ganparity port` ({e})") from None
    T, M = port_backend("torch"), port_backend("mxnet")
    params = info["params"] or str(folder / info["source_params"])
    if block is None:
        for where in (os.getcwd(), info.get("workdir") or ""):
            if where and where not in sys.path:
                sys.path.insert(0, where)
        block = M.load(info.get("source") or info["factory"], params)
    else:
        block = M.load(None, params, block=block)
    model = T.load(folder)
    shape = info.get("inputs") or tuple(info["input_shape"])
    return prove(model, block, mapping, parse_optimizer(info["optimizer"]), shape,
                 int(info["steps"]), info["semantics"], int(info["seed"]), heads=info.get("heads"),
                 graph=bool(info.get("graph")), progress=progress)


def port(factory: str | dict, shape, out: str | Path, params: str | None = None, semantics: str = "torch",
         optimizer: str = DEFAULT_OPTIMIZER, steps: int = DEFAULT_STEPS, force: bool = False, seed: int = 0,
         command: str = "", log=None) -> PortResult:
    """Port the Gluon block of `factory` to PyTorch into `out`, with its proof; any bad input is one
    GanparityError and nothing is written. `factory`: 'pkg.mod:make_block', or a source
    {'symbol': 'model-symbol.json'} (with `params`: the model-0000.params export() wrote) or
    {'zoo': 'gluoncv:yolo3_darknet53_coco', 'args': {...}}. `shape`: one input shape, or a list of
    inputs ('2,8:int', '2:int:1..8', (4, 3, 64, 64)), one per input of the block. The output folder
    follows common/files.py's rule: never '.', a parent of it or home; a folder of the user's own
    is never replaced (--force replaces only an earlier port: PORT.md and the files a port writes);
    one port at a time per folder; the result swapped in whole (a killed port leaves the old folder
    as it was, and its half-written temporary is removed by the next run, with `log` saying so).
    Every op without a translation is refused at once, before any weight is read."""
    if semantics not in SEMANTICS:
        raise GanparityError(f"--semantics {semantics!r}: expected one of {', '.join(SEMANTICS)}")
    check_output_path(out, kind="dir", manifest=MANIFEST, owned=PORT_FILES, force=force)
    setting = parse_optimizer(optimizer)
    specs = input_specs(shape)
    if params and not Path(params).is_file():
        raise GanparityError(f"--params {params}: no such file")
    source = source_of(factory)
    if "symbol" in source:
        if not Path(source["symbol"]).is_file():
            raise GanparityError(f"--symbol {source['symbol']}: no such file")
        source["symbol"] = str(Path(source["symbol"]).resolve())
        scan_symbol(source["symbol"])  # seconds: the symbol's ops, before mxnet or any weight
    t0 = time.perf_counter()
    M, T = port_backend("mxnet"), port_backend("torch")
    say = log or (lambda line: None)
    block = M.load(source, None)
    say(f"port: reading {source_text(source)} at input {' '.join(sp.text() for sp in specs)}")
    graph = M.read(block, specs, params, seed, check=_refuse_missing)
    specs = [parse_input(i["spec"]) for i in graph["inputs"]]  # an 'int' input's range, as read from the model
    refuse_nonfinite(graph["arrays"], "the Gluon block")  # a port copies weights: a NaN would be copied, not proved
    p = emit(graph, semantics)
    missing = sorted(set(graph["arrays"]) - set(p.tensor_map.values()))
    read_by_graph = {n["param"] for n in graph["nodes"] if n["op"] == "null" and n.get("param")}
    unused = [n for n in missing if n not in read_by_graph and graph["grad_req"].get(n) == "null"]
    if set(missing) - set(unused):
        raise GanparityError("unsupported: Gluon parameters that no ported layer holds: "
                             f"{', '.join(sorted(set(missing) - set(unused))[:6])}")
    say(f"port: {len(graph['nodes'])} graph nodes read; writing {p.class_name} "
        f"({'classes from the Gluon block tree' if p.structured else 'one flat class'})")
    what_from = source_text(source)
    text, choices = _model_file(p, graph, setting, semantics, what_from)
    if unused:
        choices.append(f"Not ported: {', '.join(unused)}: constants the Gluon block holds that its forward never "
                       "reads (mapping.json's ignore; the proof leaves them out).")
    heads = p.heads
    with replacing_folder(out, manifest=MANIFEST, owned=PORT_FILES, force=force, log=log) as tmp:
        (tmp / "model.py").write_text(text)
        np.savez(tmp / "weights.npz", **{t: graph["arrays"][g] for t, g in p.tensor_map.items()})
        # constants the block holds but its forward never reads (Faster R-CNN's training-target encoder's
        # means and stds): not ported, and the proof leaves them out
        (tmp / "mapping.json").write_text(json.dumps(p.to_mapping() | ({"ignore": {"mxnet": unused}} if unused else {}),
                                                     indent=1) + "\n")
        saved = str(Path(params).resolve()) if params else "source.params"
        if not params:
            M.save_params(block, str(tmp / "source.params"))
        info = {"source": source, "factory": source.get("factory"),
                "params": str(Path(params).resolve()) if params else None,
                "source_params": None if params else "source.params", "input_shape": list(specs[0].shape),
                "inputs": [s.text() for s in specs], "heads": heads,
                "graph": graph.get("train_graph", "same") != "same",
                "optimizer": optimizer_text(setting), "steps": int(steps), "semantics": semantics, "seed": int(seed),
                "workdir": os.getcwd()}
        (tmp / "port.json").write_text(json.dumps(info, indent=1) + "\n")
        shutil.copyfile(TEMPLATES / "test_port.py", tmp / "test_port.py")
        T.read(tmp, specs, None, seed)  # writes weights.pt and runs the written model once
        t1 = time.perf_counter()
        proof = prove_port(tmp, block, say)
        t2 = time.perf_counter()
        seconds = {"port": t1 - t0, "proof": t2 - t1}
        command = command or (f"ganparity port {what_from} "
                              + " ".join(f"--input-shape {s.text()}" for s in specs)
                              + f" --semantics {semantics} --optimizer {optimizer_text(setting)} --steps {steps}")
        what = f"from {saved}" if params else "the block's own initialisation (seed " + str(seed) + \
            ", BatchNorm statistics drawn at random), saved as source.params"
        (tmp / "proof.json").write_text(json.dumps(proof.to_dict() | {"seconds": seconds}, indent=1,
                                                   default=str) + "\n")
        shutil.rmtree(tmp / "__pycache__", ignore_errors=True)
        (tmp / MANIFEST).write_text(port_md(graph["class"], command, p, choices, proof, semantics, seconds, what,
                                            graph))
    return PortResult(Path(out), p, proof, seconds)
