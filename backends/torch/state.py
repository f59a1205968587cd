"""Optimizer state <-> neutral numpy, so a checkpoint resumes in either framework.

Adam keeps, per trainable tensor, the first and second moments m and v (PyTorch's exp_avg and
exp_avg_sq, MXNet's mean and var: the same recurrences on the same batch-mean gradients) and a
step count t (PyTorch's per-parameter 'step', MXNet's optimizer._index_update_count). Neutral
keys: 'adam.<tensor>.m', 'adam.<tensor>.v' and 'adam.<net>.step', tensor names as in weights.py.
"""

from __future__ import annotations

import numpy as np
import torch

from .build import _tensors


def _slots(opt: torch.optim.Optimizer, net: torch.nn.Module, model) -> dict[str, torch.Tensor]:
    """Spec tensor name -> the parameter the optimizer updates (buffers are not parameters)."""
    owned = {id(p) for group in opt.param_groups for p in group["params"]}
    return {k: t for k, t in _tensors(net, model).items() if id(t) in owned}


def optimizer_state(trainer) -> dict[str, np.ndarray]:
    """Both Adams of a GANTrainer as neutral arrays (zeros and step 0 before the first step)."""
    out: dict[str, np.ndarray] = {}
    for name, opt, net in (("G", trainer.opt_G, trainer.G), ("D", trainer.opt_D, trainer.D)):
        model = trainer.spec.nets[name]
        steps = []
        for k, p in _slots(opt, net, model).items():
            st = opt.state.get(p, {})
            out[f"adam.{k}.m"] = st["exp_avg"].detach().cpu().numpy().copy() if st else np.zeros(p.shape, np.float32)
            out[f"adam.{k}.v"] = st["exp_avg_sq"].detach().cpu().numpy().copy() if st else np.zeros(p.shape, np.float32)
            steps.append(int(st["step"]) if st else 0)
        out[f"adam.{name}.step"] = np.array(max(steps, default=0), np.int64)
    return out


def load_optimizer_state(trainer, state: dict[str, np.ndarray]) -> None:
    """Put neutral Adam state into a GANTrainer's optimizers (step 0 leaves them fresh)."""
    for name, opt, net in (("G", trainer.opt_G, trainer.G), ("D", trainer.opt_D, trainer.D)):
        model = trainer.spec.nets[name]
        t = int(state[f"adam.{name}.step"])
        opt.state.clear()
        if t == 0:
            continue
        for k, p in _slots(opt, net, model).items():
            opt.state[p] = {
                "step": torch.tensor(float(t), dtype=torch.float32),
                "exp_avg": torch.as_tensor(state[f"adam.{k}.m"], dtype=p.dtype).to(p.device).clone(),
                "exp_avg_sq": torch.as_tensor(state[f"adam.{k}.v"], dtype=p.dtype).to(p.device).clone(),
            }
