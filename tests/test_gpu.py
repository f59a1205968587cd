"""GPU behaviour. The compatibility rule runs everywhere; real GPU runs carry the gpu marker."""

import pytest

from ganparity.common import gpu
from ganparity.common.spec.registry import get_spec

from .conftest import small_spec


@pytest.mark.parametrize("cap, runs", [((9, 0), False), ((8, 9), True), ((8, 6), True), ((7, 5), True),
                                       ((12, 0), False), ((3, 5), False)])
def test_mxnet_191_cuda_build_compatibility(cap, runs):
    from ganparity.backends.mxnet.device import MXNET_191_CUDA_ARCHS, MXNET_191_HAS_PTX  # imports mxnet

    assert gpu.runs_on(cap, MXNET_191_CUDA_ARCHS, MXNET_191_HAS_PTX) is runs


def test_mxnet_cuda_request_is_refused_with_a_reason(both):
    from ganparity.common.errors import GanparityError

    _, mx_backend = both
    with pytest.raises(GanparityError, match="(no CUDA support|cannot run on GPU|sees no GPU)"):
        mx_backend.build(get_spec("gan-gaussian").G, device="cuda")


@pytest.mark.gpu
def test_torch_gan_step_on_cuda():
    from ganparity.common.backend import get_backend

    be = get_backend("torch")
    spec = small_spec("dcgan")
    from ganparity.common import parity

    inputs = parity.make_inputs(spec, 8, 1)
    runner = parity.Runner(be, spec, inputs, device="cuda")
    state, losses = runner.run_steps(1)
    assert losses.shape == (1, 2) and all(v == v for v in losses.ravel())
