"""`ganparity train ... --nproc N`: N data-parallel workers on this machine, started by the
framework's own launcher, and watched until they finish.

    torch   python -m torch.distributed.run --nproc_per_node N --master_addr 127.0.0.1
                --master_port PORT -m ganparity train ...          (gloo on CPU, NCCL on CUDA)
    mxnet   python mxnet/tools/launch.py -n N -s 1 --launcher local python -m ganparity train ...
                (a scheduler, one server, N workers; dist_sync kvstore)

The workers run the very command the user typed, less --nproc: common/gan/distributed.py finds
its rank in the launcher's environment, so the same command runs under a user's own
`torchrun --nnodes ...` or launch.py --launcher ssh on several hosts (docs/distributed.md).

mxnet 1.9.1's launch.py calls threading.Thread.isAlive, which Python 3.9 removed; it runs here
with that one alias added (`python -m ganparity.common.cli.distributed ARGS` is launch.py with the
alias, for multi-host runs). Neither launcher says clearly when a worker dies: torchrun prints a
traceback block, launch.py raises in a thread and waits forever for the scheduler. So the
launcher's output is kept in a log, worker lines are passed through, and the first failure
ends the whole job (its process group) with one line naming the worker, its exit code, the last
checkpoint and the command that resumes.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from ..errors import GanparityError
from ..files import DirLock
from ..gan import distributed as DP
from .args import port, positive_int, positive_seconds

DEFAULT_PORT = 29500
# Flags of `train` that the launcher consumes (the workers do not get them).
LAUNCHER_FLAGS = ("nproc", "master_port")
_MX_FAILED = re.compile(r"Get nonzero return code=(-?\d+)")
_TORCH_FAILED = re.compile(r"failed \(exitcode: (-?\d+)\) local_rank: (\d+)")  # torchrun's root cause
# Launcher chatter that the log keeps and the terminal does not show.
_NOISE = re.compile(r"torch[./]distributed[./]elastic|torch\.distributed\.run|ChildFailedError|^\s*(Root Cause|"
                    r"Failures:|<NO_OTHER_FAILURES>|={8,}|-{8,}|\[\d+\]:|time\s*:|host\s*:|rank\s*:|exitcode\s*:|"
                    r"error_file\s*:|traceback\s*:|To enable traceback)|Exception in thread|dmlc_tracker|"
                    r"Get nonzero return code|INFO start listen|^\S*\s*\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ INFO")


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data parallel (docs/distributed.md)")
    g.add_argument("--nproc", type=positive_int, metavar="N", help="train with N data-parallel worker processes on "
                   "this machine, through the backend's own launcher (torchrun; mxnet's launch.py); each worker "
                   "trains on batch/N rows of every batch")
    g.add_argument("--sync-bn", action="store_true", help="synchronised BatchNorm across workers (torch "
                   "SyncBatchNorm; MXNet 1.9 has none across processes); default: per-worker statistics")
    g.add_argument("--master-port", type=port, default=DEFAULT_PORT, metavar="PORT",
                   help=f"torch: the rendezvous port on 127.0.0.1 (default {DEFAULT_PORT}); mxnet's launch.py "
                   "picks the first free port from 9091 itself")
    g.add_argument("--dist-timeout", type=positive_seconds, default=DP.DEFAULT_TIMEOUT_S, metavar="S",
                   help=f"a worker stops when a step waits longer than S seconds for the others (default "
                   f"{DP.DEFAULT_TIMEOUT_S:.0f})")
    p.set_defaults(train_parser=p)


def worker_env(a) -> None:
    """The flags a worker reads from its environment (set here, so a user's own torchrun works too)."""
    if a.sync_bn:
        os.environ[DP.SYNC_BN_ENV] = "1"
    os.environ[DP.TIMEOUT_ENV] = str(a.dist_timeout)


def worker_argv(a) -> list[str]:
    """The `ganparity train` arguments the user gave, less the launcher's own flags."""
    out: list[str] = []
    for action in a.train_parser._actions:
        dest = action.dest
        if dest in ("help", "fn", "train_parser", *LAUNCHER_FLAGS) or not action.option_strings:
            continue
        value, flag = getattr(a, dest, None), action.option_strings[-1]
        if value == action.default or value is None:
            continue
        if isinstance(action, argparse._StoreConstAction):  # store_true, and --no-gif's store_const
            out.append(flag)
        elif isinstance(action, argparse._AppendAction):
            for v in value:
                out += [flag, str(v)]
        else:
            out += [flag, str(value)]
    return out


def check_port(port: int, host: str = "127.0.0.1") -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError as e:
            raise GanparityError(f"port {port} on {host} is in use ({e.strerror}); torchrun's rendezvous needs it: "
                                 "pass --master-port with a free port") from None


def mxnet_launch_py() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("mxnet")
    if spec is None or not spec.submodule_search_locations:
        raise GanparityError("--nproc with the mxnet backend needs mxnet installed: pip install 'ganparity[mxnet]'")
    path = Path(next(iter(spec.submodule_search_locations))) / "tools" / "launch.py"
    if not path.is_file():
        raise GanparityError(f"mxnet has no {path}: its launcher ships in the mxnet wheel (1.x)")
    return path


SHIM = ("import runpy, sys, threading; threading.Thread.isAlive = threading.Thread.is_alive; "
        "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')")


def command(backend: str, nproc: int, port: int, argv: list[str]) -> list[str]:
    worker = [sys.executable, "-m", "ganparity", "train", *argv]
    if backend == "torch":
        return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--nnodes", "1",
                "--master_addr", "127.0.0.1", "--master_port", str(port), *worker[1:]]
    # launch.py joins the command with spaces and runs it through bash: quote each word
    return [sys.executable, "-c", SHIM, str(mxnet_launch_py()), "-n", str(nproc), "-s", "1", "--launcher", "local",
            *map(shlex.quote, worker)]


class _Watch:
    """Reads the launcher's merged output: every line to the log, worker lines to stderr; notes the
    first failed worker."""

    def __init__(self, proc: subprocess.Popen, log, backend: str):
        self.proc, self.log, self.backend = proc, log, backend
        self.failed: str | None = None
        self.rank: str | None = None
        self.code: str | None = None
        self.in_traceback = False

    def run(self) -> None:
        for line in self.proc.stdout:
            self.log.write(line)
            self.log.flush()
            m = _MX_FAILED.search(line)
            if m and self.failed is None:
                self.failed = m.group(1)
                self.kill()
            if self.backend == "torch":
                if (m := _TORCH_FAILED.search(line)) and self.code is None:
                    self.code, self.rank = m.groups()
            if line.startswith("Traceback (most recent call last)") or line.endswith(" FAILED\n"):
                self.in_traceback = True
            if self.in_traceback:
                if line[:1] not in (" ", "\t") and not line.startswith("Traceback"):
                    self.in_traceback = False  # the exception line: kept in the log only
                continue
            if not _NOISE.search(line):
                sys.stderr.write(line)
                sys.stderr.flush()

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _checkpoint_note(a) -> str:
    out = getattr(a, "out", None)
    if not out:
        return "see the run directory for the last checkpoint"
    ckpt = Path(out) / "checkpoint.npz"
    if not ckpt.is_file():
        return "no checkpoint had been written yet"
    try:
        from ..gan.run import load_checkpoint

        meta = load_checkpoint(ckpt)[0]
        where = f" (epoch {meta['epoch']}, step {meta['step']})"
    except GanparityError:
        where = ""
    return (f"the last checkpoint {str(ckpt)!r}{where} is intact; continue with: ganparity train --resume "
            f"--out {shlex.quote(out)} --nproc {a.nproc}")


def check_before_start(a, config) -> None:
    """What every worker would refuse, said once, before any worker starts: the run directory (an
    existing run without --resume, a folder of other files, a --resume that does not fit the run),
    the spec and its settings, and a batch that cannot give each of the N workers a row.
    `config(a)` is the TrainConfig the workers build from the same arguments."""
    import dataclasses

    from ..gan import run as R
    from ..gan.data import dataset_rows
    from ..gan.quality import check_inception_file

    cfg = dataclasses.replace(config(a), backend=a.backend)
    if not cfg.spec and not cfg.resume:
        raise GanparityError("--spec is required (or --resume --out RUN_DIR)")
    with R.open_run(cfg, writer=False) as run:  # reads only: creates and locks nothing
        if not cfg.resume:
            R.check_new_run_dir(run.dir)
        c = run.cfg
        if c.fid_weights is not None:
            check_inception_file(c.fid_weights)
        rows = dataset_rows(run.spec, c.data, c.dataset, c.cache_dir, c.n_data)
    DP.check_batches(rows, run.spec.recipe.batch_size, a.nproc)
    if (run.dir / R.LOCK).exists():  # a train writing there now: refused here, not once per worker
        DirLock(run.dir / R.LOCK, f"run directory {str(run.dir)!r}").acquire().release()


def launch(a, config=None) -> None:
    """Run N workers through the backend's launcher; a failed worker ends the job with one line.
    config(a) -> TrainConfig: given, the arguments are checked once here (check_before_start)."""
    backend, nproc = a.backend, a.nproc
    if backend is None and a.resume and a.out:
        from ..gan.run import read_run

        backend = read_run(Path(a.out))["backend"]
    backend = backend or "torch"
    if not a.out and not a.resume and a.spec:  # one name for every worker's run directory
        from ..gan.run import default_run_dir

        a.out = str(default_run_dir(a.spec, backend))
    if backend == "mxnet" and a.sync_bn:
        raise GanparityError("--sync-bn: MXNet 1.9 has no cross-process SyncBatchNorm (gluon.contrib.nn.SyncBatchNorm "
                             "synchronises the devices of one process); drop --sync-bn for per-worker BatchNorm")
    if config is not None:
        check_before_start(a, config)
    if backend == "torch":
        check_port(a.master_port)
    argv = worker_argv(a)
    if a.backend is None:
        argv += ["--backend", backend]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(DP.package_root()), *filter(None, [env.get("PYTHONPATH")])])
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    env[DP.TIMEOUT_ENV] = str(a.dist_timeout)
    if a.sync_bn:
        env[DP.SYNC_BN_ENV] = "1"
    cmd = command(backend, nproc, a.master_port, argv)
    fd, log_path = tempfile.mkstemp(prefix="ganparity-launch-", suffix=".log")
    with os.fdopen(fd, "w") as log:
        log.write(" ".join(map(shlex.quote, cmd)) + "\n")
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
        watch = _Watch(proc, log, backend)
        reader = threading.Thread(target=watch.run, daemon=True)
        reader.start()
        try:
            rc = proc.wait()
        except KeyboardInterrupt:
            os.killpg(proc.pid, signal.SIGINT)
            proc.wait()
            raise
        finally:
            reader.join(timeout=10)
            watch.kill()  # nothing of the job outlives it
    if rc == 0 and watch.failed is None:
        os.unlink(log_path)
        return
    who = (f"worker {watch.rank} of {nproc}" if watch.rank is not None else f"a worker of {nproc}")
    code = watch.code or watch.failed or str(rc)
    raise GanparityError(f"distributed {backend} run failed: {who} exited with code {code}; the job was stopped; "
                         f"{_checkpoint_note(a)}; the workers' output is in {log_path}")


if __name__ == "__main__":  # mxnet's launch.py with the Python 3.9+ alias, for multi-host runs
    threading.Thread.isAlive = threading.Thread.is_alive
    import runpy

    sys.argv = [str(mxnet_launch_py()), *sys.argv[1:]]
    runpy.run_path(sys.argv[0], run_name="__main__")
