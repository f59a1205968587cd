"""Pairing the two walks: which torch layer is which Gluon block, and which tensor is which.

Layers that own tensors are paired by kind and tensor shapes in execution order (a sequence
alignment, then leftovers by equal signature), which follows branches (ResNet's downsample runs
where it runs in both); a mapping file pairs what cannot be inferred, and every tensor left
unpaired is an error that lists it. Layers without tensors (activations, pooling, resizing) are
paired between the tensor-owning pairs: by kind and output shape, and, where both walks have the
same number of them between two anchors, by position, so that a ReLU ported as ReLU6 or a pooling
with another ceil_mode is compared (and named) at that very layer.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field

from ..errors import GanparityError
from .hints import NORMS, Hint, config_hints
from .inputs import MappingFile

FRAMEWORKS = ("torch", "mxnet")
ROLE_ORDER = ("weight", "bias", "running_mean", "running_var")


@dataclass
class WalkedLayer:
    """One record of a walk (see backends/*/compare.py walk), without its output."""

    framework: str
    index: int  # position in execution order
    path: str  # module path, '#k' for its k-th call
    module: str
    call: int
    kind: str
    type: str
    repr: str
    config: dict
    in_shape: tuple | None
    out_shape: tuple | None
    tensors: dict[str, str]  # role -> native tensor name (first call only)
    shapes: dict[str, tuple]
    trainable: dict[str, bool]

    @classmethod
    def of(cls, framework: str, index: int, rec: dict) -> WalkedLayer:
        return cls(framework, index, rec["path"], rec["module"], rec["call"], rec["kind"], rec["type"],
                   rec["repr"], rec["config"], _tuple(rec.get("in_shape")), _tuple(rec.get("out_shape")),
                   dict(rec["tensors"]), {k: _tuple(v) for k, v in rec["shapes"].items()}, dict(rec["trainable"]))

    @property
    def label(self) -> str:
        return f"'{self.path}' ({self.type})"

    def signature(self) -> tuple:
        return self.kind, tuple(sorted(tuple(s or ()) for s in self.shapes.values()))


def _tuple(v):
    return tuple(v) if v is not None else None


@dataclass
class Pair:
    torch: WalkedLayer | None
    mxnet: WalkedLayer | None
    tensors: list[tuple[str, str, str]] = field(default_factory=list)  # (role, torch name, mxnet name)
    source: str = "auto"  # 'auto' (kind and shapes), 'mapping' (the file), 'aligned' / 'position' (no tensors)
    hints: list[Hint] = field(default_factory=list)

    @property
    def label(self) -> str:
        t = self.torch.label if self.torch else "-"
        m = self.mxnet.label if self.mxnet else "-"
        return f"torch {t} <-> mxnet {m}"


def _pair_tensors(t: WalkedLayer, m: WalkedLayer) -> tuple[list[tuple[str, str, str]], list[str], list[str]]:
    """Tensors of a layer pair: by role where the roles agree, else by equal shapes in order."""
    pairs, t_left, m_left = [], [], list(m.tensors)
    for role in sorted(t.tensors, key=_role_key):
        if role in m.tensors and m.shapes.get(role) == t.shapes.get(role) and role in m_left:
            pairs.append((role, t.tensors[role], m.tensors[role]))
            m_left.remove(role)
        else:
            t_left.append(role)
    for role in list(t_left):
        match = next((r for r in m_left if m.shapes.get(r) == t.shapes.get(role)), None)
        if match is not None:
            pairs.append((role, t.tensors[role], m.tensors[match]))
            m_left.remove(match)
            t_left.remove(role)
    return pairs, [t.tensors[r] for r in t_left], [m.tensors[r] for r in m_left]


def _role_key(role: str) -> tuple:
    return (ROLE_ORDER.index(role), role) if role in ROLE_ORDER else (len(ROLE_ORDER), role)


@dataclass
class Mapping:
    pairs: list[Pair]  # every pair, in torch execution order (tensor owners and aligned layers)
    tensor_map: dict[str, str]  # torch tensor name -> mxnet tensor name
    ignored: dict[str, list[str]]


def _find(layers: list[WalkedLayer], name: str, framework: str, source: str) -> WalkedLayer:
    for layer in layers:
        if layer.module == name or layer.path == name:
            return layer
    close = difflib.get_close_matches(name, [layer.path for layer in layers], 3)
    also = f"; close: {', '.join(close)}" if close else ""
    raise GanparityError(f"mapping {source!r}: no {framework} layer {name!r} ran in the forward{also}")


def pair_layers(tl: list[WalkedLayer], ml: list[WalkedLayer], mapping: MappingFile, t_state: dict,
                m_state: dict) -> Mapping:
    """Pair the two walks (see the module docstring, step 2). Raises, listing every tensor left
    unpaired (with the hints that the unpaired layers' configurations give), unless ignored."""
    t_own, m_own = [t for t in tl if t.tensors], [m for m in ml if m.tensors]
    pairs: list[Pair] = []
    taken_t, taken_m = set(), set()

    def take(t: WalkedLayer, m: WalkedLayer, source: str) -> Pair:
        p = Pair(t, m, source=source)
        pairs.append(p)
        taken_t.add(t.index)
        taken_m.add(m.index)
        return p

    src = mapping.source or "mapping"
    for tp, mp in mapping.layers.items():
        take(_find(tl, tp, "torch", src), _find(ml, mp, "mxnet", src), "mapping")
    owner_t = {name: t for t in t_own for name in t.tensors.values()}
    owner_m = {name: m for m in m_own for name in m.tensors.values()}
    for tn, mn in mapping.tensors.items():
        for name, fw, state in ((tn, "torch", t_state), (mn, "mxnet", m_state)):
            if name not in state:
                close = difflib.get_close_matches(name, list(state), 3)
                raise GanparityError(f"mapping {src!r}: the {fw} model has no tensor {name!r}"
                                     + (f"; close: {', '.join(close)}" if close else ""))
        if t_state[tn].shape != m_state[mn].shape:
            raise GanparityError(f"mapping {src!r}: torch {tn!r} {t_state[tn].shape} and mxnet {mn!r} "
                                 f"{m_state[mn].shape} differ in shape")
        t, m = owner_t.get(tn), owner_m.get(mn)
        # (the layers too, where they are the same kind of layer: a parameter a Gluon block reads in its own
        # forward, BERT's position table, is a torch nn.Embedding's; their outputs are not the same tensor)
        if t is not None and m is not None and t.index not in taken_t and m.index not in taken_m and (
                t.kind == m.kind or t.out_shape == m.out_shape):
            take(t, m, "mapping")
    rest_t = [t for t in t_own if t.index not in taken_t]
    rest_m = [m for m in m_own if m.index not in taken_m]
    sm = difflib.SequenceMatcher(None, [t.signature() for t in rest_t], [m.signature() for m in rest_m], autojunk=False)
    for a, b, size in sm.get_matching_blocks():
        for i in range(size):
            take(rest_t[a + i], rest_m[b + i], "auto")
    for t in [t for t in t_own if t.index not in taken_t]:
        m = next((m for m in m_own if m.index not in taken_m and m.signature() == t.signature()), None)
        if m is not None:
            take(t, m, "auto")
    tensor_map, left_t, left_m = {}, [], []
    for p in pairs:
        p.tensors, lt, lm = _pair_tensors(p.torch, p.mxnet)
        left_t += lt
        left_m += lm
        p.hints = config_hints(p.torch, p.mxnet)
    explicit = dict(mapping.tensors)
    for p in pairs:  # explicit tensor pairs override what the roles said
        for tn, mn in list(explicit.items()):
            if tn in left_t and mn in left_m:
                p.tensors.append(("tensor", tn, mn))
                left_t.remove(tn)
                left_m.remove(mn)
                del explicit[tn]
    for p in pairs:
        tensor_map.update({tn: mn for _, tn, mn in p.tensors})
    for tn, mn in explicit.items():  # tensors outside any recorded layer, paired by the file
        if tn not in tensor_map and mn not in tensor_map.values():
            tensor_map[tn] = mn
            left_t = [n for n in left_t if n != tn]
            left_m = [n for n in left_m if n != mn]
    owned_t = {n for t in t_own for n in t.tensors.values()}
    owned_m = {n for m in m_own for n in m.tensors.values()}
    # (a tensor the mapping paired is paired, even where its layer is not: an imported graph has no layers)
    left_t += [t for layer in t_own if layer.index not in taken_t for t in layer.tensors.values()
               if t not in tensor_map]
    left_m += [m for layer in m_own if layer.index not in taken_m for m in layer.tensors.values()
               if m not in tensor_map.values()]
    left_t += [n for n in t_state if n not in owned_t and n not in tensor_map]
    left_m += [n for n in m_state if n not in owned_m and n not in tensor_map.values()]
    for fw in FRAMEWORKS:
        for name in mapping.ignore[fw]:
            if name not in (t_state if fw == "torch" else m_state):
                raise GanparityError(f"mapping {src!r}: ignore lists {name!r}, which the {fw} model does not have")
    left_t = [n for n in dict.fromkeys(left_t) if n not in mapping.ignore["torch"]]
    left_m = [n for n in dict.fromkeys(left_m) if n not in mapping.ignore["mxnet"]]
    if left_t or left_m:
        raise GanparityError(_unpaired_message(left_t, left_m, tl, ml, t_own, m_own, taken_t, taken_m,
                                               t_state, m_state))
    pairs.sort(key=lambda p: p.torch.index)
    pairs = _align_rest(tl, ml, pairs)
    return Mapping(pairs, tensor_map, mapping.ignore)


def _unpaired_message(left_t, left_m, tl, ml, t_own, m_own, taken_t, taken_m, t_state, m_state) -> str:
    count = lambda state: sum(int(state[n].size) for n in state)

    def describe(names: list[str], state: dict, layers: list[WalkedLayer]) -> str:
        owner = {n: layer for layer in layers for n in layer.tensors.values()}
        shown = [f"{n} {tuple(state[n].shape)}" + (f" in {owner[n].label}" if n in owner else " (never used by "
                                                     "the forward)") for n in names[:6]]
        return ", ".join(shown) + (f" and {len(names) - 6} more" if len(names) > 6 else "")

    parts = [f"the models' tensors do not pair (torch {len(t_state)} tensors, {count(t_state):,} values; "
             f"mxnet {len(m_state)}, {count(m_state):,})"]
    if left_t:
        parts.append(f"unmatched torch: {describe(left_t, t_state, tl)}")
    if left_m:
        parts.append(f"unmatched mxnet: {describe(left_m, m_state, ml)}")
    hints = []
    for t in [t for t in t_own if t.index not in taken_t]:  # the same kind's unpaired counterpart, in order
        family = (lambda x: x.kind in NORMS) if t.kind in NORMS else (lambda x, kind=t.kind: x.kind == kind)
        k = [x for x in t_own if x.index not in taken_t and family(x)].index(t)
        same = [m for m in m_own if m.index not in taken_m and family(m)]
        if k < len(same):  # a normalisation of another kind (InstanceNorm for BatchNorm) is named too
            hints += [f"{h.line()} (torch {t.label}, mxnet {same[k].label})" for h in config_hints(t, same[k])]
    if hints:
        parts.append("hint " + "; ".join(dict.fromkeys(hints)))
    parts.append("pair the rest with a mapping file (--mapping)")
    return "; ".join(parts)


def _align_rest(tl: list[WalkedLayer], ml: list[WalkedLayer], pairs: list[Pair]) -> list[Pair]:
    """Layers without tensors (and repeated calls), aligned by kind and output shape between the
    tensor-owning pairs that are in the same order in both walks (the longest such chain: where a
    port runs two independent branches in the other order, GluonCV's Fast-SCNN fusing its two
    resolutions, the pairs of one branch are not anchors, and its parameter-free layers are aligned
    within the other's segments, not with the next layer of the same kind)."""
    anchors = _monotone([(p.torch.index, p.mxnet.index) for p in pairs])
    paired_t = {p.torch.index for p in pairs}
    paired_m = {p.mxnet.index for p in pairs}
    bounds = [(-1, -1), *anchors, (len(tl), len(ml))]
    extra = []
    for (t0, m0), (t1, m1) in zip(bounds, bounds[1:]):
        # (an identity, an empty Sequential, computes nothing: its output is its input, compared already)
        seg_t = [t for t in tl[t0 + 1:t1] if t.index not in paired_t and t.kind != "identity"]
        seg_m = [m for m in ml[m0 + 1:m1] if m.index not in paired_m and m.kind != "identity"]
        for t, m in _align(seg_t, seg_m):
            extra.append(Pair(t, m, source="aligned" if t.kind == m.kind else "position", hints=config_hints(t, m)))
    return sorted(pairs + extra, key=lambda p: p.torch.index)


def _monotone(points: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The longest chain of (torch index, mxnet index) pairs, given in torch order, whose mxnet indices
    increase too (a longest increasing subsequence; the first such on ties)."""
    import bisect

    tails, tail_at, back = [], [], [-1] * len(points)  # tails[k]: smallest end of a chain of length k + 1
    for i, (_, m) in enumerate(points):
        k = bisect.bisect_left(tails, m)
        back[i] = tail_at[k - 1] if k else -1
        if k == len(tails):
            tails.append(m)
            tail_at.append(i)
        else:
            tails[k], tail_at[k] = m, i
    chain, i = [], tail_at[-1] if tail_at else -1
    while i >= 0:
        chain.append(points[i])
        i = back[i]
    return chain[::-1]


def _align(seg_t: list[WalkedLayer], seg_m: list[WalkedLayer]) -> list[tuple[WalkedLayer, WalkedLayer]]:
    """The layers of one segment paired in order (a global alignment): the same kind and output shape
    pair at no cost; another kind at the same output shape (a ReLU6 ported as ReLU), or the same kind
    with the same input (another ceil_mode), at cost 1; a layer left unpaired costs 1.5. So a wrong
    activation pairs with the one it replaces, not with the next of its kind further on."""
    n, k = len(seg_t), len(seg_m)
    if not n or not k:
        return []
    if n * k > 4_000_000:  # a huge segment (a model of parameter-free layers only): matching runs of kinds
        sm = difflib.SequenceMatcher(None, [(t.kind, t.out_shape) for t in seg_t],
                                     [(m.kind, m.out_shape) for m in seg_m], autojunk=False)
        return [(seg_t[a + i], seg_m[b + i]) for a, b, size in sm.get_matching_blocks() for i in range(size)]

    def cost(t: WalkedLayer, m: WalkedLayer) -> float:
        if t.kind == m.kind and t.out_shape == m.out_shape:
            return 0.0
        return 1.0 if t.out_shape == m.out_shape or (t.kind == m.kind and t.in_shape == m.in_shape) else math.inf

    gap = 1.5
    best = [[0.0] * (k + 1) for _ in range(n + 1)]
    for i in range(1, n + 1):
        best[i][0] = i * gap
    for j in range(1, k + 1):
        best[0][j] = j * gap
    for i in range(1, n + 1):
        for j in range(1, k + 1):
            best[i][j] = min(best[i - 1][j - 1] + cost(seg_t[i - 1], seg_m[j - 1]), best[i - 1][j] + gap,
                             best[i][j - 1] + gap)
    pairs, i, j = [], n, k
    while i and j:
        c = cost(seg_t[i - 1], seg_m[j - 1])
        if best[i][j] == best[i - 1][j - 1] + c:
            pairs.append((seg_t[i - 1], seg_m[j - 1]))
            i, j = i - 1, j - 1
        elif best[i][j] == best[i - 1][j] + gap:
            i -= 1
        else:
            j -= 1
    return pairs[::-1]
