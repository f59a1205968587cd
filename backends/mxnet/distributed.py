"""Data parallelism on MXNet's own engine: the dist_sync kvstore (a parameter server) started by
mxnet/tools/launch.py (common/gan/distributed.py is the neutral half).

Each trainable tensor of G and D gets one kvstore key. kv.init on rank 0 puts rank 0's weights on
the server and kv.pull gives them to every rank (the broadcast). In a step, after each net's
backward, every rank pushes its gradient and pulls the sum over the workers (dist_sync waits for
all pushes of the key; with no optimizer on the server, the merged value is the sum), then runs
its own Adam locally with Trainer.step(global batch): Gluon's losses are per sample, so the sum of
all ranks' gradients divided by the global batch is the one-process batch mean, even for unequal
pieces. Optimizer state stays on the workers (update_on_kvstore would move Adam to the server,
out of reach of the checkpoint), identical on every rank because the gradients are.

Only the nets' gradients from the loss they are updated with are pushed: D after the D step, G
after the G step. BatchNorm running statistics are not gradients: they stay per rank (rank 0's are
saved). MXNet 1.9 has no cross-process SyncBatchNorm: gluon.contrib.nn.SyncBatchNorm synchronises
the devices of one process (num_devices), not kvstore workers, so sync_bn is refused here.
"""

from __future__ import annotations

import os

import mxnet as mx

from ...common.errors import GanparityError

_KV: list = []


def init(device: str, timeout_s: float) -> tuple[int, int]:
    """Create (once) the dist_sync kvstore of launch.py's job; -> (rank, number of workers). MXNet's
    kvstore has no timeout of its own: the neutral watchdog provides one."""
    if not _KV:
        if device == "cuda":
            os.environ.setdefault("MXNET_KVSTORE_USETREE", "0")
        _KV.append(mx.kv.create("dist_sync"))
    kv = _KV[0]
    return kv.rank, kv.num_workers


class DataParallelTrainer:
    """A GANTrainer whose step sums the workers' gradients on the kvstore before each Trainer.step;
    every other attribute is the wrapped trainer's (its Trainers, nets and spec)."""

    def __init__(self, trainer, sync_bn: bool = False):
        if sync_bn:
            raise GanparityError("--sync-bn: MXNet 1.9 has no cross-process SyncBatchNorm (gluon.contrib.nn."
                                 "SyncBatchNorm synchronises the devices of one process); BatchNorm is per rank")
        if trainer.options:
            raise GanparityError(f"data-parallel training runs the default step; options {sorted(trainer.options)} "
                                 "are for the benchmarks")
        self.trainer, self.kv, self.global_batch = trainer, _KV[0], None
        self.keys: dict[str, list[tuple[int, mx.gluon.Parameter]]] = {}
        key = 0
        for name, net in (("G", trainer.G), ("D", trainer.D)):
            params = [p for _, p in sorted(net.collect_params().items()) if p.grad_req != "null"]
            self.keys[name] = [(key + i, p) for i, p in enumerate(params)]
            key += len(params)
        for name in ("G", "D"):  # rank 0's weights on every rank
            for k, p in self.keys[name]:
                self.kv.init(k, p.data())
                self.kv.pull(k, out=p.data())
        mx.nd.waitall()

    def __getattr__(self, name: str):
        return getattr(self.trainer, name)

    def _sum_grads(self, name: str) -> None:
        for k, p in self.keys[name]:
            self.kv.push(k, p.grad(), priority=-k)
            self.kv.pull(k, out=p.grad(), priority=-k)

    def step(self, real: mx.nd.NDArray, noise: mx.nd.NDArray) -> dict:
        t = self.trainer
        fake, m_d = t.d_backward(real, noise)
        self._sum_grads("D")
        t.batch = self.global_batch or real.shape[0] * self.kv.num_workers  # Trainer.step divides by it
        t.d_update()
        m_g = t.g_backward(fake, noise)
        self._sum_grads("G")
        t.g_update()
        return m_d | m_g


def wrap_trainer(trainer, sync_bn: bool = False) -> DataParallelTrainer:
    return DataParallelTrainer(trainer, sync_bn)


def barrier() -> None:
    _KV[0]._barrier()


_FLAG_KEY = 1 << 30  # beyond every parameter key (0, 1, ... in DataParallelTrainer)
_FLAG_READY: list = []


def any_rank(flag: bool) -> bool:
    """True on every rank if it is True on any: every worker pushes 0 or 1 to one key and pulls the
    sum (dist_sync: the pull waits for every worker's push)."""
    kv = _KV[0]
    if not _FLAG_READY:
        kv.init(_FLAG_KEY, mx.nd.zeros(1))
        _FLAG_READY.append(True)
    out = mx.nd.zeros(1)
    kv.push(_FLAG_KEY, mx.nd.array([1.0 if flag else 0.0]))
    kv.pull(_FLAG_KEY, out=out)
    return out.asscalar() > 0


def shutdown() -> None:
    """A barrier; the kvstore itself finalises at exit (ps-lite's Finalize, which the scheduler and
    server wait for)."""
    if _KV:
        _KV[0]._barrier()


def end_process() -> None:
    """A worker whose run is done returns normally: the kvstore's destructor at exit runs ps-lite's
    Finalize, which the scheduler and the server wait for (torch's worker ends with os._exit)."""
