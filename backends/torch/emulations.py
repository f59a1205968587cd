"""MXNet's semantics, in PyTorch: the one place they are written. The backend builds with them
(build.py, train.py: a spec that follows MXNet), and `ganparity port --semantics mxnet` copies
these classes, as they are, into the model.py it writes (source()): so this file imports nothing
but torch and math, and what users keep is the code the suite tests.

backends/mxnet/emulations.py mirrors it: PyTorch's semantics in MXNet Gluon.
"""

from __future__ import annotations

import contextlib
import inspect
import math

import torch
import torch.nn.functional as F
from torch import nn


class MXNetBatchNorm(nn.modules.batchnorm._BatchNorm):
    """MXNet's (CPU) BatchNorm statistics (difference 'bn-stats'): the running mean and variance
    move when backward reaches the layer, with the biased batch variance, in backward order, and
    not at all for a forward that no backward follows: moving = m * moving + (1 - m) * batch, with
    Gluon's momentum m = 1 - momentum as the float32 MXNet passes its op. The batch moments come
    from F.batch_norm itself (momentum 1.0 into scratch buffers); a hook on the output's gradient
    applies the update. Same tensors and state-dict names as nn.BatchNorm1d/2d/3d."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__(num_features, eps, momentum)

    def _check_input_dim(self, x):
        if x.dim() < 2:
            raise ValueError(f"expected at least a 2-D input (got {x.dim()}-D)")

    def forward(self, x):
        self._check_input_dim(x)
        if not self.training:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        # scratch in the statistics' dtype, not x's: under bf16 autocast x is bf16, and CPU batch_norm
        # refuses bf16 statistics beside float32 parameters
        mean, var = torch.zeros_like(self.running_mean), torch.ones_like(self.running_var)
        y = F.batch_norm(x, mean, var, self.weight, self.bias, True, 1.0, self.eps)  # batch mean, unbiased var
        if y.requires_grad:
            n = x.numel() // x.shape[1]
            y.register_hook(lambda grad: self._move(mean, var * ((n - 1) / n)))
        return y

    def _move(self, mean, biased_var):
        m = torch.tensor(1.0 - self.momentum, dtype=torch.float32).item()  # Gluon's momentum, as MXNet's op gets it
        with torch.no_grad():
            self.running_mean.mul_(m).add_(mean, alpha=1 - m)
            self.running_var.mul_(m).add_(biased_var, alpha=1 - m)


class GlobalStatsBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Gluon's BatchNorm(use_global_stats=True): the running statistics normalise in train mode
    too, and never move."""

    def _check_input_dim(self, x):
        if x.dim() < 2:
            raise ValueError(f"expected at least a 2-D input (got {x.dim()}-D)")

    def forward(self, x):
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)


def mxnet_adam_lr_eps(lr, eps, betas, op_betas, t, mxnet_eps=True):
    """The lr and eps that make torch.optim.Adam (whose bias corrections use `op_betas`) take
    MXNet's step t (differences 'adam-eps', 'adam-betas'). MXNet folds the corrections
    c1 = 1 - b1^t, c2 = 1 - b2^t (double precision, from the betas it was given) into the lr and
    adds eps to sqrt(v) uncorrected:  lr sqrt(c2) / c1 * m / (sqrt(v) + eps);  torch's step is
    lr_t / c1' * m / (sqrt(v) / sqrt(c2') + eps_t). They are equal for
    eps_t = E sqrt(c2) / sqrt(c2') and lr_t = lr (c1' / c1) sqrt(c2) / sqrt(c2'), with E = eps /
    sqrt(c2) for MXNet's eps placement (mxnet_eps) and eps for PyTorch's."""
    (b1, b2), (b1_op, b2_op) = betas, op_betas
    c1, c2, c1_op, c2_op = 1 - b1 ** t, 1 - b2 ** t, 1 - b1_op ** t, 1 - b2_op ** t
    e = eps / math.sqrt(c2) if mxnet_eps else eps
    return lr * (c1_op / c1) * math.sqrt(c2) / math.sqrt(c2_op), e * math.sqrt(c2) / math.sqrt(c2_op)


class MXNetAdam(torch.optim.Adam):
    """MXNet's Adam on torch.optim.Adam's kernels: mx.optimizer.Adam folds the bias corrections
    into the learning rate, so its eps is added to sqrt(v) unscaled, and its adam_update op holds
    beta1 and beta2 as float32. Before each step this sets the lr and eps that give MXNet's step
    (mxnet_adam_lr_eps), then puts back the ones you set, so param_groups' lr, eps and betas stay
    MXNet's and a learning-rate scheduler works as on any optimizer. weight_decay is L2 added to
    the gradient, as MXNet's wd."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, **kwargs):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, **kwargs)

    @torch.no_grad()
    def step(self, closure=None):
        kept = []
        for group in self.param_groups:
            state = self.state.get(group["params"][0], {})
            t = int(state["step"]) + 1 if "step" in state else 1
            op_betas = tuple(torch.tensor(b, dtype=torch.float32).item() for b in group["betas"])
            kept.append((group["lr"], group["eps"], group["betas"]))
            lr, eps = mxnet_adam_lr_eps(group["lr"], group["eps"], group["betas"], op_betas, t)
            group["lr"], group["eps"], group["betas"] = lr, eps, op_betas
        try:
            return super().step(closure)
        finally:
            for group, (lr, eps, betas) in zip(self.param_groups, kept):
                group["lr"], group["eps"], group["betas"] = lr, eps, betas


@contextlib.contextmanager
def emulated_stats(model):
    """While inside, every BatchNorm of `model` moves its running statistics as MXNet does
    (MXNetBatchNorm: in backward, biased variance), with its own momentum; afterwards it is the
    layer it was."""
    changed = [(m, m.__class__) for m in model.modules() if type(m) in (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)]
    for m, _ in changed:
        m.__class__ = MXNetBatchNorm
    try:
        yield len(changed)
    finally:
        for m, cls in changed:
            m.__class__ = cls


def source(names):
    """The source text of these classes and functions, by name, for the model.py the porter
    writes (each depends only on torch, math and the ones listed before it)."""
    return "\n\n\n".join(inspect.getsource(globals()[n]).rstrip() for n in names)
