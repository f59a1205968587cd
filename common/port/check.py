"""The proof of a port, measured: the compare API (forward in train and eval mode, gradients)
and K optimizer steps of the written model against the Gluon block, each judged by the parity
suite's fp32-noise rule (common/parity.py) against a float64 run of both.

BatchNorm running variances get two numbers under semantics 'torch': the raw difference (PyTorch
stores the unbiased batch variance, Gluon on CPU the biased one) and the difference once the
Gluon value is corrected by n / (n - 1) on its batch term, which must be fp32 noise. Under
semantics 'mxnet' the port itself is biased, so the raw difference is judged.
"""

from __future__ import annotations

import importlib
from dataclasses import asdict, dataclass, field

import numpy as np

from ..backend import get_backend
from ..compare import compare_models
from ..parity import compare as compare_arrays

BN_MEAN_RTOL = 1e-5


def port_backend(name: str):
    """backends/<name>/port.py, reached through get_backend (which imports the framework)."""
    return importlib.import_module(".port", get_backend(name).__package__)


@dataclass
class Row:
    check: str
    max_rel: float
    ok: bool | None  # None: measured, not judged
    worst: str = ""
    noise: float = float("nan")


@dataclass
class Proof:
    rows: list[Row] = field(default_factory=list)
    tensors: int = 0
    layers: int = 0
    summary: str = ""

    @property
    def ok(self) -> bool:
        return all(r.ok is not False for r in self.rows)

    def row(self, check: str) -> Row:
        return next(r for r in self.rows if r.check == check)

    def to_dict(self) -> dict:
        return {"ok": self.ok, "tensors": self.tensors, "layers": self.layers,
                "rows": [asdict(r) for r in self.rows]}

    def failures(self) -> str:
        return "; ".join(f"{r.check}: max rel err {r.max_rel:.3g} ({r.worst})" for r in self.rows if r.ok is False)


def _row(check: str, diffs, judged: bool = True) -> Row:
    if not diffs:
        return Row(check, 0.0, True if judged else None)
    worst = max(diffs, key=lambda d: d.max_rel)
    ok = all(d.ok for d in diffs) if judged else None
    noise = max((d.noise for d in diffs if d.noise == d.noise), default=float("nan"))
    return Row(check, worst.max_rel, ok, worst.name, noise)


def _corrected(states: list[dict], bn: dict[str, tuple[float, int]]) -> list[dict]:
    """Gluon's running variances as PyTorch would hold them: its own update, with its own
    momentum m, of the unbiased batch variance: r'_k = m r'_(k-1) + (r_k - m r_(k-1)) n / (n - 1)."""
    out, prev, fixed_prev = [states[0]], states[0], dict(states[0])
    for state in states[1:]:
        fixed = dict(state)
        for name, (m, n) in bn.items():
            m = float(np.float32(m))
            fixed[name] = m * fixed_prev[name] + (state[name] - m * prev[name]) * (n / (n - 1))
        out.append(fixed)
        prev, fixed_prev = state, fixed
    return out


def prove(model, block, shape: tuple[int, ...], port, setting: dict, steps: int, semantics: str,
          seed: int = 0) -> Proof:
    """Everything PORT.md and test_port.py report: `model` the written torch module (weights
    loaded), `block` the Gluon source, `port` the emit.Port (its tensor map and BatchNorm
    layers). Both models end holding the port's initial weights."""
    T, M = port_backend("torch"), port_backend("mxnet")
    layers = {layer.attr: layer.path for layer in port.layers if layer.tensors}
    report = compare_models(model, block, shape, steps=0, mapping={"layers": layers}, weights="torch", seed=seed)
    proof = Proof(tensors=len(port.tensor_map), layers=len(port.layers), summary=report.summary())
    for c in report.checks:
        proof.rows.append(Row(c.name, c.max_rel, c.ok, (c.first_divergent or max(
            c.tensors, key=lambda t: t.max_rel, default=None) or Row("", 0, None)).name if c.tensors else ""))
    if not steps:
        return proof
    x = np.random.default_rng(seed + 1).standard_normal(shape).astype(np.float32)
    start_t = T.train_states(model, x, 0, setting)[0]
    to_gluon = port.tensor_map
    start_m = {to_gluon[k]: v for k, v in start_t.items() if k in to_gluon}
    runs = {}
    for dtype in ("float32", "float64"):
        st = T.train_states(model, x, steps, setting, dtype, start_t)
        sm = M.train_states(block, x, steps, setting, dtype, start_m)
        sm = [{t: s[g] for t, g in to_gluon.items()} for s in sm]
        st = [{k: s[k] for k in to_gluon} for s in st]
        runs[dtype] = (st, sm)
    T.train_states(model, x, 0, setting, "float32", start_t)
    M.train_states(block, x, 0, setting, "float32", start_m)
    bn = {f"{layer.attr}.running_var": (layer.momentum, layer.count) for layer in port.layers
          if layer.count > 1 and f"{layer.attr}.running_var" in port.tensor_map}
    means = [k for k in to_gluon if k.endswith("running_mean")]
    variances = set(bn)
    (t32, m32), (t64, m64) = runs["float32"], runs["float64"]
    if semantics == "torch":
        fixed32, fixed64 = _corrected(m32, bn), _corrected(m64, bn)
    def pick(d, names):
        return {n: d[n] for n in names}

    for k in range(1, steps + 1):
        params = [n for n in to_gluon if not n.endswith(("running_mean", "running_var"))]
        diffs = compare_arrays(pick(t32[k], params), pick(m32[k], params), pick(t64[k], params), pick(m64[k], params))
        judged = semantics == "mxnet" or setting["name"] == "sgd"
        proof.rows.append(_row(f"step {k} parameters", diffs, judged))
        if means:
            d = compare_arrays(pick(t32[k], means), pick(m32[k], means), pick(t64[k], means), pick(m64[k], means))
            proof.rows.append(_row(f"step {k} BN running means", d, k == 1 or judged))
        if variances:
            d = compare_arrays(pick(t32[k], variances), pick(m32[k], variances), pick(t64[k], variances),
                               pick(m64[k], variances))
            proof.rows.append(_row(f"step {k} BN running vars", d, semantics == "mxnet" and judged))
            if semantics == "torch":
                d = compare_arrays(pick(t32[k], variances), {n: fixed32[k][n] for n in variances},
                                   pick(t64[k], variances), {n: fixed64[k][n] for n in variances})
                proof.rows.append(_row(f"step {k} BN running vars, Gluon's corrected by n/(n-1)", d,
                                       k == 1 or judged))
    return proof
