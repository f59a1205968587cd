"""The Backend protocol and get_backend(name): a string table and importlib, nothing imported
until asked for (einops/tensorly style). The only place that knows the backends' module paths."""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType
from typing import Any, Protocol

import numpy as np

from .errors import GanparityError, choose
from .spec.model import GANSpec, ModelSpec

# name -> (api module, the framework it needs, the pip extra that installs it)
BACKENDS: dict[str, tuple[str, str, str]] = {
    "torch": ("backends.torch.api", "torch", "torch"),
    "mxnet": ("backends.mxnet.api", "mxnet", "mxnet"),
}
LAYER_TABLES = {name: f"backends.{name}.layers" for name in BACKENDS}


class Backend(Protocol):
    """What backends/<name>/api.py provides. Arrays cross the boundary as numpy only."""

    NAME: str
    DEVICES: tuple[str, ...]

    def build(self, model: ModelSpec, naive: frozenset[str] = ..., device: str = ...) -> Any: ...
    def get_arrays(self, net: Any, model: ModelSpec) -> dict[str, np.ndarray]: ...
    def set_arrays(self, net: Any, model: ModelSpec, arrays: dict[str, np.ndarray]) -> None: ...
    def get_grads(self, net: Any, model: ModelSpec, scale: float = ...) -> dict[str, np.ndarray]: ...
    def forward(self, net: Any, x: np.ndarray, mode: str = ..., naive: frozenset[str] = ...) -> np.ndarray: ...
    def layer_outputs(self, net: Any, x: np.ndarray, mode: str = ...,
                      naive: frozenset[str] = ...) -> list[np.ndarray]: ...
    def to_device(self, net: Any, array: np.ndarray) -> Any: ...
    def sync(self, device: Any) -> None: ...
    def versions(self) -> dict[str, str]: ...
    GANTrainer: Any  # GANTrainer(spec: GANSpec, G, D, naive) with d_backward, g_backward, step


def is_installed(name: str) -> bool:
    return importlib.util.find_spec(BACKENDS[choose("backend", name, BACKENDS)][1]) is not None


def available() -> list[str]:
    return [name for name in BACKENDS if is_installed(name)]


def get_backend(name: str) -> Backend:
    """Import and return a backend by name; a missing framework names the extra to install."""
    module, framework, extra = BACKENDS[choose("backend", name, BACKENDS)]
    if not is_installed(name):
        raise GanparityError(f"backend {name!r} needs {framework}, which is not installed: "
                             f"pip install 'ganparity[{extra}]'")
    try:
        return importlib.import_module(module)
    except (ImportError, AttributeError) as e:  # mxnet 1.9.1 under numpy>=1.24 dies on np.bool
        raise GanparityError(f"backend {name!r}: importing {framework} failed ({e}); "
                             f"pip install 'ganparity[{extra}]' pins working versions") from None


def layer_table(name: str) -> ModuleType:
    """backends/<name>/layers.py: how a framework spells each layer, without importing it."""
    return importlib.import_module(LAYER_TABLES[choose("backend", name, BACKENDS)])


def render_call(call: tuple[str, tuple, dict]) -> str:
    """('Conv2d', (3, 64, 4, 2, 1), {'bias': False}) -> 'nn.Conv2d(3, 64, 4, 2, 1, bias=False)'."""
    name, args, kwargs = call
    parts = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()]
    return f"nn.{name}({', '.join(parts)})"


def build_pair(backend: Backend, spec: GANSpec, naive=frozenset(), device: str = "cpu") -> tuple[Any, Any]:
    return backend.build(spec.G, naive, device), backend.build(spec.D, naive, device)
