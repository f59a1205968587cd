"""Optimizer state <-> neutral numpy, so a checkpoint resumes in either framework.

Adam keeps, per trainable tensor, the first and second moments m and v (PyTorch's exp_avg and
exp_avg_sq, MXNet's mean and var: the same recurrences on the same batch-mean gradients) and a
step count t (PyTorch's per-parameter 'step', MXNet's optimizer._index_update_count). Neutral
keys: 'adam.<tensor>.m', 'adam.<tensor>.v' and 'adam.<net>.step', tensor names as in weights.py.
"""

from __future__ import annotations

import mxnet as mx
import numpy as np

from .build import _tensors


def _slots(opt: mx.gluon.Trainer, net: mx.gluon.Block, model) -> dict[str, int]:
    """Spec tensor name -> the Trainer's index of that parameter (running stats are not updated)."""
    return {k: opt._param2idx[p.name] for k, p in _tensors(net, model).items() if p.grad_req != "null"}


def optimizer_state(trainer) -> dict[str, np.ndarray]:
    """Both Adams of a GANTrainer as neutral arrays (zeros and step 0 before the first step)."""
    out: dict[str, np.ndarray] = {}
    for name, opt, net in (("G", trainer.opt_G, trainer.G), ("D", trainer.opt_D, trainer.D)):
        model = trainer.spec.nets[name]
        updater, counts = opt._updaters[0], opt._optimizer._index_update_count
        params = _tensors(net, model)
        steps = []
        for k, i in _slots(opt, net, model).items():
            st = updater.states.get(i)
            zeros = np.zeros(params[k].shape, np.float32)
            out[f"adam.{k}.m"] = st[0].asnumpy().copy() if st is not None else zeros
            out[f"adam.{k}.v"] = st[1].asnumpy().copy() if st is not None else zeros.copy()
            steps.append(int(counts.get(i, 0)))
        out[f"adam.{name}.step"] = np.array(max(steps, default=0), np.int64)
    return out


def load_optimizer_state(trainer, state: dict[str, np.ndarray]) -> None:
    """Put neutral Adam state into a GANTrainer's Trainers (step 0 leaves them fresh)."""
    for name, opt, net in (("G", trainer.opt_G, trainer.G), ("D", trainer.opt_D, trainer.D)):
        model = trainer.spec.nets[name]
        t = int(state[f"adam.{name}.step"])
        params = _tensors(net, model)
        optimizer = opt._optimizer
        for updater in opt._updaters:
            updater.states.clear()
            updater.states_synced.clear()
        optimizer._index_update_count.clear()
        optimizer.num_update = optimizer.begin_num_update
        if t == 0:
            continue
        for k, i in _slots(opt, net, model).items():
            ctx = params[k].list_ctx()[0]
            for updater in opt._updaters:
                updater.states[i] = (mx.nd.array(state[f"adam.{k}.m"], ctx=ctx, dtype=params[k].dtype),
                                     mx.nd.array(state[f"adam.{k}.v"], ctx=ctx, dtype=params[k].dtype))
                updater.states_synced[i] = True
            optimizer._index_update_count[i] = t
        optimizer.num_update = t
