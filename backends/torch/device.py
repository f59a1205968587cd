"""Where PyTorch runs ('cpu' or 'cuda', checked before any work starts) and how it is set up for a
measurement: threads, peak memory, the torch.backends speed flags."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from ...common.errors import GanparityError, choose

DEVICES = ("cpu", "cuda")
# torch.backends flags a benchmark variant may set for its rows (benchmarks/variants.py)
SPEED_FLAGS = ("cudnn.benchmark", "cudnn.allow_tf32", "cuda.matmul.allow_tf32")


def resolve(device: str) -> torch.device:
    choose("device", device, DEVICES)
    if device == "cuda" and not torch.cuda.is_available():
        raise GanparityError(f"device 'cuda' asked for, but torch.cuda.is_available() is False here: {_no_cuda()}")
    return torch.device(device)


def _no_cuda() -> str:
    """Why torch has no CUDA device: a CPU-only build, no driver, a failing driver, or no GPU."""
    if torch.version.cuda is None:
        return f"this torch {torch.__version__} build has no CUDA support"
    try:
        torch.cuda.init()
    except Exception as e:  # noqa: BLE001 - the driver's own words are the reason
        return f"no CUDA device found ({str(e).splitlines()[0].split('. Please')[0] if str(e) else type(e).__name__})"
    return "no CUDA device found"


def drain_at_exit() -> None:
    """Nothing to do: PyTorch runs CPU work synchronously and ends its CUDA work at exit itself
    (the mxnet backend's drain_at_exit waits for MXNet's queued work, which can hang the exit)."""


def sync(device: torch.device) -> None:
    """Wait for queued work (the GPU is asynchronous; CPU ops are not)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"


def set_threads(n: int) -> None:
    """CPU threads for intra-op parallelism (importing mxnet resets torch's OpenMP pool to 1)."""
    torch.set_num_threads(n)


def peak_memory(device: torch.device) -> tuple[int | None, str]:
    """The device memory peak since reset_peak_memory; (None, why) where the framework keeps none."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device)), "torch.cuda.max_memory_allocated"
    return None, "torch keeps no CPU allocation peak"


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _flag(key: str) -> tuple[object, str]:
    mod, attr = key.rsplit(".", 1)
    obj = torch.backends
    for part in mod.split("."):
        obj = getattr(obj, part)
    return obj, attr


def flags() -> dict[str, object]:
    """The speed flags as they stand now (recorded beside every measurement)."""
    return {k: getattr(*_flag(k)) for k in SPEED_FLAGS} | {
        "float32_matmul_precision": torch.get_float32_matmul_precision(), "threads": torch.get_num_threads()}


@contextmanager
def speed_flags(settings: dict) -> Iterator[None]:
    """Set torch.backends flags ({'cudnn.benchmark': True, ...}) for a block, then restore them."""
    for k in settings:
        choose("torch speed flag", k, SPEED_FLAGS)
    old = {k: getattr(*_flag(k)) for k in settings}
    try:
        for k, v in settings.items():
            setattr(*_flag(k), v)
        yield
    finally:
        for k, v in old.items():
            setattr(*_flag(k), v)


def effective_precision(device: torch.device, precision: str) -> str:
    """What an 'fp32' step really computes in: cuDNN convolutions default to TF32 on Ampere+."""
    if device.type == "cuda" and precision == "fp32" and torch.backends.cudnn.allow_tf32:
        return "tf32"
    return precision
