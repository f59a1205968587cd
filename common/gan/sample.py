"""Drawing from G in numpy: the fixed noise of the progress pictures, latent walks, and G(z) as
each source draws it."""

from __future__ import annotations

import numpy as np

from .. import shapes
from ..spec.model import GANSpec

FIXED_IMAGES = 64  # source 001: fixed_noise = torch.randn(64, nz, 1, 1)
FIXED_POINTS = 100  # source 003 plots 100 generated points


def is_points(spec: GANSpec) -> bool:
    """gan-gaussian and its kind: D takes 2-D points, not images."""
    return tuple(spec.D.input_shape) == (2,)


def generate(be, G, spec: GANSpec, noise: np.ndarray, batch: int = FIXED_IMAGES) -> np.ndarray:
    """G(noise) in numpy, as the spec's source draws it (recipe.sample_mode):
    'train': batch statistics, as sources 001 and 000 draw from a G they never put in eval mode;
             without their side effect: BatchNorm running statistics are put back afterwards.
    'eval':  running statistics, as source 002 calls netG(latent_z) outside autograd.record()."""
    mode = spec.recipe.sample_mode
    snapshot = be.get_arrays(G, spec.G) if shapes.has_batchnorm(spec.G) and mode == "train" else None
    try:
        return np.concatenate([be.forward(G, noise[i:i + batch], mode) for i in range(0, len(noise), batch)])
    finally:
        if snapshot is not None:
            be.set_arrays(G, spec.G, snapshot)


def fixed_noise(spec: GANSpec, seed: int) -> np.ndarray:
    """The progress pictures' latents: the same for every epoch, backend and resume of a run."""
    n = FIXED_POINTS if is_points(spec) else FIXED_IMAGES
    return np.random.default_rng([seed, 1]).standard_normal((n, *spec.latent_shape)).astype(np.float32)


def slerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """Spherical interpolation, the usual walk between two Gaussian latents."""
    af, bf = a.ravel(), b.ravel()
    omega = np.arccos(np.clip(af @ bf / (np.linalg.norm(af) * np.linalg.norm(bf)), -1, 1))
    if omega < 1e-6:
        return (1 - t) * a + t * b
    return (np.sin((1 - t) * omega) * a + np.sin(t * omega) * b) / np.sin(omega)


def walks(rng: np.random.Generator, rows: int, latent: tuple[int, ...], steps: int = 8) -> np.ndarray:
    """`rows` latent walks of `steps` points each, between two random ends, row after row."""
    ends = rng.standard_normal((rows, 2, *latent)).astype(np.float32)
    return np.stack([slerp(e[0], e[1], t) for e in ends for t in np.linspace(0, 1, steps)]).astype(np.float32)
