"""Data-parallel GAN training, the framework-neutral half: who this process is, which rows and
noise it trains on, who writes, and a watchdog. The engines are the frameworks' own (PyTorch DDP,
MXNet's dist_sync kvstore), reached through the backend's distributed.py; nothing here imports one.

The choices (docs/distributed.md says why):

- **Who am I.** A torch worker is a process started by torchrun (WORLD_SIZE and RANK in the
  environment); an MXNet worker one started by mxnet/tools/launch.py (DMLC_ROLE=worker). The
  MXNet scheduler and server processes run the same command: importing mxnet turns them into the
  kvstore's scheduler or server, which run until the workers finish and then exit.
- **Data.** Every rank holds the same numpy Generator (same seed, same draws), so every rank makes
  the same global order of the epoch and the same global batch of B rows; rank r trains on the
  r-th of N contiguous near-equal pieces of it. Concatenated, the pieces are the one-process batch.
- **Noise.** The global B x nz noise is drawn from that shared Generator and cut the same way, so
  each rank's noise differs, is reproducible, and does not depend on N. The Generator state is
  the same on every rank, so rank 0's checkpoint resumes with any number of workers.
- **Writes.** Rank 0 alone writes run.json, metrics, pictures, quality and checkpoints; the
  others read the run directory only (on --resume).
- **Faults.** A step that has not finished after `timeout` seconds (a peer died, the kvstore
  waits forever) ends the process with one line on stderr and exit code 3.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import GanparityError

DEFAULT_TIMEOUT_S = 300.0
TIMEOUT_ENV = "GANPARITY_DIST_TIMEOUT"  # seconds; the launcher sets it from --dist-timeout
SYNC_BN_ENV = "GANPARITY_SYNC_BN"  # "1": synchronised BatchNorm (torch); the launcher sets it from --sync-bn
FAULT_ENV = "GANPARITY_FAULT"  # "RANK:STEP": that rank kills itself (SIGKILL) after that step (fault tests)
WATCHDOG_EXIT = 3


def package_root() -> Path:
    """The folder that holds the importable `ganparity` (a checkout's root, or site-packages): what a
    worker or a child `python -m ganparity` needs on its PYTHONPATH. This file is
    ganparity/common/gan/distributed.py when installed, common/gan/distributed.py in a checkout."""
    top = Path(__file__).resolve().parents[2]  # a checkout's root, or the installed ganparity/
    return top if (top / "ganparity" / "__init__.py").is_file() else top.parent


def engine() -> str | None:
    """'torch' under torchrun with more than one process, 'mxnet' under MXNet's launcher, else None."""
    if os.environ.get("DMLC_ROLE"):
        return "mxnet"
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ:
        return "torch"
    return None


def serve_if_server() -> None:
    """Under MXNet's launcher the scheduler and the server run the workers' command too: importing
    mxnet makes this process that role, which serves until the workers are done and then exits."""
    if os.environ.get("DMLC_ROLE") in ("server", "scheduler"):
        from ..backend import get_backend

        get_backend("mxnet")  # does not return: mxnet's kvstore_server exits the process
        sys.exit(0)


def shard(n: int, rank: int, world: int) -> slice:
    """Rows [start, stop) of a global batch of n rows that rank trains on: N contiguous pieces, the
    first n % N of them one row longer (np.array_split's rule)."""
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (rank < extra))


def timeout_s() -> float:
    return float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S))


class Watchdog:
    """A daemon thread that ends the process (one line, exit code 3) when kick() has not been called
    for `timeout` seconds: a collective that waits for a dead peer never returns by itself (MXNet's
    kvstore has no timeout; gloo's is per operation)."""

    def __init__(self, timeout: float, what: str):
        self.timeout, self.what, self.last = timeout, what, time.monotonic()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True, name="ganparity-watchdog")
        self.thread.start()

    def kick(self) -> None:
        self.last = time.monotonic()

    def stop(self) -> None:
        self.stopped.set()

    def _watch(self) -> None:
        while not self.stopped.wait(min(1.0, self.timeout / 4)):
            if time.monotonic() - self.last > self.timeout:
                print(f"ganparity: error: {self.what}: no step finished in {self.timeout:.0f} s; "
                      "another worker has probably died; stopping", file=sys.stderr, flush=True)
                os._exit(WATCHDOG_EXIT)


def check_batches(n_rows: int, batch_size: int, world: int) -> None:
    """Every one of `world` ranks must get at least one row of every batch (an empty piece would
    leave the collectives unmatched). The launcher checks it before any worker starts."""
    if world == 1:
        return
    last = n_rows % batch_size or batch_size
    if min(batch_size, last) < world:
        why = (f"batch size {batch_size}" if batch_size < world else
               f"batch size {batch_size} over {n_rows} rows leaves a last batch of {last}")
        raise GanparityError(f"{world} workers need at least {world} rows in every batch; {why}: change --batch-size, "
                             "--n-data or --nproc")


@dataclass
class Context:
    """What the training loop asks about data parallelism. The default is one process: rank 0 of 1,
    every method a no-op, so the loop reads the same either way."""

    rank: int = 0
    world: int = 1
    engine: str | None = None
    module: object = None  # the backend's distributed.py
    sync_bn: bool = False
    fault_step: int | None = None
    watchdog: Watchdog | None = None
    wrapped: object = field(default=None, repr=False)

    @property
    def writer(self) -> bool:
        return self.rank == 0

    def wrap(self, be, trainer, G, D, spec):
        """The trainer whose step averages gradients over the workers (itself on one process);
        checks that every rank starts from rank 0's weights."""
        if self.world == 1:
            return trainer
        before = be.get_arrays(G, spec.G) | be.get_arrays(D, spec.D)
        self.wrapped = self.module.wrap_trainer(trainer, self.sync_bn)
        after = be.get_arrays(G, spec.G) | be.get_arrays(D, spec.D)  # after the engine's broadcast from rank 0
        bad = [k for k in before if not np.array_equal(before[k], after[k])]
        if bad:
            raise GanparityError(f"rank {self.rank}: its initial weights differ from rank 0's ({', '.join(bad[:3])}"
                                 f"{' ...' if len(bad) > 3 else ''}); every rank must draw them from the same seed "
                                 "and checkpoint")
        return self.wrapped

    def rows(self, idx: np.ndarray) -> np.ndarray:
        """This rank's rows of a global batch (and the global size, which the MXNet step divides by)."""
        self.start_batch(len(idx))
        return self.local_rows(idx)

    def local_rows(self, idx: np.ndarray) -> np.ndarray:
        """This rank's rows of a global batch, and nothing else: the prefetch thread asks it ahead of
        the step (common/gan/feed.py)."""
        return idx if self.world == 1 else idx[shard(len(idx), self.rank, self.world)]

    def start_batch(self, size: int) -> None:
        """The global batch size of the step about to run (the MXNet step divides by it), set on the
        training thread just before that step."""
        if self.world > 1:
            self.wrapped.global_batch = size

    def noise(self, z: np.ndarray) -> np.ndarray:
        """This rank's rows of the global noise, drawn by every rank from the shared Generator."""
        return z if self.world == 1 else z[shard(len(z), self.rank, self.world)]

    def check_batches(self, n_rows: int, batch_size: int) -> None:
        check_batches(n_rows, batch_size, self.world)

    def after_step(self, step: int) -> None:
        if self.watchdog is not None:
            self.watchdog.kick()
        if self.fault_step is not None and step == self.fault_step:
            print(f"rank {self.rank}: {FAULT_ENV} kills this worker after step {step}", file=sys.stderr, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

    def any_rank(self, flag: bool) -> bool:
        """One rank's flag (Ctrl-C) made every rank's, so that all stop after the same step."""
        return flag if self.world == 1 else self.module.any_rank(flag)

    def barrier(self) -> None:
        if self.world > 1:
            self.module.barrier()

    def close(self) -> None:
        """The last barrier (rank 0 has written its last file), then the engine's clean shutdown."""
        if self.world == 1:
            return
        self.barrier()
        if self.watchdog is not None:
            self.watchdog.stop()
        self.module.shutdown()


SINGLE = Context()


def join(backend: str, device: str = "cpu", sync_bn: bool | None = None) -> Context:
    """This process's place in a data-parallel run, joining the engine's process group or kvstore
    (one process: SINGLE). The backend must be the engine's: torchrun starts torch workers."""
    kind = engine()
    if sync_bn is None:
        sync_bn = os.environ.get(SYNC_BN_ENV) == "1"
    if kind is None:
        return SINGLE
    if kind != backend:
        raise GanparityError(f"this process was started by the {kind} launcher but trains with --backend {backend}; "
                             f"launch {backend} workers with its own launcher (ganparity train --nproc N does)")
    from ..backend import get_backend

    module = get_backend(backend).distributed
    timeout = timeout_s()
    rank, world = module.init(device, timeout)
    fault = os.environ.get(FAULT_ENV, "")
    fault_step = None
    if fault:
        f_rank, f_step = (int(v) for v in fault.split(":"))
        fault_step = f_step if f_rank == rank else None
    dog = Watchdog(timeout, f"rank {rank} of {world}") if math.isfinite(timeout) and timeout > 0 else None
    return Context(rank, world, kind, module, sync_bn, fault_step, dog)


def end_worker() -> None:
    """The last call of a data-parallel worker's `train` command: the engine's own clean exit
    (torch: os._exit(0), see backends/torch/distributed.py end_process). One process: nothing."""
    kind = engine()
    if kind is not None:
        from ..backend import get_backend

        get_backend(kind).distributed.end_process()


def is_rank0() -> bool:
    """Rank 0 of the launcher's environment (torchrun's RANK); for MXNet, the joined kvstore's rank."""
    if engine() == "mxnet":
        from ..backend import get_backend

        return get_backend("mxnet").distributed.init("cpu", timeout_s())[0] == 0
    return int(os.environ.get("RANK", "0")) == 0
