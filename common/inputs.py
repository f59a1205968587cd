"""The inputs the parity checks and the training loop share, made in numpy and nothing else.

gan-gaussian: source 003's data, X·A + b with X ~ N(0, I): mean b, covariance AᵀA.
Image specs: the embedded procedural discs, so a fresh machine needs no download.
"""

from __future__ import annotations

import numpy as np

from .spec.model import GANSpec

GAUSSIAN_A = np.array([[1.0, 2.0], [-0.1, 0.5]])
GAUSSIAN_B = np.array([1.0, 2.0])


def gaussian(n: int = 1000, rng: np.random.Generator | None = None) -> np.ndarray:
    """Source 003: X = N(0, 1) of shape (n, 2); data = X·A + b (float32)."""
    rng = rng if rng is not None else np.random.default_rng(0)
    return (rng.standard_normal((n, 2)) @ GAUSSIAN_A + GAUSSIAN_B).astype(np.float32)


def gan_batch(spec: GANSpec, batch: int, rng: np.random.Generator) -> np.ndarray:
    """A batch of 'real' data shaped for D: the Gaussian for 2-D specs, the discs otherwise."""
    shape = tuple(spec.D.input_shape)
    if shape == (2,):
        return gaussian(batch, rng)
    return discs(batch, shape[1], shape[0], seed=int(rng.integers(2**31)))


# -- the embedded default: procedural discs, a distribution known in closed form -----------------

DISC_RADIUS = (0.12, 0.32)  # fraction of the image side
DISC_COUNT = (1, 3)


def discs(n: int, size: int = 64, channels: int = 3, seed: int = 0) -> np.ndarray:
    """n images of 1-3 soft-edged coloured discs on a dark background, in [-1, 1], (n, C, S, S).

    Needs no download, is the same on every machine for a given seed, and its generating process
    is known: centres ~ U(0.15, 0.85)^2, radii ~ U(0.12, 0.32) of the side, colours ~ U(0, 1)^C,
    background ~ U(0, 0.25)^C. Samples a GAN makes can be checked against those facts.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / (size - 1)
    img = np.broadcast_to(rng.uniform(0.0, 0.25, (n, channels, 1, 1)), (n, channels, size, size)).copy()
    counts = rng.integers(DISC_COUNT[0], DISC_COUNT[1] + 1, n)
    for k in range(DISC_COUNT[1]):
        cx, cy = rng.uniform(0.15, 0.85, (2, n, 1, 1))
        r = rng.uniform(*DISC_RADIUS, (n, 1, 1))
        colour = rng.uniform(0.0, 1.0, (n, channels, 1, 1))
        dist = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2)
        alpha = 1.0 / (1.0 + np.exp((dist - r) * size * 1.5))  # ~1.5 px soft edge
        alpha *= (k < counts)[:, None, None]
        img = img * (1 - alpha[:, None]) + colour * alpha[:, None]
    return (img * 2.0 - 1.0).astype(np.float32)
