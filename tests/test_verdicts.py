"""common/verdicts.py's distances, which every verdict divides: the fast paths (no float64 copy of
a large float32 activation) give what numpy's plain float64 formula gives, non-finite values
included (left out, as before)."""

from __future__ import annotations

import numpy as np
import pytest

from ganparity.common.verdicts import distance, size


def _reference_size(a, norm):
    a = np.asarray(a, np.float64)
    a = a[np.isfinite(a)]
    if not a.size:
        return 0.0
    with np.errstate(over="ignore"):
        return float(np.abs(a).max()) if norm == "max" else float(np.sqrt(np.mean(a * a)))


RNG = np.random.default_rng(7)
ARRAYS = {
    "float32": RNG.standard_normal((3, 50, 7)).astype(np.float32),
    "float64": RNG.standard_normal((40, 9)),
    "float16": RNG.standard_normal(30).astype(np.float16),
    "int": np.array([[3, -5], [2, 0]]),
    "strided": RNG.standard_normal((20, 20)).astype(np.float32)[::3, 1::2],
    "nan-and-inf": np.array([1.0, np.nan, -2.5, np.inf, -np.inf], np.float32),
    "all-nan": np.full(4, np.nan),
    "empty": np.zeros((0, 3), np.float32),
    "huge": np.array([1e200, -3.0]),
}


@pytest.mark.parametrize("norm", ["max", "rms"])
@pytest.mark.parametrize("name", list(ARRAYS))
def test_size_is_numpys_float64_formula(name, norm):
    got, want = size(ARRAYS[name], norm), _reference_size(ARRAYS[name], norm)
    assert got == pytest.approx(want, rel=1e-12, abs=0.0) or got == want  # inf == inf for 'huge' rms


@pytest.mark.parametrize("norm", ["max", "rms"])
def test_distance_is_numpys_float64_formula(norm):
    a = RNG.standard_normal((64, 33)).astype(np.float32)
    b = a.copy()
    assert distance(a, b, norm) == 0.0  # equal arrays: exactly 0, also in float32
    b[5, 7] = np.nextafter(b[5, 7], np.float32(np.inf))  # one ulp apart: seen
    assert distance(a, b, norm) > 0.0
    b = a + RNG.standard_normal(a.shape).astype(np.float32) * 1e-3
    want = _reference_size(np.asarray(a, np.float64) - np.asarray(b, np.float64), norm)
    assert distance(a, b, norm) == pytest.approx(want, rel=1e-6)  # float32's rounding of the difference
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    assert distance(a64, b64, norm) == pytest.approx(_reference_size(a64 - b64, norm), rel=1e-12)
    nan = a.copy()
    nan[0, 0] = np.nan  # a non-finite value is left out, as size does
    assert distance(nan, b, "max") == pytest.approx(_reference_size(np.asarray(nan, np.float64) - b, "max"), rel=1e-12)
