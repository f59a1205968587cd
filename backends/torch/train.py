"""One GAN training step for every GAN spec, as PyTorch writes it; the recipe says where the
sources' loops differ. Inputs are torch tensors already on the device (see to_device), and the
step returns 0-d tensors: no host sync inside the step, the caller reads them when it wants."""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from torch import nn

from ...common.differences import emulated
from ...common.errors import GanparityError, choose
from ...common.spec.model import Adam, GANSpec
from .emulations import mxnet_adam_lr_eps

# Speed options of the step (benchmarks/variants.py), none by default. The default step is the
# sources' eager fp32 step; every option is checked against it by the benchmarks' parity check.
# 'cuda-graph' captures the whole D+G step (both Adam updates included) once and replays it.
OPTIONS = ("channels_last", "bf16", "fused-adam", "foreach-adam", "capturable-adam", "compile",
           "compile-max-autotune", "compile-reduce-overhead", "cuda-graph")
COMPILE_MODES = {"compile": "default", "compile-max-autotune": "max-autotune",
                 "compile-reduce-overhead": "reduce-overhead"}  # option -> torch.compile(mode=...)
METRICS = ("loss_D", "D_x", "D_G_z1", "loss_G", "D_G_z2")


def _options(options) -> frozenset[str]:
    chosen = frozenset(choose("torch GANTrainer option", o, OPTIONS) for o in options)
    return chosen | {"capturable-adam"} if "cuda-graph" in chosen else chosen


def _adam(net: nn.Module, opt: Adam, emulate: tuple[str, ...], options: frozenset[str]) -> torch.optim.Adam:
    """torch.optim.Adam; emulating MXNet's 'adam-betas', it gets the float32-rounded betas that
    MXNet's adam_update op uses (and _mxnet_adam_step sets lr and eps of every step)."""
    fast = {"fused": True} if "fused-adam" in options else {"foreach": True} if "foreach-adam" in options else {}
    if "capturable-adam" in options:
        fast["capturable"] = True  # CUDA graphs: the step counter stays on the device
    betas = tuple(float(np.float32(b)) if "adam-betas" in emulate else b for b in (opt.beta1, opt.beta2))
    return torch.optim.Adam(net.parameters(), lr=opt.lr, betas=betas, eps=opt.eps, **fast)


def _mxnet_adam_step(optimizer: torch.optim.Adam, opt: Adam, emulate: tuple[str, ...]) -> None:
    """Before step t, the lr and eps that make torch.optim.Adam take MXNet's step (differences
    'adam-eps' and 'adam-betas', emulating MXNet): emulations.py mxnet_adam_lr_eps, from the
    spec's lr, eps and betas; PyTorch's eps placement unless 'adam-eps' is emulated."""
    group = optimizer.param_groups[0]
    state = optimizer.state.get(group["params"][0])
    t = int(state["step"]) + 1 if state else 1
    group["lr"], group["eps"] = mxnet_adam_lr_eps(opt.lr, opt.eps, (opt.beta1, opt.beta2), group["betas"], t,
                                                  "adam-eps" in emulate)


class _GluonBCE(torch.autograd.Function):
    """Gluon's SigmoidBinaryCrossEntropyLoss(from_sigmoid=True) per sample (difference 'bce-clamp',
    emulating MXNet): log(p + 1e-12) instead of a clamp at -100, for a batch of one label.

    One autograd node instead of the formula's ten ops (and six in backward): on a small step
    (gan-gaussian's is about a millisecond) their bookkeeping was most of the emulation's cost.
    It computes what autograd computes for the formula, op for op and in the same order, so value
    and gradient are the same bit for bit:
        loss -(y log(p + 1e-12) + (1 - y) log(1 - p + 1e-12))
        gradient (-g y) / (p + 1e-12) - (-g (1 - y)) / (1 - p + 1e-12)
    For the GAN labels 1 and 0 one term of each is an exact zero (x + 0 = x, x * 1 = x,
    0 - x = -x), so only the other is computed: 3 ops forward and 1-2 backward."""

    @staticmethod
    def forward(ctx, p: torch.Tensor, label: float | torch.Tensor) -> torch.Tensor:
        ctx.label = float(label) if isinstance(label, (int, float)) else None
        if ctx.label == 1.0:
            a = p + 1e-12
            ctx.save_for_backward(a)
            return -torch.log(a)
        if ctx.label == 0.0:
            b = 1 - p + 1e-12
            ctx.save_for_backward(b)
            return -torch.log(b)
        y = _target(p, label)
        a, b, not_y = p + 1e-12, 1 - p + 1e-12, 1 - y
        ctx.save_for_backward(a, b, y, not_y)
        return -(y * torch.log(a) + not_y * torch.log(b))

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        if ctx.label == 1.0:
            (a,) = ctx.saved_tensors
            return -g / a, None
        if ctx.label == 0.0:
            (b,) = ctx.saved_tensors
            return g / b, None
        a, b, y, not_y = ctx.saved_tensors
        ng = -g
        return ng * y / a - ng * not_y / b, None


def _target(p: torch.Tensor, label: float | torch.Tensor) -> torch.Tensor:
    return torch.full_like(p, float(label)) if isinstance(label, (int, float)) else label


def _gluon_bce(p: torch.Tensor, label: float | torch.Tensor) -> torch.Tensor:
    return _GluonBCE.apply(p, label)


def _loss(kind: str, emulate: tuple[str, ...], naive: frozenset[str]):
    """(probabilities or logits, one label for the batch or a tensor of labels) -> the loss. Batch
    means (difference 'loss-reduction'; a naive port of Gluon code sums them). On probabilities:
    BCELoss, which clamps log at -100, or Gluon's formula ('bce-clamp')."""
    reduction = "sum" if "loss-reduction" in naive else "mean"
    if "bce-clamp" in emulate and kind != "bce_logits":
        return lambda p, label: getattr(_gluon_bce(p, label), reduction)()
    f = nn.BCEWithLogitsLoss(reduction=reduction) if kind == "bce_logits" else nn.BCELoss(reduction=reduction)
    return lambda p, label: f(p, _target(p, label))


def _prob(output: torch.Tensor, kind: str) -> torch.Tensor:
    """D's mean belief that its input is real, as the sources log D(x) and D(G(z))."""
    return (output if kind == "bce" else torch.sigmoid(output)).mean()


class GANTrainer:
    """Optimizers and the D-then-G step of a GANSpec's recipe for built G and D."""

    def __init__(self, spec: GANSpec, G: nn.Module, D: nn.Module, naive: frozenset[str] = frozenset(),
                 options=frozenset()):
        self.spec, self.G, self.D, self.naive = spec, G, D, naive
        self.options = _options(options)
        r = spec.recipe
        if "channels_last" in self.options:
            G.to(memory_format=torch.channels_last)
            D.to(memory_format=torch.channels_last)
        # The callables the step runs: the nets themselves, or torch.compile of them (same parameters;
        # static shapes, one graph per batch size: a dynamic-shape graph ran 20x slower on CPU).
        modes = [COMPILE_MODES[o] for o in self.options if o in COMPILE_MODES]
        if len(modes) > 1:
            raise GanparityError(f"one torch.compile mode at a time, got {', '.join(sorted(modes))}")
        if modes:  # many trainers compile the same Module.forward in one process (bench arms, gpu-check):
            # past dynamo's default limit of 8 recompiles it would silently run them eagerly.
            torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
        compile_ = (lambda net: torch.compile(net, dynamic=False, mode=modes[0])) if modes else (lambda net: net)
        self.run_G, self.run_D = compile_(G), compile_(D)
        # The semantic differences (common/differences.py) whose MXNet numbers this trainer emulates.
        self.emulate = emulated(r.semantics, "torch", naive)
        mxnet_adam = {"adam-eps", "adam-betas"} & set(self.emulate)
        if mxnet_adam and "capturable-adam" in self.options:
            raise GanparityError(f"emulating MXNet's Adam ({', '.join(sorted(mxnet_adam))}) sets lr and eps per step, "
                                 "which a captured CUDA graph or capturable Adam cannot follow; use semantics=torch")
        self.opt_D = _adam(D, r.opt_D, self.emulate, self.options)
        self.opt_G = _adam(G, r.opt_G, self.emulate, self.options)
        self.criterion = _loss(r.loss, self.emulate, naive)
        self.zero_grad = "grad-req" not in naive  # a naive port of Gluon code calls no zero_grad()
        self.d_scale = 0.5 if r.d_loss == "mean" else 1.0
        self.grad_scale = 1.0  # gradients are already batch means
        self._graph = None  # option 'cuda-graph': captured at the first step

    def _autocast(self, x: torch.Tensor):
        """bf16 option: the nets' forwards under torch.autocast; losses stay in fp32."""
        if "bf16" not in self.options:
            return contextlib.nullcontext()
        # Inside a captured CUDA graph the autocast weight cache would hold tensors of the capture.
        return torch.autocast(x.device.type, dtype=torch.bfloat16, cache_enabled="cuda-graph" not in self.options)

    def _net(self, net: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if not self.options:
            return net(x)
        if "channels_last" in self.options and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with self._autocast(x):
            out = net(x)
        return out.float() if "bf16" in self.options else out

    def d_backward(self, real: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """Gradients of the D loss into D. Returns the fake batch for the G step."""
        r, D = self.spec.recipe, self.D
        for net in (self.G, D):  # train mode: batch statistics (difference 'train-eval')
            if not net.training:  # ganparity switches whole nets only, so the root's flag is theirs
                net.train()
        if self.zero_grad:
            D.zero_grad()
        separate = r.d_backward == "separate"
        out_real = self._net(self.run_D, real).view(-1)
        err_real = self.criterion(out_real, r.real_label)
        if separate:
            err_real = err_real * self.d_scale
            err_real.backward()
        fake = self._net(self.run_G, noise)
        out_fake = self._net(self.run_D, fake.detach() if r.detach_fake else fake).view(-1)
        err_fake = self.criterion(out_fake, r.fake_label)
        if separate:
            err_fake = err_fake * self.d_scale
            err_fake.backward()
            loss_D = (err_real + err_fake).detach()
        else:  # one scale of the sum: bit for bit the sum of the scaled halves (d_scale is 1 or 0.5)
            loss_D = (err_real + err_fake) * self.d_scale
            loss_D.backward()
            loss_D = loss_D.detach()
        return fake, {"loss_D": loss_D, "D_x": _prob(out_real.detach(), r.loss),
                      "D_G_z1": _prob(out_fake.detach(), r.loss)}

    def g_backward(self, fake: torch.Tensor, noise: torch.Tensor) -> dict:
        """Gradients of the G loss into G (D's gradients are left dirty; D.zero_grad() comes first
        in the next D step, as in the sources)."""
        r = self.spec.recipe
        if self.zero_grad:
            self.G.zero_grad()
        if r.regenerate_fake:
            fake = self._net(self.run_G, noise)
        out = self._net(self.run_D, fake).view(-1)
        err = self.criterion(out, r.real_label)
        err.backward()
        return {"loss_G": err.detach(), "D_G_z2": _prob(out.detach(), r.loss)}

    def d_update(self) -> None:
        if "adam-eps" in self.emulate or "adam-betas" in self.emulate:
            _mxnet_adam_step(self.opt_D, self.spec.recipe.opt_D, self.emulate)
        self.opt_D.step()

    def g_update(self) -> None:
        if "adam-eps" in self.emulate or "adam-betas" in self.emulate:
            _mxnet_adam_step(self.opt_G, self.spec.recipe.opt_G, self.emulate)
        self.opt_G.step()

    def _step(self, real: torch.Tensor, noise: torch.Tensor) -> dict:
        fake, m_d = self.d_backward(real, noise)
        self.d_update()
        m_g = self.g_backward(fake, noise)
        self.g_update()
        return m_d | m_g

    def step(self, real: torch.Tensor, noise: torch.Tensor) -> dict:
        """One full D+G step. Values are 0-d tensors (no host sync here). A NaN probability, which
        PyTorch's BCELoss refuses with an error instead of returning NaN, gives NaN values."""
        try:
            if "cuda-graph" in self.options and real.is_cuda:
                return self._graph_step(real, noise)
            return self._step(real, noise)
        except RuntimeError as e:
            if "between 0 and 1" not in str(e):  # BCELoss: all elements of input should be between 0 and 1
                raise
            return dict.fromkeys(METRICS, torch.tensor(float("nan")))

    # -- option 'cuda-graph' -----------------------------------------------------------------------

    def _graph_step(self, real: torch.Tensor, noise: torch.Tensor) -> dict:
        """Replay the captured step on static copies of the inputs; a batch of another shape (an
        epoch's short last batch) runs eagerly on the same tensors."""
        if self._graph is None:
            self._capture(real, noise)
        if real.shape != self._static[0].shape or noise.shape != self._static[1].shape:
            return self._step(real, noise)
        self._static[0].copy_(real)
        self._static[1].copy_(noise)
        self._graph.replay()
        return self._graph_out

    def _capture(self, real: torch.Tensor, noise: torch.Tensor, warmup: int = 3) -> None:
        """PyTorch's whole-network capture: warm up on a side stream (optimizer state appears,
        cuDNN picks its kernels), capture one step with torch.cuda.graph, then put weights,
        buffers and Adam state back where they were, in place, so the first replay is the
        first real step."""
        nets = (self.G, self.D)
        saved = [{k: v.clone() for k, v in net.state_dict().items()} for net in nets]
        opt_saved = [{id(p): {k: v.clone() for k, v in st.items()} for p, st in opt.state.items()}
                     for opt in (self.opt_D, self.opt_G)]
        self._static = (real.clone(), noise.clone())
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(warmup):
                self._step(*self._static)
        torch.cuda.current_stream().wait_stream(side)
        self._graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self._graph):
            self._graph_out = self._step(*self._static)
        with torch.no_grad():
            for net, state in zip(nets, saved):
                net.load_state_dict(state)
            for opt, before in zip((self.opt_D, self.opt_G), opt_saved):
                for p, st in opt.state.items():
                    for k, v in st.items():
                        v.copy_(before[id(p)][k]) if id(p) in before else v.zero_()
