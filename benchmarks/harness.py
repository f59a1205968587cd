"""Step-cost rows: what one full training step costs per spec x backend x device x batch size x
variant, with the settings beside it.

A GAN row times GANTrainer.step (D step + G step of the spec's recipe), fed device-resident inputs
made once in numpy (benchmarks/timing.py: warm-up apart, rounds synced only at their ends). Per row:
median, p10, p90 ms/step, img/s, FLOPs per step from the spec (common.flops), achieved TFLOP/s and
the fraction of the peak measured in the same process (a GEMM of the same framework, precision and
threads), peak memory, a D/G phase split (extra rounds with a sync
between phases; not for a captured CUDA graph), and the variant's parity check
(benchmarks/variants.py). A variant that cannot run on the device is a row with status 'skipped'
and the reason, never a number. Nothing here imports torch or mxnet at import time.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable

import numpy as np

from ..common import flops, parity
from ..common import weights as W
from ..common.backend import BACKENDS, build_nets, get_backend
from ..common.errors import GanparityError, choose
from ..common.spec.registry import REGISTRY, get_spec
from .environment import measured_peak, metadata, peak_tflops, set_threads
from .timing import peak_rss, time_interleaved, time_phases
from .variants import DEFAULT, Variant, check_variant, resolve_variants


def _threads() -> int:
    return int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1)


def _start_row(spec, variant: Variant, device: str, batch: int, flop: int, note: str) -> dict:
    return {"spec": spec.name, "knobs": {k: list(v) if isinstance(v, tuple) else v for k, v in spec.params.items()},
            "backend": variant.backend, "variant": variant.name, "options": sorted(variant.options),
            "precision": variant.precision, "device": device, "batch": batch, "status": "ok", "reason": "",
            "note": note, "flops_per_step": flop}


def _open(variant: Variant, device: str):
    """(backend, device) or (None, the reason it cannot run here)."""
    if variant.cuda_only and device != "cuda":
        return None, ("skipped", f"CUDA only; device is {device}")
    try:
        be = get_backend(variant.backend)
        return (be, be.resolve(device)), None
    except GanparityError as e:  # MXNet on Hopper / a CPU-only build, no CUDA for torch
        return None, ("unavailable", str(e))


def _memory(be, dev) -> dict:
    mem, kind = be.peak_memory(dev)
    if mem is None:
        mem, kind = peak_rss()
    return {"peak_mem_bytes": mem, "peak_mem_kind": kind}


def rate(flop: int, batch: int, median_ms: float, be, dev, precision: str, device: str) -> dict:
    """img/s, TFLOP/s, and the fraction of the peak the row is held against: a GEMM of the same
    framework, in the precision the step really computes in (effective_precision: a CUDA 'fp32'
    step's convolutions run in TF32), with the same threads, measured in this process
    (environment.measured_peak); the datasheet figure, where one is known, beside it."""
    tflops = flop / (median_ms / 1000) / 1e12
    prec = be.effective_precision(dev, precision)
    peak = measured_peak(be, dev, prec)
    datasheet = peak_tflops(be.describe(dev), prec) if device == "cuda" else None
    top = peak.get("tflops")
    return {"img_per_s": batch / (median_ms / 1000), "tflops_achieved": tflops, "peak_tflops": top,
            "peak_precision": prec, "peak_how": peak.get("how") or peak.get("error"),
            "fraction_of_peak": tflops / top if top else None, "datasheet_peak_tflops": datasheet,
            "fraction_of_datasheet": tflops / datasheet if datasheet else None}


def _rate(row: dict, be, dev, precision: str, device: str) -> dict:
    return rate(row["flops_per_step"], row["batch"], row["median_ms"], be, dev, precision, device)


# Whose numbers the row's reported step follows (one word across spec, bench, port and compare):
# 'own' each backend its own framework's (the fair framework comparison; the default), 'source' the
# spec's own (its source's framework, or a --set semantics=...), 'torch' / 'mxnet' that framework's.
SEMANTICS = ("own", "source", "torch", "mxnet")
OTHER = {"torch": "mxnet", "mxnet": "torch"}
SOURCE_FLAG = 1.10  # a row whose step costs more than this x its source loop is flagged (never a test)


def _arm_specs(spec_name: str, kind: str, knobs: dict, backend: str, semantics: str) -> tuple[dict, str]:
    """The row's arms' specs: 'native' (the backend's own framework's semantics: what its user
    writes, and what its source loop computes) and 'emulating' (the other framework's), and which of
    the two the row reports under `semantics` (SEMANTICS)."""
    choose("semantics", semantics, SEMANTICS)
    widths = {k: v for k, v in knobs.items() if k != "semantics"}
    spec_own = get_spec(spec_name, kind=kind, **knobs).recipe.semantics.name
    specs = {"native": get_spec(spec_name, kind=kind, **widths, semantics=backend),
             "emulating": get_spec(spec_name, kind=kind, **widths, semantics=OTHER[backend])}
    follows = {"own": backend, "source": spec_own}.get(semantics, semantics)
    return specs, "native" if follows == backend else "emulating"


def _arm_columns(times: dict, refused: dict, main: str) -> dict:
    """The row's numbers: its step (the main arm), the source loop's, their ratio (flagged above
    SOURCE_FLAG), and what following the other framework's semantics costs over the native step."""
    out = dict(times[main])
    arms = {n: {k: t[k] for k in ("median_ms", "p10_ms", "p90_ms", "steps_per_round")} | {"semantics": t["semantics"]}
            for n, t in times.items()}
    arms |= {n: {"refused": why} for n, why in refused.items()}
    out["arms"] = arms
    if "source" in times:
        ratio = times[main]["median_ms"] / times["source"]["median_ms"]
        out |= {"source_ms": times["source"]["median_ms"], "source_how": times["source"]["how"],
                "x_source": ratio, "over_source_flag": ratio > SOURCE_FLAG}
    if "native" in times and "emulating" in times:
        out["emulation_cost"] = times["emulating"]["median_ms"] / times["native"]["median_ms"] - 1
    return out


def _timed(arms: dict, meta: dict, sync, rounds: int, warmup: int, min_round_s: float) -> dict:
    """time_interleaved, each arm's result with what the row says about it (its semantics, ...)."""
    return {n: t | meta[n] for n, t in time_interleaved(arms, sync, rounds, warmup, min_round_s).items()}


def bench_row(spec_name: str, knobs: dict, variant: Variant, device: str, batch: int, rounds: int = 10,
              warmup: int = 3, min_round_s: float = 0.05, check: bool = True, phases: bool = True,
              semantics: str = "own", source: bool = True) -> dict:
    """Measure one (GAN spec, backend, variant, device, batch). Never raises for a variant that cannot
    run here: the row's status says 'skipped' / 'unavailable' / 'refused' / 'failed' and why.

    Three arms in the same rounds (timing.time_interleaved), from the same numpy weights and inputs:
    the project's step with the variant in the backend's native semantics, the same with the other
    framework's semantics (the emulation, its cost a column), and the backend's source loop
    (backends/<name>/sources.py: the source as written, or in this framework's idioms; eager, default
    settings). `semantics` (SEMANTICS) says which project arm the row reports: the backend's own
    framework's ('own'), the spec's ('source'), or one framework's. source=False leaves the source
    arm out (a spec whose loop cannot be built)."""
    specs, main = _arm_specs(spec_name, "gan", knobs, variant.backend, semantics)
    spec = specs[main]
    row = _start_row(spec, variant, device, batch, flops.step_flops(spec, batch), variant.note)
    row |= {"flop_passes": flops.step_passes(spec), "semantics_mode": semantics}
    opened, refusal = _open(variant, device)
    if refusal:
        return row | {"status": refusal[0], "reason": refusal[1], "meta": metadata(variant.backend, device)}
    be, dev = opened
    set_threads(_threads())
    if any(o.startswith("compile") for o in variant.options):  # dynamo recompiles once more after the first steps
        warmup = max(warmup, 6)
    row["device_name"] = be.describe(dev)
    try:
        with be.speed_flags(variant.flags):
            row |= _measure(be, dev, specs, main, variant, device, batch, rounds, warmup, min_round_s, phases,
                            source)
            row |= _rate(row, be, dev, variant.precision, device)
            row["meta"] = metadata(variant.backend, device, row["device_name"])
        if check:
            row["parity"] = check_variant(spec, variant, device)
            if not row["parity"]["ok"]:
                row["status"] = "parity-failed"
                row["reason"] = "; ".join(row["parity"]["failing"])
    except KeyboardInterrupt:
        raise
    except GanparityError as e:  # the variant refuses this spec's semantics (hybridize + emulated BatchNorm)
        row |= {"status": "refused", "reason": str(e)}
        row.setdefault("meta", metadata(variant.backend, device, row.get("device_name", "")))
    except Exception as e:  # a variant that fails here (no compiler for torch.compile, ...) is a result
        row |= {"status": "failed", "reason": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]}
        row.setdefault("meta", metadata(variant.backend, device, row.get("device_name", "")))
    return row


def _source_arm(be, spec, weights: dict, device: str, arms: dict, meta: dict, refused: dict, step) -> None:
    """The backend's loop for the spec (in the backend's own semantics) as the 'source' arm, or the
    reason there is none (the sources build their DCGANs for 64x64 images only)."""
    try:
        loop = be.source_loop(spec, weights, "float32", device)
    except GanparityError as e:
        refused["source"] = str(e)
        return
    arms["source"] = lambda: step(loop)
    meta["source"] = {"semantics": spec.recipe.semantics.name, "how": loop.how}


def _trainer(be, spec, device: str, weights: dict, options):
    nets = build_nets(be, spec, device=device)
    for n, m in spec.nets.items():
        be.set_arrays(nets[n], m, W.split(weights, n))
    return be.GANTrainer(spec, nets["G"], nets["D"], options=options), nets


def _measure(be, dev, specs, main, variant, device, batch, rounds, warmup, min_round_s, phases, source) -> dict:
    inputs = parity.make_inputs(specs[main], batch, 1, seed=0)  # the weights do not depend on semantics
    tr, nets = _trainer(be, specs[main], device, inputs.weights, variant.options)
    real, noise = be.to_device(nets["D"], inputs.real[0]), be.to_device(nets["G"], inputs.noise[0])
    sync = lambda: be.sync(dev)
    be.reset_peak_memory(dev)
    tr.step(real, noise)  # peak memory: this arm's first step, before the other arms exist
    sync()
    memory = _memory(be, dev)
    arms, refused = {main: lambda: tr.step(real, noise)}, {}
    meta = {main: {"semantics": specs[main].recipe.semantics.name}}
    other = "emulating" if main == "native" else "native"
    try:
        tr_other, _ = _trainer(be, specs[other], device, inputs.weights, variant.options)
        arms[other] = lambda: tr_other.step(real, noise)
        meta[other] = {"semantics": specs[other].recipe.semantics.name}
    except GanparityError as e:
        refused[other] = str(e)
    if source:
        _source_arm(be, specs["native"], inputs.weights, device, arms, meta, refused,
                    lambda loop: loop.step(real, noise))
    times = _timed(arms, meta, sync, rounds, warmup, min_round_s)
    m = times[main].pop("last")
    losses = {k: be.scalar(m[k]) for k in parity.LOSSES}  # read after timing
    out = _arm_columns(times, refused, main) | memory
    out |= {"losses_last": losses, "finite": all(math.isfinite(v) for v in losses.values())}
    for t in times.values():
        t.pop("last", None)
    out.pop("last", None)
    if phases and "cuda-graph" not in variant.options:
        held = {}

        def d_phase() -> None:  # D on real, G forward, D on fake, backward, Adam
            held["fake"], _ = tr.d_backward(real, noise)
            tr.d_update()

        def g_phase() -> None:  # G's pass through D, backward, Adam
            tr.g_backward(held["fake"], noise)
            tr.g_update()

        d_ms, g_ms = time_phases([d_phase, g_phase], sync, max(3, rounds // 2))
        out["phases_ms"] = {"D": d_ms, "G": g_ms}
    return out


def finetune_row(spec_name: str, knobs: dict, variant: Variant, device: str, batch: int, rounds: int = 5,
                 warmup: int = 2, semantics: str = "own", source: bool = True) -> dict:
    """One fine-tune step of source 000 (frozen backbone, SGD on the head) through the backend's
    FinetuneTrainer.step, which takes a numpy batch and returns the loss as a float, as the
    source's loop reads l.item() every batch: so each step includes the host-to-device copy of the
    batch and one host sync. Only the default variant exists for this step. The same three arms
    as bench_row: native, emulating, and the source loop (which takes the same numpy batch)."""
    specs, main = _arm_specs(spec_name, "finetune", knobs, variant.backend, semantics)
    spec = specs[main]
    note = "the fine-tune step includes the batch upload and one host sync (the source reads the loss every batch)"
    row = _start_row(spec, variant, device, batch, flops.finetune_step_flops(spec, batch), note)
    row["semantics_mode"] = semantics
    if variant.name != DEFAULT:
        why = f"only the {DEFAULT} variant is implemented for the fine-tune step"
        return row | {"status": "skipped", "reason": why,
                      "meta": metadata(variant.backend, device)}
    opened, refusal = _open(variant, device)
    if refusal:
        return row | {"status": refusal[0], "reason": refusal[1], "meta": metadata(variant.backend, device)}
    be, dev = opened
    set_threads(_threads())
    arrays = W.init_arrays(spec, 0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, 3, spec.image_size, spec.image_size)).astype(np.float32)
    y = rng.integers(0, spec.num_classes, batch)
    row["device_name"] = be.describe(dev)
    trainers = {}
    for arm in ("native", "emulating"):
        nets = build_nets(be, specs[arm], device=device)
        for n, m in spec.nets.items():
            be.set_arrays(nets[n], m, W.split(arrays, n))
        trainers[arm] = be.FinetuneTrainer(specs[arm], nets["backbone"], nets["head"])
        if arm == main:
            be.reset_peak_memory(dev)
            trainers[arm].step(x, y)
            memory = _memory(be, dev)
    arms = {a: (lambda t=t: t.step(x, y)) for a, t in trainers.items()}
    meta = {a: {"semantics": specs[a].recipe.semantics.name} for a in trainers}
    refused: dict = {}
    if source:
        _source_arm(be, specs["native"], arrays, device, arms, meta, refused, lambda loop: loop.step(x, y)["loss"])
    times = _timed(arms, meta, lambda: be.sync(dev), rounds, warmup, 0.0)
    loss = times[main]["last"]
    for t in times.values():
        t.pop("last")
    row |= _arm_columns(times, refused, main) | memory | {"losses_last": {"loss": loss}, "finite": math.isfinite(loss)}
    return row | _rate(row, be, dev, variant.precision, device) | {
        "meta": metadata(variant.backend, device, row["device_name"])}


def in_fresh_process(fn: Callable, *args, **kwargs):
    """fn(*args, **kwargs) in a new Python process (multiprocessing 'spawn'), its result returned.

    Each row runs in its own process: in one process a row's times depended on the rows before it
    (measured on this 2-core CPU, batch 16: the torch dcgan step 32 ms alone against 61 ms after
    the mxnet rows; the mxnet fine-tune step 13 ms alone against 31-36 ms after other rows), so a
    shared process made the framework comparison a comparison of row orders. fn must be a
    module-level function (it is sent by name)."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(fn, args, kwargs)


def run_matrix(specs: list[str], knobs: dict, backends: list[str], device: str, batch_sizes: list[int],
               variant_names: list[str], rounds: int = 10, warmup: int = 3, check: bool = True,
               progress: Callable[[str], None] | None = None,
               on_row: Callable[[dict], None] | None = None, semantics: str = "own",
               isolate: bool = True) -> list[dict]:
    """Every spec x backend x variant x batch size; on_row is called after each (incremental writes).
    semantics: which project arm the rows report (SEMANTICS, see bench_row). isolate:
    each row in a fresh process (in_fresh_process says why); False runs them all in this one."""
    run = in_fresh_process if isolate else (lambda fn, *a, **kw: fn(*a, **kw))
    choose("semantics", semantics, SEMANTICS)
    choose("device", device, ("cpu", "cuda"))
    for s in specs:
        choose("spec", s, REGISTRY)
    if not backends:
        raise GanparityError(f"no backend installed; valid: {', '.join(BACKENDS)}")
    variants = resolve_variants(variant_names, backends)
    rows = []
    for s in specs:
        entry = REGISTRY[s]
        k = {key: v for key, v in knobs.items() if key in entry.knobs()}  # each spec takes its own knobs
        if s == "gan-gaussian":  # no width knobs: runs as specified
            k = {key: v for key, v in k.items() if key == "semantics"}
        for v in variants:
            for b in batch_sizes:
                if progress:
                    progress(f"bench {s} {v.backend}/{v.name} {device} batch {b} ...")
                if entry.kind == "finetune":
                    row = run(finetune_row, s, k, v, device, b, rounds, warmup, semantics=semantics)
                else:
                    row = run(bench_row, s, k, v, device, b, rounds, warmup, check=check and b == batch_sizes[0],
                              semantics=semantics)
                if progress:
                    progress(f"  {row['status']}" + (f" {row['median_ms']:.2f} ms/step" if "median_ms" in row else "")
                             + (f", x{row['x_source']:.2f} its source loop" if "x_source" in row else "")
                             + (f" ({row['reason']})" if row["reason"] else ""))
                rows.append(row)
                if on_row:
                    on_row(row)
    return rows
