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
from ..usermodel import optimizer_text, parse_optimizer
from .checks import Proof, port_backend, prove
from .emit import MXNET_ADAM, SEMANTICS, Port, emit
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


def _optimizer_code(setting: dict, semantics: str) -> tuple[str, str]:
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
    code = f'''

def make_optimizer(model):
    """The optimizer of the Gluon Trainer this port was written for:
    {_trainer_text(setting)}."""
    params = [p for p in model.parameters() if p.requires_grad]
    return {call}


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
    opt_code, opt_why = _optimizer_code(setting, semantics)
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


def prove_port(folder: str | Path, block=None, progress=None) -> Proof:
    """The proof of the port written in `folder` (what test_port.py runs): model.py and its own
    load() against the Gluon block of port.json's factory with its parameters (or `block`, whose
    parameters are loaded from them), through mapping.json."""
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
        block = M.load(info["factory"], params)
    else:
        block.load_parameters(params)
    model = T.load(folder)
    return prove(model, block, mapping, parse_optimizer(info["optimizer"]), tuple(info["input_shape"]),
                 int(info["steps"]), info["semantics"], int(info["seed"]), progress)


def port(factory: str, shape: tuple[int, ...], out: str | Path, params: str | None = None, semantics: str = "torch",
         optimizer: str = DEFAULT_OPTIMIZER, steps: int = DEFAULT_STEPS, force: bool = False, seed: int = 0,
         command: str = "", log=None) -> PortResult:
    """Port the Gluon block of `factory` ('pkg.mod:make_block') to PyTorch into `out`, with its
    proof; any bad input is one GanparityError and nothing is written. The output folder follows
    common/files.py's rule: never '.', a parent of it or home; a folder of the user's own is never
    replaced (--force replaces only an earlier port: PORT.md and the files a port writes); one port
    at a time per folder; the result swapped in whole (a killed port leaves the old folder as it was,
    and its half-written temporary is removed by the next run, with `log` saying so)."""
    if semantics not in SEMANTICS:
        raise GanparityError(f"--semantics {semantics!r}: expected one of {', '.join(SEMANTICS)}")
    check_output_path(out, kind="dir", manifest=MANIFEST, owned=PORT_FILES, force=force)
    setting = parse_optimizer(optimizer)
    if params and not Path(params).is_file():
        raise GanparityError(f"--params {params}: no such file")
    t0 = time.perf_counter()
    M, T = port_backend("mxnet"), port_backend("torch")
    say = log or (lambda line: None)
    block = M.load(factory, None)
    say(f"port: reading {factory} at input {tuple(shape)}")
    graph = M.read(block, tuple(shape), params, seed)
    refuse_nonfinite(graph["arrays"], "the Gluon block")  # a port copies weights: a NaN would be copied, not proved
    p = emit(graph, semantics)
    missing = sorted(set(graph["arrays"]) - set(p.tensor_map.values()))
    if missing:
        raise GanparityError(f"unsupported: Gluon parameters that no ported layer holds: {', '.join(missing[:6])}")
    say(f"port: {len(graph['nodes'])} graph nodes read; writing {p.class_name} "
        f"({'classes from the Gluon block tree' if p.structured else 'one flat class'})")
    text, choices = _model_file(p, graph, setting, semantics, factory)
    with replacing_folder(out, manifest=MANIFEST, owned=PORT_FILES, force=force, log=log) as tmp:
        (tmp / "model.py").write_text(text)
        np.savez(tmp / "weights.npz", **{t: graph["arrays"][g] for t, g in p.tensor_map.items()})
        (tmp / "mapping.json").write_text(json.dumps(p.to_mapping(), indent=1) + "\n")
        source = str(Path(params).resolve()) if params else "source.params"
        if not params:
            block.save_parameters(str(tmp / "source.params"))
        info = {"factory": factory, "params": str(Path(params).resolve()) if params else None,
                "source_params": None if params else "source.params", "input_shape": list(shape),
                "optimizer": optimizer_text(setting), "steps": int(steps), "semantics": semantics, "seed": int(seed),
                "workdir": os.getcwd()}
        (tmp / "port.json").write_text(json.dumps(info, indent=1) + "\n")
        shutil.copyfile(TEMPLATES / "test_port.py", tmp / "test_port.py")
        T.read(tmp, tuple(shape), None, seed)  # writes weights.pt and runs the written model once
        t1 = time.perf_counter()
        proof = prove_port(tmp, block, say)
        t2 = time.perf_counter()
        seconds = {"port": t1 - t0, "proof": t2 - t1}
        command = command or (f"ganparity port --mxnet {factory} --input-shape {','.join(map(str, shape))} "
                              f"--semantics {semantics} --optimizer {optimizer_text(setting)} --steps {steps}")
        what = f"from {source}" if params else "the block's own initialisation (seed " + str(seed) + \
            ", BatchNorm statistics drawn at random), saved as source.params"
        (tmp / "proof.json").write_text(json.dumps(proof.to_dict() | {"seconds": seconds}, indent=1,
                                                   default=str) + "\n")
        shutil.rmtree(tmp / "__pycache__", ignore_errors=True)
        (tmp / MANIFEST).write_text(port_md(graph["class"], command, p, choices, proof, semantics, seconds, what))
    return PortResult(Path(out), p, proof, seconds)
