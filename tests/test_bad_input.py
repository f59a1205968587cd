"""Bad input never shows a traceback, a zero is never a default, and a corrupt checkpoint never
loses a run.

The table: every command, fed a bad value or a bad file, exits 2 with exactly one line on stderr
that names the bad value (and the valid choices where there is a list), no traceback, and every
file that was there before is still there, byte for byte (and nothing new is left behind). Then
the run directory's defences: a corrupt or changed checkpoint falls back to the previous one (one
warning line, a bit-identical resume), a full disk in the middle of a checkpoint write keeps the
last good one, one writer per run directory (a lock that kill -9 does not leave stuck), and the
settings a run started with come back on --resume.

Everything runs in-process through main() at tiny widths (one subprocess, for kill -9).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ganparity.common import files
from ganparity.common.cli import distributed, main, report
from ganparity.common.errors import GanparityError
from ganparity.common.gan import run as gan_run
from ganparity.common.gan.loop import TrainConfig, train
from ganparity.common.gan.run import CHECKPOINT, LOCK, PREVIOUS, RUN_JSON, load_checkpoint
from ganparity.common.readers import sha256

from .conftest import SMALL, need

TINY = [x for k, v in SMALL.items() for x in ("--set", f"{k}={v}")]  # nz=8, ngf=4, ndf=4, image_size=16
RUN = ["--n-data", "32", "--batch-size", "16", "--eval-samples", "16", "--no-gif", "--progress", "lines"]
WEIGHTS = ["--spec", "dcgan", *TINY]


def tiny(out, epochs=2, **kw) -> TrainConfig:
    base = dict(spec="dcgan", backend="torch", knobs=dict(SMALL), n_data=32, epochs=epochs, batch_size=16,
                out=str(out), progress=False, eval_samples=16, gif=False)
    return TrainConfig(**(base | kw))


# -- the files the table feeds the commands ----------------------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A folder of good and bad files, and a trained run (2 epochs, so it has a previous checkpoint)."""
    need("torch")
    w = tmp_path_factory.mktemp("world")
    train(tiny(w / "run", epochs=2))
    train(tiny(w / "short", epochs=1))  # one checkpoint, no previous: truncated below
    cut = (w / "short" / CHECKPOINT).read_bytes()
    (w / "short" / CHECKPOINT).write_bytes(cut[: len(cut) // 2])
    (w / "badjson").mkdir()
    (w / "badjson" / RUN_JSON).write_text("{not json")
    shutil.copy(w / "run" / CHECKPOINT, w / "badjson" / CHECKPOINT)
    assert main(["init", *WEIGHTS, "--out", str(w / "g.npz")]) == 0
    good = (w / "g.npz").read_bytes()
    (w / "trunc.npz").write_bytes(good[: len(good) // 2])
    np.savez(w / "keys.npz", foo=np.zeros(3))
    np.save(w / "one.npy", np.zeros((2, 3), np.float32))
    np.save(w / "x.npy", np.zeros((2, 8, 1, 1), np.float32))
    np.save(w / "zero_rows.npy", np.zeros((0, 8, 1, 1), np.float32))
    np.save(w / "strings.npy", np.array(["a", "b"]))
    (w / "text.txt").write_text("not an array\n")
    (w / "empty.npz").write_bytes(b"")
    (w / "empty.pt").write_bytes(b"")
    (w / "garbage.pt").write_bytes(b"nonsense, not a torch file")
    (w / "garbage.pth").write_bytes(b"nonsense, not a torch file")
    (w / "afile").write_text("a file where a folder should be\n")
    (w / "adir").mkdir()
    os.mkfifo(w / "fifo")  # a reader may be waiting on it: never replaced by a regular file
    x = np.zeros((2, 8, 1, 1), np.float32)
    x[1, 3] = np.nan
    np.save(w / "nan_x.npy", x)
    np.save(w / "inf_x.npy", np.where(np.isnan(x), np.float32(np.inf), x))
    arrays = dict(np.load(w / "g.npz"))
    arrays["G.0.weight"].flat[5] = np.nan
    np.savez(w / "nan.npz", **arrays)
    (w / "foreign").mkdir()  # a folder of the user's own, with files named as the commands name theirs
    (w / "foreign" / "report.md").write_text("my own report\n")
    (w / "foreign" / "results.json").write_text('{"mine": true}')
    _kaggle(w / "kaggle", labels=["id,breed", *(f"id{i},breed{i % 2}" for i in range(4))], images=4)
    _kaggle(w / "no_images", labels=["id,breed", *(f"id{i},breed{i % 2}" for i in range(4))], images=0)
    _kaggle(w / "bad_header", labels=["name,kind", "id0,breed0"], images=1)
    _kaggle(w / "stray", labels=["id,breed", "id0,breed0"], images=2)
    return w


def _kaggle(root: Path, labels: list[str], images: int) -> None:
    (root / "train").mkdir(parents=True)
    (root / "test").mkdir()
    for i in range(images):
        (root / "train" / f"id{i}.jpg").write_bytes(b"jpeg" + bytes([i]))
    (root / "test" / "t0.jpg").write_bytes(b"jpeg")
    (root / "labels.csv").write_text("\n".join(labels) + "\n")


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}


def run_main(argv: list[str], capsys) -> tuple[int, str, str]:
    capsys.readouterr()  # what earlier training in the test printed is not this command's output
    try:
        code = main(argv)
    except SystemExit as e:  # argparse refuses before main's try
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


# -- the table: (argv, what the one line must name) ----------------------------------------------------

F = ["forward", *WEIGHTS, "--backend", "torch", "--net", "G", "--out", "y.npy"]
G = [*F, "--weights", "g.npz"]
T = ["train", "--spec", "dcgan", "--backend", "torch", *TINY, *RUN]
R = ["train", "--resume", "--out", "run"]
REORG = ["finetune", "reorganize", "--out", "laid_out"]
FT = ["finetune", "train", "--backend", "torch", "--data", "kaggle", "--out", "ft"]

CASES = {
    # train: the numbers (a zero is never a default)
    "train epochs 0": ([*T, "--epochs", "0", "--out", "new"], ["--epochs", "'0'"]),
    "train epochs negative": ([*T, "--epochs", "-3", "--out", "new"], ["--epochs", "'-3'"]),
    "train epochs not a number": ([*T, "--epochs", "two", "--out", "new"], ["--epochs", "'two'"]),
    "train batch size 0": ([*T, "--batch-size", "0", "--out", "new"], ["--batch-size", "'0'"]),
    "train n-data 0": ([*T, "--n-data", "0", "--out", "new"], ["--n-data", "'0'"]),
    "train eval samples 1": ([*T, "--eval-samples", "1", "--out", "new"], ["--eval-samples", "'1'", "at least 2"]),
    "train sample every 0": ([*T, "--sample-every", "0", "--out", "new"], ["--sample-every", "'0'"]),
    "train seed negative": ([*T, "--seed", "-1", "--out", "new"], ["--seed", "'-1'"]),
    "train nproc 0": ([*T, "--nproc", "0", "--out", "new"], ["--nproc", "'0'"]),
    "train master port out of range": ([*T, "--nproc", "2", "--master-port", "70000", "--out", "new"],
                                       ["--master-port", "'70000'", "1 to 65535"]),
    "train dist timeout 0": ([*T, "--nproc", "2", "--dist-timeout", "0", "--out", "new"], ["--dist-timeout", "'0'"]),
    "train width knob 0": ([*T, "--set", "ngf=0", "--out", "new"], ["ngf", "0"]),
    "train image size that G cannot make": ([*T, "--set", "image_size=48", "--out", "new"], ["(3, 48, 48)"]),
    # train: names with a list of choices
    "train device": ([*T, "--device", "gpu", "--out", "new"], ["'gpu'", "'cpu', 'cuda'"]),
    "train backend": ([*T, "--backend", "jax", "--out", "new"], ["'jax'", "torch, mxnet"]),
    "train progress": ([*T, "--progress", "fancy", "--out", "new"], ["'fancy'", "'auto', 'bar', 'lines'"]),
    "train spec": (["train", "--spec", "wgan", "--out", "new"], ["'wgan'", "gan-gaussian, dcgan, dcgan-d2l"]),
    "train dataset": ([*T, "--dataset", "faces", "--out", "new"], ["'faces'", "gaussian, discs"]),
    # train: the run directory
    "train out is a file": ([*T, "--out", "afile"], ["'afile'", "is a file"]),
    "train out cannot be created": ([*T, "--out", "afile/run"], ["'afile/run'", "'afile' is a file"]),
    "train over an existing run": ([*T, "--out", "run"], ["'run'", "already holds a run", "--resume"]),
    "train data folder missing": ([*T, "--data", "missing", "--out", "new"], ["'missing'", "does not exist"]),
    "train data is a file": ([*T, "--data", "afile", "--out", "new"], ["'afile'", "not a folder"]),
    "train fid weights missing": ([*T, "--fid-weights", "inception.pth", "--out", "new"],
                                  ["'inception.pth'", "does not exist"]),
    "train fid weights a folder": ([*T, "--fid-weights", "adir", "--out", "new"], ["'adir'", "is a folder"]),
    # train --resume: the run's settings come back; a different one is refused
    "resume without out": (["train", "--resume"], ["--resume needs --out"]),
    "resume a missing run": (["train", "--resume", "--out", "nowhere"], ["'nowhere'", "not a run to resume"]),
    "resume a file": (["train", "--resume", "--out", "afile"], ["'afile'", "is a file"]),
    "resume other eval samples": ([*R, "--eval-samples", "64"], ["--eval-samples 64", "the run's 16"]),
    "resume other sample cadence": ([*R, "--sample-every", "3"], ["--sample-every 3", "the run's 1"]),
    "resume other seed": ([*R, "--seed", "5"], ["--seed 5", "the run's 0"]),
    "resume other width": ([*R, "--set", "ngf=8"], ["ngf=8", "ngf=4"]),
    "resume other batch size": ([*R, "--batch-size", "8"], ["--batch-size 8", "16"]),
    "resume other dataset": ([*R, "--dataset", "gaussian"], ["--dataset 'gaussian'", "the run's None"]),
    "resume other fid weights": ([*R, "--fid-weights", "adir"], ["'adir'", "is a folder"]),
    "resume other spec": ([*R, "--spec", "dcgan-d2l"], ["'dcgan-d2l'", "'dcgan'"]),
    "resume fewer epochs than done": ([*R, "--epochs", "1"], ["--epochs 1", "2 epochs"]),
    "resume a truncated only checkpoint": (["train", "--resume", "--out", "short"],
                                           ["checkpoint.npz is corrupt", "no checkpoint.prev.npz"]),
    "resume a damaged run.json": (["train", "--resume", "--out", "badjson"], ["run.json", "not valid JSON"]),
    # sample
    "sample n 0": (["sample", "--run", "run", "--n", "0"], ["--n", "'0'"]),
    "sample seed negative": (["sample", "--run", "run", "--seed", "-2"], ["--seed", "'-2'"]),
    "sample backend": (["sample", "--run", "run", "--backend", "jax"], ["'jax'", "torch, mxnet"]),
    "sample run is a file": (["sample", "--run", "afile"], ["'afile'", "is a file"]),
    "sample run is no run": (["sample", "--run", "adir"], ["'adir'", "not a run directory"]),
    "sample truncated only checkpoint": (["sample", "--run", "short"],
                                         ["'short'", "checkpoint.npz is corrupt", "no checkpoint.prev.npz"]),
    "sample damaged run.json": (["sample", "--run", "badjson"], ["run.json", "not valid JSON"]),
    "sample out is a folder": (["sample", "--run", "run", "--out", "adir"], ["'adir'", "is a folder"]),
    # forward: the weights file
    "forward truncated weights": ([*F, "--weights", "trunc.npz", "--input", "x.npy"],
                                  ["'trunc.npz'", "damaged zip archive", ".npz archive"]),
    "forward weights missing": ([*F, "--weights", "nope.npz", "--input", "x.npy"], ["'nope.npz'", "does not exist"]),
    "forward weights empty": ([*F, "--weights", "empty.npz", "--input", "x.npy"], ["'empty.npz'", "is empty"]),
    "forward weights a folder": ([*F, "--weights", "adir", "--input", "x.npy"], ["'adir'", "is a folder"]),
    "forward weights a .npy": ([*F, "--weights", "one.npy", "--input", "x.npy"], ["'one.npy'", "one .npy array"]),
    "forward weights a text file": ([*F, "--weights", "text.txt", "--input", "x.npy"], ["'text.txt'", "is text"]),
    "forward weights wrong keys": ([*F, "--weights", "keys.npz", "--input", "x.npy"], ["missing G.0.weight"]),
    "forward weights wrong widths": (["forward", "--spec", "dcgan", "--backend", "torch", "--net", "G", "--out",
                                      "y.npy", "--weights", "g.npz", "--input", "x.npy"],
                                     ["'g.npz'", "do not fit spec dcgan", "needs (100, 512, 4, 4)"]),
    # forward: the input array
    "forward input missing": ([*G, "--input", "nope.npy"], ["'nope.npy'", "does not exist"]),
    "forward input not an array": ([*G, "--input", "text.txt"], ["'text.txt'", "not a .npy array"]),
    "forward input an .npz": ([*G, "--input", "g.npz"], ["'g.npz'", ".npz archive"]),
    "forward input a folder": ([*G, "--input", "adir"], ["'adir'", "is a folder"]),
    "forward input wrong shape": ([*G, "--input", "one.npy"], ["'one.npy'", "(2, 3)", "(N, 8, 1, 1)"]),
    "forward input no rows": ([*G, "--input", "zero_rows.npy"], ["'zero_rows.npy'", "no rows"]),
    "forward input strings": ([*G, "--input", "strings.npy"], ["'strings.npy'", "expected numbers"]),
    "forward net": ([*F[:-4], "--net", "E", "--out", "y.npy", "--weights", "g.npz", "--input", "x.npy"],
                    ["'E'", "'G', 'D'"]),
    "forward mode": ([*G, "--input", "x.npy", "--mode", "test"], ["'test'", "'train', 'eval'"]),
    "forward out a folder": ([*F[:-2], "--out", "adir", "--weights", "g.npz", "--input", "x.npy"],
                             ["'adir'", "is a folder"]),
    # init, convert, specs, differences
    "init seed negative": (["init", *WEIGHTS, "--seed", "-1", "--out", "w.npz"], ["--seed", "'-1'"]),
    "init out a folder": (["init", *WEIGHTS, "--out", "adir"], ["'adir'", "is a folder"]),
    "init a fine-tune spec": (["init", "--spec", "resnet34-finetune", "--out", "w.npz"],
                              ["'resnet34-finetune'", "gan-gaussian, dcgan"]),
    "convert garbage": (["convert", *WEIGHTS, "--from", "torch", "--to", "torch", "garbage.pt", "o.pt"],
                        ["'garbage.pt'", "not a PyTorch checkpoint"]),
    "convert empty file": (["convert", *WEIGHTS, "--from", "torch", "--to", "torch", "empty.pt", "o.pt"],
                           ["'empty.pt'", "is empty"]),
    "convert missing file": (["convert", *WEIGHTS, "--from", "torch", "--to", "torch", "nope.pt", "o.pt"],
                             ["'nope.pt'", "does not exist"]),
    "convert backend": (["convert", *WEIGHTS, "--from", "jax", "--to", "torch", "g.npz", "o.pt"],
                        ["'jax'", "torch, mxnet"]),
    "specs name": (["specs", "wgan"], ["'wgan'", "gan-gaussian, dcgan"]),
    "specs knob 0": (["specs", "dcgan", "--set", "ngf=0"], ["ngf", "0"]),
    "specs knob without value": (["specs", "dcgan", "--set", "ngf"], ["'ngf'", "KEY=VALUE"]),
    "specs unknown knob": (["specs", "dcgan", "--set", "depth=3"], ["'depth'", "nz, ngf, ndf"]),
    "differences out a folder": (["differences", "dcgan", "--out", "adir"], ["'adir'", "is a folder"]),
    # parity, report
    "parity steps negative": (["parity", "--steps", "-1"], ["--steps", "'-1'"]),
    "parity steps 0": (["parity", "--steps", "0"], ["--steps", "'0'"]),
    "parity batch 0": (["parity", "--batch", "0"], ["--batch", "'0'"]),
    "parity one backend": (["parity", "--backends", "torch"], ["'torch'", "two names"]),
    "parity unknown backend": (["parity", "--backends", "torch,jax"], ["'jax'", "torch, mxnet"]),
    "parity spec": (["parity", "--spec", "wgan"], ["'wgan'", "gan-gaussian, dcgan"]),
    "parity unknown knob": (["parity", "--spec", "dcgan", "--set", "depth=3"], ["'depth'", "ngf"]),
    "report steps 0": (["report", "--steps", "0"], ["--steps", "'0'"]),
    "report out is a file": (["report", "--out", "afile"], ["'afile'", "is a file"]),
    # bench step, bench gpu-check
    "bench batch size 0": (["bench", "step", "--batch-sizes", "16,0"], ["'0'", "'16,0'"]),
    "bench batch sizes not numbers": (["bench", "step", "--batch-sizes", "big"], ["'big'"]),
    "bench rounds 0": (["bench", "step", "--rounds", "0"], ["--rounds", "'0'"]),
    "bench warmup negative": (["bench", "step", "--warmup", "-1"], ["--warmup", "'-1'"]),
    "bench threads 0": (["bench", "step", "--threads", "0"], ["--threads", "'0'"]),
    "bench device": (["bench", "step", "--device", "tpu"], ["'tpu'", "'cpu', 'cuda'"]),
    "bench semantics": (["bench", "step", "--semantics", "mine"], ["'mine'", "'own', 'source', 'torch', 'mxnet'"]),
    "bench out is a file": (["bench", "step", "--out", "afile"], ["'afile'", "is a file"]),
    "gpu-check device": (["bench", "gpu-check", "--device", "tpu"], ["'tpu'", "'cuda', 'cpu'"]),
    # the output-path rule (common/files.py check_output_path): never a device, a FIFO or a socket ...
    "forward out is a FIFO": ([*F[:-2], "--out", "fifo", "--weights", "g.npz", "--input", "x.npy"],
                              ["'fifo'", "is a named pipe (FIFO), not a regular file"]),
    "forward out is /dev/null": ([*F[:-2], "--out", "/dev/null", "--weights", "g.npz", "--input", "x.npy"],
                                 ["'/dev/null'", "is a character device"]),
    "init out is /dev/full": (["init", *WEIGHTS, "--out", "/dev/full"], ["'/dev/full'", "is a character device"]),
    "init out is a FIFO": (["init", *WEIGHTS, "--out", "fifo"], ["'fifo'", "named pipe (FIFO)"]),
    "sample out is a FIFO": (["sample", "--run", "run", "--out", "fifo"], ["'fifo'", "named pipe (FIFO)"]),
    "differences out is a FIFO": (["differences", "dcgan", "--out", "fifo"], ["'fifo'", "named pipe (FIFO)"]),
    "convert out is a FIFO": (["convert", *WEIGHTS, "--from", "torch", "--to", "torch", "garbage.pt", "fifo"],
                              ["'fifo'", "named pipe (FIFO)"]),
    "finetune predict out is a FIFO": (["finetune", "predict", "--backend", "torch", "--data", "kaggle", "--run",
                                        "ft", "--out", "fifo"], ["'fifo'", "named pipe (FIFO)"]),
    "finetune convert out is a FIFO": (["finetune", "convert", "--from", "torch", "--to", "torch", "garbage.pth",
                                        "fifo"], ["'fifo'", "named pipe (FIFO)"]),
    # ... never `.`, a folder above it, the home folder or the root ...
    "report out is the current folder": (["report", "--out", "."], ["'.'", "is the current folder"]),
    "bench out is above the current folder": (["bench", "step", "--out", ".."],
                                              ["'..'", "a folder above the current one"]),
    "train out is the filesystem root": ([*T, "--out", "/"], ["'/'", "is the filesystem root"]),
    "finetune train out is the current folder": ([*FT[:-2], "--out", "."], ["'.'", "is the current folder"]),
    "reorganize out is the home folder": (["finetune", "reorganize", "--data", "kaggle", "--out", "~"],
                                          ["'~'", "is the home folder"]),
    # ... and nothing a command did not write is overwritten or written among
    "bench stem with a folder": (["bench", "step", "--stem", "../x"], ["'../x'", "file name stem"]),
    "bench over a file it did not write": (["bench", "step", "--out", "foreign", "--backends", "torch"],
                                           ["'results.json'", "ganparity bench did not write", "--stem"]),
    "report over a file it did not write": (["report", "--out", "foreign"], ["'report.md'", "did not write"]),
    "train into a folder of other files": ([*T, "--out", "kaggle"], ["'kaggle'", "is not a run directory"]),
    "finetune train into a folder of other files": ([*FT[:-2], "--out", "kaggle"], ["'kaggle'", "no run.json"]),
    "reorganize into a folder of other files": (["finetune", "reorganize", "--data", "kaggle", "--out", "stray"],
                                                ["'stray'", "no reorganize.json"]),
    # non-finite numbers: inputs and weights named, flags finite and in range
    "forward NaN input": ([*G, "--input", "nan_x.npy"], ["--input 'nan_x.npy'", "non-finite", "1 NaN of 16"]),
    "forward inf input": ([*G, "--input", "inf_x.npy"], ["--input 'inf_x.npy'", "1 inf of 16"]),
    "forward NaN weights": ([*F, "--weights", "nan.npz", "--input", "x.npy"],
                            ["'nan.npz'", "non-finite", "G.0.weight has 1 NaN"]),
    "train dist timeout inf": ([*T, "--nproc", "2", "--dist-timeout", "inf", "--out", "new"],
                               ["--dist-timeout", "'inf'", "finite"]),
    "finetune train lr nan": ([*FT, "--set", "lr=nan"], ["lr", "'nan'", "finite"]),
    "finetune train momentum 1.5": ([*FT, "--set", "momentum=1.5"], ["momentum", "'1.5'", "[0, 1)"]),
    # train --nproc: refused by the launcher, once, before any worker starts
    "train nproc more than the batch": ([*T, "--nproc", "4", "--batch-size", "2", "--out", "new"],
                                        ["4 workers need at least 4 rows", "batch size 2"]),
    "train nproc over an existing run": ([*T, "--nproc", "2", "--out", "run"], ["'run'", "already holds a run"]),
    "train nproc into a folder of other files": ([*T, "--nproc", "2", "--out", "kaggle"],
                                                 ["'kaggle'", "is not a run directory"]),
    "unknown command": (["trian"], ["'trian'", "'train'"]),
    # finetune (the dog-breed app)
    "reorganize ids without images": ([*REORG, "--data", "no_images"],
                                      ["4 of the 4 ids", "have no image", "id0", "it is empty"]),
    "reorganize image without a label": ([*REORG, "--data", "stray"], ["1 image(s)", "no row in labels.csv: id1"]),
    "reorganize header": ([*REORG, "--data", "bad_header"], ["labels.csv", "'name,kind'", "'id,breed'"]),
    "reorganize not a kaggle folder": ([*REORG, "--data", "adir"], ["labels.csv", "not found"]),
    "reorganize valid ratio 1.5": ([*REORG, "--data", "kaggle", "--valid-ratio", "1.5"], ["'1.5'", "[0, 1)"]),
    "reorganize valid ratio negative": ([*REORG, "--data", "kaggle", "--valid-ratio", "-0.1"], ["'-0.1'", "[0, 1)"]),
    "reorganize out is a file": (["finetune", "reorganize", "--data", "kaggle", "--out", "afile"],
                                 ["'afile'", "is a file"]),
    "finetune train epochs 0": ([*FT, "--epochs", "0"], ["--epochs", "'0'"]),
    "finetune train batch size 0": ([*FT, "--batch-size", "0"], ["--batch-size", "'0'"]),
    "finetune train lr 0": ([*FT, "--set", "lr=0"], ["lr", "'0'", "more than 0"]),
    "finetune train recipe epochs 0": ([*FT, "--set", "epochs=0"], ["epochs", "'0'"]),
    "finetune train unknown setting": ([*FT, "--set", "speed=3"], ["'speed'", "num_classes"]),
    "finetune train backend": (["finetune", "train", "--backend", "jax", "--data", "kaggle"],
                               ["'jax'", "torch, mxnet"]),
    "finetune train data not laid out": ([*FT], ["kaggle/train", "reorganize"]),
    "finetune predict batch size 0": (["finetune", "predict", "--backend", "torch", "--data", "kaggle", "--run",
                                       "ft", "--batch-size", "0"], ["--batch-size", "'0'"]),
    "finetune predict run is no run": (["finetune", "predict", "--backend", "torch", "--data", "kaggle", "--run",
                                        "adir"], ["'adir'", "not a run folder"]),
    "finetune convert garbage": (["finetune", "convert", "--from", "torch", "--to", "torch", "garbage.pth", "o.pth"],
                                 ["'garbage.pth'", "not a PyTorch checkpoint"]),
    "finetune convert backend": (["finetune", "convert", "--from", "jax", "--to", "torch", "garbage.pth", "o.pth"],
                                 ["'jax'", "torch, mxnet"]),
}


def test_the_table_is_large_and_covers_every_command():
    commands = {argv[0] if argv[0] not in ("finetune", "bench") else f"{argv[0]} {argv[1]}"
                for argv, _ in CASES.values()}
    assert len(CASES) >= 40
    assert {"train", "sample", "forward", "init", "convert", "specs", "differences", "parity", "report", "bench step",
            "bench gpu-check", "finetune reorganize", "finetune train", "finetune predict",
            "finetune convert"} <= commands


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_line_exit_2_and_changes_nothing(name, world, capsys, monkeypatch):
    argv, names = CASES[name]
    monkeypatch.chdir(world)
    monkeypatch.setattr(distributed.subprocess, "Popen", _no_worker)  # --nproc: refused before any starts
    before = snapshot(world)
    code, _, err = run_main(argv, capsys)
    lines = err.strip().splitlines()
    assert code == 2, (argv, err)
    assert len(lines) == 1, lines
    assert "Traceback" not in err and lines[0].startswith("ganparity")
    for text in names:
        assert text in lines[0], (text, lines[0])
    assert snapshot(world) == before  # no existing file changed, none left behind


def _no_worker(*args, **kwargs):
    raise AssertionError(f"a worker was started: {args[0]}")


# -- a corrupt checkpoint never loses a run ---------------------------------------------------------------


def assert_bit_identical(a: Path, b: Path) -> None:
    ma, wa, oa, pa = load_checkpoint(a / CHECKPOINT)
    mb, wb, ob, pb = load_checkpoint(b / CHECKPOINT)
    assert (ma["epoch"], ma["step"], ma["rng"]) == (mb["epoch"], mb["step"], mb["rng"])
    assert wa.keys() == wb.keys() and oa.keys() == ob.keys()
    for k in [*wa, *oa]:
        x, y = (wa | oa)[k], (wb | ob)[k]
        assert x.dtype == y.dtype and np.array_equal(x, y), k  # bit for bit, not within a tolerance
    np.testing.assert_array_equal(pa, pb)
    losses = [[json.loads(line)["loss_D"] for line in (d / "metrics.jsonl").read_text().splitlines()] for d in (a, b)]
    assert losses[0] == losses[1]


def warnings_in(err: str) -> list[str]:
    return [line for line in err.splitlines() if "warning" in line]


@pytest.mark.slow
def test_truncated_latest_checkpoint_resumes_from_the_previous(tmp_path, capsys):
    need("torch")
    train(tiny(tmp_path / "straight", epochs=3))
    train(tiny(tmp_path / "cut", epochs=2))
    record = json.loads((tmp_path / "cut" / RUN_JSON).read_text())
    assert [c["step"] for c in record["checkpoints"]] == [2, 4]
    assert sha256(tmp_path / "cut" / CHECKPOINT) == record["checkpoints"][-1]["sha256"]
    assert sha256(tmp_path / "cut" / PREVIOUS) == record["checkpoints"][-2]["sha256"]
    latest = (tmp_path / "cut" / CHECKPOINT).read_bytes()
    (tmp_path / "cut" / CHECKPOINT).write_bytes(latest[: len(latest) // 3])
    capsys.readouterr()
    res = train(tiny(tmp_path / "cut", epochs=3, resume=True))
    warned = warnings_in(capsys.readouterr().err)
    assert len(warned) == 1
    assert "checkpoint.npz is corrupt" in warned[0] and "damaged zip archive" in warned[0]
    assert "resuming from" in warned[0] and "checkpoint.prev.npz at step 2" in warned[0]
    assert "loses 2 steps (the latest was at step 4)" in warned[0]
    assert res.step == 6
    assert_bit_identical(tmp_path / "straight", tmp_path / "cut")


@pytest.mark.slow
def test_changed_checkpoint_fails_its_hash_and_resumes_from_the_previous(tmp_path, capsys):
    """A checkpoint that loads but is not the one written (here: another run's) is refused too."""
    need("torch")
    train(tiny(tmp_path / "straight", epochs=3))
    train(tiny(tmp_path / "run", epochs=2))
    train(tiny(tmp_path / "other", epochs=2, seed=7))
    shutil.copy(tmp_path / "other" / CHECKPOINT, tmp_path / "run" / CHECKPOINT)
    capsys.readouterr()
    code, _, err = run_main(["train", "--resume", "--out", str(tmp_path / "run"), "--epochs", "3"], capsys)
    assert code == 0
    warned = warnings_in(err)
    assert len(warned) == 1 and "sha256 does not match run.json" in warned[0] and "loses 2 steps" in warned[0]
    assert_bit_identical(tmp_path / "straight", tmp_path / "run")


@pytest.mark.slow
def test_sample_draws_from_the_previous_checkpoint_when_the_latest_is_corrupt(tmp_path, capsys):
    need("torch")
    train(tiny(tmp_path / "run", epochs=2))
    (tmp_path / "run" / CHECKPOINT).write_bytes(b"PK\x03\x04 truncated")
    code, out, err = run_main(["sample", "--run", str(tmp_path / "run"), "--n", "8"], capsys)
    assert code == 0 and "(step 2, epoch 1" in out
    assert len(err.strip().splitlines()) == 1 and "drawing from" in err


class _FullDisk:
    """A file whose writes fail with ENOSPC once `room` bytes are written: the disk filled up."""

    def __init__(self, f, room: int):
        self.f, self.room = f, room

    def write(self, data) -> int:
        if len(data) > self.room:
            self.f.write(bytes(data[: self.room]))
            self.room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.f.write(data)

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


@pytest.mark.slow
def test_a_full_disk_during_a_checkpoint_write_keeps_the_last_good_one(tmp_path, monkeypatch):
    need("torch")
    train(tiny(tmp_path / "straight", epochs=3))
    run = tmp_path / "run"
    real = files.open_stream
    armed = {"on": False}

    def open_stream(fd, path):
        f = real(fd, path)
        return _FullDisk(f, room=4000) if armed["on"] and path.name == CHECKPOINT else f

    def fill_the_disk(step, values):
        armed["on"] = step >= 3  # the write at the end of epoch 2 fails partway

    monkeypatch.setattr(files, "open_stream", open_stream)
    with pytest.raises(GanparityError) as e:
        train(tiny(run, epochs=3), on_step=fill_the_disk)
    msg = str(e.value)
    assert "No space left on device" in msg and f"'{run / CHECKPOINT}'" in msg
    assert "the last good checkpoint" in msg and "(step 2) is kept" in msg and "--resume" in msg
    meta, *_ = load_checkpoint(run / CHECKPOINT)  # intact and readable
    assert meta["step"] == 2
    record = json.loads((run / RUN_JSON).read_text())
    assert sha256(run / CHECKPOINT) in {c["sha256"] for c in record["checkpoints"]}
    assert not list(run.glob(".*.tmp")) and not (run / LOCK).exists()
    monkeypatch.setattr(files, "open_stream", real)  # space freed: the run goes on as if nothing happened
    train(tiny(run, epochs=3, resume=True))
    assert_bit_identical(tmp_path / "straight", run)


@pytest.mark.slow
def test_a_run_stopped_before_its_first_checkpoint_can_be_resumed(tmp_path, capsys):
    need("torch")
    train(tiny(tmp_path / "straight", epochs=2))

    def crash(step, values):
        raise SystemExit(9)  # dies in the first epoch, before any checkpoint

    with pytest.raises(SystemExit):
        train(tiny(tmp_path / "run", epochs=2), on_step=crash)
    assert (tmp_path / "run" / RUN_JSON).is_file() and not (tmp_path / "run" / CHECKPOINT).exists()
    train(tiny(tmp_path / "run", epochs=2, resume=True))
    assert "no checkpoint yet; starting from step 0" in capsys.readouterr().err
    assert_bit_identical(tmp_path / "straight", tmp_path / "run")


@pytest.mark.slow
def test_a_run_killed_while_its_first_checkpoint_was_renamed_into_place_can_be_resumed(tmp_path, monkeypatch,
                                                                                         capsys):
    """run.json records a checkpoint's hash just before the file is renamed into place: a kill in
    between leaves the first hash recorded and no checkpoint; --resume starts again from step 0."""
    need("torch")
    train(tiny(tmp_path / "straight", epochs=2))
    real = gan_run.save_checkpoint

    def killed_before_rename(run, *args):
        real(run, *args)
        (run.dir / CHECKPOINT).unlink()  # the state a kill between the record and the rename leaves
        raise SystemExit(9)

    monkeypatch.setattr(gan_run, "save_checkpoint", killed_before_rename)
    with pytest.raises(SystemExit):
        train(tiny(tmp_path / "run", epochs=2))
    monkeypatch.setattr(gan_run, "save_checkpoint", real)
    assert len(json.loads((tmp_path / "run" / RUN_JSON).read_text())["checkpoints"]) == 1
    train(tiny(tmp_path / "run", epochs=2, resume=True))
    assert "no checkpoint yet; starting from step 0" in capsys.readouterr().err
    assert_bit_identical(tmp_path / "straight", tmp_path / "run")


# -- one run directory, one writer ----------------------------------------------------------------------


@pytest.mark.slow
def test_a_second_writer_is_refused_and_the_lock_goes_with_its_holder(tmp_path, capsys):
    need("torch")
    train(tiny(tmp_path / "run", epochs=1))
    before = snapshot(tmp_path)
    with files.DirLock(tmp_path / "run" / LOCK, "run directory"):
        code, _, err = run_main(["train", "--resume", "--out", str(tmp_path / "run"), "--epochs", "2"], capsys)
        assert code == 2 and len(err.strip().splitlines()) == 1
        assert f"is in use by pid {os.getpid()}" in err and "one writer" in err
    assert snapshot(tmp_path) == before
    code, _, err = run_main(["train", "--resume", "--out", str(tmp_path / "run"), "--epochs", "2"], capsys)
    assert code == 0 and not (tmp_path / "run" / LOCK).exists()


@pytest.mark.slow
def test_kill_9_mid_run_resumes_bit_identically_and_leaves_no_stuck_lock(tmp_path, capsys):
    """A real `ganparity train` process: while it runs, a second one on its --out is refused; then
    it is killed with SIGKILL at whatever it was doing, and the resume ends where an uninterrupted
    run does, bit for bit."""
    need("torch")
    epochs, cfg = 12, dict(n_data=256)
    train(tiny(tmp_path / "straight", epochs=epochs, **cfg))
    run = tmp_path / "run"
    argv = ["train", "--spec", "dcgan", "--backend", "torch", *TINY, *RUN[:-2], "--n-data", "256",
            "--epochs", str(epochs), "--out", str(run)]
    root = Path(__file__).resolve().parents[1]
    import torch

    threads = str(torch.get_num_threads())  # the straight run's: another count sums in another order
    env = os.environ | {"PYTHONPATH": str(root), "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    proc = subprocess.Popen([sys.executable, "-m", "ganparity", *argv], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if json.loads((run / RUN_JSON).read_text()).get("checkpoints"):
                    os.kill(proc.pid, signal.SIGSTOP)  # frozen mid-run, wherever it was: it cannot finish first
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.01)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        code, _, err = run_main(["train", "--resume", "--out", str(run)], capsys)
        assert code == 2 and f"in use by pid {proc.pid}" in err and len(err.strip().splitlines()) == 1
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert (run / LOCK).exists()  # left behind by the dead process, and not stuck:
    res = train(TrainConfig(out=str(run), resume=True, progress=False))
    assert res.step == epochs * 16
    assert_bit_identical(tmp_path / "straight", run)


# -- resume keeps the run's settings ----------------------------------------------------------------------


@pytest.mark.slow
def test_resume_keeps_eval_samples_cadence_and_gif(tmp_path, capsys):
    need("torch")
    run = tmp_path / "run"
    start = ["train", "--spec", "dcgan", "--backend", "torch", *TINY, "--n-data", "32", "--batch-size", "16",
             "--progress", "lines", "--eval-samples", "12", "--sample-every", "2", "--seed", "3", "--no-gif"]
    assert main([*start, "--epochs", "2", "--out", str(run)]) == 0
    record = json.loads((run / RUN_JSON).read_text())
    assert (record["eval_samples"], record["sample_every"], record["seed"], record["gif"]) == (12, 2, 3, False)
    assert main(["train", "--resume", "--out", str(run), "--epochs", "4"]) == 0  # nothing but the override
    assert json.loads((run / "quality.json").read_text())["n"] == 12  # not the default 512
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["epoch_002.png", "epoch_004.png"]
    assert not (run / "progress.gif").exists()
    assert json.loads((run / RUN_JSON).read_text())["seed"] == 3
    # the same value given again is fine
    assert main(["train", "--resume", "--out", str(run), "--epochs", "4", "--eval-samples", "12", "--seed", "3"]) == 0


# -- outputs: read-only folders, one writer, non-finite outputs -----------------------------------------


def test_an_out_in_a_read_only_folder_is_refused_before_the_work(tmp_path, capsys, monkeypatch):
    """bench used to fail with a traceback after the whole benchmark had run; report, forward
    and init the same way. Now: one line before any work, nothing written."""
    from ganparity.benchmarks import harness

    from .test_files import simulate_read_only

    need("torch")
    ro = tmp_path / "ro"
    ro.mkdir()
    assert main(["init", *WEIGHTS, "--out", str(tmp_path / "g.npz")]) == 0
    np.save(tmp_path / "x.npy", np.zeros((2, 8, 1, 1), np.float32))
    simulate_read_only(monkeypatch, ro)

    def no_work(*args, **kwargs):
        raise AssertionError("the work started")

    monkeypatch.setattr(harness, "run_matrix", no_work)
    monkeypatch.setattr(report, "main_report", no_work)
    try:
        for argv in (["bench", "step", "--out", str(ro / "bench")], ["report", "--out", str(ro / "report")],
                     ["forward", *WEIGHTS, "--backend", "torch", "--net", "G", "--weights", str(tmp_path / "g.npz"),
                      "--input", str(tmp_path / "x.npy"), "--out", str(ro / "y.npy")],
                     ["init", *WEIGHTS, "--out", str(ro / "w.npz")], ["bench", "step", "--out", str(ro)]):
            code, _, err = run_main(argv, capsys)
            lines = err.strip().splitlines()
            assert code == 2 and len(lines) == 1, (argv, err)
            assert f"cannot write in {str(ro)!r} (Permission denied)" in lines[0], lines[0]
        assert os.listdir(ro) == []
    finally:
        ro.chmod(0o755)


def test_a_second_writer_of_one_output_is_refused(world, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(world)
    before = snapshot(world)
    with files.output_lock(world / "y.npy"):
        code, _, err = run_main([*G, "--input", "x.npy"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"--out 'y.npy' is in use by pid {os.getpid()}" in err and "one output has one writer" in err
    assert snapshot(world) == before


def test_forward_refuses_to_write_a_non_finite_output(tmp_path, capsys):
    """Finite weights and input whose product overflows float32: not written, and said so."""
    need("torch")
    w = tmp_path / "w.npz"
    assert main(["init", "--spec", "gan-gaussian", "--out", str(w)]) == 0
    arrays = dict(np.load(w))
    arrays["G.0.weight"][:] = 3e38
    np.savez(w, **arrays)
    np.save(tmp_path / "x.npy", np.full((2, 2), 3e38, np.float32))
    code, _, err = run_main(["forward", "--spec", "gan-gaussian", "--backend", "torch", "--net", "G", "--weights",
                             str(w), "--input", str(tmp_path / "x.npy"), "--out", str(tmp_path / "y.npy")], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "the output of torch G holds non-finite values" in err and "nothing was written" in err
    assert not (tmp_path / "y.npy").exists()


def test_sample_falls_back_from_a_checkpoint_with_nan_weights(tmp_path, capsys):
    """A checkpoint that loads but holds NaN weights is corrupt: the previous one is used, in one
    warning line that names the tensor."""
    need("torch")
    train(tiny(tmp_path / "run", epochs=2))
    ckpt = tmp_path / "run" / CHECKPOINT
    with np.load(ckpt) as z:
        payload = dict(z)
    payload["D.0.weight"].flat[0] = np.nan
    np.savez(ckpt, **payload)
    code, out, err = run_main(["sample", "--run", str(tmp_path / "run"), "--n", "8"], capsys)
    assert code == 0 and "(step 2, epoch 1" in out
    warned = warnings_in(err)
    assert len(warned) == 1 and "D.0.weight has 1 NaN" in warned[0] and "drawing from" in warned[0]


# -- self-checks and benchmarks that measured nothing fail --------------------------------------------


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


@pytest.mark.skipif(_has_cuda(), reason="a CUDA device is here")
def test_gpu_check_and_bench_without_a_cuda_device(tmp_path, capsys, monkeypatch):
    need("torch")
    monkeypatch.chdir(tmp_path)
    code, out, err = run_main(["bench", "gpu-check", "--backends", "torch"], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and out == ""
    assert lines[0].startswith("ganparity: error: gpu-check: no CUDA device to check") and "nothing was checked" in err
    assert "no CUDA device found" in lines[0] or "no CUDA support" in lines[0] or "driver" in lines[0]
    code, out, err = run_main(["bench", "step", "--device", "cuda", "--backends", "torch", "--out", "b"], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "bench --device cuda: no CUDA device to measure on" in lines[0]
    assert "nothing was run or written" in lines[0] and os.listdir(tmp_path) == []


def test_gpu_check_names_a_failing_driver(tmp_path, capsys, monkeypatch):
    """A GPU whose driver fails: nvidia-smi is there and cannot talk to it."""
    fake = tmp_path / "bin" / "nvidia-smi"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho \"NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA "
                    "driver. Make sure that the latest NVIDIA driver is installed and running.\"\nexit 9\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    code, _, err = run_main(["bench", "gpu-check"], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1
    assert "the NVIDIA driver fails: nvidia-smi exited 9 (NVIDIA-SMI has failed because it couldn't" in lines[0]


def test_a_self_check_that_checked_nothing_fails(capsys):
    need("torch")
    code, out, err = run_main(["bench", "gpu-check", "--device", "cpu", "--backends", "torch", "--variants",
                               "cuda-graph", "--no-train"], capsys)
    assert code == 2 and "0 passed, 0 failed, 1 skipped" in out
    assert err.strip() == ("ganparity: error: gpu-check checked nothing on cpu: every check was skipped: "
                           "torch/cuda-graph: CUDA only")


def test_a_bench_that_measured_nothing_fails_and_writes_nothing(tmp_path, capsys):
    need("torch")
    code, _, err = run_main(["bench", "step", "--spec", "gan-gaussian", "--backends", "torch", "--variants",
                             "cuda-graph", "--batch-sizes", "8", "--same-process", "--out", str(tmp_path / "b")],
                            capsys)
    lines = [line for line in err.strip().splitlines() if line.startswith("ganparity")]
    assert code == 2 and lines == ["ganparity: error: bench measured nothing: none of its 1 rows ran (skipped: CUDA "
                                   "only; device is cpu); nothing was written"]
    assert not (tmp_path / "b").exists()


# -- the mxnet engine never keeps a process from exiting ----------------------------------------------------

CUSTOM_OP = '''
import mxnet as mx
from mxnet import gluon


class Twice(mx.operator.CustomOp):
    def forward(self, is_train, req, in_data, out_data, aux):
        self.assign(out_data[0], req[0], in_data[0] * 2)

    def backward(self, req, out_grad, in_data, out_data, in_grad, aux):
        self.assign(in_grad[0], req[0], out_grad[0] * 2)


@mx.operator.register("ganparity_test_twice")
class TwiceProp(mx.operator.CustomOpProp):
    def __init__(self):
        super().__init__(need_top_grad=True)

    def list_arguments(self):
        return ["data"]

    def list_outputs(self):
        return ["output"]

    def infer_shape(self, in_shape):
        return in_shape, [in_shape[0]], []

    def create_operator(self, ctx, shapes, dtypes):
        return Twice()


class Net(gluon.HybridBlock):
    def __init__(self, **kw):
        super().__init__(**kw)
        with self.name_scope():
            self.fc = gluon.nn.Dense(4, in_units=6)

    def hybrid_forward(self, F, x):
        return F.Custom(self.fc(x), op_type="ganparity_test_twice")


def mlp():
    return Net()
'''
# What a refused `port` did before it raised: a forward queued and never read, the graph read
# through the symbol API, the parameters copied out. Without backends/mxnet/device.py
# drain_at_exit, 6 of 8 such processes hung at exit here (or aborted); with it, none.
QUEUED_THEN_REFUSED = '''
import sys
from ganparity.common.backend import get_backend
get_backend("mxnet")
import mxnet as mx
from mxnet import autograd
import gm
net = gm.mlp()
net.initialize()
with autograd.predict_mode():
    net(mx.nd.ones((2, 6)))
sym = net(mx.sym.var("data"))
sym.get_internals().infer_shape(data=(2, 6))
arrays = [p.data().asnumpy() for p in net.collect_params().values()]
print("ganparity: error: unsupported: the op Custom", file=sys.stderr)
sys.exit(2)
'''


@pytest.mark.slow
def test_a_python_custom_op_never_hangs_the_exit(tmp_path):
    need("mxnet")
    (tmp_path / "gm.py").write_text(CUSTOM_OP)
    (tmp_path / "refused.py").write_text(QUEUED_THEN_REFUSED)
    root = Path(__file__).resolve().parents[1]
    env = os.environ | {"PYTHONPATH": f"{root}{os.pathsep}{tmp_path}"}
    for _ in range(4):
        try:
            res = subprocess.run([sys.executable, "refused.py"], cwd=tmp_path, env=env, capture_output=True,
                                 text=True, timeout=90)
        except subprocess.TimeoutExpired:
            pytest.fail("the process hung at exit (MXNet's engine waiting on a CustomOp)")
        assert res.returncode == 2, res.stderr[-2000:]


@pytest.mark.slow
def test_port_of_a_block_with_a_python_custom_op_exits(tmp_path):
    """The user-facing case: `ganparity port` refuses the Custom op in one line, and exits."""
    need("mxnet")
    need("torch")
    (tmp_path / "gm.py").write_text(CUSTOM_OP)
    root = Path(__file__).resolve().parents[1]
    env = os.environ | {"PYTHONPATH": str(root)}
    for i in range(2):
        try:
            res = subprocess.run([sys.executable, "-m", "ganparity", "port", "--mxnet", "gm.py:mlp", "--input-shape",
                                  "2,6", "--out", f"out{i}"], cwd=tmp_path, env=env, capture_output=True, text=True,
                                 timeout=120)
        except subprocess.TimeoutExpired:
            pytest.fail("ganparity port hung at exit")
        lines = [x for x in res.stderr.strip().splitlines() if not x.startswith("ganparity: port: ")]  # progress
        assert res.returncode == 2 and len(lines) == 1 and "Custom" in lines[0], res.stderr[-2000:]
    assert sorted(os.listdir(tmp_path)) == ["gm.py"]
