"""Where MXNet runs ('cpu' or 'cuda' = mx.gpu(0), checked before any work starts) and how it is set
up for a measurement: threads, peak memory, the speed flags.

mxnet 1.9.1 is the last release. Its CUDA wheels (mxnet-cu11x) carry kernels for sm_50, 60, 70,
80 and 86 only, and no PTX, so they cannot run on Hopper (sm_90: H100, H200) or anything newer.
Rather than crash inside the first kernel launch, resolve() refuses with that reason.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterator
from contextlib import contextmanager

import mxnet as mx

from ...common import gpu
from ...common.errors import GanparityError, choose

DEVICES = ("cpu", "cuda")
MXNET_191_CUDA_ARCHS = ((5, 0), (6, 0), (7, 0), (8, 0), (8, 6))
MXNET_191_HAS_PTX = False
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
    gpus = gpu.list_gpus()
    for g in gpus:
        if not gpu.runs_on(g.capability, MXNET_191_CUDA_ARCHS, MXNET_191_HAS_PTX):
            archs = ", ".join(f"sm_{a}{b}" for a, b in MXNET_191_CUDA_ARCHS)
            raise GanparityError(
                f"MXNet {mx.__version__} cannot run on GPU {g.index} ({g.name}, compute capability "
                f"{g.capability[0]}.{g.capability[1]}): its CUDA kernels are built for {archs} only, "
                "with no PTX to compile for newer GPUs")
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
