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
from pathlib import Path
from typing import Any

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
