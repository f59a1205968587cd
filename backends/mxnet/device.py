"""Where MXNet runs: 'cpu' or 'cuda' (mx.gpu(0)), checked before any work starts.

mxnet 1.9.1 is the last release. Its CUDA wheels (mxnet-cu11x) carry kernels for sm_50, 60, 70,
80 and 86 only, and no PTX, so they cannot run on Hopper (sm_90: H100, H200) or anything newer.
Rather than crash inside the first kernel launch, resolve() refuses with that reason.
"""

from __future__ import annotations

import mxnet as mx

from common import gpu
from common.errors import GanparityError, choose

DEVICES = ("cpu", "cuda")
MXNET_191_CUDA_ARCHS = ((5, 0), (6, 0), (7, 0), (8, 0), (8, 6))
MXNET_191_HAS_PTX = False


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


def sync(ctx: mx.Context) -> None:
    """MXNet is asynchronous even on CPU: wait for every queued operation."""
    mx.nd.waitall()


def describe(ctx: mx.Context) -> str:
    return str(ctx)
