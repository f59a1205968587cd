"""Quality measures that need no download, numpy only (FID's Inception network is a backend's).

gan-gaussian: the generated mean and covariance against the truth (b, AᵀA) and the closed-form
2-Wasserstein distance between two Gaussians,
    W2² = |m1 - m2|² + tr(S1 + S2 - 2 (S2^½ S1 S2^½)^½),
with the symmetric square roots taken by eigendecomposition (no scipy).

Image specs: the sliced Wasserstein distance on Laplacian-pyramid patches (Karras et al. 2018,
"Progressive Growing of GANs", their sliced_wasserstein.py): 7x7 patches drawn at random from each
pyramid level, normalised per channel, projected on random unit directions, the sorted projections
compared. Reported x 1e3 per level (finest first) and averaged, as the paper does.

FID (Heusel et al. 2017): |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2) between the
Inception-v3 pool features of two image sets, computed only from a local weights file: a
torchvision state dict (.pth, the torch backend's network) or a Gluon model-zoo .params file
(the mxnet backend's). Values depend on the weights file: compare FIDs only when they were
computed with the same one (pytorch-fid's TF-ported weights give different numbers).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..backend import get_backend
from ..errors import GanparityError
from ..inputs import GAUSSIAN_A, GAUSSIAN_B
from ..readers import check_file


def sqrtm_psd(m: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix by eigendecomposition."""
    m = (np.asarray(m, np.float64) + np.asarray(m, np.float64).T) / 2
    w, v = np.linalg.eigh(m)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def w2_gaussians(m1: np.ndarray, s1: np.ndarray, m2: np.ndarray, s2: np.ndarray) -> float:
    """The 2-Wasserstein distance between N(m1, s1) and N(m2, s2) (closed form)."""
    r2 = sqrtm_psd(s2)
    cross = sqrtm_psd(r2 @ s1 @ r2)
    d2 = float(np.sum((np.asarray(m1) - np.asarray(m2)) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(cross))
    return float(np.sqrt(max(d2, 0.0)))


def gaussian_report(samples: np.ndarray) -> dict:
    """Generated mean/covariance vs source 003's truth, and W2 between the fitted Gaussian and it."""
    x = np.asarray(samples, np.float64)
    mean, cov = x.mean(0), np.cov(x, rowvar=False)
    true_mean, true_cov = GAUSSIAN_B, GAUSSIAN_A.T @ GAUSSIAN_A
    return {"mean": mean.tolist(), "cov": cov.tolist(), "true_mean": true_mean.tolist(),
            "true_cov": true_cov.tolist(), "w2": w2_gaussians(mean, cov, true_mean, true_cov), "n": len(x)}


# -- sliced Wasserstein distance on Laplacian-pyramid patches ---------------------------------------

_KERNEL = np.array([1.0, 4.0, 6.0, 4.0, 1.0], np.float32) / 16.0  # the 5x5 binomial of Karras' code


def _blur(x: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """Separable 5x5 binomial filter on (N, C, H, W), reflect padding."""
    k = _KERNEL * scale
    p = np.pad(x, ((0, 0), (0, 0), (2, 2), (0, 0)), mode="reflect")
    x = sum(k[i] * p[:, :, i:i + x.shape[2]] for i in range(5))
    p = np.pad(x, ((0, 0), (0, 0), (0, 0), (2, 2)), mode="reflect")
    return sum(k[i] * p[:, :, :, i:i + x.shape[3]] for i in range(5))


def _downsample(x: np.ndarray) -> np.ndarray:
    return _blur(x)[:, :, ::2, ::2]


def _upsample(x: np.ndarray) -> np.ndarray:
    n, c, h, w = x.shape
    up = np.zeros((n, c, h * 2, w * 2), x.dtype)
    up[:, :, ::2, ::2] = x
    return _blur(up, 2.0) * 2.0  # x4 in all: each output pixel sees a quarter of the taps


def laplacian_pyramid(x: np.ndarray, levels: int) -> list[np.ndarray]:
    """Band-pass levels, finest first; the last is the low-pass residual."""
    out = []
    for _ in range(levels - 1):
        small = _downsample(x)
        out.append(x - _upsample(small))
        x = small
    out.append(x)
    return out


def _patches(level: np.ndarray, per_image: int, size: int, rng: np.random.Generator) -> np.ndarray:
    n, c, h, w = level.shape
    ys = rng.integers(0, h - size + 1, (n, per_image))
    xs = rng.integers(0, w - size + 1, (n, per_image))
    off = np.arange(size)
    rows = (ys[..., None] + off)[..., :, None]  # (n, k, size, 1)
    cols = (xs[..., None] + off)[..., None, :]  # (n, k, 1, size)
    img = np.arange(n)[:, None, None, None]
    p = level.transpose(0, 2, 3, 1)[img, rows, cols]  # (n, k, size, size, c)
    return p.transpose(0, 1, 4, 2, 3).reshape(n * per_image, c, size, size)


def _normalise(d: np.ndarray) -> np.ndarray:
    """Per channel: zero mean, unit standard deviation over every patch and pixel (Karras)."""
    d = d - d.mean(axis=(0, 2, 3), keepdims=True)
    d = d / (d.std(axis=(0, 2, 3), keepdims=True) + 1e-8)
    return d.reshape(len(d), -1)


def sliced_wasserstein(a: np.ndarray, b: np.ndarray, rng: np.random.Generator,
                       repeats: int = 4, dirs: int = 128) -> float:
    """SWD between two equal-size descriptor sets: mean |sorted projection difference|."""
    out = []
    for _ in range(repeats):
        d = rng.standard_normal((a.shape[1], dirs)).astype(np.float32)
        d /= np.sqrt(np.sum(d * d, axis=0, keepdims=True))
        # (dirs, n) rows: sorting along the contiguous axis is ~10x faster than along axis 0
        pa, pb = np.sort(d.T @ a.T, axis=1), np.sort(d.T @ b.T, axis=1)
        out.append(np.mean(np.abs(pa - pb)))
    return float(np.mean(out))


def swd(fake: np.ndarray, real: np.ndarray, seed: int = 0, patch: int = 7, per_image: int | None = None,
          min_resolution: int = 8, descriptors: int = 8192) -> dict:
    """Laplacian-pyramid SWD between two image batches in [-1, 1] (N, C, H, W), x 1e3 per level.

    Karras draws 128 patches per image from 16384 images; here about `descriptors` patches per
    level in all (4 to 128 per image), which keeps the sorts to a second or two on a CPU.
    """
    n = min(len(fake), len(real))
    if per_image is None:
        per_image = int(np.clip(descriptors // max(n, 1), 4, 128))
    if n < 2:
        raise GanparityError(f"SWD needs at least 2 images on each side, got {len(fake)} and {len(real)}")
    size = fake.shape[-1]
    levels = max(1, int(np.log2(size / min_resolution)) + 1)
    rng = np.random.default_rng(seed)
    pyr_f = laplacian_pyramid(np.asarray(fake[:n], np.float32), levels)
    pyr_r = laplacian_pyramid(np.asarray(real[:n], np.float32), levels)
    per_level = []
    for lf, lr in zip(pyr_f, pyr_r):
        k = min(patch, lf.shape[-1])
        df = _normalise(_patches(lf, per_image, k, rng))
        dr = _normalise(_patches(lr, per_image, k, rng))
        per_level.append(1e3 * sliced_wasserstein(df, dr, rng))
    res = [size >> i for i in range(levels)]
    return {"swd_x1e3": per_level, "resolutions": res, "swd_avg_x1e3": float(np.mean(per_level)), "n": n,
            "patches_per_image": per_image}


# -- FID ------------------------------------------------------------------------------------------

# Which backend reads which Inception-v3 weights file (backends/<name>/inception.py INCEPTION_SUFFIXES).
INCEPTION_FILES = {".pth": "torch", ".pt": "torch", ".params": "mxnet"}


def inception_backend(path: str | os.PathLike):
    """The backend that reads this Inception-v3 weights file, checked before any work."""
    return get_backend(check_inception_file(path))


def check_inception_file(path: str | os.PathLike) -> str:
    """The name of the backend that reads this Inception-v3 weights file (no framework imported),
    or one line saying what is wrong with it."""
    path = Path(path)
    if not path.exists():
        raise GanparityError(f"--fid-weights {str(path)!r} does not exist (a local Inception-v3 weights file: "
                             "torchvision's inception_v3_google-0cc3c7bd.pth, or a Gluon model-zoo .params)")
    check_file(path, "--fid-weights", "a local Inception-v3 weights file (.pth for torch, .params for mxnet)")
    if path.suffix not in INCEPTION_FILES:
        raise GanparityError(f"--fid-weights {str(path)!r}: expected one of {', '.join(INCEPTION_FILES)} "
                             f"({', '.join(f'{s} for {b}' for s, b in INCEPTION_FILES.items())})")
    return INCEPTION_FILES[path.suffix]


def frechet_distance(f1: np.ndarray, f2: np.ndarray) -> float:
    m1, m2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    r1 = sqrtm_psd(s1)
    cross = sqrtm_psd(r1 @ s2 @ r1)
    return float(np.sum((m1 - m2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(cross))


def fid(fake: np.ndarray, real: np.ndarray, weights: str | os.PathLike) -> float:
    be = inception_backend(weights)
    net = be.load_inception(weights)
    return frechet_distance(be.inception_features(fake, net), be.inception_features(real, net))
