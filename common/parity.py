"""Numerical parity between backends: one function per check, used by the tests and the report.

Every check runs the same spec with the same weights and inputs, drawn once in numpy, through a
reference backend (torch) and a candidate (mxnet), and compares tensor by tensor:

    max_abs  = max |candidate - reference|
    max_rel  = max_abs / max |reference|       (per tensor; for gradients, over the whole net)
    noise    = max over both backends of |fp32 result - fp64 result| / same scale: what fp32
               rounding alone does to either framework

A tensor agrees when max_rel <= rtol (1e-5 by default), or when max_rel <= NOISE_FACTOR * noise:
the two frameworks then differ no more than fp32 arithmetic makes either differ from exact
arithmetic. The second clause matters where a gradient is a cancellation at the fp32 noise floor
(gan-gaussian's D biases at init) and Adam's first step, which normalises by |g|, turns that noise
into lr-sized moves, and where one framework's fp32 kernels are simply less accurate (MXNet's
BatchNorm backward sums in fp32: its own fp32-vs-fp64 error reaches 1e-3 on some dcgan inputs).
The fp64 run of both backends shows that such tensors agree once rounding is gone.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from . import sensitivity, shapes
from . import weights as W
from .backend import Backend, build_nets, get_backend
from .differences import SEMANTIC_KEYS, check_naive
from .inputs import gan_batch
from .spec.model import GANSpec
from .verdicts import AGREE, CANNOT_TELL, DIFFER, NOISE_FACTOR, RTOL, TensorDiff, judge

REFERENCE = "torch"  # the backend every check compares the other with
LOCKSTEP_RTOL = 1e-3  # relative loss difference in the lockstep run
FP64_FLOOR_MIN = 1e-9  # the lockstep's: a loss gap below this counts as within any fp64 floor
LOSSES = ("loss_D", "loss_G")


@dataclass
class Check:
    spec: str
    check: str
    reference: str
    candidate: str
    tensors: list[TensorDiff] = field(default_factory=list)
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)
    semantics: str = "torch"  # whose numbers the spec follows (and what the candidate did natively)

    @property
    def ok(self) -> bool:
        return all(t.ok for t in self.tensors)

    @property
    def verdict(self) -> str:
        """common/verdicts.py's word for this check: a lockstep run within the reference's own
        sensitivity floor cannot tell a port difference from the run's own chaos."""
        v = self.extra.get("verdict")
        if v is not None:
            return CANNOT_TELL if v == "within the sensitivity floor" else v
        return AGREE if self.ok else DIFFER

    @property
    def max_rel(self) -> float:
        return max((t.max_rel for t in self.tensors), default=0.0)

    @property
    def first_divergent(self) -> str | None:
        """The first tensor, in spec order (layer by layer), that is out of tolerance."""
        return next((t.name for t in self.tensors if not t.ok), None)

    def to_dict(self) -> dict:
        return asdict(self) | {"ok": self.ok, "verdict": self.verdict, "max_rel": self.max_rel,
                               "first_divergent": self.first_divergent}


def compare(ref: dict[str, np.ndarray], cand: dict[str, np.ndarray], ref64: dict | None = None,
            cand64: dict | None = None, group: bool = False, rtol: float = RTOL) -> list[TensorDiff]:
    """The parity suite's per-tensor rule (common/verdicts.py judge, two-way): agree within rtol
    or NOISE_FACTOR x the fp32 noise; the fp64 gap is reported beside it."""
    return judge(ref, cand, ref64, cand64, group=group, rtol=rtol, three_way=False)


# -- what one backend computes ------------------------------------------------------------------


@dataclass
class Inputs:
    weights: dict[str, np.ndarray]
    real: list[np.ndarray]  # one batch per step
    noise: list[np.ndarray]


def make_inputs(spec: GANSpec, batch: int, steps: int = 1, seed: int = 0) -> Inputs:
    """Weights from the spec's init scheme and `steps` batches of data and noise, all numpy."""
    rng = np.random.default_rng(seed + 1)
    real = [gan_batch(spec, batch, rng) for _ in range(steps)]
    noise = [rng.standard_normal((batch,) + tuple(spec.latent_shape)).astype(np.float32) for _ in range(steps)]
    return Inputs(W.init_arrays(spec, seed), real, noise)


class Runner:
    """One backend, one spec, one dtype: fresh nets loaded with the same weights for every check."""

    def __init__(self, backend: Backend, spec: GANSpec, inputs: Inputs, dtype: str = "float32",
                 naive=frozenset(), device: str = "cpu"):
        self.be, self.spec, self.inputs, self.dtype, self.naive = backend, spec, inputs, dtype, check_naive(naive)
        nets = build_nets(backend, spec, self.naive, device, dtype)
        self.G, self.D = nets["G"], nets["D"]
        if "init" in self.naive:  # difference 'init', ported naively: the framework's own first weights
            self.inputs = replace(inputs, weights=self.state())

    def reset(self):
        w = self.inputs.weights
        self.be.set_arrays(self.G, self.spec.G, W.split(w, "G"))
        self.be.set_arrays(self.D, self.spec.D, W.split(w, "D"))
        return self.be.GANTrainer(self.spec, self.G, self.D, self.naive)

    def _cast(self, x: np.ndarray) -> np.ndarray:
        return x.astype(self.dtype)

    def layer_outputs(self, net: str, mode: str) -> dict[str, np.ndarray]:
        self.reset()
        x = self.inputs.noise[0] if net == "G" else self.inputs.real[0]
        outs = self.be.layer_outputs(getattr(self, net), self._cast(x), mode, self.naive)
        return {f"{net}.{i} output": o for i, o in enumerate(outs)}

    def grads(self) -> dict[str, np.ndarray]:
        tr = self.reset()
        real = self.be.to_device(self.D, self._cast(self.inputs.real[0]))
        noise = self.be.to_device(self.G, self._cast(self.inputs.noise[0]))
        fake, _ = tr.d_backward(real, noise)
        gd = self.be.get_grads(self.D, self.spec.D, tr.grad_scale)
        tr.g_backward(fake, noise)
        return gd | self.be.get_grads(self.G, self.spec.G, tr.grad_scale)

    def state(self) -> dict[str, np.ndarray]:
        return self.be.get_arrays(self.G, self.spec.G) | self.be.get_arrays(self.D, self.spec.D)

    def trajectory(self, steps: int) -> list[tuple[dict[str, np.ndarray], np.ndarray]]:
        """`steps` full D+G steps: the state and the (loss_D, loss_G) after each."""
        tr, out = self.reset(), []
        for real, noise in zip(self.inputs.real[:steps], self.inputs.noise[:steps]):
            m = tr.step(self.be.to_device(self.D, self._cast(real)), self.be.to_device(self.G, self._cast(noise)))
            out.append((self.state(), np.array([self.be.scalar(m[k]) for k in LOSSES])))
        return out

    def run_steps(self, steps: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """`steps` full D+G steps; returns the state after them and the (steps, 2) losses."""
        tr = self.reset()
        losses = []
        for real, noise in zip(self.inputs.real[:steps], self.inputs.noise[:steps]):
            m = tr.step(self.be.to_device(self.D, self._cast(real)), self.be.to_device(self.G, self._cast(noise)))
            losses.append([self.be.scalar(m[k]) for k in LOSSES])
        return self.state(), np.array(losses)


# -- the checks ---------------------------------------------------------------------------------


def _runners(spec, inputs, reference, candidate, naive, with_fp64, candidate_spec=None):
    ref, cand, cspec = get_backend(reference), get_backend(candidate), candidate_spec or spec
    rs = {"ref": Runner(ref, spec, inputs), "cand": Runner(cand, cspec, inputs, naive=naive)}
    if with_fp64:
        rs["ref64"] = Runner(ref, spec, inputs, "float64")
        rs["cand64"] = Runner(cand, cspec, inputs, "float64", naive=naive)
    return rs


def semantics_label(spec, naive=frozenset()) -> str:
    """'mxnet', or 'torch; candidate's own: adam-eps, bn-stats' where the candidate computes some
    semantic differences its own framework's way (a naive port of them)."""
    own = sorted(k for k in naive if k in SEMANTIC_KEYS)
    return spec.recipe.semantics.name + (f"; candidate's own: {', '.join(own)}" if own else "")


def check_all(spec: GANSpec, batch: int, steps: int = 20, seed: int = 0, reference: str = REFERENCE,
              candidate: str = "mxnet", naive=frozenset(), with_fp64: bool = True,
              candidate_spec: GANSpec | None = None) -> list[Check]:
    """Forward (train, eval), gradients, one step and a lockstep run: all four checks of a spec.
    naive: difference keys the candidate ports naively (its own framework's numbers for a semantic
    one); candidate_spec: a candidate built from another spec (a port with a mistake in it)."""
    inputs = make_inputs(spec, batch, max(steps, 1), seed)
    rs = _runners(spec, inputs, reference, candidate, naive, with_fp64, candidate_spec)
    checks, label = [], semantics_label(spec, naive)

    def run(name: str, fn, group: bool = False):
        t0 = time.perf_counter()
        res = {k: fn(r) for k, r in rs.items()}
        diffs = compare(res["ref"], res["cand"], res.get("ref64"), res.get("cand64"), group=group)
        checks.append(Check(spec.name, name, reference, candidate, diffs, time.perf_counter() - t0, semantics=label))

    for net in ("G", "D"):
        for mode in ("train", "eval"):
            run(f"forward {net} {mode}", lambda r, net=net, mode=mode: r.layer_outputs(net, mode))
    run("gradients D", lambda r: {k: v for k, v in r.grads().items() if k.startswith("D.")}, group=True)
    run("gradients G", lambda r: {k: v for k, v in r.grads().items() if k.startswith("G.")}, group=True)
    run("one step", lambda r: r.run_steps(1)[0])
    if steps > 1:
        checks.append(lockstep(rs, spec, steps, reference, candidate))
        checks[-1].semantics = label
    return checks


def floor(reference: Runner, steps: int, jitter_size: dict[str, float] | None = None) -> list[dict]:
    """The reference run's own sensitivity, step by step (common/sensitivity.py): the same backend,
    dtype and inputs, perturbed by float32 scalars and by a jitter of its initial weights, each
    compared with the unperturbed run. The jitter is `jitter_size` per tensor, or by default the
    step-1 difference that the float32 scalars make. Per step: {'losses': rel, 'tensors':
    {name: rel}} of the larger of the two perturbations, and each perturbation's loss gap."""
    base, r = reference.trajectory(steps), reference
    f32 = Runner(r.be, sensitivity.f32_scalars(r.spec), r.inputs, r.dtype, r.naive)
    perturbed = {"f32-scalars": f32.trajectory(steps)}
    if jitter_size is None:
        jitter_size = sensitivity.step1_size(perturbed["f32-scalars"][0][0], base[0][0])
    jittered = replace(r.inputs, weights=sensitivity.jitter(r.inputs.weights, jitter_size))
    perturbed["jitter"] = Runner(r.be, r.spec, jittered, r.dtype, r.naive).trajectory(steps)
    out = []
    for s, (state, losses) in enumerate(base):
        gaps = {k: (sensitivity.rel(t[s][0], state), _loss_rel(t[s][1], losses)) for k, t in perturbed.items()}
        out.append({"losses": max(g[1] for g in gaps.values()),
                    "tensors": {n: max(g[0][n] for g in gaps.values()) for n in state},
                    **{f"losses {k}": g[1] for k, g in gaps.items()}})
    return out


def _loss_rel(a: np.ndarray, b: np.ndarray) -> float:
    return float((np.abs(np.asarray(a, np.float64) - b) / np.maximum(np.abs(b), 1e-12)).max())


VERDICTS = ("agree", "within the sensitivity floor", "differ")


def lockstep(rs: dict, spec: GANSpec, steps: int, reference: str, candidate: str) -> Check:
    """`steps` steps in lockstep with shared data and noise, judged on the losses at every step,
    with one of three verdicts (extra['verdict']):

    agree      every step within LOCKSTEP_RTOL, or, as for the other checks, the fp32 gap no
               larger than NOISE_FACTOR times either backend's own fp32-vs-fp64 gap while the
               fp64 runs agree;
    within the sensitivity floor
               the gap, in fp32 and in fp64, stays within NOISE_FACTOR times the reference's own
               sensitivity floor (floor(): its scalars rounded to float32, and a jitter of its
               initial weights of the size of its own one-step error: fp32 rounding for the fp32
               runs, float32 scalars for the fp64 runs) at every step;
    differ     beyond the floor: extra names the first step and, at that step, the tensor
               furthest beyond its floor. The check fails (the CLI exits non-zero).

    The jitter is sized by the reference's own one-step error rather than by the cross-framework
    difference itself, so that a real difference cannot widen the floor it is judged against;
    for a correct port the two sizes are the same: the step-1 cross-framework difference is fp32
    rounding in fp32, and MXNet's float32 op scalars in fp64.
    """
    t0 = time.perf_counter()
    out = {k: r.trajectory(steps) for k, r in rs.items()}

    def per_step(a: str, b: str) -> np.ndarray | None:
        if a not in out or b not in out:
            return None
        return np.array([_loss_rel(x[1], y[1]) for x, y in zip(out[a], out[b])])

    def first_over(x: np.ndarray | None, limit=LOCKSTEP_RTOL) -> int | None:
        over = np.nonzero(x > limit)[0] if x is not None else []
        return int(over[0]) + 1 if len(over) else None

    fp32, fp64 = per_step("cand", "ref"), per_step("cand64", "ref64")
    noise_ref, noise_cand = per_step("ref", "ref64"), per_step("cand", "cand64")
    noise = np.maximum(noise_ref, noise_cand) if noise_ref is not None else None
    final = {k: v[-1][0] for k, v in out.items()}
    diffs = compare(final["ref"], final["cand"], rtol=float("inf"))  # reported; judged on the losses
    extra = {"loss_rel_per_step": fp32.tolist(), "first_step_over": first_over(fp32), "max_loss_rel": float(fp32.max()),
             "max_param_rel": max(d.max_rel for d in diffs),
             "losses_reference": [x[1].tolist() for x in out["ref"]],
             "losses_candidate": [x[1].tolist() for x in out["cand"]]}
    agree = first_over(fp32) is None or (
        fp64 is not None and fp64.max() <= RTOL and fp32.max() <= NOISE_FACTOR * noise.max())
    verdict = "agree" if agree else None
    if fp64 is not None:
        extra |= {"fp64_loss_rel_per_step": fp64.tolist(), "fp64_max_loss_rel": float(fp64.max()),
                  "reference_fp32_noise_per_step": noise_ref.tolist(),
                  "candidate_fp32_noise_per_step": noise_cand.tolist(),
                  "noise_first_step_over": first_over(noise), "noise_max": float(noise.max())}
    if verdict is None and fp64 is not None:
        verdict = _beyond_floor(rs, out, fp32, fp64, steps, extra)
    extra["verdict"] = verdict or "differ"
    for d in diffs:
        d.ok = extra["verdict"] != "differ"
    check = Check(spec.name, f"lockstep {steps} steps", reference, candidate, diffs, time.perf_counter() - t0)
    check.extra = extra
    return check


def _beyond_floor(rs: dict, out: dict, fp32: np.ndarray, fp64: np.ndarray, steps: int, extra: dict) -> str | None:
    """The floor of the reference in fp32 and in fp64 (see lockstep); 'within the sensitivity
    floor', or None (differ) with the first step and tensor beyond it written into extra."""
    size = sensitivity.step1_size(out["ref"][0][0], out["ref64"][0][0])  # the reference's own one-step rounding
    floors = {"fp32": floor(rs["ref"], steps, size), "fp64": floor(rs["ref64"], steps)}
    extra |= {f"{k}_floor_per_step": [f["losses"] for f in v] for k, v in floors.items()}
    extra |= {f"{k}_floor_{p}_per_step": [f[f"losses {p}"] for f in v]
              for k, v in floors.items() for p in sensitivity.PERTURBATIONS}
    for s in range(steps):
        for kind, gap, ref, cand in (("fp32", fp32, "ref", "cand"), ("fp64", fp64, "ref64", "cand64")):
            limit = max(NOISE_FACTOR * floors[kind][s]["losses"], FP64_FLOOR_MIN if kind == "fp64" else LOCKSTEP_RTOL)
            if gap[s] > limit:
                tensor_gap = sensitivity.rel(out[cand][s][0], out[ref][s][0])
                tensor_floor = floors[kind][s]["tensors"]
                worst = max(tensor_gap, key=lambda n: tensor_gap[n] / max(tensor_floor[n], 1e-30))
                extra["beyond_floor"] = {"step": s + 1, "dtype": kind, "loss_gap": float(gap[s]), "limit": limit,
                                         "tensor": worst, "tensor_gap": tensor_gap[worst],
                                         "tensor_floor": tensor_floor[worst]}
                return None
    return "within the sensitivity floor"


# -- shape parity -------------------------------------------------------------------------------


@dataclass
class ShapeCheck:
    spec: str
    backend: str
    ok: bool
    params_spec: dict[str, int]
    params_backend: dict[str, int]
    build_seconds: float
    mismatches: list[str]


def check_shapes(backend_name: str, spec: GANSpec, batch: int = 2, device: str = "cpu") -> ShapeCheck:
    """Build G and D natively; every layer's output shape, every tensor's shape and the parameter
    counts must equal what common.shapes infers from the spec."""
    be = get_backend(backend_name)
    t0 = time.perf_counter()
    nets = build_nets(be, spec, device=device)
    build_seconds = time.perf_counter() - t0
    mismatches, counts = [], {}
    rng = np.random.default_rng(0)
    for n, model in spec.nets.items():
        infos = shapes.infer(model)
        x = rng.standard_normal((batch,) + tuple(model.input_shape)).astype(np.float32)
        outs = be.layer_outputs(nets[n], x, "eval")
        for info, out in zip(infos, outs):
            if tuple(out.shape[1:]) != info.out_shape:
                mismatches.append(f"{info.name} output {tuple(out.shape[1:])} != spec {info.out_shape}")
        want = shapes.tensor_shapes(model)
        for k, a in be.get_arrays(nets[n], model).items():
            if tuple(a.shape) != want[k]:
                mismatches.append(f"{k} {tuple(a.shape)} != spec {want[k]}")
        counts[n] = be.param_count(nets[n])
        if counts[n] != shapes.param_count(model):
            mismatches.append(f"{n} has {counts[n]:,} parameters, spec {shapes.param_count(model):,}")
    spec_counts = {n: shapes.param_count(m) for n, m in spec.nets.items()}
    return ShapeCheck(spec.name, backend_name, not mismatches, spec_counts, counts, build_seconds, mismatches)
