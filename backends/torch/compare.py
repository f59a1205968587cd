"""`ganparity compare` on the PyTorch side: any nn.Module, walked with hooks, as neutral numpy.

Mirrors backends/mxnet/compare.py function by function; common/compare.py pairs the two walks,
copies the weights, and judges. Nothing here knows the other framework: a layer comes back as a
record (path, neutral kind, neutral configuration, its tensors by role, its output as numpy),
and every tensor by its state-dict name.

Neutral configuration keys (common/compare.py reads them): BatchNorm momentum is PyTorch's
convention (running = (1 - m) * running + m * batch); a Linear acts on the last axis
(flatten=False); pooling's ceil_mode and count_include_pad are PyTorch's words.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from ...common.errors import GanparityError
from ...common.spec.model import Adam
from ...common.usermodel import LOSSES, Rejected, arrays_of
from .train import _adam, _mxnet_adam_step

FRAMEWORK = "torch"
SKIPPED_BUFFERS = ("num_batches_tracked",)  # an int64 counter with no Gluon counterpart (momentum=None only)


def _named(model: nn.Module) -> dict[int, str]:
    """id(tensor) -> its state-dict name, parameters and floating buffers (shared ones once)."""
    out: dict[int, str] = {}
    for name, t in [*model.named_parameters(), *model.named_buffers()]:
        if name.rsplit(".", 1)[-1] not in SKIPPED_BUFFERS and id(t) not in out:
            out[id(t)] = name
    return out


def prepare_model(model: Any, what: str) -> tuple[nn.Module, list[str]]:
    """Check that `what` gave a torch.nn.Module; notes for the report (none are needed in torch:
    hooks fire in any eager module). A TorchScript module has no Python hooks: refused."""
    if isinstance(model, torch.jit.ScriptModule):
        raise GanparityError(f"{what} is a TorchScript module: forward hooks need the eager nn.Module")
    if not isinstance(model, nn.Module):
        kind = f"{type(model).__module__}.{type(model).__qualname__}"
        hint = " (--torch and --mxnet swapped?)" if type(model).__module__.startswith("mxnet") else ""
        raise GanparityError(f"{what} gave a {kind}, not a torch.nn.Module{hint}")
    return model, []


def model_info(model: nn.Module) -> dict:
    """What the report says about the model, and how its BatchNorm moves its running statistics
    (difference 'bn-stats': PyTorch, in every train-mode forward, unbiased variance)."""
    params = list(model.parameters())
    return {"class": f"{type(model).__module__}.{type(model).__qualname__}",
            "device": str(params[0].device) if params else "cpu",
            "parameters": sum(p.numel() for p in params if p.requires_grad),
            "bn_stats": "forward-unbiased", "training": model.training}


def _kind(m: nn.Module) -> tuple[str, dict]:
    """The neutral kind and configuration of one module (see common/compare.py)."""
    if isinstance(m, nn.modules.conv._ConvNd):
        transposed = isinstance(m, nn.modules.conv._ConvTransposeNd)
        c = {"in_channels": m.in_channels, "out_channels": m.out_channels, "kernel": tuple(m.kernel_size),
             "stride": tuple(m.stride), "padding": tuple(m.padding) if not isinstance(m.padding, str) else m.padding,
             "dilation": tuple(m.dilation), "groups": m.groups, "bias": m.bias is not None,
             "padding_mode": m.padding_mode}
        if transposed:
            c["output_padding"] = tuple(m.output_padding)
        return ("convtranspose" if transposed else "conv"), c
    if isinstance(m, nn.modules.batchnorm._BatchNorm):
        return "batchnorm", {"num_features": m.num_features, "eps": m.eps, "momentum": m.momentum,
                             "affine": m.affine, "global_stats": False,
                             "batch_stats_always": not m.track_running_stats}
    if isinstance(m, nn.Linear):
        return "linear", {"in_features": m.in_features, "out_features": m.out_features,
                          "bias": m.bias is not None, "flatten": False}
    if isinstance(m, nn.LeakyReLU):
        return "leakyrelu", {"slope": m.negative_slope}
    if isinstance(m, nn.Hardtanh):  # nn.ReLU6 is Hardtanh(0, 6)
        return "clip", {"lo": float(m.min_val), "hi": float(m.max_val)}
    if isinstance(m, nn.GELU):
        return "gelu", {"approximate": m.approximate}
    if isinstance(m, nn.Hardsigmoid):  # relu6(x + 3) / 6 = clip(x / 6 + 1 / 2, 0, 1)
        return "hardsigmoid", {"alpha": 1 / 6, "beta": 0.5}
    if isinstance(m, nn.SiLU):  # x * sigmoid(x): Gluon's Swish with beta 1
        return "silu", {"beta": 1.0}
    simple = {nn.ReLU: "relu", nn.Tanh: "tanh", nn.Sigmoid: "sigmoid", nn.Hardswish: "hardswish",
              nn.Softplus: "softplus", nn.Softsign: "softsign", nn.SELU: "selu", nn.Flatten: "flatten",
              nn.Identity: "identity"}
    for cls, kind in simple.items():
        if type(m) is cls:
            return kind, {}
    if isinstance(m, nn.ELU):
        return "elu", {"alpha": m.alpha}
    if isinstance(m, nn.PReLU):
        return "prelu", {"num_parameters": m.num_parameters}
    if isinstance(m, nn.modules.pooling._MaxPoolNd | nn.modules.pooling._AvgPoolNd):
        pool = "max" if isinstance(m, nn.modules.pooling._MaxPoolNd) else "avg"
        pair = lambda v: tuple(v) if isinstance(v, tuple | list) else (v, v)
        c = {"kernel": pair(m.kernel_size), "stride": pair(m.stride if m.stride is not None else m.kernel_size),
             "padding": pair(m.padding), "ceil_mode": bool(m.ceil_mode)}
        if pool == "avg":
            c["count_include_pad"] = bool(m.count_include_pad)
        return f"{pool}pool", c
    if isinstance(m, nn.AdaptiveAvgPool2d | nn.AdaptiveMaxPool2d):
        pool = "avg" if isinstance(m, nn.AdaptiveAvgPool2d) else "max"
        size = m.output_size if isinstance(m.output_size, tuple) else (m.output_size, m.output_size)
        return (f"global{pool}pool", {}) if tuple(size) == (1, 1) else (f"adaptive{pool}pool", {"output_size": size})
    if isinstance(m, nn.modules.dropout._DropoutNd):
        return "dropout", {"rate": m.p}
    if isinstance(m, nn.Upsample):  # UpsamplingNearest2d / UpsamplingBilinear2d too
        align = m.align_corners if m.align_corners is not None else False
        interpolates = m.mode in ("linear", "bilinear", "bicubic", "trilinear")
        return "upsample", {"mode": m.mode, "scale": m.scale_factor, "size": m.size,
                            "align_corners": align if interpolates else None}
    if isinstance(m, nn.Embedding):
        return "embedding", {"num": m.num_embeddings, "dim": m.embedding_dim}
    if isinstance(m, nn.LayerNorm):
        return "layernorm", {"eps": m.eps}
    if isinstance(m, nn.GroupNorm):
        return "groupnorm", {"groups": m.num_groups, "eps": m.eps}
    if isinstance(m, nn.modules.instancenorm._InstanceNorm):
        return "instancenorm", {"eps": m.eps, "affine": m.affine}
    if isinstance(m, nn.Softmax | nn.LogSoftmax):
        return ("softmax" if isinstance(m, nn.Softmax) else "logsoftmax"), {"axis": m.dim}
    if not list(m.children()) and not list(m.parameters()):
        return _ops_kind(m)
    return "other", {}


_FX_KINDS = {"relu": "relu", "sigmoid": "sigmoid", "tanh": "tanh", "silu": "silu", "hardswish": "hardswish",
             "softplus": "softplus", "selu": "selu"}


def _ops_kind(m: nn.Module) -> tuple[str, dict]:
    """A parameter-free module of the user's own, by what its forward calls (torch.fx): one known
    op is that kind ('clip' for relu6 / hardtanh / clamp, 'gelu' with its approximation, ...);
    several are kind 'ops' with their names, so a hint can show both sides' computations."""
    try:
        graph = torch.fx.symbolic_trace(m).graph
    except Exception:
        return "other", {}
    calls = [n for n in graph.nodes if n.op in ("call_function", "call_method")]
    names = [getattr(n.target, "__name__", str(n.target)) for n in calls]
    if len(calls) == 1:
        n, name = calls[0], names[0]
        kw = dict(n.kwargs)
        if name in ("relu6",):
            return "clip", {"lo": 0.0, "hi": 6.0}
        if name == "hardtanh":
            args = list(n.args[1:]) + [kw.get("min_val", -1.0), kw.get("max_val", 1.0)]
            return "clip", {"lo": float(args[0]), "hi": float(args[1])}
        if name in ("clamp", "clip") and len(n.args) >= 2:
            lo = n.args[1] if len(n.args) > 1 else kw.get("min")
            hi = n.args[2] if len(n.args) > 2 else kw.get("max")
            if isinstance(lo, int | float | None) and isinstance(hi, int | float | None):
                return "clip", {"lo": float("-inf") if lo is None else float(lo),
                                "hi": float("inf") if hi is None else float(hi)}
        if name == "gelu":
            return "gelu", {"approximate": kw.get("approximate", "none")}
        if name == "leaky_relu":
            slope = n.args[1] if len(n.args) > 1 else kw.get("negative_slope", 0.01)
            return "leakyrelu", {"slope": float(slope)}
        if name == "hardsigmoid":
            return "hardsigmoid", {"alpha": 1 / 6, "beta": 0.5}
        if name in _FX_KINDS:
            return _FX_KINDS[name], {}
    return ("ops", {"ops": names}) if names else ("identity", {})


def _first_tensor(value) -> torch.Tensor | None:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, tuple | list) and value and isinstance(value[0], torch.Tensor):
        return value[0]
    return None


def _shape(value) -> tuple[int, ...] | None:
    t = _first_tensor(value)
    return tuple(t.shape) if t is not None else None


def _outputs(value) -> list[torch.Tensor]:
    """The model's output(s): one tensor, or a tuple/list/dict of them."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, tuple | list) and all(isinstance(v, torch.Tensor) for v in value) and value:
        return list(value)
    raise GanparityError(f"the torch model returned a {type(value).__name__}; compare needs a tensor, "
                         "or a tuple/list/dict of tensors")


def _to_inputs(model: nn.Module, x) -> list[torch.Tensor]:
    """The batch (one array, or an Inputs of several) as the model's inputs, in its dtype."""
    p = next(iter(model.parameters()), None)
    dtype = p.dtype if p is not None and p.is_floating_point() else torch.float32
    return [torch.as_tensor(np.asarray(a), dtype=dtype, device=p.device if p is not None else "cpu")
            for a in arrays_of(x)]


def _shape_of_batch(x) -> tuple:
    return tuple(np.shape(x)) if len(arrays_of(x)) == 1 else x.shape


def _record_of(path: str, m: nn.Module, names: dict[int, str], calls: int) -> dict:
    kind, config = _kind(m)
    own = [(role, t) for role, t in [*m._parameters.items(), *m._buffers.items()]
           if t is not None and role not in SKIPPED_BUFFERS and t.is_floating_point()]
    return {"path": path + (f"#{calls}" if calls > 1 else ""), "module": path, "call": calls, "kind": kind,
            "type": type(m).__name__, "repr": repr(m).split("\n")[0][:200], "config": config,
            "tensors": {role: names[id(t)] for role, t in own if id(t) in names} if calls == 1 else {},
            "shapes": {role: tuple(t.shape) for role, t in own} if calls == 1 else {},
            "trainable": {role: bool(t.requires_grad) for role, t in own} if calls == 1 else {}}


def _set_mode(model: nn.Module, mode: str) -> None:
    model.train(mode == "train")


def walk(model: nn.Module, x: np.ndarray, mode: str, on_output=None,
         keep_inputs: bool = True) -> tuple[list[dict], list[np.ndarray]]:
    """One forward in `mode` ('train': batch statistics; 'eval': running ones) with hooks on every
    leaf module and every module that owns tensors. Returns the records in execution order
    (each with its input and output shapes, and its input and output as numpy copies: an in-place
    ReLU overwrites the tensor later; the input tells a layer that computes differently from one
    whose input is put together differently) and the model's output(s). An input the model
    refuses raises Rejected naming the innermost module running when it failed. on_output(path,
    array): each output handed over as it is made and not kept in its record (a large model's
    every layer in float64 need not be held at once); keep_inputs=False keeps no inputs."""
    names, records, stack, calls, handles = _named(model), [], [], {}, []
    recorded = {id(m) for _, m in model.named_modules()
                if not list(m.children())
                or any(t is not None for t in [*m._parameters.values(), *m._buffers.values()])}

    def pre(path):
        def hook(m, inputs):
            calls[path] = calls.get(path, 0) + 1
            rec = _record_of(path, m, names, calls[path]) if id(m) in recorded else None
            if rec is not None:
                t = _first_tensor(inputs)
                rec["in_shape"] = _shape(inputs)
                rec["input"] = t.detach().cpu().numpy().copy() if t is not None and keep_inputs else None
            stack.append((path, m, rec, _shape(inputs)))
        return hook

    def post(m, inputs, output):
        path, _, rec, _ = stack.pop()
        if rec is not None:
            t = _first_tensor(output)
            rec["out_shape"] = _shape(output)
            rec["output"] = t.detach().cpu().numpy().copy() if t is not None else None
            if on_output is not None:
                on_output(rec["path"], rec.pop("output"))
                rec["output"] = None
            records.append(rec)

    for path, m in model.named_modules():
        handles.append(m.register_forward_pre_hook(pre(path or "(root)")))
        handles.append(m.register_forward_hook(post))
    _set_mode(model, mode)
    try:
        with torch.no_grad():
            out = model(*_to_inputs(model, x))
        return records, [o.detach().cpu().numpy().copy() for o in _outputs(out)]
    except GanparityError:
        raise
    except Exception as e:
        path, m, _, in_shape = stack[-1] if stack else ("(root)", model, None, _shape_of_batch(x))
        layer = _record_of(path, m, names, 1) | {"in_shape": in_shape}
        raise Rejected(FRAMEWORK, _shape_of_batch(x), layer, _one_line(e),
                       [r["kind"] for r in records if r["call"] == 1]) from None
    finally:
        for h in handles:
            h.remove()


def _one_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:300] if text else ''}"


def get_state(model: nn.Module) -> dict[str, np.ndarray]:
    """Every parameter and floating buffer by its state-dict name, as numpy copies."""
    named = dict(model.named_parameters()) | dict(model.named_buffers())
    return {n: named[n].detach().cpu().numpy().copy() for n in _named(model).values()}


def set_state(model: nn.Module, arrays: dict[str, np.ndarray]) -> None:
    """Copy neutral arrays into the named tensors, in each tensor's own dtype and device."""
    named = dict(model.named_parameters()) | dict(model.named_buffers())
    with torch.no_grad():
        for n, a in arrays.items():
            named[n].copy_(torch.as_tensor(np.asarray(a), dtype=named[n].dtype))


def cast_model(model: nn.Module, dtype: str) -> None:
    """In place: every floating parameter and buffer to float32 or float64 (the fp64 control)."""
    model.to(getattr(torch, dtype))


@contextlib.contextmanager
def no_dropout(model: nn.Module) -> Iterator[list[str]]:
    """Dropout layers at rate 0 while inside (each framework draws its own masks, so train-mode
    outputs could never agree); yields the paths it changed, and restores the rates."""
    changed = [(path, m, m.p) for path, m in model.named_modules()
               if isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0]
    for _, m, _ in changed:
        m.p = 0.0
    try:
        yield [path for path, _, _ in changed]
    finally:
        for _, m, p in changed:
            m.p = p


def _loss(outputs: list[torch.Tensor], loss: str, target: list[np.ndarray] | None) -> torch.Tensor:
    """The neutral losses (common/usermodel.py LOSSES), as scalars: PyTorch's batch means;
    'projection': the sum of every output times its fixed random tensor."""
    if loss == "sum":
        return sum(o.sum() for o in outputs)
    if loss == "mean":
        return sum(o.mean() for o in outputs)
    if loss == "projection":
        return sum((o * torch.as_tensor(r, dtype=o.dtype, device=o.device)).sum() for o, r in zip(outputs, target))
    out = outputs[0]
    t = torch.as_tensor(target[0], device=out.device)
    if loss == "mse":
        return ((out - t.to(out.dtype)) ** 2).mean()
    if loss == "cross-entropy":
        return F.cross_entropy(out, t.long())
    raise GanparityError(f"unknown loss {loss!r}; valid: {', '.join(LOSSES)}")


def _forward_loss(model: nn.Module, x: np.ndarray, mode: str, loss: str, target) -> torch.Tensor:
    _set_mode(model, mode)
    return _loss(_outputs(model(*_to_inputs(model, x))), loss, target)


def gradients(model: nn.Module, x: np.ndarray, mode: str, loss: str,
              target: np.ndarray | None) -> tuple[float, dict[str, np.ndarray]]:
    """loss(model(x)).backward() in `mode`: the loss and every trainable parameter's gradient by
    name (a parameter the loss does not reach gets zeros, as Gluon reports it)."""
    model.zero_grad(set_to_none=True)
    value = _forward_loss(model, x, mode, loss, target)
    value.backward()
    names = _named(model)
    out = {names[id(p)]: (p.grad.detach().cpu().numpy().copy() if p.grad is not None
                          else np.zeros(tuple(p.shape), np.float64))
           for p in model.parameters() if p.requires_grad and id(p) in names}
    return float(value.detach()), out


class _Optimizer:
    """torch.optim from the neutral setting; with MXNet's Adam semantics emulated, lr and eps are
    set before every step (backends/torch/train.py _mxnet_adam_step)."""

    def __init__(self, model: nn.Module, setting: dict, emulate: tuple[str, ...]):
        params = [p for p in model.parameters() if p.requires_grad]
        self.setting, self.emulate = setting, emulate
        if setting["name"] == "sgd":
            self.opt = torch.optim.SGD(params, lr=setting["lr"], momentum=setting["momentum"],
                                       weight_decay=setting["wd"])
            self.call = (f"torch.optim.SGD(params, lr={setting['lr']}, momentum={setting['momentum']}, "
                         f"weight_decay={setting['wd']})")
        else:
            self.adam = Adam(setting["lr"], setting["beta1"], setting["beta2"], setting["eps"])
            holder = nn.Module()
            holder.params = nn.ParameterList(params)
            self.opt = _adam(holder, self.adam, emulate, frozenset())
            self.opt.param_groups[0]["weight_decay"] = setting["wd"]
            betas = self.opt.param_groups[0]["betas"]
            mx_like = [k for k in ("adam-eps", "adam-betas") if k in emulate]
            self.call = (f"torch.optim.Adam(params, lr={setting['lr']}, betas=({betas[0]!r}, {betas[1]!r}), "
                         f"eps={setting['eps']}, weight_decay={setting['wd']})"
                         + (f", emulating MXNet's {' and '.join(mx_like)}: lr and eps set before each step t"
                            if mx_like else ""))

    def step(self) -> None:
        if self.setting["name"] == "adam" and {"adam-eps", "adam-betas"} & set(self.emulate):
            _mxnet_adam_step(self.opt, self.adam, self.emulate)
        self.opt.step()


def make_optimizer(model: nn.Module, setting: dict, emulate: tuple[str, ...]) -> tuple[Any, str]:
    """The optimizer of a neutral setting (common/compare.py parse_optimizer) and the call it is,
    in words. `emulate`: the semantic differences ('adam-eps', 'adam-betas') to compute MXNet's way."""
    opt = _Optimizer(model, setting, emulate)
    return opt, opt.call


def train_step(model: nn.Module, optimizer: Any, x: np.ndarray, mode: str, loss: str,
               target: np.ndarray | None) -> float:
    """zero_grad(); loss(model(x)).backward(); optimizer.step(). Returns the loss."""
    optimizer.opt.zero_grad(set_to_none=True)
    value = _forward_loss(model, x, mode, loss, target)
    value.backward()
    optimizer.step()
    return float(value.detach())


_INTERPOLATE = inspect.signature(F.interpolate)


@contextlib.contextmanager
def round_constants(model: nn.Module) -> Iterator[int]:
    """Every float constant of every layer (eps, momentum, slopes, clip bounds, ...) rounded to
    float32 while inside: what MXNet does to each op constant, even in float64 (a BatchNorm's
    momentum as MXNet receives it: Gluon's 1 - m rounded, then read back in torch's convention). The floor of a
    comparison runs the reference this way (common/compare/checks.py). Inside, a float64 bilinear
    F.interpolate also computes its sample weights in float32, as MXNet's BilinearResize2D does
    (_MXNetResize). Yields how many constants changed."""
    changed = []
    resize = _MXNetResize()
    for m in model.modules():
        for key, value in list(vars(m).items()):
            if type(value) is not float:
                continue
            if key == "momentum" and isinstance(m, nn.modules.batchnorm._BatchNorm):
                rounded = 1.0 - float(np.float32(1.0 - value))  # MXNet is given Gluon's momentum, 1 - torch's
            else:
                rounded = float(np.float32(value))
            if rounded != value:
                changed.append((m, key, value))
                setattr(m, key, rounded)
    try:
        with resize:
            yield len(changed)
    finally:
        for m, key, value in changed:
            setattr(m, key, value)


class _MXNetResize(torch.overrides.TorchFunctionMode):
    """Inside round_constants: a float64 bilinear F.interpolate at a given size computes its sample
    positions and weights in float32, as MXNet's BilinearResize2D does: another of
    MXNet's float32 constants, which the floor must carry (Fast-SCNN's three resizes put its correct
    port's float64 forward 1e-6 from the Gluon block's)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.interpolate:
            a = _INTERPOLATE.bind(*args, **kwargs).arguments
            x = a["input"]
            if (x.dtype == torch.float64 and x.dim() == 4 and a.get("mode") == "bilinear"
                    and a.get("size") is not None and a.get("scale_factor") is None and not a.get("antialias")):
                size = a["size"] if isinstance(a["size"], list | tuple) else (a["size"], a["size"])
                return _mxnet_bilinear_resize(x, size, bool(a.get("align_corners")))
        return func(*args, **kwargs)


def _mxnet_bilinear_resize(x, size, align_corners=True):
    """MXNet's BilinearResize2D (CPU, mxnet 1.9.1) on an NCHW tensor: its sample rows and weights as
    its kernel computes them, in float32 even for a float64 input (the scale a float32 ratio; with
    align_corners the position scale * i in float32, without it max(scale * (i + 0.5) - 0.5, 0) in
    float64 stored as float32), each weight the position less its row in x's dtype. F.interpolate
    computes them in the input's precision: in float64 the two differ by up to ~1e-6 of the values.
    What _MXNetResize runs in place of a float64 bilinear F.interpolate."""
    def axis(n_in, n_out):
        f = np.float32
        scale = f(0) if n_out <= 1 else f(n_in - 1) / f(n_out - 1) if align_corners else f(n_in) / f(n_out)
        i = np.arange(n_out)
        r = ((scale * i.astype(f)).astype(f) if align_corners else
             np.maximum(np.float64(scale) * (i + 0.5) - 0.5, 0.0).astype(f))
        lo = r.astype(np.int64)
        return (torch.from_numpy(lo).to(x.device), torch.from_numpy(np.minimum(lo + 1, n_in - 1)).to(x.device),
                torch.from_numpy(r.astype(np.float64) - lo).to(x.device, x.dtype))

    h0, h1, lh = axis(x.shape[-2], int(size[0]))
    w0, w1, lw = axis(x.shape[-1], int(size[1]))
    lh, lw = lh[:, None], lw[None, :]

    def cols(rows):
        return (1 - lw) * rows[..., w0] + lw * rows[..., w1]

    return (1 - lh) * cols(x[..., h0, :]) + lh * cols(x[..., h1, :])


def restore_mode(model: nn.Module, info: dict) -> None:
    """Leave the model in the train/eval flag it came with."""
    model.train(info["training"])
