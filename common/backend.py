"""The backend contract and get_backend(name): a string table and importlib, nothing imported until
asked for (einops/tensorly style). The only place that knows the backends' module paths.

A backend is a module, backends/<name>/api.py, with every member of `Backend` below and the same
signatures; tests/test_backend_contract.py holds both api modules to it. Arrays cross the boundary
as numpy only; a backend's own objects (modules, NDArrays, devices) go back only to that backend.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager
from types import ModuleType
from typing import Any, Protocol

import numpy as np

from .errors import GanparityError, choose
from .spec.model import GANSpec, ModelSpec, Semantics

PACKAGE = "ganparity"  # the one import name (pyproject.toml)
# name -> (api module, the framework it needs, the pip extra that installs it)
BACKENDS: dict[str, tuple[str, str, str]] = {
    "torch": (f"{PACKAGE}.backends.torch.api", "torch", "torch"),
    "mxnet": (f"{PACKAGE}.backends.mxnet.api", "mxnet", "mxnet"),
}
LAYER_TABLES = {name: f"{PACKAGE}.backends.{name}.layers" for name in BACKENDS}
NAIVE = frozenset()
TORCH = Semantics()  # the default semantics: every difference the way PyTorch computes it


class GANTrainer(Protocol):
    """The optimizers and the D-then-G step of a GANSpec's recipe, for built G and D. Inputs are the
    backend's device arrays (to_device); values come back as the backend's 0-d arrays, read with
    scalar(), so nothing waits for the device inside a step."""

    grad_scale: float  # what get_grads must multiply by to give batch-mean gradients

    def __init__(self, spec: GANSpec, G: Any, D: Any, naive: frozenset[str] = NAIVE,
                 options: frozenset[str] = NAIVE) -> None: ...
    def d_backward(self, real: Any, noise: Any) -> tuple[Any, dict]: ...
    def d_update(self) -> None: ...
    def g_backward(self, fake: Any, noise: Any) -> dict: ...
    def g_update(self) -> None: ...
    def step(self, real: Any, noise: Any) -> dict: ...


class FinetuneTrainer(Protocol):
    """The fine-tune recipe's step on a built backbone and head: numpy batch in, the loss out."""

    lr: float

    def __init__(self, spec: Any, backbone: Any, head: Any, recipe: Any = None,
                 naive: frozenset[str] = NAIVE) -> None: ...
    def set_lr(self, lr: float) -> None: ...
    def backward(self, x: np.ndarray, y: np.ndarray) -> float: ...
    def update(self) -> None: ...
    def step(self, x: np.ndarray, y: np.ndarray) -> float: ...
    def grads(self) -> dict[str, np.ndarray]: ...


class Feeder(Protocol):
    """Training batches onto the device while the step before them runs: stage() on the training
    loop's prefetch thread (common/gan/feed.py), take() on the training thread just before the step.
    take() gives the backend's device arrays, bit for bit what to_device gives."""

    def __init__(self, net: Any) -> None: ...
    def stage(self, arrays: tuple[np.ndarray, ...]) -> Any: ...
    def take(self, staged: Any) -> tuple[Any, ...]: ...


class Backend(Protocol):
    """What backends/<name>/api.py provides (file by file, the same in both backends)."""

    NAME: str
    DEVICES: tuple[str, ...]
    OPTIONS: tuple[str, ...]  # GANTrainer speed options (benchmarks/variants.py)
    SUFFIX: str  # the native checkpoint's file suffix
    PRETRAINED_SUFFIX: str  # the framework's model-zoo weight files
    INCEPTION_SUFFIXES: tuple[str, ...]  # FID's Inception-v3 weight files
    GANTrainer: type[GANTrainer]
    # distributed.py, the module: init(device, timeout_s) -> (rank, world), wrap_trainer(trainer,
    # sync_bn), barrier(), any_rank(flag) -> bool, shutdown(), end_process(): data parallelism on
    # the framework's own engine
    distributed: ModuleType
    FinetuneTrainer: type[FinetuneTrainer]
    Feeder: type[Feeder]  # device.py

    def versions(self) -> dict[str, str]: ...
    # device.py: where the framework runs, and how it is set up
    def resolve(self, device: str) -> Any: ...
    def sync(self, device: Any) -> None: ...
    def describe(self, device: Any) -> str: ...
    def set_threads(self, n: int) -> None: ...
    def peak_memory(self, device: Any) -> tuple[int | None, str]: ...
    def reset_peak_memory(self, device: Any) -> None: ...
    def flags(self) -> dict[str, object]: ...
    def speed_flags(self, settings: dict) -> AbstractContextManager: ...
    def effective_precision(self, device: Any, precision: str) -> str: ...
    def peak_gemm(self, device: Any, precision: str = "fp32", size: int = 0) -> dict: ...
    # build.py: spec -> native net; neutral arrays in and out
    def build(self, model: ModelSpec, naive: frozenset[str] = NAIVE, device: str = "cpu",
              dtype: str = "float32", semantics: Semantics = TORCH) -> Any: ...
    def get_arrays(self, net: Any, model: ModelSpec) -> dict[str, np.ndarray]: ...
    def set_arrays(self, net: Any, model: ModelSpec, arrays: dict[str, np.ndarray]) -> None: ...
    def get_grads(self, net: Any, model: ModelSpec, scale: float = 1.0) -> dict[str, np.ndarray]: ...
    def to_device(self, net: Any, array: np.ndarray) -> Any: ...
    def scalar(self, value: Any) -> float: ...
    def scalars(self, values: list[Any]) -> np.ndarray: ...
    def layer_outputs(self, net: Any, x: np.ndarray, mode: str = "train",
                      naive: frozenset[str] = NAIVE) -> list[np.ndarray]: ...
    def forward(self, net: Any, x: np.ndarray, mode: str = "train", naive: frozenset[str] = NAIVE) -> np.ndarray: ...
    def param_count(self, net: Any) -> int: ...
    # layers.py: how the framework spells each layer and the recipe (pure data, no framework import)
    def layer_call(self, layer: Any, in_shape: tuple[int, ...], naive: frozenset[str] = NAIVE) -> tuple: ...
    def recipe_calls(self, spec: GANSpec, naive: frozenset[str] = NAIVE) -> dict[str, str]: ...
    # speed.py: a Gluon zoo network as each framework has it (torch: torchvision's twin; mxnet: the
    # Gluon network itself), its size, and its train and eval steps, for `bench port-speed`
    SPEED_MODELS: tuple[str, ...]  # the zoo names zoo_model builds
    def zoo_model(self, name: str, edited: bool = True, seed: int = 0) -> tuple[Any, dict]: ...
    def edit_written(self, name: str, model: Any) -> tuple[Any, str] | None: ...
    def model_size(self, model: Any, shape: tuple[int, ...]) -> tuple[float | None, int]: ...
    def speed_arms(self, models: dict, x: np.ndarray, labels: np.ndarray,
                   layouts: tuple[str, ...] | None = None) -> dict: ...
    # checkpoint.py: the framework's own files
    def save_native(self, path: Any, nets: dict[str, tuple[Any, ModelSpec]]) -> Any: ...
    def load_native(self, path: Any, models: dict[str, ModelSpec]) -> dict[str, np.ndarray]: ...
    def load_pretrained(self, path: Any, spec: Any) -> dict[str, np.ndarray]: ...
    def save_pretrained(self, path: Any, arrays: dict[str, np.ndarray], spec: Any) -> Any: ...
    # state.py: optimizer state as neutral arrays (a checkpoint resumes in either framework)
    def optimizer_state(self, trainer: GANTrainer) -> dict[str, np.ndarray]: ...
    def load_optimizer_state(self, trainer: GANTrainer, state: dict[str, np.ndarray]) -> None: ...
    # finetune.py: the fine-tune forward (the trainer is FinetuneTrainer)
    def logits(self, backbone: Any, head: Any, x: np.ndarray, mode: str = "eval") -> np.ndarray: ...
    # sources.py: the source tutorials' own loops, transcribed in this framework (tests, benchmarks)
    def source_loop(self, spec: Any, arrays: dict[str, np.ndarray], dtype: str = "float32",
                    device: str = "cpu") -> Any: ...
    # inception.py: FID's features from a local Inception-v3 file of the framework's model zoo
    def load_inception(self, path: Any) -> Any: ...
    def inception_features(self, images: np.ndarray, net: Any, batch: int = 32) -> np.ndarray: ...


def is_installed(name: str) -> bool:
    return importlib.util.find_spec(BACKENDS[choose("backend", name, BACKENDS)][1]) is not None


def available() -> list[str]:
    return [name for name in BACKENDS if is_installed(name)]


def loaded() -> Iterator[Backend]:
    """The backends already imported in this process (nothing is imported here)."""
    for module, _, _ in BACKENDS.values():
        if module in sys.modules:
            yield sys.modules[module]


def get_backend(name: str) -> Backend:
    """Import and return a backend by name; a missing framework names the extra to install."""
    module, framework, extra = BACKENDS[choose("backend", name, BACKENDS)]
    if not is_installed(name):
        raise GanparityError(f"backend {name!r} needs {framework}, which is not installed: "
                             f"pip install 'ganparity[{extra}]'")
    fresh = module not in sys.modules
    try:
        backend = importlib.import_module(module)
    except (ImportError, AttributeError) as e:  # mxnet 1.9.1 under numpy>=1.24 dies on np.bool
        raise GanparityError(f"backend {name!r}: importing {framework} failed ({e}); "
                             f"pip install 'ganparity[{extra}]' pins working versions") from None
    if fresh:
        share_threads()
    return backend


def default_threads() -> int:
    """The CPU threads a process of ours computes with: OMP_NUM_THREADS where it is set (the user's,
    or a benchmark's --threads), else one per CPU this process may run on."""
    try:
        return max(1, int(os.environ.get("OMP_NUM_THREADS", "")))
    except ValueError:
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def share_threads() -> None:
    """Both frameworks in one process (compare, port, parity) share one OpenMP runtime, and loading
    MXNet, before or after torch, leaves torch's pool at 1 thread: on 2 cores every torch run of a
    proof took twice as long. Where more than one backend is loaded, each gets default_threads()."""
    both = list(loaded())
    if len(both) > 1:
        n = default_threads()
        for be in both:
            be.set_threads(n)


def layer_table(name: str) -> ModuleType:
    """backends/<name>/layers.py: how a framework spells each layer, without importing it."""
    return importlib.import_module(LAYER_TABLES[choose("backend", name, BACKENDS)])


def render_call(call: tuple[str, tuple, dict]) -> str:
    """('Conv2d', (3, 64, 4, 2, 1), {'bias': False}) -> 'nn.Conv2d(3, 64, 4, 2, 1, bias=False)'."""
    name, args, kwargs = call
    parts = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()]
    return f"nn.{name}({', '.join(parts)})"


def build_nets(backend: Backend, spec, naive=NAIVE, device: str = "cpu", dtype: str = "float32") -> dict[str, Any]:
    """Every net of a spec (G and D; backbone and head), built by one backend with the spec's
    semantics (its BatchNorm statistics, difference 'bn-stats')."""
    return {n: backend.build(m, naive, device, dtype, spec.recipe.semantics) for n, m in spec.nets.items()}
