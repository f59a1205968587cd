"""FID's Inception-v3 in PyTorch, from a local torchvision weights file only (no download).

The file is torchvision's Inception-v3 state dict (e.g. inception_v3_google-0cc3c7bd.pth, or a
checkpoint holding it under 'state_dict'). Features are the 2048-d average-pooled activations
before the classifier, for images resized to 299x299 (bilinear) and fed in [-1, 1], Inception's
own input range (so transform_input=False). The distance itself is numpy (common/gan/quality.py).
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F

from ...common.errors import GanparityError

INCEPTION_SUFFIXES = (".pth", ".pt")


def load_inception(path: str | os.PathLike) -> torch.nn.Module:
    """torchvision's Inception3 with the given weights, classifier removed, in eval mode."""
    from torchvision.models import inception_v3

    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the user's bad input
        raise GanparityError(f"--fid-weights {str(path)!r} is not a PyTorch file ({type(e).__name__})") from None
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    net = inception_v3(weights=None, aux_logits=True, init_weights=False, transform_input=False)
    try:
        missing, unexpected = net.load_state_dict(state, strict=False)
    except (RuntimeError, TypeError, AttributeError) as e:
        raise GanparityError(f"--fid-weights {str(path)!r} is not an Inception-v3 state dict: "
                             f"{str(e).splitlines()[-1].strip()}") from None
    if missing or unexpected:
        raise GanparityError(f"--fid-weights {str(path)!r} is not an Inception-v3 state dict: "
                             f"{len(missing)} missing keys (e.g. {missing[:3]}), {len(unexpected)} unexpected")
    net.fc = torch.nn.Identity()
    return net.eval()


def inception_features(images: np.ndarray, net: torch.nn.Module, batch: int = 32) -> np.ndarray:
    """(N, C, H, W) images in [-1, 1] -> (N, 2048) float64 features."""
    feats = []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            x = torch.as_tensor(np.asarray(images[i:i + batch], np.float32))
            if x.shape[1] == 1:
                x = x.repeat(1, 3, 1, 1)
            x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
            feats.append(net(x).double().numpy())
    return np.concatenate(feats)
