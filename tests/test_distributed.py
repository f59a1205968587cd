"""Data-parallel training (common/gan/distributed.py, backends/*/distributed.py, `train --nproc`):
2 CPU workers through each framework's own launcher against one process, across the frameworks,
resume with another number of workers, rank-0-only writes, a dead worker and a port in use.

Each launch starts real processes (torchrun: 2 workers; launch.py: scheduler, server, 2 workers),
so the runs are tiny and shared by the tests that read them. Numbers measured on the 2-core CPU
(docs/distributed.md): gan-gaussian, 16 steps, 2 workers vs 1 process, max |weight difference|
torch 6.5e-5, mxnet 8.0e-5, torch-DDP vs mxnet-dist_sync 8.4e-5; tiny dcgan, 2 steps: per-rank
BatchNorm 8.1e-4 (Adam moments 3.1e-2), SyncBatchNorm 3.7e-9.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ganparity.common.gan.loop import TrainConfig, train
from ganparity.common.gan.run import CHECKPOINT, load_checkpoint
from ganparity.common.gan.run import checkpoint_differences as differences
from ganparity.common.report import data_parallel as D

from .conftest import need

pytestmark = pytest.mark.slow  # real launches of 2-worker jobs: minutes

ROOT = Path(__file__).resolve().parents[1]
GAUSS = [*D.GAUSS, "--progress", "lines"]
DCGAN = list(D.DCGAN)
PARITY_ATOL = D.PARITY_ATOL


def ganparity(*args: str, env: dict | None = None, timeout: float = 150) -> subprocess.CompletedProcess:
    full = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", **(env or {}))
    return subprocess.run([sys.executable, "-m", "ganparity", "train", *args], env=full, capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT)


def launched(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    out = ganparity(*args, env=env)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    return out


def in_process(out: Path, argv: list[str], backend: str) -> Path:
    """The one-process run of the same command (this process, no launcher)."""
    a = dict(zip(argv[::2], argv[1::2]))
    knobs = dict(kv.split("=") for flag, kv in zip(argv, argv[1:]) if flag == "--set")
    cfg = TrainConfig(spec=a["--spec"], backend=backend, knobs={k: int(v) for k, v in knobs.items()},
                      n_data=int(a["--n-data"]), epochs=int(a["--epochs"]),
                      batch_size=int(a["--batch-size"]) if "--batch-size" in a else None, out=str(out),
                      progress=False, eval_samples=16, gif=False)
    train(cfg)
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Lazily made, shared runs: runs('torch', 2) is gan-gaussian with 2 workers."""
    made: dict = {}
    root = tmp_path_factory.mktemp("dist")

    def get(backend: str, nproc: int, argv=tuple(GAUSS), extra=()):
        key = (backend, nproc, tuple(argv), tuple(extra))
        if key not in made:
            need(backend)
            out = root / f"{backend}-{nproc}-{len(made)}"
            if nproc == 1:
                made[key] = in_process(out, list(argv), backend)
            else:
                launched(*argv, *extra, "--backend", backend, "--out", str(out), "--nproc", str(nproc))
                made[key] = out
        return made[key]

    return get


@pytest.mark.parametrize("backend", ["torch", "mxnet"])
def test_two_workers_equal_one_process(runs, backend):
    """gan-gaussian, 2 workers with batch 4 each against one process with batch 8: the same weights
    and Adam moments, to fp32 summation order."""
    w, adam = differences(runs(backend, 1), runs(backend, 2))
    assert w < PARITY_ATOL and adam < 1e-4, (w, adam)


def test_torch_ddp_equals_mxnet_dist_sync(runs):
    w, adam = differences(runs("torch", 2), runs("mxnet", 2))
    assert w < PARITY_ATOL and adam < 1e-4, (w, adam)


def test_rank_0_alone_writes(runs):
    run = runs("torch", 2)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 17))  # one line per step, not one per worker
    history = json.loads((run / "run.json").read_text())["history"]
    assert len(history) == 1
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint.npz", "checkpoint.prev.npz", "loss.png",
                                                     "metrics.jsonl", "quality.json", "quality.jsonl", "run.json",
                                                     "samples"]


def test_batchnorm_per_rank_gives_a_measured_difference(runs):
    """dcgan (BatchNorm in G and D), 2 steps: per-rank statistics normalise each half-batch by its
    own moments; measured on the 2-core CPU: weights 8.1e-4, Adam moments 3.1e-2 from one process."""
    w, adam = differences(runs("torch", 1, DCGAN), runs("torch", 2, DCGAN))
    print(f"per-rank BatchNorm: weights {w:.2e}, Adam {adam:.2e}")
    assert w > 1e-5 and adam > 1e-3, (w, adam)


def test_sync_batchnorm_gives_one_process(runs):
    """The same run with --sync-bn (torch SyncBatchNorm): one process's numbers (measured 3.7e-9)."""
    w, adam = differences(runs("torch", 1, DCGAN), runs("torch", 2, DCGAN, ("--sync-bn",)))
    print(f"SyncBatchNorm: weights {w:.2e}, Adam {adam:.2e}")
    assert w < 1e-6 and adam < 1e-5, (w, adam)


def test_mxnet_refuses_sync_batchnorm(tmp_path):
    out = ganparity(*DCGAN, "--backend", "mxnet", "--out", str(tmp_path / "r"), "--nproc", "2", "--sync-bn")
    assert out.returncode == 2 and "no cross-process SyncBatchNorm" in out.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("backend,resume_nproc", [("torch", 1), ("mxnet", 2)])
def test_dead_worker_stops_the_run_and_resume_continues(runs, tmp_path, backend, resume_nproc):
    """Worker 1 is killed (SIGKILL) after step 12 of 16: the job ends at once with one line, the
    epoch-1 checkpoint is intact, and --resume (torch: with 1 process instead of 2) finishes the
    run with the numbers of an uninterrupted one."""
    need(backend)
    out = tmp_path / "run"
    res = ganparity(*GAUSS, "--backend", backend, "--out", str(out), "--nproc", "2",
                    env={"GANPARITY_FAULT": "1:12", "GANPARITY_DIST_TIMEOUT": "60"})
    assert res.returncode == 2, res.stderr[-3000:]
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith(f"ganparity: error: distributed {backend} run failed: ") and "exited with code" in last, last
    assert "(epoch 1, step 8) is intact; continue with: ganparity train --resume" in last, last
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    meta = load_checkpoint(out / CHECKPOINT)[0]
    assert (meta["epoch"], meta["step"]) == (1, 8)
    more = ["--nproc", str(resume_nproc)] if resume_nproc > 1 else []
    launched("--resume", "--out", str(out), "--progress", "lines", *more)
    w, adam = differences(runs(backend, 1), out)
    assert w < PARITY_ATOL and adam < 1e-4, (w, adam)


@pytest.mark.parametrize("backend", ["torch", "mxnet"])
def test_ctrl_c_saves_one_checkpoint_and_resumes(tmp_path, backend):
    """SIGINT to the launcher (what Ctrl-C sends it): every rank stops after the same step, rank 0
    saves a checkpoint mid-epoch and says so once, with the resume command; exit 130; the resume
    with the same number of workers goes on from that step to the end of its epoch."""
    import signal
    import time

    need(backend)
    out = tmp_path / "run"
    argv = [*DCGAN[:10], "--n-data", "4096", "--batch-size", "32", "--epochs", "50", "--eval-samples", "16",
            "--no-gif", "--progress", "lines", "--out", str(out), "--nproc", "2", "--backend", backend]
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    # (SIGINT at its default disposition in the launcher, as a terminal leaves it: a test run started
    # as a background job of a shell inherits it ignored, and Python then never raises KeyboardInterrupt)
    proc = subprocess.Popen([sys.executable, "-m", "ganparity", "train", *argv], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (out / "metrics.jsonl").is_file():
            time.sleep(0.2)
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-3000:]
    lines = [line for line in err.splitlines() if "interrupted at step" in line]
    assert len(lines) == 1 and lines[0].endswith(f"--resume --out {out} --nproc 2"), err[-3000:]
    meta = load_checkpoint(out / CHECKPOINT)[0]
    assert f"interrupted at step {meta['step']} " in lines[0] and 0 < meta["batch_in_epoch"] < 128
    launched("--resume", "--out", str(out), "--nproc", "2", "--epochs", str(meta["epoch"] + 1))
    assert load_checkpoint(out / CHECKPOINT)[0]["step"] == (meta["epoch"] + 1) * 128


def test_a_port_in_use_is_one_line(tmp_path):
    need("torch")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        res = ganparity(*GAUSS, "--out", str(tmp_path / "r"), "--nproc", "2", "--master-port", str(port))
    assert res.returncode == 2
    assert res.stderr.strip() == (f"ganparity: error: port {port} on 127.0.0.1 is in use (Address already in use); "
                                  "torchrun's rendezvous needs it: pass --master-port with a free port")


def test_a_locked_run_directory_refuses_the_workers(tmp_path):
    """A run directory held by another writer: the launcher says so in one line, before any worker
    starts (rank 0 alone takes run.lock in the workers, for a user's own torchrun)."""
    from ganparity.common.files import DirLock
    from ganparity.common.gan.run import LOCK

    need("torch")
    out = tmp_path / "r"
    out.mkdir()
    lock = DirLock(out / LOCK, f"run directory {str(out)!r}").acquire()
    try:
        res = ganparity(*GAUSS, "--out", str(out), "--nproc", "2", env={"GANPARITY_DIST_TIMEOUT": "30"})
    finally:
        lock.release()
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr[-3000:]
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"ganparity: error: run directory {str(out)!r} is in use by "
                                                   f"pid {os.getpid()}"), res.stderr
    assert sorted(p.name for p in out.iterdir()) == []  # nothing written


def test_workers_get_the_users_command_less_the_launchers_flags():
    from ganparity.common.cli.distributed import worker_argv
    from ganparity.common.cli.main import build_parser

    a = build_parser().parse_args(["train", *DCGAN, "--out", "r", "--nproc", "2", "--master-port", "29999",
                                   "--sync-bn"])
    argv = worker_argv(a)
    assert "--nproc" not in argv and "--master-port" not in argv
    assert argv.count("--no-gif") == 1 and "False" not in argv and "--sync-bn" in argv
    assert [argv[i + 1] for i, f in enumerate(argv) if f == "--set"] == ["nz=8", "ngf=4", "ndf=4", "image_size=16"]
    assert build_parser().parse_args(["train", *argv]).gif is False


def test_shards_are_disjoint_and_cover_the_batch():
    from ganparity.common.gan.distributed import shard

    for n in (8, 9, 17):
        for world in (1, 2, 3, 4):
            pieces = [range(n)[shard(n, r, world)] for r in range(world)]
            assert [i for p in pieces for i in p] == list(range(n))
            assert max(map(len, pieces)) - min(map(len, pieces)) <= 1
