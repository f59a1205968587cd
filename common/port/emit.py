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
from .ops import GLOBAL_STATS, MXNET_ADAM, MXNET_BN, Unsupported, translate  # noqa: F401
from .structure import PLACEHOLDER, NoStructure, Structured, _indent

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

    def shape_of(self, ref) -> tuple:
        node = self.nodes[ref[0]]
        return tuple((node.get("out_shapes") or [node["out_shape"]])[ref[1]])


    def translate(self, node, args: list[str]) -> str:
        """The forward expression of one op node (ops.py)."""
        return translate(self, node, args)

    def choose(self, key: str, text: str) -> None:
        """A semantic choice, in words, for PORT.md."""
        self.choices[key] = text

    def run(self) -> Port:
        uses: dict[tuple, int] = {}
        for n in self.nodes:
            for ref in n["inputs"]:
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
        for i, n in enumerate(self.nodes):
            if n["op"] == "null":
                if n["name"] == "data":
                    names[(i, 0)] = "x"
                continue
            data_refs = [tuple(r) for r in n["inputs"] if self.nodes[r[0]]["op"] != "null" or
                         self.nodes[r[0]]["name"] == "data"]
            args = [names[r] for r in data_refs]
            expr = self.translate(n, args)
            count = len(n.get("out_shapes") or [n["out_shape"]])
            if count > 1:
                lhs, outs = unpack_outputs(i, count, wanted.get(i, set()), new_var)
                names.update(outs)
                body.append(f"        {lhs} = {expr}")
                continue
            first = data_refs[0] if data_refs else None
            if first is not None and uses.get(first, 0) == 1 and first not in heads:
                var = names[first]
            else:
                var = new_var()
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
                    helpers, imports=sorted(self.imports))


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


def emit(graph: dict, semantics: str = "torch", structured: bool = True) -> Port:
    """The module text of a graph under `semantics` ('torch': native PyTorch; 'mxnet': MXNet's
    BatchNorm statistics emulated in the written file): classes from the Gluon block tree
    (structure.py), or, where that tree cannot be recovered, one flat class, saying why."""
    if semantics not in SEMANTICS:
        raise GanparityError(f"--semantics {semantics!r}: expected one of {', '.join(SEMANTICS)}")
    reason = "asked for"
    if structured:
        try:
            port = _Emitter(graph, semantics).structured()
            port.source = tidy(port.source)
            return port
        except NoStructure as e:
            reason = str(e)
    port = _Emitter(graph, semantics).run()
    port.source = tidy(port.source)
    port.choices.append(f"structure: one flat class ({reason}): the Gluon block tree could not be recovered")
    return port
