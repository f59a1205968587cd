"""Shared fixtures. Tests that need a framework skip when it is not installed; GPU tests carry
the `gpu` marker and skip without a CUDA device; tests that take more than a few seconds carry the
`slow` marker (`make test-fast` runs `-m "not slow"`; `make test` and CI run everything)."""

from __future__ import annotations

import ast
import gc
import importlib.util
from pathlib import Path

import pytest

from ganparity.common.backend import BACKENDS
from ganparity.common.spec.registry import GAN_SPECS, get_spec

SMALL = dict(nz=8, ngf=4, ndf=4, image_size=16)
FAST_SPECS = ("gan-gaussian",)  # the specs whose parity and source checks run in seconds


def specs(names) -> list:
    """Spec names as parameters, all but FAST_SPECS marked slow (their checks take 3-15 s each)."""
    return [n if n in FAST_SPECS else pytest.param(n, marks=pytest.mark.slow) for n in names]


# The slow tests of files that another line of work owns (tests/test_port*.py, tests/test_compare.py),
# marked here at collection until those files carry the marks themselves: test functions by name, and
# every test that uses a module fixture that ports several models (test_port.py's `ported`, ~100 s).
SLOW_FIXTURES = {"tests/test_port.py": {"ported"}}
SLOW_TESTS = {
    "tests/test_port.py": {"test_the_projects_specs_built_natively_in_gluon_port_and_prove",
                           "test_user_blocks_with_branches_port_and_prove"},
    "tests/test_compare.py": {"test_resnet18_torchvision_against_gluon_model_zoo_agrees",
                              "test_resnet18_wrong_eps_inside_a_residual_block_is_named",
                              "test_project_specs_built_natively_agree_and_pair_by_name",
                              "test_the_pytest_api_from_a_project_outside_the_package",
                              "test_the_command_in_a_real_process_imports_from_the_current_directory",
                              "test_a_wrong_port_is_caught_with_its_layer_and_hint",
                              "test_right_ports_agree_with_optimizers_translated"},
}


def parse_source(path) -> ast.Module:
    """ast.parse of a file with the garbage collector paused: CPython 3.11's AST construction keeps
    its recursion depth in shared state, and a finalizer run by a collection inside it (the suite's
    processes hold both frameworks and their threads) can let another thread build an AST meanwhile:
    "SystemError: AST constructor recursion depth mismatch" (cpython gh-106905), once in CI."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return ast.parse(Path(path).read_text())
    finally:
        if enabled:
            gc.enable()


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
        path = item.nodeid.split("::", 1)[0]
        name = getattr(item, "originalname", item.name)
        if name in SLOW_TESTS.get(path, ()) or SLOW_FIXTURES.get(path, set()) & set(item.fixturenames):
            item.add_marker(pytest.mark.slow)


# The suite's own exit. One pytest process of this suite imports both frameworks and runs ~900 tests
# through them (compiled graphs, MXNet custom operators, both thread pools); on CI it once crashed
# with SIGSEGV after printing "874 passed", inside the interpreter's teardown (MXNet's engine shutdown
# racing torch's and OpenMP's exit handlers), which made a green run red. Every test's verdict is in
# by then: the suite ends with the session's own exit status, after MXNet's queued work is done,
# without the teardown. (The CLI, whose every exit the tests check in fresh processes, exits normally.)
_SESSION: dict = {}


def pytest_sessionfinish(session, exitstatus):
    _SESSION["status"] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    import os
    import sys

    if "status" not in _SESSION or os.environ.get("GANPARITY_PYTEST_TEARDOWN"):
        return  # GANPARITY_PYTEST_TEARDOWN=1: the interpreter's own teardown, to look for the crash
    if "mxnet" in sys.modules:
        sys.modules["mxnet"].nd.waitall()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_SESSION["status"])
