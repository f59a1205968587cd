"""`ganparity port`, the Gluon side: read a Block into a neutral graph (ops in execution order,
their attributes, the block path of each, input and output shapes, parameters as numpy) and run
K training steps of the source model for the proof. The torch side (backends/torch/port.py)
loads the written port and runs the same steps.

The graph is the block's symbol: calling the block on `mx.sym.var('data')` runs hybrid_forward
with F=symbol for every HybridBlock, Sequential containers included, so branches, sums and
concats inside the model zoo's custom blocks show as the ops they are.
"""

from __future__ import annotations

import json
from typing import Any

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

from ...common.errors import GanparityError
from .compare import _blocks, _one_line, get_state, make_optimizer, set_state


def _load(block: gluon.Block, params: str | None, x: np.ndarray) -> None:
    """Parameters from the .params file (names and shapes must match the block), or the block's
    own initializer; then one forward so that deferred shapes become real."""
    if params:
        try:
            block.load_parameters(params, ctx=mx.cpu())
        except Exception as e:
            raise GanparityError(f"--params {params}: does not match the block: {_one_line(e)}") from None
    else:
        block.initialize(mx.init.Uniform(0.07), force_reinit=False)
    try:
        with autograd.predict_mode():
            block(mx.nd.array(x))
    except Exception as e:
        raise GanparityError(f"the block rejects input shape {tuple(x.shape)}: {_one_line(e)}") from None


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
            out[k] = json.loads(v.replace("(", "[").replace(")", "]").replace("True", "true")
                                .replace("False", "false").replace("None", "null").replace("'", '"'))
        except (ValueError, AttributeError):
            out[k] = v
    return out


def read(model: Any, shape: tuple[int, ...], params: str | None = None, seed: int = 0) -> dict:
    """The neutral graph of a Block at one input shape: {'nodes': [...], 'arrays': {structural
    name: numpy}, 'outputs': [[node, index]], 'class', 'input'}. Each node: op, name, attrs,
    inputs [[node, index]], params {role: structural name}, path (the block that made it),
    out_shape."""
    if not isinstance(model, gluon.Block):
        raise GanparityError(f"--mxnet gave a {type(model).__module__}.{type(model).__qualname__}, not a gluon.Block")
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    _load(model, params, x)
    bad = _not_hybrid(model)
    try:
        out = model(mx.sym.var("data"))
    except Exception as e:
        where = f"'{bad[0]}' ({bad[1]}) is a plain gluon.Block" if bad else _one_line(e)
        raise GanparityError(f"unsupported: {where}; nearest supported form: a HybridBlock "
                             "(hybrid_forward with F), whose ops can be read as a graph") from None
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
    return {"nodes": nodes, "arrays": arrays, "outputs": [[int(a), int(b)] for a, b, *_ in graph["heads"]],
            "class": f"{type(model).__module__}.{type(model).__qualname__}", "input": tuple(shape),
            "prefix": root, "grad_req": {n: p.grad_req for n, p in live.items()}}


def train_states(model: Any, x: np.ndarray, steps: int, setting: dict, dtype: str = "float32",
                 start: dict | None = None) -> list[dict]:
    """K steps of the source model (loss: the sum of the outputs, recorded in train mode,
    trainer.step(1), MXNet's own optimizer): the state after each, by structural name; the first
    entry is the state before any step."""
    model.cast(dtype)
    if start is not None:
        set_state(model, start)
    trainer, _ = make_optimizer(model, setting, ())
    xs = mx.nd.array(x.astype(dtype), dtype=dtype)
    states = [get_state(model)]
    for _ in range(steps):
        with autograd.record(train_mode=True):
            out = model(xs)
            outs = list(out) if isinstance(out, list | tuple) else [out]
            loss = mx.nd.add_n(*[o.sum() for o in outs]) if len(outs) > 1 else outs[0].sum()
        loss.backward()
        trainer.step(1, ignore_stale_grad=True)
        states.append(get_state(model))
    model.cast("float32")
    return states
