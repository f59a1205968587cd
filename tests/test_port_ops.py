"""Every MXNet op the porter writes (common/port/ops.py), held to the MXNet op itself: a tiny Gluon
HybridBlock uses it through F with the settings that matter, the porter reads it
(backends/mxnet/port.py read), writes model.py as `ganparity port` does (emit, write), and the
written model's output equals the block's on the same numpy input, in float32 (1e-6 of the
largest value; exact for integer and index outputs) and float64 (1e-12; ~1e-7 where MXNet holds a
float setting as float32), with the input's gradient too for the ops that have one. The corner
cases where the frameworks differ are cases of their own (ties, rounding, bins, align_corners,
Reshape's codes, NMS's ordering and thresholds); the differences the port keeps on purpose are
pinned in test_known_differences."""

from __future__ import annotations

import contextlib
import importlib.util
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

mx = pytest.importorskip("mxnet")
torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

from mxnet import autograd, gluon  # noqa: E402

from ganparity.backends.mxnet import port as mxport  # noqa: E402
from ganparity.common.port import Unsupported, emit, port  # noqa: E402
from ganparity.common.port.write import _model_file  # noqa: E402
from ganparity.common.usermodel import parse_optimizer  # noqa: E402

MODELS = str(Path(__file__).with_name("port_models.py"))
RNG = np.random.default_rng(26)


def normal(*shape):
    return RNG.standard_normal(shape)


def positive(*shape):
    return np.abs(RNG.standard_normal(shape)) + 0.5


class OpBlock(gluon.HybridBlock):
    """fn(F, *inputs) on the inputs packed into one (1, n) array (read() reads a one-input block);
    a single input is passed as it is, batch axis and all."""

    def __init__(self, fn, shapes):
        super().__init__()
        self.fn, self.shapes = fn, [tuple(s) for s in shapes]

    def hybrid_forward(self, F, x):
        if len(self.shapes) == 1:
            return self.fn(F, x)
        pieces, at = [], 0
        for s in self.shapes:
            n = int(np.prod(s))
            pieces.append(F.reshape(F.slice_axis(x, axis=1, begin=at, end=at + n), shape=s))
            at += n
        return self.fn(F, *pieces)


@dataclass
class Case:
    name: str
    fn: object
    inputs: list
    grad: bool = True  # compare the input's gradient (float64)
    f64: float | None = 1e-12  # float64 tolerance (1e-7 where MXNet holds a float setting as float32); None:
    # MXNet has no float64 kernel (the gradient is compared in float32 then)
    text: tuple = ()  # what the written forward must say
    extra: dict = field(default_factory=dict)


def _packed(inputs) -> np.ndarray:
    return inputs[0] if len(inputs) == 1 else np.concatenate([np.ravel(a) for a in inputs])[None, :]


def _write(block, x: np.ndarray, tmp: Path):
    graph = mxport.read(block, x.shape)
    p = emit(graph)
    text, _ = _model_file(p, graph, parse_optimizer("sgd:lr=0.1"), "torch", "tests/test_port_ops.py")
    path = tmp / "model.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location(f"ported_op_{abs(hash(str(tmp)))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    net = module.build()
    net.load_state_dict({t: torch.from_numpy(graph["arrays"][g]) for t, g in p.tensor_map.items()}, strict=True)
    return net.eval(), text


def _mx_run(block, x, dtype, projections=None):
    xs = mx.nd.array(x, dtype=dtype)
    if projections is None:
        out = block(xs)
        return [o.asnumpy() for o in (out if isinstance(out, list | tuple) else [out])], None
    xs.attach_grad()
    with autograd.record():
        out = block(xs)
        outs = out if isinstance(out, list | tuple) else [out]
        terms = [(o.astype(dtype) * mx.nd.array(r, dtype=dtype)).sum() for o, r in zip(outs, projections)
                 if np.issubdtype(o.dtype, np.floating)]
        loss = mx.nd.add_n(*terms) if len(terms) > 1 else terms[0]
    loss.backward()
    return [o.asnumpy() for o in outs], xs.grad.asnumpy()


def _torch_run(net, x, dtype, projections=None):
    xs = torch.tensor(x, dtype=getattr(torch, dtype), requires_grad=projections is not None)
    out = net(xs)
    outs = list(out) if isinstance(out, tuple | list) else [out]
    if projections is None:
        return [o.detach().numpy() for o in outs], None
    loss = sum((o.to(xs.dtype) * torch.tensor(r, dtype=xs.dtype)).sum() for o, r in zip(outs, projections)
               if o.is_floating_point())
    if loss.requires_grad:  # (an op without a gradient, as box_decode: the input's gradient is zero)
        loss.backward()
    return [o.detach().numpy() for o in outs], (xs.grad.numpy() if xs.grad is not None else np.zeros_like(x))


def _close(t: np.ndarray, m: np.ndarray, tol: float, what: str):
    assert t.shape == m.shape, f"{what}: shape {t.shape} vs MXNet {m.shape}"
    assert t.dtype == m.dtype, f"{what}: dtype {t.dtype} vs MXNet {m.dtype}"
    if not np.issubdtype(m.dtype, np.floating) or tol == 0:
        np.testing.assert_array_equal(t, m, err_msg=what)
        return
    scale = max(1.0, float(np.nanmax(np.abs(m)))) if m.size else 1.0
    np.testing.assert_allclose(t, m, rtol=tol, atol=tol * scale, err_msg=what)


def check(case: Case, tmp: Path) -> str:
    """The written model against the Gluon block: forward in float32 and float64, the input's
    gradient in float64. Returns the written model.py."""
    block = OpBlock(case.fn, [np.shape(a) for a in case.inputs])
    x = _packed([np.asarray(a, dtype=np.float64) for a in case.inputs])
    net, text = _write(block, x.astype(np.float32), tmp)
    for needle in case.text:  # the written code's shape, whatever its values are named ('x1' stands for any name)
        pattern = re.escape(needle).replace(r"x1", r"\w+").replace(r"x2", r"\w+").replace(r"x3", r"\w+")
        assert re.search(pattern, text), (needle, text[text.index("def forward"):])
    runs = [("float32", case.extra.get("f32", 1e-6))] + ([("float64", case.f64)] if case.f64 else [])
    for dtype, tol in runs:
        want, _ = _mx_run(block, x.astype(dtype), dtype)
        got, _ = _torch_run(net, x.astype(dtype), dtype)
        assert len(got) == len(want), (len(got), len(want))
        for k, (t, m) in enumerate(zip(got, want)):
            _close(t, m, tol, f"{case.name} {dtype} output {k}")
    if case.grad:
        dtype = "float64" if case.f64 else "float32"
        outs, _ = _mx_run(block, x.astype(dtype), dtype)
        projections = [RNG.standard_normal(o.shape) for o in outs]
        _, want = _mx_run(block, x.astype(dtype), dtype, projections)
        _, got = _torch_run(net, x.astype(dtype), dtype, projections)
        if "grad_of" in case.extra:  # the inputs whose gradient MXNet writes (not SequenceMask's lengths)
            sizes = np.cumsum([0] + [np.size(a) for a in case.inputs])
            keep = np.concatenate([np.arange(sizes[i], sizes[i + 1]) for i in case.extra["grad_of"]])
            got, want = got.reshape(-1)[keep], want.reshape(-1)[keep]
        _close(got, want, case.extra.get("grad", case.f64 * 10 if case.f64 else 1e-5), f"{case.name} input gradient")
    return text


def cases(*items: Case):
    return pytest.mark.parametrize("case", items, ids=[c.name for c in items])


# -- shapes -----------------------------------------------------------------------------------------

X4 = normal(2, 3, 4, 5)
SHAPES = [
    Case("transpose", lambda F, x: F.transpose(x, axes=(0, 2, 3, 1)), [X4], text=("permute(0, 2, 3, 1)",)),
    Case("transpose-reversed", lambda F, x: F.transpose(x), [normal(2, 3, 4)], text=("permute(2, 1, 0)",)),
    Case("expand_dims", lambda F, x: F.expand_dims(x, axis=1) + F.expand_dims(x, axis=-3), [normal(2, 3, 4)]),
    Case("reshape-0-minus1", lambda F, x: F.reshape(x, shape=(0, -1)), [X4], text=("reshape(x.shape[0], -1)",)),
    Case("reshape-across-batch", lambda F, x: F.reshape(x, shape=(6, -1)), [X4], text=("reshape(6, -1)",)),
    Case("reshape-minus3", lambda F, x: F.reshape(x, shape=(0, -3, 0)), [X4],
         text=("reshape(x.shape[0], x.shape[1] * x.shape[2], x.shape[3])",)),
    Case("reshape-minus3-minus2", lambda F, x: F.reshape(x, shape=(-3, -2)), [X4]),
    Case("reshape-minus4", lambda F, x: F.reshape(x, shape=(0, 0, -4, 2, -1, 0)), [X4]),
    Case("reshape-minus4-batch", lambda F, x: F.reshape(x, shape=(-4, 1, 2, -2)), [X4]),
    Case("reshape-minus2-identity", lambda F, x: F.reshape(x, shape=(-2,)) * 2, [X4]),
    Case("reshape-reverse", lambda F, x: F.reshape(x, shape=(-1, 0), reverse=True), [X4],
         text=("reshape(-1, x.shape[3])",)),
    Case("reshape-reverse-0", lambda F, x: F.reshape(x, shape=(0, 0, -1), reverse=True), [normal(2, 3, 4, 5)]),
    Case("reshape_like", lambda F, x, y: F.reshape_like(x, y), [normal(2, 12), normal(2, 3, 4)]),
    Case("swapaxes", lambda F, x: F.swapaxes(x, 0, 2), [normal(2, 3, 4)], text=("transpose(0, 2)",)),
    Case("flip", lambda F, x: F.flip(x, axis=1) + F.reverse(x, axis=(0, 2)), [normal(2, 3, 4)]),
    Case("squeeze", lambda F, x: F.squeeze(x, axis=1) + F.squeeze(x), [normal(2, 1, 3, 1)[..., 0]]),
    Case("squeeze-to-one", lambda F, x: F.squeeze(x), [normal(1, 1)]),
    Case("slice_axis", lambda F, x: F.slice_axis(x, axis=1, begin=1, end=3) + F.slice_axis(
        F.slice_axis(x, axis=-1, begin=-3, end=None), axis=1, begin=0, end=2), [normal(2, 4, 3)]),
    Case("slice_axis-batch", lambda F, x: F.slice_axis(x, axis=0, begin=1, end=2), [normal(3, 4)]),
    Case("slice", lambda F, x: F.slice(x, begin=(None, 1), end=(None, 3)), [normal(3, 4, 5)], text=("[:, 1:3]",)),
    Case("slice-step", lambda F, x: F.slice(x, begin=(1, None, None), end=(None, 4, None), step=(1, 2, 3)),
         [normal(3, 5, 7)]),
    Case("slice-negative-step", lambda F, x: F.slice(x, begin=(None, None, -1), end=(None, None, None),
                                                     step=(None, 1, -2)), [normal(3, 4, 5)], text=("torch.flip(",)),
    Case("slice-negative-end", lambda F, x: F.slice(x, begin=(-2, 1), end=(None, -1)), [normal(4, 5)],
         text=("x[-2:, 1:-1]",)),
    Case("slice-negative-step-bounds", lambda F, x: F.slice(x, begin=(2, 3), end=(0, None), step=(-1, -1)),
         [normal(4, 5)]),
    Case("slice_like", lambda F, x, y: F.slice_like(x, y, axes=(2, 3)), [normal(1, 2, 6, 7), normal(1, 2, 4, 5)],
         text=(":x", ".shape[2]")),
    Case("slice_like-all", lambda F, x, y: F.slice_like(x, y), [normal(3, 6), normal(2, 4)]),
    Case("tile", lambda F, x: F.tile(x, reps=(2, 1, 3)), [normal(2, 3)], text=(".tile((2, 1, 3))",)),
    Case("tile-short-reps", lambda F, x: F.tile(x, reps=(2,)), [normal(2, 3)]),
    Case("repeat", lambda F, x: F.repeat(x, repeats=2, axis=1), [normal(2, 3)]),
    Case("repeat-flat", lambda F, x: F.repeat(x, repeats=3), [normal(2, 3)]),
    Case("split-all-outputs", lambda F, x: F.split(x, num_outputs=3, axis=1), [normal(2, 6, 4)],
         text=("x1, x2, x3 = torch.chunk(x, 3, dim=1)",)),
    Case("split-some-used", lambda F, x: (lambda a, b, c: a * c)(*F.split(x, num_outputs=3, axis=2)),
         [normal(2, 4, 6)], text=(", _, ",)),
    Case("split-squeeze", lambda F, x: (lambda a, b: a - 2 * b)(*F.split(x, num_outputs=2, axis=1,
                                                                          squeeze_axis=True)),
         [normal(3, 2, 4)], text=("torch.unbind(x, dim=1)",)),
    Case("stack", lambda F, x, y: F.stack(x, y, axis=1), [normal(2, 3), normal(2, 3)]),
    Case("broadcast_to", lambda F, x: F.broadcast_to(x, shape=(0, 3, 0)), [normal(2, 1, 4)],
         text=(".expand(-1, 3, -1)",)),
    Case("broadcast_like", lambda F, x, y: F.broadcast_like(x, y) * y, [normal(2, 1, 4), normal(2, 3, 4)]),
    Case("broadcast_like-axes", lambda F, x, y: F.broadcast_like(x, y, lhs_axes=(1,), rhs_axes=(0,)),
         [normal(2, 1, 4), normal(5, 3)]),
    Case("broadcast_axis", lambda F, x: F.broadcast_axis(x, axis=(1, 3), size=(3, 2)), [normal(2, 1, 4, 1)]),
    Case("shape_array", lambda F, x: F.shape_array(x), [normal(2, 3, 4)], grad=False),
    # MXNet's arange is float32 whatever the input: a float64 block cannot mix them, so it is an output
    Case("arange", lambda F, x: (F.arange(0, 1, 0.1), F.arange(3, dtype="float64"), x * 2), [normal(2, 10)]),
    Case("arange-repeat", lambda F, x: (F.arange(2, 5, repeat=2), F.arange(1.5, 3.7, 0.3), x + 1), [normal(2, 6)]),
    Case("arange-int", lambda F, x: F.broadcast_add(F.cast(x, "int32"), F.arange(2, 7, dtype="int32")),
         [normal(2, 5) * 4], grad=False),
    Case("arange_like", lambda F, x: x * F.contrib.arange_like(x, start=1, step=0.5), [normal(2, 3)]),
    Case("arange_like-axis", lambda F, x: F.broadcast_mul(x, F.contrib.arange_like(x, axis=1)), [normal(2, 4)]),
    Case("arange_like-repeat", lambda F, x: x + F.contrib.arange_like(x, repeat=2), [normal(3, 3)]),
    Case("ones_zeros_like", lambda F, x: F.ones_like(x) * 2 + F.zeros_like(x) + x, [normal(2, 3)]),
    Case("zeros-ones-full", lambda F, x: (F.zeros((2, 3)), F.ones((3,), dtype="int32"), F.full((2, 2), 1.5), x * 1),
         [normal(2, 3)]),
    Case("cast-int32", lambda F, x: F.cast(x * 3, "int32"), [normal(4, 5)], grad=False),
    Case("cast-wraps", lambda F, x: (F.cast(x, "uint8"), F.cast(x, "int8")),
         [np.array([[-1.7, -0.5, 0.5, 1.7, 2.5, 300.7, -300.2, 255.9]])], grad=False, text=(".to(torch.uint8)",)),
    Case("cast-float16", lambda F, x: F.cast(x, "float16"), [normal(3, 4) * 100], grad=False),
    Case("cast-roundtrip", lambda F, x: F.cast(F.cast(x * 3, "float16"), "float32"), [normal(3, 4)]),
    Case("pad-constant", lambda F, x: F.pad(x, mode="constant", pad_width=(0, 0, 0, 0, 1, 2, 2, 1),
                                            constant_value=1.5), [normal(2, 3, 4, 5)],
         text=("F.pad(x, (2, 1, 1, 2), mode='constant', value=1.5)",)),
    Case("pad-edge", lambda F, x: F.pad(x, mode="edge", pad_width=(0, 0, 0, 0, 1, 2, 2, 1)), [normal(2, 3, 4, 5)]),
    Case("pad-reflect", lambda F, x: F.pad(x, mode="reflect", pad_width=(0, 0, 0, 0, 2, 1, 1, 3)),
         [normal(2, 3, 4, 5)]),
    Case("pad-5d", lambda F, x: F.pad(x, mode="constant", pad_width=(0, 0, 0, 0, 1, 0, 0, 1, 1, 1)),
         [normal(1, 2, 2, 3, 3)]),
]


@cases(*SHAPES)
def test_shape_ops(case, tmp_path):
    check(case, tmp_path)


# -- elementwise ------------------------------------------------------------------------------------

def test_a_symbol_convolution_without_stride_or_pad(tmp_path):
    """mx.sym.Convolution(kernel=(1, 1)) as GluonCV's SSD feature expander writes it holds stride and
    pad as '()' in the symbol: the defaults, 1 and 0 (not an empty stride)."""
    data = mx.sym.var("data")
    sym = mx.sym.Convolution(data, kernel=(1, 1), num_filter=4, stride=(), pad=(), name="expand")
    block = mxport._GraphBlock(sym, [data])
    block.initialize()
    x = normal(2, 3, 5, 5).astype(np.float32)
    net, text = _write(block, x, tmp_path)
    assert "stride=()" not in text and "padding=()" not in text
    want = block(mx.nd.array(x)).asnumpy()
    got = net(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


MOD_A = np.array([[5.5, -5.5, 5.5, -5.5, 7.0, -2.0, 0.25, 9.0]])
MOD_B = np.array([[2.0, 2.0, -2.0, -2.0, 3.5, 1.0, -0.75, 4.0]])
MODS = [  # CenterNet's decoder: a top-k index modulo the map's width; Python's sign rule (the divisor's)
    Case("broadcast_mod", lambda F, a, b: F.broadcast_mod(a, b), [MOD_A, MOD_B], text=("torch.remainder(x1, x2)",)),
    Case("mod_scalar", lambda F, x: x % 2.5, [MOD_A], text=("torch.remainder(x, 2.5)",)),
    Case("rmod_scalar", lambda F, x: 5.5 % x, [MOD_B]),
    # an integer over an integer is integer division in MXNet, toward zero (-7 / 2 = -3)
    Case("div-int", lambda F, x: F.broadcast_div(F.cast(x * 7, "int32"), F.cast(F.abs(x) * 3 + 1, "int32")),
         [np.array([[-1.0, -0.3, 0.4, 1.3, 2.9, -2.2]])], grad=False, text=("rounding_mode='trunc'",)),
]


@cases(*MODS)
def test_mod_ops(case, tmp_path):
    check(case, tmp_path)


TIES = np.array([[0.0, 1.0, -1.0, 2.0, 0.5, 0.5], [3.0, -2.0, 0.5, 1.0, 0.0, 2.5]])
TIES_B = np.array([[0.0, 2.0, -1.0, 1.0, 0.5, -0.5]])
BOUNDS = np.array([[2.5, -2.5, 0.0, 3.0, -3.0, 1.0, 2.0, -1.6]])
HALVES = np.array([[0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 0.49999997, 2.4999998, 1.0, -3.0, 7.25, -7.75]])
ELEMENTWISE = [
    Case("sub", lambda F, x, y: x - y + F.elemwise_sub(x, y), [normal(2, 3), normal(2, 3)]),
    Case("broadcast_sub", lambda F, x, y: F.broadcast_sub(x, y), [normal(2, 3), normal(1, 3)]),
    Case("div", lambda F, x, y: x / y + F.broadcast_div(x, F.slice_axis(y, axis=0, begin=0, end=1)),
         [normal(2, 3), positive(2, 3)]),
    Case("power", lambda F, x, y: F.broadcast_power(x, y), [positive(2, 3), normal(1, 3)]),
    Case("maximum-ties", lambda F, x, y: F.broadcast_maximum(x, y), [TIES, TIES_B],
         text=("torch.where(x1 >= x2, x1, x2)",)),
    Case("minimum-ties", lambda F, x, y: F.broadcast_minimum(x, y) + F.minimum(x, F.ones_like(x) * 0.5),
         [TIES, TIES_B]),
    Case("maximum-same-shape", lambda F, x, y: F.maximum(x, y), [TIES, TIES[::-1] * 1.0]),
    Case("rminus-rdiv", lambda F, x: (2 - x) + 3 / x, [positive(2, 3)]),
    Case("power-scalar", lambda F, x: x ** 3 + F.abs(x) ** 0.5 + 2 ** x, [normal(2, 3)]),
    Case("maximum-minimum-scalar-ties", lambda F, x: F.maximum(x, 0.5) + F.minimum(x, 0.5), [TIES],
         text=("torch.where(x >= 0.5, x, 0.5)",)),
    Case("exp-log", lambda F, x: F.exp(x) + F.log(F.abs(x) + 0.1) + F.log1p(F.abs(x)) + F.expm1(x),
         [normal(2, 3)], f64=1e-7),
    Case("sqrt-square-rsqrt", lambda F, x: F.sqrt(x) + F.square(x) + F.rsqrt(x) + F.reciprocal(x),
         [positive(2, 3)]),
    Case("abs-negative-sign", lambda F, x: F.abs(x) + F.negative(x) * 2 + F.sign(x), [TIES]),
    Case("erf", lambda F, x: F.erf(x) + F.erfinv(F.tanh(x) * 0.9), [normal(2, 3)], f64=1e-7),
    Case("sin-cos-softsign", lambda F, x: F.sin(x) + F.cos(x) + F.softsign(x), [normal(2, 3)]),
    # gammaln's gradient: MXNet's digamma is good to ~1e-7 in float64
    Case("log2-log10-gammaln", lambda F, x: F.log2(x) + F.log10(x) + F.gammaln(x), [positive(2, 3)],
         extra={"grad": 3e-7}),
    Case("floor-ceil-trunc", lambda F, x: F.concat(F.floor(x), F.ceil(x), F.trunc(x), F.fix(x), dim=0), [HALVES * 3],
         grad=False),
    Case("round-half-away", lambda F, x: F.round(x), [HALVES], grad=False, text=("torch.trunc(",)),
    Case("rint-half-even", lambda F, x: F.rint(x), [HALVES], grad=False),
    Case("compare-broadcast", lambda F, x, y: F.concat(F.broadcast_greater(x, y), F.broadcast_greater_equal(x, y),
                                                       F.broadcast_lesser(x, y), F.broadcast_lesser_equal(x, y),
                                                       F.broadcast_equal(x, y), F.broadcast_not_equal(x, y), dim=0),
         [TIES, TIES_B], grad=False),
    Case("compare-scalar", lambda F, x: F.concat(x > 0.5, x >= 0.5, x < 0.5, x <= 0.5, x == 0.5, x != 0.5, dim=0),
         [TIES], grad=False, text=("(x > 0.5).to(x.dtype)",)),
    Case("compare-scalar-f64", lambda F, x: x > 0.1, [np.array([[0.1, 0.1 + 1e-12, 0.09999999]])], grad=False),
    Case("compare-same-shape", lambda F, x, y: F.concat(x > y, x == y, x < y, dim=0), [TIES, TIES[::-1] * 1.0],
         grad=False),
    Case("logical", lambda F, x, y: F.concat(F.broadcast_logical_and(x, y), F.broadcast_logical_or(x, y),
                                             F.broadcast_logical_xor(x, y), F.logical_not(x), dim=0),
         [TIES, TIES_B], grad=False),
    Case("where", lambda F, c, x, y: F.where(c > 0, x, y), [normal(2, 3), normal(2, 3), normal(2, 3)]),
    Case("where-rows", lambda F, c, x, y: F.where(c > 0, x, y), [np.array([1.0, -1.0, 2.0]), normal(3, 4),
                                                                 normal(3, 4)]),
    Case("hard_sigmoid-bounds", lambda F, x: F.hard_sigmoid(x), [BOUNDS], f64=1e-7, text=("F.hardtanh(",)),
    Case("hard_sigmoid-alpha", lambda F, x: F.hard_sigmoid(x, alpha=0.25, beta=0.4), [normal(2, 8) * 3], f64=1e-7),
]


@cases(*ELEMENTWISE)
def test_elementwise_ops(case, tmp_path):
    check(case, tmp_path)


# -- reductions, normalisations, softmax --------------------------------------------------------------

LENGTHS = np.array([[2.0, 0.0, 4.0], [1.0, 3.0, 0.0]])
REDUCTIONS = [
    Case("sum-keepdims", lambda F, x: F.sum(x, axis=1, keepdims=True), [normal(2, 3, 4)],
         text=("x.sum(dim=1, keepdim=True)",)),
    Case("sum-all", lambda F, x: F.sum(x), [normal(2, 3)], text=("x.sum().reshape(1)",)),
    Case("sum-exclude", lambda F, x: F.sum(x, axis=(1, 2), exclude=True), [normal(2, 3, 4, 2)]),
    Case("mean-max-min", lambda F, x: (F.mean(x, axis=-1), F.max(x, axis=-1), F.min(x, axis=(0, 2))),
         [normal(3, 4, 4)]),
    Case("max-all-keepdims", lambda F, x: (F.max(x, axis=(), keepdims=True), F.min(x)), [normal(3, 4)]),
    Case("prod-nansum", lambda F, x: (F.prod(x, axis=1), F.nansum(x, axis=1), F.prod(x)), [normal(2, 3)]),
    Case("norm", lambda F, x: (F.norm(x, axis=1), F.norm(x, ord=1, axis=(1, 2), keepdims=True), F.norm(x)),
         [normal(2, 3, 4)]),
    Case("argmax-ties", lambda F, x: (F.argmax(x, axis=1), F.argmin(x, axis=1), F.argmax(x, axis=0)), [TIES],
         grad=False),
    Case("argmax-all-keepdims", lambda F, x: (F.argmax(x, axis=1, keepdims=True), F.argmin(x)), [normal(3, 5)],
         grad=False),
    Case("l2normalization-instance", lambda F, x: F.L2Normalization(x), [normal(2, 3, 4)], f64=1e-7),
    Case("l2normalization-channel", lambda F, x: F.L2Normalization(x, mode="channel", eps=1e-4),
         [normal(2, 3, 4, 2)], f64=1e-7),
    Case("l2normalization-spatial", lambda F, x: F.L2Normalization(x, mode="spatial"), [normal(2, 3, 4, 2)],
         f64=1e-7),
    Case("l2normalization-tiny", lambda F, x: F.L2Normalization(x), [np.array([[1e-6, 0.0], [0.0, 0.0], [3, 4]])],
         f64=1e-7),
    Case("softmax-temperature", lambda F, x: F.softmax(x, axis=1, temperature=0.5), [normal(2, 5, 3)],
         text=("torch.softmax(x / 0.5, dim=1)",)),
    Case("log_softmax", lambda F, x: F.log_softmax(x, axis=-1, temperature=2.0) + F.log_softmax(x, axis=0),
         [normal(3, 6)]),
    Case("softmax-length", lambda F, x, n: F.softmax(x, F.cast(n, "int32"), axis=-1, use_length=True),
         [normal(2, 3, 5), LENGTHS], text=("softmax_with_length(",), extra={"grad_of": (0,)}),
    Case("softmax-length-axis1", lambda F, x, n: F.softmax(x, F.cast(n, "int32"), axis=1, use_length=True,
                                                           temperature=2.0),
         [normal(2, 4, 3), np.array([[2.0, 0.0, 4.0], [1.0, 3.0, 4.0]])], extra={"grad_of": (0,)}),
    Case("softmax-activation", lambda F, x: F.SoftmaxActivation(F.reshape(x, (0, -1))) + F.reshape(
        F.SoftmaxActivation(x, mode="channel"), (0, -1)), [normal(2, 3, 2, 2)], f64=None),
    # 'instance' on a 4-D input: MXNet's forward takes the last axis (the port does too), its backward the
    # channel axis (test_known_differences)
    Case("softmax-activation-4d", lambda F, x: F.SoftmaxActivation(x), [normal(2, 3, 2, 2)], f64=None, grad=False,
         text=("torch.softmax(x, dim=-1)",)),
    Case("sequence_mask", lambda F, x, n: F.SequenceMask(x, F.abs(n), use_sequence_length=True, value=-7.0),
         [normal(4, 3, 2), np.array([2.0, 1.5, 0.0])], text=("sequence_mask(",), extra={"grad_of": (0,)}),
    Case("sequence_mask-axis1", lambda F, x, n: F.SequenceMask(x, F.abs(n), use_sequence_length=True, axis=1),
         [normal(3, 4), np.array([2.0, 4.9, 0.5])], extra={"grad_of": (0,)}),
    Case("sequence_mask-off", lambda F, x: F.SequenceMask(x) * 2, [normal(4, 3)]),
    Case("div_sqrt_dim", lambda F, x: F.contrib.div_sqrt_dim(x), [normal(2, 3, 8)]),
]


@cases(*REDUCTIONS)
def test_reduction_and_softmax_ops(case, tmp_path):
    check(case, tmp_path)


# -- products and attention -------------------------------------------------------------------------

H, D, T, B, TK = 2, 3, 5, 2, 4
PRODUCTS = [
    Case("dot-2d", lambda F, x, y: F.dot(x, y) + F.transpose(F.dot(x, y, transpose_a=True, transpose_b=True)),
         [normal(3, 3), normal(3, 3)]),
    Case("dot-nd", lambda F, x, y: F.dot(x, y), [normal(2, 3, 4), normal(4, 5)], text=("torch.tensordot(",)),
    Case("dot-vectors", lambda F, x, y: F.dot(x, y), [normal(4), normal(4)]),
    Case("batch_dot", lambda F, x, y: F.batch_dot(x, y) + F.batch_dot(x, F.swapaxes(y, 1, 2), transpose_b=True),
         [normal(2, 3, 4), normal(2, 4, 3)], text=("torch.bmm(",)),
    Case("batch_dot-transpose_a", lambda F, x, y: F.batch_dot(x, y, transpose_a=True), [normal(2, 4, 3),
                                                                                          normal(2, 4, 5)]),
    Case("selfatt", lambda F, qkv: F.contrib.interleaved_matmul_selfatt_valatt(
        qkv, F.softmax(F.contrib.interleaved_matmul_selfatt_qk(qkv, heads=H), axis=-1), heads=H),
        [normal(T, B, 3 * H * D)], f64=None, text=("interleaved_matmul_selfatt_qk(x, heads=2)",)),
    Case("selfatt_qk", lambda F, qkv: F.contrib.interleaved_matmul_selfatt_qk(qkv, heads=H), [normal(T, B, 3 * H * D)],
         f64=None),
    Case("encdec", lambda F, q, kv: F.contrib.interleaved_matmul_encdec_valatt(
        kv, F.softmax(F.contrib.interleaved_matmul_encdec_qk(q, kv, heads=H), axis=-1), heads=H),
        [normal(T, B, H * D), normal(TK, B, 2 * H * D)], f64=None),
]


@cases(*PRODUCTS)
def test_product_ops(case, tmp_path):
    check(case, tmp_path)


# -- indexing ---------------------------------------------------------------------------------------

ODD_INDEX = np.array([-1.5, -0.5, 0.7, 4.2, 7.0, 1.99, -6.0])
INDEXING = [
    Case("take-clip", lambda F, a, i: F.take(a, i), [normal(5, 3), ODD_INDEX], text=(".long().clamp(0, 4)",)),
    Case("take-wrap", lambda F, a, i: F.take(a, i, mode="wrap"), [normal(5, 3), ODD_INDEX], text=(".long() % 5",)),
    Case("take-axis1-nd", lambda F, a, i: F.take(a, i, axis=1), [normal(2, 5, 3), ODD_INDEX[:6].reshape(2, 3)]),
    Case("take-last-axis", lambda F, a, i: F.take(a, i, axis=-1), [normal(2, 3, 5), ODD_INDEX]),
    Case("pick", lambda F, a, i: F.pick(a, i), [normal(3, 4), np.array([-1.0, 1.7, 5.0])]),
    Case("pick-wrap-keepdims", lambda F, a, i: F.pick(a, i, axis=1, mode="wrap", keepdims=True),
         [normal(3, 4, 2), np.array([[-1.0, 1.7], [5.0, 2.0], [0.0, -5.0]])]),
    Case("pick-axis0", lambda F, a, i: F.pick(a, i, axis=0), [normal(3, 4), np.array([0.0, 1.7, 3.0, 1.0])]),
    Case("gather_nd", lambda F, a, i: F.gather_nd(a, i), [normal(5, 6, 2), np.array([[0, 4, 1.7, 3], [1, 5, 0.5,
                                                                                                      2]])]),
    Case("gather_nd-negative", lambda F, a, i: F.gather_nd(a, i), [normal(5, 6, 2), np.array([[0, -1, -5],
                                                                                             [-6, 5, -1]])],
         grad=False),
    Case("one_hot", lambda F, i: F.one_hot(i, depth=3), [np.array([-1, 0, 1.7, 2.2, 3, 5, -0.5])], grad=False),
    Case("one_hot-on-off", lambda F, i: F.one_hot(i, depth=4, on_value=2.5, off_value=-1, dtype="float64"),
         [np.array([[0.0, 3.0], [-2.0, 1.0]])], grad=False),
    Case("topk-indices-ties", lambda F, x: F.topk(x, k=5), [np.array([[1.0, 3, 3, 2, 3, 1, 0, 3]])], grad=False,
         text=("topk_ties_in_order(x, 5, dim=1, index_dtype=torch.float32)[1]",)),
    Case("topk-ascend-ties", lambda F, x: F.topk(x, k=5, is_ascend=True, ret_typ="indices", dtype="int32"),
         [np.array([[1.0, 3, 3, 2, 3, 1, 0, 3], [0, 0, 0, 0, 1, 1, 1, 1]])], grad=False),
    Case("topk-value", lambda F, x: F.topk(x, k=3, ret_typ="value", axis=1), [normal(2, 6, 3)]),
    Case("topk-both", lambda F, x: F.topk(x, k=2, ret_typ="both"), [normal(3, 40)], text=("x1, x2 = topk",)),
    Case("topk-both-one-used", lambda F, x: F.topk(x, k=2, ret_typ="both")[1] * 2, [normal(3, 40)], grad=False),
    Case("topk-mask", lambda F, x: F.topk(x, k=2, ret_typ="mask", axis=0), [normal(5, 3)], grad=False),
    Case("topk-flat-all", lambda F, x: F.topk(x, axis=None, k=-1, ret_typ="value"), [normal(2, 3)]),
    Case("sort-argsort", lambda F, x: (F.sort(x), F.argsort(x, is_ascend=False)),
         [np.array([[1.0, 3, 3, 2, 3, 1, 0, 3]])], grad=False),
]


@cases(*INDEXING)
def test_indexing_ops(case, tmp_path):
    check(case, tmp_path)


# -- detection and segmentation (GluonCV) -----------------------------------------------------------


def _boxes(rows) -> np.ndarray:
    return np.array(rows, dtype=np.float64)


def _rois(F, r):
    """The rois made valid whatever the input (the test's own already are): read() runs the block once
    on a random input, and MXNet's ROIAlign reads outside the batch for a batch index out of range,
    and aborts the process for a box of negative width when aligned=True."""
    low, high = F.slice_axis(r, axis=1, begin=1, end=3), F.slice_axis(r, axis=1, begin=3, end=5)
    return F.concat(F.clip(F.slice_axis(r, axis=1, begin=0, end=1), 0, 1), low, low + F.abs(high - low), dim=1)


# MXNet's BilinearResize2D computes the sample positions and weights in float32 whatever the data's dtype:
# a float64 run differs from F.interpolate's (double) by up to ~1e-6 of the values
RESIZE64 = 3e-6


# id, score, x1, y1, x2, y2: two boxes tie on score; IoU exactly 0.5 (1 / 2) between rows 0 and 1; a box of
# another class on top of row 0; one below valid_thresh; one of the background class (-1)
DETECTIONS = _boxes([[0, 0.9, 0, 0, 1, 1], [0, 0.9, 0, 0, 2, 1], [1, 0.8, 0, 0, 1, 1], [0, 0.5, 5, 5, 6, 6],
                     [0, 0.01, 0, 0, 1, 1], [-1, 0.7, 3, 3, 4, 4], [0, 0.95, 0, 0, 1.1, 1], [2.7, 0.6, 0, 0, 1, 1],
                     [2.2, 0.6, 0, 0, 1, 1.2], [0, 0.9, 7, 7, 8, 8]])
NMS = dict(id_index=0, score_index=1, coord_start=2)
SCORES_TIED = _boxes([[0, 0.5, i * 2, 0, i * 2 + 1, 1] for i in range(6)] + [[0, 0.5, 0, 0, 1, 1.05]])
FEATURES = normal(2, 8, 7, 9)
ROIS = np.array([[0, 0.5, 1.2, 5.3, 6.1], [1, 2.0, 0.0, 8.7, 3.3], [0, 3.3, 3.3, 3.4, 3.4], [1.7, -1.0, -2.0, 4, 4],
                 [0, 0, 0, 10, 10]])
VISION = [
    Case("adaptive-avg-non-divisible", lambda F, x: F.contrib.AdaptiveAvgPooling2D(x, output_size=(3, 2)),
         [normal(2, 3, 7, 5)], text=("F.adaptive_avg_pool2d(x, (3, 2))",)),
    Case("adaptive-avg-larger", lambda F, x: F.contrib.AdaptiveAvgPooling2D(x, output_size=(9, 4)),
         [normal(1, 2, 5, 3)]),
    Case("adaptive-avg-global", lambda F, x: F.contrib.AdaptiveAvgPooling2D(x, output_size=1), [normal(2, 3, 4, 5)]),
    Case("resize-up", lambda F, x: F.contrib.BilinearResize2D(x, height=8, width=11), [normal(1, 2, 5, 7)],
         f64=RESIZE64, text=("align_corners=True",)),
    Case("resize-down", lambda F, x: F.contrib.BilinearResize2D(x, height=3, width=4), [normal(1, 2, 5, 7)],
         f64=RESIZE64),
    Case("resize-half-pixel", lambda F, x: F.contrib.BilinearResize2D(x, height=8, width=3, align_corners=False),
         [normal(1, 2, 5, 7)], f64=RESIZE64),
    Case("resize-odd-scale", lambda F, x: F.contrib.BilinearResize2D(x, scale_height=1.5, scale_width=1.7,
                                                                     mode="odd_scale", align_corners=False),
         [normal(1, 2, 5, 7)], f64=RESIZE64, text=("size=(7, 11)",)),
    Case("resize-scale-rounds-down", lambda F, x: F.contrib.BilinearResize2D(x, scale_height=1.5, scale_width=1.3),
         [normal(1, 2, 5, 7)], f64=RESIZE64, text=("size=(7, 9)",)),
    Case("resize-to-even-odd", lambda F, x: (F.contrib.BilinearResize2D(x, mode="to_even_up"),
                                             F.contrib.BilinearResize2D(x, mode="to_even_down"),
                                             F.contrib.BilinearResize2D(x, mode="to_odd_up"),
                                             F.contrib.BilinearResize2D(x, mode="to_odd_down")),
         [normal(1, 1, 6, 7)], f64=RESIZE64),
    Case("resize-like", lambda F, x, y: F.contrib.BilinearResize2D(x, y, mode="like"),
         [normal(1, 2, 3, 4), normal(1, 2, 6, 5)], f64=RESIZE64, text=(".shape[2:]",)),
    Case("nms-classes", lambda F, x: F.contrib.box_nms(x, **NMS), [DETECTIONS], text=("box_nms(x, ",)),
    Case("nms-class-agnostic", lambda F, x: F.contrib.box_nms(x), [DETECTIONS]),
    Case("nms-force", lambda F, x: F.contrib.box_nms(x, overlap_thresh=0.49, force_suppress=True, **NMS),
         [DETECTIONS]),
    Case("nms-valid-topk", lambda F, x: F.contrib.box_nms(x, valid_thresh=0.55, topk=3, **NMS), [DETECTIONS]),
    Case("nms-background-0", lambda F, x: F.contrib.box_nms(x, background_id=0, **NMS), [DETECTIONS]),
    Case("nms-topk-0-is-identity", lambda F, x: F.contrib.box_nms(x, topk=0, **NMS), [DETECTIONS]),
    Case("nms-ties-in-order", lambda F, x: F.contrib.box_nms(x, **NMS), [SCORES_TIED]),
    Case("nms-center-to-corner", lambda F, x: F.contrib.box_nms(x, in_format="center", **NMS),
         [_boxes([[0, 0.9, 0.5, 0.5, 1, 1], [0, 0.8, 0.6, 0.5, 1, 1], [0, 0.7, 3, 3, 1, 2]])]),
    Case("nms-corner-to-center-skips-negative", lambda F, x: F.contrib.box_nms(x, out_format="center", **NMS),
         [_boxes([[0, 0.9, -1, 0, 1, 1], [0, 0.8, 2, 2, 3, 4], [0, 0.7, 2.1, 2, 3, 4]])], grad=False),
    # float64: MXNet compares with its float32 settings (IoU 0.45 > 0.449999988 suppresses; a score of
    # 0.3000000001 is not > 0.300000012)
    Case("nms-float32-thresholds", lambda F, x: F.contrib.box_nms(x, overlap_thresh=0.45, valid_thresh=0.3, **NMS),
         [_boxes([[0, 0.9, 0, 0, 1, 1], [0, 0.8, 0, 0, 1, 0.45], [0, 0.3000000001, 3, 3, 4, 4]])]),
    Case("nms-batch", lambda F, x: F.contrib.box_nms(x, **NMS), [np.stack([DETECTIONS, DETECTIONS[::-1]])]),
    Case("nms-degenerate", lambda F, x: F.contrib.box_nms(x, **NMS),
         [_boxes([[0, 0.9, 1, 1, 0, 0], [0, 0.8, 1, 1, 0, 0], [0, 0.7, 0, 0, 1, 1], [0, 0.6, 0, 1, 1, 0]])]),
    Case("box_decode-center", lambda F, d, a: F.contrib.box_decode(d, a, std0=0.1, std1=0.1, std2=0.2, std3=0.2),
         [normal(2, 4, 4), np.abs(normal(1, 4, 4)) + 1], f64=1e-7),  # its gradient: zero, as MXNet's
    Case("box_decode-corner-clip", lambda F, d, a: F.contrib.box_decode(d * 3, a, clip=1.5, format="corner"),
         [normal(2, 4, 4), np.sort(np.abs(normal(1, 4, 4)), axis=-1)]),
    Case("roi_align", lambda F, x, r: F.contrib.ROIAlign(x, _rois(F, r), pooled_size=(2, 3), spatial_scale=1.0),
         [FEATURES, ROIS], text=("torchvision.ops.roi_align(",)),
    Case("roi_align-sampling", lambda F, x, r: F.contrib.ROIAlign(x, _rois(F, r), pooled_size=(2, 3),
                                                                  spatial_scale=0.5, sample_ratio=2),
         [FEATURES, ROIS]),
    # spatial_scale 0.7: MXNet holds it as float32 (0.699999988), a float64 run sees the difference
    Case("roi_align-aligned", lambda F, x, r: F.contrib.ROIAlign(x, _rois(F, r), pooled_size=(3, 3), spatial_scale=0.7,
                                                                 aligned=True), [FEATURES, ROIS], f64=1e-6),
    Case("roi_align-adaptive-aligned", lambda F, x, r: F.contrib.ROIAlign(x, _rois(F, r), pooled_size=(3, 2),
                                                                          spatial_scale=1.0, sample_ratio=0,
                                                                          aligned=True), [FEATURES, ROIS]),
    Case("ps_roi_align", lambda F, x, r: F.contrib.ROIAlign(x, _rois(F, r), pooled_size=(2, 2), spatial_scale=1.0,
                                                            sample_ratio=2, position_sensitive=True),
         [FEATURES, ROIS], text=("roi_align_position_sensitive(",)),
    Case("ps_roi_align-aligned", lambda F, x, r: F.contrib.ROIAlign(x, _rois(F, r), pooled_size=(2, 2),
                                                                    spatial_scale=1.0, position_sensitive=True,
                                                                    aligned=True),
         [FEATURES, ROIS], text=("torchvision.ops.ps_roi_align(",)),
]


@cases(*VISION)
def test_detection_ops(case, tmp_path):
    check(case, tmp_path)


# -- several ops trained through the port's own proof --------------------------------------------------


@pytest.mark.parametrize("semantics", ["torch", "mxnet"])
def test_zoo_ops_block_ports_and_trains(tmp_path, semantics):
    """tests/port_models.py:zoo_ops (adaptive pooling, resize 'like', reflect pad, split, transpose,
    Reshape codes, batch_dot, softmax with temperature, L2Normalization, hard_sigmoid, maximum,
    log_softmax around a Conv2D and a Dense) ported with `ganparity port`'s pipeline: forward,
    gradients and two Adam steps agree with the Gluon block."""
    r = port(f"{MODELS}:zoo_ops", (2, 3, 6, 5), tmp_path / "out", semantics=semantics, optimizer="adam:lr=1e-3",
             steps=2)
    for check_name in ("weights", "forward train", "forward eval", "gradients", "step 2 parameters"):
        assert r.proof.row(check_name).agrees, (check_name, r.proof.summary)
    assert r.proof.verdict == "agree", r.proof.failures()
    src = (r.out / "model.py").read_text()
    assert re.search(r"\w+, \w+ = torch.chunk\(\w+, 2, dim=1\)", src) and "import torch.nn.functional as F" in src


def test_a_float32_kernel_s_gap_is_in_the_training_steps_floor(tmp_path, monkeypatch):
    """MXNet's BilinearResize2D computes in float32 inside float64: the correct port of
    tests/port_models.py:resize_steps differs from it by ~3e-7 in the fp64 forward, and three SGD
    steps with momentum at batch 1 amplify that past a floor of rounded constants alone (the row
    said 'differ' on a correct port: GluonCV's FCN did at the zoo run). Two mechanisms carry it,
    each enough alone: the training steps' floor jitters the port's weights by that start gap, and
    the floor runs the port's float64 resizes MXNet's way. Without both the correct port differs;
    with them it agrees, and a wrong lr still differs."""
    from ganparity.backends.torch.compare import _MXNetResize
    from ganparity.common.port import checks, prove_port

    args = dict(optimizer="sgd:lr=0.05,momentum=0.9", steps=3)

    def verdict(name):
        return port(f"{MODELS}:resize_steps", (1, 3, 9, 9), tmp_path / name, **args).proof

    r, jitter_from = verdict("out"), checks.JITTER_FROM
    assert r.verdict == "agree", r.failures()
    assert any(n.startswith("floor: the two sides' fp64 forward") for n in r.notes), r.notes
    monkeypatch.setattr(checks, "JITTER_FROM", 1.0)  # no jitter: the resize emulation alone
    assert verdict("emulation").verdict == "agree"
    monkeypatch.setattr(_MXNetResize, "__torch_function__", lambda self, f, types, a=(), k=None: f(*a, **(k or {})))
    assert verdict("neither").verdict == "differ"  # the floor of rounded constants alone
    monkeypatch.setattr(checks, "JITTER_FROM", jitter_from)
    assert verdict("jitter").verdict == "agree"  # the jitter alone
    monkeypatch.undo()
    model = tmp_path / "out" / "model.py"
    model.write_text(model.read_text().replace("lr=0.05,", "lr=0.05005,"))  # 1e-3 off
    assert prove_port(tmp_path / "out").verdict == "differ"


# -- refusals: one line, with the nearest supported form -----------------------------------------------

REFUSED = [
    ("Reshape(target_shape=..., keep_highest=...)", lambda F, x: F.reshape(x, target_shape=(0, 6)), (2, 3, 2)),
    ("take(mode='raise')", lambda F, x: F.take(x, F.zeros_like(x), mode="raise"), (3, 2)),
    ("prod over several axes", lambda F, x: F.prod(x, axis=(1, 2)), (2, 3, 4)),
    ("dot with a transposed N-D operand", lambda F, x: F.dot(x, x, transpose_a=True), (2, 2, 2)),
    ("softmax(dtype=float64)", lambda F, x: F.softmax(x, dtype="float64"), (2, 3)),
    ("the op argmax_channel", lambda F, x: F.argmax_channel(x), (2, 3)),
]


@pytest.mark.parametrize("what, fn, shape", REFUSED, ids=[r[0].split("(")[0].split(" ")[0] for r in REFUSED])
def test_unsupported_settings_are_refused_in_one_line(what, fn, shape):
    graph = mxport.read(OpBlock(fn, [shape]), shape)
    with pytest.raises(Unsupported) as e:
        emit(graph)
    msg = str(e.value)
    assert msg.startswith(f"unsupported: {what}") and "nearest supported form: " in msg and "\n" not in msg, msg


# -- what the port does differently from MXNet, on purpose or because MXNet's op is inconsistent ---------


def _grads(case_fn, x: np.ndarray, tmp: Path, projection=None, dtype="float64"):
    block = OpBlock(case_fn, [x.shape])
    tmp.mkdir()
    net, _ = _write(block, x.astype(np.float32), tmp)
    outs, _ = _mx_run(block, x.astype(dtype), dtype)
    r = [np.ones_like(o) if projection is None else projection for o in outs]
    return _mx_run(block, x.astype(dtype), dtype, r)[1], _torch_run(net, x.astype(dtype), dtype, r)[1], block, net


def test_known_differences(tmp_path):
    """Each a corner where the written PyTorch and MXNet's op part, pinned with its numbers (the
    forward outputs agree in every one but the topk ties)."""
    # max over an axis with tied maxima: MXNet gives each the whole gradient, torch.amax splits it
    mx_grad, pt_grad, _, _ = _grads(lambda F, x: F.max(x, axis=1), np.array([[1.0, 3, 3, 2]]), tmp_path / "max")
    assert mx_grad.tolist() == [[0, 1, 1, 0]] and pt_grad.tolist() == [[0, 0.5, 0.5, 0]]
    # gather_nd reads a negative index from the end in both; MXNet's backward drops what it read
    x = np.concatenate([np.arange(8.0), [0, -1, 1, -4]])[None, :]
    fn = lambda F, x: F.gather_nd(F.reshape(F.slice_axis(x, axis=1, begin=0, end=8), (2, 4)),  # noqa: E731
                                  F.reshape(F.slice_axis(x, axis=1, begin=8, end=12), (2, 2)))
    mx_grad, pt_grad, _, _ = _grads(fn, x, tmp_path / "gather")
    assert mx_grad[0, :8].tolist() == [0, 1, 0, 0, 0, 0, 0, 0] and pt_grad[0, :8].tolist() == [0, 1, 0, 0, 1, 0, 0, 0]
    # SoftmaxActivation('instance') on 4-D: MXNet's forward is over the last axis, its backward over axis 1
    x = normal(1, 3, 2, 2)
    mx_grad, pt_grad, _, _ = _grads(lambda F, x: F.SoftmaxActivation(x), x, tmp_path / "sa",
                                    projection=normal(1, 3, 2, 2), dtype="float32")
    assert np.abs(mx_grad - pt_grad).max() > 0.05
    # the L2 norm of an all-zero vector: gradient NaN in MXNet, 0 in torch
    mx_grad, pt_grad, _, _ = _grads(lambda F, x: F.norm(x, axis=1), np.array([[0.0, 0, 0], [3, 4, 0]]),
                                    tmp_path / "norm")
    assert np.isnan(mx_grad[0]).all() and pt_grad[0].tolist() == [0, 0, 0]
    assert np.allclose(mx_grad[1], pt_grad[1])
    # mod by a zero divisor: 0 in MXNet, NaN in torch.remainder (the forward elsewhere agrees)
    block = OpBlock(lambda F, a, b: F.broadcast_mod(a, b), [(1, 2), (1, 2)])
    (tmp_path / "mod").mkdir()
    net, _ = _write(block, np.array([[3.0, 5.0, 0.0, 2.0]], np.float32), tmp_path / "mod")
    x = np.array([[3.0, 5.0, 0.0, 2.0]])
    assert _mx_run(block, x, "float64")[0][0].tolist() == [[0.0, 1.0]]
    ours = _torch_run(net, x, "float64")[0][0]
    assert np.isnan(ours[0, 0]) and ours[0, 1] == 1.0
    # clip(0, 6) is written nn.ReLU6 (hardtanh): at exactly 0 and 6 its gradient is 0, MXNet's clip passes it
    mx_grad, pt_grad, _, _ = _grads(lambda F, x: F.clip(x, 0, 6), np.array([[0.0, 6, 3, -1, 7]]), tmp_path / "clip")
    assert mx_grad.tolist() == [[1, 1, 1, 0, 0]] and pt_grad.tolist() == [[0, 0, 1, 0, 0]]
    # topk ties along more than 16 entries: MXNet's std::sort orders them its own way, the port by index
    x = (np.arange(40) % 3).astype(np.float64)[None, :]
    block = OpBlock(lambda F, x: F.topk(x, k=5), [x.shape])
    (tmp_path / "topk").mkdir()
    net, _ = _write(block, x.astype(np.float32), tmp_path / "topk")
    ours = _torch_run(net, x, "float32")[0][0]
    theirs = _mx_run(block, x.astype(np.float32), "float32")[0][0]
    assert ours.tolist() == [[2, 5, 8, 11, 14]] and sorted(theirs[0] % 3) == [2] * 5
    assert ours.tolist() != theirs.tolist()


@pytest.mark.parametrize("size,corners", [((157, 151), True), ((37, 41), False), ((3, 7), False), ((1, 5), True)])
def test_the_floor_runs_bilinear_resizes_as_mxnet_computes_them(size, corners):
    """round_constants (the floor of every float64 comparison) runs a float64 F.interpolate bilinear
    as MXNet's BilinearResize2D computes it: the same values and input gradients as MXNet's op, bit for
    bit (the gradients to 1e-13: summed in another order), where F.interpolate's own differ (its sample
    weights in float64, MXNet's in float32)."""
    import torch.nn.functional as F

    from ganparity.backends.torch.compare import round_constants

    x = normal(2, 3, 40, 40)
    xm = mx.nd.array(x, dtype="float64")
    xm.attach_grad()
    with autograd.record():
        want = mx.nd.contrib.BilinearResize2D(xm, height=size[0], width=size[1], align_corners=corners)
    w = normal(*want.shape)
    want.backward(mx.nd.array(w, dtype="float64"))

    def run(rounded):
        xt = torch.from_numpy(x).requires_grad_()
        net = torch.nn.Identity()
        with round_constants(net) if rounded else contextlib.nullcontext():
            y = F.interpolate(xt, size=size, mode="bilinear", align_corners=corners)
            (y * torch.from_numpy(w)).sum().backward()
        return y.detach().numpy(), xt.grad.numpy()

    got, grad = run(True)
    scale = np.abs(xm.grad.asnumpy()).max()
    assert np.array_equal(got, want.asnumpy())
    assert np.abs(grad - xm.grad.asnumpy()).max() <= 1e-13 * scale  # the same weights, summed in another order
    plain, plain_grad = run(False)
    if size != (1, 5):  # one row: nothing to place
        assert not np.array_equal(plain, want.asnumpy())
        assert np.abs(plain_grad - xm.grad.asnumpy()).max() > 1e-11 * scale
