"""Step-cost harness: what one full GAN training step (GANTrainer.step: D step + G step, the
spec's recipe) costs per backend x device x batch size x variant, with the settings beside it.

Timing is kept apart from training (nanoGPT's bench.py): the step is the backends' own, fed
device-resident inputs made once in numpy. Per row:
- warm-up steps first, timed and reported apart (they include torch.compile / autotune / graph
  capture / MXNet's hybridize trace);
- then `rounds` rounds of `steps_per_round` steps each, the device synced (backend.sync:
  torch.cuda.synchronize, mx.nd.waitall, which MXNet needs even on CPU) only before and after a
  round; the step returns device scalars and nothing reads them inside a round;
- median, p10, p90 of ms/step over rounds, img/s, FLOPs per step from the spec (common.flops),
  achieved TFLOP/s and the fraction of a known device peak, peak memory, a D/G phase split
  (extra rounds with a sync between phases; not for a captured CUDA graph);
- a parity check of the variant at its precision's tolerance (see check_variant).

Variants are named; one that cannot run on the device is a row with status 'skipped' and the
reason, never a number. Nothing here imports torch or mxnet at import time.
"""

from __future__ import annotations

import json
import math
import os
import platform
import resource
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from common import flops, parity
from common import weights as W
from common.backend import BACKENDS, available, get_backend
from common.errors import GanparityError, choose
from common.registry import CLASSIFIER_REGISTRY, REGISTRY, get_classifier, get_spec
from common.spec.layers import BUFFER_NAMES
from common.table import md_table

# -- variants -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    name: str
    backend: str
    options: frozenset[str] = frozenset()  # GANTrainer(..., options=...)
    precision: str = "fp32"  # fp32 | tf32 | bf16: which tolerance the parity check uses
    cuda_only: bool = False
    flags: dict = field(default_factory=dict, compare=False)  # torch.backends flags set for the row
    cuda_graph: bool = False
    note: str = ""


_TF32 = {"cudnn.benchmark": True, "cudnn.allow_tf32": True, "cuda.matmul.allow_tf32": True}
_HYBRID_NOTE = ("BatchNorm running stats not updated: the forward hook that moves them the PyTorch way "
                "does not fire inside a hybridized graph (parity compares training outputs and parameters only)")

VARIANTS: dict[str, dict[str, Variant]] = {
    "torch": {v.name: v for v in (
        Variant("seed", "torch", note="eager fp32, default settings: the backend's step as is"),
        Variant("channels_last", "torch", frozenset({"channels_last"})),
        Variant("bf16", "torch", frozenset({"bf16"}), "bf16", note="torch.autocast(bfloat16) around G and D"),
        Variant("fused-adam", "torch", frozenset({"fused-adam"}), note="torch.optim.Adam(fused=True)"),
        Variant("foreach-adam", "torch", frozenset({"foreach-adam"}), note="torch.optim.Adam(foreach=True)"),
        Variant("compile", "torch", frozenset({"compile"}), note="torch.compile(G), torch.compile(D)"),
        Variant("tuned", "torch", frozenset({"channels_last", "fused-adam", "compile"}),
                note="channels_last + fused Adam + torch.compile, fp32"),
        Variant("cudnn-benchmark+tf32", "torch", precision="tf32", cuda_only=True, flags=_TF32,
                note="cudnn.benchmark and TF32 for matmul and cuDNN"),
        Variant("tuned-cuda", "torch", frozenset({"channels_last", "fused-adam", "compile"}), "tf32",
                cuda_only=True, flags=_TF32, note="cudnn.benchmark + TF32 + channels_last + fused Adam + compile"),
        Variant("bf16-tuned-cuda", "torch", frozenset({"channels_last", "fused-adam", "bf16"}), "bf16",
                cuda_only=True, flags=_TF32, note="cudnn.benchmark + bf16 autocast + channels_last + fused Adam"),
        Variant("cuda-graph", "torch", frozenset({"capturable-adam"}), cuda_only=True, cuda_graph=True,
                note="whole D+G step captured with torch.cuda.graph, static inputs, Adam(capturable=True)"),
    )},
    "mxnet": {v.name: v for v in (
        Variant("seed", "mxnet", note="Gluon imperative: the backend's step as is"),
        Variant("hybridize", "mxnet", frozenset({"hybridize"}),
                note="hybridize(static_alloc=True, static_shape=True); " + _HYBRID_NOTE),
    )},
}

# Tolerances of the variant parity check (relative, see check_variant).
FP32_RTOL = parity.RTOL  # or within parity.NOISE_FACTOR x the seed's own fp32-vs-fp64 error
LOW_PRECISION_RTOL = {"bf16": 5e-2, "tf32": 1e-2}  # one-step losses, relative
LOW_PRECISION_COSINE = 0.98  # cosine similarity of each net's whole gradient with the reference's

# Dense peak TFLOP/s by device-name fragment and precision (vendor datasheets, no sparsity).
PEAK_TFLOPS = {
    ("H100 PCIe", "bf16"): 756.0, ("H100 PCIe", "tf32"): 378.0, ("H100 PCIe", "fp32"): 51.0,
    ("H100", "bf16"): 989.0, ("H100", "tf32"): 494.7, ("H100", "fp32"): 66.9,  # SXM
    ("H200", "bf16"): 989.0, ("H200", "tf32"): 494.7, ("H200", "fp32"): 66.9,
    ("A100", "bf16"): 312.0, ("A100", "tf32"): 156.0, ("A100", "fp32"): 19.5,
}


def peak_tflops(device_name: str, precision: str) -> float | None:
    """The datasheet peak for a device and precision; None when unknown (every CPU)."""
    for (frag, prec), value in PEAK_TFLOPS.items():  # the more specific fragments come first
        if prec == precision and frag in device_name:
            return value
    return None


def all_variant_names() -> list[str]:
    return list(dict.fromkeys(n for table in VARIANTS.values() for n in table))


def parse_list(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def resolve_variants(names: list[str], backends: list[str]) -> list[Variant]:
    """Variant names -> Variant objects for each backend that has them; 'all' means every one.
    A name no backend knows raises GanparityError listing the valid ones."""
    for b in backends:
        choose("backend", b, BACKENDS)
    if names == ["all"]:
        return [v for b in backends for v in VARIANTS[b].values()]
    valid = ["all"] + list(dict.fromkeys(n for b in backends for n in VARIANTS[b]))
    for n in names:
        choose("variant", n, valid)
    return [VARIANTS[b][n] for b in backends for n in names if n in VARIANTS[b]]


# -- environment and metadata ---------------------------------------------------------------------


def set_threads(n: int) -> dict:
    """The same CPU thread count for both frameworks: OMP/MKL env for anything not yet imported,
    torch.set_num_threads and MXNet's MXSetNumOMPThreads for what is (importing mxnet resets
    torch's OpenMP pool to 1 thread, so this is called again after every import)."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)
    if "mxnet" in sys.modules:
        import ctypes

        sys.modules["mxnet"].base._LIB.MXSetNumOMPThreads(ctypes.c_int(n))
    return thread_info()


def thread_info() -> dict:
    info = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "MXNET_CPU_WORKER_NTHREADS")}
    info["cpu_count"] = os.cpu_count()
    if "torch" in sys.modules:
        info["torch.get_num_threads"] = sys.modules["torch"].get_num_threads()
    return info


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, timeout=10,
                              cwd=Path(__file__).resolve().parent).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def metadata(backend: str, device: str, device_name: str = "") -> dict:
    """Everything a number needs beside it: versions, device, driver/CUDA, flags, threads, date,
    commit, command."""
    meta = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "git_commit": _git("rev-parse", "HEAD"),
            "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
            "command": " ".join(shlex.quote(a) for a in sys.argv), "python": platform.python_version(),
            "platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "numpy": np.__version__, "backend": backend, "device": device, "device_name": device_name,
            "threads": thread_info(), "load_average": os.getloadavg()}  # other work on a shared machine
    try:
        meta |= get_backend(backend).versions()
    except GanparityError as e:
        meta["versions_error"] = str(e)
    if backend == "torch" and "torch" in sys.modules:
        torch = sys.modules["torch"]
        meta["flags"] = {"cudnn.benchmark": torch.backends.cudnn.benchmark,
                         "cudnn.allow_tf32": torch.backends.cudnn.allow_tf32,
                         "cuda.matmul.allow_tf32": torch.backends.cuda.matmul.allow_tf32,
                         "float32_matmul_precision": torch.get_float32_matmul_precision()}
    if device == "cuda":
        from common import gpu

        gpus = gpu.list_gpus()
        meta["driver"] = gpus[0].driver if gpus else None
        meta["gpus"] = [f"{g.name} (sm_{g.capability[0]}{g.capability[1]})" for g in gpus]
    return meta


@contextmanager
def torch_flags(flags: dict) -> Iterator[None]:
    """Set torch.backends flags ('cudnn.benchmark': True, ...) for one row, then restore them."""
    if not flags:
        yield
        return
    import torch

    def target(key):
        mod, attr = key.rsplit(".", 1)
        obj = torch.backends
        for part in mod.split("."):
            obj = getattr(obj, part)
        return obj, attr

    old = {k: getattr(*target(k)) for k in flags}
    try:
        for k, v in flags.items():
            setattr(*target(k), v)
        yield
    finally:
        for k, v in old.items():
            setattr(*target(k), v)


def _peak_memory(be, dev, device: str) -> tuple[int | None, str]:
    if device == "cuda" and be.NAME == "torch":
        import torch

        return int(torch.cuda.max_memory_allocated(dev)), "torch.cuda.max_memory_allocated (timed rounds)"
    if device == "cpu":
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "process peak RSS (whole run so far)"
    return None, "not measured"


def _reset_peak(be, dev, device: str) -> None:
    if device == "cuda" and be.NAME == "torch":
        import torch

        torch.cuda.reset_peak_memory_stats(dev)


# -- the step under test --------------------------------------------------------------------------


class _VariantRunner(parity.Runner):
    """parity.Runner whose trainer carries the variant's options (the parity checks' own runner)."""

    def __init__(self, backend, spec, inputs, options: frozenset[str], dtype="float32", device="cpu"):
        super().__init__(backend, spec, inputs, dtype, device=device)
        self.options = options

    def reset(self):
        w = self.inputs.weights
        self.be.set_arrays(self.G, self.spec.G, W.split(w, "G"))
        self.be.set_arrays(self.D, self.spec.D, W.split(w, "D"))
        return self.be.GANTrainer(self.spec, self.G, self.D, self.naive, options=self.options)


class CudaGraphStep:
    """The whole D+G step (both Adam updates included) captured once with torch.cuda.graph and
    replayed on static input tensors (PyTorch's 'whole network capture' recipe: warm up on a side
    stream, then capture). Needs Adam(capturable=True): the 'capturable-adam' option."""

    def __init__(self, trainer, real, noise, warmup: int = 3):
        import torch

        self.trainer = trainer
        self.real, self.noise = real.clone(), noise.clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(warmup):
                trainer.step(self.real, self.noise)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.out = trainer.step(self.real, self.noise)

    def reset_optimizers(self) -> None:
        """Adam state back to step 0, in place (the graph holds these tensors' addresses)."""
        for opt in (self.trainer.opt_D, self.trainer.opt_G):
            for state in opt.state.values():
                for t in state.values():
                    t.zero_()

    def __call__(self, real=None, noise=None) -> dict:
        if real is not None:
            self.real.copy_(real)
            self.noise.copy_(noise)
        self.graph.replay()
        return self.out


def _losses(metrics: dict) -> dict[str, np.ndarray]:
    return {k: np.array([parity._scalar(metrics[k])], dtype=np.float64) for k in parity.LOSSES}


def check_variant(spec, variant: Variant, device: str = "cpu", batch: int = 8) -> dict:
    """Does the variant compute the seed's step? One step on shared numpy inputs, compared with
    common.parity.compare tensor by tensor: the one-step losses, D's and G's gradients (relative
    to the net's largest gradient) and the parameters after the step.

    Reference: the same backend's seed variant; for a backend's seed, torch's seed (the parity
    suite's reference), with both fp64 controls as in `ganparity parity`.
    fp32 variants: relative FP32_RTOL, or within parity.NOISE_FACTOR x the reference's own
    fp32-vs-fp64 error (the variant is no less exact than the seed).
    bf16 / tf32 variants: LOW_PRECISION_RTOL on the one-step losses (bf16 5e-2: gan-gaussian's
    loss_G moves 3.5e-2 in bf16 at batch 8) and each net's gradient within LOW_PRECISION_COSINE
    cosine similarity of the reference's (bf16 measured 0.997 D, 0.989 G on dcgan ngf=16 at batch 8),
    no noise clause. Per-tensor gradient errors (bf16 reaches
    0.1-0.2 of the net's largest gradient on small dcgan) and the parameters after one Adam step
    are reported, not judged (Adam's first step is lr * sign(g) for small g, so a low-precision
    gradient flips individual updates).
    BatchNorm running statistics are left out for MXNet's hybridize (see _HYBRID_NOTE).
    """
    inputs = parity.make_inputs(spec, batch, 1, seed=0)
    ref_name = "torch" if (variant.name == "seed" and "torch" in available()) else variant.backend
    ref_be, be = get_backend(ref_name), get_backend(variant.backend)
    ref = parity.Runner(ref_be, spec, inputs, device=device)
    ref64 = parity.Runner(ref_be, spec, inputs, "float64", device=device)
    cand64 = parity.Runner(be, spec, inputs, "float64", device=device) if ref_name != variant.backend else None
    low = variant.precision in LOW_PRECISION_RTOL
    rtol = LOW_PRECISION_RTOL.get(variant.precision, FP32_RTOL)
    with torch_flags(variant.flags):
        cand = _VariantRunner(be, spec, inputs, variant.options, device=device)
        if variant.cuda_graph:
            c_grads, (c_state, c_losses) = None, _graph_one_step(cand, spec)
        else:
            c_grads = cand.grads()
            c_state, c_losses = cand.run_steps(1)
    r_grads = ref.grads()
    r_state, r_losses = ref.run_steps(1)
    r64_grads = None if low else ref64.grads()
    r64_state, r64_losses = (None, None) if low else ref64.run_steps(1)
    c64 = {}
    if cand64 is not None and not low:
        c64["grads"] = cand64.grads()
        c64["state"], c64["losses"] = cand64.run_steps(1)

    def lossdict(a):
        return None if a is None else {k: a[0, i:i + 1].astype(np.float64) for i, k in enumerate(parity.LOSSES)}

    skip_buffers = "hybridize" in variant.options
    keep = [k for k in r_state if not (skip_buffers and k.rsplit(".", 1)[1] in BUFFER_NAMES)]
    diffs = {"losses": parity.compare(lossdict(r_losses), lossdict(c_losses), lossdict(r64_losses),
                                      lossdict(c64.get("losses")), rtol=rtol)}
    if c_grads is not None:
        for net in ("D", "G"):
            sel = lambda d, net=net: None if d is None else {k: v for k, v in d.items() if k.startswith(net + ".")}
            diffs[f"gradients {net}"] = parity.compare(sel(r_grads), sel(c_grads), sel(r64_grads),
                                                       sel(c64.get("grads")), group=True, rtol=rtol)
    pick = lambda d: None if d is None else {k: d[k] for k in keep}
    diffs["params after step"] = parity.compare(pick(r_state), pick(c_state), pick(r64_state),
                                                pick(c64.get("state")), rtol=float("inf") if low else rtol)
    judged = {k: v for k, v in diffs.items() if not (low and k != "losses")}
    worst = {k: max((t.max_rel for t in v), default=0.0) for k, v in diffs.items()}
    ok = all(t.ok for v in judged.values() for t in v)
    failing = [f"{k}: {t.name} {t.max_rel:.1e}" for k, v in judged.items() for t in v if not t.ok]
    cosine = {}
    if c_grads is not None:
        for net in ("D", "G"):
            a, b = (np.concatenate([v.ravel() for k, v in g.items() if k.startswith(net + ".")]).astype(np.float64)
                    for g in (r_grads, c_grads))
            cosine[net] = float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-300))
            if low and cosine[net] < LOW_PRECISION_COSINE:
                ok = False
                failing.append(f"gradients {net}: cosine {cosine[net]:.4f} < {LOW_PRECISION_COSINE}")
    note = []
    if skip_buffers:
        note.append("BatchNorm running stats excluded (not updated under hybridize)")
    if low:
        note.append(f"{variant.precision}: one-step losses within {rtol:g} relative and gradient cosine >= "
                    f"{LOW_PRECISION_COSINE}; per-tensor gradient and parameter errors reported, not judged")
    return {"ok": bool(ok), "reference": f"{ref_name} seed", "precision": variant.precision,
            "rtol": rtol, "noise_factor": None if low else parity.NOISE_FACTOR, "batch": batch,
            "max_rel": worst, "grad_cosine": cosine, "failing": failing[:4], "note": "; ".join(note)}


def _graph_one_step(runner: _VariantRunner, spec) -> tuple[dict, np.ndarray]:
    """One replay of a captured step from the shared initial weights and inputs."""
    tr = runner.reset()
    real = runner.be.to_device(runner.D, runner._cast(runner.inputs.real[0]))
    noise = runner.be.to_device(runner.G, runner._cast(runner.inputs.noise[0]))
    step = CudaGraphStep(tr, real, noise)  # its warm-up steps moved the weights: put them back in place
    w = runner.inputs.weights
    runner.be.set_arrays(runner.G, spec.G, W.split(w, "G"))
    runner.be.set_arrays(runner.D, spec.D, W.split(w, "D"))
    step.reset_optimizers()
    m = step(real, noise)
    return runner.state(), np.array([[parity._scalar(m[k]) for k in parity.LOSSES]])


# -- one row --------------------------------------------------------------------------------------


def _quantiles(xs: list[float]) -> tuple[float, float, float]:
    a = np.asarray(xs) * 1000
    return float(np.median(a)), float(np.percentile(a, 10)), float(np.percentile(a, 90))


def bench_row(spec_name: str, knobs: dict, variant: Variant, device: str, batch: int, rounds: int = 10,
              warmup: int = 3, min_round_s: float = 0.05, check: bool = True, phases: bool = True) -> dict:
    """Measure one (spec, backend, variant, device, batch). Never raises for a variant that cannot
    run here: the row's status says 'skipped' / 'unavailable' / 'failed' and why."""
    spec = get_spec(spec_name, **knobs)
    row = {"spec": spec_name, "knobs": spec.params, "backend": variant.backend, "variant": variant.name,
           "options": sorted(variant.options), "precision": variant.precision, "device": device,
           "batch": batch, "status": "ok", "reason": "", "note": variant.note,
           "flops_per_step": flops.step_flops(spec, batch), "flop_passes": flops.step_passes(spec)}
    if variant.cuda_only and device != "cuda":
        return row | {"status": "skipped", "reason": f"CUDA only; device is {device}",
                      "meta": metadata(variant.backend, device)}
    try:
        be = get_backend(variant.backend)
        dev = be.resolve(device)
    except GanparityError as e:  # MXNet on Hopper / a CPU-only build, no CUDA for torch
        return row | {"status": "unavailable", "reason": str(e), "meta": metadata(variant.backend, device)}
    set_threads(int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1))
    if "compile" in variant.options:  # dynamo recompiles once more after the first steps
        warmup = max(warmup, 6)
    row["device_name"] = be.describe(dev)
    try:
        with torch_flags(variant.flags):
            row |= _measure(be, dev, spec, variant, device, batch, rounds, warmup, min_round_s, phases)
            row["meta"] = metadata(variant.backend, device, row["device_name"])
        if check:
            row["parity"] = check_variant(spec, variant, device)
            if not row["parity"]["ok"]:
                row["status"] = "parity-failed"
                row["reason"] = "; ".join(row["parity"]["failing"])
    except KeyboardInterrupt:
        raise
    except Exception as e:  # a variant that fails here (no compiler for torch.compile, ...) is a result
        row |= {"status": "failed", "reason": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]}
        row.setdefault("meta", metadata(variant.backend, device, row.get("device_name", "")))
    return row


def _measure(be, dev, spec, variant, device, batch, rounds, warmup, min_round_s, phases) -> dict:
    inputs = parity.make_inputs(spec, batch, 1, seed=0)
    G, D = be.build(spec.G, device=device), be.build(spec.D, device=device)
    be.set_arrays(G, spec.G, W.split(inputs.weights, "G"))
    be.set_arrays(D, spec.D, W.split(inputs.weights, "D"))
    t0 = time.perf_counter()
    tr = be.GANTrainer(spec, G, D, options=variant.options)
    real, noise = be.to_device(D, inputs.real[0]), be.to_device(G, inputs.noise[0])
    if variant.cuda_graph:
        step = CudaGraphStep(tr, real, noise)
        run = step
    else:
        run = lambda: tr.step(real, noise)
    sync = lambda: be.sync(dev)
    # Warm-up: the first step apart (compile, autotune, graph trace), then the rest.
    run()
    sync()
    first = time.perf_counter() - t0
    t1 = time.perf_counter()
    for _ in range(max(warmup - 1, 0)):
        run()
    sync()
    per_step = (time.perf_counter() - t1) / max(warmup - 1, 1) if warmup > 1 else first
    steps_per_round = max(1, min(1000, math.ceil(min_round_s / max(per_step, 1e-6))))
    _reset_peak(be, dev, device)
    times = []
    for _ in range(rounds):
        sync()
        t = time.perf_counter()
        for _ in range(steps_per_round):
            m = run()
        sync()  # the only host sync: after the round
        times.append((time.perf_counter() - t) / steps_per_round)
    mem, mem_kind = _peak_memory(be, dev, device)
    losses = {k: parity._scalar(m[k]) for k in parity.LOSSES}  # read after timing
    med, p10, p90 = _quantiles(times)
    out = {"warmup_steps": warmup, "first_step_s": first, "warmup_s": first + per_step * max(warmup - 1, 0),
           "rounds": rounds, "steps_per_round": steps_per_round, "median_ms": med, "p10_ms": p10, "p90_ms": p90,
           "img_per_s": batch / (med / 1000), "peak_mem_bytes": mem, "peak_mem_kind": mem_kind,
           "losses_last": losses, "finite": all(math.isfinite(v) for v in losses.values())}
    flop = flops.step_flops(spec, batch)
    out["tflops_achieved"] = flop / (med / 1000) / 1e12
    prec = variant.precision
    if device == "cuda" and prec == "fp32" and be.NAME == "torch":
        import torch

        prec = "tf32" if torch.backends.cudnn.allow_tf32 else "fp32"  # cuDNN's default is TF32 convs
    peak = peak_tflops(be.describe(dev), prec) if device == "cuda" else None
    out |= {"peak_tflops": peak, "peak_precision": prec if peak else None,
            "fraction_of_peak": out["tflops_achieved"] / peak if peak else None}
    if phases and not variant.cuda_graph:
        out["phases_ms"] = _phases(tr, real, noise, sync, max(3, rounds // 2))
    return out


def _phases(tr, real, noise, sync, rounds: int) -> dict:
    """D step (D on real, G forward, D on fake, backward, Adam) and G step (G's D pass, backward,
    Adam), each timed between syncs; separate rounds, so the headline timing has no inner sync."""
    d, g = [], []
    for _ in range(rounds):
        sync()
        t = time.perf_counter()
        fake, _ = tr.d_backward(real, noise)
        tr.opt_D.step(*tr_step_args(tr, real))
        sync()
        t2 = time.perf_counter()
        tr.g_backward(fake, noise)
        tr.opt_G.step(*tr_step_args(tr, real))
        sync()
        d.append(t2 - t)
        g.append(time.perf_counter() - t2)
    return {"D": _quantiles(d)[0], "G": _quantiles(g)[0]}


def tr_step_args(tr, real) -> tuple:
    """Trainer.step's argument: none for torch.optim, the batch size for a Gluon Trainer."""
    if hasattr(tr, "step_size"):
        return (real.shape[0] if tr.step_size == "batch" else 1,)
    return ()


def finetune_row(spec_name: str, knobs: dict, variant: Variant, device: str, batch: int, rounds: int = 5,
                 warmup: int = 2) -> dict:
    """One fine-tune step of seed 000 (frozen backbone, SGD on the head) through the backend's
    ClassifierTrainer.step, which takes a numpy batch and returns the loss as a float, as the
    seed's loop reads l.item() every batch: so each step includes the host-to-device copy of the
    batch and one host sync. Only the `seed` variant exists for this step."""
    spec = get_classifier(spec_name, **knobs)
    row = {"spec": spec_name, "knobs": {k: list(v) if isinstance(v, tuple) else v for k, v in spec.params.items()},
           "backend": variant.backend, "variant": variant.name, "options": sorted(variant.options),
           "precision": variant.precision, "device": device, "batch": batch, "status": "ok", "reason": "",
           "note": "step includes the batch upload and one host sync (the seed reads the loss every batch)",
           "flops_per_step": flops.finetune_step_flops(spec, batch)}
    if variant.name != "seed":
        return row | {"status": "skipped", "reason": "only the seed variant is implemented for the fine-tune step",
                      "meta": metadata(variant.backend, device)}
    try:
        be = get_backend(variant.backend)
        dev = be.resolve(device)
    except GanparityError as e:
        return row | {"status": "unavailable", "reason": str(e), "meta": metadata(variant.backend, device)}
    from common import pretrained
    from common.finetune import classifier_backend

    set_threads(int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1))
    cb = classifier_backend(variant.backend)
    net = cb.build_classifier(spec, device)
    cb.set_arrays(net, spec, pretrained.init_classifier(spec, 0))
    trainer = cb.ClassifierTrainer(spec, net)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, 3, spec.image_size, spec.image_size)).astype(np.float32)
    y = rng.integers(0, spec.num_classes, batch)
    row["device_name"] = be.describe(dev)
    t0 = time.perf_counter()
    for _ in range(warmup):
        trainer.step(x, y)
    be.sync(dev)
    warm = time.perf_counter() - t0
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        loss = trainer.step(x, y)
        be.sync(dev)
        times.append(time.perf_counter() - t)
    med, p10, p90 = _quantiles(times)  # ms
    mem, mem_kind = _peak_memory(be, dev, device)
    tflops = row["flops_per_step"] / (med / 1000) / 1e12
    return row | {"warmup_steps": warmup, "warmup_s": warm, "rounds": rounds, "steps_per_round": 1,
                  "median_ms": med, "p10_ms": p10, "p90_ms": p90, "img_per_s": batch / (med / 1000),
                  "peak_mem_bytes": mem, "peak_mem_kind": mem_kind, "losses_last": {"loss": loss},
                  "finite": math.isfinite(loss), "tflops_achieved": tflops, "peak_tflops": None,
                  "fraction_of_peak": None, "meta": metadata(variant.backend, device, row["device_name"])}


# -- many rows, files -----------------------------------------------------------------------------


def run_matrix(specs: list[str], knobs: dict, backends: list[str], device: str, batch_sizes: list[int],
               variant_names: list[str], rounds: int = 10, warmup: int = 3, check: bool = True,
               progress: Callable[[str], None] | None = None,
               on_row: Callable[[dict], None] | None = None) -> list[dict]:
    """Every spec x backend x variant x batch size; on_row is called after each (incremental writes)."""
    choose("device", device, ("cpu", "cuda"))
    for s in specs:
        choose("spec", s, list(REGISTRY) + list(CLASSIFIER_REGISTRY))
    if not backends:
        raise GanparityError(f"no backend installed; valid: {', '.join(BACKENDS)}")
    variants = resolve_variants(variant_names, backends)
    rows = []
    for s in specs:
        k = {} if s == "gan-gaussian" else knobs
        if s in CLASSIFIER_REGISTRY:  # its own knobs (width, image_size, num_classes, ...) only
            k = {key: v for key, v in knobs.items() if key in CLASSIFIER_REGISTRY[s].knobs()}
        for v in variants:
            for b in batch_sizes:
                if progress:
                    progress(f"bench {s} {v.backend}/{v.name} {device} batch {b} ...")
                if s in CLASSIFIER_REGISTRY:
                    row = finetune_row(s, k, v, device, b, rounds, warmup)
                else:
                    row = bench_row(s, k, v, device, b, rounds, warmup, check=check and b == batch_sizes[0])
                if progress:
                    progress(f"  {row['status']}" + (f" {row['median_ms']:.2f} ms/step" if "median_ms" in row else "")
                             + (f" ({row['reason']})" if row["reason"] else ""))
                rows.append(row)
                if on_row:
                    on_row(row)
    return rows


def _fmt_mem(row: dict) -> str:
    b = row.get("peak_mem_bytes")
    if b is None:
        return "-"
    return f"{b / 2**20:,.0f} MiB" + (" RSS" if "RSS" in row.get("peak_mem_kind", "") else "")


def markdown(rows: list[dict]) -> str:
    head = ["spec", "backend", "variant", "device", "batch", "status", "ms/step median", "p10-p90",
            "img/s", "GFLOP/step", "TFLOP/s", "% of peak", "peak mem", "phases D / G ms", "warm-up s", "parity"]
    out = []
    for r in rows:
        par = r.get("parity")
        if par is None:
            ptext = "-"
        elif par["precision"] in LOW_PRECISION_RTOL:
            cos = min(par["grad_cosine"].values(), default=float("nan"))
            ptext = (("pass" if par["ok"] else "FAIL") + f" (losses {par['max_rel']['losses']:.0e} rel, grad cosine "
                     f"{cos:.4f} vs {par['reference']})")
        else:
            ptext = ("pass" if par["ok"] else "FAIL") + (f" ({max(par['max_rel'].values()):.0e} vs "
                                                         f"{par['reference']}, rtol {par['rtol']:g})")
        ph = r.get("phases_ms")
        out.append([
            r["spec"], r["backend"], r["variant"], r.get("device_name") or r["device"], r["batch"],
            r["status"] if r["status"] == "ok" else f"{r['status']}: {r['reason']}",
            r.get("median_ms"), f"{r['p10_ms']:.2f}-{r['p90_ms']:.2f}" if "p10_ms" in r else "-",
            r.get("img_per_s"), r["flops_per_step"] / 1e9, r.get("tflops_achieved"),
            f"{100 * r['fraction_of_peak']:.1f}%" if r.get("fraction_of_peak") else "unknown peak",
            _fmt_mem(r), f"{ph['D']:.2f} / {ph['G']:.2f}" if ph else "-", r.get("warmup_s"), ptext])
    return md_table(head, out)


def describe_run(rows: list[dict], meta: dict) -> str:
    knobs = {r["spec"]: r["knobs"] for r in rows}
    lines = [f"Command: `{meta.get('command', '')}`", "",
             f"Date {meta.get('date')}, commit {meta.get('git_commit', '')[:10]}"
             + (" (uncommitted changes)" if meta.get("git_dirty") else "")
             + f", {meta.get('platform')}, {meta.get('processor')}, python {meta.get('python')}, "
             f"numpy {meta.get('numpy')}; threads {meta.get('threads')}; load average at start "
             f"{meta.get('load_average')}.", "",
             "Specs: " + "; ".join(f"{k} {v}" for k, v in knobs.items()) + ".", "",
             "ms/step: one full GANTrainer.step (D step + G step of the spec's recipe), median and p10-p90 over "
             "rounds, device synced only between rounds. GFLOP/step from common/flops.py (2 FLOPs per "
             "multiply-add; forward + backward = 3x forward per pass; the recipe's passes). Peak memory on CPU is "
             "the process's peak RSS so far (monotonic, includes the framework), not the step's own. Phases: D step "
             "and G step timed in separate rounds with a sync between them. Warm-up s: first step (compile, "
             "trace) plus the other warm-up steps. Parity: one step of the variant against the reference "
             "(see benchmarks/harness.py check_variant)."]
    notes = sorted({f"{r['backend']}/{r['variant']}: {r['note']}" for r in rows if r.get("note")})
    lines += ["", "Variants:", *[f"- {n}" for n in notes]]
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> Path | None:
    ok = [r for r in rows if "median_ms" in r]
    if not ok:
        return None
    try:
        import matplotlib
    except ImportError:  # the GPU machine may lack it: JSON and markdown still get written
        print("benchmarks: matplotlib not installed, no plot", file=sys.stderr)
        return None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    specs = list(dict.fromkeys(r["spec"] for r in ok))
    fig, axes = plt.subplots(len(specs), 2, figsize=(10, 3.6 * len(specs)), squeeze=False)
    for ax_row, s in zip(axes, specs):
        series = {}
        for r in ok:
            if r["spec"] == s:
                series.setdefault(f"{r['backend']}/{r['variant']}", []).append(r)
        for label, rs in series.items():
            rs = sorted(rs, key=lambda r: r["batch"])
            bs = [r["batch"] for r in rs]
            ax_row[0].plot(bs, [r["median_ms"] for r in rs], "o-", label=label)
            ax_row[1].plot(bs, [r["img_per_s"] for r in rs], "o-", label=label)
        for ax, what in zip(ax_row, ("ms / step (median)", "images / s")):
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("batch size")
            ax.set_ylabel(what)
            ax.set_title(f"{s} {ok[0].get('device_name', ok[0]['device'])}", fontsize=9)
        ax_row[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_results(rows: list[dict], out: Path, stem: str = "results", meta: dict | None = None,
                  with_plot: bool = True) -> list[Path]:
    """<stem>.json (rows + run metadata), <stem>.md and, unless with_plot is False, <stem>.png."""
    out.mkdir(parents=True, exist_ok=True)
    meta = meta or (rows[0].get("meta", {}) if rows else {})
    paths = [out / f"{stem}.json", out / f"{stem}.md"]
    tmp = paths[0].with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"metadata": meta, "rows": rows}, indent=1, default=str))
    tmp.replace(paths[0])
    png = plot(rows, out / f"{stem}.png") if with_plot else None
    md = ["# Step cost", "", describe_run(rows, meta), "", markdown(rows), ""]
    if png:
        md += [f"![step cost]({png.name})", ""]
        paths.append(png)
    paths[1].write_text("\n".join(md))
    return paths


# -- `ganparity report` ---------------------------------------------------------------------------

REPORT_SPECS = {"gan-gaussian": {}, "dcgan": dict(nz=32, ngf=16, ndf=16, image_size=32)}
REPORT_BATCH = 16
REPORT_VARIANTS = {"torch": ["seed"], "mxnet": ["seed", "hybridize"]}


def report_section(backends: list[str], out: Path | None = None, rounds: int = 5) -> str:
    """The 'Step cost (CPU)' section of `ganparity report`: small widths, one batch size, seed
    variants (and MXNet's hybridize), a few rounds; parity is the report's own section. ~10-20 s."""
    set_threads(os.cpu_count() or 1)
    rows = []
    for s, k in REPORT_SPECS.items():
        for b in backends:
            for v in REPORT_VARIANTS.get(b, ["seed"]):
                rows.append(bench_row(s, k, VARIANTS[b][v], "cpu", REPORT_BATCH, rounds, warmup=2,
                                      check=False, phases=False))
    if out is not None:
        (out / "step_cost.json").write_text(json.dumps(rows, indent=1, default=str))
    meta = rows[0]["meta"] if rows else {}
    return "\n".join([
        "## Step cost (CPU)", "",
        f"One full training step (D step + G step), batch {REPORT_BATCH}, {rounds} rounds after 2 warm-up "
        f"steps, threads {meta.get('threads', {}).get('torch.get_num_threads', meta.get('threads'))} for both "
        "frameworks. Widths: " + "; ".join(f"{k} {v or 'as specified'}" for k, v in REPORT_SPECS.items())
        + ". A quick look; `ganparity bench` measures more (variants, batch sizes, parity per variant).", "",
        markdown(rows), ""])
