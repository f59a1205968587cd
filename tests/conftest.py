"""Shared fixtures. Tests that need a framework skip when it is not installed; GPU tests carry
the `gpu` marker and skip without a CUDA device."""

from __future__ import annotations

import importlib.util

import pytest

from ganparity.common.backend import BACKENDS
from ganparity.common.spec.registry import GAN_SPECS, get_spec

SMALL = dict(nz=8, ngf=4, ndf=4, image_size=16)


def small_spec(name: str, **extra):
    """A spec at test widths: same layers and recipe, tiny channels."""
    return get_spec(name, **({} if name == "gan-gaussian" else SMALL), **extra)


def need(name: str):
    """Skip unless the framework behind backend `name` is installed; return the backend."""
    pytest.importorskip(BACKENDS[name][1])
    from ganparity.common.backend import get_backend

    return get_backend(name)


@pytest.fixture(params=list(BACKENDS))
def backend(request):
    return need(request.param)


@pytest.fixture
def both():
    return need("torch"), need("mxnet")


@pytest.fixture(params=list(GAN_SPECS))
def spec_name(request):
    return request.param


def pytest_collection_modifyitems(config, items):
    has_cuda = False
    if importlib.util.find_spec("torch"):
        import torch

        has_cuda = torch.cuda.is_available()
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip)
