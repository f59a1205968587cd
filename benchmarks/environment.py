"""What every number needs beside it: versions, device, threads, flags, commit, command, load;
the peak a step's FLOP rate is held against, measured in the same process (a large GEMM of the same
framework, precision and threads), and the devices' datasheet peaks beside it."""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from ..common import gpu
from ..common.backend import get_backend, loaded
from ..common.errors import GanparityError

# Dense peak TFLOP/s by device-name fragment and precision (vendor datasheets, no sparsity).
PEAK_TFLOPS = {
    ("H100 PCIe", "bf16"): 756.0, ("H100 PCIe", "tf32"): 378.0, ("H100 PCIe", "fp32"): 51.0,
    ("H100", "bf16"): 989.0, ("H100", "tf32"): 494.7, ("H100", "fp32"): 66.9,  # SXM
    ("H200", "bf16"): 989.0, ("H200", "tf32"): 494.7, ("H200", "fp32"): 66.9,
    ("A100", "bf16"): 312.0, ("A100", "tf32"): 156.0, ("A100", "fp32"): 19.5,
}
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "MXNET_CPU_WORKER_NTHREADS")


def peak_tflops(device_name: str, precision: str) -> float | None:
    """The datasheet peak for a device and precision; None when unknown (every CPU)."""
    for (frag, prec), value in PEAK_TFLOPS.items():  # the more specific fragments come first
        if prec == precision and frag in device_name:
            return value
    return None


_MEASURED: dict[tuple, dict] = {}


def measured_peak(be, dev, precision: str) -> dict:
    """The backend's GEMM peak on this device, in this precision, with the threads set now
    (be.peak_gemm: torch.mm, MXNet's FullyConnected), measured once per process and kept: the
    ceiling a row's TFLOP/s is held against, measured beside it rather than read off a datasheet
    (a CPU has none; a GPU's clocks and power limit are the ones it runs the step at). A precision the
    backend has no GEMM for gives {'error': why}."""
    key = (be.NAME, str(dev), precision, os.environ.get("OMP_NUM_THREADS"))
    if key not in _MEASURED:
        try:
            _MEASURED[key] = be.peak_gemm(dev, precision)
        except GanparityError as e:
            _MEASURED[key] = {"error": str(e)}
    return _MEASURED[key]


def set_threads(n: int) -> dict:
    """The same CPU thread count for both frameworks: OMP/MKL env for anything not yet imported,
    each loaded backend's set_threads for what is (importing mxnet resets torch's OpenMP pool to
    1 thread, so this is called again after every import)."""
    for var in THREAD_VARS[:2]:
        os.environ[var] = str(n)
    for be in loaded():
        be.set_threads(n)
    return thread_info()


def thread_info() -> dict:
    info = {k: os.environ.get(k) for k in THREAD_VARS}
    info["cpu_count"] = os.cpu_count()
    return info  # each framework's own count is in its flags() (metadata)


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, timeout=10,
                              cwd=Path(__file__).resolve().parent).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def metadata(backend: str, device: str, device_name: str = "") -> dict:
    """Everything a number needs beside it: versions, device, driver/CUDA, flags, threads, date,
    commit, command, and the load average (other work on a shared machine)."""
    meta = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "git_commit": _git("rev-parse", "HEAD"),
            "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
            "command": " ".join(shlex.quote(a) for a in sys.argv), "python": platform.python_version(),
            "platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "numpy": np.__version__, "backend": backend, "device": device, "device_name": device_name,
            "threads": thread_info(), "load_average": os.getloadavg()}
    try:
        be = get_backend(backend)
        meta |= be.versions()
        meta["flags"] = be.flags()
    except GanparityError as e:
        meta["versions_error"] = str(e)
    if device == "cuda":
        gpus = gpu.list_gpus()
        meta["driver"] = gpus[0].driver if gpus else None
        meta["gpus"] = [f"{g.name} (sm_{g.capability[0]}{g.capability[1]})" for g in gpus]
    return meta
