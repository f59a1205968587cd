"""Where MXNet runs ('cpu' or 'cuda' = mx.gpu(0), checked before any work starts) and how it is set
up for a measurement: threads, peak memory, the speed flags.

mxnet 1.9.1 is the last release. Its CUDA wheels (mxnet-cu11x) carry kernels for sm_50, 60, 70,
80 and 86 only, and no PTX, so they cannot run on Hopper (sm_90: H100, H200) or anything newer.
Rather than crash inside the first kernel launch, resolve() refuses with that reason.

Also the machine's measured GEMM peak, and how training batches reach the device (Feeder).
"""

from __future__ import annotations

import ctypes
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

import mxnet as mx
import numpy as np

from ...common import gpu
from ...common.errors import GanparityError, choose

DEVICES = ("cpu", "cuda")
MXNET_191_CUDA_ARCHS, MXNET_191_HAS_PTX = gpu.MXNET_191_CUDA_ARCHS, gpu.MXNET_191_HAS_PTX  # common/gpu.py
# MXNet's speed flags are environment variables its operators read when they are created.
SPEED_FLAGS = {"cudnn.benchmark": "MXNET_CUDNN_AUTOTUNE_DEFAULT"}


def resolve(device: str) -> mx.Context:
    choose("device", device, DEVICES)
    if device == "cpu":
        return mx.cpu()
    if not mx.runtime.Features().is_enabled("CUDA"):
        raise GanparityError(
            f"device 'cuda' asked for, but this mxnet {mx.__version__} build has no CUDA support "
            "(the PyPI 'mxnet' wheel is CPU-only; the CUDA builds are mxnet-cu11x)")
    for g in gpu.list_gpus():
        why = gpu.mxnet_191_refusal(g)
        if why:
            raise GanparityError(why.replace("MXNet 1.9.1", f"MXNet {mx.__version__}"))
    if mx.context.num_gpus() < 1:
        raise GanparityError("device 'cuda' asked for, but MXNet sees no GPU")
    return mx.gpu(0)


_DRAINING = False


def drain_at_exit() -> None:
    """Make the process able to exit while MXNet still has work queued (idempotent; called once
    when this module is imported, so everything reached through get_backend('mxnet') has it).

    MXNet's own atexit handler (mxnet/base.py: MXNotifyShutdown) first stops the worker threads
    of Python custom operators (mx.operator.CustomOp), then waits for every queued operation. A
    forward that was pushed asynchronously and never read (an error raised before .asnumpy(), as
    in a refused `port`) may reach its CustomOp after those threads are gone: the engine then
    waits forever for an operation no thread will run, and the process hangs at exit (about half
    the runs; or aborts). An atexit handler registered after mxnet's own runs before it (atexit
    is last in, first out): mx.nd.waitall() there lets the queued work finish while the custom
    operator threads still run, so MXNet's shutdown finds nothing pending."""
    global _DRAINING
    if _DRAINING:
        return
    import atexit

    atexit.register(_drain)
    _DRAINING = True


def _drain() -> None:
    try:
        mx.nd.waitall()
    except Exception:  # noqa: BLE001 - an error of the queued work was reported (or dropped) earlier
        pass


drain_at_exit()


def sync(device: mx.Context) -> None:
    """MXNet is asynchronous even on CPU: wait for every queued operation."""
    mx.nd.waitall()


def describe(device: mx.Context) -> str:
    return str(device)


def set_threads(n: int) -> None:
    """OpenMP threads of MXNet's operators (MXNet's own call: MXSetNumOMPThreads)."""
    mx.base._LIB.MXSetNumOMPThreads(ctypes.c_int(n))


def peak_memory(device: mx.Context) -> tuple[int | None, str]:
    """MXNet's storage pool keeps no allocation peak, on CPU or GPU."""
    return None, "MXNet keeps no allocation peak"


def reset_peak_memory(device: mx.Context) -> None:
    """Nothing to reset (see peak_memory)."""


def flags() -> dict[str, object]:
    """The speed flags as they stand now (recorded beside every measurement)."""
    return {k: os.environ.get(var) for k, var in SPEED_FLAGS.items()}


@contextmanager
def speed_flags(settings: dict) -> Iterator[None]:
    """Set MXNet's speed flags ({'cudnn.benchmark': True}) for a block, then restore them."""
    for k in settings:
        choose("mxnet speed flag", k, SPEED_FLAGS)
    old = {k: os.environ.get(SPEED_FLAGS[k]) for k in settings}
    try:
        for k, v in settings.items():
            os.environ[SPEED_FLAGS[k]] = "1" if v else "0"
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(SPEED_FLAGS[k], None)
            else:
                os.environ[SPEED_FLAGS[k]] = v


def effective_precision(device: mx.Context, precision: str) -> str:
    """MXNet computes fp32 in fp32 (no TF32 by default)."""
    return precision


GEMM_SIZE = {"cpu": 2048, "gpu": 8192}  # n of the n x n x n product: large enough to reach the plateau
GEMM_DTYPES = {"fp32": "float32"}  # the only precision MXNet's steps run in here


def peak_gemm(device: mx.Context, precision: str = "fp32", size: int = 0) -> dict:
    """The rate a large square matrix product reaches here with the threads set now: the ceiling a
    training step's FLOP rate is held against (measured; the CPU has no datasheet figure).
    FullyConnected (oneDNN on CPU, cuBLAS on GPU), not nd.dot: the wheel's nd.dot goes through its
    OpenBLAS at about a quarter of the rate (~37 against ~165 GFLOP/s on this project's 2-core CPU),
    and oneDNN is what the step's convolutions use. Random data, a warm-up, waitall around every
    repeat, repeated for at least 0.2 s; the best repeat is the peak, the median is kept beside it."""
    choose("MXNet GEMM precision", precision, GEMM_DTYPES)
    n = size or GEMM_SIZE[device.device_type]
    x = mx.nd.random.normal(shape=(n, n), ctx=device, dtype=GEMM_DTYPES[precision])
    w = mx.nd.random.normal(shape=(n, n), ctx=device, dtype=GEMM_DTYPES[precision])
    mx.nd.FullyConnected(x, w, no_bias=True, num_hidden=n).wait_to_read()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < 3 or (time.perf_counter() - start < 0.2 and len(times) < 50):
        t = time.perf_counter()
        mx.nd.FullyConnected(x, w, no_bias=True, num_hidden=n).wait_to_read()
        times.append(time.perf_counter() - t)
    flop = 2 * n ** 3
    return {"tflops": flop / min(times) / 1e12, "median_tflops": flop / float(np.median(times)) / 1e12,
            "precision": precision, "size": n, "repeats": len(times),
            "how": f"mx.nd.FullyConnected {n}x{n}x{n} {precision} on {describe(device)}"}


class Feeder:
    """Training batches onto the device (the torch backend's Feeder, mirrored). stage() runs on the
    loop's prefetch thread and leaves the arrays in numpy; take() copies them to the device on the
    training thread, the plain copy to_device makes. MXNet is called from the training thread only
    (the prefetch thread keeps to numpy), and no MXNet GPU build runs on the Hopper GPUs this project
    is measured on, so there is no copy stream to overlap."""

    def __init__(self, net: mx.gluon.Block):
        param = next(iter(net.collect_params().values()))
        self.ctx, self.dtype = param.list_ctx()[0], param.dtype

    def stage(self, arrays: tuple[np.ndarray, ...]) -> object:
        return arrays

    def take(self, staged: object) -> tuple[mx.nd.NDArray, ...]:
        return tuple(mx.nd.array(np.asarray(a), ctx=self.ctx, dtype=self.dtype) for a in staged)
