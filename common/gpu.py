"""What GPU is here, asked without any framework (nvidia-smi), and whether a build can run on it."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass


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


def runs_on(capability: tuple[int, int], built_for: tuple[tuple[int, int], ...], has_ptx: bool) -> bool:
    """CUDA binary compatibility: a cubin for sm_XY runs on X.Z with Z >= Y (same major); PTX, if
    shipped, is JIT-compiled for any newer GPU."""
    major, minor = capability
    if any(m == major and n <= minor for m, n in built_for):
        return True
    return has_ptx and any((m, n) <= capability for m, n in built_for)
