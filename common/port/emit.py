"""The neutral graph of a Gluon block (backends/mxnet/port.py read) -> the text of one readable
torch.nn.Module: one constructor line per layer, named after the Gluon block that made it
(`features.4.0.body.0` -> `self.features_4_0_body_0`), every argument spelled out, and a forward
that is the graph's ops in execution order. Pure text: numpy and the standard library only.

Every op either has a translation in ops.py (the one table of MXNet ops written as PyTorch) or
stops the port with one line: the op, the Gluon block path, and the nearest supported form.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass, field

from ..errors import GanparityError
from .ops import GLOBAL_STATS, MXNET_ADAM, MXNET_BN, Unsupported, several, translate, value_inputs  # noqa: F401
from .structure import PLACEHOLDER, NoStructure, OpContext, Structured, _indent

SEMANTICS = ("torch", "mxnet")


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
    kind: str = "module"  # 'module'; 'parameter' / 'buffer': a Gluon parameter an op reads as a value
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
    frozen: list[str] = field(default_factory=list)  # torch parameters with Gluon grad_req 'null' (build() freezes)
    imports: list[str] = field(default_factory=list)  # import lines beyond torch, nn and F
    structured: bool = False  # classes from the Gluon block tree (else one flat class)
    heads: dict | None = None  # a detector's raw heads: model.raw_heads(x), the outputs before NMS / top-k

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


def _class_name(cls: str) -> str:
    name = cls.rsplit(".", 1)[-1]
    return "Net" if name in ("Sequential", "HybridSequential") else _ident(name)


class _Emitter:
    def __init__(self, graph: dict, semantics: str):
        self.g, self.semantics = graph, semantics
        self.nodes, self.arrays = graph["nodes"], graph["arrays"]
        self.layers: list[Layer] = []
        self.layers_scratch: list[Layer] = []  # the structured writer's layers, as ops.py makes them
        self.frozen: list[tuple[Layer, str]] = []
        self.imports: set[str] = set()
        self.helpers: set[str] = set()
        self.choices: dict[str, str] = {}
        self.used: set[str] = set()
        self.lines: list[str] = []
        self.tensors_made: dict[str, str] = {}  # Gluon parameter read as a value -> its expression
        self.skip: set[int] = set()  # nodes written elsewhere (a detector's post-processing, after its raw heads)

    def need(self, line: str) -> None:
        """An import line model.py needs beyond torch, nn and F."""
        self.imports.add(line)

    def structured(self) -> Port:
        """Classes from the Gluon block tree (structure.py), or NoStructure."""
        s = Structured(self)
        root = s.build(0)
        sources, root_name, calls = s.finish(root)
        if root_name == "nn.Sequential":  # the model is a (Hybrid)Sequential: a class of nn.Sequential, same keys
            root_name = _class_name(self.g["class"])
            lines = PLACEHOLDER.sub(lambda m: calls[m.group(1)], root.expr).splitlines()[1:-1]  # its items
            inner = "\n".join(line[4:] for line in lines)
            doc = f'"""{self.g["class"]}, ported by `ganparity port`."""'
            sources.append(f"class {root_name}(nn.Sequential):\n    {doc}\n\n    def __init__(self):\n"
                           f"        super().__init__(\n{_indent(inner, 12)}\n        )\n")
        elif root.wrap or not root.expr.startswith("\u27e8"):  # a single layer as the model
            raise NoStructure("the model is one layer")
        layers = root.layers
        tensor_map = dict(root.tensors)
        frozen = [f"{la.attr}.{t}" if la.attr else t for la, t in self.frozen]
        self.layers = layers
        self.choices["structure"] = ("the Gluon block tree: one class per Gluon block class (Sequential where Gluon "
                                     "had "
                                     "one), attribute names and state-dict keys as Gluon's structural names")
        return Port(root_name, "\n\n".join(sources), layers, tensor_map,
                    [f"{k}: {v}" for k, v in sorted(self.choices.items())], sorted(self.helpers), frozen,
                    sorted(self.imports), True)

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

    def tensor(self, node) -> str:
        """A Gluon parameter that an op reads as a value (YOLO's anchors and offsets, a position
        table): an nn.Parameter of the module, or a buffer where Gluon does not train it (grad_req
        'null', get_constant), named after it; its expression."""
        g_name = node["param"]
        if g_name in self.tensors_made:
            return self.tensors_made[g_name]
        attr = self.attr({"name": g_name, "path": g_name.replace(".", "_")})
        layer = value_layer(attr, g_name, self.arrays[g_name].shape, self.g["grad_req"].get(g_name) == "null")
        self.layers.append(layer)
        self.tensors_made[g_name] = f"self.{attr}"
        return f"self.{attr}"

    def shape_of(self, ref) -> tuple:
        node = self.nodes[ref[0]]
        return tuple((node.get("out_shapes") or [node["out_shape"]])[ref[1]])


    def translate(self, node, args: list[str]) -> str:
        """The forward expression of one op node (ops.py)."""
        return translate(self, node, args)

    def choose(self, key: str, text: str) -> None:
        """A semantic choice, in words, for PORT.md."""
        self.choices[key] = text

    def args(self) -> list[str]:
        """The forward's argument names, one per input (hybrid_forward's, or x / x0, x1, ...)."""
        return [i["arg"] for i in self.g.get("inputs") or [{"arg": "x"}]]

    def run(self, collect: list | None = None) -> Port:
        """The flat form: one class, the graph's ops in order. `collect`: a list that takes each
        node's Unsupported instead of stopping at the first (the refusal names them all)."""
        uses: dict[tuple, int] = {}
        for i, n in enumerate(self.nodes):
            for ref in n["inputs"] if i not in self.skip else []:
                uses[tuple(ref)] = uses.get(tuple(ref), 0) + 1
        heads = {tuple(h) for h in self.g["outputs"]}
        wanted: dict[int, set[int]] = {}
        for i, k in [*uses, *heads]:
            wanted.setdefault(i, set()).add(k)
        names: dict[tuple, str] = {}
        fresh = 0

        def new_var() -> str:
            nonlocal fresh
            fresh += 1
            return f"x{fresh}"

        body = []
        args_in = self.args()
        for i, n in enumerate(self.nodes):
            if n["op"] == "null":
                if n.get("input") is not None:
                    names[(i, 0)] = args_in[n["input"]]
                continue
            if i in self.skip:
                continue
            data_refs = [tuple(r) for r in value_inputs(self.nodes, n)]
            args = [names[r] if r in names else self.tensor(self.nodes[r[0]]) if self.nodes[r[0]].get("param")
                    else "x" for r in data_refs]
            try:
                expr = self.translate(n, args)
            except Unsupported as e:
                if collect is None:
                    raise
                collect.append(e)
                expr = "x"
            count = len(n.get("out_shapes") or [n["out_shape"]])
            if count > 1:
                lhs, outs = unpack_outputs(i, count, wanted.get(i, set()), new_var)
                names.update(outs)
                body.append(f"        {lhs} = {expr}")
                continue
            first = data_refs[0] if data_refs else None
            if first is not None and first in names and uses.get(first, 0) == 1 and first not in heads:
                var = names[first]
            else:
                var = new_var()
            names[(i, 0)] = var
            if expr != var:
                body.append(f"        {var} = {expr}")
        outs = [names[tuple(h)] for h in self.g["outputs"]]
        body.append(f"        return {', '.join(outs)}")
        return self.finish(body)

    def input_text(self) -> str:
        ins = self.g.get("inputs")
        if not ins or len(ins) == 1 and ":" not in ins[0]["spec"]:
            return str(tuple(self.g["input"]))
        return ", ".join(f"{i['arg']} {i['spec']}" for i in ins)

    def finish(self, body: list[str]) -> Port:
        cls = _class_name(self.g.get("name") or self.g["class"])  # an imported graph: after its common prefix
        init = []
        for layer in self.layers:
            if layer.kind == "buffer":
                init.append(f"        self.register_buffer({layer.attr!r}, {layer.ctor})  # gluon '{layer.path}': "
                            f"{layer.gluon}")
                continue
            init.append(f"        self.{layer.attr} = {layer.ctor}  # gluon '{layer.path}': {layer.gluon}")
            for t in layer.frozen:
                init.append(f"        self.{layer.attr}.{t}.requires_grad_(False)  # Gluon grad_req 'null'")
        tensor_map = {t: g for layer in self.layers for t, g in layer.tensors.items()}
        helpers = sorted(self.helpers)
        src = "\n".join([f"class {cls}(nn.Module):",
                         f'    """{self.g["class"]} ported to PyTorch by `ganparity port`',
                         f'    (semantics: {self.semantics}); input {self.input_text()}."""', "",
                         "    def __init__(self):",
                         "        super().__init__()", *init, "", f"    def forward(self, {', '.join(self.args())}):",
                         *body, ""])
        return Port(cls, src, self.layers, tensor_map, [f"{k}: {v}" for k, v in sorted(self.choices.items())],
                    helpers, imports=sorted(self.imports))


def value_layer(attr: str, g_name: str, shape: tuple, constant: bool) -> Layer:
    """The Layer of a Gluon parameter read as a value: a buffer (constant) or an nn.Parameter."""
    zeros = f"torch.zeros({', '.join(map(str, shape))})" if shape else "torch.zeros(())"
    if constant:
        return Layer(attr, zeros, g_name, "a constant (grad_req 'null'): a buffer", {attr: g_name}, kind="buffer")
    return Layer(attr, f"nn.Parameter({zeros})", g_name, "a parameter read as a value", {attr: g_name},
                 kind="parameter")


def unpack_outputs(node: int, count: int, used: set[int], new_var) -> tuple[str, dict[tuple, str]]:
    """The variables of a node with several outputs (SliceChannel, topk ret_typ='both'): its
    translation is the tuple of all of them, written `a, _, b = <expr>`, a fresh name for each
    output something reads and `_` for the others (a written forward reads like hand-written
    code: `q, k, v = torch.split(...)`). Returns the left-hand side and {(node, index): name}."""
    outs = {(node, k): new_var() for k in range(count) if k in used}
    lhs = ", ".join(outs.get((node, k), "_") for k in range(count))
    return lhs, outs


_DEFAULTS = {  # torch's defaults, left out of the written constructors as people write them
    "Conv": ("stride=1", "padding=0", "output_padding=0", "dilation=1", "groups=1", "bias=True"),
    "Linear": ("bias=True",), "Pool": ("padding=0", "ceil_mode=False", "count_include_pad=True"),
}


def tidy(source: str) -> str:
    """The written constructors as people write them: a square size as one number (kernel_size=3,
    stride=stride) and torch's defaults left out (stride=1, padding=0, bias=True, ...)."""
    source = re.sub(r"(\w+)=\(([\w.*/ ]+?)(?:, \2)+\)", r"\1=\2", source)
    for key, defaults in _DEFAULTS.items():
        pattern = re.compile(rf"(nn\.\w*{key}\w*\()([^()]*(?:\([^()]*\)[^()]*)*)\)")

        def drop(m, defaults=defaults):
            args = [a for a in m.group(2).split(", ") if a not in defaults]
            return f"{m.group(1)}{', '.join(args)})"

        source = pattern.sub(drop, source)
    return source


# the ops a detector's inference ends in: what comes after them is post-processing, without a gradient to train
POSTPROCESS = ("_contrib_box_nms", "_contrib_box_non_maximum_suppression", "topk", "sort", "argsort")


# ops whose output carries no gradient: shapes, index ranges, constants, comparisons
NO_GRADIENT = {"shape_array", "size_array", "_contrib_arange_like", "_arange", "zeros_like", "ones_like", "_zeros",
               "_ones", "_full", "argmax", "argmin", "argsort", "one_hot"}
LIKE_OPS = {"slice_like", "reshape_like", "broadcast_like"}
COMPARE_OPS = {"greater", "greater_equal", "lesser", "lesser_equal", "equal", "not_equal"}


def find_heads(graph: dict) -> dict | None:
    """A detector's raw heads: where the graph's inference ends in NMS / top-k, the values those
    ops (and what follows them) read, and the final outputs that do not pass through them.
    {'heads': [[node, output]], 'post': [node indices after them], 'ops': [...]}; None without."""
    nodes = graph["nodes"]
    post: set[int] = set()
    for i, n in enumerate(nodes):
        if n["op"] in POSTPROCESS or any(r[0] in post for r in n["inputs"]):
            post.add(i)
    if not post:
        return None
    # what the post-processing reads that no trained parameter reaches (a shape, an arange of indices) is
    # computed there too, where nothing else reads it: the heads are the values a loss differentiates
    trained = {i for i, n in enumerate(nodes) if n["op"] == "null" and n.get("param")
               and (graph.get("grad_req") or {}).get(n["param"], "write") != "null"}
    live: set[int] = set()
    readers: dict[int, set[int]] = {}
    for i, n in enumerate(nodes):
        cut = n["op"] in NO_GRADIENT or n["op"].removeprefix("broadcast_").removeprefix("_").removesuffix(
            "_scalar") in COMPARE_OPS or str((n.get("attrs") or {}).get("dtype", "float")).startswith(("int", "uint"))
        values = n["inputs"][:1] if n["op"] in LIKE_OPS else n["inputs"]  # slice_like reads its second's shape
        if i in trained or (not cut and any(r[0] in live for r in values)):
            live.add(i)
        for r in n["inputs"]:
            readers.setdefault(r[0], set()).add(i)
    outputs = {r[0] for r in graph["outputs"]}
    changed = True
    while changed:
        changed = False
        for i in sorted(post):
            for r in nodes[i]["inputs"]:
                j = r[0]
                if (j not in post and j not in live and nodes[j]["op"] != "null" and j not in outputs
                        and readers.get(j, set()) <= post):
                    post.add(j)
                    changed = True
    heads: list[list[int]] = []
    for i in sorted(post):
        for r in nodes[i]["inputs"]:
            if r[0] not in post and nodes[r[0]]["op"] != "null" and list(r[:2]) not in heads:
                heads.append(list(r[:2]))
    heads += [list(r[:2]) for r in graph["outputs"] if r[0] not in post and list(r[:2]) not in heads]
    return {"heads": heads, "post": sorted(post), "ops": sorted({nodes[i]["op"] for i in post} & set(POSTPROCESS))}


class _Tail(OpContext):
    """The ctx of the post-processing ops (ops.translate): functional forms only, inside forward."""

    functional = True

    def module(self, node, *args, **kwargs) -> str:
        raise NoStructure(f"the post-processing holds a layer ({node['op']} at '{node.get('path') or node['name']}')")

    def tensor(self, node) -> str:
        raise NoStructure(f"the post-processing reads the parameter '{node['param']}'")


def _tail(em: _Emitter, split: dict, args: list[str], outputs: list) -> str:
    """`forward` of a split model: raw_heads(), then the post-processing ops, in order."""
    nodes = em.nodes
    heads = [tuple(h) for h in split["heads"]]
    hv = ["heads"] if len(heads) == 1 else [f"h{k}" for k in range(len(heads))]
    names = dict(zip(heads, hv))
    body = [f"{', '.join(hv)} = self.raw_heads({', '.join(args)})"]
    fresh = 0

    def new_var() -> str:
        nonlocal fresh
        fresh += 1
        return f"y{fresh}"

    wanted: dict[int, set[int]] = {}
    for i in split["post"]:
        for r in nodes[i]["inputs"]:
            wanted.setdefault(r[0], set()).add(r[1])
    for r in outputs:
        wanted.setdefault(r[0], set()).add(r[1])
    ctx = _Tail(em)
    for i in split["post"]:
        n = nodes[i]
        refs = [tuple(r[:2]) for r in value_inputs(nodes, n)]
        if any(r not in names for r in refs):
            raise NoStructure(f"the post-processing op {n['op']} reads what the raw heads do not give")
        expr = translate(ctx, n, [names[r] for r in refs])
        count = len(n.get("out_shapes") or [n["out_shape"]])
        if count > 1:
            lhs, outs = unpack_outputs(i, count, wanted.get(i, set()), new_var)
            names.update(outs)
            body.append(f"{lhs} = {expr}")
        else:
            names[(i, 0)] = new_var()
            body.append(f"{names[(i, 0)]} = {expr}")
    body.append("return " + ", ".join(names[tuple(r[:2])] for r in outputs))
    ops = ", ".join(split["ops"])
    return (f"    def forward(self, {', '.join(args)}):\n"
            f'        """Inference as Gluon ran it: the raw heads (raw_heads, what training differentiates), then the\n'
            f'        post-processing after them ({ops})."""\n' + "".join(f"        {line}\n" for line in body))


def _split(graph: dict, semantics: str, structured: bool) -> Port | None:
    """The port of a detector written as raw_heads(x) (the network up to its NMS / top-k) and a
    forward that post-processes them: None where the graph has no such ops, or where they sit
    inside a block of their own or need a layer (Faster R-CNN's proposals feed its ROI head)."""
    split = find_heads(graph)
    if split is None:
        return None
    post = set(split["post"])
    calls = graph.get("calls") or []
    removed = []  # child blocks that are post-processing through and through (CenterNet's decoder)
    for k, c in enumerate(calls[1:], 1):
        inside = [r[0] in post for r in c["outputs"]]
        if any(inside) and not all(inside):
            return None  # the NMS runs inside a block that also computes what follows it: no clean cut
        if inside and all(inside):
            removed.append(k)
    cut = {**graph, "outputs": split["heads"], "removed_calls": removed}
    if calls:
        cut["calls"] = [calls[0] | {"outputs": split["heads"]}, *calls[1:]]
    em = _Emitter(cut, semantics)
    em.skip = post
    try:
        p = None
        if structured and calls and not graph.get("symbol"):
            try:
                p = em.structured()
                _tail(em, split, _root_args(graph), graph["outputs"])  # (the raw heads are the root's own values)
            except (NoStructure, KeyError):
                em = _Emitter(cut, semantics)
                em.skip = post
                p = None
        if p is None:
            p = em.run()
        args = em.args() if not p.structured else _root_args(graph)
        tail = _tail(em, split, args, graph["outputs"])
    except NoStructure:
        return None
    p.helpers, p.imports = sorted(em.helpers), sorted(em.imports)  # the post-processing's too (box_nms)
    p.choices = [f"{k}: {v}" for k, v in sorted(em.choices.items())]
    head = f"class {p.class_name}("
    at = p.source.index(head) if p.structured else 0
    cls_end = p.source.find("\nclass ", at + 1)
    body = p.source[at:] if cls_end < 0 else p.source[at:cls_end]
    new = body.replace("    def forward(self", "    def raw_heads(self", 1).rstrip("\n") + "\n\n" + tail
    p.source = p.source[:at] + new + ("" if cls_end < 0 else "\n" + p.source[cls_end:].lstrip("\n"))
    p.heads = {"heads": split["heads"], "ops": split["ops"], "count": len(split["heads"])}
    count = f"{len(split['heads'])} tensor{'s' if len(split['heads']) > 1 else ''}"
    p.choices.append(f"raw-heads: the graph ends in {', '.join(split['ops'])}: model.raw_heads(x) is the network up "
                     f"to them ({count}, what a training loss reads), forward(x) runs it and then the "
                     "post-processing; the proof trains and differentiates the raw heads")
    return p


def _root_args(graph: dict) -> list[str]:
    ins = graph.get("inputs") or [{"arg": "x"}]
    fwd = (graph.get("blocks") or {}).get("", {}).get("forward_args") or []
    return fwd[:len(ins)] if len(fwd) >= len(ins) else [i["arg"] for i in ins]


def emit(graph: dict, semantics: str = "torch", structured: bool = True) -> Port:
    """The module text of a graph under `semantics` ('torch': native PyTorch; 'mxnet': MXNet's
    BatchNorm statistics emulated in the written file): classes from the Gluon block tree
    (structure.py), or, where that tree cannot be recovered, one flat class, saying why."""
    if semantics not in SEMANTICS:
        raise GanparityError(f"--semantics {semantics!r}: expected one of {', '.join(SEMANTICS)}")
    problems: list[Unsupported] = []
    flat = _Emitter(graph, semantics).run(collect=problems)  # every unsupported node at once, before any class
    if problems:
        raise several(problems)
    split = _split(graph, semantics, structured)
    if split is not None:
        split.source = tidy(split.source)
        if not split.structured:
            split.choices.append("structure: one flat class (" + ("an imported graph" if graph.get("symbol") else
                                 "the Gluon block tree could not be recovered") + ")")
        return split
    reason = "asked for"
    if structured:
        try:
            port = _Emitter(graph, semantics).structured()
            port.source = tidy(port.source)
            return port
        except NoStructure as e:
            reason = str(e)
    port = flat
    port.source = tidy(port.source)
    port.choices.append(f"structure: one flat class ({reason}): the Gluon block tree could not be recovered")
    return port
