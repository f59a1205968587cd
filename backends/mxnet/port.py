"""`ganparity port`, the Gluon side: read a Block into a neutral graph (ops in execution order,
their attributes, the block path of each, input and output shapes, parameters as numpy) and run
K training steps of the source model for the proof. The torch side (backends/torch/port.py)
loads the written port and runs the same steps.

The graph is the block's symbol: calling the block on `mx.sym.var('data')` runs hybrid_forward
with F=symbol for every HybridBlock, Sequential containers included, so branches, sums and
concats inside the model zoo's custom blocks show as the ops they are.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

from ...common.errors import GanparityError
from ...common.usermodel import load_factory
from .compare import _blocks, _one_line, make_optimizer, no_dropout
from .compare import get_state as _get_state
from .compare import set_state as _set_state
from .emulations import emulated_stats


def _load(block: gluon.Block, params: str | None, x: np.ndarray, seed: int = 0) -> None:
    """Parameters from the .params file (names and shapes must match the block), or the block's
    own initializer (seeded) with its BatchNorm running statistics, if still 0 and 1, drawn at
    random (mean N(0, 0.1), variance U(0.5, 1.5): at 0 and 1 a port that swapped or dropped them
    in eval mode could not show);
    then one forward so that deferred shapes become real."""
    if params:
        try:
            block.load_parameters(params, ctx=mx.cpu())
        except Exception as e:
            raise GanparityError(f"--params {params}: does not match the block: {_one_line(e)}") from None
    else:
        mx.random.seed(seed)
        for p in block.collect_params().values():  # only those nobody initialized (no "already initialized" noise)
            if p._data is None and not p._deferred_init:
                p.initialize(None, mx.cpu(), mx.init.Uniform(0.07))  # its own initializer first, as Gluon does
    try:
        with autograd.predict_mode():
            block(mx.nd.array(x))
    except Exception as e:
        raise GanparityError(f"the block rejects input shape {tuple(x.shape)}: {_one_line(e)}") from None
    if not params:  # statistics still at their initial 0 and 1 (a factory that set its own keeps them)
        rng = np.random.default_rng([seed, 26])
        for name, p in block._collect_params_with_prefix().items():
            if name.endswith(("running_mean", "running_var")) and p._data is not None:
                shape, now = p.data().shape, p.data().asnumpy()
                if not np.all(now == (0.0 if name.endswith("mean") else 1.0)):
                    continue
                value = rng.normal(0, 0.1, shape) if name.endswith("mean") else rng.uniform(0.5, 1.5, shape)
                p.set_data(mx.nd.array(value.astype(np.float32)))


def _not_hybrid(block: gluon.Block) -> tuple[str, str] | None:
    for path, b in _blocks(block):
        if not isinstance(b, gluon.HybridBlock) and type(b) not in (gluon.nn.Sequential,):
            return path or "(the model)", f"{type(b).__module__}.{type(b).__qualname__}"
    return None


def _attrs(raw: dict | None) -> dict:
    out = {}
    for k, v in (raw or {}).items():
        if k.startswith("__"):
            continue
        try:
            out[k] = json.loads(v.replace("(", "[").replace(")", "]").replace(",]", "]").replace("True", "true")
                                .replace("False", "false").replace("None", "null").replace("'", '"'))
        except (ValueError, AttributeError):
            out[k] = v
    return out


def read(model: Any, shape: tuple[int, ...], params: str | None = None, seed: int = 0) -> dict:
    """The neutral graph of a Block at one input shape: {'nodes': [...], 'arrays': {structural
    name: numpy}, 'outputs': [[node, index]], 'class', 'input'}. Each node: op, name, attrs,
    inputs [[node, index]], params {role: structural name}, path (the block that made it),
    out_shape (of output 0) and out_shapes (of each output)."""
    if not isinstance(model, gluon.Block):
        raise GanparityError(f"--mxnet gave a {type(model).__module__}.{type(model).__qualname__}, not a gluon.Block")
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    _load(model, params, x, seed)
    bad = _not_hybrid(model)
    calls: list[dict] = []
    handles = _record_calls(model, calls)
    try:
        out = model(mx.sym.var("data"))
    except Exception as e:
        where = f"'{bad[0]}' ({bad[1]}) is a plain gluon.Block" if bad else _one_line(e)
        raise GanparityError(f"unsupported: {where}; nearest supported form: a HybridBlock "
                             "(hybrid_forward with F), whose ops can be read as a graph") from None
    finally:
        for h in handles:
            h.detach()
    sym = mx.sym.Group(list(out)) if isinstance(out, list | tuple) else out
    graph = json.loads(sym.tojson())
    internals = sym.get_internals()
    _, out_shapes, _ = internals.infer_shape(data=tuple(shape))
    shapes = dict(zip(internals.list_outputs(), out_shapes))
    live = model._collect_params_with_prefix()
    structural = {p.name: n for n, p in live.items()}
    blocks = list(_blocks(model))  # leaves last: a Conv2D(activation=...) owns the conv op, its child the act
    by_prefix = {b.prefix: path for path, b in blocks if b._children} | {b.prefix: path for path, b in blocks
                                                                          if not b._children}
    owners = sorted(((b.prefix, path or "(the model)", type(b).__qualname__) for path, b in _blocks(model)),
                    key=lambda t: -len(t[0]))
    nodes = []
    for n in graph["nodes"]:
        name = n["name"]
        node = {"op": n["op"], "name": name, "attrs": _attrs(n.get("attrs") or n.get("param")),
                "inputs": [[int(a), int(b)] for a, b, *_ in n["inputs"]], "params": {}, "path": None,
                "out_shape": tuple(shapes.get(f"{name}_output", shapes.get(f"{name}_output0", shapes.get(name, ()))))}
        several = []  # one shape per output of an op with several (SliceChannel, topk ret_typ='both')
        while f"{name}_output{len(several)}" in shapes:
            several.append(tuple(shapes[f"{name}_output{len(several)}"]))
        node["out_shapes"] = several or [node["out_shape"]]
        if n["op"] == "null":
            node["param"] = structural.get(name)
        else:
            node["path"] = by_prefix.get(name[:-3]) if name.endswith("_fwd") else None
            node["owner"] = next((f"{p} ({cls})" for pre, p, cls in owners if name.startswith(pre)), None)
        nodes.append(node)
    for node in nodes:
        for src, _ in node["inputs"]:
            s = nodes[src]
            if s["op"] == "null" and s.get("param"):
                node["params"][s["param"].rsplit(".", 1)[-1]] = s["param"]
        if node["op"] != "null" and node["path"] is None and node["params"]:
            # an op not named '<prefix>fwd' (LayerNorm's is '<prefix>layernorm0'): the block owning its parameters
            owner = {p.rsplit(".", 1)[0] if "." in p else "" for p in node["params"].values()}
            if len(owner) == 1 and "" not in owner:
                node["path"] = owner.pop()
    arrays = {n: p.data().asnumpy().copy() for n, p in live.items() if p._data is not None}
    root = model.prefix
    refs = _output_refs(graph["nodes"], internals.list_outputs())
    return {"nodes": nodes, "arrays": arrays, "outputs": [[int(a), int(b)] for a, b, *_ in graph["heads"]],
            "class": f"{type(model).__module__}.{type(model).__qualname__}", "input": tuple(shape),
            "prefix": root, "grad_req": {n: p.grad_req for n, p in live.items()},
            "calls": [c | {"inputs": [refs[s] for s in c["inputs"] if s in refs],
                           "outputs": [refs[s] for s in c["outputs"] if s in refs]} for c in calls],
            "blocks": {path or "": _block_info(b) for path, b in _blocks(model)}}


def _record_calls(model: gluon.Block, calls: list[dict]) -> list:
    """Hooks that record every block call of the symbolic forward: path, the enclosing call, the
    names of its input and output symbols (the graph's node outputs), in call order."""
    stack, handles = [], []

    def names(value) -> list[str]:
        items = value if isinstance(value, list | tuple) else [value]
        return [o for s in items if isinstance(s, mx.sym.Symbol) for o in s.list_outputs()]

    def pre(path):
        def hook(block, inputs):
            calls.append({"path": path, "parent": stack[-1] if stack else -1, "inputs": names(inputs),
                          "outputs": []})
            stack.append(len(calls) - 1)
        return hook

    def post(block, inputs, output):
        calls[stack.pop()]["outputs"] = names(output)

    for path, b in _blocks(model):
        handles += [b.register_forward_pre_hook(pre(path or "")), b.register_forward_hook(post)]
    return handles


def _output_refs(nodes: list[dict], names: list[str]) -> dict[str, list[int]]:
    """Symbol output name ('conv0_fwd_output', 'split0_output1', 'data') -> [node, output index]."""
    index = {n["name"]: i for i, n in enumerate(nodes)}
    out = {}
    for name in names:
        if name in index:
            out[name] = [index[name], 0]
            continue
        base, _, k = name.rpartition("_output")
        if base in index:
            out[name] = [index[base], int(k) if k.isdigit() else 0]
    return out


def _block_info(b: gluon.Block) -> dict:
    """What the structured port needs of a block: its class, its children in order, whether it is
    a (Hybrid)Sequential or one of Gluon's own layers, its constructor's and forward's argument names."""
    import inspect

    cls = type(b)

    def params(fn, skip: int) -> list[str]:
        try:
            return [p.name for p in list(inspect.signature(fn).parameters.values())[skip:]
                    if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        except (TypeError, ValueError):
            return []

    forward = getattr(cls, "hybrid_forward", None)
    flags = {k: v for k, v in vars(b).items() if type(v) is bool and not k.startswith("_")}  # e.g. use_shortcut
    return {"class": cls.__qualname__, "module": cls.__module__, "children": list(b._children), "flags": flags,
            "sequential": isinstance(b, gluon.nn.HybridSequential | gluon.nn.Sequential),
            "layer": cls.__module__.startswith("mxnet.gluon.nn"), "symbol": isinstance(b, gluon.SymbolBlock),
            "init_args": params(cls.__init__, 1),
            "forward_args": [n for n in params(forward, 2) if n not in ("kwargs",)] if forward else []}


def _unhybridized(model: gluon.Block) -> None:
    """Run eagerly (the emulations and hooks need Python forwards); a block nobody hybridized is
    left alone (hybridize(False) on a Sequential of HybridBlocks warns about nothing useful)."""
    if any(getattr(b, "_active", False) for _, b in _blocks(model)):
        model.hybridize(False)


def load(factory: str, params: str | None = None, what: str = "--mxnet") -> gluon.Block:
    """The Gluon source as the proof loads it: what the factory returns, with the .params file
    (save_parameters') loaded when given. Any failure is one GanparityError."""
    block = load_factory(factory, what)
    if not isinstance(block, gluon.Block):
        raise GanparityError(f"{what} {factory!r} gave a {type(block).__module__}.{type(block).__qualname__}, "
                             "not a gluon.Block")
    if params:
        try:
            block.load_parameters(str(params), ctx=mx.cpu())
        except Exception as e:
            raise GanparityError(f"--params {params}: does not match the block: {_one_line(e)}") from None
    return block


def emulation_source(names: list[str]) -> str:
    """The source of emulations.py's classes and functions (the other framework's semantics, PyTorch's),
    by name: what the porter copies into the code it writes."""
    from .emulations import source

    return source(names)


def get_state(model: Any) -> dict[str, np.ndarray]:
    """The block's parameters (running statistics included) by structural name, as numpy copies."""
    return _get_state(model)


def set_state(model: Any, arrays: dict[str, np.ndarray]) -> None:
    _set_state(model, arrays)


def _trainer(block: gluon.Block, setting: dict, semantics: str) -> gluon.Trainer:
    """The Gluon Trainer of the setting; under semantics 'torch' its Adam puts eps where PyTorch
    does and holds float32 betas (TorchAdam), so that both sides follow PyTorch."""
    emulate = ("adam-eps", "adam-betas") if semantics == "torch" and setting["name"] == "adam" else ()
    trainer, _ = make_optimizer(block, setting, emulate)
    return trainer


# the settings a layer's op computes with (its keyword arguments: slopes, clip bounds, eps, ...)
_FORWARD = {"slope", "alpha", "eps", "a_min", "a_max", "beta", "lower_bound", "upper_bound"}


def constant_groups(model: Any) -> dict[str, int]:
    """The float settings of the block's layers (their op keyword arguments: 'LeakyReLU.alpha',
    'BatchNorm.eps'): how many layers hold each."""
    out: dict[str, int] = {}
    for _, b in _blocks(model):
        for key, value in {**getattr(b, "_kwargs", {}), **vars(b)}.items():
            if type(value) is float and key.lstrip("_") in _FORWARD:
                name = f"{type(b).__name__}.{key.lstrip('_')}"
                out[name] = out.get(name, 0) + 1
    return out


def outputs(model: Any, x: np.ndarray, dtype: str = "float64", mode: str = "train",
            change: tuple[str, float] | None = None) -> list[np.ndarray]:
    """The block's outputs for x (dropout off; un-hybridized), with one group of constant_groups()
    times 1 + change[1] when given."""
    name, rel = change or ("", 0.0)
    changed = []
    for _, b in _blocks(model):
        kwargs = getattr(b, "_kwargs", {})
        for key in list(kwargs):
            if f"{type(b).__name__}.{key}" == name:
                changed.append((kwargs, key, kwargs[key]))
        for key in list(vars(b)):
            if f"{type(b).__name__}.{key.lstrip('_')}" == name and type(vars(b)[key]) is float:
                changed.append((vars(b), key, vars(b)[key]))
    state = _get_state(model)
    _unhybridized(model)
    model.cast(dtype)
    try:
        for holder, key, value in changed:
            holder[key] = value * (1 + rel) if value else rel
        with no_dropout(model), (autograd.train_mode() if mode == "train" else autograd.predict_mode()):
            out = model(mx.nd.array(np.asarray(x).astype(dtype), dtype=dtype))
        outs = list(out) if isinstance(out, list | tuple) else [out]
        return [o.asnumpy().astype(np.float64) for o in outs]
    finally:
        for holder, key, value in changed:
            holder[key] = value
        model.cast("float32")
        _set_state(model, state)


def gradients(model: Any, data: dict, dtype: str = "float32") -> dict[str, np.ndarray]:
    """The gradients trainer.step(batch_size) would apply at the first batch (the per-sample loss
    summed in backward, divided by the batch size), by structural name."""
    _unhybridized(model)
    model.cast(dtype)
    try:
        with no_dropout(model):
            params = {n: p for n, p in model._collect_params_with_prefix().items() if p.grad_req != "null"}
            for p in params.values():
                p.zero_grad()
            with autograd.record(train_mode=True):
                out = model(mx.nd.array(np.asarray(data["batches"][0]).astype(dtype), dtype=dtype))
                outs = list(out) if isinstance(out, list | tuple) else [out]
                loss = mx.nd.add_n(*[(y * mx.nd.array(np.asarray(r).astype(dtype), dtype=dtype)).sum()
                                     for y, r in zip(outs, data["projections"][0])])
            loss.backward()
            return {n: p.grad().asnumpy() / float(data["batch_size"]) for n, p in params.items()}
    finally:
        model.cast("float32")


def optimizer_updates(model: Any, grads: list[dict], batch_size: int, dtype: str = "float32",
                      options: dict | None = None) -> list[dict]:
    """The Gluon Trainer alone, fed the given gradients: at step k every parameter's gradient is
    grads[k][name] * batch_size (backward of sum(parameter * that)), then trainer.step(batch_size).
    options as train_updates ('setting', 'semantics', 'start', 'scale'). Returns the parameters
    before the first step and after each."""
    o = options or {}
    model.cast(dtype)
    if o.get("start") is not None:
        _set_state(model, o["start"])
    params = {n: p for n, p in model._collect_params_with_prefix().items() if p.grad_req != "null"}
    try:
        trainer = _trainer(model, o["setting"], o["semantics"])
        states = [{n: p.data().asnumpy().copy() for n, p in params.items()}]
        for g in grads:
            feed = {n: mx.nd.array(np.asarray(g[n], np.float64) * batch_size * o.get("scale", 1.0), dtype=dtype)
                    for n in params if n in g}
            with autograd.record():
                loss = mx.nd.add_n(*[(params[n].data() * v).sum() for n, v in feed.items()])
            loss.backward()
            trainer.step(int(batch_size), ignore_stale_grad=True)
            states.append({n: p.data().asnumpy().copy() for n, p in params.items()})
    finally:
        model.cast("float32")
    return states


def train_updates(model: Any, data: dict, dtype: str = "float32", options: dict | None = None) -> list[dict]:
    """K steps of the Gluon source, as its training loop runs them: inside autograd.record() the
    per-sample loss (each output times its projection, summed per sample), loss.backward(),
    trainer.step(batch_size). options: 'setting' (the optimizer), 'semantics' ('mxnet': MXNet's
    own; 'torch': its BatchNorm statistics and Adam follow PyTorch's, emulations.py), 'start'
    (the state to start from, by structural name), 'scale' (the loss times this). Dropout is off.
    Returns the state before the first step and after each."""
    o = options or {}
    _unhybridized(model)
    model.cast(dtype)
    if o.get("start") is not None:
        _set_state(model, o["start"])
    try:
        with contextlib.ExitStack() as stack:
            if o["semantics"] == "torch":
                stack.enter_context(emulated_stats(model))
            stack.enter_context(no_dropout(model))
            trainer = _trainer(model, o["setting"], o["semantics"])
            states = [_get_state(model)]
            for x, projection in zip(data["batches"], data["projections"]):
                xs = mx.nd.array(np.asarray(x).astype(dtype), dtype=dtype)
                with autograd.record(train_mode=True):
                    out = model(xs)
                    outs = list(out) if isinstance(out, list | tuple) else [out]
                    terms = [(y * mx.nd.array(np.asarray(r).astype(dtype), dtype=dtype)).reshape((y.shape[0], -1))
                             .sum(axis=1) for y, r in zip(outs, projection)]
                    loss = (mx.nd.add_n(*terms) if len(terms) > 1 else terms[0]) * o.get("scale", 1.0)
                loss.backward()
                trainer.step(int(data["batch_size"]), ignore_stale_grad=True)
                states.append(_get_state(model))
    finally:
        model.cast("float32")
    return states
