"""Fréchet Inception Distance, computed only from a local Inception-v3 weights file (no download).

The file is torchvision's Inception-v3 state dict (e.g. inception_v3_google-0cc3c7bd.pth, or a
checkpoint holding it under 'state_dict'). Features are the 2048-d average-pooled activations
before the classifier, for images resized to 299x299 (bilinear) and fed in [-1, 1], Inception's
own input range (so transform_input=False). FID = |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2).
Values depend on the weights file: compare FIDs only when they were computed with the same one
(pytorch-fid's TF-ported weights give different numbers). PyTorch runs the network for either
backend's samples; the samples themselves are numpy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import GanparityError
from .quality import sqrtm_psd


def check_weights_file(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise GanparityError(f"--fid-weights {str(path)!r} does not exist (a local torchvision "
                             "Inception-v3 state dict, e.g. inception_v3_google-0cc3c7bd.pth)")
    return path


def load_inception(path: str | Path):
    """torchvision's Inception3 with the given weights, classifier removed, in eval mode."""
    try:
        import torch
        from torchvision.models import inception_v3
    except ImportError:
        raise GanparityError("FID needs torch and torchvision: pip install 'ganparity[torch]'") from None
    path = check_weights_file(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
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


def inception_features(images: np.ndarray, net, batch: int = 32) -> np.ndarray:
    """(N, C, H, W) images in [-1, 1] -> (N, 2048) float64 features."""
    import torch
    import torch.nn.functional as F

    feats = []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            x = torch.as_tensor(np.asarray(images[i:i + batch], np.float32))
            if x.shape[1] == 1:
                x = x.repeat(1, 3, 1, 1)
            x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
            feats.append(net(x).double().numpy())
    return np.concatenate(feats)


def frechet_distance(f1: np.ndarray, f2: np.ndarray) -> float:
    m1, m2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    r1 = sqrtm_psd(s1)
    cross = sqrtm_psd(r1 @ s2 @ r1)
    return float(np.sum((m1 - m2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(cross))


def fid(fake: np.ndarray, real: np.ndarray, weights: str | Path) -> float:
    net = load_inception(weights)
    return frechet_distance(inception_features(fake, net), inception_features(real, net))
