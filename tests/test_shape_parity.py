"""Every spec builds natively in every installed backend with the shapes the spec infers."""

import pytest

from ganparity.common import parity
from ganparity.common.spec.registry import get_spec

from .conftest import need


@pytest.mark.parametrize("backend_name", ["torch", "mxnet"])
def test_shape_parity_full_size(spec_name, backend_name):
    need(backend_name)
    result = parity.check_shapes(backend_name, get_spec(spec_name))
    assert result.ok, result.mismatches
    assert result.params_backend == result.params_spec


def test_seed_printed_shapes(backend):
    """000/001 print G(z) -> (1, 3, 64, 64) and D(x) -> (1, 1, 1, 1)."""
    import numpy as np

    spec = get_spec("dcgan")
    G, D = backend.build(spec.G), backend.build(spec.D)
    assert backend.forward(G, np.zeros((1, 100, 1, 1), np.float32), "eval").shape == (1, 3, 64, 64)
    assert backend.forward(D, np.zeros((1, 3, 64, 64), np.float32), "eval").shape == (1, 1, 1, 1)
