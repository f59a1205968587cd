"""The proof of a port: does the written PyTorch model compute and train what the Gluon block did?
Every row is judged agree / differ / cannot tell here (common/verdicts.py), and the proof says
which hyperparameters it could have seen.

1. weights, forward, gradients   the compare API (common/compare) with each model holding its own
                                 weights: the port's as its own load() gives them, the block's own
                                 parameters (the factory and --params). The weights row compares
                                 every tensor through mapping.json, exactly (a port copies); then
                                 every layer's output in train and eval mode and the gradients of
                                 a projection loss, each against an fp64 control and the floor.
2. K training steps              as a user trains: the written make_optimizer(model), the Gluon
                                 loop's per-sample loss summed into backward(), gluon_step(optimizer,
                                 batch_size) where Gluon calls trainer.step(batch_size); a new batch
                                 every step; dropout off on both sides. The Gluon side follows the
                                 chosen semantics: under 'torch' its BatchNorm statistics and Adam
                                 emulate PyTorch's (backends/mxnet/emulations.py), under 'mxnet' it
                                 runs natively and the written model.py carries MXNet's. Each row
                                 compares the update since the start (state_k - state_0), so a wrong
                                 lr or an added weight decay is not hidden under the size of the
                                 weights, and the BatchNorm statistics in a row of their own.
3. the optimizer alone           the same K steps fed the same gradients on both sides (the port's,
                                 in float64, at each batch): what the optimizer does, free of the
                                 model's chaos (Adam turns a gradient that is a cancellation into a
                                 full-size step whose sign rounding decides). Adam's betas and SGD's
                                 momentum show from step 2 on. (Adam) one more step with the
                                 gradients scaled until the typical one is eps: eps, its placement
                                 and gluon_step's 1 / batch_size, which Adam divides out at a
                                 normal scale, move that step by O(1). And one step with the
                                 gradients scaled to 1e-4 of the weights: a weight decay of 1e-4
                                 the port added, invisible beside a model's large gradients,
                                 moves that step by O(1).
4. what it could have seen       each hyperparameter of the trainer (and gluon_step's rescale, and
                                 the BatchNorm momentum) changed by SEE = 1e-4 in the port, in
                                 float64: a row 'sees' it when the change exceeds that row's fp64
                                 allowance. One that no agreeing row sees makes the proof 'cannot
                                 tell here', naming it and what would make it visible.

The floor of every fp64 comparison is the port run again with every float constant (layers,
optimizer, the rescale) rounded to float32: what MXNet does to each op constant.
"""

from __future__ import annotations

import dataclasses
import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..backend import get_backend
from ..compare import compare_models
from ..compare.checks import suggestion_for
from ..files import release_memory
from ..usermodel import Inputs, InputSpec, parse_input
from ..verdicts import (
    AGREE,
    CANNOT_TELL,
    DIFFER,
    FP64_MIN,
    NAN,
    SEE,
    Row,
    _scale,
    distance,
    judge,
    overall,
    row_of,
    size,
)

PROBE = "optimizer step 1, gradients near eps"
WD_PROBE = "optimizer step 1, gradients near 1e-4 of the weights"
CONSTANTS = "layer constants seen"
COVERAGE = "hyperparameters seen"
STATS = ("running_mean", "running_var")
NORM = "rms"  # the step rows compare updates as vectors (verdicts.judge): a few ill-conditioned elements don't decide
OPTIMIZER_HPS = {"sgd": ("lr", "momentum", "wd"), "adam": ("lr", "beta1", "beta2", "eps", "wd")}
TELLABLE_BY = {  # what makes a hyperparameter visible, when no row saw it
    "lr": "gradients that are not all zero",
    "momentum": "--steps 2 or more (momentum acts from the second step)",
    "beta1": "--steps 2 or more (Adam's first step does not depend on beta1)",
    "beta2": "--steps 2 or more (PyTorch's Adam's first step does not depend on beta2)",
    "eps": "a model whose gradients are not all far above eps",
    "wd": "weights that are not all zero",
    "rescale": "gradients that are not all zero (SGD), or --steps 1 or more (Adam: the small-gradient step)",
    "bn-momentum": "--steps 1 or more with BatchNorm in train mode",
}
# A forward or gradient fp64 gap above this at the start is more than fp64 rounding and MXNet's float32
# constants make (1e-8 at most on correct ports): the training steps' floor then jitters by that gap.
JITTER_FROM = 1e-7


def port_backend(name: str):
    """backends/<name>/port.py, reached through get_backend (which imports the framework)."""
    return importlib.import_module(".port", get_backend(name).__package__)


@dataclass
class Proof:
    """Every judged row of a port's proof, and which hyperparameters it could have seen."""

    rows: list[Row] = field(default_factory=list)
    coverage: dict[str, list[str]] = field(default_factory=dict)  # hyperparameter -> rows that would see SEE
    constants: dict = field(default_factory=dict)  # the layer constants, and those the output did not respond to
    tensors: int = 0
    layers: int = 0
    summary: str = ""  # compare's summary: the first divergence and its hints
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def verdict(self) -> str:
        return overall(self.rows)

    @property
    def ok(self) -> bool:
        """No row differs."""
        return self.verdict != DIFFER

    def row(self, check: str) -> Row:
        return next(r for r in self.rows if r.check == check)

    def failures(self) -> str:
        return "; ".join(f"{r.check}: {r.verdict}: {r.reason} ({r.worst})" for r in self.rows if r.verdict != AGREE)

    def to_dict(self) -> dict:
        return {"verdict": self.verdict, "ok": self.ok, "tensors": self.tensors, "layers": self.layers,
                "coverage": self.coverage, "constants": self.constants, "notes": self.notes, "seconds": self.seconds,
                "rows": [r.to_dict() for r in self.rows]}


def input_specs(shape) -> list[InputSpec]:
    """One shape, or a list of inputs ('2,8:int', InputSpec): the model's inputs."""
    return [parse_input(s) for s in shape] if isinstance(shape, list) else [parse_input(tuple(shape))]


def draw_batch(specs: list[InputSpec], rng):
    """One batch: the array of a model of one input, an Inputs of several."""
    xs = [s.draw(rng) for s in specs]
    return xs[0] if len(xs) == 1 else Inputs(xs)


def make_data(shape, out_shapes: list[tuple], steps: int, seed: int) -> dict:
    """The proof's batches, drawn in numpy: a new batch per step (N(0, 1), whole numbers for an
    'int' input) and, per step, one N(0, 1) projection per output (the loss is sum(output * R),
    summed per sample as Gluon's losses are)."""
    specs = input_specs(shape)
    rng = np.random.default_rng([seed, 25])
    batches = [draw_batch(specs, rng) for _ in range(max(steps, 1))]
    projections = [[rng.standard_normal(s).astype(np.float32) for s in out_shapes] for _ in range(max(steps, 1))]
    return {"batches": batches, "projections": projections, "batch_size": int(specs[0].shape[0])}


def _deltas(states: list[dict], names: dict[str, str] | None = None) -> list[dict]:
    """state_k - state_0 for k = 1..K, by torch name (names: the Gluon side's structural names), in
    the states' own precision (a float32 run's differences are float32: exact, and half the memory)."""
    if names is not None:
        states = [{t: s[g] for t, g in names.items() if g in s} for s in states]
    start, out = states[0], []
    for k in range(1, len(states)):  # each state let go as its delta is made: K states and K deltas are not all held
        s, states[k] = states[k], None
        out.append({n: np.asarray(s[n]) - np.asarray(start[n]) for n in s})
    return out


def _groups(names) -> dict[str, list[str]]:
    params = [n for n in names if n.rsplit(".", 1)[-1] not in STATS]
    stats = [n for n in names if n.rsplit(".", 1)[-1] in STATS]
    return {"parameters": params, "BatchNorm statistics": stats}


def _floor(base: dict, other: dict, keys: list[str]) -> dict[str, float]:
    return {k: distance(other[k], base[k], NORM) for k in keys}


@dataclass
class _Phase:
    """One set of runs of the two sides: the K training steps, the optimizer alone, or its
    small-gradient step. run_t(dtype, options) and run_m(dtype) give the deltas by torch name."""

    name: str  # 'step': rows 'step k parameters' / 'step k BatchNorm statistics'; else the row's name
    run_t: Callable[[str, dict], list[dict]]
    run_m: Callable[[str], list[dict]]
    runs: dict[str, list[dict]] = field(default_factory=dict)  # 't32', 'm32', 't64', 'm64', 'floor'
    rows: list[tuple[int, str, list[str], Row]] = field(default_factory=list)  # (step index, name, tensors, row)
    scales: dict[str, dict[str, float]] = field(default_factory=dict)  # row -> its tensors' scale

    def row_name(self, k: int, group: str) -> str:
        return f"step {k + 1} {group}" if self.name == "step" else self.name.format(k=k + 1)


def prove(model, block, mapping: dict, setting: dict, shape, steps: int, semantics: str,
          seed: int = 0, heads: dict | None = None, graph: bool = False, progress=None) -> Proof:
    """The proof of the written port `model` ((module, net): model.py and its load()) against the
    Gluon `block` (its own parameters loaded), through mapping.json's content `mapping`, under
    `semantics` with the trainer `setting` for `steps` steps. Both models end as they started.
    progress(line): told as each part of the proof starts (a large model's proof takes minutes)."""
    t0 = time.perf_counter()
    say = progress or (lambda line: None)
    say("proof: the weights, every layer in train and eval mode, the gradients (float32, float64, the floor)")
    T, M = port_backend("torch"), port_backend("mxnet")
    to_gluon = dict(mapping["tensors"])
    ignore = {"mxnet": list(mapping.get("ignore", {}).get("mxnet", []))}  # constants the forward never reads
    specs = input_specs(shape)
    x = draw_batch(specs, np.random.default_rng(seed))
    notes, finals = [], []
    if graph:  # the block's train-mode forward is another graph: its inference graph, its own parameters
        block = M.graph_block(block, len(specs))
        notes.append("graph: the Gluon block's train-mode forward is another graph (a detector's returns its raw "
                     "predictions or losses); the proof runs its inference graph, the block's symbol holding the "
                     "block's own parameters, in both modes")
    if heads:  # a detector: its final outputs in eval mode, then every row on the raw heads before the NMS / top-k
        full = compare_models(model[1], block, x, weights="own", loss="projection", steps=0,
                              mapping={"tensors": to_gluon, "ignore": _held(M, block, ignore)}, seed=seed)
        release_memory()
        after = f"forward eval, final outputs (after {', '.join(heads['ops'])})"
        finals = [dataclasses.replace(r, check=after) for r in full.checks if r.check == "forward eval"]
        model, block = T.heads_model(model), M.graph_block(block, len(specs), heads["heads"])
        tied = _ties(T.outputs(model, x, "float32", "eval"))
        if finals and finals[0].verdict == DIFFER and tied:
            finals[0] = dataclasses.replace(
                finals[0], verdict=CANNOT_TELL,
                reason=f"the raw heads hold exactly tied scores ({tied}): MXNet's CPU {', '.join(heads['ops'])} "
                       "orders ties of more than 16 entries its own way (std::sort), the port by index, so the "
                       "selected rows differ where the scores do not",
                suggestion="--params with trained weights (random weights saturate the scores at 1.0) or another "
                           "input")
        notes.append(f"raw heads: the forward, gradient and step rows compare model.raw_heads(x) (the "
                     f"{heads['count']} tensors before {', '.join(heads['ops'])}) with the Gluon graph's same "
                     f"tensors; '{after}' compares what forward(x) returns")
    report = compare_models(model[1], block, x, weights="own", loss="projection", steps=0,
                            mapping={"tensors": to_gluon, "ignore": _held(M, block, ignore)}, seed=seed)
    release_memory()
    rows = list(report.checks)
    at = next((k + 1 for k, r in enumerate(rows) if r.check == "forward eval"), len(rows))
    proof = Proof(rows[:at] + finals + rows[at:], tensors=len(to_gluon), layers=len(mapping.get("layers", [])),
                  summary=report.summary(),
                  notes=notes + [n for n in report.notes if n.startswith(("dropout", "conditioning", "layers"))])
    t_start, m_start = T.get_state(model), M.get_state(block)
    if proof.row("weights").verdict == DIFFER:
        proof.notes.append("the steps start from each side's own weights, which differ: see the weights row")
    if not steps:
        proof.coverage = {h: [] for h in OPTIMIZER_HPS[setting["name"]]}
        proof.rows.append(Row(COVERAGE, CANNOT_TELL, reason="--steps 0: the optimizer is not proved",
                              suggestion="--steps 2 or more"))
        proof.seconds = time.perf_counter() - t0
        return proof
    proof.rows.append(_constants(T, model, x, proof))
    start_gap = _start_gap(proof)
    data = make_data(shape, report.output_shapes, steps, seed)
    batch = data["batch_size"]
    m_opts = {"setting": setting, "semantics": semantics, "start": m_start}
    gluon_names = {t: g for t, g in to_gluon.items()}
    sliced = [{**data, "batches": data["batches"][k:k + 1], "projections": data["projections"][k:k + 1]}
              for k in range(steps)]
    grads = [T.gradients(model, d, "float64") for d in sliced]  # the port's, at the start: fed to both
    release_memory()
    to_m = lambda g: {to_gluon[n]: v for n, v in g.items() if n in to_gluon}
    phases = [
        _Phase("step", lambda dt, o: _deltas(T.train_updates(model, data, dt, {"start": t_start} | o)),
               lambda dt: _deltas(M.train_updates(block, data, dt, m_opts), gluon_names)),
        _Phase("optimizer step {k}",
               lambda dt, o: _deltas(T.optimizer_updates(model, grads, batch, dt, {"start": t_start} | o)),
               lambda dt: _deltas(M.optimizer_updates(block, [to_m(g) for g in grads], batch, dt, m_opts),
                                  gluon_names))]
    values = np.concatenate([np.abs(g).ravel() for g in grads[0].values()]) if grads[0] else np.zeros(1)
    typical = float(np.median(values[values > 0])) if (values > 0).any() else 1.0
    weights = np.concatenate([np.abs(np.asarray(t_start[n])).ravel() for n in grads[0] if n in t_start] or [np.ones(1)])
    probes = [(WD_PROBE, SEE * float(np.median(weights[weights > 0]) if (weights > 0).any() else 1.0) / typical)]
    if setting["name"] == "adam":
        probes.append((PROBE, float(setting["eps"]) / typical))
    for name, scale in probes:  # one step of the optimizer with the gradients scaled down (see the docstring)
        phases.append(_Phase(name, lambda dt, o, s=scale: _deltas(T.optimizer_updates(
            model, grads[:1], batch, dt, {"start": t_start, "scale": s} | o)), lambda dt, s=scale: _deltas(
            M.optimizer_updates(block, [to_m(grads[0])], batch, dt, m_opts | {"scale": s}), gluon_names)))
    for ph in phases:
        say(f"proof: {'the training steps' if ph.name == 'step' else ph.name.format(k='1..K')} "
            f"({time.perf_counter() - t0:.0f} s so far)")
        # the float64 runs first, the port's floor first of all: each run's own peak (a float64 training step
        # is the largest) then comes over the fewest held results of the others
        ph.runs["floor"] = ph.run_t("float64", {"round": True} | ({"jitter": start_gap} if ph.name == "step" else {}))
        release_memory()
        for dtype in ("float64", "float32"):
            ph.runs["t" + dtype[-2:]] = ph.run_t(dtype, {})
            release_memory()
            try:
                ph.runs["m" + dtype[-2:]] = ph.run_m(dtype)
            except Exception as e:  # a graph MXNet cannot run in float64 (an op with a float32 dtype of its own)
                if dtype == "float32":
                    raise
                ph.runs["m64"] = None
                note = (f"fp64: the Gluon side does not run in float64 ({type(e).__name__}: "
                        f"{str(e).strip().splitlines()[0][:160] if str(e).strip() else ''}): its step rows are "
                        "judged on the fp32 tolerance and the port's own fp64 noise alone")
                if note not in proof.notes:
                    proof.notes.append(note)
            release_memory()
        _judge_phase(ph, proof, report.pairs)
        _coverage(proof, ph, setting)  # now, so that only one phase's float64 runs are held at a time
    _coverage_row(proof)
    T.set_state(model, t_start)
    M.set_state(block, m_start)
    proof.seconds = time.perf_counter() - t0
    return proof


def _held(M, block, ignore: dict[str, list[str]]) -> dict[str, list[str]]:
    """The unused constants that this block holds: the block's graph (a detector's inference graph,
    its raw heads) holds only what its forward reads, which leaves out Faster R-CNN's box encoder's
    means and stds."""
    if not ignore["mxnet"]:
        return ignore
    state = M.get_state(block)
    return {"mxnet": [n for n in ignore["mxnet"] if n in state]}


def _ties(heads: list[np.ndarray]) -> str:
    """Exactly equal values among the largest of a head (per sample): what a top-k or an NMS orders
    by, where MXNet and the port order ties differently. '' when none."""
    for k, h in enumerate(heads):
        rows = np.asarray(h).reshape(np.shape(h)[0], -1) if np.ndim(h) > 1 else np.asarray(h).reshape(1, -1)
        for row in rows:
            top = np.sort(row)[::-1][: max(50, row.size // 100)]
            same = top.size - np.unique(top).size
            if same:
                return f"head {k}: {same + 1} of its {top.size} largest values equal, e.g. {top[0]:.6g}"
    return ""


ENGAGE = 0.1  # the change of a layer constant that asks whether the output depends on it at all


def _constants(T, model, x: np.ndarray, proof: Proof) -> Row:
    """Which of the port's layer constants (a LeakyReLU's slope, a ReLU6's clip, a BatchNorm's eps)
    this input exercises: each group changed by ENGAGE (10%, or 0.1 from zero; float64, both
    modes); one the output does not respond to beyond the forward rows' allowance (a clip at 6
    that no value reaches) is named, and the row cannot tell: the forward rows could not have
    seen it ported wrong."""
    allow = {}
    for mode in ("train", "eval"):
        row = proof.row(f"forward {mode}")
        allow[mode] = max((t.allow64 for t in row.tensors if t.name.startswith("output") and t.allow64 == t.allow64),
                          default=FP64_MIN)
    base = {mode: T.outputs(model, x, "float64", mode) for mode in allow}
    unseen = []
    groups = T.constant_groups(model)
    for name, count in groups.items():
        seen = False
        for mode in allow:
            try:
                changed = T.outputs(model, x, "float64", mode, (name, ENGAGE))
            except Exception:  # a scale factor that changes a shape downstream: the output depends on it
                seen = True
                break
            if any(len(a) != len(b) or np.shape(a) != np.shape(b) or distance(a, b, "max") / max(size(b), 1e-30)
                   > allow[mode] for a, b in zip(changed, base[mode])):
                seen = True
                break
        if not seen:
            unseen.append(f"{name} ({count} layer{'s' if count > 1 else ''})")
    proof.constants = {"groups": groups, "unseen": unseen}
    if unseen:
        return Row(CONSTANTS, CANNOT_TELL, reason=f"the output does not respond to a change of {ENGAGE:g} in "
                   f"{', '.join(unseen)} at this input (a clip or slope that no value reaches)",
                   suggestion="--params with trained weights (random weights keep activations small), or an "
                              "input that reaches those ranges")
    return Row(CONSTANTS, AGREE, worst=f"{len(groups)} groups of constants, each seen by the output")


def _start_gap(proof: Proof) -> float:
    """The fp64 gap the two sides already show before any step (the forward and gradient rows that
    agree), where it is beyond what fp64 rounding and MXNet's float32 constants make (JITTER_FROM):
    a kernel of MXNet's that keeps float32 precision in float64 (BilinearResize2D's interpolation
    weights) gives a correct port such a gap, and the steps amplify it as they amplify any change.
    The training steps' floor then jitters the port's weights by as much (0: no jitter), and the
    proof's notes say so."""
    gaps = [r.fp64_gap for r in proof.rows if r.check in ("forward train", "forward eval", "gradients")
            and r.verdict == AGREE and r.fp64_gap == r.fp64_gap]
    gap = max(gaps, default=0.0)
    if gap <= JITTER_FROM:
        return 0.0
    proof.notes.append(f"floor: the two sides' fp64 forward or gradients already differ by {gap:.2g} (within "
                       f"{FP64_MIN:g}: an MXNet kernel that keeps float32 precision in float64); the training "
                       "steps' floor jitters the port's weights by as much, so the rows allow what the steps make "
                       "of that gap")
    return gap


def _judge_phase(ph: _Phase, proof: Proof, pairs) -> None:
    """Judge each step's rows; keep only what the coverage needs (the float64 deltas and each
    row's scale), so a large model's five runs of K states are not all held to the end."""
    r = ph.runs
    for k in range(len(r["t32"])):
        for group, keys in _groups(r["t32"][k]).items():
            keys = [n for n in keys if n in r["m32"][k]]
            if not keys:
                continue
            pick = lambda run, k=k, keys=keys: {n: run[k][n] for n in keys}
            tensors = judge(pick(r["t32"]), pick(r["m32"]), pick(r["t64"]), pick(r["m64"]) if r["m64"] else None,
                            _floor(r["t64"][k], r["floor"][k], keys), group=True, norm=NORM)
            row = row_of(ph.row_name(k, group), tensors, suggestion_for(pairs, "step"))
            proof.rows.append(row)
            ph.rows.append((k, row.check, keys, row))
            ph.scales[row.check] = _scale(pick(r["t32"]), True, NORM)
    ph.runs = {"t64": r["t64"]}
    release_memory()


def _coverage(proof: Proof, ph: _Phase, setting: dict) -> None:
    """Change each hyperparameter by SEE in the port (float64) and ask which of this phase's
    agreeing rows would have seen it: its response beyond a tensor's fp64 allowance. The phase's
    runs are dropped after (a large model's float64 states of K steps, per phase, add up)."""
    hps = list(OPTIMIZER_HPS[setting["name"]]) + ["rescale"]
    if ph.name == "step" and any(name.endswith("BatchNorm statistics") for _, name, _, _ in ph.rows):
        hps.append("bn-momentum")
    for h in hps:
        seen = proof.coverage.setdefault(h, [])
        if (h == "bn-momentum") != (ph.name == "step"):  # BatchNorm's in the training steps, the optimizer's
            continue                                      # own hyperparameters in its rows
        opts = ({"rescale": SEE} if h == "rescale" else {"bn_momentum": SEE} if h == "bn-momentum"
                else {"perturb": {h: (SEE, SEE)}})
        changed = ph.run_t("float64", opts)
        for k, name, keys, row in ph.rows:
            if row.verdict != AGREE:
                continue
            base, new = ph.runs["t64"][k], changed[k]
            scale = ph.scales[name]
            allow = {t.name: t.allow64 for t in row.tensors}
            if any(distance(new[n], base[n], NORM) / scale[n] > allow.get(n, NAN) for n in keys):
                seen.append(name)
        del changed
        release_memory()
    ph.runs = {}


def _coverage_row(proof: Proof) -> None:
    """The row of which hyperparameters no agreeing row could have seen (_coverage filled them in)."""
    unseen = [h for h, rows in proof.coverage.items() if not rows]
    if unseen:
        proof.rows.append(Row(COVERAGE, CANNOT_TELL, reason="no agreeing row could see a change of "
                              f"{SEE:g} in {', '.join(unseen)}",
                              suggestion="; ".join(dict.fromkeys(TELLABLE_BY[h] for h in unseen))))
    else:
        seen = ", ".join(f"{h}: {rows[0]}" for h, rows in proof.coverage.items())
        proof.rows.append(Row(COVERAGE, AGREE, worst=seen))
