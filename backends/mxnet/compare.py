"""`ganparity compare` on the MXNet Gluon side: any gluon.Block, walked with hooks, as neutral numpy.

Mirrors backends/torch/compare.py function by function; common/compare.py pairs the two walks,
copies the weights, and judges. A layer comes back as a record (path, neutral kind, neutral
configuration, its tensors by role, its output as numpy), every tensor by its structural name
(_collect_params_with_prefix: 'features.1.gamma', the names save_parameters writes).

Gluon facts this file handles: forward hooks do not fire inside a hybridized graph (the block is
un-hybridized, and the report says so); the model zoo defers parameter shapes to the first
forward (records read shapes after the layer ran); batch statistics need autograd.train_mode()
or record() (difference 'train-eval'); BatchNorm momentum is stored here in PyTorch's convention
(1 - Gluon's, difference 'bn-momentum'); a BatchNorm's gamma/beta are the roles weight/bias.
"""

from __future__ import annotations

import contextlib
import io
import sys
from collections.abc import Iterator
from typing import Any

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon
from mxnet.gluon import nn

from ...common.errors import GanparityError
from ...common.spec.model import Adam
from ...common.usermodel import LOSSES, Rejected, arrays_of
from .emulations import TorchAdam

FRAMEWORK = "mxnet"
ROLES = {"gamma": "weight", "beta": "bias"}  # Gluon's parameter attribute -> the neutral role
_SYMBOLIC = object()  # marks a hook call made during Gluon's symbolic shape inference
_ACTIVATIONS = {"relu": "relu", "sigmoid": "sigmoid", "tanh": "tanh", "softrelu": "softplus", "softsign": "softsign"}


def _blocks(block: gluon.Block, prefix: str = "") -> Iterator[tuple[str, gluon.Block]]:
    """(structural path, block), parents first: the names _collect_params_with_prefix uses."""
    yield prefix, block
    for name, child in block._children.items():
        yield from _blocks(child, f"{prefix}.{name}" if prefix else name)


def _named(model: gluon.Block) -> dict[int, str]:
    """id(Parameter) -> its structural name (shared parameters once)."""
    out: dict[int, str] = {}
    for name, p in model._collect_params_with_prefix().items():
        out.setdefault(id(p), name)
    return out


def prepare_model(model: Any, what: str) -> tuple[gluon.Block, list[str]]:
    """Check that `what` gave a gluon.Block and make it hookable: a hybridized block runs a
    cached graph in which no child's hook fires, so it is un-hybridized; parameters nobody
    initialized get initialize() (their values are overwritten when weights are copied from
    torch). Returns the block and what was done, for the report."""
    if not isinstance(model, gluon.Block):
        kind = f"{type(model).__module__}.{type(model).__qualname__}"
        hint = " (--torch and --mxnet swapped?)" if type(model).__module__.startswith("torch") else ""
        raise GanparityError(f"{what} gave a {kind}, not a gluon.Block{hint}")
    notes = []
    graphs = [path or "the model" for path, b in _blocks(model) if isinstance(b, gluon.SymbolBlock)]
    if graphs:  # an imported graph (what export() wrote): no blocks inside to hook
        notes.append(f"mxnet: {', '.join(graphs)} is a SymbolBlock (an imported graph, no child blocks to hook): "
                     "its layers' outputs are not available, only its final outputs are compared; the tensors pair "
                     "through the mapping")
    if any(getattr(b, "_active", False) for _, b in _blocks(model)):
        model.hybridize(False)
        notes.append("mxnet: the block was hybridized; compare un-hybridized it (forward hooks do not fire "
                     "inside a cached graph; the numbers are the same ops)")
    fresh = [p for p in model.collect_params().values() if p._data is None and not p._deferred_init]
    if fresh:
        for p in fresh:
            p.initialize()
        notes.append(f"mxnet: {len(fresh)} parameters were not initialized; compare called initialize() on them")
    return model, notes


def _ctx(model: gluon.Block) -> mx.Context:
    p = next(iter(model.collect_params().values()), None)
    return p.list_ctx()[0] if p is not None else mx.cpu()


def model_info(model: gluon.Block) -> dict:
    """What the report says about the model, and how its BatchNorm moves its running statistics
    (difference 'bn-stats': Gluon, in backward; biased variance on CPU, unbiased with cuDNN)."""
    ctx = _ctx(model)
    params = [p for p in model.collect_params().values() if p.grad_req != "null"]
    graphs = [b for _, b in _blocks(model) if isinstance(b, gluon.SymbolBlock)]
    return {"class": f"{type(model).__module__}.{type(model).__qualname__}", "device": str(ctx),
            "parameters": int(sum(p.data().size for p in params if p._data is not None)),
            "bn_stats": "backward-biased" if ctx.device_type == "cpu" else "backward-unbiased",
            "training": None,
            # a SymbolBlock's Dropout ops, in graph order: no block holds them, the comparison reads their rates here
            "graph_dropout": [r for b in graphs for r in _graph_dropout(b)] if graphs else None}


def _graph_dropout(b: gluon.SymbolBlock) -> list[float]:
    import json

    nodes = json.loads(b._cached_graph[1].tojson())["nodes"]
    return [float((n.get("attrs") or {}).get("p", 0.5)) for n in nodes if n["op"] == "Dropout"]


def _pair(v) -> tuple:
    return tuple(v) if isinstance(v, tuple | list) else (v, v)


def _shape_of(p: gluon.Parameter) -> tuple[int, ...] | None:
    """A parameter's shape, or None while Gluon still defers it (0 in a dimension)."""
    shape = tuple(p.shape) if p.shape is not None else ()
    return shape if shape and all(shape) else (shape if not shape else None)


def _kind(b: gluon.Block) -> tuple[str, dict]:
    """The neutral kind and configuration of one block (see common/compare.py)."""
    name = type(b).__name__
    if isinstance(b, nn.conv_layers._Conv):
        k = b._kwargs
        transposed = b._op_name == "Deconvolution"
        w = _shape_of(b.weight)
        groups = k.get("num_group", 1)
        in_ch = b._in_channels or (w and (w[0] if transposed else w[1] * groups)) or None
        c = {"in_channels": in_ch, "out_channels": k["num_filter"], "kernel": tuple(k["kernel"]),
             "stride": tuple(k["stride"]), "padding": tuple(k["pad"]), "dilation": tuple(k["dilate"]),
             "groups": groups, "bias": not k["no_bias"], "padding_mode": "zeros"}
        if transposed:
            c["output_padding"] = tuple(k.get("adj") or (0,) * len(k["kernel"]))
        return ("convtranspose" if transposed else "conv"), c
    if isinstance(b, nn.BatchNorm) and name != "BatchNormReLU":
        k, gamma = b._kwargs, _shape_of(b.gamma)
        return "batchnorm", {"num_features": gamma[0] if gamma else None, "eps": k["eps"],
                             "momentum": round(1.0 - k["momentum"], 12), "momentum_native": k["momentum"],
                             "affine": not k["fix_gamma"] and b.beta.grad_req != "null",
                             "global_stats": bool(k["use_global_stats"]), "batch_stats_always": False}
    if isinstance(b, nn.Dense):
        w = _shape_of(b.weight)
        return "linear", {"in_features": b._in_units or (w[1] if w else None), "out_features": b._units,
                          "bias": b.bias is not None, "flatten": bool(b._flatten)}
    if isinstance(b, nn.LeakyReLU):
        return "leakyrelu", {"slope": b._alpha}
    if isinstance(b, nn.Activation):
        return _ACTIVATIONS.get(b._act_type, "other"), {"act_type": b._act_type}
    if isinstance(b, nn.ELU):
        return "elu", {"alpha": b._alpha}
    if isinstance(b, nn.Swish):  # x * sigmoid(beta x): torch's SiLU is beta 1
        return "silu", {"beta": float(b._beta)}
    if type(b) is nn.GELU:
        return "gelu", {"approximate": "none"}  # MXNet's GELU is the erf form
    simple = {nn.SELU: "selu", nn.Flatten: "flatten"}
    for cls, kind in simple.items():
        if type(b) is cls:
            return kind, {}
    if isinstance(b, nn.PReLU):
        shape = _shape_of(b.alpha)
        return "prelu", {"num_parameters": shape[0] if shape else None}
    if isinstance(b, nn.conv_layers._Pooling):
        k = b._kwargs
        pool = k["pool_type"]
        if k["global_pool"]:
            return f"global{pool}pool", {}
        c = {"kernel": _pair(k["kernel"]), "stride": _pair(k["stride"]), "padding": _pair(k["pad"]),
             "ceil_mode": k["pooling_convention"] == "full"}
        if pool == "avg":
            c["count_include_pad"] = bool(k.get("count_include_pad", True))
        return f"{pool}pool", c
    if isinstance(b, nn.Dropout):
        return "dropout", {"rate": b._rate}
    if isinstance(b, nn.Embedding):
        return "embedding", {"num": b._kwargs["input_dim"], "dim": b._kwargs["output_dim"]}
    if isinstance(b, nn.LayerNorm):
        return "layernorm", {"eps": b._kwargs["eps"]}
    if isinstance(b, nn.GroupNorm):
        return "groupnorm", {"groups": b._kwargs["num_groups"], "eps": b._kwargs["eps"]}
    if isinstance(b, nn.InstanceNorm):
        return "instancenorm", {"eps": b._kwargs["eps"], "affine": b.gamma.grad_req != "null"}
    if any(w in name.lower() for w in ("upsampl", "resize", "interpolat")):
        return "upsample", _sniff(b, {"mode": ("mode", "_mode", "sample_type", "_sample_type"),
                                      "scale": ("scale", "_scale", "scale_factor", "_scale_factor"),
                                      "align_corners": ("align_corners", "_align_corners")})
    if name == "Identity" or isinstance(b, gluon.nn.HybridLambda) and getattr(b, "_func_name", "") == "identity":
        return "identity", {}
    if not b._children and not b._reg_params and isinstance(b, gluon.HybridBlock):
        return _ops_kind(b)
    return "other", {}


_OP_KINDS = {"relu": "relu", "sigmoid": "sigmoid", "tanh": "tanh", "softsign": "softsign"}
_ACT_KINDS = {"relu": "relu", "sigmoid": "sigmoid", "tanh": "tanh", "softrelu": "softplus", "softsign": "softsign"}


def _symbol_ops(b: gluon.HybridBlock) -> list[dict] | None:
    """The ops of a parameter-free block's hybrid_forward, read from its symbol (None if it cannot
    be called on one)."""
    import json

    try:
        with contextlib.redirect_stdout(io.StringIO()):
            out = b(mx.sym.var("data"))
        sym = mx.sym.Group(list(out)) if isinstance(out, list | tuple) else out
        nodes = json.loads(sym.tojson())["nodes"]
    except Exception:
        return None
    return [{"op": n["op"], "attrs": n.get("attrs", {})} for n in nodes if n["op"] != "null"]


def _ops_kind(b: gluon.HybridBlock) -> tuple[str, dict]:
    """A parameter-free block of the user's own (the model zoo's RELU6, HardSigmoid, a GELU with
    the tanh approximation), by the ops of its symbol: one known op is that kind ('clip' for
    clip(a_min, a_max), 'hardsigmoid' with alpha and beta, ...); several are kind 'ops' with their
    names, and the tanh form of GELU (a tanh and the constant 0.044715) is 'gelu' with
    approximate='tanh', so a hint can name what differs."""
    ops = _symbol_ops(b)
    if ops is None:
        return "other", {}
    if len(ops) == 1:
        op, a = ops[0]["op"], ops[0]["attrs"]
        if op == "clip":
            return "clip", {"lo": float(a.get("a_min", "-inf")), "hi": float(a.get("a_max", "inf"))}
        if op == "hard_sigmoid":
            return "hardsigmoid", {"alpha": float(a.get("alpha", 0.2)), "beta": float(a.get("beta", 0.5))}
        if op == "Activation":
            return _ACT_KINDS.get(a.get("act_type"), "other"), {}
        if op == "LeakyReLU":
            act = a.get("act_type", "leaky")
            if act == "leaky":
                return "leakyrelu", {"slope": float(a.get("slope", 0.25))}
            if act == "gelu":
                return "gelu", {"approximate": "none"}
            return act, {}
        if op in _OP_KINDS:
            return _OP_KINDS[op], {}
        if op == "_contrib_BilinearResize2D":  # MXNet's default is align_corners=True
            align = str(a.get("align_corners", "True")).lower() in ("true", "1")
            scale = float(a.get("scale_height", a.get("scale_width", 0)) or 0) or None
            return "upsample", {"mode": "bilinear", "scale": scale, "align_corners": align}
        if op == "UpSampling":
            mode = a.get("sample_type", "nearest")
            return "upsample", {"mode": mode, "scale": float(a.get("scale", 1)),
                                "align_corners": None if mode == "nearest" else True}
    names = [o["op"] + (f"({o['attrs']['scalar']})" if "scalar" in o["attrs"] else "") for o in ops]
    if any(o["op"] == "tanh" for o in ops) and any("0.044715" in str(o["attrs"].get("scalar", "")) for o in ops):
        return "gelu", {"approximate": "tanh"}
    return ("ops", {"ops": names}) if names else ("identity", {})


def _sniff(b: gluon.Block, keys: dict[str, tuple[str, ...]]) -> dict:
    """A custom block's configuration, from the attribute names such blocks commonly use."""
    out = {}
    for key, attrs in keys.items():
        for a in attrs:
            if hasattr(b, a):
                out[key] = getattr(b, a)
                break
    return out


def _first(value) -> mx.nd.NDArray | None:
    if isinstance(value, mx.nd.NDArray):
        return value
    if isinstance(value, tuple | list) and value and isinstance(value[0], mx.nd.NDArray):
        return value[0]
    return None


def _shape(value) -> tuple[int, ...] | None:
    a = _first(value)
    return tuple(a.shape) if a is not None else None


def _outputs(value) -> list[mx.nd.NDArray]:
    """The model's output(s): one NDArray, or a tuple/list of them."""
    if isinstance(value, mx.nd.NDArray):
        return [value]
    if isinstance(value, tuple | list) and value and all(isinstance(v, mx.nd.NDArray) for v in value):
        return list(value)
    raise GanparityError(f"the mxnet model returned a {type(value).__name__}; compare needs an NDArray "
                         "or a tuple/list of them")


def _to_inputs(model: gluon.Block, x) -> list[mx.nd.NDArray]:
    """The batch (one array, or an Inputs of several) as the block's inputs, in its dtype."""
    p = next(iter(model.collect_params().values()), None)
    return [mx.nd.array(np.asarray(a), ctx=_ctx(model), dtype=p.dtype if p is not None else "float32")
            for a in arrays_of(x)]


def _shape_of_batch(x) -> tuple:
    return tuple(np.shape(x)) if len(arrays_of(x)) == 1 else x.shape


def _record_of(path: str, b: gluon.Block, names: dict[int, str], calls: int) -> dict:
    kind, config = _kind(b)
    own = list(b._reg_params.items())
    shapes = {ROLES.get(r, "weight" if kind == "prelu" and r == "alpha" else r): _shape_of(p) for r, p in own}
    first = calls == 1
    return {"path": path + (f"#{calls}" if calls > 1 else ""), "module": path, "call": calls, "kind": kind,
            "type": type(b).__name__, "repr": repr(b).split("\n")[0][:200], "config": config,
            "tensors": {ROLES.get(r, "weight" if kind == "prelu" and r == "alpha" else r): names[id(p)]
                        for r, p in own if id(p) in names} if first else {},
            "shapes": shapes if first else {},
            "trainable": {ROLES.get(r, "weight" if kind == "prelu" and r == "alpha" else r): p.grad_req != "null"
                          for r, p in own} if first else {}}


def _set_mode(mode: str):
    """Batch statistics only inside train_mode() (difference 'train-eval'); predict mode otherwise."""
    return autograd.train_mode() if mode == "train" else autograd.predict_mode()


def walk(model: gluon.Block, x: np.ndarray, mode: str, on_output=None,
         keep_inputs: bool = True) -> tuple[list[dict], list[np.ndarray]]:
    """One forward in `mode` ('train': batch statistics, inside autograd.train_mode(); 'eval':
    running ones) with hooks on every leaf block and every block that owns parameters, its input
    and output kept as numpy (as in torch). A Dense or Conv with a fused activation
    (Dense(activation='relu') has it as child 'act') is a leaf: its output is what it hands its
    activation. Returns the records in execution order and the model's output(s); an input the
    model refuses raises Rejected naming the innermost block. on_output(path, array): each output
    handed over as it is made and not kept in its record; keep_inputs=False keeps no inputs."""
    names, records, stack, calls, handles = _named(model), [], [], {}, []
    owners = {id(b) for _, b in _blocks(model) if b._reg_params and set(b._children) == {"act"}}
    acts = {id(b._children["act"]) for _, b in _blocks(model) if id(b) in owners}
    recorded = {id(b) for _, b in _blocks(model) if (not b._children or b._reg_params)
                and not isinstance(b, gluon.SymbolBlock)}  # an imported graph: its final outputs only
    emitted: set[tuple[str, int]] = set()

    def emit(path: str, b: gluon.Block, in_shape, in_array, output) -> None:
        rec = _record_of(path, b, names, calls[path])
        a = _first(output)
        rec |= {"in_shape": in_shape, "out_shape": _shape(output), "input": in_array,
                "output": a.asnumpy() if a is not None else None}
        if on_output is not None:
            on_output(rec["path"], rec.pop("output"))
            rec["output"] = None
        records.append(rec)
        emitted.add((path, calls[path]))

    def pre(path):
        def hook(b, inputs):
            if any(isinstance(v, mx.sym.Symbol) for v in inputs):  # a deferred block infers its shapes
                stack.append((path, b, None, _SYMBOLIC))  # symbolically first: not a call of the forward
                return
            calls[path] = calls.get(path, 0) + 1
            i = _first(inputs) if id(b) in recorded and keep_inputs else None
            stack.append((path, b, _shape(inputs), i.asnumpy() if i is not None else None))
            owner = stack[-2] if len(stack) > 1 else None
            if id(b) in acts and owner and id(owner[1]) in owners and (owner[0], calls[owner[0]]) not in emitted:
                emit(*owner, inputs)  # the fused layer's output
        return hook

    def post(b, inputs, output):
        path, _, in_shape, in_array = stack.pop()
        if in_array is _SYMBOLIC:
            return
        if id(b) in recorded and (path, calls[path]) not in emitted:
            emit(path, b, in_shape, in_array, output)

    for path, b in _blocks(model):
        handles.append(b.register_forward_pre_hook(pre(path or "(root)")))
        handles.append(b.register_forward_hook(post))
    printed = io.StringIO()  # MXNet prints "infer_shape error. Arguments: ..." before it raises
    try:
        with _set_mode(mode), contextlib.redirect_stdout(printed):
            out = model(*_to_inputs(model, x))
            arrays = [o.asnumpy() for o in _outputs(out)]
        sys.stdout.write(printed.getvalue())  # what the model itself printed
        return records, arrays
    except GanparityError:
        raise
    except Exception as e:
        _raise_onednn(e)
        path, b, in_shape, _ = stack[-1] if stack else ("(root)", model, _shape_of_batch(x), None)
        layer = _record_of(path, b, names, 1) | {"in_shape": in_shape}
        raise Rejected(FRAMEWORK, _shape_of_batch(x), layer, _one_line(e),
                       [r["kind"] for r in records if r["call"] == 1]) from None
    finally:
        for h in handles:
            h.detach()


ONEDNN_LAYOUT = ("Check failed: !is_view", "Check failed: to.IsDefaultData()")


def _raise_onednn(e: Exception, where: str = "") -> None:
    """MXNet 1.9.1's oneDNN (MKLDNN) fails on some tensor layouts inside an asynchronous op (a
    training step's BatchNorm on 5-D inputs: GluonCV's R(2+1)D), and the engine raises it at the
    next read (ONEDNN_LAYOUT). Said as that, with the way out, instead of an input the model
    'rejects' or a traceback. `where`: the read that raised it."""
    if any(k in str(e) for k in ONEDNN_LAYOUT):
        at = f", raised at {where}" if where else ""
        raise GanparityError(f"MXNet's oneDNN failed on a tensor layout ({_one_line(e)}{at}): mxnet 1.9.1 does so "
                             "in a training step's BatchNorm on 5-D inputs; run again with MXNET_MKLDNN_ENABLED=0 in "
                             "the environment (oneDNN off: slower, the same values)") from None


def _one_line(e: Exception) -> str:
    """MXNet's errors carry a C++ stack trace: the line that says what was wrong."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    keys = ("Check failed", "inconsistent", "Error in operator", "incompatible", "shape")
    best = next((ln for k in keys for ln in lines if k in ln and not ln.startswith(("File ", "["))), None)
    best = best or (lines[0] if lines else "")
    return f"{type(e).__name__}: {best[:300]}"


def get_state(model: gluon.Block) -> dict[str, np.ndarray]:
    """Every parameter (running statistics included) by structural name, as numpy copies; one
    still deferred (never reached by a forward) is left out."""
    out = {}
    for name, p in model._collect_params_with_prefix().items():
        if name not in out and p._data is not None:
            try:
                out[name] = p.data().asnumpy().copy()
            except mx.base.MXNetError as e:
                _raise_onednn(e, f"the read of '{name}'")
                raise
    return out


def set_state(model: gluon.Block, arrays: dict[str, np.ndarray]) -> None:
    """Copy neutral arrays into the named parameters, in each parameter's own dtype."""
    live = model._collect_params_with_prefix()
    for n, a in arrays.items():
        live[n].set_data(mx.nd.array(np.asarray(a), dtype=live[n].dtype))


def cast_model(model: gluon.Block, dtype: str) -> None:
    """In place: every parameter to float32 or float64 (the fp64 control)."""
    model.cast(dtype)


@contextlib.contextmanager
def no_dropout(model: gluon.Block) -> Iterator[list[str]]:
    """Dropout blocks at rate 0 while inside (each framework draws its own masks, so train-mode
    outputs could never agree); yields the paths it changed, and restores the rates."""
    changed = [(path, b, b._rate) for path, b in _blocks(model) if isinstance(b, nn.Dropout) and b._rate > 0]
    graphs = [(path, b, b._cached_graph) for path, b in _blocks(model) if isinstance(b, gluon.SymbolBlock)
              and any(r > 0 for r in _graph_dropout(b))]
    for _, b, _ in changed:
        b._rate = 0.0
    for _, b, (inputs, out) in graphs:  # an imported graph: its Dropout ops at p=0, the same parameters
        b._cached_graph = inputs, _dropout_off(out)
        b._clear_cached_op()
    try:
        yield [path for path, _, _ in changed] + [f"{path or '(the model)'} (its graph's Dropout ops)"
                                                  for path, _, _ in graphs]
    finally:
        for _, b, rate in changed:
            b._rate = rate
        for _, b, graph in graphs:
            b._cached_graph = graph
            b._clear_cached_op()


def _dropout_off(sym: mx.sym.Symbol) -> mx.sym.Symbol:
    """The symbol with every Dropout op at p=0 (an identity)."""
    import json

    graph = json.loads(sym.tojson())
    for n in graph["nodes"]:
        if n["op"] == "Dropout":
            n.setdefault("attrs", {})["p"] = "0"
    return mx.sym.load_json(json.dumps(graph))


def _loss(outputs: list[mx.nd.NDArray], loss: str, target: list[np.ndarray] | None) -> mx.nd.NDArray:
    """The neutral losses (common/usermodel.py LOSSES), as scalars. Gluon's losses are per sample
    (difference 'loss-reduction'): the batch mean is taken here, and the trainer steps with 1;
    'projection': the sum of every output times its fixed random tensor."""
    if loss == "sum":
        return sum(o.sum() for o in outputs)
    if loss == "mean":
        return sum(o.mean() for o in outputs)
    if loss == "projection":
        return sum((o * mx.nd.array(r, ctx=o.context, dtype=o.dtype)).sum() for o, r in zip(outputs, target))
    out = outputs[0]
    t = mx.nd.array(target[0], ctx=out.context, dtype=out.dtype)
    if loss == "mse":
        return ((out - t) ** 2).mean()
    if loss == "cross-entropy":
        return gluon.loss.SoftmaxCrossEntropyLoss()(out, t).mean()
    raise GanparityError(f"unknown loss {loss!r}; valid: {', '.join(LOSSES)}")


def _backward(model: gluon.Block, x: np.ndarray, mode: str, loss: str, target) -> float:
    xb = _to_inputs(model, x)
    with autograd.record(train_mode=mode == "train"):
        value = _loss(_outputs(model(*xb)), loss, target)
    value.backward(train_mode=mode == "train")  # else BatchNorm back-propagates batch statistics
    return float(value.asscalar())


def _trainable(model: gluon.Block) -> list[tuple[str, gluon.Parameter]]:
    seen, out = set(), []
    for name, p in model._collect_params_with_prefix().items():
        if p.grad_req != "null" and id(p) not in seen:
            seen.add(id(p))
            out.append((name, p))
    return out


def gradients(model: gluon.Block, x: np.ndarray, mode: str, loss: str,
              target: np.ndarray | None) -> tuple[float, dict[str, np.ndarray]]:
    """Inside autograd.record(train_mode): loss(model(x)).backward(). The loss and every trainable
    parameter's gradient by name (zeroed first: grad_req 'write' leaves an unreached one stale)."""
    params = _trainable(model)
    for _, p in params:
        p.zero_grad()
    value = _backward(model, x, mode, loss, target)
    return value, {name: p.grad().asnumpy().copy() for name, p in params}


def make_optimizer(model: gluon.Block, setting: dict, emulate: tuple[str, ...]) -> tuple[Any, str]:
    """gluon.Trainer of a neutral setting (common/compare.py parse_optimizer) and the call it is,
    in words. `emulate`: the semantic differences ('adam-eps', 'adam-betas') to compute PyTorch's
    way (backends/mxnet/emulations.py TorchAdam). The loss is already a batch mean: trainer.step(1)."""
    if setting["name"] == "sgd":
        opt = mx.optimizer.SGD(learning_rate=setting["lr"], momentum=setting["momentum"], wd=setting["wd"])
        call = (f"gluon.Trainer(params, SGD(learning_rate={setting['lr']}, momentum={setting['momentum']}, "
                f"wd={setting['wd']})); trainer.step(1)")
    else:
        opt = TorchAdam(Adam(setting["lr"], setting["beta1"], setting["beta2"], setting["eps"]), emulate)
        opt.wd = setting["wd"]
        torch_like = [k for k in ("adam-eps", "adam-betas") if k in emulate]
        eps = f"{setting['eps']} * sqrt(1 - beta2^t)" if "adam-eps" in emulate else f"{setting['eps']}"
        call = (f"gluon.Trainer(params, Adam(learning_rate={setting['lr']}, beta1={opt.beta1!r}, "
                f"beta2={opt.beta2!r}, epsilon={eps}, wd={setting['wd']})); trainer.step(1)"
                + (f", emulating PyTorch's {' and '.join(torch_like)}" if torch_like else ""))
    return gluon.Trainer([p for _, p in _trainable(model)], opt), call


def train_step(model: gluon.Block, optimizer: Any, x: np.ndarray, mode: str, loss: str,
               target: np.ndarray | None) -> float:
    """record(); loss(model(x)).backward(); trainer.step(1) (the loss is a batch mean already)."""
    value = _backward(model, x, mode, loss, target)
    optimizer.step(1, ignore_stale_grad=True)
    return value


@contextlib.contextmanager
def round_constants(model: gluon.Block) -> Iterator[int]:
    """MXNet already passes every op constant to its kernels as float32, even in float64: there is
    nothing to round (the torch side rounds its own to match). Yields 0."""
    yield 0


def restore_mode(model: gluon.Block, info: dict) -> None:
    """Gluon blocks carry no train/eval flag (the autograd scope decides): nothing to restore."""
