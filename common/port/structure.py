"""The written model.py as a person would write it: the Gluon block tree, recovered from the calls
the read recorded (backends/mxnet/port.py read: each block call's inputs and outputs in the graph),
written as classes.

    a Gluon layer (Conv2D, BatchNorm, Dense, Activation, ...)  its torch module, one constructor
    a (Hybrid)Sequential that chains its children              nn.Sequential(...) of theirs
    any other block (a ResNet's BasicBlockV1, a user's block)  one nn.Module class per Gluon class:
        children as attributes of the same names, a forward that is the block's own ops between
        its children's calls (a residual sum, a concat, F.relu), and the numbers that differ
        between the class's instances (channels, stride) as constructor arguments, named after
        their role and the Gluon class's own argument names (`channels`, `stride`, `in_channels`);
        a child that some instances lack (a downsample) is None there, and guarded in forward

The state-dict names follow the Gluon structural names ('features.4.0.body.0.weight'), so
mapping.json pairs them one to one (a BatchNorm's gamma and beta are its weight and bias). What
cannot be recovered (a SymbolBlock, no recorded calls) raises NoStructure, and the emitter writes
the flat form instead, saying so in PORT.md. numpy and the standard library only.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass, field

from .ops import ADDS, Unsupported, translate, value_inputs

NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?:e-?\d+)?(?![\w.])")
PLACEHOLDER = re.compile("\u27e8([^\u27e9]+)\u27e9")
CONV = ("Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d")
ROLE_NAMES = {"in": "in_channels", "out": "channels", "features": "channels", "in_features": "in_units",
              "out_features": "units", "value": "arg"}
FLATTEN = "torch.flatten({}, 1)"


class NoStructure(Exception):
    """The block tree cannot be written as classes here: the flat form is written instead."""


@dataclass
class Built:
    """One block, written: the expression that constructs it in its parent's __init__ (a
    placeholder for a class of its own until its class is decided), its tensors (torch name
    relative to it -> Gluon structural name), its layers (emit.Layer, torch paths relative to it)."""

    expr: str
    tensors: dict[str, str] = field(default_factory=dict)
    layers: list = field(default_factory=list)
    height: int = 0  # how many custom classes deep it nests (its class is decided after theirs)
    wrap: str = ""  # how a parent's forward hands it its input ('torch.flatten({}, 1)' for a Gluon Dense)

# the ops whose output a residual sum or a ReLU may overwrite (Structured._mutable): their backward reads their input
FRESH = frozenset({"Convolution", "Deconvolution", "BatchNorm", "FullyConnected"})
RELU_AFTER = FRESH | ADDS  # a sum's backward reads nothing of its values


def _ident(text: str) -> str:
    name = re.sub(r"\W", "_", text).strip("_") or "x"
    if name[0].isdigit():
        name = f"x_{name}"
    return f"{name}_" if keyword.iskeyword(name) else name


class OpContext:
    """What every ctx of ops.translate shares: the emitter's arrays, semantics and helpers, the
    shapes of the graph's values, the choices PORT.md states, the imports model.py needs."""

    def __init__(self, em):
        self.em, self.arrays, self.semantics, self.helpers = em, em.arrays, em.semantics, em.helpers

    def shape_of(self, ref) -> tuple:
        return self.em.shape_of(ref)

    def choose(self, key: str, text: str) -> None:
        self.em.choices[key] = text

    def need(self, line: str) -> None:
        self.em.imports.add(line)


class _Scope(OpContext):
    """The ctx ops.translate gets for one block: module() makes a layer of this block (a Gluon
    layer's one module, or a submodule of a custom block for an op with parameters of its own);
    `functional` asks parameter-free ops for their functional form (F.relu(x), not nn.ReLU())."""

    def __init__(self, em, path: str, functional: bool):
        super().__init__(em)
        self.path, self.functional = path, functional
        self.made: list = []  # (placeholder, Layer)
        self.layers = em.layers_scratch

    def tensor(self, node) -> str:
        """A Gluon parameter an op of this block reads as a value: a buffer or nn.Parameter of the
        block's class (emit.value_layer), named after the parameter's attribute."""
        from .emit import value_layer

        for token, layer in self.made:
            if layer.kind != "module" and layer.tensors.get("") == node["param"]:
                return token
        token = f"__module{len(self.made)}__"
        layer = value_layer(token, node["param"], self.arrays[node["param"]].shape,
                            self.em.g["grad_req"].get(node["param"]) == "null")
        layer.tensors = {"": node["param"]}
        layer.path = node["param"]
        self.made.append((token, layer))
        self.layers.append(layer)
        return token

    def module(self, node, ctor: str, gluon: str, roles: dict[str, str] | None = None, notes=()) -> str:
        from .emit import Layer

        token = f"__module{len(self.made)}__"
        layer = Layer(token, ctor, node.get("path") or self.path, gluon, notes=list(notes))
        for t_role, g_role in (roles or {}).items():
            g_name = node["params"].get(g_role)
            if g_name is None:
                raise Unsupported(node, f"a {g_role} tensor that is not a parameter of the block", "a Gluon layer")
            layer.tensors[t_role] = g_name
            if self.em.g["grad_req"].get(g_name) == "null" and t_role in ("weight", "bias"):
                layer.frozen.append(t_role)
        self.made.append((token, layer))
        self.layers.append(layer)
        return token


class Structured:
    """The block tree of graph['calls'] written as classes (see the module docstring)."""

    def __init__(self, em):
        self.em, self.g, self.nodes = em, em.g, em.nodes
        self.calls = self.g.get("calls") or []
        self.blocks = self.g.get("blocks") or {}
        if not self.calls or any(b.get("symbol") for b in self.blocks.values()):
            raise NoStructure("a SymbolBlock (an imported graph) has no Python classes to recover")
        self.children: dict[int, list[int]] = {i: [] for i in range(len(self.calls))}
        removed = set(self.g.get("removed_calls") or [])  # written elsewhere (a detector's post-processing block)
        for i, c in enumerate(self.calls):
            if c["parent"] >= 0 and i not in removed:
                self.children[c["parent"]].append(i)
        self.ancestors = self._ancestors()
        self.depth = [0] * len(self.nodes)  # the longest chain of ops making each value (nodes in graph order)
        for n, node in enumerate(self.nodes):
            if node["op"] != "null":
                self.depth[n] = 1 + max((self.depth[r[0]] for r in node["inputs"]), default=0)
        self.classes: dict[str, dict] = {}  # Gluon class -> {'info', 'instances', 'height'}

    def _ancestors(self) -> list[set[int]]:
        """Per node, every node it depends on, itself included (the graph is in topological order)."""
        anc: list[set[int]] = []
        for i, n in enumerate(self.nodes):
            s = {i}
            for src, _ in n["inputs"]:
                s |= anc[src]
            anc.append(s)
        return anc

    def region(self, i: int) -> set[int]:
        """The op nodes computed inside call i: those its outputs depend on and its inputs do not."""
        c = self.calls[i]
        inside = set().union(*(self.ancestors[n] for n, _ in c["outputs"])) if c["outputs"] else set()
        before = set().union(*(self.ancestors[n] for n, _ in c["inputs"])) if c["inputs"] else set()
        return {n for n in inside - before if self.nodes[n]["op"] != "null"}

    # -- one block ---------------------------------------------------------------------------------

    def build(self, i: int = 0) -> Built:
        c = self.calls[i]
        info = self.blocks.get(c["path"], {})
        kids = self.children[i]
        own = self.region(i) - set().union(*(self.region(k) for k in kids)) if kids else self.region(i)
        if not kids and not own and c["inputs"] == c["outputs"]:  # an identity block (Gluon contrib's Identity)
            return Built("nn.Identity()")
        if (info.get("layer") or not kids) and not info.get("sequential"):  # (a user's one-op block: RELU6)
            built = self._layer(i, own, kids)
            if built is not None:
                return built
        if info.get("sequential") and not own and self._chained(i, kids):
            built = self._sequential(kids)
            if built is not None:
                return built
        return self._custom(i, own, kids)

    def _layer(self, i: int, own: set[int], kids: list[int]) -> Built | None:
        """A Gluon layer: its one op as its torch module (a fused activation child after it)."""
        if len(own) != 1:
            return None
        node = self.nodes[next(iter(own))]
        if len(self._data_inputs(next(iter(own)))) != 1 or len(node.get("out_shapes") or [()]) > 1:
            return None  # a layer takes one input and gives one output
        scope = _Scope(self.em, self.calls[i]["path"], functional=False)
        expr = translate(scope, node, ["x"])
        if len(scope.made) != 1:
            return None
        token, layer = scope.made[0]
        ctor, wrap = layer.ctor, ""
        if expr == f"{token}(torch.flatten(x, 1))":  # Gluon's Dense flattens its input
            wrap = FLATTEN
        elif expr != f"{token}(x)":
            return None
        tensors, layer.attr = dict(layer.tensors), ""
        if kids:  # Conv2D(activation=...) / Dense(activation=...): its act block after the op
            acts = [self.build(k) for k in kids]
            if wrap or any(a.tensors or a.wrap for a in acts):
                return None
            ctor = f"nn.Sequential({ctor}, {', '.join(_in_place(a.expr, ctor) for a in acts)})"
            tensors, layer.attr = {f"0.{k}": v for k, v in tensors.items()}, "0"
        for frozen in layer.frozen:
            self.em.frozen.append((layer, frozen))
        return Built(ctor, tensors, [layer], wrap=wrap)

    def _chained(self, i: int, kids: list[int]) -> bool:
        """A Sequential's forward: each child on the output of the one before, the last one's out."""
        c, prev = self.calls[i], self.calls[i]["inputs"]
        names = [self.calls[k]["path"].rsplit(".", 1)[-1] for k in kids]
        if names != [str(j) for j in range(len(kids))]:
            return False
        for k in kids:
            if self.calls[k]["inputs"] != prev:
                return False
            prev = self.calls[k]["outputs"]
        return prev == c["outputs"]

    def _sequential(self, kids: list[int]) -> Built | None:
        built = [self.build(k) for k in kids]
        parts = []
        for b in built:
            if b.wrap == FLATTEN:  # inside a Sequential the flatten is a layer of its own, nested
                b.expr = f"nn.Sequential(nn.Flatten(), {b.expr})"
                b.tensors = {f"1.{k}": v for k, v in b.tensors.items()}
                for la in b.layers:
                    la.attr = f"1.{la.attr}" if la.attr else "1"
            elif b.wrap:
                return None
            parts.append(_in_place(b.expr, parts[-1] if parts else None))
        tensors = {f"{j}.{t}": g for j, b in enumerate(built) for t, g in b.tensors.items()}
        layers = [la for j, b in enumerate(built) for la in _prefixed(b.layers, str(j))]
        text = "nn.Sequential(\n" + _indent(",\n".join(parts), 4) + "\n)" if parts else "nn.Sequential()"
        return Built(text, tensors, layers,
                     max((b.height for b in built), default=0))

    def _custom(self, i: int, own: set[int], kids: list[int]) -> Built:
        """A class of its own: children as attributes, the forward as its ops between their calls."""
        c = self.calls[i]
        info = self.blocks.get(c["path"], {})
        attrs: dict[str, Built] = {}
        lists: dict[str, dict[int, Built]] = {}  # children called through a container never called itself
        for k in kids:
            name = self._rel(i, k)
            head, _, item = name.partition(".")
            if item:  # YOLOV3's `for stage in self.stages: x = stage(x)`: an nn.ModuleList, self.stages[0](x)
                if not item.isdigit():
                    raise NoStructure(f"block '{c['path']}' calls '{name}' inside a container it never calls")
                if int(item) not in lists.setdefault(head, {}):
                    lists[head][int(item)] = self.build(k)
            elif name not in attrs:
                attrs[name] = self.build(k)
        for head, items in lists.items():
            if sorted(items) != list(range(len(items))) or head in attrs or any(b.wrap for b in items.values()):
                raise NoStructure(f"block '{c['path']}' calls some of '{head}''s items: {sorted(items)}")
            built = [items[j] for j in range(len(items))]
            attrs[head] = Built("nn.ModuleList([\n" + _indent(",\n".join(b.expr for b in built), 4) + "\n])",
                                {f"{j}.{t}": g for j, b in enumerate(built) for t, g in b.tensors.items()},
                                [la for j, b in enumerate(built) for la in _prefixed(b.layers, str(j))],
                                max((b.height for b in built), default=0))
        numbered = list(attrs) == [str(j) for j in range(len(attrs))] and bool(attrs)  # a ModuleList, self[0]
        if not numbered and any(not n.isidentifier() or keyword.iskeyword(n) for n in attrs):
            raise NoStructure(f"block '{c['path']}' has children that are not attribute names: {list(attrs)}")
        args = _arg_names(info, len(c["inputs"]))
        scope = _Scope(self.em, c["path"], functional=True)
        pretty = self._forward(i, own, kids, scope, args, attrs, canonical=False)
        canonical = self._forward(i, own, kids, _Scope(self.em, c["path"], functional=True), args, attrs,
                                  canonical=True)
        subs = {}
        for token, layer in scope.made:  # an op with parameters of the block's own: a submodule of it
            name = _ident(layer.path.rsplit(".", 1)[-1] if layer.path != c["path"] else "op")
            if layer.kind != "module":  # a parameter read as a value: named after its attribute
                name = _ident(layer.tensors[""].rsplit(".", 1)[-1])
            while name in attrs or name in subs:
                name += "_"
            subs[name] = layer
            pretty = [line.replace(token, f"self.{name}") for line in pretty]
            canonical = [line.replace(token, f"self.{name}") for line in canonical]  # the same order of tokens
            layer.attr = name
            for frozen in layer.frozen:
                self.em.frozen.append((layer, frozen))
        if numbered:
            if subs:
                raise NoStructure(f"block '{c['path']}' holds numbered children and parameters of its own")
            pretty = [re.sub(r"self\.(\d+)\(", r"self[\1](", line) for line in pretty]
            canonical = [re.sub(r"self\.(\d+)\(", r"self[\1](", line) for line in canonical]
            init = ["super().__init__([" + ", ".join(b.expr for b in attrs.values()) + "])"]
        else:
            init = [f"self.{n} = {b.expr}" for n, b in attrs.items()]
            init += [f"self.register_buffer({n!r}, {la.ctor})" if la.kind == "buffer" else f"self.{n} = {la.ctor}"
                     for n, la in subs.items()]
        tensors = {f"{n}.{t}": g for n, b in attrs.items() for t, g in b.tensors.items()}
        tensors |= {f"{n}.{t}" if t else n: g for n, la in subs.items() for t, g in la.tensors.items()}
        layers = [la for n, b in attrs.items() for la in _prefixed(b.layers, n)] + list(subs.values())
        gluon = info.get("class") or "Net"
        height = 1 + max((b.height for b in attrs.values()), default=0)
        group = self.classes.setdefault(gluon, {"info": info, "instances": [], "height": 0, "gluon": gluon})
        group["instances"].append({"init": init, "pretty": pretty, "canonical": canonical, "args": args,
                                   "attrs": [] if numbered else list(attrs), "path": c["path"],
                                   "flags": info.get("flags", {}),
                                   "base": "nn.ModuleList" if numbered else "nn.Module", "height": height})
        group["height"] = max(group["height"], height)
        return Built(f"\u27e8{gluon}#{len(group['instances']) - 1}\u27e9", tensors, layers, height)

    def _forward(self, i: int, own: set[int], kids: list[int], scope: _Scope, args: list[str],
                 attrs: dict[str, Built], canonical: bool) -> list[str]:
        """The forward's statements: own ops and child calls in graph order. Pretty: a value that
        flows on alone keeps the input's name (x = self.features(x)), a child's output that waits
        is named after the child, an op's after the block's input; canonical: every value named
        after what made it (c_<child>, o<k>), for comparing instances."""
        c = self.calls[i]
        names: dict[tuple, str] = {tuple(r): a for r, a in zip(c["inputs"], args)}
        # in the order Gluon ran them: a child call where its first op is (an identity child, no ops of its own,
        # right after what it passes on)
        first, last = {}, -1.0
        for k in kids:  # kids are in call order
            if not self.calls[k]["outputs"]:
                continue
            region = self.region(k)
            first[k] = min(region) if region else max(last + 0.5, max(o[0] for o in self.calls[k]["inputs"] or
                                                                      self.calls[k]["outputs"]) + 0.5)
            last = max(last, first[k], max(region, default=-1))
        items = [("op", n, n) for n in own] + [("call", k, first[k]) for k in first]
        items.sort(key=lambda t: t[2])
        items = self._ready_order(i, items)
        refs_of = {}
        uses: dict[tuple, int] = {}
        for kind, x, _ in items:
            refs = self.calls[x]["inputs"] if kind == "call" else self._data_inputs(x)
            refs_of[(kind, x)] = [tuple(r) for r in refs]
            for r in refs_of[(kind, x)]:
                uses[r] = uses.get(r, 0) + 1
        for r in c["outputs"]:
            uses[tuple(r)] = uses.get(tuple(r), 0) + 1
        readers = dict(uses)  # how many statements (and the return) read each value
        body, taken, primary, count = [], set(args), args[0], 0  # count: the block's own ops, in order
        for kind, x, _ in items:
            refs = refs_of[(kind, x)]
            ins = [names.get(r, "") for r in refs]
            for r in refs:
                uses[r] -= 1
            if kind == "call" and self.calls[x]["outputs"] == self.calls[x]["inputs"]:
                continue  # an identity child: its output is its input, already named
            if kind == "call":
                k = self.calls[x]
                attr = self._rel(i, x)
                wrap = attrs[attr].wrap if attr in attrs else ""
                call_args = [wrap.format(ins[0])] + ins[1:] if wrap and ins else ins
                head, _, item = attr.partition(".")
                callee = f"self.{head}[{item}]" if item else f"self.{attr}"
                expr, outs, hint = f"{callee}({', '.join(call_args)})", [tuple(o) for o in k["outputs"]], _ident(attr)
            else:
                node = self.nodes[x]
                count = len(node.get("out_shapes") or [node["out_shape"]])  # SliceChannel, topk 'both': several
                ins = [scope.tensor(self.nodes[r[0]]) if r not in names and self.nodes[r[0]].get("param") else i
                       for r, i in zip(refs, ins)]
                expr, outs, hint = translate(scope, node, ins), [(x, k) for k in range(count)], None
                # torchvision's `out += identity`: into the operand of the longer chain (the block's body, never
                # its shortcut, so that the instances with and without a projection write the same statement)
                j = 0 if len(refs) != 2 or self.depth[refs[0][0]] >= self.depth[refs[1][0]] else 1
                if node["op"] in ADDS and len(refs) == 2 and refs[0] != refs[1] and \
                        self._mutable(refs[j], node, readers, c):
                    body.append(f"{ins[j]} += {ins[1 - j]}")
                    names[outs[0]] = ins[j]
                    continue
                if refs and expr == f"torch.relu({ins[0]})" and self._mutable(refs[0], node, readers, c, RELU_AFTER):
                    expr = f"F.relu({ins[0]}, inplace=True)"
            if canonical:
                count += 0 if hint else 1
                var = f"c_{hint}" if hint else f"o{count}"
                while var in taken:
                    var += "_"
            else:
                first = refs[0] if refs else None
                reusable = first is not None and uses.get(first, 0) == 0 and names.get(first) in (primary, "out")
                if reusable and len(outs) == 1:
                    var = names[first]
                else:
                    var = _ident(hint) if hint else (primary if primary not in names.values() or all(
                        uses.get(r, 0) == 0 for r, v in names.items() if v == primary) else "out")
                    while var in taken and not (var == primary and all(
                            uses.get(r, 0) == 0 for r, v in names.items() if v == primary)):
                        var += "_"
            taken.add(var)
            if len(outs) == 1:
                names[outs[0]] = var
                if expr != var:
                    body.append(f"{var} = {expr}")
            else:  # several outputs (a split, topk 'both'): a name for each one read, `_` for the others
                read = {r for r in uses} | {tuple(r) for r in c["outputs"]}
                vs = [f"{var}{j}" if o in read else "_" for j, o in enumerate(outs)]
                names.update({o: v for o, v in zip(outs, vs) if v != "_"})
                body.append(f"{', '.join(vs)} = {expr}")
        body.append("return " + ", ".join(names[tuple(r)] for r in c["outputs"]))
        return body

    def _mutable(self, ref: tuple, node: dict, readers: dict, c: dict, makers=FRESH) -> bool:
        """Whether `node` may write into the value `ref` (in place, as torchvision's residual sum and
        ReLU do): node is its only reader, it is neither the block's input (the caller's tensor) nor
        its output, it has node's shape, and what made it (makers) is an op whose backward needs its
        input and not its output (a convolution, BatchNorm, a linear layer: a new tensor, which
        autograd may see changed). MXNetBatchNorm's hook on its output still fires after the sum
        (tests/test_port.py's residual blocks, proved under mxnet semantics with their statistics)."""
        maker = self.nodes[ref[0]]
        if (readers.get(ref, 0) != 1 or ref in {tuple(r) for r in c["inputs"]} or
                ref in {tuple(r) for r in c["outputs"]} or maker["op"] not in makers):
            return False
        shapes = maker.get("out_shapes") or [maker.get("out_shape")]
        return ref[1] < len(shapes) and shapes[ref[1]] is not None and \
            tuple(shapes[ref[1]]) == tuple(node.get("out_shape") or ())

    def _ready_order(self, i: int, items: list) -> list:
        """The items in their order, each moved after what it reads (a child call whose first op
        comes early in the graph, CenterNet's decoder, waits for the heads it takes)."""
        ready = {tuple(r) for r in self.calls[i]["inputs"]}
        made = {}
        for kind, x, _ in items:
            made.update({tuple(o): x for o in (self.calls[x]["outputs"] if kind == "call" else
                                               [(x, k) for k in range(len(self.nodes[x].get("out_shapes") or [0]))])})
        out, left = [], list(items)
        while left:
            at = next((j for j, item in enumerate(left) if not self._waits(item, ready, made)), 0)  # (no cycle)
            kind, x, key = left.pop(at)
            out.append((kind, x, key))
            ready |= {tuple(o) for o in (self.calls[x]["outputs"] if kind == "call" else
                                         [(x, k) for k in range(len(self.nodes[x].get("out_shapes") or [0]))])}
        return out

    def _waits(self, item: tuple, ready: set, made: dict) -> bool:
        """Whether an item reads a value made by another item not yet placed."""
        refs = self.calls[item[1]]["inputs"] if item[0] == "call" else self._data_inputs(item[1])
        return any(tuple(r) not in ready and tuple(r) in made for r in refs)

    def _rel(self, i: int, k: int) -> str:
        """Call k's path below call i's ('stages.0' for YOLOV3's stage 0, 'features' for its own)."""
        parent, path = self.calls[i]["path"], self.calls[k]["path"]
        return path[len(parent) + 1:] if parent else path

    def _data_inputs(self, n: int) -> list[list[int]]:
        return value_inputs(self.nodes, self.nodes[n])

    # -- the classes -------------------------------------------------------------------------------

    def finish(self, root: Built) -> tuple[list[str], str, dict[str, str]]:
        """Every class's source (the deepest first) and the root's class name. A class's instances
        are compared once their children's constructor calls are known."""
        calls: dict[str, str] = {}
        sources, used = [], set()
        # (Gluon class, its instances' indices): decided together, once every child they construct is
        # known; a class nested in itself (Inception's HybridConcurrent, inside a branch of another) is
        # decided level by level, as is any class where one whole group waits for another that waits for it
        pending = [(g, list(range(len(g["instances"])))) for g in sorted(self.classes.values(),
                                                                         key=lambda g: g["height"])]
        while pending:
            ready = [u for u in pending if all(ref in calls for j in u[1] for s in u[0]["instances"][j]["init"]
                                               for ref in PLACEHOLDER.findall(s))]
            if not ready:
                split = [(g, [j for j in idx if g["instances"][j]["height"] == h]) for g, idx in pending
                         for h in sorted({g["instances"][j]["height"] for j in idx})]
                if len(split) == len(pending):
                    raise NoStructure("the block classes construct each other in a cycle")
                pending = split
                continue
            for group, idx in ready:
                pending.remove((group, idx))
                for j in idx:
                    inst = group["instances"][j]
                    inst["init"] = [PLACEHOLDER.sub(lambda m: calls[m.group(1)], s) for s in inst["init"]]
                for _name, members, source in _decide(group | {"instances": [group["instances"][j] for j in idx]},
                                                      used):
                    sources.append(source)
                    for k, call in members.items():
                        calls[f"{group['gluon']}#{idx[k]}"] = call
        root_call = PLACEHOLDER.sub(lambda m: calls[m.group(1)], root.expr)
        return sources, root_call.split("(", 1)[0], calls


# -- deciding the classes (pure text) -----------------------------------------------------------------


def _slots(text: str) -> list[tuple[int, int, str]]:
    """The numeric literals of a text: (start, end, role). The role is the keyword the number is
    given for ('stride'), or, for a layer's positional argument, its meaning ('in', 'out',
    'features'), read from the innermost call around it."""
    out = []
    for m in NUMBER.finditer(text):
        out.append((m.start(), m.end(), _role(text, m.start())))
    return out


def _role(text: str, at: int) -> str:
    depth, i, commas = 0, at - 1, 0
    while i >= 0:
        ch = text[i]
        if ch in ")]":
            depth += 1
        elif ch in "([":
            if depth:
                depth -= 1
            else:
                before = text[:i].rstrip()
                kw = re.search(r"(\w+)=$", before)
                if kw:  # a tuple given for a keyword: stride=(2, 1)
                    return kw.group(1)
                func = re.search(r"([\w.]+)$", before)
                func = func.group(1) if func else ""
                if func.endswith("Linear"):
                    return ("in_features", "out_features")[min(commas, 1)]
                if "Norm" in func:
                    return "features"
                if func.endswith(CONV):
                    return ("in", "out")[min(commas, 1)]
                return "value"
        elif depth == 0 and ch == ",":
            commas += 1
        elif depth == 0 and ch == "=":
            if text[i - 1: i] == " ":  # an assignment in forward (`x = x * 32.0`), not a keyword argument
                return "value"
            kw = re.search(r"(\w+)\s*=$", text[: i + 1])
            return kw.group(1) if kw else "value"
        i -= 1
    return "value"


def _template(parts: list[str]) -> tuple[str, list[str], list[str]]:
    """Texts with their numbers taken out: the joined template, the numbers, their roles."""
    text = "\x1e".join(parts)
    pieces, values, roles, last = [], [], [], 0
    for start, end, role in _slots(text):
        pieces.append(text[last:start].replace("{", "{{").replace("}", "}}"))
        pieces.append(f"{{{len(values)}}}")
        values.append(text[start:end])
        roles.append(role)
        last = end
    pieces.append(text[last:].replace("{", "{{").replace("}", "}}"))
    return "".join(pieces), values, roles


def _drop(inst: dict, absent: list[str]) -> dict:
    """The instance as it would read without the children `absent`, their calls identities (in
    the canonical rendering, where every value has a name of its own)."""
    init = [s for s in inst["init"] if not any(s.startswith(f"self.{a} = ") for a in absent)]
    body, sub = [], {}
    for line in inst["canonical"]:
        m = re.fullmatch(r"(\w+) = self\.(\w+)\((\w+)\)", line)
        if m and m.group(2) in absent:
            sub[m.group(1)] = sub.get(m.group(3), m.group(3))
            continue
        for old, new in sub.items():
            line = re.sub(rf"\b{old}\b", new, line)
        body.append(line)
    return {**inst, "init": init, "canonical": body}


SUM = re.compile(r"(\w+) = (\w+) \+ (\w+)")


def _optional_sum(proto: dict, inst: dict) -> int | None:
    """The index of the one statement `a = b + c` of proto's canonical forward that, left out
    (a as b), makes it inst's: a residual sum only some instances have (MobileNet's shortcut)."""
    for n, line in enumerate(proto["canonical"]):
        m = SUM.fullmatch(line)
        if not m:
            continue
        body, keep = [], m.group(2)
        for other in proto["canonical"][:n] + proto["canonical"][n + 1:]:
            body.append(re.sub(rf"\b{m.group(1)}\b", keep, other) if other not in proto["canonical"][:n] else other)
        if _template(proto["init"] + ["--"] + body)[0] == _template(inst["init"] + ["--"] + inst["canonical"])[0]:
            return n
    return None


def _key(inst: dict) -> str:
    return _template(inst["init"] + ["--"] + inst["canonical"])[0]


def _decide(group: dict, used: set[str]) -> list[tuple[str, dict[int, str], str]]:
    """The classes one Gluon class becomes: [(name, {instance index: constructor call}, source)].
    Instances whose renderings match once their numbers are taken out share a class, and the
    numbers that vary become its constructor arguments; a child only some have is None in the
    others (a constructor flag) where, as an identity, it makes their renderings match."""
    instances = group["instances"]
    for inst in instances:  # a child that is an empty Sequential (an identity) counts as one it lacks
        inst["identity"] = [a for a in inst["attrs"] if f"self.{a} = nn.Sequential()" in inst["init"]]
        inst["has"] = [a for a in inst["attrs"] if a not in inst["identity"]]
    order = sorted(range(len(instances)), key=lambda j: -len(instances[j]["has"]))
    families: list[dict] = []  # {'proto': instance, 'members': [index], 'optional': set}
    for j in order:
        inst = instances[j]
        for fam in families:
            proto = fam["proto"]
            missing = [a for a in proto["attrs"] if a not in inst["has"]]
            if set(inst["has"]) <= set(proto["has"]) and not proto["identity"] and _key(
                    _drop(proto, missing)) == _key(_drop(inst, inst["identity"])):
                fam["members"].append(j)
                fam["optional"] |= set(missing)
                break
            if fam.get("sum") is not None and proto["attrs"] == inst["attrs"] and _optional_sum(proto,
                                                                                                inst) == fam["sum"]:
                fam["members"].append(j)  # one without the family's optional residual sum
                break
        else:
            for fam in families:  # or the same but for a residual sum some instances leave out (a shortcut)
                proto = fam["proto"]
                if fam.get("sum") is None and proto["attrs"] == inst["attrs"] and not fam["optional"]:
                    line = _optional_sum(proto, inst)
                    if line is None:  # the other way round: this instance has the sum, the family's do not
                        line = _optional_sum(inst, proto)
                        if line is not None:
                            fam["proto"] = inst
                    if line is not None:
                        fam["members"].append(j)
                        fam["sum"] = line
                        break
            else:
                families.append({"proto": inst, "members": [j], "optional": set()})
    out = []
    base = _ident(group["gluon"])
    for n, fam in enumerate(sorted(families, key=lambda f: min(f["members"]))):
        name, k = (base if n == 0 else f"{base}{n + 1}"), n + 1
        while name in used:  # (a class decided level by level: its next number)
            k += 1
            name = f"{base}{k}"
        used.add(name)
        out.append(_write_class(name, group, fam, instances))
    return out


def _write_class(name: str, group: dict, fam: dict, instances: list[dict]) -> tuple[str, dict[int, str], str]:
    """One class's source and each member's constructor call."""
    proto, optional = fam["proto"], [a for a in fam["proto"]["attrs"] if a in fam["optional"]]
    members = sorted(fam["members"])
    statements = proto["init"] + ["--"] + proto["pretty"]
    template, _, roles = _template(statements)
    # each member's numbers on the prototype's slots (None inside a child it does not have)
    owner = []  # per prototype slot: the optional child whose statement holds it, or None
    for idx, s in enumerate(statements):
        held = next((a for a in optional if idx < len(proto["init"]) and s.startswith(f"self.{a} = ")), None)
        owner += [held] * len(_slots(s))
    columns: list[list] = [[] for _ in roles]
    for m in members:
        inst = instances[m]
        absent = [a for a in optional if a not in inst["has"]]
        values = iter(_template(inst["init"] + ["--"] + inst["pretty"])[1])
        for slot, held in enumerate(owner):
            columns[slot].append(None if held in absent else next(values))
    params: list[tuple[str, str, list]] = []  # (name, role, values per member)
    exprs = []
    for column, role in zip(columns, roles):
        defined = [v for v in column if v is not None]
        if len(set(defined)) <= 1:
            # a number only the instances with an optional child have: the argument it equals there, if one does
            same = next((p for p in params if None in column and defined and len(set(p[2])) > 1 and all(
                a is None or a == b for a, b in zip(column, p[2]))), None)
            exprs.append(same[0] if same else (defined[0] if defined else "0"))
            continue
        pname = ROLE_NAMES.get(role, role)
        same = next((p for p in params if p[0].rstrip("0123456789") == pname and all(
            a is None or b is None or a == b for a, b in zip(column, p[2]))), None)
        if same is None:
            same = next((p for p in params if all(a is None or b is None or a == b for a, b in zip(column, p[2]))),
                        None)
        if same is not None:
            same[2][:] = [a if a is not None else b for a, b in zip(same[2], column)]
            exprs.append(same[0])
            continue
        related = _relation(column, [p for p in params if p[0].rstrip("0123456789") == pname])
        if related:
            exprs.append(related)
            continue
        unique, k = pname, 2
        while any(p[0] == unique for p in params):
            unique, k = f"{pname}{k}", k + 1
        params.append((unique, role, list(column)))
        exprs.append(unique)
    sig = group["info"].get("init_args") or []
    params.sort(key=lambda p: sig.index(p[0]) if p[0] in sig else len(sig))
    # a number of the forward that varies (YOLO's stride) is an attribute the constructor sets: self.arg
    in_init = len(_slots("\x1e".join(proto["init"])))
    names = {p[0] for p in params}
    kept = [e for j, e in enumerate(exprs) if j >= in_init and e in names]
    exprs = [f"self.{e}" if j >= in_init and e in names else e for j, e in enumerate(exprs)]
    text = template.format(*exprs)
    parts = text.split("\x1e")
    cut = parts.index("--")
    init, forward = parts[:cut], parts[cut + 1:]
    init += [f"self.{e} = {e}" for e in dict.fromkeys(kept)]
    for a in optional:  # a child only some instances have: None in the others, skipped in forward; or, where
        # every other instance had it as an empty Sequential, that identity
        lacking = [instances[m] for m in members if a not in instances[m]["has"]]
        if all(a in inst["identity"] for inst in lacking):
            init = [s + " if " + a + " else nn.Sequential()" if s.startswith(f"self.{a} = ") else s for s in init]
            continue
        init = [s + f" if {a} else None" if s.startswith(f"self.{a} = ") else s for s in init]
        forward = [re.sub(rf"^(\w+) = self\.{a}\((\w+)\)$", rf"\1 = self.{a}(\2) if self.{a} is not None else \2", s)
                   for s in forward]
    flag = None
    if fam.get("sum") is not None:  # the residual sum under a flag: the Gluon block's own bool, if one says so
        with_sum = [m for m in members if _key(instances[m]) == _key(proto)]
        flag = next((k for k, v in proto.get("flags", {}).items() if all(
            instances[m].get("flags", {}).get(k) == (m in with_sum) for m in members)), "shortcut")
        line = forward[fam["sum"]]
        forward[fam["sum"]] = f"if self.{flag}:\n    {line}"
        init.append(f"self.{flag} = {flag}")
    arg_list = [p[0] for p in params] + [f"{a}=False" for a in optional] + ([flag] if flag else [])
    info = group["info"]
    doc = f'"""{info.get("module", "")}.{group["gluon"]}, ported by `ganparity port`."""'
    base = proto.get("base", "nn.Module")
    first = [] if base == "nn.ModuleList" else ["        super().__init__()"]
    source = "\n".join([f"class {name}({base}):", f"    {doc}", "",
                        f"    def __init__(self{''.join(', ' + a for a in arg_list)}):", *first,
                        _indent("\n".join(init), 8) if init else "", "",
                        f"    def forward(self, {', '.join(proto['args'])}):", _indent("\n".join(forward), 8), ""])
    source = source.replace("\n\n\n", "\n\n")
    calls = {}
    for pos, m in enumerate(members):
        kw = [f"{p[0]}={p[2][pos] if p[2][pos] is not None else 'None'}" for p in params]
        kw += [f"{a}=True" for a in optional if a in instances[m]["has"]]
        if flag:
            kw.append(f"{flag}={_key(instances[m]) == _key(proto)}")
        calls[m] = f"{name}({', '.join(kw)})"
    return name, calls, source


def _relation(column: list, params: list[tuple[str, str, list]]) -> str | None:
    """A number that is an argument of the same role times or divided by one integer (a
    bottleneck's channels // 4): that expression."""
    for pname, _, values in params:
        pairs = [(a, b) for a, b in zip(column, values) if a is not None and b is not None]
        try:
            nums = [(int(a), int(b)) for a, b in pairs]
        except ValueError:
            continue
        if not nums or any(a <= 0 or b <= 0 for a, b in nums):
            continue
        if all(a % b == 0 for a, b in nums) and len({a // b for a, b in nums}) == 1 and nums[0][0] > nums[0][1]:
            return f"{pname} * {nums[0][0] // nums[0][1]}"
        if all(b % a == 0 for a, b in nums) and len({b // a for a, b in nums}) == 1 and nums[0][1] > nums[0][0]:
            return f"{pname} // {nums[0][1] // nums[0][0]}"
    return None


def _arg_names(info: dict, count: int) -> list[str]:
    """The written forward's argument names for a call with `count` inputs: the Gluon
    hybrid_forward's own, then, for what its *args took (GluonCV's RPN: hybrid_forward(F, img,
    *x)), that name numbered: forward(self, img, x0)."""
    n = max(count, 1)
    args = [a for a in (info.get("forward_args") or []) if a][:n]
    base = info.get("forward_varargs") or "x"
    if not args and n == 1:
        return [base]
    k = 0
    while len(args) < n:
        if f"{base}{k}" not in args:
            args.append(f"{base}{k}")
        k += 1
    return args


def _indent(text: str, n: int) -> str:
    return "\n".join((" " * n + line) if line else line for line in text.splitlines())


# an activation written in place (as torchvision writes them): after a layer whose backward needs its input
# and not its output, inside a Sequential, where that output feeds nothing else. Out of place, mobilenet_v2's
# eval forward took x1.09-1.10 of torchvision's (bench port-speed; the train step the same).
IN_PLACE = {"nn.ReLU()": "nn.ReLU(inplace=True)", "nn.ReLU6()": "nn.ReLU6(inplace=True)"}
OUTPUT_FREE = ("nn.Conv1d(", "nn.Conv2d(", "nn.Conv3d(", "nn.ConvTranspose", "nn.BatchNorm", "nn.Linear(")


def _in_place(expr: str, before: str | None) -> str:
    """`expr` in place where the layer before it in the same Sequential leaves its output to it alone."""
    return IN_PLACE.get(expr, expr) if before is not None and before.startswith(OUTPUT_FREE) else expr


def _prefixed(layers: list, prefix: str) -> list:
    for la in layers:
        la.attr = f"{prefix}.{la.attr}" if la.attr else prefix
    return layers
