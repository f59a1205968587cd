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


def _load(block: gluon.Block, params: str | None, xs: list[np.ndarray], seed: int = 0) -> None:
    """Parameters from the .params file (names and shapes must match the block), or the block's
    own initializer (seeded) with its BatchNorm running statistics, if still 0 and 1, drawn at
    random (mean N(0, 0.1), variance U(0.5, 1.5): at 0 and 1 a port that swapped or dropped them
    in eval mode could not show);
    then one forward so that deferred shapes become real."""
    if params:
        _load_params(block, params)
    else:
        mx.random.seed(seed)
        for p in block.collect_params().values():  # only those nobody initialized (no "already initialized" noise)
            if p._data is None and not p._deferred_init:
                # its own initializer first, as Gluon does; a graph's parameter has none: a normalisation's
                # scale and variance start at 1, its shift and mean at 0 (not a negative variance)
                default = (mx.init.One() if p.name.endswith(("gamma", "running_var", "moving_var")) else
                           mx.init.Zero() if p.name.endswith(("beta", "running_mean", "moving_mean")) else
                           mx.init.Uniform(0.07))
                p.initialize(None, mx.cpu(), default)
    # MXNet 1.9.1 race: a weight whose (asynchronous) initializer is still running when the first forward
    # reads it (oneDNN's Convolution) can come back from asnumpy() as another value until the engine is
    # idle (squeezenet1_0's output.0.weight read at once: different bytes in every process); wait
    # before the forward and after it
    mx.nd.waitall()
    try:
        with autograd.predict_mode():
            block(*[mx.nd.array(x) for x in xs])
    except Exception as e:
        shapes = ", ".join(str(tuple(x.shape)) for x in xs)
        raise GanparityError(f"the block rejects input shape {shapes}: {_one_line(e)}") from None
    mx.nd.waitall()
    if not params:  # statistics still at their initial 0 and 1 (a factory that set its own keeps them)
        rng = np.random.default_rng([seed, 26])
        for name, p in block._collect_params_with_prefix().items():
            if name.endswith(("running_mean", "running_var", "moving_mean", "moving_var")) and p._data is not None:
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


# MXNet op argument -> the role the emitter reads (a Gluon layer's parameter attribute names)
_ROLE_ALIASES = {"BatchNorm": {"moving_mean": "running_mean", "moving_var": "running_var"},
                 "LeakyReLU": {"gamma": "alpha"}}


def _op_inputs(op: str) -> list[str]:
    """The names of an MXNet op's tensor arguments, in order ('Convolution': data, weight, bias)."""
    try:
        args = mx.operator.get_operator_arguments(op)
    except Exception:
        return []
    return [n for n, t in zip(args.names, args.types) if t.startswith("NDArray") or t.startswith("Symbol")]


def _common_prefix(names: list[str]) -> str:
    """What every name starts with, up to its last '_' (what a SymbolBlock strips from its
    parameters' names: 'resnetv10_conv0_weight' -> 'conv0_weight')."""
    if not names:
        return ""
    first, last = min(names), max(names)
    i = 0
    while i < min(len(first), len(last)) and first[i] == last[i]:
        i += 1
    return first[:i][: first[:i].rfind("_") + 1]


def _input_names(model: gluon.Block, count: int) -> list[str]:
    """The graph's input variables: a SymbolBlock's own ('data' for what export() wrote), else
    'data' for one input and 'data0', 'data1', ... for several."""
    if isinstance(model, gluon.SymbolBlock):
        return [s.name for s in model._cached_graph[0]]
    return ["data"] if count == 1 else [f"data{i}" for i in range(count)]


def _trace(model: gluon.Block, names: list[str]) -> tuple[Any, list[dict]]:
    """The block called on symbol variables: its output symbol(s) and the block calls it made."""
    calls: list[dict] = []
    handles = _record_calls(model, calls)
    try:
        out = model(*[mx.sym.var(n) for n in names])
    finally:
        for h in handles:
            h.detach()
    return out, calls


def _shape_of_graph(graph: dict) -> list:
    """A graph's ops, settings and wiring, without the names (a second trace numbers them anew) and
    the inputs' versions (a variable's version counts the traces that wrote it: a BatchNorm's running
    statistics are at 1 in the first trace, 2 in the second)."""
    return [(n["op"], n.get("attrs") or n.get("param"), [r[:2] for r in n["inputs"]]) for n in graph["nodes"]] + [
        [h[:2] for h in graph["heads"]]]


def _train_graph(model: gluon.Block, names: list[str], graph: dict) -> str:
    """'same' when the block traced in train mode (autograd.train_mode()) is the graph it is in
    inference; else why not (a detector's hybrid_forward returns its raw predictions or its losses
    while training): then the proof runs the inference graph, the block's symbol with its own
    parameters, in both modes (graph_block)."""
    if isinstance(model, gluon.SymbolBlock):
        return "same"
    try:
        with autograd.train_mode():
            out, _ = _trace(model, names)
        sym = mx.sym.Group(list(out)) if isinstance(out, list | tuple) else out
        other = json.loads(sym.tojson())
    except Exception as e:
        return f"the block's train-mode forward is not a graph of its inputs alone ({_one_line(e)[:160]})"
    if _shape_of_graph(other) != _shape_of_graph(graph):
        return (f"the block's train-mode forward is another graph ({len(other['nodes'])} nodes, "
                f"{len(other['heads'])} outputs; in inference {len(graph['nodes'])} nodes, {len(graph['heads'])})")
    return "same"


FLOATS = ("float16", "float32", "float64")


def _retyped(sym, dtype: str):
    """The symbol with every op's own float dtype (arange(dtype='float32'), zeros, Cast) set to
    `dtype`: MXNet refuses to add a float32 to a float64, so a graph that fixes one could not run
    the proof's float64 control otherwise."""
    graph = json.loads(sym.tojson())
    changed = False
    for n in graph["nodes"]:
        attrs = n.get("attrs") or {}
        if n["op"] != "null" and attrs.get("dtype") in FLOATS and attrs["dtype"] != dtype:
            attrs["dtype"], changed = dtype, True
    return mx.sym.load_json(json.dumps(graph)) if changed else sym


class _GraphBlock(gluon.SymbolBlock):
    """A SymbolBlock (an imported graph, or a block's inference graph) whose ops' own float dtypes
    follow its cast (_retyped), so that it runs in float64 as the Python block's layers do."""

    def cast(self, dtype):
        inputs, out = self._cached_graph
        self._float32_graph = getattr(self, "_float32_graph", out)
        name = np.dtype(dtype).name
        self._cached_graph = inputs, (self._float32_graph if name == "float32" else
                                      _retyped(self._float32_graph, name))
        super().cast(dtype)


def _placed(model: gluon.Block, raw: list[dict]) -> list[dict]:
    """Each node's op, name, and where it sits: the block path of the block that made it (a
    SymbolBlock's node by its own name, the graph's common prefix left out), or the block whose
    name prefix it carries."""
    blocks = list(_blocks(model))
    by_prefix = {b.prefix: path for path, b in blocks if b._children} | {b.prefix: path for path, b in blocks
                                                                          if not b._children}
    owners = sorted(((b.prefix, path or "(the model)", type(b).__qualname__) for path, b in blocks),
                    key=lambda t: -len(t[0]))
    symbol = isinstance(model, gluon.SymbolBlock)
    prefix = _common_prefix([n["name"] for n in raw if n["op"] != "null"]) if symbol else ""
    out = []
    for n in raw:
        name = n["name"]
        node = {"op": n["op"], "name": name, "path": None, "owner": None}
        if n["op"] != "null":
            if symbol:
                node["path"] = name.removeprefix(prefix).removesuffix("_fwd") or name
            else:
                node["path"] = by_prefix.get(name[:-3]) if name.endswith("_fwd") else None
                node["owner"] = next((f"{p} ({cls})" for pre, p, cls in owners if pre and name.startswith(pre)), None)
        out.append(node)
    return out


def read(model: Any, shape, params: str | None = None, seed: int = 0, check=None) -> dict:
    """The neutral graph of a Block at its input shapes: {'nodes': [...], 'arrays': {structural
    name: numpy}, 'outputs': [[node, index]], 'class', 'input', 'inputs'}. Each node: op, name,
    attrs, inputs [[node, index]], params {role: structural name}, path (the block that made it),
    out_shape (of output 0) and out_shapes (of each output); an input node has 'input' (its
    position). `shape`: one shape, or a list of InputSpec (several inputs). `check(nodes)`: called
    on the traced ops before any weight is read (the refusal of missing ops). An 'int' input
    without a range gets the range of the Embedding that reads it."""
    from ...common.usermodel import InputSpec, parse_input

    if not isinstance(model, gluon.Block):
        raise GanparityError(f"--mxnet gave a {type(model).__module__}.{type(model).__qualname__}, not a gluon.Block")
    specs = [parse_input(s) for s in shape] if isinstance(shape, list) else [parse_input(tuple(shape))]
    names = _input_names(model, len(specs))
    if len(names) != len(specs):
        raise GanparityError(f"the SymbolBlock takes {len(names)} inputs ({', '.join(names)}); --input-shape gave "
                             f"{len(specs)}")
    bad = _not_hybrid(model)
    try:
        out, calls = _trace(model, names)
    except Exception as e:
        where = f"'{bad[0]}' ({bad[1]}) is a plain gluon.Block" if bad else _one_line(e)
        raise GanparityError(f"unsupported: {where}; nearest supported form: a HybridBlock "
                             "(hybrid_forward with F), whose ops can be read as a graph") from None
    sym = mx.sym.Group(list(out)) if isinstance(out, list | tuple) else out
    graph = json.loads(sym.tojson())
    train = _train_graph(model, names, graph)
    placed = _placed(model, graph["nodes"])
    if check is not None:
        check(placed)
    index = {n["name"]: i for i, n in enumerate(graph["nodes"])}
    for k, (name, spec) in enumerate(zip(names, specs)):
        if spec.kind == "int" and spec.low is None:
            dims = [int(_attrs(n.get("attrs"))["input_dim"]) for n in graph["nodes"] if n["op"] == "Embedding"
                    and n["inputs"] and n["inputs"][0][0] == index.get(name)]
            specs[k] = InputSpec(spec.shape, "int", 0, min(dims) - 1) if dims else InputSpec(spec.shape, "int", 0, 9)
    rng = np.random.default_rng(seed)
    xs = [s.draw(rng) for s in specs]
    _load(model, params, xs, seed)
    internals = sym.get_internals()
    try:
        _, out_shapes, _ = internals.infer_shape(**{n: s.shape for n, s in zip(names, specs)})
    except Exception as e:
        raise GanparityError(f"the graph's shapes cannot be inferred at {[s.text() for s in specs]}: "
                             f"{_one_line(e)}") from None
    shapes = dict(zip(internals.list_outputs(), out_shapes))
    try:  # each value's dtype (an int64 index divides as an integer in MXNet)
        _, out_types, _ = internals.infer_type(**{n: np.float32 for n in names})
        types = {k: np.dtype(t).name for k, t in zip(internals.list_outputs(), out_types) if t is not None}
    except Exception:
        types = {}
    live = model._collect_params_with_prefix()
    structural = {p.name: n for n, p in live.items()}
    nodes = []
    for n, where in zip(graph["nodes"], placed):
        name = n["name"]
        node = {"op": n["op"], "name": name, "attrs": _attrs(n.get("attrs") or n.get("param")),
                "inputs": [[int(a), int(b)] for a, b, *_ in n["inputs"]], "params": {}, "path": where["path"],
                "out_shape": tuple(shapes.get(f"{name}_output", shapes.get(f"{name}_output0", shapes.get(name, ()))))}
        several = []  # one shape per output of an op with several (SliceChannel, topk ret_typ='both')
        while f"{name}_output{len(several)}" in shapes:
            several.append(tuple(shapes[f"{name}_output{len(several)}"]))
        node["out_shapes"] = several or [node["out_shape"]]
        node["out_dtypes"] = [types.get(f"{name}_output{k}", types.get(f"{name}_output", types.get(name)))
                              for k in range(len(node["out_shapes"]))] if several else [
            types.get(f"{name}_output", types.get(name))]
        if n["op"] == "null":
            node["param"] = structural.get(name)
            if name in names:
                node["input"] = names.index(name)
        else:
            node["owner"] = where["owner"]
        nodes.append(node)
    for node in nodes:
        roles = _op_inputs(node["op"]) if node["op"] != "null" else []
        for k, (src, _) in enumerate(node["inputs"]):
            s = nodes[src]
            if s["op"] == "null" and s.get("param"):
                # the op's argument (a Convolution's 'weight'), which a Gluon layer's attribute repeats
                # ('features.0.weight'); a SymbolBlock's 'conv0_weight' (GluonCV's SSD holds one) has only it
                role = roles[k] if k < len(roles) else s["param"].rsplit(".", 1)[-1]
                node["params"][_ROLE_ALIASES.get(node["op"], {}).get(role, role)] = s["param"]
        if node["op"] != "null" and node["path"] is None and node["params"]:
            # an op not named '<prefix>fwd' (LayerNorm's is '<prefix>layernorm0'): the block owning its parameters
            owner = {p.rsplit(".", 1)[0] if "." in p else "" for p in node["params"].values()}
            if len(owner) == 1 and "" not in owner:
                node["path"] = owner.pop()
    arrays = {n: p.data().asnumpy().copy() for n, p in live.items() if p._data is not None}
    symbol = isinstance(model, gluon.SymbolBlock)
    root = _common_prefix([n["name"] for n in graph["nodes"] if n["op"] != "null"]) if symbol else model.prefix
    refs = _output_refs(graph["nodes"], internals.list_outputs())
    args = (_block_info(model)["forward_args"] if not symbol else []) or []
    return {"nodes": nodes, "arrays": arrays, "outputs": [[int(a), int(b)] for a, b, *_ in graph["heads"]],
            "class": f"{type(model).__module__}.{type(model).__qualname__}", "input": specs[0].shape,
            "name": root.strip("_").capitalize() if symbol and root.strip("_") else None,
            "inputs": [{"name": n, "spec": s.text(), "shape": list(s.shape),
                        "arg": args[k] if len(args) == len(specs) else ("x" if len(specs) == 1 else f"x{k}")}
                       for k, (n, s) in enumerate(zip(names, specs))],
            "symbol": symbol, "prefix": root, "grad_req": {n: p.grad_req for n, p in live.items()},
            "train_graph": train,
            "mults": {n: [float(p.lr_mult), float(p.wd_mult)] for n, p in live.items()
                      if p.grad_req != "null" and (p.lr_mult, p.wd_mult) != (1.0, 1.0)},
            "calls": _call_refs(calls, graph["nodes"], refs),
            "blocks": {path or "": _block_info(b) for path, b in _blocks(model)}}


def _record_calls(model: gluon.Block, calls: list[dict]) -> list:
    """Hooks that record every block call of the symbolic forward: path, the enclosing call, the
    names of its input and output symbols (the graph's node outputs), in call order; and when it
    started and ended (a count of events), with the handle of each output symbol: a block called
    several times (one `self.relu` for every activation of the model) makes nodes of one name, told
    apart by _call_refs."""
    stack, handles, keep = [], [], []
    events = iter(range(1 << 62))

    def names(value) -> list[tuple[str, int]]:
        items = value if isinstance(value, list | tuple) else [value]
        keep.extend(s for s in items if isinstance(s, mx.sym.Symbol))  # alive: their handles stay unique
        return [(o, s.handle.value or 0) for s in items if isinstance(s, mx.sym.Symbol) for o in s.list_outputs()]

    def pre(path):
        def hook(block, inputs):
            calls.append({"path": path, "parent": stack[-1] if stack else -1,
                          "inputs": [n for n, _ in names(inputs)], "outputs": [], "start": next(events)})
            stack.append(len(calls) - 1)
        return hook

    def post(block, inputs, output):
        made = names(output)
        calls[stack.pop()] |= {"outputs": [n for n, _ in made], "made": [h for _, h in made], "end": next(events)}

    for path, b in _blocks(model):
        handles += [b.register_forward_pre_hook(pre(path or "")), b.register_forward_hook(post)]
    return handles


def _call_refs(calls: list[dict], nodes: list[dict], refs: dict[str, list[int]]) -> list[dict]:
    """Each call with its inputs and outputs as [node, output index]. A name that several nodes
    share (each call of one block object makes a node of the same name) is resolved in the order the
    calls ran: an output is the next node of that name the first time its symbol is seen, an input
    the node of that name made last (the nodes of one name are in the graph in the order they were
    made along the model's forward)."""
    count = {}
    for n in nodes:
        count[n["name"]] = count.get(n["name"], 0) + 1
    shared = {n for n, k in count.items() if k > 1}
    places = {}
    for i, n in enumerate(nodes):
        if n["name"] in shared:
            places.setdefault(n["name"], []).append(i)

    def base(name: str) -> tuple[str, int]:
        if name in refs and nodes[refs[name][0]]["name"] == name:
            return name, 0
        b, _, k = name.rpartition("_output")
        return b, int(k) if k.isdigit() else 0

    at, seen, out = {}, {}, [dict(c) for c in calls]
    events = sorted([(c.get("start", j), "in", j) for j, c in enumerate(calls)]
                    + [(c.get("end", j), "out", j) for j, c in enumerate(calls)])
    for _, kind, j in events:
        c = calls[j]
        if kind == "in":
            out[j]["inputs"] = [[places[b][at.get(b, 0)], k] if b in shared else refs[s]
                                for s in c["inputs"] if s in refs for b, k in [base(s)]]
            continue
        made = []
        for s, h in zip(c["outputs"], c.get("made") or [0] * len(c["outputs"])):
            if s not in refs:
                continue
            b, k = base(s)
            if b in shared:
                if h not in seen.setdefault(b, set()):  # a new node of that name (not a parent passing it on)
                    seen[b].add(h)
                    at[b] = min(at.get(b, -1) + 1, len(places[b]) - 1)
                made.append([places[b][at[b]], k])
            else:
                made.append(refs[s])
        out[j]["outputs"] = made
        out[j].pop("made", None)
    for c in out:
        c.pop("start", None)
        c.pop("end", None)
    return out


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
            "forward_args": [n for n in params(forward, 2) if n not in ("kwargs",)] if forward else [],
            "forward_varargs": _varargs(forward)}


def _varargs(fn) -> str | None:
    """The name of a hybrid_forward's *args (GluonCV's RPN: hybrid_forward(self, F, img, *x)), or None."""
    import inspect

    try:
        return next((p.name for p in inspect.signature(fn).parameters.values() if p.kind == p.VAR_POSITIONAL), None)
    except (TypeError, ValueError):
        return None


def _unhybridized(model: gluon.Block) -> None:
    """Run eagerly (the emulations and hooks need Python forwards); a block nobody hybridized is
    left alone (hybridize(False) on a Sequential of HybridBlocks warns about nothing useful)."""
    if any(getattr(b, "_active", False) for _, b in _blocks(model)):
        model.hybridize(False)


ZOOS = ("gluon", "gluoncv", "gluonnlp")


def _import_gluoncv():
    """gluoncv 0.10.5.post0, imported beside torch 2: its __init__ refuses any torch >= 2.0
    (check.py reads torch.__version__) although its MXNet model zoo never touches torch. Its
    check module is loaded first with the torch check replaced by 'no torch here' (ImportError,
    which gluoncv takes as torch absent: its torch side stays off, the MXNet side is all there);
    torch's own __version__ is never changed."""
    import importlib.util
    import sys

    if "gluoncv" in sys.modules:
        return sys.modules["gluoncv"]
    spec = importlib.util.find_spec("gluoncv")
    if spec is None or not spec.submodule_search_locations:
        raise GanparityError("gluoncv is not installed: pip install 'ganparity[zoo]'")
    check_spec = importlib.util.spec_from_file_location(
        "gluoncv.check", f"{list(spec.submodule_search_locations)[0]}/check.py")
    check = importlib.util.module_from_spec(check_spec)
    check_spec.loader.exec_module(check)

    def no_torch(*_args, **_kwargs):
        raise ImportError("ganparity uses gluoncv's MXNet side only")

    check._require_pytorch_version = no_torch
    sys.modules["gluoncv.check"] = check
    try:
        import gluoncv
    except Exception as e:
        sys.modules.pop("gluoncv.check", None)
        raise GanparityError(f"gluoncv does not import: {_one_line(e)}") from None
    return gluoncv


def _zoo_block(ref: str, args: dict | None = None) -> gluon.Block:
    """A model-zoo network by name, never downloaded: 'gluon:resnet50_v1' (mxnet's own zoo),
    'gluoncv:yolo3_darknet53_coco', 'gluonnlp:NAME', built with pretrained=False (and
    pretrained_base=False where the model takes it); `args` go to the zoo's get_model."""
    import contextlib
    import io
    import warnings

    zoo, _, name = str(ref).partition(":")
    if zoo not in ZOOS or not name:
        raise GanparityError(f"--zoo {ref!r}: expected ZOO:NAME with ZOO one of {', '.join(ZOOS)} "
                             "(e.g. gluon:resnet50_v1, gluoncv:yolo3_darknet53_coco)")
    kwargs = {"pretrained": False} | dict(args or {})
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        try:
            if zoo == "gluon":  # its functions' names (mobilenet0_25), or get_model's (mobilenet0.25)
                vision = gluon.model_zoo.vision
                fn = getattr(vision, name, None) if not name.startswith("_") else None
                get, names = ((lambda _name, **kw: fn(**kw)) if callable(fn) and name != "get_model"
                              else vision.get_model), None
            elif zoo == "gluoncv":
                get, names = _import_gluoncv().model_zoo.get_model, _import_gluoncv().model_zoo.get_model_list()
                kwargs.setdefault("pretrained_base", False)
            else:
                try:
                    import gluonnlp
                except Exception as e:
                    raise GanparityError(f"gluonnlp does not import: {_one_line(e)} (pip install "
                                         "'ganparity[zoo]')") from None
                get, names = gluonnlp.model.get_model, None
            if names is not None and name not in names:
                import difflib

                close = difflib.get_close_matches(name, names, 3)
                raise GanparityError(f"--zoo {ref!r}: no such model in {zoo}"
                                     + (f"; close: {', '.join(close)}" if close else ""))
            try:
                block = get(name, **kwargs)
            except Exception as first:  # noqa: BLE001 - a model without a base network refuses it its own way
                if "pretrained_base" not in kwargs or "pretrained_base" in (args or {}):
                    raise  # (DarknetV3: "should only accept kwargs {'params', 'prefix'}", not a TypeError)
                kwargs.pop("pretrained_base")
                try:
                    block = get(name, **kwargs)
                except Exception:  # noqa: BLE001 - the first reason is the one to tell
                    raise first from None
        except GanparityError:
            raise
        except Exception as e:
            raise GanparityError(f"--zoo {ref!r}: the zoo could not build it: {_one_line(e)}") from None
    if isinstance(block, tuple):  # gluonnlp's get_model returns (model, vocab)
        block = block[0]
    return block


def load(factory: str | dict, params: str | None = None, what: str = "--mxnet",
         block: gluon.Block | None = None) -> gluon.Block:
    """The Gluon source as the proof loads it, with its .params file loaded when given. `factory`:
    'pkg.mod:make_block' (what it returns), or a source as port.json records it: {'factory': ...},
    {'symbol': model-symbol.json, 'inputs': [names]} (what export() wrote, imported as a
    SymbolBlock), {'zoo': 'gluoncv:NAME', 'args': {...}}; or, given `block` (the source already
    built), that block with the file loaded. Any failure is one GanparityError."""
    if block is not None:
        if params:
            _load_params(block, params)
        return block
    source = factory if isinstance(factory, dict) else {"factory": factory}
    if "symbol" in source:
        sym = str(source["symbol"])
        try:
            with _warnings_off():
                symbol = mx.sym.load(sym)
        except Exception as e:
            raise GanparityError(f"--symbol {sym}: not a symbol file export() wrote: {_one_line(e)}") from None
        inputs = source.get("inputs") or _symbol_inputs(symbol, params)
        unknown = [n for n in inputs if n not in symbol.list_inputs()]
        if unknown:
            raise GanparityError(f"--symbol {sym}: no input named {', '.join(unknown)}; its variables: "
                                 f"{', '.join(symbol.list_inputs()[:8])}")
        try:
            with _warnings_off():
                block = _GraphBlock(symbol, [mx.sym.var(n) for n in inputs])
        except Exception as e:
            raise GanparityError(f"--symbol {sym}: cannot be imported as a SymbolBlock: {_one_line(e)}") from None
        if params:
            _load_params(block, params)
        return block
    if "zoo" in source:
        block = _zoo_block(source["zoo"], source.get("args"))
        what, ref = "--zoo", source["zoo"]
    else:
        ref = source["factory"]
        block = load_factory(ref, what)
    if not isinstance(block, gluon.Block):
        raise GanparityError(f"{what} {ref!r} gave a {type(block).__module__}.{type(block).__qualname__}, "
                             "not a gluon.Block")
    if params:
        _load_params(block, params)
    return block


def _symbol_inputs(symbol, params: str | None) -> list[str]:
    """A symbol's input variables: those the .params file does not hold (in the symbol's order),
    or without one 'data' (export()'s name), 'data0', 'data1', ... for several."""
    names = symbol.list_inputs()
    if params:
        try:
            held = {k.split(":", 1)[-1] for k in mx.nd.load(str(params))}
        except Exception as e:
            raise GanparityError(f"--params {params}: not a .params file: {_one_line(e)}") from None
        free = [n for n in names if n not in held]
        if free:
            return free
    data = [n for n in names if n == "data" or n.startswith("data") and n[4:].isdigit()]
    return data or names[:1]


@contextlib.contextmanager
def _warnings_off():
    """MXNet's SymbolBlock warns that it cannot decide the input's type: the port casts it."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _load_params(block: gluon.Block, params: str) -> None:
    """A .params file into the block: save_parameters' (structural names) or export()'s and
    save_params()' ('arg:'/'aux:' and full names, which a SymbolBlock reads)."""
    try:
        with _warnings_off():
            if isinstance(block, gluon.SymbolBlock):
                block.collect_params().load(str(params), ctx=mx.cpu(), ignore_extra=False)
            else:
                block.load_parameters(str(params), ctx=mx.cpu())
    except Exception as e:
        raise GanparityError(f"--params {params}: does not match the block: {_one_line(e)}") from None


def graph_block(model: gluon.Block, count: int, outputs: list[list[int]] | None = None) -> gluon.SymbolBlock:
    """The block's inference graph as a SymbolBlock holding the block's own parameters, keyed by the
    block's structural names (so get_state, the mapping and the Trainer see the same tensors): what
    the proof runs where the block's train-mode forward is another graph, and, with `outputs`
    ([node, output] of the traced graph), a detector's raw heads before its NMS / top-k."""
    names = _input_names(model, count)
    with _warnings_off():
        out, _ = _trace(model, names)
        sym = mx.sym.Group(list(out)) if isinstance(out, list | tuple) else out
        if outputs is not None:
            nodes = json.loads(sym.tojson())["nodes"]
            internals = sym.get_internals()
            by_ref = {tuple(v): k for k, v in _output_refs(nodes, internals.list_outputs()).items()}
            sym = mx.sym.Group([internals[by_ref[tuple(r)]] for r in outputs])
        structural = {p.name: n for n, p in model._collect_params_with_prefix().items()}
        block = _GraphBlock(sym, [mx.sym.var(n) for n in names], params=model.collect_params())
    block._reg_params = {structural[p.name]: p for p in block.params.values()}
    return block


def save_params(block: gluon.Block, path: str) -> None:
    """The block's parameters as _load_params reads them back (a SymbolBlock's by full name, as
    export() writes them: its structural names hold no '.', which load_parameters would misread)."""
    if isinstance(block, gluon.SymbolBlock):
        block.collect_params().save(str(path))
    else:
        block.save_parameters(str(path))


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


def _inputs(x, dtype: str) -> list:
    """One batch as the block's inputs: an array, or a list of them (a model of several inputs)."""
    return [mx.nd.array(np.asarray(a).astype(dtype), dtype=dtype) for a in (x if isinstance(x, list | tuple) else [x])]


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
            out = model(*_inputs(x, dtype))
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
                out = model(*_inputs(data["batches"][0], dtype))
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


class _GraphStats:
    """PyTorch's BatchNorm statistics for an imported graph (a SymbolBlock holds no BatchNorm blocks
    for emulated_stats to swap): before each step the batch statistics of every BatchNorm op's
    input (train mode, the step's weights and batch, the unbiased variance), after it the running
    statistics set as PyTorch moves them, m * running + (1 - m) * batch with the op's own momentum m
    (what MXNet's op wrote in backward is replaced)."""

    def __init__(self, model: gluon.SymbolBlock):
        inputs, out = model._cached_graph
        nodes = json.loads(out.tojson())["nodes"]
        internals = out.get_internals()
        refs = {tuple(v): k for k, v in _output_refs(nodes, internals.list_outputs()).items()}
        params = model.collect_params()
        self.layers = []
        for n in nodes:
            a = _attrs(n.get("attrs"))
            if n["op"] != "BatchNorm" or str(a.get("use_global_stats", False)).lower() in ("true", "1"):
                continue
            data = refs[tuple(n["inputs"][0][:2])]
            mean, var = (params[nodes[n["inputs"][k][0]]["name"]] for k in (3, 4))
            self.layers.append((data, mean, var, float(a.get("momentum", 0.9)), int(a.get("axis", 1))))
        with _warnings_off():  # (made while the parameters are float32, what it infers for them)
            self.block = gluon.SymbolBlock(mx.sym.Group([internals[d] for d, *_ in self.layers]), list(inputs),
                                           params=params) if self.layers else None

    def before(self, xs: list) -> list:
        """(running mean, running var, batch mean, unbiased batch var) of every layer, for this batch."""
        if self.block is None:
            return []
        with autograd.pause(), autograd.train_mode(), _warnings_off():
            outs = self.block(*xs)
        outs = outs if isinstance(outs, list | tuple) else [outs]
        got = []
        for (_, mean, var, _, axis), y in zip(self.layers, outs):
            axes = tuple(i for i in range(y.ndim) if i != axis % y.ndim)
            n = int(np.prod([y.shape[i] for i in axes]))
            bm = y.mean(axis=axes)
            bv = ((y - bm.reshape([-1 if i == axis % y.ndim else 1 for i in range(y.ndim)])) ** 2).sum(axis=axes)
            got.append((mean.data().copy(), var.data().copy(), bm, bv / max(n - 1, 1)))
        return got

    def after(self, got: list) -> None:
        for (_, mean, var, m, _), (rm, rv, bm, bv) in zip(self.layers, got):
            mean.set_data(m * rm + (1 - m) * bm)
            var.set_data(m * rv + (1 - m) * bv)


def train_updates(model: Any, data: dict, dtype: str = "float32", options: dict | None = None) -> list[dict]:
    """K steps of the Gluon source, as its training loop runs them: inside autograd.record() the
    per-sample loss (each output times its projection, summed per sample), loss.backward(),
    trainer.step(batch_size). options: 'setting' (the optimizer), 'semantics' ('mxnet': MXNet's
    own; 'torch': its BatchNorm statistics and Adam follow PyTorch's, emulations.py), 'start'
    (the state to start from, by structural name), 'scale' (the loss times this). Dropout is off.
    Returns the state before the first step and after each."""
    o = options or {}
    _unhybridized(model)
    graph = _GraphStats(model) if o["semantics"] == "torch" and isinstance(model, gluon.SymbolBlock) else None
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
                xs = _inputs(x, dtype)
                got = graph.before(xs) if graph is not None else []
                with autograd.record(train_mode=True):
                    out = model(*xs)
                    outs = list(out) if isinstance(out, list | tuple) else [out]
                    terms = [(y * mx.nd.array(np.asarray(r).astype(dtype), dtype=dtype)).reshape((y.shape[0], -1))
                             .sum(axis=1) for y, r in zip(outs, projection)]
                    loss = (mx.nd.add_n(*terms) if len(terms) > 1 else terms[0]) * o.get("scale", 1.0)
                loss.backward()
                trainer.step(int(data["batch_size"]), ignore_stale_grad=True)
                if graph is not None:
                    graph.after(got)
                states.append(_get_state(model))
    finally:
        model.cast("float32")
    return states
