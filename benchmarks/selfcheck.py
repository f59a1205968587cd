"""`ganparity bench gpu-check`: the first thing to run when a GPU is lent. Every variant that runs on
the device, at tiny width, each with its parity check (benchmarks/variants.py check_variant), then the
training loop (train_tiny: the function `ganparity train` runs, common/gan/loop.py train) for one short
epoch per backend. Each result is one line; the exit status is non-zero when any check failed,
naming each failure.

On a CPU it runs the same checks for the variants a CPU has (the CUDA-only ones are listed as
skipped), which is how the checker itself is tested without a GPU."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from ..common.backend import available, get_backend
from ..common.errors import GanparityError, choose
from ..common.spec.registry import get_spec
from .variants import VARIANTS, all_variant_names, check_variant

TINY = dict(nz=8, ngf=8, ndf=8, image_size=16)  # every DCGAN layer, at a width that runs in seconds
SPECS = ("gan-gaussian", "dcgan")


def train_tiny(backend: str, device: str, out: Path) -> None:
    """One short epoch of dcgan at TINY widths on 64 embedded disc images, through the training
    loop `ganparity train` runs (the same TrainConfig, the same function), into `out`."""
    from ..common.gan.loop import TrainConfig, train

    res = train(TrainConfig(spec="dcgan", backend=backend, knobs=dict(TINY), n_data=64, epochs=1, batch_size=16,
                            device=device, out=str(out), eval_samples=16, gif=False, progress=False))
    if res.interrupted or res.epochs_done != 1:
        raise GanparityError(f"the training run stopped after {res.epochs_done} epochs of 1")
    if not (out / "checkpoint.npz").is_file():
        raise GanparityError(f"the training run wrote no checkpoint in {out}")


def _usable(backend: str, device: str) -> str | None:
    """Why the backend cannot run on the device (MXNet 1.9.1 on Hopper, ...), or None."""
    try:
        get_backend(backend).resolve(device)
    except GanparityError as e:
        return str(e)
    return None


def run_checks(device: str, backends: list[str] | None = None, variants: list[str] | None = None,
               train: Callable[[str, str, Path], None] | None = None,
               report: Callable[[str], None] = print,
               on_result: Callable[[dict], None] | None = None) -> list[dict]:
    """Every (spec, backend, variant) check on the device, then, given train(backend, device,
    run_dir) (the CLI passes `ganparity train` at TINY widths), one training run per backend.
    Returns the results: name, status ('pass', 'FAIL', 'skipped'), seconds, detail; on_result gets
    each one as it is known (benchmarks/gpu_run.py writes its file after every check)."""
    choose("device", device, ("cpu", "cuda"))
    for b in backends or []:
        choose("backend", b, VARIANTS)
    for v in variants or []:
        choose("variant", v, all_variant_names())
    results: list[dict] = []

    def record(name: str, status: str, seconds: float, detail: str = "") -> None:
        results.append({"name": name, "status": status, "seconds": seconds, "detail": detail})
        report(f"{status:7s} {name} ({seconds:.1f} s){': ' + detail if detail else ''}")
        if on_result is not None:
            on_result(results[-1])

    for b in backends or available():
        why = _usable(b, device)
        if why:
            record(f"{b} on {device}", "skipped", 0.0, why)
            continue
        for v in VARIANTS[b].values():
            if variants and v.name not in variants:
                continue
            if v.cuda_only and device != "cuda":
                record(f"{b}/{v.name}", "skipped", 0.0, "CUDA only")
                continue
            for s in SPECS:
                spec = get_spec(s, **({} if s == "gan-gaussian" else TINY))
                t = time.perf_counter()
                try:
                    c = check_variant(spec, v, device)
                    status = "pass" if c["ok"] else "FAIL"
                    detail = "; ".join(c["failing"]) if not c["ok"] else f"vs {c['reference']}"
                except GanparityError as e:  # a refusal by design (hybridize + emulated statistics)
                    status, detail = "skipped", str(e)
                except Exception as e:  # noqa: BLE001 - every failure is a named result
                    status, detail = "FAIL", f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                record(f"{s} {b}/{v.name}", status, time.perf_counter() - t, detail[:300])
        if train:
            t = time.perf_counter()
            with tempfile.TemporaryDirectory(prefix="ganparity-gpu-check-") as tmp:
                try:
                    train(b, device, Path(tmp) / "run")
                    status, detail = "pass", "one epoch, checkpoint written"
                except Exception as e:  # noqa: BLE001
                    status, detail = "FAIL", f"{type(e).__name__}: {e}"
            record(f"train dcgan {b} --device {device}", status, time.perf_counter() - t, detail[:300])
    return results


def failures(results: list[dict]) -> list[str]:
    return [f"{r['name']}: {r['detail']}" for r in results if r["status"] == "FAIL"]
