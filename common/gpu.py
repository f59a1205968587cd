"""What GPU is here, asked without any framework (nvidia-smi), and whether a build can run on it."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass

# MXNet 1.9.1, the last release: its CUDA wheels (mxnet-cu11x) carry kernels for these compute
# capabilities only, and no PTX, so they cannot run on Hopper (sm_90: H100, H200) or anything newer.
# Here, not in backends/mxnet, so that a machine without mxnet (the GPU machine) can say so too.
MXNET_191_CUDA_ARCHS = ((5, 0), (6, 0), (7, 0), (8, 0), (8, 6))
MXNET_191_HAS_PTX = False


@dataclass(frozen=True)
class GPU:
    index: int
    name: str
    capability: tuple[int, int]
    driver: str


def list_gpus() -> list[GPU]:
    """The NVIDIA GPUs nvidia-smi reports; [] when there is no driver or no GPU."""
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=index,name,compute_cap,driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in out.strip().splitlines():
        idx, name, cap, driver = (f.strip() for f in line.split(","))
        major, minor = cap.split(".")
        gpus.append(GPU(int(idx), name, (int(major), int(minor)), driver))
    return gpus


def driver_problem() -> str | None:
    """What nvidia-smi says is wrong, without any framework: 'the NVIDIA driver fails: ...' (it is
    there but cannot talk to the driver) or 'no CUDA device found (nvidia-smi lists no GPU)'. None
    when it lists a GPU, or is not installed (then only the frameworks can tell)."""
    if not shutil.which("nvidia-smi"):
        return None
    try:
        res = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as e:
        return f"the NVIDIA driver fails: nvidia-smi -L did not answer ({type(e).__name__})"
    if res.returncode != 0:
        first = (res.stdout + res.stderr).strip().splitlines()
        return f"the NVIDIA driver fails: nvidia-smi exited {res.returncode} ({first[0] if first else 'no output'})"
    if not res.stdout.strip():
        return "no CUDA device found (nvidia-smi lists no GPU)"
    return None


def runs_on(capability: tuple[int, int], built_for: tuple[tuple[int, int], ...], has_ptx: bool) -> bool:
    """CUDA binary compatibility: a cubin for sm_XY runs on X.Z with Z >= Y (same major); PTX, if
    shipped, is JIT-compiled for any newer GPU."""
    major, minor = capability
    if any(m == major and n <= minor for m, n in built_for):
        return True
    return has_ptx and any((m, n) <= capability for m, n in built_for)


def mxnet_191_refusal(g: GPU) -> str | None:
    """Why MXNet 1.9.1's CUDA build cannot run on this GPU, or None when it can."""
    if runs_on(g.capability, MXNET_191_CUDA_ARCHS, MXNET_191_HAS_PTX):
        return None
    archs = ", ".join(f"sm_{a}{b}" for a, b in MXNET_191_CUDA_ARCHS)
    return (f"MXNet 1.9.1 cannot run on GPU {g.index} ({g.name}, compute capability {g.capability[0]}."
            f"{g.capability[1]}): its CUDA kernels are built for {archs} only, with no PTX to compile for newer GPUs")
