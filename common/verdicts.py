"""What one judged row may claim: agree, differ, or cannot tell here. One result type and one rule,
shared by the parity suite, `ganparity compare` and the port's proof.

A row compares a candidate with a reference, tensor by tensor, in float32 and again in float64:

    gap32   max |cand - ref| / scale                  (the float32 runs)
    noise   the larger of the two sides' |fp32 - fp64| / scale: what fp32 rounding alone does
    gap64   the same comparison with both sides in float64
    floor   how far the reference drifts from itself in float64 under changes a correct port
            also makes (its constants rounded to float32, as MXNet passes every op constant;
            a half-ulp jitter of its weights), measured by the caller (common/sensitivity.py)

scale is max |ref| of the tensor, or of the whole group (gradients, optimizer updates: one tensor
can be a cancellation at the noise floor). Each instrument has an allowance:

    fp32    max(rtol, NOISE_FACTOR * noise)
    fp64    max(FLOOR_FACTOR * floor, FP64_MIN)

and the verdict of a tensor is

    differ            beyond the allowance of the sharpest instrument that ran (fp64 when it ran)
    agree             within, and an allowance that judged it is below TELL = SEE: a wrong change
                      of SEE (1e-4 of one weight tensor or hyperparameter, relative) would have
                      exceeded it (the port's proof also measures, per hyperparameter, which
                      rows would have seen it)
    cannot tell here  within, but every allowance is wider than TELL: the row could not have seen a
                      small wrong change (a chaotic run, BatchNorm over a handful of values, fp32
                      noise with no fp64 control); the row says why and what would make it tellable

A non-finite value is never a port difference: the row cannot tell, and names the tensor and the
side whose values hold the NaN or Inf (a run that diverged, a NaN weight).
numpy and the standard library only.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

AGREE, DIFFER, CANNOT_TELL = "agree", "differ", "cannot tell here"
VERDICTS = (AGREE, DIFFER, CANNOT_TELL)
EXIT_CODES = {AGREE: 0, DIFFER: 1, CANNOT_TELL: 3}  # 2 is bad input, for every command
RTOL = 1e-5  # the fixed fp32 tolerance
NOISE_FACTOR = 4.0
# The fp64 floor is one run of the reference with its constants rounded: one sample of how a row
# amplifies tiny changes. Where a few elements are ill-conditioned (Adam's update of a weight whose
# gradient is a cancellation), the cross-framework gap at that element was measured up to 9x the
# floor's on correct ports; 16x keeps the allowance far below TELL (floors run 1e-9 to 1e-7).
FLOOR_FACTOR = 16.0
# A fp64 gap below this is within any floor: some MXNet kernels keep float32 precision in float64
# (LeakyReLU's slope, 1e-8; BilinearResize2D's interpolation weights, 2.6e-7 measured against
# torch's bilinear with align_corners=True), which no rounding of constants reproduces; and floors
# of exactly 0 happen. Still 100x below TELL: a wrong change of SEE shows far above it.
FP64_MIN = 1e-6
SEE = 1e-4  # the smallest wrong change a verdict of 'agree' must have been able to see
TELL = SEE  # the widest allowance that still sees it: a change of SEE would exceed it
NAN = float("nan")


def _num(v: float) -> bool:
    return v == v  # not nan


@dataclass
class TensorDiff:
    """One tensor of one row: the gaps, the noise, the floor, the allowances and the verdict."""

    name: str
    max_abs: float
    max_rel: float  # gap32
    noise: float  # fp32-vs-fp64 error, the larger of the two sides', same scale (nan if not measured)
    noise_ref: float  # the reference's own fp32-vs-fp64 error
    noise_cand: float  # the candidate's own fp32-vs-fp64 error
    fp64_rel: float  # gap64 (nan if not run)
    ok: bool  # not 'differ'
    floor: float = NAN  # the reference's own fp64 drift (nan if not measured)
    verdict: str = ""
    allow32: float = NAN
    allow64: float = NAN
    reason: str = ""  # for 'differ' and 'cannot tell here': why, in a few words

    def __post_init__(self):
        if not self.verdict:
            self.verdict = AGREE if self.ok else DIFFER


def nonfinite(a: np.ndarray) -> str:
    """'' when every value is finite, else e.g. '3 NaN, 1 Inf of 64 values'."""
    a = np.asarray(a)
    if not np.issubdtype(a.dtype, np.floating) or np.isfinite(a).all():
        return ""
    nan, inf = int(np.isnan(a).sum()), int(np.isinf(a).sum())
    parts = ([f"{nan} NaN"] if nan else []) + ([f"{inf} Inf"] if inf else [])
    return f"{', '.join(parts)} of {a.size} values"


def verdict_of(gap32: float, noise: float, gap64: float, floor: float, rtol: float = RTOL
               ) -> tuple[str, float, float, str]:
    """The module docstring's rule for one tensor: (verdict, fp32 allowance, fp64 allowance, reason)."""
    allow32 = max(rtol, NOISE_FACTOR * noise) if _num(noise) else rtol
    allow64 = max(FLOOR_FACTOR * floor, FP64_MIN) if _num(floor) else FP64_MIN
    if _num(gap64):
        if gap64 > allow64:
            return DIFFER, allow32, allow64, f"fp64 gap {gap64:.2g} beyond its floor allowance {allow64:.2g}"
        if allow64 < TELL or (gap32 <= allow32 and allow32 < TELL):
            return AGREE, allow32, allow64, ""
        return CANNOT_TELL, allow32, allow64, (f"fp32 noise {noise:.2g} and fp64 floor {floor:.2g}: a wrong change "
                                               f"of {SEE:g} would not show")
    if gap32 > allow32:
        return DIFFER, allow32, NAN, f"fp32 gap {gap32:.2g} beyond its allowance {allow32:.2g} (no fp64 control)"
    if allow32 < TELL:
        return AGREE, allow32, NAN, ""
    return CANNOT_TELL, allow32, NAN, (f"fp32 noise {noise:.2g} with no fp64 control: a wrong change of {SEE:g} "
                                       "would not show")


NORMS = ("max", "rms")


def _floats(a) -> np.ndarray:
    a = np.asarray(a)
    return a if a.dtype in (np.float32, np.float64) else np.asarray(a, np.float64)


def _max_abs(a: np.ndarray) -> float:
    """max |a| without a copy (exact in any float dtype); nan or inf where a holds a non-finite value."""
    return float(max(a.max(), -a.min()))


def size(a: np.ndarray, norm: str = "max") -> float:
    """max |a| or the root mean square of a (finite values only; 0 for an empty array)."""
    a = _floats(a)
    if not a.size:
        return 0.0
    with np.errstate(over="ignore", invalid="ignore"):  # the usual case: all finite, no float64 copy of a
        flat = a.ravel()
        m = _max_abs(a) if norm == "max" else float(np.sqrt(np.einsum("i,i->", flat, flat, dtype=np.float64)
                                                           / a.size))
    if np.isfinite(m):
        return m
    a = np.asarray(a, np.float64)
    a = a[np.isfinite(a)]
    if not a.size:
        return 0.0
    with np.errstate(over="ignore"):  # a diverged run's 1e200 squares to inf: its row cannot tell anyway
        return float(np.abs(a).max()) if norm == "max" else float(np.sqrt(np.mean(a * a)))


def distance(a: np.ndarray, b: np.ndarray, norm: str = "max") -> float:
    """max |a - b|, or the root mean square of a - b. Two float32 arrays subtract in float32 (the
    difference rounded to 6e-8 of itself, and 0 exactly where a == b), anything else in float64."""
    if not np.size(a):
        return 0.0
    a, b = _floats(a), _floats(b)
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf: a non-finite row says so itself
        if norm == "max" and a.dtype == b.dtype == np.float32:
            m = _max_abs(a - b)
            if np.isfinite(m):
                return m
        return size(np.asarray(a, np.float64) - np.asarray(b, np.float64), norm)


def _scale(arrays: dict[str, np.ndarray], group: bool, norm: str = "max") -> dict[str, float]:
    """Per-tensor scale (its size), or one scale for the whole group (the largest tensor's, for
    'max'; the root mean square over every value of the group, for 'rms')."""
    per = {k: size(v, norm) for k, v in arrays.items()}
    if group and norm == "max":
        per = dict.fromkeys(per, max(per.values(), default=0.0))
    elif group:
        total = sum(float(np.size(v)) for v in arrays.values())
        mean_sq = sum(per[k] ** 2 * float(np.size(v)) for k, v in arrays.items()) / max(total, 1.0)
        per = dict.fromkeys(per, float(np.sqrt(mean_sq)))
    return {k: max(s, 1e-30) for k, s in per.items()}


def _rel(a: np.ndarray, b: np.ndarray, scale: float, norm: str = "max") -> float:
    return distance(a, b, norm) / scale


def from_distances(name: str, scale: float, gap32: float, noise_ref: float = NAN, noise_cand: float = NAN,
                   gap64: float = NAN, floor: float = NAN, rtol: float = RTOL, bad: str = "") -> TensorDiff:
    """One tensor's verdict from distances already measured (absolute, in the same norm): what a
    comparison that streams its runs layer by layer keeps instead of the arrays. bad: a
    non-finite value found, in words ('the reference's values hold 3 NaN of 64 values')."""
    if bad:
        return TensorDiff(name, NAN, NAN, NAN, NAN, NAN, NAN, True, verdict=CANNOT_TELL, reason=f"non-finite: {bad}")
    s = max(scale, 1e-30)
    noise_ref, noise_cand, g64, fl = noise_ref / s, noise_cand / s, gap64 / s, floor / s
    noise = max(noise_ref, noise_cand) if _num(noise_cand) else noise_ref
    verdict, a32, a64, reason = verdict_of(gap32 / s, noise, g64, fl, rtol)
    return TensorDiff(name, gap32, gap32 / s, noise, noise_ref, noise_cand, g64, verdict != DIFFER, fl, verdict,
                      a32, a64, reason)


def judge(ref: dict[str, np.ndarray], cand: dict[str, np.ndarray], ref64: dict | None = None,
          cand64: dict | None = None, floor: dict[str, float] | None = None, group: bool = False,
          rtol: float = RTOL, three_way: bool = True, norm: str = "max") -> list[TensorDiff]:
    """Every tensor of `ref` against `cand` (same names and shapes), with the fp64 control and the
    reference's fp64 floor where given (floor: the absolute drift per tensor, measured with the
    same norm; it is put on the tensor's scale here, like the gaps). norm 'max' compares the
    largest element; 'rms' the root mean square, for a row where a few ill-conditioned elements
    would decide the maximum (an optimizer's update: a wrong hyperparameter moves every element,
    a gradient that is a cancellation moves one). three_way=False keeps the parity suite's two-way fp32 rule
    (agree when within rtol or NOISE_FACTOR x noise) for callers that measure no floor."""
    scale = _scale(ref, group, norm)
    out = []
    for k, r in ref.items():
        c, s = cand[k], scale[k]
        bad = {who: nonfinite(a) for who, a in (("reference", r), ("candidate", c))}
        if any(bad.values()):  # named, never a difference of the port: nothing can be told here
            what = "; ".join(f"the {who}'s values hold {v}" for who, v in bad.items() if v)
            out.append(TensorDiff(k, NAN, NAN, NAN, NAN, NAN, NAN, True, verdict=CANNOT_TELL,
                                  reason=f"non-finite: {what}"))
            continue
        max_abs = distance(c, r, norm)
        gap32 = max_abs / s
        noise_ref = noise_cand = gap64 = NAN
        if ref64 is not None and k in ref64:
            noise_ref = _rel(r, ref64[k], s, norm)
        if ref64 is not None and cand64 is not None and k in ref64 and k in cand64:
            gap64 = _rel(cand64[k], ref64[k], s, norm)
            noise_cand = _rel(c, cand64[k], s, norm)
        noise = max(noise_ref, noise_cand) if _num(noise_cand) else noise_ref
        fl = (floor or {}).get(k, NAN) / s
        if three_way:
            verdict, a32, a64, reason = verdict_of(gap32, noise, gap64, fl, rtol)
        else:
            a32 = max(rtol, NOISE_FACTOR * noise) if _num(noise) else rtol
            verdict, a64, reason = (AGREE if gap32 <= a32 else DIFFER), NAN, ""
            reason = "" if verdict == AGREE else f"fp32 gap {gap32:.2g} beyond its allowance {a32:.2g}"
        out.append(TensorDiff(k, max_abs, gap32, noise, noise_ref, noise_cand, gap64, verdict != DIFFER,
                              fl, verdict, a32, a64, reason))
    return out


def combine(verdicts) -> str:
    """One verdict of several: differ if any differs, else cannot tell if any cannot, else agree."""
    verdicts = list(verdicts)
    if DIFFER in verdicts:
        return DIFFER
    return CANNOT_TELL if CANNOT_TELL in verdicts else AGREE


@dataclass
class Row:
    """One judged row (a check): its verdict, the worst tensor's numbers, and why."""

    check: str
    verdict: str = AGREE
    max_rel: float = 0.0  # the largest fp32 gap
    noise: float = NAN
    fp64_gap: float = NAN
    floor: float = NAN
    worst: str = ""  # the tensor that decided the verdict
    reason: str = ""
    suggestion: str = ""  # for 'cannot tell here': what would make the row tellable
    tensors: list[TensorDiff] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Not 'differ' (a 'cannot tell here' row is not a failure of the port, and not a pass)."""
        return self.verdict != DIFFER

    @property
    def agrees(self) -> bool:
        return self.verdict == AGREE

    @property
    def first_divergent(self) -> TensorDiff | None:
        return next((t for t in self.tensors if t.verdict == DIFFER), None)

    def to_dict(self, tensors: bool = False) -> dict:
        d = asdict(self)
        if not tensors:
            d.pop("tensors")
        return d

    def line(self, width: int = 44) -> str:
        extra = f" ({self.worst})" if self.worst else ""
        why = f": {self.reason}" if self.reason and self.verdict != AGREE else ""
        return f"{self.check:<{width}} {self.verdict:<17} max rel err {self.max_rel:.3g}{extra}{why}"


def row_of(check: str, tensors: list[TensorDiff], suggestion: str = "") -> Row:
    """Aggregate a row's tensors: the verdict of combine(), the tensor that decided it."""
    if not tensors:
        return Row(check)
    verdict = combine(t.verdict for t in tensors)
    deciding = [t for t in tensors if t.verdict == verdict]
    key = (lambda t: t.fp64_rel / t.allow64 if _num(t.fp64_rel) and _num(t.allow64) and t.allow64 else t.max_rel)
    worst = max(deciding, key=lambda t: (key(t) if _num(key(t)) else math.inf))
    finite = [t.max_rel for t in tensors if _num(t.max_rel)]
    numbers = lambda attr: max((getattr(t, attr) for t in tensors if _num(getattr(t, attr))), default=NAN)
    return Row(check, verdict, max(finite, default=NAN), numbers("noise"), numbers("fp64_rel"), numbers("floor"),
               worst.name, worst.reason, suggestion if verdict == CANNOT_TELL else "", tensors)


def overall(rows: list[Row]) -> str:
    return combine(r.verdict for r in rows)
