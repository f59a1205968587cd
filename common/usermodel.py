"""A user's own model, as `ganparity compare` and `ganparity port` take it: the factory that makes
it, the input shape, the optimizer setting both frameworks build their optimizer from, and the
records the backends' compare and port sides exchange (Rejected, the losses, the modes).

Core: numpy and the standard library only. The applications (common/compare, common/port) and
both backends' compare.py / port.py share this one grammar, so a setting means the same in every
command, and every bad value is refused here, where it is parsed, in one line.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import GanparityError, choose

FRAMEWORKS = ("torch", "mxnet")
# 'projection': the outputs dotted with a fixed random tensor (numpy, the same on both sides): every
# output element gets a gradient of its own, so a final BatchNorm or softmax cannot zero the
# gradients the check compares (the plain sum of a train-mode BatchNorm's output has none).
LOSSES = ("projection", "sum", "mean", "mse", "cross-entropy")
MODES = ("train", "eval")
OPTIMIZERS = {"sgd": {"lr": 0.01, "momentum": 0.0, "wd": 0.0},
              "adam": {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "wd": 0.0, "follow": "torch"}}
# each numeric setting's valid range: (low, low inclusive, high, high inclusive), in words
RANGES = {"lr": (0.0, False, math.inf, False), "momentum": (0.0, True, 1.0, False), "wd": (0.0, True, math.inf, False),
          "beta1": (0.0, True, 1.0, False), "beta2": (0.0, True, 1.0, False), "eps": (0.0, False, math.inf, False)}
DEFAULT_OPTIMIZER = "sgd:lr=0.01"


class Rejected(GanparityError):
    """A model refused the input: raised by a backend's walk with the innermost layer that was
    running (a record without output) and the kinds of the layers that had finished, so that the
    other model's counterpart can be found and its configuration read for a hint."""

    def __init__(self, framework: str, input_shape: tuple, layer: dict, detail: str, done: list[str] | None = None):
        self.framework, self.input_shape, self.layer, self.detail = framework, input_shape, layer, detail
        self.done = done or []
        where = f"'{layer['path']}' ({layer['type']}, input {layer.get('in_shape')})"
        super().__init__(f"the {framework} model rejects input shape {input_shape}: at {where}: {detail}")


def first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0][:300] if lines else ""


def _call(what: str, ref: str, step: str, failed: str, fn):
    """fn() with every way the user's code can end turned into one line: an exception, and also
    sys.exit() (SystemExit) raised inside it."""
    try:
        return fn()
    except GanparityError:
        raise
    except SystemExit as e:
        raise GanparityError(f"{what} {ref!r}: {step} called sys.exit({e.code!r})") from None
    except Exception as e:
        raise GanparityError(f"{what} {ref!r}: {failed}: {type(e).__name__}: {first_line(e)}") from None


def load_factory(ref: str, what: str) -> Any:
    """'pkg.mod:make_net' or 'path/to/file.py:make_net' -> what make_net() returns (the CLI puts
    the current directory on sys.path first, as `python -m` does). Every failure, the user's own
    exceptions and sys.exit() included, is one GanparityError of one line."""
    if ":" not in ref or not all(ref.rsplit(":", 1)):
        raise GanparityError(f"{what} {ref!r}: expected MODULE:FUNCTION, e.g. mypkg.models:make_net")
    mod_name, attr = ref.rsplit(":", 1)

    def load_module():
        if not mod_name.endswith(".py"):
            return importlib.import_module(mod_name)
        path = Path(mod_name)
        if not path.is_file():
            raise GanparityError(f"{what} {ref!r}: no file {mod_name}")
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    module = _call(what, ref, f"importing {mod_name!r}", f"cannot import {mod_name!r}", load_module)
    if not hasattr(module, attr):
        close = difflib.get_close_matches(attr, [n for n in dir(module) if not n.startswith("_")], 3, 0.8)
        also = f"; did you mean {', '.join(close)}?" if close else ""
        raise GanparityError(f"{what} {ref!r}: module {mod_name!r} has no attribute {attr!r}{also}")
    factory = getattr(module, attr)
    if not callable(factory):
        raise GanparityError(f"{what} {ref!r}: {attr!r} is a {type(factory).__name__}, not a callable factory")
    return _call(what, ref, "the factory", "the factory failed", factory)


def parse_shape(text: str) -> tuple[int, ...]:
    """'4,3,64,64' -> (4, 3, 64, 64): a batch axis first, every size a positive integer."""
    try:
        shape = tuple(int(v) for v in str(text).replace("x", ",").split(","))
    except ValueError:
        raise GanparityError(f"input shape {text!r}: expected integers like 4,3,64,64") from None
    if not shape or any(s <= 0 for s in shape):
        raise GanparityError(f"input shape {text!r}: expected positive integers like 4,3,64,64")
    return shape


@dataclass(frozen=True)
class InputSpec:
    """One input of a model: its shape and what its values are. 'float': N(0, 1); 'int': whole
    numbers drawn uniformly from low..high (both included), held as float32 as Gluon's models take
    token ids and lengths (an Embedding truncates them to integers). An 'int' input without a range
    gets one from the model (the Embedding that reads it: 0..input_dim - 1; else 0..9)."""

    shape: tuple[int, ...]
    kind: str = "float"
    low: int | None = None
    high: int | None = None

    def text(self) -> str:
        """The --input-shape spelling of this input: '2,8', '2,8:int', '2:int:1..8'."""
        shape = ",".join(map(str, self.shape))
        if self.kind == "float":
            return shape
        return f"{shape}:int" + (f":{self.low}..{self.high}" if self.low is not None else "")

    def draw(self, rng) -> np.ndarray:
        if self.kind == "int":
            lo, hi = (0, 9) if self.low is None else (self.low, self.high)
            return rng.integers(lo, hi + 1, self.shape).astype(np.float32)
        return rng.standard_normal(self.shape).astype(np.float32)


class Inputs(tuple):
    """The inputs of a model of several (one numpy array each), as compare and the port's proof
    pass one batch around: astype() and shape act on every array. A model of one input gets its
    array itself, as before."""

    def astype(self, dtype) -> Inputs:
        return Inputs(np.asarray(a).astype(dtype) for a in self)

    @property
    def shape(self) -> tuple:
        return tuple(tuple(np.shape(a)) for a in self)


def arrays_of(x) -> list:
    """One batch as the list of a model's inputs (an Inputs, or one array)."""
    return list(x) if isinstance(x, Inputs | list) else [x]


def parse_input(text: str | tuple | InputSpec) -> InputSpec:
    """'4,3,64,64' (float, N(0, 1)), '2,8:int' (token ids: the range of the Embedding that reads
    them), '2:int:1..8' (whole numbers 1 to 8, both included: valid lengths): one input's shape
    and values, every bad part refused in one line."""
    if isinstance(text, InputSpec):
        return text
    if isinstance(text, tuple | list):
        return InputSpec(parse_shape(",".join(map(str, text))))
    shape, _, rest = str(text).partition(":")
    spec = InputSpec(parse_shape(shape))
    if not rest:
        return spec
    kind, _, span = rest.partition(":")
    kind = choose(f"input {text!r} kind", kind.strip().lower(), ("float", "int"))
    if kind == "float":
        if span:
            raise GanparityError(f"input {text!r}: a float input is N(0, 1) and takes no range")
        return spec
    if not span:
        return InputSpec(spec.shape, "int")
    lo, dots, hi = span.partition("..")
    try:
        low, high = int(lo), int(hi)
    except ValueError:
        raise GanparityError(f"input {text!r}: expected a range of whole numbers like 2,8:int:0..99") from None
    if not dots or low > high:
        raise GanparityError(f"input {text!r}: expected a range LOW..HIGH with LOW <= HIGH, like 2:int:1..8")
    return InputSpec(spec.shape, "int", low, high)


def _in_range(key: str, value: float) -> bool:
    lo, lo_in, hi, hi_in = RANGES[key]
    return (value >= lo if lo_in else value > lo) and (value <= hi if hi_in else value < hi)


def _range_text(key: str) -> str:
    lo, lo_in, hi, hi_in = RANGES[key]
    left = f"{lo:g} {'<=' if lo_in else '<'} {key}"
    return left + (f" {'<=' if hi_in else '<'} {hi:g}" if hi != math.inf else " (finite)")


def parse_optimizer(text: str) -> dict:
    """'adam:lr=2e-4,beta1=0.5' -> {'name': 'adam', 'lr': 2e-4, 'beta1': 0.5, ...}: one neutral
    setting that both frameworks' optimizers are built from (make_optimizer in each backend).
    sgd: lr, momentum, wd. adam: lr, beta1, beta2, eps (PyTorch's placement unless follow=mxnet),
    wd (L2, added to the gradient, as both torch.optim.Adam and mx.optimizer.Adam do). Every value
    must be a finite number in its range (RANGES), checked here before anything runs."""
    name, _, rest = str(text).partition(":")
    name = choose("optimizer", name.strip().lower(), OPTIMIZERS)
    setting = {"name": name, **OPTIMIZERS[name]}
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq:
            raise GanparityError(f"optimizer {text!r}: {item!r} is not KEY=VALUE")
        choose(f"{name} setting", key, OPTIMIZERS[name])
        if key == "follow":
            setting[key] = choose("adam follow", value.strip(), FRAMEWORKS)
            continue
        try:
            number = float(value)
        except ValueError:
            raise GanparityError(f"optimizer {text!r}: {key}={value.strip()!r} is not a number") from None
        if not math.isfinite(number) or not _in_range(key, number):
            raise GanparityError(f"optimizer {text!r}: {key}={value.strip()} is out of range; expected "
                                 f"{_range_text(key)}")
        setting[key] = number
    return setting


def optimizer_text(setting: dict) -> str:
    return f"{setting['name']}:" + ",".join(f"{k}={v}" for k, v in setting.items() if k != "name")
