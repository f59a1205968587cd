"""`ganparity port`, the torch side: read the written port back (import model.py by path, load
the neutral weights strictly, save weights.pt, run it once) and run K training steps of it with
the optimizer model.py itself writes, for the proof. The Gluon side (backends/mxnet/port.py)
reads the source block and runs the same steps.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...common.errors import GanparityError


def _import(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclass / pickle lookups by module name
    spec.loader.exec_module(module)
    return module


def _inputs(x, dtype: str) -> list[torch.Tensor]:
    """One batch as the model's inputs: an array, or a list of them (a model of several inputs)."""
    return [torch.from_numpy(np.asarray(a).astype(dtype)) for a in (x if isinstance(x, list | tuple) else [x])]


def read(model: Any, shape, params: str | None = None, seed: int = 0) -> dict:
    """The written port in folder `model`, read back: model.py imported by path, the weights of
    `params` (weights.npz, by torch state-dict name) loaded strictly, weights.pt saved beside,
    one eval forward at `shape` (a shape, or a list of InputSpec for several inputs). Returns
    {'model', 'module', 'out_shapes'}; any failure is a GanparityError (the port wrote code that
    does not run: a bug of the porter)."""
    folder = Path(model)
    try:
        module = _import(folder / "model.py", f"ganparity_port_{abs(hash(str(folder)))}")
        net = module.build()
        arrays = dict(np.load(params or folder / "weights.npz"))
        state = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}
        full = net.state_dict()
        state.update({k: v for k, v in full.items() if k.endswith("num_batches_tracked")})
        net.load_state_dict(state, strict=True)
        save_params(net, folder / "weights.pt")
        net.eval()
        from ...common.usermodel import parse_input

        specs = [parse_input(s) for s in shape] if isinstance(shape, list) else [parse_input(tuple(shape))]
        rng = np.random.default_rng(seed)
        with torch.no_grad():
            out = net(*_inputs([s.draw(rng) for s in specs], "float32"))
    except Exception as e:
        raise GanparityError(f"the written port does not run: {type(e).__name__}: {str(e).splitlines()[0][:300]}"
                             ) from None
    outs = out if isinstance(out, tuple | list) else (out,)
    return {"model": net, "module": module, "out_shapes": [tuple(o.shape) for o in outs]}


def load(folder: str | Path, name: str = "") -> tuple[Any, torch.nn.Module]:
    """The written port as a user has it: model.py imported by path, its own load() (weights.pt
    beside it). Returns (module, net); any failure is a GanparityError naming the file."""
    folder = Path(folder)
    try:
        module = _import(folder / "model.py", name or f"ganparity_port_{abs(hash(str(folder.resolve())))}")
        net = module.load()
    except Exception as e:
        raise GanparityError(f"{folder / 'model.py'}: the written port does not load: {type(e).__name__}: "
                             f"{str(e).splitlines()[0][:300] if str(e) else ''}") from None
    return module, net


def heads_model(model: Any) -> tuple[Any, torch.nn.Module]:
    """The written detector as its raw heads: the same module (the same parameters, buffers and
    children, so the same state-dict names) whose forward is its raw_heads()."""
    import copy

    module, net = model
    view = copy.copy(net)  # shares _parameters, _buffers and _modules with net
    view.forward = net.raw_heads
    return module, view


def save_params(model: torch.nn.Module, path: str | Path) -> None:
    """The port's parameters as its own load() reads them back: weights.pt, the state dict."""
    torch.save(model.state_dict(), path)


def _state(net: torch.nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy().copy() for k, v in net.state_dict().items()
            if not k.endswith("num_batches_tracked")}


def emulation_source(names: list[str]) -> str:
    """The source of emulations.py's classes and functions (the other framework's semantics, MXNet's),
    by name: what the porter copies into the code it writes."""
    from .emulations import source

    return source(names)


def get_state(model: Any) -> dict[str, np.ndarray]:
    """The port's parameters and floating buffers by state-dict name, as numpy copies."""
    return _state(model[1])


def set_state(model: Any, arrays: dict[str, np.ndarray]) -> None:
    net = model[1]
    cur = net.state_dict()
    with torch.no_grad():
        for k, a in arrays.items():
            cur[k].copy_(torch.as_tensor(np.asarray(a), dtype=cur[k].dtype))


# optimizer hyperparameter -> (param_groups key, index into a tuple value)
_GROUP_KEYS = {"lr": ("lr", None), "momentum": ("momentum", None), "wd": ("weight_decay", None),
               "beta1": ("betas", 0), "beta2": ("betas", 1), "eps": ("eps", None)}


def _perturb_groups(optimizer: torch.optim.Optimizer, perturb: dict, f32: bool) -> None:
    """The written optimizer's hyperparameters changed in place: `perturb` {name: (relative,
    absolute)} (a zero value takes the absolute change), `f32` the floats MXNet passes its update
    op rounded to float32."""
    for group in optimizer.param_groups:
        for name, (rel, absolute) in perturb.items():
            key, i = _GROUP_KEYS[name]
            if key not in group:
                continue
            value = group[key] if i is None else group[key][i]
            new = value * (1 + rel) if value else absolute
            if i is None:
                group[key] = new
            else:
                group[key] = tuple(new if j == i else v for j, v in enumerate(group[key]))
        if f32:  # lr, eps, weight decay, momentum: float32 in MXNet's update ops. Not the betas: MXNet's
            # optimizer corrects with its double betas (its op's float32 ones are emulated where they matter)
            for key, value in list(group.items()):
                if type(value) is float:
                    group[key] = float(np.float32(value))


@contextlib.contextmanager
def _no_dropout(net: torch.nn.Module):
    changed = [(m, m.p) for m in net.modules() if isinstance(m, torch.nn.modules.dropout._DropoutNd) and m.p > 0]
    for m, _ in changed:
        m.p = 0.0
    try:
        yield
    finally:
        for m, p in changed:
            m.p = p


# the constants a layer's forward computes with (slopes, clip bounds, normalisation eps, ...): not a
# scale factor (it changes shapes), not an Embedding's norm_type (inert without max_norm), not the
# BatchNorm momentum or a dropout rate (the statistics rows and the dropout-rates row see those)
_FORWARD = {"negative_slope", "min_val", "max_val", "alpha", "eps", "lambd", "beta", "threshold", "value", "lower",
            "upper"}


def constant_groups(model: Any) -> dict[str, int]:
    """The float constants of the port's layers that the forward uses, by layer class and name
    ('LeakyReLU.negative_slope', 'ReLU6.max_val', 'BatchNorm2d.eps'): how many layers hold each."""
    out: dict[str, int] = {}
    for m in model[1].modules():
        for key, value in vars(m).items():
            if type(value) is float and key in _FORWARD:
                name = f"{type(m).__name__}.{key}"
                out[name] = out.get(name, 0) + 1
    return out


def outputs(model: Any, x: np.ndarray, dtype: str = "float64", mode: str = "train",
            change: tuple[str, float] | None = None) -> list[np.ndarray]:
    """The port's outputs for x (dropout off), with one group of constant_groups() times
    1 + change[1] when given: does the forward depend on that constant at this input?"""
    module, net = model
    name, rel = change or ("", 0.0)
    changed = [(m, key, getattr(m, key)) for m in net.modules() for key in vars(m)
               if f"{type(m).__name__}.{key}" == name]
    state = {k: v.clone() for k, v in net.state_dict().items()}
    net.to(getattr(torch, dtype))
    try:
        for m, key, value in changed:
            setattr(m, key, value * (1 + rel) if value else rel)  # a zero (a clip at 0) moves by rel
        with _no_dropout(net), torch.no_grad():
            net.train(mode == "train")
            out = net(*_inputs(x, dtype))
        outs = out if isinstance(out, tuple | list) else (out,)
        return [o.detach().cpu().numpy().astype(np.float64) for o in outs]
    finally:
        for m, key, value in changed:
            setattr(m, key, value)
        net.to(torch.float32)
        net.load_state_dict(state)  # a train-mode forward moved the running statistics


def gradients(model: Any, data: dict, dtype: str = "float32") -> dict[str, np.ndarray]:
    """The gradients gluon_step would apply at the first batch (the per-sample loss summed,
    divided by the batch size), by parameter name: the proof sizes its small-gradient step by them."""
    module, net = model
    net.to(getattr(torch, dtype))
    try:
        with _no_dropout(net):
            net.train()
            net.zero_grad(set_to_none=True)
            out = net(*_inputs(data["batches"][0], dtype))
            outs = out if isinstance(out, tuple | list) else (out,)
            sum((y * torch.from_numpy(np.asarray(r).astype(dtype))).sum()
                for y, r in zip(outs, data["projections"][0])).backward()
        return {n: p.grad.detach().cpu().numpy() / float(data["batch_size"]) for n, p in net.named_parameters()
                if p.grad is not None}
    finally:
        net.zero_grad(set_to_none=True)
        net.to(torch.float32)


def optimizer_updates(model: Any, grads: list[dict], batch_size: int, dtype: str = "float32",
                      options: dict | None = None) -> list[dict]:
    """The written optimizer alone, fed the given gradients: at step k every parameter's gradient
    is grads[k][name] * batch_size (what the Gluon loop's summed per-sample losses give), then
    gluon_step(optimizer, batch_size). options as train_updates ('start', 'scale', 'round',
    'perturb', 'rescale'). Returns the parameters before the first step and after each."""
    from .compare import round_constants

    module, net = model
    o = options or {}
    net.to(getattr(torch, dtype))
    if o.get("start") is not None:
        set_state(model, o["start"])
    batch = float(batch_size)
    if o.get("round"):
        batch = 1.0 / float(np.float32(1.0 / batch))
    batch *= 1 + o.get("rescale", 0.0)
    named = dict(net.named_parameters())
    try:
        with contextlib.ExitStack() as stack:
            if o.get("round"):
                stack.enter_context(round_constants(net))
            optimizer = module.make_optimizer(net)
            _perturb_groups(optimizer, o.get("perturb", {}), bool(o.get("round")))
            states = [{n: p.detach().cpu().numpy().copy() for n, p in named.items()}]
            for g in grads:
                optimizer.zero_grad(set_to_none=True)
                for n, p in named.items():
                    if n in g and p.requires_grad:
                        p.grad = torch.from_numpy(np.asarray(g[n], np.float64) * batch_size * o.get("scale", 1.0)
                                                  ).to(p.dtype)
                module.gluon_step(optimizer, batch)
                states.append({n: p.detach().cpu().numpy().copy() for n, p in named.items()})
    finally:
        net.to(torch.float32)
    return states


def train_updates(model: Any, data: dict, dtype: str = "float32", options: dict | None = None) -> list[dict]:
    """K steps of the written port, as a user trains it: its own make_optimizer(model), the
    Gluon loop's per-sample loss summed into backward(), gluon_step(optimizer, batch_size) (the
    Trainer.step(batch_size) rescale). model: (module, net); data: 'batches' (one numpy batch per
    step), 'projections' (per step, one array per output: the loss is sum(output * R)),
    'batch_size'; options: 'start' (the state to start from), 'scale' (the loss times this),
    'round' (every float constant as float32, as MXNet passes them: the floor), 'jitter' (every
    parameter times 1 + jitter * a fixed random sign: the floor, where the two sides' fp64 forward
    already differs by that much), 'perturb' {hyperparameter: (relative, absolute)}, 'rescale'
    (gluon_step's batch size times 1 + this), 'bn_momentum' (every BatchNorm momentum times 1 +
    this). Dropout is off. Returns the state before the first step and after each, by state-dict
    name (the first: before any jitter)."""
    from .compare import round_constants

    module, net = model
    o = options or {}
    net.to(getattr(torch, dtype))
    if o.get("start") is not None:
        set_state(model, o["start"])
    start = _state(net)
    if o.get("jitter"):
        signs = np.random.default_rng(0)
        with torch.no_grad():
            for p in net.parameters():
                p.mul_(1 + o["jitter"] * torch.from_numpy(signs.choice([-1.0, 1.0], tuple(p.shape))).to(p.dtype))
    bn = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.momentum]
    saved = [m.momentum for m in bn]
    batch = float(data["batch_size"])
    if o.get("round"):
        batch = 1.0 / float(np.float32(1.0 / batch))  # MXNet's rescale_grad is the float32 1 / batch_size
    batch *= 1 + o.get("rescale", 0.0)
    try:
        for m in bn:
            m.momentum = m.momentum * (1 + o.get("bn_momentum", 0.0))
        with contextlib.ExitStack() as stack:
            if o.get("round"):
                stack.enter_context(round_constants(net))
            stack.enter_context(_no_dropout(net))
            optimizer = module.make_optimizer(net)
            _perturb_groups(optimizer, o.get("perturb", {}), bool(o.get("round")))
            net.train()
            states = [start]
            for x, projection in zip(data["batches"], data["projections"]):
                optimizer.zero_grad(set_to_none=True)
                out = net(*_inputs(x, dtype))
                outs = out if isinstance(out, tuple | list) else (out,)
                loss = sum((y * torch.from_numpy(np.asarray(r).astype(dtype))).sum() for y, r in zip(outs, projection))
                (loss * o.get("scale", 1.0)).backward()
                module.gluon_step(optimizer, batch)
                states.append(_state(net))
    finally:
        for m, v in zip(bn, saved):
            m.momentum = v
        net.to(torch.float32)
    return states
