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


def test_gpu_check_runs_on_cpu_and_names_failures(capsys, monkeypatch):
    """The self-check's machinery on a CPU: each check one line, CUDA-only variants skipped, a
    failing check named in the one-line error and exit 2."""
    pytest.importorskip("torch")
    from ganparity.benchmarks import selfcheck
    from ganparity.common.cli import main

    rc = main(["bench", "gpu-check", "--device", "cpu", "--backends", "torch", "--variants", "default,cuda-graph",
               "--no-train"])
    out = capsys.readouterr().out
    assert rc == 0 and "pass    dcgan torch/default" in out and "skipped torch/cuda-graph" in out
    monkeypatch.setattr(selfcheck, "check_variant", lambda *a, **k: {"ok": False, "failing": ["losses: loss_D 1e-2"],
                                                                      "reference": "torch default"})
    rc = main(["bench", "gpu-check", "--device", "cpu", "--backends", "torch", "--variants", "default", "--no-train"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "dcgan torch/default: losses: loss_D 1e-2" in err[0]
    for flag, bad, valid in (("--backends", "jax", "valid: torch, mxnet"), ("--variants", "turbo", "valid: default")):
        assert main(["bench", "gpu-check", "--device", "cpu", flag, bad, "--no-train"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and repr(bad) in err[0] and valid in err[0]
