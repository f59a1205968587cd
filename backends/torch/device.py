"""Where PyTorch runs ('cpu' or 'cuda', checked before any work starts) and how it is set up for a
measurement: threads, peak memory, the torch.backends speed flags, the machine's measured GEMM peak;
and how training batches reach the device (Feeder: pinned memory, a copy stream)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
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


GEMM_SIZE = {"cpu": 2048, "cuda": 8192}  # n of the n x n x n product: large enough to reach the plateau
GEMM_DTYPES = {"fp32": torch.float32, "tf32": torch.float32, "bf16": torch.bfloat16}


def peak_gemm(device: torch.device, precision: str = "fp32", size: int = 0) -> dict:
    """The rate a large square matrix product reaches here, in this precision, with the threads set
    now: the ceiling a training step's FLOP rate is held against (measured, not a datasheet figure;
    on CPU the datasheet has none). torch.mm on random data (zeros run faster), warm-up first,
    synced; repeated for at least 0.2 s; the best repeat is the peak, the median is kept beside it.
    'fp32' turns TF32 matmul off for the measurement, 'tf32' on (cuDNN's convolutions use TF32 by
    default on Ampere and later, which is why a CUDA 'fp32' step is held against 'tf32')."""
    choose("GEMM precision", precision, GEMM_DTYPES)
    n = size or GEMM_SIZE[device.type]
    gen = torch.Generator(device=device).manual_seed(0)
    a, b = (torch.randn(n, n, device=device, dtype=GEMM_DTYPES[precision], generator=gen) for _ in range(2))
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
    try:
        torch.mm(a, b)
        sync(device)
        times: list[float] = []
        start = time.perf_counter()
        while len(times) < 3 or (time.perf_counter() - start < 0.2 and len(times) < 50):
            t = time.perf_counter()
            torch.mm(a, b)
            sync(device)
            times.append(time.perf_counter() - t)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old
    flop = 2 * n ** 3
    return {"tflops": flop / min(times) / 1e12, "median_tflops": flop / float(np.median(times)) / 1e12,
            "precision": precision, "size": n, "repeats": len(times),
            "how": f"torch.mm {n}x{n}x{n} {precision} on {describe(device)}"}


class Feeder:
    """Training batches onto the device while the step before them runs. stage() runs on the loop's
    prefetch thread (common/gan/feed.py), take() on the training thread, just before the step.

    CUDA: each numpy array is copied into pinned (page-locked) host memory and from there to the
    device with a non-blocking copy on a stream of its own, so the copy overlaps the step in flight;
    take() makes the training stream wait for that copy's event (a device-side wait: the host does
    not block) and tells the caching allocator the tensors are used there (record_stream), so their
    memory is not handed out again while the step reads them. Pinned blocks come from torch's
    caching host allocator, which reuses a block only after the copies out of it have finished.
    CPU: stage() passes the arrays through and take() is to_device's torch.as_tensor, so CPU
    training computes bit for bit what it did before the feeder existed."""

    def __init__(self, net: torch.nn.Module):
        param = next(iter(net.parameters()))
        self.device, self.dtype = param.device, param.dtype
        self.stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None

    def stage(self, arrays: tuple[np.ndarray, ...]) -> object:
        if self.stream is None:
            return arrays
        with torch.cuda.stream(self.stream):
            tensors = tuple(torch.from_numpy(np.ascontiguousarray(a)).pin_memory().to(
                self.device, self.dtype, non_blocking=True) for a in arrays)
            done = torch.cuda.Event()
            done.record(self.stream)
        return tensors, done

    def take(self, staged: object) -> tuple[torch.Tensor, ...]:
        if self.stream is None:
            return tuple(torch.as_tensor(np.asarray(a), device=self.device, dtype=self.dtype) for a in staged)
        tensors, done = staged
        current = torch.cuda.current_stream(self.device)
        current.wait_event(done)
        for t in tensors:
            t.record_stream(current)
        return tensors
