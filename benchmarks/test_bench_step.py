"""pytest-benchmark suites for one full GAN training step (not part of the test suite: pyproject's
testpaths is ["tests"]). Small widths by default, so they finish in about a minute on 2 cores:

    .venv/bin/python -m pytest benchmarks/ --benchmark-only --benchmark-autosave
    .venv/bin/python -m pytest benchmarks/ --benchmark-only --benchmark-compare

Each benchmarked call is one step plus a device sync (MXNet is asynchronous even on CPU), after
warm-up rounds; extra_info carries the spec, FLOPs per step and the harness's metadata.
BENCH_DEVICE=cuda runs them on the GPU (CUDA-only variants skip on cpu, with the reason).
"""

from __future__ import annotations

import os

import pytest

from ganparity.benchmarks.environment import metadata, set_threads
from ganparity.benchmarks.variants import DEFAULT, VARIANTS
from ganparity.common import flops
from ganparity.common import weights as W
from ganparity.common.backend import build_nets, get_backend
from ganparity.common.errors import GanparityError
from ganparity.common.parity import make_inputs
from ganparity.common.spec.registry import get_spec

DEVICE = os.environ.get("BENCH_DEVICE", "cpu")
SPECS = {"gan-gaussian": {}, "dcgan": dict(nz=32, ngf=16, ndf=16, image_size=32)}
BATCH = int(os.environ.get("BENCH_BATCH", "16"))
CASES = [("torch", DEFAULT), ("torch", "channels_last"), ("torch", "fused-adam"), ("torch", "bf16"),
         ("torch", "cudnn-benchmark+tf32"), ("mxnet", DEFAULT), ("mxnet", "hybridize")]


@pytest.mark.parametrize("spec_name", list(SPECS))
@pytest.mark.parametrize("backend_name,variant_name", CASES, ids=[f"{b}-{v}" for b, v in CASES])
def test_step(benchmark, spec_name, backend_name, variant_name):
    pytest.importorskip(backend_name)
    variant = VARIANTS[backend_name][variant_name]
    if variant.cuda_only and DEVICE != "cuda":
        pytest.skip(f"{variant_name}: CUDA only; device is {DEVICE}")
    be = get_backend(backend_name)
    try:
        dev = be.resolve(DEVICE)
    except GanparityError as e:  # MXNet on Hopper, no CUDA
        pytest.skip(str(e))
    set_threads(int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1))
    spec = get_spec(spec_name, **SPECS[spec_name])
    inputs = make_inputs(spec, BATCH)
    nets = build_nets(be, spec, device=DEVICE)
    G, D = nets["G"], nets["D"]
    be.set_arrays(G, spec.G, W.split(inputs.weights, "G"))
    be.set_arrays(D, spec.D, W.split(inputs.weights, "D"))
    with be.speed_flags(variant.flags):
        tr = be.GANTrainer(spec, G, D, options=variant.options)
        real, noise = be.to_device(D, inputs.real[0]), be.to_device(G, inputs.noise[0])

        def step():
            tr.step(real, noise)
            be.sync(dev)

        benchmark.extra_info.update(spec=spec_name, knobs=spec.params, batch=BATCH, variant=variant_name,
                                    flops_per_step=flops.step_flops(spec, BATCH),
                                    meta=metadata(backend_name, DEVICE, be.describe(dev)))
        benchmark.pedantic(step, rounds=int(os.environ.get("BENCH_ROUNDS", "10")), warmup_rounds=3)
