"""Check your own port: any PyTorch module against any Gluon block, layer by layer.

A porting user has one model in two frameworks and one question: do the two compute the same
thing, and if not, where and why? compare_models() answers it without a spec:

1. walk   both models run one forward with hooks (backends/*/compare.py walk); every leaf layer
          and every layer that owns tensors comes back, in execution order, as a neutral record:
          kind ('conv', 'batchnorm', 'linear', ...), configuration in neutral words (BatchNorm
          momentum in PyTorch's convention, a Dense's flatten), tensors by role, output.
2. pair   layers that own tensors are paired by kind and tensor shapes in execution order
          (a sequence alignment, then leftovers by equal signature), which follows branches
          (ResNet's downsample runs where it runs in both); a mapping file pairs what cannot be
          inferred. Every tensor left unpaired is an error that lists it. Layers without tensors
          (activations, pooling) are aligned by kind and output shape between the paired ones.
3. copy   one model's weights go into the other as neutral numpy (weights='torch' by default).
4. check  forward in train and eval mode (every paired layer's output), the gradients of a loss
          (default: the sum of the outputs), and K optimizer steps from one neutral setting
          (parameters and BatchNorm statistics after each), judged by the parity suite's
          fp32-noise rule (common/parity.py compare) against an fp64 control run of both.
5. hint   the first tensor out of tolerance names its layer in both models, and both layers'
          configurations are read for the known differences (common/differences.py, and the
          layer-configuration ones below: BatchNorm eps, ConvTranspose output_padding, pooling
          ceil_mode / count_include_pad, dropout, upsampling align_corners).

Each framework runs natively. Two known semantic differences are translated so that the same
mathematics is compared, and the report says so: the optimizer (one neutral setting builds
torch.optim and mx.optimizer; Adam's eps placement and float32 betas follow `follow`, default
'torch'), and BatchNorm's running variance (Gluon on CPU moves it in backward with the biased
batch variance, PyTorch with the unbiased one: the Gluon value is corrected by n / (n - 1) on
its batch term before the comparison, with Gluon's own momentum, so a momentum passed
unconverted still shows).

numpy and the standard library only; the frameworks are reached through get_backend().
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import importlib.util
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .differences import BY_KEY, emulated
from .errors import GanparityError, choose
from .files import write_json, write_text
from .parity import NOISE_FACTOR, RTOL, TensorDiff
from .parity import compare as compare_arrays
from .spec.model import Semantics
from .table import md_table

FRAMEWORKS = ("torch", "mxnet")
LOSSES = ("sum", "mean", "mse", "cross-entropy")
MODES = ("train", "eval")
OPTIMIZERS = {"sgd": {"lr": 0.01, "momentum": 0.0, "wd": 0.0},
              "adam": {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "wd": 0.0, "follow": "torch"}}
DEFAULT_OPTIMIZER = "sgd:lr=0.01"
ROLE_ORDER = ("weight", "bias", "running_mean", "running_var")
DROPOUT_CHECK = "dropout rates"  # train-mode checks run with every dropout at rate 0: the rates are compared alone


class Rejected(GanparityError):
    """A model refused the input: raised by a backend's walk with the innermost layer that was
    running (a record without output) and the kinds of the layers that had finished, so that the
    other model's counterpart can be found and its configuration read for a hint."""

    def __init__(self, framework: str, input_shape: tuple, layer: dict, detail: str, done: list[str] | None = None):
        self.framework, self.input_shape, self.layer, self.detail = framework, input_shape, layer, detail
        self.done = done or []
        where = f"'{layer['path']}' ({layer['type']}, input {layer.get('in_shape')})"
        super().__init__(f"the {framework} model rejects input shape {input_shape}: at {where}: {detail}")


# -- user input: factories, shapes, optimizer settings, mapping files -----------------------------


def load_factory(ref: str, what: str) -> Any:
    """'pkg.mod:make_net' or 'path/to/file.py:make_net' -> what make_net() returns (the CLI puts
    the current directory on sys.path first, as `python -m` does). Every failure, the user's own
    exceptions included, is one GanparityError of one line."""
    if ":" not in ref or not all(ref.rsplit(":", 1)):
        raise GanparityError(f"{what} {ref!r}: expected MODULE:FUNCTION, e.g. mypkg.models:make_net")
    mod_name, attr = ref.rsplit(":", 1)
    try:
        if mod_name.endswith(".py"):
            path = Path(mod_name)
            if not path.is_file():
                raise GanparityError(f"{what} {ref!r}: no file {mod_name}")
            spec = importlib.util.spec_from_file_location(path.stem, path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(mod_name)
    except GanparityError:
        raise
    except Exception as e:  # ImportError, or whatever the user's module raises at import
        raise GanparityError(f"{what} {ref!r}: cannot import {mod_name!r}: {type(e).__name__}: "
                             f"{_first_line(e)}") from None
    if not hasattr(module, attr):
        close = difflib.get_close_matches(attr, [n for n in dir(module) if not n.startswith("_")], 3, 0.8)
        also = f"; did you mean {', '.join(close)}?" if close else ""
        raise GanparityError(f"{what} {ref!r}: module {mod_name!r} has no attribute {attr!r}{also}")
    factory = getattr(module, attr)
    if not callable(factory):
        raise GanparityError(f"{what} {ref!r}: {attr!r} is a {type(factory).__name__}, not a callable factory")
    try:
        return factory()
    except Exception as e:
        raise GanparityError(f"{what} {ref!r}: the factory failed: {type(e).__name__}: {_first_line(e)}") from None


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0][:300] if lines else ""


def parse_shape(text: str) -> tuple[int, ...]:
    """'4,3,64,64' -> (4, 3, 64, 64): a batch axis first, every size a positive integer."""
    try:
        shape = tuple(int(v) for v in str(text).replace("x", ",").split(","))
    except ValueError:
        raise GanparityError(f"input shape {text!r}: expected integers like 4,3,64,64") from None
    if not shape or any(s <= 0 for s in shape):
        raise GanparityError(f"input shape {text!r}: expected positive integers like 4,3,64,64")
    return shape


def parse_optimizer(text: str) -> dict:
    """'adam:lr=2e-4,beta1=0.5' -> {'name': 'adam', 'lr': 2e-4, 'beta1': 0.5, ...}: one neutral
    setting that both frameworks' optimizers are built from (make_optimizer in each backend).
    sgd: lr, momentum, wd. adam: lr, beta1, beta2, eps (PyTorch's placement unless follow=mxnet),
    wd (L2, added to the gradient, as both torch.optim.Adam and mx.optimizer.Adam do)."""
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
            setting[key] = float(value)
        except ValueError:
            raise GanparityError(f"optimizer {text!r}: {key}={value!r} is not a number") from None
    if setting["lr"] <= 0:
        raise GanparityError(f"optimizer {text!r}: lr must be positive")
    return setting


def optimizer_text(setting: dict) -> str:
    return f"{setting['name']}:" + ",".join(f"{k}={v}" for k, v in setting.items() if k != "name")


@dataclass
class MappingFile:
    """What cannot be inferred: {"layers": {torch path: mxnet path}, "tensors": {torch name:
    mxnet name}, "ignore": {"torch": [names], "mxnet": [names]}} (all keys optional)."""

    layers: dict[str, str] = field(default_factory=dict)
    tensors: dict[str, str] = field(default_factory=dict)
    ignore: dict[str, list[str]] = field(default_factory=lambda: {"torch": [], "mxnet": []})
    source: str = ""


def load_mapping(mapping: str | os.PathLike | dict | None) -> MappingFile:
    if mapping is None:
        return MappingFile()
    source = "a dict"
    if not isinstance(mapping, dict):
        source = str(mapping)
        try:
            mapping = json.loads(Path(mapping).read_text())
        except OSError as e:
            raise GanparityError(f"mapping file {source!r}: {e.strerror or e}") from None
        except json.JSONDecodeError as e:
            raise GanparityError(f"mapping file {source!r}: not JSON ({e.msg}, line {e.lineno})") from None
    if not isinstance(mapping, dict):
        raise GanparityError(f"mapping {source!r}: expected a JSON object with layers / tensors / ignore")
    for key in mapping:
        choose(f"mapping {source!r} key", key, ("layers", "tensors", "ignore"))
    ignore = mapping.get("ignore", {})
    for key in ignore:
        choose(f"mapping {source!r} ignore key", key, FRAMEWORKS)
    for key in ("layers", "tensors"):
        if not isinstance(mapping.get(key, {}), dict):
            raise GanparityError(f"mapping {source!r}: {key!r} must map torch names to mxnet names")
    return MappingFile(dict(mapping.get("layers", {})), dict(mapping.get("tensors", {})),
                       {f: list(ignore.get(f, [])) for f in FRAMEWORKS}, source)


# -- layers and pairs ----------------------------------------------------------------------------


@dataclass
class Layer:
    """One record of a walk (see backends/*/compare.py walk), without its output."""

    framework: str
    index: int  # position in execution order
    path: str  # module path, '#k' for its k-th call
    module: str
    call: int
    kind: str
    type: str
    repr: str
    config: dict
    in_shape: tuple | None
    out_shape: tuple | None
    tensors: dict[str, str]  # role -> native tensor name (first call only)
    shapes: dict[str, tuple]
    trainable: dict[str, bool]

    @classmethod
    def of(cls, framework: str, index: int, rec: dict) -> Layer:
        return cls(framework, index, rec["path"], rec["module"], rec["call"], rec["kind"], rec["type"],
                   rec["repr"], rec["config"], _tuple(rec.get("in_shape")), _tuple(rec.get("out_shape")),
                   dict(rec["tensors"]), {k: _tuple(v) for k, v in rec["shapes"].items()}, dict(rec["trainable"]))

    @property
    def label(self) -> str:
        return f"'{self.path}' ({self.type})"

    def signature(self) -> tuple:
        return self.kind, tuple(sorted(tuple(s or ()) for s in self.shapes.values()))


def _tuple(v):
    return tuple(v) if v is not None else None


@dataclass
class Pair:
    torch: Layer | None
    mxnet: Layer | None
    tensors: list[tuple[str, str, str]] = field(default_factory=list)  # (role, torch name, mxnet name)
    source: str = "auto"  # 'auto' (kind and shapes), 'mapping' (the file), 'aligned' (no tensors)
    hints: list[Hint] = field(default_factory=list)

    @property
    def label(self) -> str:
        t = self.torch.label if self.torch else "-"
        m = self.mxnet.label if self.mxnet else "-"
        return f"torch {t} <-> mxnet {m}"


@dataclass
class Hint:
    key: str  # a common/differences.py key, or a layer-configuration key (CONFIG_HINTS)
    layer: str  # the torch layer's path
    text: str
    affects: frozenset[str]  # which checks it can explain: train, eval, grad, stats

    def line(self) -> str:
        return f"[{self.key}] {self.text}"


# Layer-configuration differences that common/differences.py (framework defaults and semantics)
# does not list, with the checks they can explain.
CONFIG_HINTS = {
    "bn-eps": "BatchNorm eps: both frameworks default to 1e-5, so a port that drops a non-default eps changes "
              "the normalisation (torch eps=, gluon epsilon=)",
    "bn-affine": "BatchNorm affine: torch affine=False has no weight/bias; gluon scale=False / center=False fixes them",
    "convtranspose-padding": "ConvTranspose padding: out = (in - 1) * stride - 2 * padding + kernel + output_padding "
                             "in both; Gluon spells output_padding as Conv2DTranspose(output_padding=) ('adj')",
    "conv-config": "Convolution configuration (channels, kernel, stride, padding, dilation, groups, bias)",
    "linear-config": "Linear / Dense configuration (in_features / in_units, out_features / units, bias)",
    "pool-ceil-mode": "Pooling ceil_mode: torch ceil_mode=True is Gluon ceil_mode=True (pooling_convention='full'); "
                      "both default to floor",
    "pool-count-include-pad": "Average pooling count_include_pad: both default to True; torch's "
                              "AvgPool2d(count_include_pad=False) needs Gluon AvgPool2D(count_include_pad=False)",
    "pool-config": "Pooling window (kernel, stride, padding); Gluon's stride defaults to the kernel size, as torch's",
    "dropout": "Dropout: each framework draws its own masks; compare sets every nn.Dropout / gluon Dropout to rate 0 "
               "in train-mode checks (a functional dropout inside a custom forward it cannot reach)",
    "upsample": "Upsampling: torch nn.Upsample(mode='bilinear') defaults to align_corners=False "
                "(UpsamplingBilinear2d: True); mx.nd.contrib.BilinearResize2D defaults to align_corners=True, "
                "and UpSampling(sample_type='bilinear') is a fixed-weight deconvolution",
    "norm-eps": "Normalisation eps (LayerNorm / GroupNorm / InstanceNorm)",
    "trainable": "Trainable flags: torch requires_grad against Gluon grad_req ('null' is frozen)",
    "optimizer": "The gradients agree and the update does not: the optimizer settings or their translation "
                 "(adam-eps, adam-betas, sgd-momentum, weight decay)",
    "combination": "Every paired layer agrees and the output does not: the models combine the layers differently "
                   "(the order of a concatenation or a residual sum, or a functional op between layers)",
    "unexplained": "No configuration difference found at this layer: it computes differently (a custom forward, "
                   "a functional op inside it), or its input is put together differently from the layers before "
                   "it (a concatenation's order, a residual sum, a functional op between layers, or two branches "
                   "that auto-pairing crossed: pair them with a mapping file)",
    "bn-eval-backward": "BatchNorm gradients in eval mode: Gluon back-propagates the batch-statistics formula "
                        "unless backward is told the mode: loss.backward(train_mode=False) (compare does so), "
                        "or BatchNorm(use_global_stats=True); PyTorch's eval() gradient is the running-statistics "
                        "one (apache/mxnet#9580)",
}
_NUMBERS = frozenset({"train", "eval", "grad"})


def _fmt(v) -> str:
    return repr(v) if not isinstance(v, float) else f"{v:g}"


def _flat(shape: tuple) -> tuple:
    return (shape[0], int(np.prod(shape[1:]))) if shape and len(shape) > 2 else shape


def _differ(t: Layer, m: Layer, key: str) -> bool:
    a, b = t.config.get(key), m.config.get(key)
    if isinstance(a, float) and isinstance(b, float):
        return not math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-12)
    return a != b and key in t.config and key in m.config


def config_hints(t: Layer, m: Layer) -> list[Hint]:
    """Both layers' configurations read for the known differences; one Hint per difference."""
    out: list[Hint] = []
    add = lambda key, text, affects: out.append(Hint(key, t.path, text, frozenset(affects)))
    tc, mc = t.config, m.config
    if t.kind == m.kind == "batchnorm":
        if tc.get("momentum") is None:
            add("bn-momentum", "torch momentum=None (a cumulative average) has no Gluon equivalent", {"stats"})
        elif _differ(t, m, "momentum"):
            known = BY_KEY["bn-momentum"]
            add("bn-momentum", f"torch momentum={_fmt(tc['momentum'])} is Gluon momentum="
                f"{_fmt(round(1 - tc['momentum'], 12))}; the mxnet BatchNorm has "
                f"momentum={_fmt(mc['momentum_native'])} (= torch {_fmt(mc['momentum'])}). "
                f"{known.torch}; Gluon: {known.gluon}", {"stats"})
        if _differ(t, m, "eps"):
            add("bn-eps", f"torch eps={_fmt(tc['eps'])}, mxnet epsilon={_fmt(mc['eps'])}: both default to 1e-5, "
                "so one side dropped (or mistyped) a non-default eps", _NUMBERS)
        if _differ(t, m, "affine"):
            add("bn-affine", f"torch affine={tc['affine']}, mxnet scale/center={mc['affine']}", _NUMBERS)
        if tc.get("batch_stats_always") or mc.get("global_stats"):
            which = ("torch track_running_stats=False: batch statistics in eval() too" if tc.get("batch_stats_always")
                     else "mxnet use_global_stats=True: running statistics even inside autograd.record()")
            add("train-eval", f"{which}. torch: {BY_KEY['train-eval'].torch}; Gluon: {BY_KEY['train-eval'].gluon}",
                _NUMBERS | {"stats"})
    if t.kind == m.kind == "leakyrelu" and _differ(t, m, "slope"):
        add("leaky-slope", f"torch negative_slope={_fmt(tc['slope'])}, mxnet alpha={_fmt(mc['slope'])}: "
            f"{BY_KEY['leaky-slope'].torch}; {BY_KEY['leaky-slope'].gluon}", _NUMBERS)
    if t.kind == m.kind == "linear" and t.in_shape and m.in_shape:
        # Flattening explains a difference when both see the same batch and only one flattens it, or
        # when torch flattened before its Linear and Gluon's Dense(flatten=False) did not.
        same = t.in_shape == m.in_shape and len(t.in_shape) > 2 and mc.get("flatten")
        unflat = not mc.get("flatten") and len(m.in_shape) > 2 and _flat(m.in_shape) == t.in_shape
        if same or unflat:
            how = (f"Dense(flatten=True) flattens its {m.in_shape} input to {_flat(m.in_shape)}" if same
                   else f"Dense(flatten=False) acts on the last axis of {m.in_shape}")
            fix = ("add nn.Flatten() before the nn.Linear, or give Dense flatten=False" if same
                   else "give Dense flatten=True (its default)")
            add("dense-flatten", f"mxnet {how}; torch nn.Linear acts on the last axis of {t.in_shape}: {fix}. "
                f"{BY_KEY['dense-flatten'].gluon}", _NUMBERS)
        other = [k for k in ("in_features", "out_features", "bias") if _differ(t, m, k)]
        if other and not same:
            add("linear-config", ", ".join(f"{k}: torch {tc[k]}, mxnet {mc[k]}" for k in other), _NUMBERS)
    if t.kind == m.kind and t.kind in ("conv", "convtranspose"):
        keys = [k for k in ("padding", "output_padding") if _differ(t, m, k)] if t.kind == "convtranspose" else []
        if keys:
            spell = {"padding": "padding", "output_padding": "output_padding (adj)"}
            add("convtranspose-padding", ", ".join(f"torch {k}={tc[k]}, mxnet {spell[k]}={mc[k]}" for k in keys)
                + f": {CONFIG_HINTS['convtranspose-padding']}", _NUMBERS)
        other = [k for k in ("in_channels", "out_channels", "kernel", "stride", "dilation", "groups", "bias",
                             "padding_mode")
                 + (("padding",) if t.kind == "conv" else ()) if _differ(t, m, k)]
        if other:
            add("conv-config", ", ".join(f"{k}: torch {tc[k]}, mxnet {mc[k]}" for k in other), _NUMBERS)
    if t.kind == m.kind and t.kind in ("maxpool", "avgpool"):
        if _differ(t, m, "ceil_mode"):
            add("pool-ceil-mode", f"torch ceil_mode={tc['ceil_mode']}, mxnet ceil_mode={mc['ceil_mode']}: "
                f"{CONFIG_HINTS['pool-ceil-mode']}", _NUMBERS)
        if _differ(t, m, "count_include_pad"):
            add("pool-count-include-pad", f"torch count_include_pad={tc['count_include_pad']}, mxnet "
                f"{mc['count_include_pad']}: {CONFIG_HINTS['pool-count-include-pad']}", _NUMBERS)
        other = [k for k in ("kernel", "stride", "padding") if _differ(t, m, k)]
        if other:
            add("pool-config", ", ".join(f"{k}: torch {tc[k]}, mxnet {mc[k]}" for k in other), _NUMBERS)
    if t.kind == m.kind == "dropout" and _differ(t, m, "rate"):
        add("dropout", f"torch p={_fmt(tc['rate'])}, mxnet rate={_fmt(mc['rate'])}: {CONFIG_HINTS['dropout']}",
            {"train", "grad"})
    if t.kind == m.kind == "upsample":
        diffs = [k for k in ("mode", "scale", "align_corners") if k in tc and k in mc and _differ(t, m, k)]
        if diffs:
            add("upsample", ", ".join(f"{k}: torch {tc[k]}, mxnet {mc[k]}" for k in diffs)
                + f": {CONFIG_HINTS['upsample']}", _NUMBERS)
    if t.kind == m.kind and t.kind in ("layernorm", "groupnorm", "instancenorm"):
        diffs = [k for k in ("eps", "groups", "affine") if _differ(t, m, k)]
        if diffs:
            add("norm-eps", ", ".join(f"{k}: torch {tc[k]}, mxnet {mc[k]}" for k in diffs), _NUMBERS)
    frozen = [r for r in t.trainable if r in m.trainable and t.trainable[r] != m.trainable[r]]
    if frozen:
        add("trainable", ", ".join(f"{r}: torch {'trainable' if t.trainable[r] else 'frozen'}, mxnet "
                                   f"{'trainable' if m.trainable[r] else 'frozen'}" for r in frozen), {"grad", "stats"})
    return out


def kind_hints(pair: Pair, category: str, info: dict) -> list[Hint]:
    """What can make two equally configured layers of this kind differ in this check."""
    t = pair.torch
    if t is None:
        return []
    mk = lambda key, text: [Hint(key, t.path, text, frozenset({category}))]
    if t.kind == "batchnorm" and category == "stats":
        return mk("bn-stats", f"{BY_KEY['bn-stats'].torch}; Gluon: {BY_KEY['bn-stats'].gluon}. compare corrects "
                  f"Gluon's biased variance ({info['mxnet']['bn_stats']}) before comparing")
    if t.kind == "batchnorm" and category == "train":
        return mk("train-eval", f"torch: {BY_KEY['train-eval'].torch}; Gluon: {BY_KEY['train-eval'].gluon}")
    if t.kind == "batchnorm" and category == "grad" and info.get("mode") == "eval":
        return mk("bn-eval-backward", CONFIG_HINTS["bn-eval-backward"])
    if t.kind == "dropout":
        return mk("dropout", CONFIG_HINTS["dropout"])
    if t.kind == "upsample":
        return mk("upsample", CONFIG_HINTS["upsample"])
    if t.kind in ("maxpool", "avgpool"):
        return mk("pool-ceil-mode", CONFIG_HINTS["pool-ceil-mode"])
    return mk("unexplained", CONFIG_HINTS["unexplained"])


def _pair_tensors(t: Layer, m: Layer) -> tuple[list[tuple[str, str, str]], list[str], list[str]]:
    """Tensors of a layer pair: by role where the roles agree, else by equal shapes in order."""
    pairs, t_left, m_left = [], [], list(m.tensors)
    for role in sorted(t.tensors, key=_role_key):
        if role in m.tensors and m.shapes.get(role) == t.shapes.get(role) and role in m_left:
            pairs.append((role, t.tensors[role], m.tensors[role]))
            m_left.remove(role)
        else:
            t_left.append(role)
    for role in list(t_left):
        match = next((r for r in m_left if m.shapes.get(r) == t.shapes.get(role)), None)
        if match is not None:
            pairs.append((role, t.tensors[role], m.tensors[match]))
            m_left.remove(match)
            t_left.remove(role)
    return pairs, [t.tensors[r] for r in t_left], [m.tensors[r] for r in m_left]


def _role_key(role: str) -> tuple:
    return (ROLE_ORDER.index(role), role) if role in ROLE_ORDER else (len(ROLE_ORDER), role)


@dataclass
class Mapping:
    pairs: list[Pair]  # every pair, in torch execution order (tensor owners and aligned layers)
    tensor_map: dict[str, str]  # torch tensor name -> mxnet tensor name
    ignored: dict[str, list[str]]


def _find(layers: list[Layer], name: str, framework: str, source: str) -> Layer:
    for layer in layers:
        if layer.module == name or layer.path == name:
            return layer
    close = difflib.get_close_matches(name, [layer.path for layer in layers], 3)
    also = f"; close: {', '.join(close)}" if close else ""
    raise GanparityError(f"mapping {source!r}: no {framework} layer {name!r} ran in the forward{also}")


def pair_layers(tl: list[Layer], ml: list[Layer], mapping: MappingFile, t_state: dict, m_state: dict) -> Mapping:
    """Pair the two walks (see the module docstring, step 2). Raises, listing every tensor left
    unpaired (with the hints that the unpaired layers' configurations give), unless ignored."""
    t_own, m_own = [t for t in tl if t.tensors], [m for m in ml if m.tensors]
    pairs: list[Pair] = []
    taken_t, taken_m = set(), set()

    def take(t: Layer, m: Layer, source: str) -> Pair:
        p = Pair(t, m, source=source)
        pairs.append(p)
        taken_t.add(t.index)
        taken_m.add(m.index)
        return p

    src = mapping.source or "mapping"
    for tp, mp in mapping.layers.items():
        take(_find(tl, tp, "torch", src), _find(ml, mp, "mxnet", src), "mapping")
    owner_t = {name: t for t in t_own for name in t.tensors.values()}
    owner_m = {name: m for m in m_own for name in m.tensors.values()}
    for tn, mn in mapping.tensors.items():
        for name, fw, state in ((tn, "torch", t_state), (mn, "mxnet", m_state)):
            if name not in state:
                close = difflib.get_close_matches(name, list(state), 3)
                raise GanparityError(f"mapping {src!r}: the {fw} model has no tensor {name!r}"
                                     + (f"; close: {', '.join(close)}" if close else ""))
        if t_state[tn].shape != m_state[mn].shape:
            raise GanparityError(f"mapping {src!r}: torch {tn!r} {t_state[tn].shape} and mxnet {mn!r} "
                                 f"{m_state[mn].shape} differ in shape")
        t, m = owner_t.get(tn), owner_m.get(mn)
        if t is not None and m is not None and t.index not in taken_t and m.index not in taken_m:
            take(t, m, "mapping")
    rest_t = [t for t in t_own if t.index not in taken_t]
    rest_m = [m for m in m_own if m.index not in taken_m]
    sm = difflib.SequenceMatcher(None, [t.signature() for t in rest_t], [m.signature() for m in rest_m], autojunk=False)
    for a, b, size in sm.get_matching_blocks():
        for i in range(size):
            take(rest_t[a + i], rest_m[b + i], "auto")
    for t in [t for t in t_own if t.index not in taken_t]:
        m = next((m for m in m_own if m.index not in taken_m and m.signature() == t.signature()), None)
        if m is not None:
            take(t, m, "auto")
    tensor_map, left_t, left_m = {}, [], []
    for p in pairs:
        p.tensors, lt, lm = _pair_tensors(p.torch, p.mxnet)
        left_t += lt
        left_m += lm
        p.hints = config_hints(p.torch, p.mxnet)
    explicit = dict(mapping.tensors)
    for p in pairs:  # explicit tensor pairs override what the roles said
        for tn, mn in list(explicit.items()):
            if tn in left_t and mn in left_m:
                p.tensors.append(("tensor", tn, mn))
                left_t.remove(tn)
                left_m.remove(mn)
                del explicit[tn]
    for p in pairs:
        tensor_map.update({tn: mn for _, tn, mn in p.tensors})
    for tn, mn in explicit.items():  # tensors outside any recorded layer, paired by the file
        if tn not in tensor_map and mn not in tensor_map.values():
            tensor_map[tn] = mn
            left_t = [n for n in left_t if n != tn]
            left_m = [n for n in left_m if n != mn]
    owned_t = {n for t in t_own for n in t.tensors.values()}
    owned_m = {n for m in m_own for n in m.tensors.values()}
    left_t += [t for layer in t_own if layer.index not in taken_t for t in layer.tensors.values()]
    left_m += [m for layer in m_own if layer.index not in taken_m for m in layer.tensors.values()]
    left_t += [n for n in t_state if n not in owned_t and n not in tensor_map]
    left_m += [n for n in m_state if n not in owned_m and n not in tensor_map.values()]
    for fw in FRAMEWORKS:
        for name in mapping.ignore[fw]:
            if name not in (t_state if fw == "torch" else m_state):
                raise GanparityError(f"mapping {src!r}: ignore lists {name!r}, which the {fw} model does not have")
    left_t = [n for n in dict.fromkeys(left_t) if n not in mapping.ignore["torch"]]
    left_m = [n for n in dict.fromkeys(left_m) if n not in mapping.ignore["mxnet"]]
    if left_t or left_m:
        raise GanparityError(_unpaired_message(left_t, left_m, tl, ml, t_own, m_own, taken_t, taken_m,
                                               t_state, m_state))
    pairs.sort(key=lambda p: p.torch.index)
    pairs = _align_rest(tl, ml, pairs)
    return Mapping(pairs, tensor_map, mapping.ignore)


def _unpaired_message(left_t, left_m, tl, ml, t_own, m_own, taken_t, taken_m, t_state, m_state) -> str:
    count = lambda state: sum(int(state[n].size) for n in state)

    def describe(names: list[str], state: dict, layers: list[Layer]) -> str:
        owner = {n: layer for layer in layers for n in layer.tensors.values()}
        shown = [f"{n} {tuple(state[n].shape)}" + (f" in {owner[n].label}" if n in owner else " (never used by "
                                                     "the forward)") for n in names[:6]]
        return ", ".join(shown) + (f" and {len(names) - 6} more" if len(names) > 6 else "")

    parts = [f"the models' tensors do not pair (torch {len(t_state)} tensors, {count(t_state):,} values; "
             f"mxnet {len(m_state)}, {count(m_state):,})"]
    if left_t:
        parts.append(f"unmatched torch: {describe(left_t, t_state, tl)}")
    if left_m:
        parts.append(f"unmatched mxnet: {describe(left_m, m_state, ml)}")
    hints = []
    for t in [t for t in t_own if t.index not in taken_t]:  # the same kind's unpaired counterpart, in order
        k = [x for x in t_own if x.index not in taken_t and x.kind == t.kind].index(t)
        same = [m for m in m_own if m.index not in taken_m and m.kind == t.kind]
        if k < len(same):
            hints += [f"{h.line()} (torch {t.label}, mxnet {same[k].label})" for h in config_hints(t, same[k])]
    if hints:
        parts.append("hint " + "; ".join(dict.fromkeys(hints)))
    parts.append("pair the rest with a mapping file (--mapping)")
    return "; ".join(parts)


def _align_rest(tl: list[Layer], ml: list[Layer], pairs: list[Pair]) -> list[Pair]:
    """Layers without tensors (and repeated calls), aligned by kind and output shape between the
    tensor-owning pairs, which are monotone anchors in both walks."""
    anchors, last_m = [], -1
    for p in pairs:
        if p.mxnet.index > last_m:
            anchors.append((p.torch.index, p.mxnet.index))
            last_m = p.mxnet.index
    paired_t = {p.torch.index for p in pairs}
    paired_m = {p.mxnet.index for p in pairs}
    bounds = [(-1, -1), *anchors, (len(tl), len(ml))]
    extra = []
    for (t0, m0), (t1, m1) in zip(bounds, bounds[1:]):
        seg_t = [t for t in tl[t0 + 1:t1] if t.index not in paired_t]
        seg_m = [m for m in ml[m0 + 1:m1] if m.index not in paired_m]
        sm = difflib.SequenceMatcher(None, [(t.kind, t.out_shape) for t in seg_t],
                                     [(m.kind, m.out_shape) for m in seg_m], autojunk=False)
        for a, b, size in sm.get_matching_blocks():
            for i in range(size):
                t, m = seg_t[a + i], seg_m[b + i]
                extra.append(Pair(t, m, source="aligned", hints=config_hints(t, m)))
    return sorted(pairs + extra, key=lambda p: p.torch.index)


# -- the checks ----------------------------------------------------------------------------------


@dataclass
class CheckResult:
    name: str  # 'forward train', 'forward eval', 'gradients', 'step 1', ...
    category: str  # 'forward', 'gradients', 'step'
    tensors: list[TensorDiff] = field(default_factory=list)
    where: dict[str, int] = field(default_factory=dict)  # tensor name -> index into Report.pairs (-1: the output)
    shapes: dict[str, str] = field(default_factory=dict)  # tensor name -> what the shapes were, where they differ
    skipped: str | None = None
    loss: dict[str, float] = field(default_factory=dict)
    inputs_agree: dict[str, bool] = field(default_factory=dict)  # forward checks: torch path -> same input

    @property
    def ok(self) -> bool:
        return self.skipped is None and all(t.ok for t in self.tensors)

    @property
    def max_rel(self) -> float:
        return max((t.max_rel for t in self.tensors), default=0.0)

    @property
    def first_divergent(self) -> TensorDiff | None:
        return next((t for t in self.tensors if not t.ok), None)


def _judge(name: str, category: str, ref: dict, cand: dict, ref64: dict | None, cand64: dict | None,
           where: dict[str, int], group: bool, rtol: float) -> CheckResult:
    """parity.compare over the tensors both sides have with equal shapes; a shape mismatch is a
    divergence of its own (max rel = inf) with both shapes written down."""
    res = CheckResult(name, category, where=where)
    same = [k for k in ref if k in cand and np.shape(ref[k]) == np.shape(cand[k])]
    have64 = ref64 is not None and cand64 is not None and all(k in ref64 and k in cand64 for k in same)
    diffs = {d.name: d for d in compare_arrays({k: ref[k] for k in same}, {k: cand[k] for k in same},
                                               {k: ref64[k] for k in same} if have64 else None,
                                               {k: cand64[k] for k in same} if have64 else None, group=group,
                                               rtol=rtol)} if same else {}
    nan = float("nan")
    for k in ref:
        if k in diffs:
            res.tensors.append(diffs[k])
        elif k in cand:
            res.shapes[k] = f"torch {tuple(np.shape(ref[k]))}, mxnet {tuple(np.shape(cand[k]))}"
            res.tensors.append(TensorDiff(k, float("inf"), float("inf"), nan, nan, nan, nan, False))
    return res


def _bn_translation(pairs: list[Pair]) -> list[tuple[str, float, float]]:
    """(mxnet running_var name, Gluon momentum, n / (n - 1)) for every BatchNorm pair whose Gluon
    side moves its statistics in backward with the biased variance."""
    out = []
    for p in pairs:
        m = p.mxnet
        if p.torch is None or m is None or m.kind != "batchnorm" or m.config.get("global_stats"):
            continue
        var = next((mn for role, _, mn in p.tensors if role == "running_var"), None)
        shape = m.in_shape
        if var is None or not shape or len(shape) < 2:
            continue
        n = int(np.prod(shape)) // int(shape[1])
        if n > 1:
            out.append((var, float(m.config["momentum_native"]), n / (n - 1)))
    return out


def _translate_bn(states: list[dict], initial: dict, bn: list[tuple[str, float, float]]) -> list[dict]:
    """Gluon's running variances as PyTorch would have them: r'_k = m r'_(k-1) + (r_k - m r_(k-1))
    n / (n - 1), i.e. its own update, with its own momentum m, of the unbiased batch variance."""
    out, prev, prev_t = [], dict(initial), {name: initial[name] for name, _, _ in bn}
    for state in states:
        fixed = dict(state)
        for name, m, factor in bn:
            fixed[name] = m * prev_t[name] + (state[name] - m * prev[name]) * factor
            prev_t[name] = fixed[name]
        prev = state
        out.append(fixed)
    return out


@dataclass
class _Run:
    """What one dtype's run of both models produced."""

    # mode -> (torch {path: out}, mxnet {path: out}, torch outs, mxnet outs)
    forward: dict = field(default_factory=dict)
    inputs: dict = field(default_factory=dict)  # mode -> (torch {path: its input}, mxnet {path: its input})
    grads: tuple | None = None  # (torch loss, mxnet loss, torch grads, mxnet grads by torch name)
    steps: list = field(default_factory=list)  # [(torch loss, mxnet loss, torch state, mxnet state by torch name)]
    dropout: list = field(default_factory=list)


def _walk(be, model, x, mode) -> tuple[dict, list, dict]:
    """{path: output}, the model's outputs, {path: input} of one walk."""
    recs, outs = be.walk(model, x, mode)
    return {r["path"]: r["output"] for r in recs}, outs, {r["path"]: r.get("input") for r in recs}


def _run(T, M, tm, mm, mapping: Mapping, init_t: dict, init_m: dict, x: np.ndarray, opts: dict, dtype: str,
         target) -> _Run:
    T.cast_model(tm, dtype)
    M.cast_model(mm, dtype)
    xs = x.astype(dtype)
    out = _Run()

    def reset():
        T.set_state(tm, init_t)
        M.set_state(mm, init_m)

    inverse = {mn: tn for tn, mn in mapping.tensor_map.items()}
    to_torch = lambda d: {inverse[k]: v for k, v in d.items() if k in inverse}
    for mode in MODES:
        reset()
        with T.no_dropout(tm) as dt, M.no_dropout(mm) as dm:
            t_out, t_final, t_in = _walk(T, tm, xs, mode)
            m_out, m_final, m_in = _walk(M, mm, xs, mode)
        out.dropout = dt + dm
        out.forward[mode] = (t_out, m_out, t_final, m_final)
        out.inputs[mode] = (t_in, m_in)
    if opts["skip_backward"]:
        return out
    mode, loss = opts["mode"], opts["loss"]
    reset()
    with T.no_dropout(tm), M.no_dropout(mm):
        lt, gt = T.gradients(tm, xs, mode, loss, target)
        lm, gm = M.gradients(mm, xs, mode, loss, target)
    out.grads = (lt, lm, gt, to_torch(gm))
    if opts["steps"]:
        reset()
        ot, _ = T.make_optimizer(tm, opts["optimizer"], opts["emulate"]["torch"])
        om, _ = M.make_optimizer(mm, opts["optimizer"], opts["emulate"]["mxnet"])
        raw = []
        with T.no_dropout(tm), M.no_dropout(mm):
            for _ in range(opts["steps"]):
                lt = T.train_step(tm, ot, xs, mode, loss, target)
                lm = M.train_step(mm, om, xs, mode, loss, target)
                raw.append((lt, lm, T.get_state(tm), M.get_state(mm)))
        m_states = [r[3] for r in raw]
        if opts["bn"] and mode == "train":
            m_states = _translate_bn(m_states, init_m, opts["bn"])
        out.steps = [(lt, lm, st, to_torch(sm)) for (lt, lm, st, _), sm in zip(raw, m_states)]
    return out


# -- the report ----------------------------------------------------------------------------------


@dataclass
class Divergence:
    check: str
    tensor: str
    torch_layer: str | None
    mxnet_layer: str | None
    max_rel: float
    tolerance: str
    shapes: str | None
    hints: list[Hint]

    @property
    def keys(self) -> list[str]:
        return [h.key for h in self.hints]

    def line(self) -> str:
        where = (f"torch '{self.torch_layer}' <-> mxnet '{self.mxnet_layer}'" if self.torch_layer
                 else "the model output")
        gap = f"shapes differ ({self.shapes})" if self.shapes else f"max rel err {self.max_rel:.3g} ({self.tolerance})"
        return f"{self.check}: first divergence at {where}, tensor '{self.tensor}': {gap}"


@dataclass
class Report:
    """The answer of compare_models: every check, every pair, the first divergence and its hints."""

    torch: dict
    mxnet: dict
    input_shape: tuple
    options: dict
    pairs: list[Pair]
    checks: list[CheckResult]
    notes: list[str]
    fp64: str  # 'run', or why not
    seconds: float = 0.0
    unpaired_layers: dict[str, list[str]] = field(default_factory=dict)  # framework -> layers left out (no tensors)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def config_hints(self) -> list[Hint]:
        return [h for p in self.pairs for h in p.hints]

    @property
    def first_divergence(self) -> Divergence | None:
        for c in self.checks:
            d = c.first_divergent
            if d is None:
                continue
            idx = c.where.get(d.name, -1)
            pair = self.pairs[idx] if idx >= 0 else None
            tol = (f"tolerance {self.options['rtol']:g}; fp32 noise {d.noise:.2g}, x{NOISE_FACTOR:g} = "
                   f"{NOISE_FACTOR * d.noise:.2g}" if d.noise == d.noise else f"tolerance {self.options['rtol']:g}")
            return Divergence(c.name, d.name, pair.torch.path if pair and pair.torch else None,
                              pair.mxnet.path if pair and pair.mxnet else None, d.max_rel, tol,
                              c.shapes.get(d.name), self._hints(c, d.name, pair, idx))
        return None

    def _hints(self, check: CheckResult, tensor: str, pair: Pair | None, idx: int) -> list[Hint]:
        """The diverging layer's configuration differences that can explain this check first, then
        what its kind can do; for a step whose gradients agreed, the optimizer; for the output
        alone, how the layers are combined."""
        category = {"forward train": "train", "forward eval": "eval", "gradients": "grad",
                    DROPOUT_CHECK: "train"}.get(check.name)
        if category is None:
            category = "stats" if tensor.rsplit(".", 1)[-1].startswith("running_") else "grad"
        if pair is None:
            return [Hint("combination", "", CONFIG_HINTS["combination"], frozenset({category}))]
        relevant = [h for h in pair.hints if category in h.affects]
        others = [h for h in pair.hints if category not in h.affects]
        if relevant:
            return relevant + others
        if check.category == "forward" and check.inputs_agree.get(tensor) is False:
            # the layer got a different input while every layer before it agreed: not this layer
            return [Hint("unexplained", pair.torch.path, CONFIG_HINTS["unexplained"], frozenset({category}))] + others
        grads = next((c for c in self.checks if c.name == "gradients"), None)
        if check.category == "step" and category == "grad" and grads is not None and grads.ok:
            return [Hint("optimizer", pair.torch.path, CONFIG_HINTS["optimizer"], frozenset({"grad"}))] + others
        info = {"torch": self.torch, "mxnet": self.mxnet, "mode": self.options["mode"]}
        return kind_hints(pair, category, info) + others

    def summary(self) -> str:
        """A few lines: the verdict, the first divergence with its hints, the checks."""
        n_t = sum(len(p.tensors) for p in self.pairs)
        head = (f"torch {self.torch['class']} vs mxnet {self.mxnet['class']}, input {self.input_shape}: "
                f"{'AGREE' if self.ok else 'DIFFER'} ({len(self.pairs)} layers paired, {n_t} tensors; "
                f"fp64 control: {self.fp64})")
        lines = [head]
        d = self.first_divergence
        if d is not None:
            lines.append("  " + d.line())
            lines += [f"  hint {h.line()}" for h in d.hints]
        for c in self.checks:
            state = "skipped: " + c.skipped if c.skipped else ("ok" if c.ok else "DIFFER")
            lines.append(f"  {c.name:<14} {state:<7} max rel err {c.max_rel:.3g}")
        lines += [f"  note {n}" for n in self.notes if n.startswith("conditioning")]
        return "\n".join(lines)

    def assert_close(self) -> Report:
        """For pytest: raise AssertionError with the summary unless every check agrees."""
        if not self.ok:
            raise AssertionError("the ports differ\n" + self.summary())
        return self

    def to_dict(self) -> dict:
        d = self.first_divergence
        return {
            "ok": self.ok, "torch": self.torch, "mxnet": self.mxnet, "input_shape": list(self.input_shape),
            "options": self.options, "fp64": self.fp64, "notes": self.notes, "seconds": self.seconds,
            "unpaired_layers": self.unpaired_layers,
            "first_divergence": None if d is None else dataclasses.asdict(d) | {"line": d.line()},
            "pairs": [{"torch": p.torch.path if p.torch else None, "mxnet": p.mxnet.path if p.mxnet else None,
                       "kind": (p.torch or p.mxnet).kind, "source": p.source,
                       "torch_call": p.torch.repr if p.torch else None, "mxnet_call": p.mxnet.repr if p.mxnet else None,
                       "tensors": [{"role": r, "torch": tn, "mxnet": mn} for r, tn, mn in p.tensors],
                       "hints": [dataclasses.asdict(h) for h in p.hints]} for p in self.pairs],
            "checks": [{"name": c.name, "ok": c.ok, "max_rel": c.max_rel, "skipped": c.skipped, "loss": c.loss,
                        "first_divergent": c.first_divergent.name if c.first_divergent else None,
                        "shapes": c.shapes, "tensors": [dataclasses.asdict(t) for t in c.tensors]}
                       for c in self.checks],
        }

    def markdown(self) -> str:
        """report.md: the verdict and first divergence, both models, every check, every pair."""
        o, d = self.options, self.first_divergence
        lines = [f"# ganparity compare: {'AGREE' if self.ok else 'DIFFER'}", ""]
        if d is not None:
            lines += [f"**{d.line()}**", ""] + [f"- hint {h.line()}" for h in d.hints] + [""]
        rows = [("model", f"`{self.torch['class']}`", f"`{self.mxnet['class']}`"),
                ("from", self.torch.get("from", "-"), self.mxnet.get("from", "-")),
                ("trainable values", f"{self.torch['parameters']:,}", f"{self.mxnet['parameters']:,}"),
                ("device", self.torch["device"], self.mxnet["device"]),
                ("BatchNorm statistics move", self.torch["bn_stats"], self.mxnet["bn_stats"]),
                ("optimizer", f"`{o['torch_optimizer']}`", f"`{o['mxnet_optimizer']}`")]
        lines += _table(["", "torch", "mxnet"], rows) + [""]
        lines += [f"Input {self.input_shape} ({o['input']}); loss `{o['loss']}`; gradients and steps in {o['mode']} "
                  f"mode; {o['steps']} step(s) of `{o['optimizer']}`; weights copied from {o['weights']} as numpy; "
                  f"fp64 control: {self.fp64}. A tensor agrees when its max relative error is at most "
                  f"{o['rtol']:g}" + (f", or at most {NOISE_FACTOR:g}x the larger framework's own fp32-vs-fp64 "
                                      "error (the parity suite's rule)" if self.fp64 == "run" else
                                      " (without the fp64 control, the fixed tolerance alone)")
                  + f". {self.seconds:.1f} s.", ""]
        lines += [f"- {n}" for n in self.notes] + ([""] if self.notes else [])

        def worst(c: CheckResult, key: str) -> str:
            values = [getattr(t, key) for t in c.tensors if getattr(t, key) == getattr(t, key)]
            return f"{max(values):.2g}" if values else "-"

        lines += ["## Checks", ""] + _table(
            ["check", "agree", "max rel err", "torch fp32 noise", "mxnet fp32 noise", "fp64 rel err", "first over"],
            [(c.name, f"skipped: {c.skipped}" if c.skipped else ("yes" if c.ok else "**NO**"), f"{c.max_rel:.3g}",
              worst(c, "noise_ref"), worst(c, "noise_cand"), worst(c, "fp64_rel"),
              c.first_divergent.name if c.first_divergent else "-") for c in self.checks])
        hints = self.config_hints
        lines += ["", f"## Configuration differences ({len(hints)})", ""]
        lines += [f"- torch '{h.layer}': {h.line()}" for h in hints] or ["None found."]
        by_check = {c.name: {t.name: t for t in c.tensors} for c in self.checks}

        def cell(check: str, key: str) -> str:
            t = by_check.get(check, {}).get(key)
            return "-" if t is None else (f"{t.max_rel:.2g}" if t.ok else f"**{t.max_rel:.2g}**")

        lines += ["", f"## Layer pairs ({len(self.pairs)})", ""] + _table(
            ["#", "torch", "mxnet", "kind", "paired by", "tensors", "forward train", "forward eval"],
            [(i, f"`{p.torch.path}` {p.torch.type}", f"`{p.mxnet.path}` {p.mxnet.type}", p.torch.kind, p.source,
              ", ".join(r for r, _, _ in p.tensors) or "-", cell("forward train", p.torch.path),
              cell("forward eval", p.torch.path)) for i, p in enumerate(self.pairs)])
        for fw, paths in self.unpaired_layers.items():
            if paths:
                lines += ["", f"Layers of the {fw} model without a counterpart (no tensors; not compared): "
                          + ", ".join(f"`{p}`" for p in paths)]
        names = {tn: mn for p in self.pairs for _, tn, mn in p.tensors}
        for c in self.checks:
            if c.category in ("forward", "config") or not c.tensors:
                continue
            loss = f" (loss torch {c.loss['torch']:.6g}, mxnet {c.loss['mxnet']:.6g})" if c.loss else ""
            lines += ["", f"## {c.name}{loss}", ""] + _table(
                ["tensor (torch)", "mxnet", "agree", "max rel err", "fp32 noise", "fp64 rel err"],
                [(f"`{t.name}`", f"`{names.get(t.name, '?')}`", "yes" if t.ok else "**NO**", f"{t.max_rel:.2g}",
                  f"{t.noise:.2g}", f"{t.fp64_rel:.2g}") for t in c.tensors])
        return "\n".join(lines) + "\n"

    def write(self, out: str | os.PathLike) -> tuple[Path, Path]:
        """report.md and report.json in the folder `out`."""
        out = Path(out)
        md = write_text(out / "report.md", self.markdown())
        js = write_json(out / "report.json", self.to_dict(), default=_json_default)
        return md, js


def _table(headers: list[str], rows) -> list[str]:
    return md_table(headers, [list(r) for r in rows]).splitlines()


def _json_default(v):
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, frozenset | set | tuple):
        return sorted(v) if isinstance(v, frozenset | set) else list(v)
    return str(v)


# -- the driver ----------------------------------------------------------------------------------


def compare_backend(name: str):
    """backends/<name>/compare.py, reached through get_backend (which checks that the framework is
    installed and imports it): the module beside the backend's api, so no path is spelled here."""
    from .backend import get_backend

    return importlib.import_module(".compare", get_backend(name).__package__)


def _inputs(inputs, seed: int) -> tuple[np.ndarray, str]:
    if isinstance(inputs, str):
        inputs = parse_shape(inputs)
    if isinstance(inputs, tuple | list) and all(isinstance(s, int | np.integer) for s in inputs):
        shape = parse_shape(",".join(map(str, inputs)))
        return (np.random.default_rng(seed).standard_normal(shape).astype(np.float32),
                f"drawn N(0, 1) in numpy, seed {seed}")
    x = np.asarray(inputs)
    if x.ndim < 1 or x.size == 0 or not np.issubdtype(x.dtype, np.number):
        raise GanparityError(f"inputs: expected a numeric array with a batch axis or a shape, got {x.dtype} {x.shape}")
    return x.astype(np.float32), "given"


def _target(loss: str, outputs: list[np.ndarray], seed: int) -> np.ndarray | None:
    rng = np.random.default_rng(seed + 1)
    if loss in ("sum", "mean"):
        return None
    if len(outputs) != 1:
        raise GanparityError(f"loss {loss!r} needs one output; the models return {len(outputs)}")
    out = outputs[0]
    if loss == "mse":
        return rng.standard_normal(out.shape).astype(np.float32)
    if out.ndim != 2:
        raise GanparityError(f"loss 'cross-entropy' needs (batch, classes) outputs; the models return {out.shape}")
    return rng.integers(0, out.shape[1], out.shape[0]).astype(np.float32)


def _rejected(e: Rejected, other_be, other_model, x: np.ndarray) -> GanparityError:
    """One line: what the model refused, where, and a hint from the other model's counterpart."""
    other_fw = "mxnet" if e.framework == "torch" else "torch"
    try:
        recs, _ = other_be.walk(other_model, x, "eval")
    except Rejected as both:
        return GanparityError(f"both models reject input shape {e.input_shape}: {e} ; and {both}")
    layer = Layer.of(e.framework, -1, e.layer | {"out_shape": None})
    k = e.done.count(layer.kind)
    same = [Layer.of(other_fw, i, r) for i, r in enumerate(recs) if r["kind"] == layer.kind and r["call"] == 1]
    msg = str(e)
    if k < len(same):
        t, m = (layer, same[k]) if e.framework == "torch" else (same[k], layer)
        hints = config_hints(t, m)
        msg += f"; its {other_fw} counterpart is {same[k].label}, input {same[k].in_shape}"
        if hints:
            msg += "; hint " + "; ".join(h.line() for h in hints)
    return GanparityError(msg)


def compare_models(torch_model: Any, mxnet_model: Any, inputs: Any, *, mode: str = "train", loss: str = "sum",
                   optimizer: str | dict = DEFAULT_OPTIMIZER, steps: int = 1, mapping: Any = None,
                   weights: str = "torch", fp64: bool = True, rtol: float = RTOL, seed: int = 0,
                   sources: dict[str, str] | None = None) -> Report:
    """Do a PyTorch module and a Gluon block compute the same thing? (the module docstring says
    how). `inputs`: a numpy batch, or a shape such as (4, 3, 64, 64) to draw one; `mode`: the
    mode of the gradient and step checks (the forward is compared in both); `loss`: one of LOSSES
    (default: the sum of the outputs); `optimizer`: 'sgd:lr=0.01,momentum=0.9,wd=1e-4' or
    'adam:lr=2e-4,beta1=0.5[,follow=mxnet]'; `steps`: optimizer steps to compare (0: none);
    `mapping`: a mapping file or dict (MappingFile); `weights`: whose initial weights both start
    from. Both models end holding those weights, in float32. Returns a Report; .assert_close()
    raises AssertionError with the summary unless everything agrees."""
    t0 = time.perf_counter()
    choose("mode", mode, MODES)
    choose("loss", loss, LOSSES)
    choose("weights", weights, FRAMEWORKS)
    if not isinstance(steps, int | np.integer) or steps < 0:
        raise GanparityError(f"steps must be a non-negative integer, got {steps!r}")
    setting = parse_optimizer(optimizer) if isinstance(optimizer, str) else dict(optimizer)
    file = load_mapping(mapping)
    x, how = _inputs(inputs, seed)
    T, M = compare_backend("torch"), compare_backend("mxnet")
    tm, notes_t = T.prepare_model(torch_model, "the torch model")
    mm, notes_m = M.prepare_model(mxnet_model, "the mxnet model")
    notes = notes_t + notes_m
    T.cast_model(tm, "float32")
    M.cast_model(mm, "float32")
    try:  # the eval walk pairs the layers (and makes Gluon's deferred parameters real)
        t_recs, t_outs = T.walk(tm, x, "eval")
    except Rejected as e:
        raise _rejected(e, M, mm, x) from None
    try:
        m_recs, m_outs = M.walk(mm, x, "eval")
    except Rejected as e:
        raise _rejected(e, T, tm, x) from None
    info = {"torch": T.model_info(tm) | {"from": (sources or {}).get("torch", "-")},
            "mxnet": M.model_info(mm) | {"from": (sources or {}).get("mxnet", "-")}}
    tl = [Layer.of("torch", i, r) for i, r in enumerate(t_recs)]
    ml = [Layer.of("mxnet", i, r) for i, r in enumerate(m_recs)]
    t_state, m_state = T.get_state(tm), M.get_state(mm)
    mp = pair_layers(tl, ml, file, t_state, m_state)
    src = t_state if weights == "torch" else m_state
    init_t = {tn: (src[tn] if weights == "torch" else src[mn]) for tn, mn in mp.tensor_map.items()}
    init_m = {mn: init_t[tn] for tn, mn in mp.tensor_map.items()}
    shapes_differ = [f"output {i}: torch {a.shape}, mxnet {b.shape}" for i, (a, b) in enumerate(zip(t_outs, m_outs))
                     if a.shape != b.shape] + ([f"torch returns {len(t_outs)} outputs, mxnet {len(m_outs)}"]
                                               if len(t_outs) != len(m_outs) else [])
    target = None if shapes_differ else _target(loss, t_outs, seed)
    follow = setting.get("follow", "torch")
    sem = Semantics(adam_eps=follow, adam_betas=follow)
    emulate = {fw: tuple(k for k in emulated(sem, fw) if k in ("adam-eps", "adam-betas")) if setting["name"] == "adam"
               else () for fw in FRAMEWORKS}
    bn_fix = info["mxnet"]["bn_stats"] == "backward-biased" and info["torch"]["bn_stats"] == "forward-unbiased"
    opts = {"mode": mode, "loss": loss, "steps": int(steps), "optimizer": setting, "emulate": emulate,
            "skip_backward": bool(shapes_differ), "bn": []}
    where_t = {p.torch.path: i for i, p in enumerate(mp.pairs)}
    opts["bn"] = _bn_translation(mp.pairs) if bn_fix else []  # n per channel: the walk's input shapes
    _, call_t = T.make_optimizer(tm, setting, emulate["torch"])
    _, call_m = M.make_optimizer(mm, setting, emulate["mxnet"])
    runs: dict[str, _Run] = {}
    fp64_state = "not asked for"
    try:
        runs["float32"] = _run(T, M, tm, mm, mp, init_t, init_m, x, opts, "float32", target)
        if fp64:
            try:
                runs["float64"] = _run(T, M, tm, mm, mp, init_t, init_m, x, opts, "float64",
                                       None if target is None else target.astype(np.float64))
                fp64_state = "run"
            except Exception as e:  # a layer without float64 kernels: judge on the fixed tolerance alone
                fp64_state = f"not run ({type(e).__name__}: {_first_line(e)[:120]})"
    finally:
        T.cast_model(tm, "float32")
        M.cast_model(mm, "float32")
        T.set_state(tm, init_t)
        M.set_state(mm, init_m)
        T.restore_mode(tm, info["torch"])
    r32, r64 = runs["float32"], runs.get("float64")
    if r32.dropout:
        notes.append(f"dropout set to rate 0 in the train-mode checks: {', '.join(r32.dropout)}")
    if opts["bn"]:
        notes.append(f"bn-stats: Gluon (CPU) moves BatchNorm running statistics in backward with the biased batch "
                     f"variance, PyTorch in forward with the unbiased one; the {len(opts['bn'])} mxnet running_var "
                     "tensors are corrected by n / (n - 1) on their batch term, with Gluon's own momentum, before "
                     "the step comparison")
    if setting["name"] == "adam":
        notes.append(f"adam: both optimizers follow {follow}'s Adam (adam-eps: "
                     f"{BY_KEY['adam-eps'].torch if follow == 'torch' else BY_KEY['adam-eps'].gluon}); "
                     f"follow={'mxnet' if follow == 'torch' else 'torch'} selects the other")
    elif setting["momentum"]:
        notes.append("sgd-momentum: at a constant lr torch.optim.SGD and MXNet's SGD take the same steps; "
                     "MXNet keeps lr inside its momentum buffer, so a later lr change acts differently")
    if mode == "eval" and any(p.torch.kind == "batchnorm" for p in mp.pairs):
        notes.append("bn-eval-backward: the eval-mode gradients come from Gluon's loss.backward(train_mode=False); "
                     "a plain backward() back-propagates BatchNorm's batch-statistics formula (apache/mxnet#9580)")
    notes.append(f"loss-reduction: both backpropagate one scalar ({loss}); Gluon calls trainer.step(1) "
                 "(the same as per-sample losses with trainer.step(batch_size))")
    checks = _checks(mp, r32, r64, where_t, opts, rtol, shapes_differ)
    notes += _conditioning(checks, mp.pairs)
    in_pairs = {"torch": {p.torch.index for p in mp.pairs}, "mxnet": {p.mxnet.index for p in mp.pairs}}
    unpaired = {fw: [layer.path for layer in layers if layer.index not in in_pairs[fw]]
                for fw, layers in (("torch", tl), ("mxnet", ml))}
    options = {"mode": mode, "loss": loss, "steps": int(steps), "optimizer": optimizer_text(setting),
               "weights": weights, "rtol": rtol, "seed": seed, "input": how, "mapping": file.source or None,
               "torch_optimizer": call_t, "mxnet_optimizer": call_m}
    return Report(info["torch"], info["mxnet"], tuple(x.shape), options, mp.pairs, checks, notes, fp64_state,
                  time.perf_counter() - t0, unpaired)


NOISY = 1e-3  # fp32 noise above this: the verdict rests on the fp64 control, and the report says so


def _conditioning(checks: list[CheckResult], pairs: list[Pair]) -> list[str]:
    """A note where fp32 rounding alone moves a tensor by more than NOISY: agreement there is only
    as good as the fp64 control, and a BatchNorm over few values per channel is the usual cause."""
    noisy = [(t.noise, c.name, t) for c in checks for t in c.tensors if t.noise == t.noise and t.noise > NOISY]
    if not noisy:
        return []
    noise, check, t = max(noisy, key=lambda v: v[0])
    fp64 = f"fp64 rel err {t.fp64_rel:.2g}" if t.fp64_rel == t.fp64_rel else "no fp64 control"
    per = [(int(np.prod(p.torch.in_shape)) // p.torch.in_shape[1], p.torch.path) for p in pairs
           if p.torch.kind == "batchnorm" and p.torch.in_shape and len(p.torch.in_shape) > 1]
    few = min(per) if per else None
    why = (f"; BatchNorm '{few[1]}' normalises over {few[0]} values per channel: a larger batch or input "
           "makes the comparison sharper" if few and few[0] < 16 else "")
    return [f"conditioning: fp32 rounding alone moves {check} '{t.name}' by {noise:.2g} (relative), so "
            f"agreement there rests on the fp64 control ({fp64}){why}"]


def _inputs_agree(mp: Mapping, ins: tuple, ins64: tuple | None, rtol: float) -> dict[str, bool]:
    """torch path -> whether the paired layers received the same input (the same rule as their
    outputs), for the pairs whose inputs hold the same number of values (a Dense that flattens
    sees the values a Flatten + Linear sees, in another shape)."""
    ref, cand, ref64, cand64 = {}, {}, {}, {}
    for p in mp.pairs:
        a, b = ins[0].get(p.torch.path), ins[1].get(p.mxnet.path)
        if a is None or b is None or a.size != b.size:
            continue
        ref[p.torch.path], cand[p.torch.path] = a, b.reshape(a.shape)
        if ins64 is not None and ins64[0].get(p.torch.path) is not None and ins64[1].get(p.mxnet.path) is not None:
            ref64[p.torch.path], cand64[p.torch.path] = ins64[0][p.torch.path], ins64[1][p.mxnet.path].reshape(a.shape)
    if not ref:
        return {}
    have64 = set(ref64) == set(ref)
    return {d.name: d.ok for d in compare_arrays(ref, cand, ref64 if have64 else None, cand64 if have64 else None,
                                                 rtol=rtol)}


def _checks(mp: Mapping, r32: _Run, r64: _Run | None, where_t: dict, opts: dict, rtol: float,
            shapes_differ: list[str]) -> list[CheckResult]:
    checks = []
    for mode in MODES:
        t_out, m_out, t_final, m_final = r32.forward[mode]
        ref, cand, ref64, cand64, where = {}, {}, {}, {}, {}
        t64 = r64.forward[mode] if r64 else None
        for i, p in enumerate(mp.pairs):
            tp, mpth = p.torch.path, p.mxnet.path
            if tp in t_out and mpth in m_out and t_out[tp] is not None and m_out[mpth] is not None:
                ref[tp], cand[tp], where[tp] = t_out[tp], m_out[mpth], i
                if t64 and tp in t64[0] and mpth in t64[1]:
                    ref64[tp], cand64[tp] = t64[0][tp], t64[1][mpth]
        for j, (a, b) in enumerate(zip(t_final, m_final)):
            name = "output" if len(t_final) == 1 else f"output[{j}]"
            ref[name], cand[name], where[name] = a, b, -1
            if t64:
                ref64[name], cand64[name] = t64[2][j], t64[3][j]
        res = _judge(f"forward {mode}", "forward", ref, cand, ref64 if t64 else None, cand64 if t64 else None,
                     where, False, rtol)
        res.inputs_agree = _inputs_agree(mp, r32.inputs[mode], r64.inputs[mode] if r64 else None, rtol)
        checks.append(res)
    drop = {i: p for i, p in enumerate(mp.pairs) if p.torch.kind == p.mxnet.kind == "dropout"}
    if drop:
        rate = lambda layer: np.array([float(layer.config.get("rate") or 0.0)])
        checks.append(_judge(DROPOUT_CHECK, "config", {p.torch.path: rate(p.torch) for p in drop.values()},
                             {p.torch.path: rate(p.mxnet) for p in drop.values()}, None, None,
                             {p.torch.path: i for i, p in drop.items()}, False, rtol))
    tensor_where = {tn: where_t[p.torch.path] for p in mp.pairs for _, tn, _ in p.tensors}
    order = list(tensor_where)
    if opts["skip_backward"]:
        reason = "the outputs' shapes differ: " + "; ".join(shapes_differ)
        checks.append(CheckResult("gradients", "gradients", skipped=reason))
        return checks
    lt, lm, gt, gm = r32.grads
    names = [n for n in order if n in gt and n in gm]
    g64 = r64.grads if r64 else None
    res = _judge("gradients", "gradients", {n: gt[n] for n in names}, gm, g64[2] if g64 else None,
                 g64[3] if g64 else None, tensor_where, True, rtol)
    res.loss = {"torch": lt, "mxnet": lm}
    checks.append(res)
    for k, (lt, lm, st, sm) in enumerate(r32.steps):
        names = [n for n in order if n in st and n in sm]
        s64 = r64.steps[k] if r64 and k < len(r64.steps) else None
        res = _judge(f"step {k + 1}", "step", {n: st[n] for n in names}, sm, s64[2] if s64 else None,
                     s64[3] if s64 else None, tensor_where, False, rtol)
        res.loss = {"torch": lt, "mxnet": lm}
        checks.append(res)
    return checks
