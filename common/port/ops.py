"""Each MXNet op, written as PyTorch: the porter's one table (OPS). A translation takes the emitter
(`ctx`: the graph's arrays and shapes, the semantics, ctx.module() to make a layer (or, where
ctx.functional, a parameter-free op's functional form inside a class's forward), ctx.choose() to
record a semantic choice for PORT.md, ctx.need() for an import, ctx.helpers for an emulation of
backends/torch/emulations.py), the op's node and its argument expressions, and returns the
expression of its output (of an op with several outputs, SliceChannel or topk ret_typ='both': the
expression of their tuple, which emit.py unpacks). An op whose settings cannot be written raises
Unsupported with the nearest supported form.

Adding an op: a function decorated with @op("MXNetOpName", ...); its parity with the MXNet op, in
float32 and float64 with the corner cases where the frameworks differ, goes in tests/test_port_ops.py.
Pure text: numpy and the standard library only.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from ..errors import GanparityError

ADDS = {"elemwise_add", "_plus", "_Plus", "broadcast_add", "add_n", "ElementWiseSum", "_add"}
MULS = {"elemwise_mul", "_mul", "broadcast_mul"}
SCALARS = {"_mul_scalar": "*", "_plus_scalar": "+", "_minus_scalar": "-", "_div_scalar": "/"}
IDENTITY = {"_copy", "identity", "BlockGrad"}
ACTIVATIONS = {"relu": "nn.ReLU()", "sigmoid": "nn.Sigmoid()", "tanh": "nn.Tanh()", "softrelu": "nn.Softplus()",
               "softsign": "nn.Softsign()"}
FUNCTIONAL = {"relu": "torch.relu", "sigmoid": "torch.sigmoid", "tanh": "torch.tanh", "softrelu": "F.softplus",
              "softsign": "F.softsign"}  # the same, inside a class's own forward
# The classes model.py may need beyond torch (backends/torch/emulations.py, copied as they are)
GLOBAL_STATS, MXNET_BN, MXNET_ADAM = "GlobalStatsBatchNorm", "MXNetBatchNorm", ("mxnet_adam_lr_eps", "MXNetAdam")

Translation = Callable[..., str]
OPS: dict[str, Translation] = {}


class Unsupported(GanparityError):
    """An op or layer the porter cannot write: one line, with the nearest supported form."""

    def __init__(self, node: dict, what: str, nearest: str):
        where = node.get("path") or node.get("owner") or node["name"]
        super().__init__(f"unsupported: {what} at gluon block '{where}' (op {node['op']}, node {node['name']}); "
                         f"nearest supported form: {nearest}")


NEAREST_OP = ("an op of docs/port.md's list, or a HybridBlock of your own that computes it with those ops (or add "
              "the op to common/port/ops.py)")


def _place(node: dict) -> str:
    return node.get("path") or node.get("owner") or node["name"]


def missing_ops(nodes: list[dict]) -> GanparityError | None:
    """Every op of a graph that the table has no translation for, all at once, with the block path
    of each (the graph's nodes: op, name, path or owner): one line to refuse with, or None. Read
    from the symbol alone, before any weight is loaded."""
    found: dict[str, list[str]] = {}
    for n in nodes:
        if n["op"] != "null" and n["op"] not in OPS:
            found.setdefault(n["op"], []).append(_place(n))
    if not found:
        return None
    parts = []
    for name, where in found.items():
        places = list(dict.fromkeys(where))
        shown = ", ".join(f"'{w}'" for w in places[:4]) + (f" and {len(places) - 4} more" if len(places) > 4 else "")
        count = f" ({len(where)} nodes)" if len(where) > 1 else ""
        parts.append(f"the op {name} at gluon block {shown}{count}")
    head = "" if len(parts) == 1 else f"{len(parts)} ops without a translation: "
    return GanparityError(f"unsupported: {head}{'; '.join(parts)}; nearest supported form: {NEAREST_OP}")


def several(problems: list[Unsupported]) -> GanparityError:
    """Unsupported settings of several nodes (found while writing each), as one line."""
    if len(problems) == 1:
        return problems[0]
    texts = list(dict.fromkeys(str(p).removeprefix("unsupported: ") for p in problems))
    shown = "; ".join(texts[:8]) + (f"; and {len(texts) - 8} more" if len(texts) > 8 else "")
    return GanparityError(f"unsupported: {len(texts)} problems: {shown}")


# the ops that read their parameters by role, as a layer's own tensors (ctx.module(..., roles)); any other op
# reads a parameter as a value (YOLO's anchors, a position table): ctx.tensor() makes it a buffer or nn.Parameter
LAYER_OPS = {"Convolution", "Deconvolution", "FullyConnected", "BatchNorm", "InstanceNorm", "LayerNorm", "LeakyReLU",
             "Embedding"}


def value_inputs(nodes: list[dict], node: dict) -> list[list[int]]:
    """The inputs an op's translation gets as arguments, in order: op outputs and graph inputs, and,
    for an op that is not a layer, the parameters it reads as values."""
    # (a layer op whose weight is computed, BERT's interleaved q/k/v projection, reads all of them as values)
    keep_params = node["op"] not in LAYER_OPS or any(nodes[r[0]]["op"] != "null" for r in node["inputs"][1:])
    return [r for r in node["inputs"] if nodes[r[0]]["op"] != "null" or nodes[r[0]].get("input") is not None
            or (keep_params and nodes[r[0]].get("param"))]


def op(*names: str) -> Callable[[Translation], Translation]:
    """Register a translation for the MXNet ops `names`."""
    def register(fn: Translation) -> Translation:
        for n in names:
            OPS[n] = fn
        return fn
    return register


def translate(ctx, node: dict, args: list[str]) -> str:
    """The PyTorch expression of one op node, or Unsupported."""
    fn = OPS.get(node["op"])
    if fn is None:
        raise Unsupported(node, f"the op {node['op']}", NEAREST_OP)
    return fn(ctx, node, args)


def _t(v) -> tuple:
    return tuple(int(a) for a in v) if isinstance(v, list | tuple) else (int(v),)


def _bool(v) -> bool:
    return v is True or str(v).lower() in ("true", "1")


def _in_shape(ctx, node) -> tuple:
    return ctx.shape_of(node["inputs"][0]) if node["inputs"] else ()


def _conv(node, arrays):
    a = node["attrs"]
    if a.get("layout") not in (None, "NCHW", "NCW", "NCDHW"):
        raise Unsupported(node, f"layout {a['layout']}", "the channels-first layout (NCHW)")
    k = _t(a["kernel"])
    nd = len(k)
    w = arrays[node["params"]["weight"]].shape
    groups = int(a.get("num_group", 1))
    stride, pad = _t(a.get("stride") or [1] * nd), _t(a.get("pad") or [0] * nd)  # (a symbol may hold "()")
    dil = _t(a.get("dilate", [1] * nd)) if a.get("dilate") else (1,) * nd
    bias = not _bool(a.get("no_bias", False))
    adj = (0,) * nd
    if node["op"] == "Convolution":
        ins, outs = w[1] * groups, int(a["num_filter"])
        cls = f"nn.Conv{nd}d"
    else:
        if a.get("target_shape") not in (None, [], ()):
            raise Unsupported(node, "Deconvolution target_shape", "Conv2DTranspose with padding and output_padding")
        ins, outs = w[0], int(a["num_filter"])
        adj = _t(a.get("adj", [0] * nd)) if a.get("adj") else (0,) * nd
        cls = f"nn.ConvTranspose{nd}d"
    # every argument spelled out (the same text for every instance of a block, so the structured writer can
    # compare them); the written file leaves torch's defaults out afterwards (emit.tidy)
    extra = f", output_padding={adj}" if node["op"] != "Convolution" else ""
    return (f"{cls}({ins}, {outs}, kernel_size={k}, stride={stride}, padding={pad}{extra}, dilation={dil}, "
            f"groups={groups}, bias={bias})"), {"weight": "weight"} | ({"bias": "bias"} if bias else {})




@op("Convolution", "Deconvolution")
def _convolution(ctx, node, args):
    if "weight" not in node["params"]:
        return _computed_weight(ctx, node, args)
    a, x = node["attrs"], args[0]
    ctor, roles = _conv(node, ctx.arrays)
    kind = "Conv" if node["op"] == "Convolution" else "ConvTranspose"
    desc = f"{kind} {a.get('num_filter')} kernel {tuple(a['kernel'])} stride {tuple(a.get('stride', ()))}"
    return f"{ctx.module(node, ctor, desc, roles)}({x})"


def _computed_weight(ctx, node, args) -> str:
    """FullyConnected / Convolution whose weight is computed in the graph (GluonNLP's BERT concatenates
    its query, key and value weights): the functional form on the values (F.linear, F.conv2d)."""
    a, (x, w, *rest) = node["attrs"], args
    bias = rest[0] if rest and not _bool(a.get("no_bias", False)) else "None"
    ctx.need(F_IMPORT)
    if node["op"] == "FullyConnected":
        flat = _bool(a.get("flatten", True)) and len(_in_shape(ctx, node)) > 2
        return f"F.linear({f'torch.flatten({x}, 1)' if flat else x}, {w}, {bias})"
    if node["op"] != "Convolution" or a.get("layout") not in (None, "NCHW", "NCW", "NCDHW"):
        raise Unsupported(node, f"{node['op']} with a computed weight", "Convolution or FullyConnected")
    k = _t(a["kernel"])
    nd = len(k)
    stride, pad = _t(a.get("stride") or [1] * nd), _t(a.get("pad") or [0] * nd)  # (a symbol may hold "()")
    dil = _t(a.get("dilate", [1] * nd)) if a.get("dilate") else (1,) * nd
    return (f"F.conv{nd}d({x}, {w}, {bias}, stride={stride}, padding={pad}, dilation={dil}, "
            f"groups={int(a.get('num_group', 1))})")


@op("FullyConnected")
def _dense(ctx, node, args):
    if "weight" not in node["params"]:
        return _computed_weight(ctx, node, args)
    a, x = node["attrs"], args[0]
    w = ctx.arrays[node["params"]["weight"]].shape
    bias = not _bool(a.get("no_bias", False))
    flatten = _bool(a.get("flatten", True))
    ctor = f"nn.Linear({w[1]}, {w[0]}, bias={bias})"
    roles = {"weight": "weight"} | ({"bias": "bias"} if bias else {})
    ref = ctx.module(node, ctor, f"Dense(flatten={flatten})", roles)
    if flatten and len(_in_shape(ctx, node)) > 2:
        ctx.choose("dense-flatten", "Gluon Dense flattens its input by default: written out as torch.flatten(x, 1) "
                   "before the nn.Linear")
        return f"{ref}(torch.flatten({x}, 1))"
    return f"{ref}({x})"


@op("BatchNorm")
def _batchnorm(ctx, node, args):
    a, x, in_shape = node["attrs"], args[0], _in_shape(ctx, node)
    axis = int(a.get("axis", 1))
    if axis not in (1, 1 - len(in_shape)):
        raise Unsupported(node, f"BatchNorm(axis={axis})", "BatchNorm(axis=1), channels first")
    c = ctx.arrays[node["params"]["gamma"]].shape[0]
    nd = {2: 1, 3: 1, 4: 2, 5: 3}.get(len(in_shape))
    if nd is None:
        raise Unsupported(node, f"BatchNorm on a {len(in_shape)}-D input", "BatchNorm on 2-D to 5-D inputs")
    m = float(a.get("momentum", 0.9))
    eps = float(a.get("eps", 1e-3))
    momentum = round(1.0 - m, 12)
    global_stats = _bool(a.get("use_global_stats", False))
    ctx.choose("bn-momentum", "BatchNorm momentum converted: Gluon momentum=m (running = m * running + (1 - m) * "
               "batch) is torch momentum=1 - m; eps kept as Gluon wrote it")
    if global_stats:
        ctx.helpers.add(GLOBAL_STATS)
        cls = "GlobalStatsBatchNorm"
        ctx.choose("bn-global-stats", "BatchNorm(use_global_stats=True) is GlobalStatsBatchNorm (in model.py): running "
                   "statistics in train mode too, never updated")
    elif ctx.semantics == "mxnet":
        ctx.helpers.add(MXNET_BN)
        cls = "MXNetBatchNorm"
        ctx.choose("bn-stats", "BatchNorm statistics follow MXNet (CPU): MXNetBatchNorm (in model.py) moves them in "
                   "backward, with the biased batch variance")
    else:
        cls = f"nn.BatchNorm{nd}d"
        ctx.choose("bn-stats", "BatchNorm statistics follow PyTorch: moved in every train-mode forward, with the "
                   "unbiased batch variance (Gluon on CPU: in backward, biased); the proof's Gluon side follows "
                   "PyTorch's here")
    ctor = f"{cls}({c}, eps={eps!r}, momentum={momentum!r})"
    roles = {"weight": "gamma", "bias": "beta", "running_mean": "running_mean", "running_var": "running_var"}
    ref = ctx.module(node, ctor, f"BatchNorm(momentum={m}, eps={eps}, use_global_stats={global_stats})", roles)
    layer = ctx.layers[-1]
    layer.count, layer.momentum = math.prod(in_shape) // in_shape[1], m
    # the op's own default is fix_gamma=True: Gluon's nn.BatchNorm always writes it (scale=False), a graph
    # built from mx.sym.BatchNorm (GluonCV's SSD feature expander) leaves it out and gets gamma fixed at 1
    if _bool(a.get("fix_gamma", True)):
        gamma = ctx.arrays[node["params"]["gamma"]]
        if not np.all(gamma == 1):
            raise Unsupported(node, "BatchNorm(fix_gamma=True) holding a gamma other than 1 (MXNet computes with 1 "
                              "and never trains it)", "its gamma set to 1 in the parameters, or fix_gamma=False")
        layer.frozen.append("weight")
        layer.notes.append("fix_gamma (scale=False, or mx.sym.BatchNorm's default): gamma stays 1, not trained")
    return f"{ref}({x})"


@op("InstanceNorm")
def _instancenorm(ctx, node, args):
    a, x, in_shape = node["attrs"], args[0], _in_shape(ctx, node)
    c = ctx.arrays[node["params"]["gamma"]].shape[0]
    nd = len(in_shape) - 2
    if nd not in (1, 2, 3):
        raise Unsupported(node, f"InstanceNorm on a {len(in_shape)}-D input", "InstanceNorm on NCW/NCHW/NCDHW")
    ctor = f"nn.InstanceNorm{nd}d({c}, eps={float(a.get('eps', 1e-3))!r}, affine=True)"
    return f"{ctx.module(node, ctor, 'InstanceNorm', {'weight': 'gamma', 'bias': 'beta'})}({x})"


@op("LayerNorm")
def _layernorm(ctx, node, args):
    a, x, in_shape = node["attrs"], args[0], _in_shape(ctx, node)
    axis = int(a.get("axis", -1))
    if axis not in (-1, len(in_shape) - 1):
        raise Unsupported(node, f"LayerNorm(axis={axis})", "LayerNorm(axis=-1)")
    c = ctx.arrays[node["params"]["gamma"]].shape[0]
    ctor = f"nn.LayerNorm({c}, eps={float(a.get('eps', 1e-5))!r})"
    return f"{ctx.module(node, ctor, 'LayerNorm', {'weight': 'gamma', 'bias': 'beta'})}({x})"


@op("Activation")
def _activation(ctx, node, args):
    act = node["attrs"].get("act_type")
    if act not in ACTIVATIONS:
        raise Unsupported(node, f"Activation('{act}')", f"Activation of {', '.join(ACTIVATIONS)}")
    if getattr(ctx, "functional", False):
        return f"{FUNCTIONAL[act]}({args[0]})"
    return f"{ctx.module(node, ACTIVATIONS[act], f'Activation({act})')}({args[0]})"


@op("relu", "sigmoid", "tanh")
def _elementwise(ctx, node, args):
    return f"torch.{node['op']}({args[0]})"


@op("LeakyReLU")
def _leaky(ctx, node, args):
    a, x = node["attrs"], args[0]
    act = a.get("act_type", "leaky")
    slope = float(a.get("slope", 0.25))
    if act == "leaky" and getattr(ctx, "functional", False):
        return f"F.leaky_relu({x}, {slope!r})"
    if act == "leaky":
        return f"{ctx.module(node, f'nn.LeakyReLU({slope!r})', f'LeakyReLU({slope})')}({x})"
    if act == "elu":
        return f"{ctx.module(node, f'nn.ELU(alpha={slope!r})', f'ELU({slope})')}({x})"
    if act == "selu":
        return f"{ctx.module(node, 'nn.SELU()', 'SELU')}({x})"
    if act == "gelu":
        return f"{ctx.module(node, 'nn.GELU()', 'GELU')}({x})"
    if act == "prelu":
        n = ctx.arrays[node["params"]["alpha"]].size
        return f"{ctx.module(node, f'nn.PReLU(num_parameters={n})', 'PReLU', {'weight': 'alpha'})}({x})"
    raise Unsupported(node, f"LeakyReLU(act_type='{act}')", "LeakyReLU, ELU, SELU, GELU or PReLU")


@op("Pooling")
def _pooling(ctx, node, args):
    a, x, in_shape = node["attrs"], args[0], _in_shape(ctx, node)
    kind = a.get("pool_type", "max")
    nd = len(in_shape) - 2
    if kind not in ("max", "avg") or nd not in (1, 2, 3):
        raise Unsupported(node, f"Pooling(pool_type={kind}) on a {len(in_shape)}-D input",
                          "MaxPool or AvgPool, 1-D to 3-D")
    name = "Max" if kind == "max" else "Avg"
    if _bool(a.get("global_pool", False)) and getattr(ctx, "functional", False):
        return f"F.adaptive_{kind}_pool{nd}d({x}, 1)"
    if _bool(a.get("global_pool", False)):
        return f"{ctx.module(node, f'nn.Adaptive{name}Pool{nd}d(1)', f'Global{name}Pool{nd}D')}({x})"
    k = _t(a["kernel"])
    stride = _t(a.get("stride", [1] * nd)) if a.get("stride") else (1,) * nd
    pad = _t(a.get("pad", [0] * nd)) if a.get("pad") else (0,) * nd
    ceil = a.get("pooling_convention", "valid") == "full"
    if a.get("pooling_convention") == "same":
        raise Unsupported(node, "pooling_convention 'same'", "ceil_mode=True or False with explicit padding")
    extra = f", count_include_pad={_bool(a.get('count_include_pad', True))}" if kind == "avg" else ""
    ctor = f"nn.{name}Pool{nd}d(kernel_size={k}, stride={stride}, padding={pad}, ceil_mode={ceil}{extra})"
    if ceil:
        ctx.choose("pool-ceil", "pooling_convention='full' is ceil_mode=True (torch drops a last window that would "
                   "start in the padding; the proof shows whether it matters here)")
    return f"{ctx.module(node, ctor, f'{name}Pool{nd}D')}({x})"


@op("Dropout")
def _dropout(ctx, node, args):
    a = node["attrs"]
    if a.get("mode", "training") != "training" or a.get("axes") not in (None, [], ()):
        raise Unsupported(node, f"Dropout(mode={a.get('mode')}, axes={a.get('axes')})", "Dropout(rate)")
    rate = float(a.get("p", 0.5))
    return f"{ctx.module(node, f'nn.Dropout(p={rate!r})', 'Dropout')}({args[0]})"


@op("Flatten", "flatten")
def _flatten(ctx, node, args):
    if getattr(ctx, "functional", False):
        return f"torch.flatten({args[0]}, 1)"
    return f"{ctx.module(node, 'nn.Flatten()', 'Flatten')}({args[0]})"


@op("Embedding")
def _embedding(ctx, node, args):
    a = node["attrs"]
    n = int(a["input_dim"])
    ctor = f"nn.Embedding({n}, {int(a['output_dim'])})"
    # MXNet's Embedding truncates a float index toward zero and clips it into [0, input_dim - 1]
    return f"{ctx.module(node, ctor, 'Embedding', {'weight': 'weight'})}({args[0]}.long().clamp(0, {n - 1}))"


@op("Concat", "concat")
def _concat(ctx, node, args):
    return f"torch.cat([{', '.join(args)}], dim={int(node['attrs'].get('dim', 1))})"


@op(*ADDS)
def _add(ctx, node, args):
    return " + ".join(args)


@op(*MULS)
def _mul(ctx, node, args):
    return " * ".join(args)


@op(*SCALARS)
def _scalar(ctx, node, args):
    return f"{args[0]} {SCALARS[node['op']]} {float(node['attrs']['scalar'])!r}"


@op(*IDENTITY)
def _identity(ctx, node, args):
    return args[0]


@op("clip")
def _clip(ctx, node, args):
    a = node["attrs"]
    lo, hi = float(a["a_min"]), float(a["a_max"])
    if (lo, hi) == (0.0, 6.0) and getattr(ctx, "functional", False):
        return f"F.relu6({args[0]})"
    if (lo, hi) == (0.0, 6.0):
        return f"{ctx.module(node, 'nn.ReLU6()', 'clip(0, 6)')}({args[0]})"
    return f"torch.clamp({args[0]}, {lo!r}, {hi!r})"


@op("UpSampling")
def _upsampling(ctx, node, args):
    a = node["attrs"]
    if a.get("sample_type", "nearest") != "nearest" or len(args) != 1:
        raise Unsupported(node, f"UpSampling(sample_type={a.get('sample_type')})", "nearest UpSampling of one input")
    ctor = f"nn.Upsample(scale_factor={int(a['scale'])}, mode='nearest')"
    return f"{ctx.module(node, ctor, 'UpSampling')}({args[0]})"


# -- the ops of the GluonCV and GluonNLP model zoos (issue 26) --------------------------------------
# Each is written as the torch (or torchvision) op a reader would write, and MXNet's rule kept where
# the two differ: the choice is said in PORT.md (ctx.choose) and tests/test_port_ops.py holds it to
# the MXNet op in float32 and float64, corner cases included.

F_IMPORT = "import torch.nn.functional as F"
TORCHVISION = "import torchvision"
# helpers of backends/torch/emulations.py that need others copied beside them
HELPER_NEEDS = {"box_nms": ("_float32",), "box_decode": ("_float32",),
                **{f"interleaved_matmul_{k}": ("_heads",) for k in ("selfatt_qk", "selfatt_valatt", "encdec_qk",
                                                                    "encdec_valatt")}}
DTYPES = {"float16": "float16", "float32": "float32", "float64": "float64", "uint8": "uint8", "int8": "int8",
          "int32": "int32", "int64": "int64", "bool": "bool", "bfloat16": "bfloat16"}
COMPARE = {"greater": ">", "greater_equal": ">=", "lesser": "<", "lesser_equal": "<=", "equal": "==",
           "not_equal": "!="}
LOGICAL = {"logical_and": "&", "logical_or": "|", "logical_xor": "^"}
SUBS = {"elemwise_sub", "_minus", "_Minus", "_sub", "broadcast_sub", "broadcast_minus"}
DIVS = {"elemwise_div", "_div", "_Div", "broadcast_div"}
POWERS = {"broadcast_power", "_power", "_Power"}
UNARY = {"exp": "torch.exp", "log": "torch.log", "log2": "torch.log2", "log10": "torch.log10", "log1p": "torch.log1p",
         "expm1": "torch.expm1", "sqrt": "torch.sqrt", "rsqrt": "torch.rsqrt", "square": "torch.square",
         "abs": "torch.abs", "erf": "torch.erf", "erfinv": "torch.erfinv", "reciprocal": "torch.reciprocal",
         "sign": "torch.sign", "floor": "torch.floor", "ceil": "torch.ceil", "trunc": "torch.trunc",
         "fix": "torch.trunc", "sin": "torch.sin", "cos": "torch.cos",
         "softsign": "F.softsign", "gammaln": "torch.lgamma"}
REDUCE = {"sum": "sum", "mean": "mean", "max": "amax", "min": "amin", "prod": "prod", "nansum": "nansum"}


def _helper(ctx, name: str) -> str:
    """Copy emulations.py's `name` (and what it calls) into model.py; returns the name."""
    ctx.helpers.update((name, *HELPER_NEEDS.get(name, ())))
    return name


def _f(v) -> str:
    return repr(float(v))


def _dims(axes) -> str:
    axes = tuple(axes)
    return str(axes[0]) if len(axes) == 1 else str(axes)


def _ax(axis, ndim: int) -> int:
    return int(axis) % ndim if ndim else int(axis)


def _axes(a: dict, ndim: int, key: str = "axis") -> tuple[int, ...]:
    """MXNet's axis setting (int, tuple, None or () for all), with `exclude`, as sorted axes."""
    v = a.get(key)
    axes = tuple(range(ndim)) if v is None or v == [] or v == () else tuple(_ax(i, ndim) for i in _t(v))
    if _bool(a.get("exclude", False)):
        axes = tuple(i for i in range(ndim) if i not in axes)
    return tuple(sorted(axes))


def _at(x: str, ndim: int, axis: int, item: str) -> str:
    """x indexed by `item` along one axis: x[item], x[:, item] or x[..., item]."""
    if axis == 0:
        return f"{x}[{item}]"
    if axis == ndim - 1 and ndim > 2:
        return f"{x}[..., {item}]"
    return f"{x}[{', '.join([':'] * axis + [item])}]"


def _items(items: list[str]) -> str:
    """An index over leading axes, trailing full slices dropped: ['1:3', ':', ':'] -> '1:3'."""
    while len(items) > 1 and items[-1] == ":":
        items = items[:-1]
    return ", ".join(items)


def _one(shape: tuple, expr: str) -> str:
    """MXNet gives a reduction over every axis shape (1,) where torch gives a 0-d tensor."""
    return f"{expr}.reshape(1)" if tuple(shape) == (1,) else expr


def _dtype(node, value, default: str = "float32") -> str:
    name = str(value or default)
    if name not in DTYPES:
        raise Unsupported(node, f"dtype {name}", f"one of {', '.join(DTYPES)}")
    return f"torch.{DTYPES[name]}"


# -- shapes -----------------------------------------------------------------------------------------


@op("transpose")
def _transpose(ctx, node, args):
    n = len(_in_shape(ctx, node))
    axes = tuple(_ax(i, n) for i in _t(node["attrs"]["axes"])) if node["attrs"].get("axes") else \
        tuple(reversed(range(n)))
    if axes == tuple(range(n)):
        return args[0]
    return f"{args[0]}.permute({', '.join(map(str, axes))})"


@op("expand_dims")
def _expand_dims(ctx, node, args):
    return f"{args[0]}.unsqueeze({int(node['attrs']['axis'])})"


@op("SwapAxis", "swapaxes")
def _swapaxis(ctx, node, args):
    a = node["attrs"]
    return f"{args[0]}.transpose({int(a.get('dim1', 0))}, {int(a.get('dim2', 0))})"


@op("reverse", "flip")
def _reverse(ctx, node, args):
    n = len(_in_shape(ctx, node))
    return f"torch.flip({args[0]}, dims={[_ax(i, n) for i in _t(node['attrs']['axis'])]})"


@op("squeeze")
def _squeeze(ctx, node, args):
    a, n = node["attrs"], len(_in_shape(ctx, node))
    if a.get("axis") in (None, [], ()):
        return _one(node["out_shape"], f"{args[0]}.squeeze()")
    return f"{args[0]}.squeeze({_dims(_ax(i, n) for i in _t(a['axis']))})"


def _reshape_dims(codes: list[int], x: str, in_shape: tuple, reverse: bool) -> tuple[list[str], list[int]] | None:
    """MXNet's Reshape codes as torch dimensions (each an int or x.shape[i]) and their values:
    0 copies the input dimension, -1 infers one, -2 copies the rest, -3 merges two, -4 splits one
    into the next two codes (one may be -1); `reverse` reads the codes from the right."""
    n = len(in_shape)
    src = list(range(n))[::-1] if reverse else list(range(n))
    codes = codes[::-1] if reverse else list(codes)
    if reverse and -4 in codes:
        return None
    out: list[tuple[str, int]] = []
    i = j = 0
    while i < len(codes):
        c = codes[i]
        if c == 0:
            out.append((f"{x}.shape[{src[j]}]", in_shape[src[j]]))
            j += 1
        elif c == -1:
            out.append(("-1", -1))
            j += 1
        elif c == -2:
            out += [(f"{x}.shape[{k}]", in_shape[k]) for k in src[j:]]
            j = n
        elif c == -3:
            lo, hi = sorted(src[j:j + 2])
            out.append((f"{x}.shape[{lo}] * {x}.shape[{hi}]", in_shape[lo] * in_shape[hi]))
            j += 2
        elif c == -4:
            d1, d2 = codes[i + 1], codes[i + 2]
            d1 = in_shape[src[j]] // d2 if d1 == -1 else d1
            d2 = in_shape[src[j]] // d1 if d2 == -1 else d2
            out += [(str(d1), d1), (str(d2), d2)]
            i += 2
            j += 1
        else:
            out.append((str(c), c))
            j += 1
        i += 1
    if reverse:
        out = out[::-1]
    if sum(v == -1 for _, v in out) > 1:
        return None
    known = math.prod(v for _, v in out if v != -1)
    values = [v if v != -1 else (math.prod(in_shape) // known if known else 0) for _, v in out]
    return [t for t, _ in out], values


@op("Reshape", "reshape")
def _reshape(ctx, node, args):
    a, x, in_shape, out = node["attrs"], args[0], _in_shape(ctx, node), tuple(node["out_shape"])
    if a.get("target_shape") not in (None, [], ()) or _bool(a.get("keep_highest", False)):
        raise Unsupported(node, "Reshape(target_shape=..., keep_highest=...)", "Reshape(shape=...)")
    found = _reshape_dims([int(c) for c in _t(a.get("shape", []))], x, in_shape, _bool(a.get("reverse", False)))
    dims = found[0] if found and tuple(found[1]) == out else [str(d) for d in out]
    if dims == [f"{x}.shape[{i}]" for i in range(len(in_shape))]:
        return x
    return f"{x}.reshape({', '.join(dims)})"


@op("reshape_like")
def _reshape_like(ctx, node, args):
    a = node["attrs"]
    if all(a.get(k) is None for k in ("lhs_begin", "lhs_end", "rhs_begin", "rhs_end")):
        return f"{args[0]}.reshape({args[1]}.shape)"
    return f"{args[0]}.reshape({', '.join(map(str, node['out_shape']))})"


@op("slice_axis")
def _slice_axis(ctx, node, args):
    a, n = node["attrs"], len(_in_shape(ctx, node))
    end = a.get("end")
    return _at(args[0], n, _ax(a["axis"], n), f"{int(a['begin']) or ''}:{'' if end is None else int(end)}")


@op("slice", "crop")
def _slice(ctx, node, args):
    """Python's slice rule per axis (MXNet's); a negative step becomes torch.flip and a positive one."""
    a, shape = node["attrs"], _in_shape(ctx, node)
    begin, end = list(a.get("begin") or []), list(a.get("end") or [])
    step = list(a.get("step") or [])
    items, flips = [], []
    for i, size in enumerate(shape):
        b = begin[i] if i < len(begin) else None
        e = end[i] if i < len(end) else None
        s = (step[i] if i < len(step) else None) or 1
        r = range(size)[slice(b, e, s)]
        if r == range(size):
            items.append(":")
            continue
        if s > 0:  # as the user wrote it: Python's rule is MXNet's
            items.append(f"{'' if b is None else b}:{'' if e is None else e}" + (f":{s}" if s != 1 else ""))
            continue
        flips.append(i)
        r = range(size - 1 - r.start, size - 1 - r.start + len(r) * -s, -s) if len(r) else range(0)
        first, stop, stride = r.start if len(r) else 0, r.start + (len(r) - 1) * r.step + 1 if len(r) else 0, r.step
        items.append(f"{first or ''}:{stop if stop != size else ''}" + (f":{stride}" if stride != 1 else ""))
    x = f"torch.flip({args[0]}, dims={flips})" if flips else args[0]
    return x if all(t == ":" for t in items) else f"{x}[{_items(items)}]"


@op("slice_like")
def _slice_like(ctx, node, args):
    a, n = node["attrs"], len(_in_shape(ctx, node))
    axes = _axes({"axis": a.get("axes")}, n)
    items = [f":{args[1]}.shape[{i}]" if i in axes else ":" for i in range(n)]
    return f"{args[0]}[{_items(items)}]"


@op("tile")
def _tile(ctx, node, args):
    return f"{args[0]}.tile({tuple(_t(node['attrs']['reps']))})"


@op("repeat")
def _repeat(ctx, node, args):
    a = node["attrs"]
    if a.get("axis") is None:
        return f"{args[0]}.flatten().repeat_interleave({int(a['repeats'])})"
    return f"{args[0]}.repeat_interleave({int(a['repeats'])}, dim={int(a['axis'])})"


@op("SliceChannel", "split")
def _split(ctx, node, args):
    a, n = node["attrs"], len(_in_shape(ctx, node))
    k, axis = int(a["num_outputs"]), _ax(a.get("axis", 1), n)
    if _bool(a.get("squeeze_axis", False)):
        return f"{args[0]}.squeeze({axis})" if k == 1 else f"torch.unbind({args[0]}, dim={axis})"
    return args[0] if k == 1 else f"torch.chunk({args[0]}, {k}, dim={axis})"


@op("stack")
def _stack(ctx, node, args):
    return f"torch.stack([{', '.join(args)}], dim={int(node['attrs'].get('axis', 0))})"


@op("broadcast_to")
def _broadcast_to(ctx, node, args):
    dims = [str(d) if d else "-1" for d in _t(node["attrs"]["shape"])]
    return f"{args[0]}.expand({', '.join(dims)})"


@op("broadcast_like")
def _broadcast_like(ctx, node, args):
    a, n = node["attrs"], len(_in_shape(ctx, node))
    if a.get("lhs_axes") in (None, [], ()):
        return f"{args[0]}.expand_as({args[1]})"
    sizes = dict(zip((_ax(i, n) for i in _t(a["lhs_axes"])), _t(a["rhs_axes"])))
    dims = [f"{args[1]}.shape[{sizes[i]}]" if i in sizes else "-1" for i in range(n)]
    return f"{args[0]}.expand({', '.join(dims)})"


@op("broadcast_axis", "broadcast_axes")
def _broadcast_axis(ctx, node, args):
    a, n = node["attrs"], len(_in_shape(ctx, node))
    sizes = dict(zip((_ax(i, n) for i in _t(a["axis"])), _t(a["size"])))
    return f"{args[0]}.expand({', '.join(str(sizes.get(i, -1)) for i in range(n))})"


@op("shape_array")
def _shape_array(ctx, node, args):
    return f"torch.tensor({args[0]}.shape, device={args[0]}.device)"


@op("size_array")
def _size_array(ctx, node, args):
    return f"torch.tensor([{args[0]}.numel()], device={args[0]}.device)"


@op("_arange")
def _arange(ctx, node, args):
    a = node["attrs"]
    if _bool(a.get("infer_range", False)):
        raise Unsupported(node, "arange(infer_range=True)", "arange with its stop given")
    start, stop, step = a.get("start", 0), a.get("stop"), a.get("step", 1)
    start, stop = (0, start) if stop is None else (start, stop)
    dtype, r = _dtype(node, a.get("dtype"), "float32"), int(a.get("repeat", 1))
    n = node["out_shape"][0] // r
    if float(start).is_integer() and float(step) == 1:
        expr = f"torch.arange({int(start)}, {int(start) + n}, dtype={dtype}, device=x.device)"
    else:
        # MXNet computes start + i * step in the output dtype; torch.arange(start, stop, step) in double,
        # which rounds differently (float32: 0.9 vs MXNet's 0.90000004)
        ctx.choose("arange", "arange with a fractional start or step: start + step * torch.arange(n), in the output "
                   "dtype as MXNet computes it (torch.arange(start, stop, step) rounds in double)")
        steps = f"torch.arange({n}, dtype={dtype}, device=x.device)"
        expr = f"{_f(step)} * {steps}" + (f" + {_f(start)}" if float(start) else "")
        expr = f"({expr})" if r > 1 else expr
    return f"{expr}.repeat_interleave({r})" if r > 1 else expr


@op("_contrib_arange_like")
def _arange_like(ctx, node, args):
    a, x = node["attrs"], args[0]
    n = len(_in_shape(ctx, node))
    count = f"{x}.numel()" if a.get("axis") is None else f"{x}.shape[{_ax(a['axis'], n)}]"
    r = int(a.get("repeat", 1))
    steps = f"torch.arange({count}, dtype={x}.dtype, device={x}.device)"
    if r > 1:
        steps = f"torch.div(torch.arange({count}, device={x}.device), {r}, rounding_mode='floor').to({x}.dtype)"
    start, step = float(a.get("start", 0)), float(a.get("step", 1))
    expr = steps if step == 1 else f"{steps} * {step!r}"
    expr = expr if start == 0 else f"{start!r} + {expr}"
    return f"({expr}).reshape({x}.shape)" if a.get("axis") is None else expr


@op("ones_like", "zeros_like")
def _like(ctx, node, args):
    return f"torch.{node['op']}({args[0]})"


@op("_zeros", "_ones", "_full")
def _filled(ctx, node, args):
    a = node["attrs"]
    shape, dtype = tuple(_t(a["shape"])), _dtype(node, a.get("dtype"))
    fill = {"_zeros": "torch.zeros(", "_ones": "torch.ones(", "_full": "torch.full("}[node["op"]]
    value = f", {_f(a['value'])}" if node["op"] == "_full" else ""
    return f"{fill}{shape}{value}, dtype={dtype}, device=x.device)"


@op("Cast", "cast", "amp_cast")
def _cast(ctx, node, args):
    ctx.choose("cast", "Cast: x.to(dtype); a float cast to an integer truncates toward zero and wraps (uint8: -1.7 -> "
               "255, 300.7 -> 44) on both frameworks here")
    return f"{args[0]}.to({_dtype(node, node['attrs']['dtype'])})"


@op("Pad", "pad")
def _pad(ctx, node, args):
    a, n = node["attrs"], len(_in_shape(ctx, node))
    width = _t(a["pad_width"])
    mode = a.get("mode", "constant")
    if any(width[:4]) or mode not in ("constant", "edge", "reflect"):
        raise Unsupported(node, f"Pad(mode={mode}) of the batch or channel axis", "Pad of the spatial axes, mode "
                          "constant, edge or reflect")
    pads = tuple(p for i in reversed(range(2, n)) for p in width[2 * i:2 * i + 2])
    ctx.need(F_IMPORT)
    if mode == "constant":
        return f"F.pad({args[0]}, {pads}, mode='constant', value={_f(a.get('constant_value', 0))})"
    return f"F.pad({args[0]}, {pads}, mode='{'replicate' if mode == 'edge' else 'reflect'}')"


# -- elementwise ------------------------------------------------------------------------------------


@op(*SUBS)
def _sub(ctx, node, args):
    return f"{args[0]} - {args[1]}"


def _int(ctx, ref) -> bool:
    """Whether a value is of an integer dtype (MXNet's graph types, read with the shapes)."""
    node = ctx.em.nodes[ref[0]] if hasattr(ctx, "em") else ctx.nodes[ref[0]]
    dtypes = node.get("out_dtypes") or [None]
    name = dtypes[ref[1]] if ref[1] < len(dtypes) else None
    return bool(name) and name.startswith(("int", "uint"))


@op(*DIVS)
def _div(ctx, node, args):
    if all(_int(ctx, r) for r in node["inputs"][:2]):  # CenterNet's index // width: MXNet divides integers
        ctx.choose("int-div", "an integer divided by an integer is integer division in MXNet (toward zero): "
                   "torch.div(a, b, rounding_mode='trunc')")
        return f"torch.div({args[0]}, {args[1]}, rounding_mode='trunc')"
    return f"{args[0]} / {args[1]}"


@op(*POWERS)
def _power(ctx, node, args):
    return f"{args[0]} ** {args[1]}"


@op("broadcast_maximum", "_maximum", "_Maximum", "broadcast_minimum", "_minimum", "_Minimum")
def _maximum(ctx, node, args):
    big = "max" in node["op"].lower()
    ctx.choose("maximum", "maximum / minimum of two arrays: torch.where(a >= b, a, b) (<= for minimum), so a tie "
               "sends the whole gradient to the first argument as MXNet does (torch.maximum splits it in halves)")
    return f"torch.where({args[0]} {'>=' if big else '<='} {args[1]}, {args[0]}, {args[1]})"


@op("broadcast_mod", "_mod", "_Mod", "_mod_scalar", "_rmod_scalar")
def _mod(ctx, node, args):
    """MXNet's mod is Python's (the sign of the divisor), torch.remainder's; a zero divisor gives 0
    in MXNet and NaN here (a difference the port keeps: docs/port.md)."""
    if node["op"] == "_mod_scalar":
        return f"torch.remainder({args[0]}, {_f(node['attrs']['scalar'])})"
    if node["op"] == "_rmod_scalar":
        return f"torch.remainder(torch.full_like({args[0]}, {_f(node['attrs']['scalar'])}), {args[0]})"
    return f"torch.remainder({args[0]}, {args[1]})"


@op("_rminus_scalar", "_rdiv_scalar", "_power_scalar", "_rpower_scalar")
def _rscalar(ctx, node, args):
    s = _f(node["attrs"]["scalar"])
    return {"_rminus_scalar": f"{s} - {args[0]}", "_rdiv_scalar": f"{s} / {args[0]}",
            "_power_scalar": f"{args[0]} ** {s}", "_rpower_scalar": f"{s} ** {args[0]}"}[node["op"]]


@op("_maximum_scalar", "_minimum_scalar")
def _max_scalar(ctx, node, args):
    x, s = args[0], _f(node["attrs"]["scalar"])
    ctx.choose("maximum-scalar", "maximum / minimum with a number: torch.where(x >= s, x, s) (<= for minimum): at x == "
               "s the gradient passes, as in MXNet (torch.clamp's is 0 there)")
    return f"torch.where({x} {'>=' if node['op'] == '_maximum_scalar' else '<='} {s}, {x}, {s})"


@op(*UNARY)
def _unary(ctx, node, args):
    fn = UNARY[node["op"]]
    if fn.startswith("F."):
        ctx.need(F_IMPORT)
    return f"{fn}({args[0]})"


@op("negative")
def _negative(ctx, node, args):
    return f"-{args[0]}"


@op("round")
def _round(ctx, node, args):
    x = args[0]
    ctx.choose("round", "round: MXNet rounds half away from zero (2.5 -> 3, -0.5 -> -1), torch.round half to even: "
               "written as torch.trunc(x) + torch.trunc(2 * (x - torch.trunc(x))), exact in floating point")
    return f"torch.trunc({x}) + torch.trunc(2 * ({x} - torch.trunc({x})))"


@op("rint")
def _rint(ctx, node, args):
    x = args[0]
    ctx.choose("rint", "rint: MXNet's takes the floor on a tie (1.5 -> 1, -0.5 -> -1), torch.round rounds half to "
               "even: written as MXNet's rule, floor where x - floor(x) <= ceil(x) - x")
    return f"torch.where({x} - torch.floor({x}) <= torch.ceil({x}) - {x}, torch.floor({x}), torch.ceil({x}))"


@op(*(f"{p}{k}{s}" for k in COMPARE for p, s in (("broadcast_", ""), ("_", ""), ("_", "_scalar"))))
def _compare(ctx, node, args):
    name = node["op"].removeprefix("broadcast_").strip("_").removesuffix("_scalar")
    other = _f(node["attrs"]["scalar"]) if node["op"].endswith("_scalar") else args[1]
    return f"({args[0]} {COMPARE[name]} {other}).to({args[0]}.dtype)"


@op(*(f"{p}{k}" for k in LOGICAL for p in ("broadcast_", "_")), "logical_not")
def _logical(ctx, node, args):
    if node["op"] == "logical_not":
        return f"({args[0]} == 0).to({args[0]}.dtype)"
    sign = LOGICAL[node["op"].removeprefix("broadcast_").strip("_")]
    return f"(({args[0]} != 0) {sign} ({args[1]} != 0)).to({args[0]}.dtype)"


@op("where")
def _where(ctx, node, args):
    cond, shape = args[0], ctx.shape_of(node["inputs"][1])
    mask = f"{cond} != 0"
    if len(ctx.shape_of(node["inputs"][0])) == 1 and len(shape) > 1:
        mask = f"({cond} != 0).reshape(-1{', 1' * (len(shape) - 1)})"
    return f"torch.where({mask}, {args[1]}, {args[2]})"


@op("hard_sigmoid")
def _hard_sigmoid(ctx, node, args):
    a = node["attrs"]
    alpha, beta = float(a.get("alpha", 0.2)), float(a.get("beta", 0.5))
    ctx.need(F_IMPORT)
    ctx.choose("hard-sigmoid", "hard_sigmoid: F.hardtanh(alpha * x + beta, 0, 1), whose gradient is 0 where the "
               "output is exactly 0 or 1, as MXNet's (torch.clamp would pass it there)")
    return f"F.hardtanh({alpha!r} * {args[0]} + {beta!r}, 0.0, 1.0)"


# -- reductions and normalisations ------------------------------------------------------------------


@op(*REDUCE)
def _reduce(ctx, node, args):
    a, x, n = node["attrs"], args[0], len(_in_shape(ctx, node))
    axes, keep = _axes(a, n), _bool(a.get("keepdims", False))
    fn = REDUCE[node["op"]]
    if node["op"] in ("max", "min"):
        ctx.choose("max-ties", "max / min over axes: torch.amax / amin; where several entries tie for the maximum "
                   "torch splits the gradient evenly among them, MXNet gives each the whole of it")
    if fn == "prod" and len(axes) > 1:
        if axes != tuple(range(n)) or keep:
            raise Unsupported(node, "prod over several axes", "prod over one axis or over all of them")
        return f"{x}.prod().reshape(1)"
    if axes == tuple(range(n)) and not keep:
        return _one(node["out_shape"], f"{x}.{fn}()")
    return f"{x}.{fn}(dim={_dims(axes)}{', keepdim=True' if keep else ''})"


@op("norm")
def _norm(ctx, node, args):
    a, x, n = node["attrs"], args[0], len(_in_shape(ctx, node))
    order = int(a.get("ord", 2))
    if a.get("out_dtype") is not None:
        raise Unsupported(node, "norm(out_dtype=...)", "norm with the input's dtype, then Cast")
    axes, keep = _axes(a, n), _bool(a.get("keepdims", False))
    ctx.choose("norm", "norm: torch.linalg.vector_norm; at an all-zero vector the L2 norm's gradient is NaN in MXNet, "
               "0 in torch")
    if axes == tuple(range(n)) and not keep:
        return _one(node["out_shape"], f"torch.linalg.vector_norm({x}, ord={order})")
    return f"torch.linalg.vector_norm({x}, ord={order}, dim={_dims(axes)}{', keepdim=True' if keep else ''})"


@op("argmax", "argmin")
def _argmax(ctx, node, args):
    a, x, n = node["attrs"], args[0], len(_in_shape(ctx, node))
    keep = ", keepdim=True" if _bool(a.get("keepdims", False)) else ""
    if a.get("axis") is None:
        return _one(node["out_shape"], f"torch.{node['op']}({x}).to({x}.dtype)")
    return f"torch.{node['op']}({x}, dim={_ax(a['axis'], n)}{keep}).to({x}.dtype)"


@op("L2Normalization")
def _l2normalization(ctx, node, args):
    a, x, n = node["attrs"], args[0], len(_in_shape(ctx, node))
    mode, eps = a.get("mode", "instance"), float(a.get("eps", 1e-10))
    axes = {"instance": tuple(range(1, n)), "channel": (1,), "spatial": tuple(range(2, n))}[mode]
    ctx.choose("l2-normalization", "L2Normalization: x / sqrt(sum(x^2) + eps) as MXNet computes it (F.normalize "
               "divides by max(norm, eps): a vector of norm 1e-6 would give 1.0 there, 0.0995 here)")
    return f"{x} / torch.sqrt(torch.sum({x} * {x}, dim={_dims(axes)}, keepdim=True) + {eps!r})"


@op("softmax", "SoftmaxActivation", "log_softmax")
def _softmax(ctx, node, args):
    a, x = node["attrs"], args[0]
    # SoftmaxActivation: mode 'channel' is axis 1; 'instance' (the default) is the last axis, whatever its docs say
    channel = node["op"] == "SoftmaxActivation" and a.get("mode", "instance") == "channel"
    axis = int(a.get("axis", 1 if channel else -1))
    if a.get("dtype") is not None:
        raise Unsupported(node, f"{node['op']}(dtype={a['dtype']})", f"{node['op']} in the input's dtype, then Cast")
    t = a.get("temperature")
    scaled = x if t is None or float(t) == 1.0 else f"{x} / {_f(t)}"
    if _bool(a.get("use_length", False)):
        temp = "" if t is None or float(t) == 1.0 else f", temperature={_f(t)}"
        return f"{_helper(ctx, 'softmax_with_length')}({x}, {args[1]}, dim={axis}{temp})"
    return f"torch.{node['op'].lower() if node['op'] != 'SoftmaxActivation' else 'softmax'}({scaled}, dim={axis})"


@op("SequenceMask")
def _sequence_mask(ctx, node, args):
    a = node["attrs"]
    if not _bool(a.get("use_sequence_length", False)):
        return args[0]
    axis = int(a.get("axis", 0))
    return (f"{_helper(ctx, 'sequence_mask')}({args[0]}, {args[1]}, value={_f(a.get('value', 0))}"
            f"{f', axis={axis}' if axis else ''})")


@op("_contrib_div_sqrt_dim")
def _div_sqrt_dim(ctx, node, args):
    return f"{args[0]} / {args[0]}.shape[-1] ** 0.5"


# -- products and attention -------------------------------------------------------------------------


@op("dot")
def _dot(ctx, node, args):
    a, (x, y) = node["attrs"], args
    ta, tb = _bool(a.get("transpose_a", False)), _bool(a.get("transpose_b", False))
    na, nb = len(ctx.shape_of(node["inputs"][0])), len(ctx.shape_of(node["inputs"][1]))
    if (ta and na > 2) or (tb and nb > 2) or a.get("forward_stype") not in (None, "default"):
        raise Unsupported(node, "dot with a transposed N-D operand", "dot of transposed 2-D operands, or batch_dot")
    x, y = (f"{x}.t()" if ta and na == 2 else x), (f"{y}.t()" if tb and nb == 2 else y)
    if na <= 2 and nb <= 2:
        return _one(node["out_shape"], f"({x} @ {y})") if na == nb == 1 else f"{x} @ {y}"
    return f"torch.tensordot({x}, {y}, dims=1)"


@op("batch_dot")
def _batch_dot(ctx, node, args):
    a, (x, y) = node["attrs"], args
    if _bool(a.get("transpose_a", False)):
        x = f"{x}.transpose(-2, -1)"
    if _bool(a.get("transpose_b", False)):
        y = f"{y}.transpose(-2, -1)"
    return f"torch.bmm({x}, {y})" if len(ctx.shape_of(node["inputs"][0])) == 3 else f"torch.matmul({x}, {y})"


@op("_contrib_interleaved_matmul_selfatt_qk", "_contrib_interleaved_matmul_selfatt_valatt",
    "_contrib_interleaved_matmul_encdec_qk", "_contrib_interleaved_matmul_encdec_valatt")
def _interleaved(ctx, node, args):
    name = _helper(ctx, node["op"].removeprefix("_contrib_"))
    return f"{name}({', '.join(args)}, heads={int(node['attrs']['heads'])})"


# -- indexing ---------------------------------------------------------------------------------------


def _index_rule(ctx, node, idx: str, size: int) -> str:
    mode = node["attrs"].get("mode", "clip")
    if mode not in ("clip", "wrap"):
        raise Unsupported(node, f"{node['op']}(mode='{mode}')", f"{node['op']}(mode='clip') or mode='wrap'")
    ctx.choose(f"{node['op']}-index", f"{node['op']}: MXNet truncates a float index toward zero, then "
               f"{'clips it into [0, n - 1]' if mode == 'clip' else 'wraps it (-1 -> n - 1)'}: "
               f"{'.long().clamp(0, n - 1)' if mode == 'clip' else '.long() % n'}")
    return f"{idx}.long().clamp(0, {size - 1})" if mode == "clip" else f"({idx}.long() % {size})"


@op("take")
def _take(ctx, node, args):
    shape = _in_shape(ctx, node)
    axis = _ax(node["attrs"].get("axis", 0), len(shape))
    return _at(args[0], len(shape), axis, _index_rule(ctx, node, args[1], shape[axis]))


@op("pick")
def _pick(ctx, node, args):
    a, shape = node["attrs"], _in_shape(ctx, node)
    axis = _ax(a.get("axis", -1), len(shape))
    idx = _index_rule(ctx, node, args[1], shape[axis])
    keep = _bool(a.get("keepdims", False))
    index = f"{idx}.unsqueeze({axis})" if len(ctx.shape_of(node["inputs"][1])) < len(shape) else idx
    picked = f"torch.gather({args[0]}, {axis}, {index})"
    return picked if keep else f"{picked}.squeeze({axis})"


@op("gather_nd")
def _gather_nd(ctx, node, args):
    ctx.choose("gather_nd", "gather_nd: data[tuple(indices.long())]; a negative index counts from the end in both, but "
               "MXNet's gradient drops the entries a negative index read (torch's keeps them)")
    return f"{args[0]}[tuple({args[1]}.long())]"


@op("one_hot")
def _one_hot(ctx, node, args):
    a, i = node["attrs"], args[0]
    depth, dtype = int(a["depth"]), _dtype(node, a.get("dtype"))
    on, off = float(a.get("on_value", 1)), float(a.get("off_value", 0))
    hot = f"{i}.long().unsqueeze(-1) == torch.arange({depth}, device={i}.device)"
    ctx.choose("one-hot", "one_hot: index == arange(depth), so an index outside [0, depth) gives a row of off_value "
               "as in MXNet (F.one_hot refuses it); a float index is truncated toward zero")
    if (on, off) == (1.0, 0.0):
        return f"({hot}).to({dtype})"
    return f"torch.where({hot}, {on!r}, {off!r}).to({dtype})"


@op("topk")
def _topk(ctx, node, args):
    a, x, shape = node["attrs"], args[0], _in_shape(ctx, node)
    ret, asc = a.get("ret_typ", "indices"), _bool(a.get("is_ascend", False))
    if a.get("axis", -1) is None:
        x, axis, size = f"{x}.flatten()", 0, math.prod(shape)
    else:
        axis = _ax(a.get("axis", -1), len(shape))
        size = shape[axis]
    k = int(a.get("k", 1))
    k = size if k <= 0 else k
    ctx.choose("topk-ties", "topk: ties in index order (topk_ties_in_order, a stable sort), as MXNet's CPU topk "
               "gives them along up to 16 entries; beyond that MXNet's order of ties is its std::sort's")
    dtype = _dtype(node, a.get("dtype"))
    call = (f"{_helper(ctx, 'topk_ties_in_order')}({x}, {k}, dim={axis}"
            f"{', largest=False' if asc else ''}{f', index_dtype={dtype}' if ret in ('indices', 'both') else ''})")
    if ret == "value":
        return f"{call}[0]"
    if ret == "indices":
        return f"{call}[1]"
    if ret == "both":
        return call
    return f"torch.zeros_like({x}).scatter({axis}, {call}[1], 1.0)"


@op("sort", "argsort")
def _sort(ctx, node, args):
    a, x = node["attrs"], args[0]
    axis = -1 if a.get("axis", -1) is None else int(a.get("axis", -1))
    x = f"{x}.flatten()" if a.get("axis", -1) is None else x
    desc = "" if _bool(a.get("is_ascend", True)) else ", descending=True"
    call = f"torch.sort({x}, dim={axis}{desc}, stable=True)"
    return f"{call}.values" if node["op"] == "sort" else f"{call}.indices.to({_dtype(node, a.get('dtype'))})"


# -- detection and segmentation (GluonCV) -----------------------------------------------------------


@op("_contrib_AdaptiveAvgPooling2D")
def _adaptive_avg(ctx, node, args):
    out = _t(node["attrs"].get("output_size", 1))
    ctx.need(F_IMPORT)
    ctx.choose("adaptive-pool", "AdaptiveAvgPooling2D: F.adaptive_avg_pool2d; bins as MXNet's, from floor(i * in / "
               "out) to ceil((i + 1) * in / out), overlapping where out does not divide in")
    return f"F.adaptive_avg_pool2d({args[0]}, {_dims(out)})"


@op("_contrib_BilinearResize2D")
def _bilinear_resize(ctx, node, args):
    a = node["attrs"]
    corners = _bool(a.get("align_corners", True))
    size = f"{args[1]}.shape[2:]" if a.get("mode") == "like" else str(tuple(node["out_shape"][2:]))
    ctx.need(F_IMPORT)
    ctx.choose("bilinear-resize", "BilinearResize2D: F.interpolate(mode='bilinear') at the output size MXNet computes "
               "(its scale modes round the size down); align_corners as in MXNet (default True). A scale_factor would "
               "place the samples by the scale, MXNet places them by the sizes")
    return f"F.interpolate({args[0]}, size={size}, mode='bilinear', align_corners={corners})"


@op("_contrib_box_nms", "_contrib_box_non_maximum_suppression")
def _box_nms(ctx, node, args):
    a = node["attrs"]
    defaults = {"overlap_thresh": 0.5, "valid_thresh": 0.0, "topk": -1, "coord_start": 2, "score_index": 1,
                "id_index": -1, "background_id": -1, "force_suppress": False, "in_format": "corner",
                "out_format": "corner"}
    settings = []  # the settings that differ from MXNet's defaults (box_nms's own), in its order
    for key, default in defaults.items():
        v = a.get(key, default)
        v = _bool(v) if isinstance(default, bool) else str(v) if isinstance(default, str) else type(default)(v)
        if v != default:
            settings.append(f"{key}={v!r}")
    ctx.choose("box-nms", "box_nms: box_nms (in model.py) on torchvision.ops.nms, MXNet's rules kept: valid boxes "
               "sorted by score with ties in index order, topk before NMS, suppression at IoU > threshold within a "
               "class (ids truncated to integers), thresholds as float32, the output the input's shape with the kept "
               "rows first and the others -1")
    return f"{_helper(ctx, 'box_nms')}({', '.join([args[0], *settings])})"


@op("_contrib_box_decode")
def _box_decode(ctx, node, args):
    a = node["attrs"]
    stds = tuple(float(a.get(f"std{i}", 1.0)) for i in range(4))
    extra = [f"stds={stds}"] if stds != (1.0,) * 4 else []
    extra += [f"clip={float(a['clip'])!r}"] if float(a.get("clip", -1.0)) > 0 else []
    extra += ["format='corner'"] if a.get("format", "center") == "corner" else []
    return f"{_helper(ctx, 'box_decode')}({', '.join([*args, *extra])})"


@op("_contrib_ROIAlign")
def _roi_align(ctx, node, args):
    a = node["attrs"]
    size = tuple(_t(a["pooled_size"]))
    size = size * 2 if len(size) == 1 else size
    scale, ratio = float(a["spatial_scale"]), int(a.get("sample_ratio", -1))
    aligned, ps = _bool(a.get("aligned", False)), _bool(a.get("position_sensitive", False))
    ratio = -1 if ratio <= 0 else ratio
    ctx.choose("roi-align", "ROIAlign: torchvision.ops.roi_align, whose rois are MXNet's (batch index, x1, y1, x2, "
               "y2) rows; sample_ratio <= 0 is its adaptive sampling_ratio=-1; aligned as in MXNet (a negative "
               "batch index reads memory MXNet never defined)")
    if ps and not aligned:
        return f"{_helper(ctx, 'roi_align_position_sensitive')}({args[0]}, {args[1]}, {size}, {scale!r}, {ratio})"
    ctx.need(TORCHVISION)
    if ps:
        return f"torchvision.ops.ps_roi_align({args[0]}, {args[1]}, {size}, spatial_scale={scale!r}, " \
               f"sampling_ratio={ratio})"
    return (f"torchvision.ops.roi_align({args[0]}, {args[1]}, {size}, spatial_scale={scale!r}, sampling_ratio={ratio}, "
            f"aligned={aligned})")
