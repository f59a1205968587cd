"""The checks of compare_models, each judged by common/verdicts.py (agree, differ, cannot tell here).

Runs, each starting from the same initial weights (its side's own, or one side's copied):

    torch fp32, mxnet fp32          the comparison
    torch fp64, mxnet fp64          the fp64 control (noise: each side's fp32 against its fp64)
    torch fp64, constants rounded   the floor: the reference (torch) with every float constant of
                to float32          its layers and optimizer rounded to float32, as MXNet passes
                                    every op constant even in float64. Both fp64 runs start from
                                    the same weights, so this is all that separates two correct
                                    ports there; K steps of it include what the steps amplify.
                                    (A half-ulp jitter of the weights measures fp32's own chaos,
                                    which the fp32 noise already measures directly.)

Rows: the weights (when each side keeps its own: a port copies, so they must be equal), every
paired layer's output in train and in eval mode, the gradients of one loss (one scale for the
whole net), and after each of K optimizer steps the update since the start (state_k - state_0,
one scale for the parameters and one for the BatchNorm statistics: comparing the states would
hide a wrong update under the size of the weights).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..files import release_memory
from ..verdicts import (
    AGREE,
    CANNOT_TELL,
    DIFFER,
    NAN,
    Row,
    TensorDiff,
    distance,
    from_distances,
    judge,
    nonfinite,
    row_of,
    size,
)
from .pairing import Mapping, Pair

DROPOUT_CHECK = "dropout rates"  # train-mode checks run with every dropout at rate 0: the rates are compared alone
WEIGHTS_CHECK = "weights"
STATS = ("running_mean", "running_var")
NOISY = 1e-3  # fp32 noise above this: the verdict rests on the fp64 control, and the report says so


@dataclass
class CheckResult(Row):
    """A judged row of compare_models, with where each tensor sits among the layer pairs."""

    category: str = ""  # 'weights', 'forward', 'config', 'gradients', 'step'
    where: dict[str, int] = field(default_factory=dict)  # tensor name -> index into Report.pairs (-1: the output)
    shapes: dict[str, str] = field(default_factory=dict)  # tensor name -> what the shapes were, where they differ
    skipped: str | None = None
    loss: dict[str, float] = field(default_factory=dict)
    inputs_agree: dict[str, bool] = field(default_factory=dict)  # forward checks: torch path -> same input

    @property
    def name(self) -> str:
        return self.check


def judged(name: str, category: str, ref: dict, cand: dict, ref64: dict | None, cand64: dict | None,
           floor: dict | None, where: dict[str, int], group: bool, rtol: float, suggestion: str = "") -> CheckResult:
    """verdicts.judge over the tensors both sides have with equal shapes; a shape mismatch is a
    divergence of its own (max rel = inf) with both shapes written down."""
    same = [k for k in ref if k in cand and np.shape(ref[k]) == np.shape(cand[k])]
    have64 = ref64 is not None and cand64 is not None and all(k in ref64 and k in cand64 for k in same)
    pick = lambda d: {k: d[k] for k in same} if d is not None else None
    diffs = {d.name: d for d in judge(pick(ref), pick(cand), pick(ref64) if have64 else None,
                                      pick(cand64) if have64 else None, floor, group, rtol)} if same else {}
    tensors, shapes = [], {}
    for k in ref:
        if k in diffs:
            tensors.append(diffs[k])
        elif k in cand:
            shapes[k] = f"torch {tuple(np.shape(ref[k]))}, mxnet {tuple(np.shape(cand[k]))}"
            tensors.append(TensorDiff(k, NAN, float("inf"), NAN, NAN, NAN, NAN, False, verdict=DIFFER,
                                      reason=f"shapes differ: {shapes[k]}"))
    row = row_of(name, tensors, suggestion)
    return CheckResult(**{f: getattr(row, f) for f in Row.__dataclass_fields__}, category=category, where=where,
                       shapes=shapes)


def weights_row(mp: Mapping, t_state: dict, m_state: dict, where: dict[str, int]) -> CheckResult:
    """A port copies: every paired tensor equal, bit for bit in float32, or 'differ' naming it."""
    tensors = []
    for tn, mn in mp.tensor_map.items():
        a, b = np.asarray(t_state[tn], np.float64), np.asarray(m_state[mn], np.float64)
        if a.shape != b.shape:
            tensors.append(TensorDiff(tn, NAN, float("inf"), NAN, NAN, NAN, NAN, False, verdict=DIFFER,
                                      reason=f"shapes differ: torch {a.shape}, mxnet {b.shape}"))
            continue
        max_abs = float(np.abs(a - b).max()) if a.size else 0.0
        rel = max_abs / max(float(np.abs(b).max()) if b.size else 0.0, 1e-30)
        ok = max_abs == 0.0
        tensors.append(TensorDiff(tn, max_abs, rel, 0.0, 0.0, 0.0, NAN, ok, verdict=AGREE if ok else DIFFER,
                                  reason="" if ok else f"differs from the Gluon '{mn}' by max rel {rel:.3g} (a port "
                                                       "copies: they must be equal)"))
    row = row_of(WEIGHTS_CHECK, tensors)
    return CheckResult(**{f: getattr(row, f) for f in Row.__dataclass_fields__}, category="weights", where=where)


def bn_translation(pairs: list[Pair]) -> list[tuple[str, float, float]]:
    """(mxnet running_var name, Gluon momentum, n / (n - 1)) for every BatchNorm pair whose Gluon
    side moves its statistics in backward with the biased variance."""
    out = []
    for p in pairs:
        m = p.mxnet
        if p.torch is None or m is None or m.kind != "batchnorm" or m.config.get("global_stats"):
            continue
        var = next((mn for role, _, mn in p.tensors if role == "running_var"), None)
        shape = m.in_shape
        if var is None or not shape or len(shape) < 2:
            continue
        n = int(np.prod(shape)) // int(shape[1])
        if n > 1:
            out.append((var, float(m.config["momentum_native"]), n / (n - 1)))
    return out


def translate_bn(states: list[dict], initial: dict, bn: list[tuple[str, float, float]]) -> list[dict]:
    """Gluon's running variances as PyTorch would have them: r'_k = m r'_(k-1) + (r_k - m r_(k-1))
    n / (n - 1), i.e. its own update, with its own momentum m, of the unbiased batch variance."""
    out, prev, prev_t = [], dict(initial), {name: initial[name] for name, _, _ in bn}
    for state in states:
        fixed = dict(state)
        for name, m, factor in bn:
            fixed[name] = m * prev_t[name] + (state[name] - m * prev[name]) * factor
            prev_t[name] = fixed[name]
        prev = state
        out.append(fixed)
    return out


@dataclass
class SideRun:
    """What one model computed in one run, every value by its torch name (the mxnet side's names
    translated through the pairs): check -> {name: array}; and the losses."""

    values: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    inputs: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # mode -> {torch path: the layer's input}
    losses: dict[str, float] = field(default_factory=dict)
    dropout: list[str] = field(default_factory=list)


def run_side(be, model, init: dict, x: np.ndarray, opts: dict, dtype: str, target, names: dict,
             translate=None) -> SideRun:
    """One model through the gradient and step checks in one dtype, from `init` (its own names).
    names: 'tensors' (its tensor name -> torch name); translate: a function of the step states
    (Gluon's BatchNorm variances to PyTorch's rule). The forward rows stream (forward_rows)."""
    be.cast_model(model, dtype)
    xs = x.astype(dtype)
    tgt = None if target is None else [t.astype(dtype) for t in target]
    out = SideRun()
    to_t = lambda d: {names["tensors"][k]: v for k, v in d.items() if k in names["tensors"]}
    if opts["skip_backward"]:
        return out
    mode, loss = opts["mode"], opts["loss"]
    be.set_state(model, init)
    with be.no_dropout(model):
        out.losses["gradients"], grads = be.gradients(model, xs, mode, loss, tgt)
    out.values["gradients"] = to_t(grads)
    if opts["steps"]:
        be.set_state(model, init)
        optimizer, _ = be.make_optimizer(model, opts["optimizer"], opts["emulate"][be.FRAMEWORK])
        states = []
        with be.no_dropout(model):
            for k in range(opts["steps"]):
                out.losses[f"step {k + 1}"] = be.train_step(model, optimizer, xs, mode, loss, tgt)
                states.append(be.get_state(model))
        if translate is not None:
            states = translate(states)
        start = to_t(init)
        for k, s in enumerate(states):
            s = to_t(s)
            out.values[f"step {k + 1}"] = {n: np.asarray(s[n], np.float64) - np.asarray(start[n], np.float64)
                                           for n in s if n in start}
    be.cast_model(model, "float32")
    return out


def _final_keys(n: int) -> list[str]:
    return ["output"] if n == 1 else [f"output[{j}]" for j in range(n)]


def forward_rows(T, M, tm, mm, init_t: dict, init_m: dict, x: np.ndarray, names_t: dict, names_m: dict,
                 fp64: bool, rounded, rtol: float) -> tuple[dict[str, list[TensorDiff]], list[str]]:
    """Every paired layer's output in train and eval mode, judged without holding every run at
    once: the reference in float64 is kept (and its floor run, its constants rounded, compared
    with it as it goes), the candidate in float32 is kept; the candidate in float64 and the
    reference in float32 are compared layer by layer as they run. Returns, per mode, the tensors
    in the reference's order, and the dropout layers set to rate 0."""
    out, dropout = {}, set()
    for mode in ("train", "eval"):
        out[mode] = _forward_mode(T, M, (tm, init_t, names_t), (mm, init_m, names_m), x, mode, fp64, rounded, rtol,
                                  dropout)
    return out, sorted(dropout)


def _stream(be, model, init: dict, names: dict, x: np.ndarray, mode: str, dtype: str, consume, dropout: set) -> list:
    """One walk whose paired layers' outputs go to consume(torch key, array) as they come."""
    be.set_state(model, init)
    be.cast_model(model, dtype)
    seen = []

    def take(path, array):
        key = names["paths"].get(path)
        if key is not None and array is not None:
            consume(key, np.asarray(array))
            seen.append(key)
    try:
        with be.no_dropout(model) as changed:
            _, finals = be.walk(model, x.astype(dtype), mode, on_output=take, keep_inputs=False)
    finally:
        be.cast_model(model, "float32")
        release_memory()  # the walk's freed frames: the streams of a large model would add up
    for key, a in zip(_final_keys(len(finals)), finals):
        consume(key, np.asarray(a))
        seen.append(key)
    dropout.update(changed)
    return seen


def _forward_mode(T, M, ref: tuple, cand_side: tuple, x: np.ndarray, mode: str, fp64: bool, rounded, rtol: float,
                  dropout: set) -> list[TensorDiff]:
    (tm, init_t, names_t), (mm, init_m, names_m) = ref, cand_side
    dist: dict[str, dict] = {}
    base: dict[str, np.ndarray] = {}
    cand: dict[str, np.ndarray] = {}

    def note(key: str, **kw) -> None:
        dist.setdefault(key, {}).update(kw)

    def same_shape(key: str, a, b) -> bool:
        if np.shape(a) != np.shape(b):
            note(key, shapes=f"torch {tuple(np.shape(b))}, mxnet {tuple(np.shape(a))}")
            return False
        return True

    def floor(k, a):
        if k in base and np.shape(a) == np.shape(base[k]):
            note(k, floor=distance(a, base[k]))

    def m64(k, a):
        if k in base and same_shape(k, a, base[k]):
            note(k, gap64=distance(a, base[k]))
        if k in cand and np.shape(a) == np.shape(cand[k]):
            note(k, noise_cand=distance(cand[k], a))

    def t32(k, a):
        if k not in cand:
            return
        bad = "; ".join(f"the {who}'s values hold {b}" for who, b in (("reference", nonfinite(a)),
                                                                      ("candidate", nonfinite(cand[k]))) if b)
        note(k, scale=size(a), bad=bad)
        if same_shape(k, cand[k], a):
            note(k, gap32=distance(cand[k], a))
        if k in base and np.shape(a) == np.shape(base[k]):
            note(k, noise_ref=distance(a, base[k]))

    if fp64:
        _stream(T, tm, init_t, names_t, x, mode, "float64", lambda k, a: base.__setitem__(k, a.astype(np.float64)),
                dropout)
        with rounded():
            _stream(T, tm, init_t, names_t, x, mode, "float64", floor, dropout)
    _stream(M, mm, init_m, names_m, x, mode, "float32", lambda k, a: cand.__setitem__(k, a), dropout)
    if fp64:
        _stream(M, mm, init_m, names_m, x, mode, "float64", m64, dropout)
    order = _stream(T, tm, init_t, names_t, x, mode, "float32", t32, dropout)
    tensors = []
    for k in dict.fromkeys(order):
        d = dist.get(k, {})
        if "scale" not in d:
            continue
        if "shapes" in d:
            tensors.append(TensorDiff(k, NAN, float("inf"), NAN, NAN, NAN, NAN, False, verdict=DIFFER,
                                      reason=f"shapes differ: {d['shapes']}"))
            continue
        tensors.append(from_distances(k, d["scale"], d.get("gap32", NAN), d.get("noise_ref", NAN),
                                      d.get("noise_cand", NAN), d.get("gap64", NAN), d.get("floor", NAN), rtol,
                                      d.get("bad", "")))
    return tensors


def layer_inputs(T, M, tm, mm, init_t: dict, init_m: dict, x: np.ndarray, names_t: dict, names_m: dict,
                 mode: str, rtol: float) -> dict[str, bool]:
    """torch path -> whether the paired layers received the same input (fp32, the parity rule):
    run only when a forward row differs, to tell a layer that computes differently from one whose
    input is put together differently."""
    ins = []
    for be, model, init, names in ((T, tm, init_t, names_t), (M, mm, init_m, names_m)):
        be.set_state(model, init)
        with be.no_dropout(model):
            recs, _ = be.walk(model, x, mode)
        ins.append({names["paths"][r["path"]]: r.get("input") for r in recs if r["path"] in names["paths"]})
    return _inputs_agree(ins[0], ins[1], None, None, rtol)


def floor_of(base: SideRun, perturbed: list[SideRun]) -> dict[str, dict[str, float]]:
    """Per check and tensor: the largest |perturbed - base| (absolute) over the perturbations."""
    out: dict[str, dict[str, float]] = {}
    for check, vals in base.values.items():
        f = out.setdefault(check, {})
        for p in perturbed:
            for k, v in vals.items():
                w = p.values.get(check, {}).get(k)
                if w is None or np.shape(w) != np.shape(v) or not np.size(v):
                    continue
                gap = float(np.abs(np.asarray(w, np.float64) - np.asarray(v, np.float64)).max())
                f[k] = max(f.get(k, 0.0), gap if gap == gap else np.inf)
    return out


def _split_step(values: dict) -> tuple[list[str], list[str]]:
    params = [n for n in values if n.rsplit(".", 1)[-1] not in STATS]
    return params, [n for n in values if n.rsplit(".", 1)[-1] in STATS]


def suggestion_for(pairs: list[Pair], category: str) -> str:
    """What would make a 'cannot tell here' row tellable, from what the models hold."""
    per = [(int(np.prod(p.torch.in_shape)) // p.torch.in_shape[1], p.torch.path) for p in pairs
           if p.torch and p.torch.kind == "batchnorm" and p.torch.in_shape and len(p.torch.in_shape) > 1]
    few = min(per) if per else None
    tips = []
    if few and few[0] < 32:
        tips.append(f"a larger batch or input (BatchNorm '{few[1]}' normalises over {few[0]} values per channel)")
    if category == "step":
        tips.append("fewer steps or a smaller lr (an update amplifies rounding)")
    tips.append("a fixed input of your own data instead of N(0, 1) noise")
    return "; ".join(tips)


def build_checks(mp: Mapping, runs: dict[str, SideRun], floors: dict, where_t: dict, opts: dict, rtol: float,
                 shapes_differ: list[str], weights: CheckResult | None, unpaired_dropout: dict,
                 forward: dict[str, list[TensorDiff]], inputs=None,
                 graph_dropout: list[tuple[str, float, float]] | None = None) -> list[CheckResult]:
    """Every row, judged. runs: 'torch', 'mxnet' (fp32) and, when the control ran, 'torch64', 'mxnet64';
    unpaired_dropout: framework -> its dropout layers that have no counterpart; graph_dropout: the
    torch dropout rates against an imported graph's Dropout ops, in order (key, torch, mxnet)."""
    t32, m32, t64, m64 = runs["torch"], runs["mxnet"], runs.get("torch64"), runs.get("mxnet64")
    checks = [weights] if weights is not None else []
    where_f = {p.torch.path: i for i, p in enumerate(mp.pairs)}
    for mode in ("train", "eval"):
        name, tensors = f"forward {mode}", forward[mode]
        row = row_of(name, tensors, suggestion_for(mp.pairs, "forward"))
        res = CheckResult(**{f: getattr(row, f) for f in Row.__dataclass_fields__}, category="forward",
                          where={t.name: where_f.get(t.name, -1) for t in tensors},
                          shapes={t.name: t.reason.removeprefix("shapes differ: ") for t in tensors
                                  if t.reason.startswith("shapes differ")})
        if res.verdict == DIFFER and inputs is not None:
            res.inputs_agree = inputs(mode)
        checks.append(res)
    # every dropout, paired or not: a layer left out (or made an Identity) on one side has rate 0 there
    rate = lambda layer: np.array([float(layer.config.get("rate") or 0.0) if layer.kind == "dropout" else 0.0])
    drop = {i: p for i, p in enumerate(mp.pairs) if "dropout" in (p.torch.kind, p.mxnet.kind)}
    ref = {p.torch.path: rate(p.torch) for p in drop.values()}
    cand = {p.torch.path: rate(p.mxnet) for p in drop.values()}
    where = {p.torch.path: i for i, p in drop.items()}
    for fw, layers in unpaired_dropout.items():
        for layer in layers:
            key = f"{fw} '{layer.path}' (no counterpart)"
            ref[key], cand[key] = (rate(layer), np.zeros(1)) if fw == "torch" else (np.zeros(1), rate(layer))
            where[key] = -1
    for key, t_rate, m_rate in graph_dropout or []:
        ref[key], cand[key], where[key] = np.array([t_rate]), np.array([m_rate]), -1
    if ref:
        checks.append(judged(DROPOUT_CHECK, "config", ref, cand, ref, cand, None, where, False, rtol))
    # (a tensor paired by the mapping alone, outside any layer pair: an imported graph's, -1)
    tensor_where = {tn: -1 for tn in mp.tensor_map} | {tn: where_t[p.torch.path] for p in mp.pairs
                                                       for _, tn, _ in p.tensors}
    if opts["skip_backward"]:
        reason = "the outputs' shapes differ: " + "; ".join(shapes_differ)
        checks.append(CheckResult("gradients", CANNOT_TELL, category="gradients", skipped=reason,
                                  reason=f"skipped: {reason}"))
        return checks
    names = [n for n in tensor_where if n in t32.values["gradients"] and n in m32.values["gradients"]]
    pick = lambda run, check, keys: {k: run.values[check][k] for k in keys if k in run.values[check]} if run else None
    res = judged("gradients", "gradients", pick(t32, "gradients", names), pick(m32, "gradients", names),
                 pick(t64, "gradients", names), pick(m64, "gradients", names), floors.get("gradients"),
                 tensor_where, True, rtol, suggestion_for(mp.pairs, "gradients"))
    res.loss = {"torch": t32.losses["gradients"], "mxnet": m32.losses["gradients"]}
    checks.append(res)
    for k in range(opts["steps"]):
        check = f"step {k + 1}"
        params, stats = _split_step({n: None for n in tensor_where if n in t32.values.get(check, {})})
        parts = []
        for keys in (params, stats):
            if keys:
                parts.append(judged(check, "step", pick(t32, check, keys), pick(m32, check, keys),
                                    pick(t64, check, keys), pick(m64, check, keys), floors.get(check),
                                    tensor_where, True, rtol))
        tensors = [t for p in parts for t in p.tensors]
        row = row_of(check, tensors, suggestion_for(mp.pairs, "step"))
        res = CheckResult(**{f: getattr(row, f) for f in Row.__dataclass_fields__}, category="step",
                          where=tensor_where, shapes={s: v for p in parts for s, v in p.shapes.items()})
        res.loss = {"torch": t32.losses.get(check, NAN), "mxnet": m32.losses.get(check, NAN)}
        checks.append(res)
    return checks


def _inputs_agree(ref: dict, cand: dict, ref64: dict | None, cand64: dict | None, rtol: float) -> dict[str, bool]:
    """torch path -> whether the paired layers received the same input (the same rule as their
    outputs), for the pairs whose inputs hold the same number of values (a Dense that flattens
    sees the values a Flatten + Linear sees, in another shape)."""
    a, b, a64, b64 = {}, {}, {}, {}
    for k, v in ref.items():
        w = cand.get(k)
        if v is None or w is None or v.size != w.size:
            continue
        a[k], b[k] = v, w.reshape(v.shape)
        if ref64 and cand64 and ref64.get(k) is not None and cand64.get(k) is not None:
            a64[k], b64[k] = ref64[k], cand64[k].reshape(v.shape)
    if not a:
        return {}
    have64 = set(a64) == set(a)
    return {d.name: d.verdict != DIFFER
            for d in judge(a, b, a64 if have64 else None, b64 if have64 else None, rtol=rtol, three_way=False)}


def conditioning(checks: list[CheckResult], pairs: list[Pair]) -> list[str]:
    """A note where fp32 rounding alone moves a tensor by more than NOISY: agreement there is only
    as good as the fp64 control, and a BatchNorm over few values per channel is the usual cause."""
    noisy = [(t.noise, c.check, t) for c in checks for t in c.tensors if t.noise == t.noise and t.noise > NOISY]
    if not noisy:
        return []
    noise, check, t = max(noisy, key=lambda v: v[0])
    fp64 = f"fp64 rel err {t.fp64_rel:.2g}" if t.fp64_rel == t.fp64_rel else "no fp64 control"
    per = [(int(np.prod(p.torch.in_shape)) // p.torch.in_shape[1], p.torch.path) for p in pairs
           if p.torch.kind == "batchnorm" and p.torch.in_shape and len(p.torch.in_shape) > 1]
    few = min(per) if per else None
    why = (f"; BatchNorm '{few[1]}' normalises over {few[0]} values per channel: a larger batch or input "
           "makes the comparison sharper" if few and few[0] < 16 else "")
    return [f"conditioning: fp32 rounding alone moves {check} '{t.name}' by {noise:.2g} (relative), so "
            f"agreement there rests on the fp64 control ({fp64}){why}"]
