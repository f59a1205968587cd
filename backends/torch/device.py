"""Where PyTorch runs: 'cpu' or 'cuda', checked before any work starts."""

from __future__ import annotations

import torch

from common.errors import GanparityError, choose

DEVICES = ("cpu", "cuda")


def resolve(device: str) -> torch.device:
    choose("device", device, DEVICES)
    if device == "cuda" and not torch.cuda.is_available():
        raise GanparityError("device 'cuda' asked for, but torch.cuda.is_available() is False here")
    return torch.device(device)


def sync(device: torch.device) -> None:
    """Wait for queued work (the GPU is asynchronous; CPU ops are not)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"
