"""ganparity: one framework-neutral spec per model, PyTorch and MXNet Gluon backends that build and
train it, and numbers that say whether the two agree and what each costs.

The one import name. The repository's folders common/, backends/ and benchmarks/ are its
sub-packages ganparity.common, ganparity.backends and ganparity.benchmarks: an install maps them
there (pyproject.toml's package-dir); run from a checkout without installing, this file adds the
checkout to the package path, so `PYTHONPATH=. python -m ganparity ...` works as well.

The public API for users' own tests, imported lazily (`import ganparity` loads no framework):

    spec = ganparity.get_spec("dcgan", ngf=16)          # a frozen spec, shapes checked
    be = ganparity.get_backend("mxnet")                  # a backend, its framework imported now
    checks = ganparity.check_parity(spec, batch=16)      # forward, gradients, one step, lockstep
    weights = ganparity.init_weights(spec, seed=0)       # neutral numpy weights
    report = ganparity.compare_models(net, block, (4, 3, 64, 64))   # your own port, row by row
    proof = ganparity.prove_port("ported/")              # a written port, again (what test_port.py runs)
"""

from __future__ import annotations

import os as _os

_here = _os.path.dirname(_os.path.abspath(__file__))
if not _os.path.isdir(_os.path.join(_here, "common")):  # a checkout: common/ stands beside ganparity/
    __path__.append(_os.path.dirname(_here))  # noqa: F821 - a package's own __path__

# name -> (module, attribute): what `ganparity.<name>` hands out, imported on first use.
_API = {
    "get_spec": ("ganparity.common.spec.registry", "get_spec"),
    "spec_names": ("ganparity.common.spec.registry", "names"),
    "get_backend": ("ganparity.common.backend", "get_backend"),
    "available_backends": ("ganparity.common.backend", "available"),
    "init_weights": ("ganparity.common.weights", "init_arrays"),
    "check_parity": ("ganparity.common.parity", "check_all"),
    "compare_arrays": ("ganparity.common.parity", "compare"),
    "compare_models": ("ganparity.common.compare", "compare_models"),
    "port": ("ganparity.common.port", "port"),
    "prove_port": ("ganparity.common.port", "prove_port"),
    "GanparityError": ("ganparity.common.errors", "GanparityError"),
}
__all__ = sorted(_API)


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'ganparity' has no attribute {name!r}")
    import importlib

    module, attr = _API[name]
    return getattr(importlib.import_module(module), attr)


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
