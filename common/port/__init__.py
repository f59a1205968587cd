"""`ganparity port`: a Gluon model ported to PyTorch, with the proof written beside it.

    read   the Gluon block's symbol graph (backends/mxnet/port.py read): ops in execution order,
           the block path of each, shapes, parameters as numpy
    emit   one readable nn.Module (emit.py): layers named after the Gluon blocks, arguments
           spelled out, the semantic choices (BatchNorm momentum converted, Dense flatten made
           explicit, MXNet's BatchNorm statistics and Adam emulated under semantics 'mxnet')
    write  model.py, weights.npz (neutral, by torch name), weights.pt, mapping.json, test_port.py
           and PORT.md into a temporary folder beside --out, renamed into place only when all
           of it exists and the written model has run: nothing is ever half-written
    prove  the compare API and K optimizer steps against the Gluon block (check.py), measured
           into PORT.md; test_port.py runs the same proof again under pytest
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..compare import load_factory, optimizer_text, parse_optimizer
from ..errors import GanparityError
from .check import Proof, port_backend, prove
from .emit import SEMANTICS, Port, Unsupported, emit

__all__ = ["PortResult", "Unsupported", "port", "prove", "SEMANTICS"]
DEFAULT_TRAINER = "sgd:lr=0.01"


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
               "it to sqrt(v) before folding the corrections into lr: PORT.md measures the drift over the K steps")
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
    helpers = list(p.helpers)
    if "MXNetAdam(" in opt_code:
        from .emit import HELPER_MXNET_ADAM

        helpers.append(HELPER_MXNET_ADAM)
    imports = ["import math"] if any("math." in h for h in helpers) else []
    imports += ["", "import torch"]
    if any("F." in h for h in helpers):
        imports.append("import torch.nn.functional as F")
    imports.append("from torch import nn")
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
    return {p.class_name}()


def load(path=None):
    """The ported model with its weights (weights.pt beside this file, or `path`)."""
    from pathlib import Path

    net = build()
    net.load_state_dict(torch.load(path or Path(__file__).with_name("weights.pt"), weights_only=True))
    return net
'''
    text = head + "".join(f"\n{h.rstrip()}\n\n" for h in helpers) + "\n" + p.source + tail + opt_code
    return text, p.choices + [opt_why]


TEST_FILE = '''"""The proof of this port, against the Gluon block it came from (written by `ganparity port`).

Forward in train and eval mode and the gradients through the compare API
(ganparity.compare_models), then {steps} optimizer step(s) of model.py's own make_optimizer
against the Gluon Trainer, judged by the fp32-noise rule. Skips when mxnet or ganparity is missing.
Run: pytest test_port.py
"""

import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("mxnet")
ganparity = pytest.importorskip("ganparity")

from ganparity.common.compare import load_factory, parse_optimizer  # noqa: E402
from ganparity.common.port import prove  # noqa: E402
from ganparity.common.port.emit import Port  # noqa: E402

HERE = Path(__file__).resolve().parent
FACTORY = {factory!r}
PARAMS = {params!r}
INPUT_SHAPE = {shape!r}
TRAINER = {trainer!r}
STEPS = {steps!r}
SEMANTICS = {semantics!r}
WORKDIR = {workdir!r}  # where `ganparity port` ran: FACTORY imports from there


def _models():
    for where in (os.getcwd(), WORKDIR):
        if where not in sys.path:
            sys.path.insert(0, where)
    spec = importlib.util.spec_from_file_location("ported_model", HERE / "model.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["ported_model"] = module
    spec.loader.exec_module(module)
    net = module.load()
    block = load_factory(FACTORY, "the Gluon factory")
    if PARAMS:
        block.load_parameters(PARAMS)
    else:
        block.initialize()
    mapping = json.loads((HERE / "mapping.json").read_text())
    return net, block, mapping


@pytest.fixture(scope="module")
def proof():
    net, block, mapping = _models()
    port = Port.from_mapping(mapping)
    return prove(net, block, INPUT_SHAPE, port, parse_optimizer(TRAINER), STEPS, SEMANTICS)


@pytest.mark.parametrize("check", ["forward train", "forward eval", "gradients"])
def test_forward_and_gradients(proof, check):
    row = proof.row(check)
    assert row.ok, f"{{check}}: max rel err {{row.max_rel:.3g}} at {{row.worst}}\\n{{proof.summary}}"


def test_bn_running_means_after_one_step(proof):
    rows = [r for r in proof.rows if r.check == "step 1 BN running means"]
    for row in rows:
        assert row.max_rel <= 1e-5, row


def test_optimizer_steps(proof):
    """Every judged step row agrees (semantics 'torch' with Adam: the parameters' drift is measured,
    not judged; the BatchNorm variances are judged once Gluon's are corrected by n / (n - 1))."""
    assert proof.ok, proof.failures()
'''


def _port_md(graph, p: Port, choices, proof: Proof, a: dict, seconds: dict) -> str:
    lines = [f"# Port of `{graph['class']}`", "",
             f"Written by `ganparity port --mxnet {a['factory']} --input-shape {','.join(map(str, a['shape']))} "
             f"--semantics {a['semantics']} --trainer {a['trainer']} --steps {a['steps']}`"
             + (f" (parameters from {a['params']})" if a["params"] else " (the block's own initialisation)") + ".", "",
             f"- class `{p.class_name}` in model.py: {len(p.layers)} layers, {len(p.tensor_map)} tensors mapped "
             "(every Gluon parameter and running statistic; mapping.json pairs each torch name with its Gluon name)",
             f"- semantics: **{a['semantics']}**" + (" (imports only torch)" if a["semantics"] == "torch" else
                                                    " (the emulations are written into model.py: torch only)"),
             f"- port time {seconds['port']:.2f} s (read + write), proof {seconds['proof']:.2f} s", "",
             "## Semantic choices", ""]
    lines += [f"- {c}" for c in choices]
    lines += ["- train/eval: Gluon uses batch statistics only inside autograd.record(); torch in model.train()",
              "- loss-reduction: the proof back-propagates the sum of the outputs and calls trainer.step(1); with "
              "Gluon's per-sample losses and trainer.step(batch_size), use gluon_step(optimizer, batch_size)",
              "- grad_req: Gluon's default 'write' overwrites gradients, torch accumulates: call "
              "optimizer.zero_grad() before each backward (two backward() calls per step sum in torch)", "",
              "## Measured errors (max relative error; fp32-noise rule of common/parity.py)", "",
              "| check | max rel err | fp32 noise | verdict | worst tensor |", "|---|---|---|---|---|"]
    for r in proof.rows:
        verdict = {True: "agree", False: "DIFFER", None: "measured"}[r.ok]
        lines.append(f"| {r.check} | {r.max_rel:.3g} | {r.noise:.2g} | {verdict} | {r.worst} |")
    lines += ["", "## Layers", "", "| torch attribute | Gluon block | Gluon op | torch layer |", "|---|---|---|---|"]
    for layer in p.layers:
        lines.append(f"| {layer.attr} | {layer.path} | {layer.gluon} | `{layer.ctor}` |")
    return "\n".join(lines) + "\n"


def _refuse_out(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise GanparityError(f"--out {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise GanparityError(f"--out {out}: exists and is not empty (use --force to replace it)")


def port(factory: str, shape: tuple[int, ...], out: str | Path, params: str | None = None, semantics: str = "torch",
         trainer: str = DEFAULT_TRAINER, steps: int = 1, force: bool = False, seed: int = 0) -> PortResult:
    """Port the Gluon block of `factory` ('pkg.mod:make_block') to PyTorch into `out`, with its
    proof; any bad input is one GanparityError and nothing is written."""
    if semantics not in SEMANTICS:
        raise GanparityError(f"--semantics {semantics!r}: expected one of {', '.join(SEMANTICS)}")
    out = Path(out)
    _refuse_out(out, force)
    setting = parse_optimizer(trainer)
    if params and not Path(params).is_file():
        raise GanparityError(f"--params {params}: no such file")
    t0 = time.perf_counter()
    M, T = port_backend("mxnet"), port_backend("torch")
    block = load_factory(factory, "--mxnet")
    graph = M.read(block, tuple(shape), params, seed)
    p = emit(graph, semantics)
    missing = sorted(set(graph["arrays"]) - set(p.tensor_map.values()))
    if missing:
        raise GanparityError(f"unsupported: Gluon parameters that no ported layer holds: {', '.join(missing[:6])}")
    text, choices = _model_file(p, graph, setting, semantics, factory)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        (tmp / "model.py").write_text(text)
        np.savez(tmp / "weights.npz", **{t: graph["arrays"][g] for t, g in p.tensor_map.items()})
        (tmp / "mapping.json").write_text(json.dumps(p.to_mapping(), indent=1) + "\n")
        back = T.read(tmp, tuple(shape), None, seed)
        t1 = time.perf_counter()
        proof = prove(back["model"], block, tuple(shape), p, setting, steps, semantics, seed)
        t2 = time.perf_counter()
        seconds = {"port": t1 - t0, "proof": t2 - t1}
        a = {"factory": factory, "shape": tuple(shape), "semantics": semantics, "trainer": optimizer_text(setting),
             "steps": steps, "params": params}
        import os

        (tmp / "test_port.py").write_text(TEST_FILE.format(
            factory=factory, params=str(Path(params).resolve()) if params else None, shape=tuple(shape),
            trainer=optimizer_text(setting), steps=steps, semantics=semantics, workdir=os.getcwd()))
        (tmp / "PORT.md").write_text(_port_md(graph, p, choices, proof, a, seconds))
        (tmp / "proof.json").write_text(json.dumps(proof.to_dict() | {"seconds": seconds}, indent=1) + "\n")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return PortResult(out, p, proof, seconds)
