"""Both api modules provide every member of common.backend.Backend, functions with the Protocol's
signatures (names, kinds, defaults), and trainer classes with the Protocol's methods."""

from __future__ import annotations

import inspect

import pytest

from ganparity.common import backend as B
from ganparity.common.gan.quality import INCEPTION_FILES
from ganparity.common.spec.registry import get_spec

from .conftest import need

PROTOCOL_CLASSES = {"GANTrainer": B.GANTrainer, "FinetuneTrainer": B.FinetuneTrainer, "Feeder": B.Feeder}


def _shape(fn, drop_self: bool) -> list[tuple]:
    params = list(inspect.signature(fn).parameters.values())
    if drop_self:
        params = params[1:]
    return [(p.name, p.kind, p.default) for p in params]


def _members(proto) -> tuple[list[str], dict[str, object]]:
    attrs = [a for a in proto.__annotations__]
    methods = {k: v for k, v in vars(proto).items() if inspect.isfunction(v) and not k.startswith("_")}
    init = vars(proto).get("__init__")
    if init is not None and init.__qualname__ == f"{proto.__name__}.__init__":  # written in the Protocol
        methods["__init__"] = init
    return attrs, methods


@pytest.fixture(params=list(B.BACKENDS))
def api(request):
    return need(request.param)


def test_api_module_has_every_protocol_member(api):
    attrs, methods = _members(B.Backend)
    missing = [a for a in [*attrs, *methods] if not hasattr(api, a)]
    assert not missing, f"{api.NAME} lacks {missing}"
    for name, proto in methods.items():
        assert _shape(getattr(api, name), False) == _shape(proto, True), f"{api.NAME}.{name}"
    assert api.NAME in B.BACKENDS
    assert set(api.DEVICES) == {"cpu", "cuda"}


@pytest.mark.parametrize("cls", list(PROTOCOL_CLASSES))
def test_trainers_have_the_protocol_methods(api, cls):
    _, methods = _members(PROTOCOL_CLASSES[cls])
    impl = getattr(api, cls)
    for name, proto in methods.items():
        assert _shape(getattr(impl, name), True) == _shape(proto, True), f"{api.NAME}.{cls}.{name}"


def test_trainer_attributes_exist_on_instances(api):
    spec = get_spec("gan-gaussian")
    nets = B.build_nets(api, spec)
    tr = api.GANTrainer(spec, nets["G"], nets["D"])
    assert isinstance(tr.grad_scale, float)
    fspec = get_spec("resnet34-finetune", width=4, blocks=1, image_size=32, num_classes=3, hidden=4)
    fnets = B.build_nets(api, fspec)
    assert api.FinetuneTrainer(fspec, fnets["backbone"], fnets["head"]).lr == fspec.recipe.lr


def test_neutral_tables_match_the_backends(api):
    """common/gan/quality.py names which backend reads which Inception file without importing one."""
    assert {s for s, b in INCEPTION_FILES.items() if b == api.NAME} == set(api.INCEPTION_SUFFIXES)
    assert api.layer_call.__module__.endswith(f"backends.{api.NAME}.layers")
    assert B.layer_table(api.NAME).layer_call is api.layer_call


def test_loaded_lists_only_imported_backends(api):
    assert api in list(B.loaded())


@pytest.mark.parametrize("order", [("torch", "mxnet"), ("mxnet", "torch")])
def test_both_frameworks_in_one_process_keep_their_threads(order):
    """Loading MXNet beside torch (either order) left torch's OpenMP pool at 1 thread, so every
    torch run of compare and of a port's proof used one core of two; get_backend gives each loaded
    backend the process's thread count back (OMP_NUM_THREADS here)."""
    import os
    import subprocess
    import sys

    need("torch"), need("mxnet")
    code = ("from ganparity.common.backend import get_backend\n"
            f"for n in {list(order)!r}: get_backend(n)\n"
            "import torch; print(torch.get_num_threads())")
    env = os.environ | {"OMP_NUM_THREADS": "3"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.stdout.strip().splitlines()[-1] == "3", out.stderr[-2000:]
