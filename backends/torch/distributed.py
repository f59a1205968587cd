"""Data parallelism on PyTorch's own engine: DistributedDataParallel over a gloo (CPU) or NCCL
(CUDA) process group, started by torchrun (common/gan/distributed.py is the neutral half).

G and D are each wrapped in DDP, and every forward of the step goes through the wrappers. DDP
all-reduces (averages) the gradients of one backward per forward it saw with gradient sync on;
a forward under no_sync() leaves the backward that follows local. So a step makes exactly one
all-reduce per net, whatever the recipe:

- D's first forward of the D step (the real batch) runs under no_sync: with d_backward='separate'
  its backward only accumulates locally, and the fake batch's backward then all-reduces the sum;
  with 'joint' the one backward of (real + fake) reaches both graphs and is reduced once.
- G's forward in the D step syncs only where the G step reuses its output (regenerate_fake False);
  a graph through G in the D step (detach_fake False) leaves local gradients that G.zero_grad()
  clears before the G step.
- D's forward in the G step runs under no_sync: D's gradients from the G loss are never used
  (D.zero_grad() comes first in the next D step), so they are not averaged.

Losses are batch means, so DDP's average over equal pieces is the one-process batch mean.
BatchNorm is per rank by default; sync_bn converts every BatchNorm with
torch.nn.SyncBatchNorm.convert_sync_batchnorm. torch's SyncBatchNorm runs on CUDA only, so on CPU
the converted layers compute the same global moments from one differentiable
torch.distributed.nn.all_reduce of (sum, sum of squares, count); the layers synchronise only
inside a step, so rank 0 alone can draw samples in train mode.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from ...common.errors import GanparityError
from .build import EmulatedStatsBatchNorm
from .train import METRICS

_SYNCING = [False]  # SyncBatchNorm layers synchronise only while a data-parallel step runs


def init(device: str, timeout_s: float) -> tuple[int, int]:
    """Join torchrun's process group (env:// rendezvous); -> (rank, world size)."""
    if not dist.is_initialized():
        backend = "nccl" if device == "cuda" else "gloo"
        if device == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads()))))
    return dist.get_rank(), dist.get_world_size()


class _StepSyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """What convert_sync_batchnorm made (a SyncBatchNorm's tensors and process_group), synchronising
    only inside a step: torch's SyncBatchNorm.forward on CUDA; on CPU, where torch has no
    SyncBatchNorm kernels (and DDP refuses the class), the same global moments from one
    differentiable all_reduce. The global batch mean and biased variance normalise; the running
    variance gets the unbiased one, as SyncBatchNorm does."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and _SYNCING[0]):
            return nn.functional.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                                            self.training, self.momentum, self.eps)
        if x.is_cuda:
            return nn.SyncBatchNorm.forward(self, x)
        dims = [d for d in range(x.dim()) if d != 1]
        count = torch.full((1,), x.numel() / x.shape[1], dtype=x.dtype)
        stats = torch.cat([x.sum(dims), (x * x).sum(dims), count])
        stats = torch.distributed.nn.functional.all_reduce(stats)
        c = x.shape[1]
        n = stats[-1]
        mean, var = stats[:c] / n, stats[c:2 * c] / n - (stats[:c] / n) ** 2
        shape = [1, c] + [1] * (x.dim() - 2)
        y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * n / (n - 1), alpha=m)
        return y


def _convert_sync_bn(net: nn.Module) -> nn.Module:
    if any(isinstance(m, EmulatedStatsBatchNorm) for m in net.modules()):
        raise GanparityError("--sync-bn: this spec follows MXNet's BatchNorm statistics (semantics=mxnet), "
                             "which SyncBatchNorm does not emulate; use per-rank BatchNorm or semantics=torch")
    net = nn.SyncBatchNorm.convert_sync_batchnorm(net)
    for m in net.modules():
        if type(m) is nn.SyncBatchNorm:
            m.__class__ = _StepSyncBatchNorm
    return net


class _Phased:
    """The DDP wrapper as the trainer calls it (run_G, run_D): each forward with or without
    gradient sync, by the step's phase (see the module docstring)."""

    def __init__(self, ddp: DDP, sync_at):
        self.ddp, self.sync_at, self.calls = ddp, sync_at, 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        sync = self.sync_at(self.calls)
        self.calls += 1
        with contextlib.nullcontext() if sync else self.ddp.no_sync():
            return self.ddp(x)


class DataParallelTrainer:
    """A GANTrainer whose step runs through DDP-wrapped G and D; every other attribute is the wrapped
    trainer's (its optimizers, nets and spec: checkpoints read them as on one process)."""

    def __init__(self, trainer, sync_bn: bool = False):
        if trainer.options:
            raise GanparityError(f"data-parallel training runs the default step; options {sorted(trainer.options)} "
                                 "are for the benchmarks")
        r = trainer.spec.recipe
        if sync_bn:
            _convert_sync_bn(trainer.G)
            _convert_sync_bn(trainer.D)
        # DDP broadcasts rank 0's parameters and buffers here; running statistics then stay per rank.
        with warnings.catch_warnings():  # torch 2.14 renames it; the new name still syncs buffers at init
            warnings.simplefilter("ignore", FutureWarning)
            self.ddp_G = DDP(trainer.G, broadcast_buffers=False)
            self.ddp_D = DDP(trainer.D, broadcast_buffers=False)
        self.phase = "D"
        self.trainer, self.global_batch = trainer, None
        g_sync_in_d = not r.regenerate_fake  # the G step's backward goes through the D step's G(z)
        self.run_G = _Phased(self.ddp_G, lambda i: self.phase == "G" or g_sync_in_d)
        self.run_D = _Phased(self.ddp_D, lambda i: self.phase == "D" and i == 1)
        trainer.run_G, trainer.run_D = self.run_G, self.run_D

    def __getattr__(self, name: str):
        return getattr(self.trainer, name)

    def step(self, real: torch.Tensor, noise: torch.Tensor) -> dict:
        t = self.trainer
        _SYNCING[0] = True
        try:
            self.phase, self.run_D.calls, self.run_G.calls = "D", 0, 0
            fake, m_d = t.d_backward(real, noise)
            t.d_update()
            self.phase, self.run_D.calls = "G", 0
            m_g = t.g_backward(fake, noise)
            t.g_update()
        except RuntimeError as e:  # gloo/NCCL: a peer went away
            if "between 0 and 1" in str(e):  # BCELoss refuses a NaN probability: NaN values, as on one process
                return dict.fromkeys(METRICS, torch.tensor(float("nan")))
            raise _peer_failed(e) from None
        finally:
            _SYNCING[0] = False
        return m_d | m_g


def wrap_trainer(trainer, sync_bn: bool = False) -> DataParallelTrainer:
    return DataParallelTrainer(trainer, sync_bn)


def barrier() -> None:
    dist.barrier()


def _peer_failed(e: RuntimeError) -> GanparityError:
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return GanparityError(f"rank {dist.get_rank()}: a collective failed ({first[:200]}); "
                          "another worker has probably died")


def any_rank(flag: bool) -> bool:
    """True on every rank if it is True on any (a MAX all-reduce: NCCL needs a CUDA tensor)."""
    device = f"cuda:{torch.cuda.current_device()}" if dist.get_backend() == "nccl" else "cpu"
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    try:
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
    except RuntimeError as e:  # a peer went away
        raise _peer_failed(e) from None
    return bool(t.item())


def shutdown() -> None:
    """Leave the process group: a barrier, then destroy_process_group."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def end_process() -> None:
    """End a worker whose run is done, without interpreter finalization. DDP keeps C++ references
    to the gloo process group (its Python refcount is 12 after destroy_process_group, against 2
    without DDP), so destroy_process_group() does not free it: its threads (two pt_gloo_runloop,
    one gloo_tcp_loop) still run when the interpreter finalizes, and tearing them down then aborts
    now and again: "terminate called without an active exception", exit -6 (1 of 6 torchrun runs
    of a 3-step DDP script here; 2 of 6 without destroy_process_group). Everything is written and
    the group destroyed by now, so the worker flushes and leaves with exit code 0."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
