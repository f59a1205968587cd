"""Each MXNet op, written as PyTorch: the porter's one table (OPS). A translation takes the emitter
(`ctx`: the graph's arrays and shapes, the semantics, ctx.module() to make a layer (or, where
ctx.functional, a parameter-free op's functional form inside a class's forward), ctx.choose() to
record a semantic choice for PORT.md, ctx.need() for an import, ctx.helpers for an emulation of
backends/torch/emulations.py), the op's node and its argument expressions, and returns the
expression of its output. An op whose settings cannot be written raises Unsupported with the
nearest supported form.

Adding an op: a function decorated with @op("MXNetOpName", ...); its parity with the MXNet op, in
float32 and float64 with the corner cases where the frameworks differ, goes in tests/test_port_ops.py.
Pure text: numpy and the standard library only.
"""

from __future__ import annotations

import math
from collections.abc import Callable

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
        raise Unsupported(node, f"the op {node['op']}", "a layer of the list in docs/port.md (Conv, Dense, BatchNorm, "
                          "...)")
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
    stride, pad = _t(a.get("stride", [1] * nd)), _t(a.get("pad", [0] * nd))
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
    a, x = node["attrs"], args[0]
    ctor, roles = _conv(node, ctx.arrays)
    kind = "Conv" if node["op"] == "Convolution" else "ConvTranspose"
    desc = f"{kind} {a.get('num_filter')} kernel {tuple(a['kernel'])} stride {tuple(a.get('stride', ()))}"
    return f"{ctx.module(node, ctor, desc, roles)}({x})"


@op("FullyConnected")
def _dense(ctx, node, args):
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
    if _bool(a.get("fix_gamma", False)):
        layer.frozen.append("weight")
        layer.notes.append("fix_gamma (scale=False): gamma stays 1, not trained")
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


@op("softmax", "SoftmaxActivation")
def _softmax(ctx, node, args):
    axis = int(node["attrs"].get("axis", 1 if node["op"] == "SoftmaxActivation" else -1))
    return f"torch.softmax({args[0]}, dim={axis})"


@op("Reshape")
def _reshape(ctx, node, args):
    x, in_shape, out = args[0], _in_shape(ctx, node), tuple(node["out_shape"])
    if out and in_shape and out[0] == in_shape[0]:
        return f"{x}.reshape({x}.shape[0], {', '.join(str(d) for d in out[1:])})"
    raise Unsupported(node, "a Reshape across the batch axis", "Flatten or a Reshape that keeps axis 0")


@op("UpSampling")
def _upsampling(ctx, node, args):
    a = node["attrs"]
    if a.get("sample_type", "nearest") != "nearest" or len(args) != 1:
        raise Unsupported(node, f"UpSampling(sample_type={a.get('sample_type')})", "nearest UpSampling of one input")
    ctor = f"nn.Upsample(scale_factor={int(a['scale'])}, mode='nearest')"
    return f"{ctx.module(node, ctor, 'UpSampling')}({args[0]})"
