"""The neutral graph of a Gluon block (backends/mxnet/port.py read) -> the text of one readable
torch.nn.Module: one constructor line per layer, named after the Gluon block that made it
(`features.4.0.body.0` -> `self.features_4_0_body_0`), every argument spelled out, and a forward
that is the graph's ops in execution order. Pure text: numpy and the standard library only.

Every op either has a translation here or stops the port with one line: the op, the Gluon block
path, and the nearest form that is supported (Unsupported).
"""

from __future__ import annotations

import keyword
import math
import re
from dataclasses import dataclass, field

from ..errors import GanparityError

SEMANTICS = ("torch", "mxnet")
ADDS = {"elemwise_add", "_plus", "_Plus", "broadcast_add", "add_n", "ElementWiseSum", "_add"}
MULS = {"elemwise_mul", "_mul", "broadcast_mul"}
SCALARS = {"_mul_scalar": "*", "_plus_scalar": "+", "_minus_scalar": "-", "_div_scalar": "/"}
IDENTITY = {"_copy", "identity", "BlockGrad"}
ROLE = {"weight": "weight", "bias": "bias", "gamma": "weight", "beta": "bias", "alpha": "weight",
        "running_mean": "running_mean", "running_var": "running_var"}
ACTIVATIONS = {"relu": "nn.ReLU()", "sigmoid": "nn.Sigmoid()", "tanh": "nn.Tanh()", "softrelu": "nn.Softplus()",
               "softsign": "nn.Softsign()"}


class Unsupported(GanparityError):
    """An op or layer the porter cannot write: one line, with the nearest supported form."""

    def __init__(self, node: dict, what: str, nearest: str):
        where = node.get("path") or node.get("owner") or node["name"]
        super().__init__(f"unsupported: {what} at gluon block '{where}' (op {node['op']}, node {node['name']}); "
                         f"nearest supported form: {nearest}")


@dataclass
class Layer:
    """One line of __init__: attribute, constructor, its torch tensors -> Gluon structural names."""

    attr: str
    ctor: str
    path: str
    gluon: str  # the Gluon op and its key settings, for PORT.md
    tensors: dict[str, str] = field(default_factory=dict)
    frozen: list[str] = field(default_factory=list)  # torch tensors with Gluon grad_req 'null'
    notes: list[str] = field(default_factory=list)
    count: int = 0  # BatchNorm: values per channel in a batch (n of the n / (n - 1) correction)
    momentum: float = 0.0  # BatchNorm: Gluon's momentum


@dataclass
class Port:
    """The emitted module: its source, layers, tensor map (torch state-dict name -> Gluon name),
    and the semantic choices made, in words."""

    class_name: str
    source: str
    layers: list[Layer]
    tensor_map: dict[str, str]
    choices: list[str]
    helpers: list[str]  # names of backends/torch/emulations.py's classes that model.py needs

    def to_mapping(self) -> dict:
        """mapping.json: what test_port.py needs to prove the port again."""
        return {"class": self.class_name, "tensors": self.tensor_map,
                "layers": [{"attr": la.attr, "path": la.path, "tensors": la.tensors, "count": la.count,
                            "momentum": la.momentum} for la in self.layers]}

    @classmethod
    def from_mapping(cls, d: dict) -> Port:
        layers = [Layer(la["attr"], "", la["path"], "", la["tensors"], count=la["count"], momentum=la["momentum"])
                  for la in d["layers"]]
        return cls(d["class"], "", layers, d["tensors"], [], [])


def _ident(text: str) -> str:
    name = re.sub(r"\W", "_", text).strip("_") or "layer"
    if name[0].isdigit():
        name = f"layer_{name}"
    return f"{name}_" if keyword.iskeyword(name) else name


def _t(v) -> tuple:
    return tuple(int(a) for a in v) if isinstance(v, list | tuple) else (int(v),)


def _bool(v) -> bool:
    return v is True or str(v).lower() in ("true", "1")


def _class_name(cls: str) -> str:
    name = cls.rsplit(".", 1)[-1]
    return "Net" if name in ("Sequential", "HybridSequential") else _ident(name)


# The classes model.py may need beyond torch (backends/torch/emulations.py, copied as they are)
GLOBAL_STATS, MXNET_BN, MXNET_ADAM = "GlobalStatsBatchNorm", "MXNetBatchNorm", ("mxnet_adam_lr_eps", "MXNetAdam")


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
    if node["op"] == "Convolution":
        ins, outs = w[1] * groups, int(a["num_filter"])
        extra = ""
        cls = f"nn.Conv{nd}d"
    else:
        if a.get("target_shape") not in (None, [], ()):
            raise Unsupported(node, "Deconvolution target_shape", "Conv2DTranspose with padding and output_padding")
        ins, outs = w[0], int(a["num_filter"])
        adj = _t(a.get("adj", [0] * nd)) if a.get("adj") else (0,) * nd
        extra = f", output_padding={adj}"
        cls = f"nn.ConvTranspose{nd}d"
    return (f"{cls}({ins}, {outs}, kernel_size={k}, stride={stride}, padding={pad}{extra}, dilation={dil}, "
            f"groups={groups}, bias={bias})"), {"weight": "weight"} | ({"bias": "bias"} if bias else {})


class _Emitter:
    def __init__(self, graph: dict, semantics: str):
        self.g, self.semantics = graph, semantics
        self.nodes, self.arrays = graph["nodes"], graph["arrays"]
        self.layers: list[Layer] = []
        self.helpers: set[str] = set()
        self.choices: dict[str, str] = {}
        self.used: set[str] = set()
        self.lines: list[str] = []

    def attr(self, node) -> str:
        own = node["name"].removeprefix(self.g["prefix"]).removesuffix("_fwd")
        path = node["path"]
        # a Sequential's numbered children read better by their Gluon names ('conv0', 'batchnorm0')
        base = path if path and not all(part.isdigit() for part in path.split(".")) else own
        name = _ident(base)
        i, out = 1, name
        while out in self.used:
            i += 1
            out = f"{name}_{i}"
        self.used.add(out)
        return out

    def module(self, node, ctor: str, gluon: str, roles: dict[str, str] | None = None, notes=()) -> str:
        """Register a layer; `roles`: torch tensor -> Gluon role (a key of node['params'])."""
        attr = self.attr(node)
        layer = Layer(attr, ctor, node["path"] or node["name"], gluon, notes=list(notes))
        for t_role, g_role in (roles or {}).items():
            g_name = node["params"].get(g_role)
            if g_name is None:
                raise Unsupported(node, f"a {g_role} tensor that is not a parameter of the block", "a Gluon layer")
            layer.tensors[f"{attr}.{t_role}"] = g_name
            if self.g["grad_req"].get(g_name) == "null" and t_role in ("weight", "bias"):
                layer.frozen.append(t_role)
        self.layers.append(layer)
        return f"self.{attr}"

    def shape_of(self, ref) -> tuple:
        return tuple(self.nodes[ref[0]]["out_shape"])

    def translate(self, node, args: list[str]) -> str:
        """The forward expression of one op node."""
        op, a, x = node["op"], node["attrs"], args[0] if args else "x"
        in_shape = self.shape_of(node["inputs"][0]) if node["inputs"] else ()
        if op in ("Convolution", "Deconvolution"):
            ctor, roles = _conv(node, self.arrays)
            kind = "Conv" if op == "Convolution" else "ConvTranspose"
            desc = f"{kind} {a.get('num_filter')} kernel {tuple(a['kernel'])} stride {tuple(a.get('stride', ()))}"
            return f"{self.module(node, ctor, desc, roles)}({x})"
        if op == "FullyConnected":
            w = self.arrays[node["params"]["weight"]].shape
            bias = not _bool(a.get("no_bias", False))
            flatten = _bool(a.get("flatten", True))
            ctor = f"nn.Linear({w[1]}, {w[0]}, bias={bias})"
            roles = {"weight": "weight"} | ({"bias": "bias"} if bias else {})
            ref = self.module(node, ctor, f"Dense(flatten={flatten})", roles)
            if flatten and len(in_shape) > 2:
                self.choices["dense-flatten"] = ("Gluon Dense flattens its input by default: written out as "
                                                 "torch.flatten(x, 1) before the nn.Linear")
                return f"{ref}(torch.flatten({x}, 1))"
            return f"{ref}({x})"
        if op == "BatchNorm":
            return self.batchnorm(node, x, in_shape)
        if op == "InstanceNorm":
            c = self.arrays[node["params"]["gamma"]].shape[0]
            nd = len(in_shape) - 2
            if nd not in (1, 2, 3):
                raise Unsupported(node, f"InstanceNorm on a {len(in_shape)}-D input", "InstanceNorm on NCW/NCHW/NCDHW")
            ctor = f"nn.InstanceNorm{nd}d({c}, eps={float(a.get('eps', 1e-3))!r}, affine=True)"
            return f"{self.module(node, ctor, 'InstanceNorm', {'weight': 'gamma', 'bias': 'beta'})}({x})"
        if op == "LayerNorm":
            axis = int(a.get("axis", -1))
            if axis not in (-1, len(in_shape) - 1):
                raise Unsupported(node, f"LayerNorm(axis={axis})", "LayerNorm(axis=-1)")
            c = self.arrays[node["params"]["gamma"]].shape[0]
            ctor = f"nn.LayerNorm({c}, eps={float(a.get('eps', 1e-5))!r})"
            return f"{self.module(node, ctor, 'LayerNorm', {'weight': 'gamma', 'bias': 'beta'})}({x})"
        if op == "Activation":
            act = a.get("act_type")
            if act not in ACTIVATIONS:
                raise Unsupported(node, f"Activation('{act}')", f"Activation of {', '.join(ACTIVATIONS)}")
            return f"{self.module(node, ACTIVATIONS[act], f'Activation({act})')}({x})"
        if op in ("relu", "sigmoid", "tanh"):
            return f"torch.{op}({x})"
        if op == "LeakyReLU":
            return self.leaky(node, x, a)
        if op == "Pooling":
            return self.pool(node, x, a, in_shape)
        if op == "Dropout":
            if a.get("mode", "training") != "training" or a.get("axes") not in (None, [], ()):
                raise Unsupported(node, f"Dropout(mode={a.get('mode')}, axes={a.get('axes')})", "Dropout(rate)")
            ctor = f"nn.Dropout(p={float(a.get('p', 0.5))!r})"
            return f"{self.module(node, ctor, 'Dropout')}({x})"
        if op in ("Flatten", "flatten"):
            return f"{self.module(node, 'nn.Flatten()', 'Flatten')}({x})"
        if op == "Embedding":
            n = int(a["input_dim"])
            ctor = f"nn.Embedding({n}, {int(a['output_dim'])})"
            # MXNet's Embedding truncates a float index toward zero and clips it into [0, input_dim - 1]
            return f"{self.module(node, ctor, 'Embedding', {'weight': 'weight'})}({x}.long().clamp(0, {n - 1}))"
        if op in ("Concat", "concat"):
            return f"torch.cat([{', '.join(args)}], dim={int(a.get('dim', 1))})"
        if op in ADDS:
            return " + ".join(args)
        if op in MULS:
            return " * ".join(args)
        if op in SCALARS:
            return f"{x} {SCALARS[op]} {float(a['scalar'])!r}"
        if op in IDENTITY:
            return x
        if op == "clip":
            lo, hi = float(a["a_min"]), float(a["a_max"])
            if (lo, hi) == (0.0, 6.0):
                return f"{self.module(node, 'nn.ReLU6()', 'clip(0, 6)')}({x})"
            return f"torch.clamp({x}, {lo!r}, {hi!r})"
        if op in ("softmax", "SoftmaxActivation"):
            return f"torch.softmax({x}, dim={int(a.get('axis', 1 if op == 'SoftmaxActivation' else -1))})"
        if op == "Reshape":
            out = tuple(node["out_shape"])
            if out and in_shape and out[0] == in_shape[0]:
                return f"{x}.reshape({x}.shape[0], {', '.join(str(d) for d in out[1:])})"
            raise Unsupported(node, "a Reshape across the batch axis", "Flatten or a Reshape that keeps axis 0")
        if op == "UpSampling" and a.get("sample_type", "nearest") == "nearest" and len(args) == 1:
            s = int(a["scale"])
            ctor = f"nn.Upsample(scale_factor={s}, mode='nearest')"
            return f"{self.module(node, ctor, 'UpSampling')}({x})"
        raise Unsupported(node, f"the op {op}", "a layer of the list in docs/port.md (Conv, Dense, BatchNorm, ...)")

    def batchnorm(self, node, x, in_shape) -> str:
        a = node["attrs"]
        axis = int(a.get("axis", 1))
        if axis not in (1, 1 - len(in_shape)):
            raise Unsupported(node, f"BatchNorm(axis={axis})", "BatchNorm(axis=1), channels first")
        c = self.arrays[node["params"]["gamma"]].shape[0]
        nd = {2: 1, 3: 1, 4: 2, 5: 3}.get(len(in_shape))
        if nd is None:
            raise Unsupported(node, f"BatchNorm on a {len(in_shape)}-D input", "BatchNorm on 2-D to 5-D inputs")
        m = float(a.get("momentum", 0.9))
        eps = float(a.get("eps", 1e-3))
        momentum = round(1.0 - m, 12)
        global_stats = _bool(a.get("use_global_stats", False))
        self.choices["bn-momentum"] = ("BatchNorm momentum converted: Gluon momentum=m (running = m * running + "
                                       "(1 - m) * batch) is torch momentum=1 - m; eps kept as Gluon wrote it")
        if global_stats:
            self.helpers.add(GLOBAL_STATS)
            cls = "GlobalStatsBatchNorm"
            self.choices["bn-global-stats"] = ("BatchNorm(use_global_stats=True) is GlobalStatsBatchNorm (in "
                                               "model.py): running statistics in train mode too, never updated")
        elif self.semantics == "mxnet":
            self.helpers.add(MXNET_BN)
            cls = "MXNetBatchNorm"
            self.choices["bn-stats"] = ("BatchNorm statistics follow MXNet (CPU): MXNetBatchNorm (in model.py) moves "
                                        "them in backward, with the biased batch variance")
        else:
            cls = f"nn.BatchNorm{nd}d"
            self.choices["bn-stats"] = ("BatchNorm statistics follow PyTorch: moved in every train-mode forward, with "
                                        "the unbiased batch variance (Gluon on CPU: in backward, biased); PORT.md "
                                        "has the measured difference")
        ctor = f"{cls}({c}, eps={eps!r}, momentum={momentum!r})"
        roles = {"weight": "gamma", "bias": "beta", "running_mean": "running_mean", "running_var": "running_var"}
        ref = self.module(node, ctor, f"BatchNorm(momentum={m}, eps={eps}, use_global_stats={global_stats})", roles)
        self.layers[-1].count = math.prod(in_shape) // in_shape[1]
        self.layers[-1].momentum = m
        if _bool(a.get("fix_gamma", False)):
            self.layers[-1].frozen.append("weight")
            self.layers[-1].notes.append("fix_gamma (scale=False): gamma stays 1, not trained")
        return f"{ref}({x})"

    def leaky(self, node, x, a) -> str:
        act = a.get("act_type", "leaky")
        slope = float(a.get("slope", 0.25))
        if act == "leaky":
            return f"{self.module(node, f'nn.LeakyReLU({slope!r})', f'LeakyReLU({slope})')}({x})"
        if act == "elu":
            return f"{self.module(node, f'nn.ELU(alpha={slope!r})', f'ELU({slope})')}({x})"
        if act == "selu":
            return f"{self.module(node, 'nn.SELU()', 'SELU')}({x})"
        if act == "gelu":
            return f"{self.module(node, 'nn.GELU()', 'GELU')}({x})"
        if act == "prelu":
            n = self.arrays[node["params"]["alpha"]].size
            return f"{self.module(node, f'nn.PReLU(num_parameters={n})', 'PReLU', {'weight': 'alpha'})}({x})"
        raise Unsupported(node, f"LeakyReLU(act_type='{act}')", "LeakyReLU, ELU, SELU, GELU or PReLU")

    def pool(self, node, x, a, in_shape) -> str:
        kind = a.get("pool_type", "max")
        nd = len(in_shape) - 2
        if kind not in ("max", "avg") or nd not in (1, 2, 3):
            raise Unsupported(node, f"Pooling(pool_type={kind}) on a {len(in_shape)}-D input",
                              "MaxPool or AvgPool, 1-D to 3-D")
        name = "Max" if kind == "max" else "Avg"
        if _bool(a.get("global_pool", False)):
            return f"{self.module(node, f'nn.Adaptive{name}Pool{nd}d(1)', f'Global{name}Pool{nd}D')}({x})"
        k = _t(a["kernel"])
        stride = _t(a.get("stride", [1] * nd)) if a.get("stride") else (1,) * nd
        pad = _t(a.get("pad", [0] * nd)) if a.get("pad") else (0,) * nd
        ceil = a.get("pooling_convention", "valid") == "full"
        if a.get("pooling_convention") == "same":
            raise Unsupported(node, "pooling_convention 'same'", "ceil_mode=True or False with explicit padding")
        extra = ""
        if kind == "avg":
            extra = f", count_include_pad={_bool(a.get('count_include_pad', True))}"
        ctor = f"nn.{name}Pool{nd}d(kernel_size={k}, stride={stride}, padding={pad}, ceil_mode={ceil}{extra})"
        if ceil:
            self.choices["pool-ceil"] = ("pooling_convention='full' is ceil_mode=True (torch drops a last window "
                                         "that would start in the padding; the proof shows whether it matters here)")
        return f"{self.module(node, ctor, f'{name}Pool{nd}D')}({x})"

    def run(self) -> Port:
        uses: dict[tuple, int] = {}
        for n in self.nodes:
            for ref in n["inputs"]:
                uses[tuple(ref)] = uses.get(tuple(ref), 0) + 1
        heads = {tuple(h) for h in self.g["outputs"]}
        names: dict[tuple, str] = {}
        fresh = 0
        body = []
        for i, n in enumerate(self.nodes):
            if n["op"] == "null":
                if n["name"] == "data":
                    names[(i, 0)] = "x"
                continue
            data_refs = [tuple(r) for r in n["inputs"] if self.nodes[r[0]]["op"] != "null" or
                         self.nodes[r[0]]["name"] == "data"]
            for r in data_refs:
                if r[1] != 0:
                    raise Unsupported(n, f"output {r[1]} of a multi-output op", "ops whose first output is used")
            args = [names[r] for r in data_refs]
            expr = self.translate(n, args)
            first = data_refs[0] if data_refs else None
            if first is not None and uses.get(first, 0) == 1 and first not in heads:
                var = names[first]
            else:
                fresh += 1
                var = f"x{fresh}"
            names[(i, 0)] = var
            if expr != var:
                body.append(f"        {var} = {expr}")
        outs = [names[tuple(h)] for h in self.g["outputs"]]
        body.append(f"        return {', '.join(outs)}")
        return self.finish(body)

    def finish(self, body: list[str]) -> Port:
        cls = _class_name(self.g["class"])
        init = []
        for layer in self.layers:
            init.append(f"        self.{layer.attr} = {layer.ctor}  # gluon '{layer.path}': {layer.gluon}")
            for t in layer.frozen:
                init.append(f"        self.{layer.attr}.{t}.requires_grad_(False)  # Gluon grad_req 'null'")
        tensor_map = {t: g for layer in self.layers for t, g in layer.tensors.items()}
        helpers = sorted(self.helpers)
        src = "\n".join([f"class {cls}(nn.Module):",
                         f'    """{self.g["class"]} ported to PyTorch by `ganparity port`',
                         f'    (semantics: {self.semantics}); input {tuple(self.g["input"])}."""', "",
                         "    def __init__(self):",
                         "        super().__init__()", *init, "", "    def forward(self, x):", *body, ""])
        return Port(cls, src, self.layers, tensor_map, [f"{k}: {v}" for k, v in sorted(self.choices.items())],
                    helpers)


def emit(graph: dict, semantics: str = "torch") -> Port:
    """The module text of a graph under `semantics` ('torch': native PyTorch; 'mxnet': MXNet's
    BatchNorm statistics emulated in the written file)."""
    if semantics not in SEMANTICS:
        raise GanparityError(f"--semantics {semantics!r}: expected one of {', '.join(SEMANTICS)}")
    return _Emitter(graph, semantics).run()
