"""How sensitive a reference run is: the floor below which a cross-framework gap tells nothing.

Two runs of the same mathematics drift apart when the computation amplifies small differences
(Adam's first steps turn the sign of a near-zero gradient into a move of lr size; a G gradient
that is a small residue of large terms through D follows every change of D). The floor is
measured, never assumed: the reference run in its own framework, perturbed and compared with
itself, step by step and tensor by tensor:

- 'f32-scalars': its scalar constants rounded to float32 (BatchNorm eps and momentum, LeakyReLU
  slopes, Adam's lr, betas and eps), as MXNet passes every op parameter;
- 'jitter': its initial weights jittered by the size of the measured step-1 cross-framework
  difference (per tensor, uniform in +-max|difference|).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .spec.layers import BatchNorm, LeakyReLU
from .spec.model import GANSpec

PERTURBATIONS = ("f32-scalars", "jitter")
HALF_ULP = 2.0 ** -24  # half a float32 ulp, relative: the largest rounding error of one fp32 value


def _f32(x: float) -> float:
    return float(np.float32(x))


def f32_scalars(spec: GANSpec) -> GANSpec:
    """The spec with every scalar constant rounded to float32."""

    def layer(l):  # noqa: E741 - a layer
        if isinstance(l, BatchNorm):
            return dataclasses.replace(l, eps=_f32(l.eps), momentum=_f32(l.momentum))
        if isinstance(l, LeakyReLU):
            return dataclasses.replace(l, slope=_f32(l.slope))
        return l

    def model(m):
        return dataclasses.replace(m, layers=tuple(layer(x) for x in m.layers))

    def adam(o):
        return dataclasses.replace(o, lr=_f32(o.lr), beta1=_f32(o.beta1), beta2=_f32(o.beta2), eps=_f32(o.eps))

    r = spec.recipe
    return dataclasses.replace(spec, G=model(spec.G), D=model(spec.D),
                               recipe=dataclasses.replace(r, opt_D=adam(r.opt_D), opt_G=adam(r.opt_G)))


def jitter(weights: dict[str, np.ndarray], size: dict[str, float], seed: int = 0) -> dict[str, np.ndarray]:
    """Each tensor plus uniform noise in +-size[tensor] (tensors without a size are kept)."""
    rng = np.random.default_rng([seed, 17])
    return {k: (v + rng.uniform(-1, 1, v.shape) * size.get(k, 0.0)).astype(v.dtype) for k, v in weights.items()}


def rel(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, float]:
    """Per tensor: max |a - b| / max |b| (the parity checks' measure)."""
    return {k: float(np.abs(np.asarray(a[k], np.float64) - b[k]).max() / max(float(np.abs(b[k]).max()), 1e-30))
            for k in b}


def step1_size(candidate: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> dict[str, float]:
    """The jitter size: per tensor, the largest absolute step-1 cross-framework difference."""
    return {k: float(np.abs(np.asarray(candidate[k], np.float64) - reference[k]).max()) for k in reference}


def half_ulp_jitter(weights: dict[str, np.ndarray], seed: int = 0) -> dict[str, np.ndarray]:
    """Each floating tensor times (1 + u * 2^-24), u uniform in [-1, 1], in float64: a change below
    float32's resolution, which only a computation that amplifies rounding can turn into a gap."""
    rng = np.random.default_rng([seed, 24])
    out = {}
    for k, v in weights.items():
        v = np.asarray(v)
        if np.issubdtype(v.dtype, np.floating):
            out[k] = v.astype(np.float64) * (1.0 + rng.uniform(-1, 1, v.shape) * HALF_ULP)
        else:
            out[k] = v
    return out
