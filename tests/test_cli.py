"""The ganparity command: help on every subcommand, one-line errors, the porting commands."""

import subprocess
import sys

import numpy as np
import pytest

from ganparity.common.cli import build_parser, main

from .conftest import need, parse_source

SUBCOMMANDS = ["specs", "differences", "init", "forward", "convert", "parity", "report", "train", "sample", "bench",
               "bench step", "bench scaling", "bench zoo", "bench port-cost", "bench port-speed", "bench gpu-check",
               "bench gpu-run", "finetune", "compare",
               "port", "docs"]


def run(*args):
    return subprocess.run([sys.executable, "-m", "ganparity", *args], capture_output=True, text=True)


@pytest.mark.parametrize("sub", SUBCOMMANDS)
def test_every_subcommand_has_help(sub, capsys):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args([*sub.split(), "--help"])
    assert e.value.code == 0
    assert "usage: ganparity " + sub in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["specs", "wgan"], "unknown spec 'wgan'; valid: gan-gaussian, dcgan, dcgan-d2l, dcgan-gluon, resnet34-finetune"),
    (["init", "--spec", "resnet34-finetune", "--out", "w.npz"],
     "unknown GAN spec 'resnet34-finetune'; valid: gan-gaussian, dcgan, dcgan-d2l, dcgan-gluon"),
    (["specs", "dcgan", "--set", "image_size=48"],
     "dcgan: G's last layer G.10 outputs (3, 32, 32) but D takes (3, 48, 48)"),
    (["specs", "dcgan", "--set", "ngf"], "--set takes KEY=VALUE, got 'ngf'"),
    (["parity", "--backends", "torch,jax"], "unknown backend 'jax'; valid: torch, mxnet"),
    (["bench", "port-speed", "--models", "resnet99_v1"], "unknown model 'resnet99_v1'; valid: resnet18_v1, "
     "resnet34_v1, resnet50_v1, mobilenet_v2_1_0, densenet121, densenet169, vgg11_bn, vgg16_bn"),
    (["bench", "port-speed", "--layouts", "nhwc"], "unknown layout 'nhwc'; valid: contiguous, channels_last"),
    (["bench", "port-cost", "--cases", "densenet121"], "--cases 'densenet121': expected MODEL@NxCxHxW, "
     "e.g. densenet121@2x3x224x224"),
    (["bench", "port-cost", "--semantics", "gluon"], "unknown semantics 'gluon'; valid: torch, mxnet"),
    (["bench", "port-cost", "--steps", "two"], "--steps 'two': expected a comma list of whole numbers >= 0, e.g. 2,1"),
])
def test_bad_input_is_one_line_without_traceback(args, message):
    out = run(*args)
    assert out.returncode == 2
    assert out.stderr.strip() == f"ganparity: error: {message}"
    assert "Traceback" not in out.stderr


def test_specs_prints_the_porting_table(capsys):
    assert main(["specs", "dcgan-d2l"]) == 0
    text = capsys.readouterr().out
    assert "nn.BatchNorm2d(512, eps=0.8)" in text  # BatchNorm2d(c, 0.8) as the source wrote it
    assert "nn.BatchNorm(momentum=0.9, epsilon=0.8, in_channels=512)" in text
    assert "3,576,704 parameters" in text


def test_specs_opens_up_the_resnet(capsys):
    assert main(["specs", "resnet34-finetune"]) == 0
    text = capsys.readouterr().out
    assert "### backbone: input (3, 224, 224), 21,284,672 parameters" in text
    assert "| backbone.5.0.downsample.0 | (128, 28, 28) | 8,192 | nn.Conv2d(64, 128, 1, 2, 0, bias=False) |" in text
    assert "| backbone.4.0 (sum) | (64, 56, 56) | 0 | relu(body(x) + x) |" in text
    assert "### head: input (512,), 162,168 parameters" in text


def test_init_forward_and_weights_checks(tmp_path, backend, capsys):
    w = tmp_path / "w.npz"
    assert main(["init", "--spec", "dcgan", "--set", "ngf=4", "--set", "ndf=4", "--seed", "1", "--out", str(w)]) == 0
    x = tmp_path / "x.npy"
    np.save(x, np.random.default_rng(0).standard_normal((2, 100, 1, 1)).astype(np.float32))
    y = tmp_path / "y.npy"
    args = ["forward", "--spec", "dcgan", "--set", "ngf=4", "--set", "ndf=4", "--backend", backend.NAME,
            "--weights", str(w), "--net", "G", "--input", str(x), "--out", str(y)]
    assert main(args) == 0
    assert np.load(y).shape == (2, 3, 64, 64)
    # the same weights against the full-width spec are refused before any work, naming offenders
    assert main(["forward", "--spec", "dcgan", "--backend", backend.NAME, "--weights", str(w), "--net", "G",
                 "--input", str(x), "--out", str(y)]) == 2
    assert "G.0.weight has shape (100, 32, 4, 4), spec dcgan needs (100, 512, 4, 4)" in capsys.readouterr().err


def test_forward_outputs_agree_across_backends(tmp_path, both):
    w, x = tmp_path / "w.npz", tmp_path / "x.npy"
    main(["init", "--spec", "dcgan-d2l", "--set", "ngf=4", "--set", "ndf=4", "--out", str(w)])
    np.save(x, np.random.default_rng(0).uniform(-1, 1, (3, 3, 64, 64)).astype(np.float32))
    outs = []
    for b in ("torch", "mxnet"):
        y = tmp_path / f"{b}.npy"
        main(["forward", "--spec", "dcgan-d2l", "--set", "ngf=4", "--set", "ndf=4", "--backend", b, "--weights", str(w),
              "--net", "D", "--input", str(x), "--out", str(y), "--mode", "train"])
        outs.append(np.load(y))
    np.testing.assert_allclose(outs[0], outs[1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("src, dst", [("torch", "mxnet"), ("mxnet", "torch")])
def test_convert_native_checkpoints(tmp_path, src, dst, capsys):
    a, b = need(src), need(dst)
    from ganparity.common import weights as W
    from ganparity.common.spec.registry import get_spec

    spec = get_spec("dcgan", ngf=4, ndf=4)
    arrays = W.init_arrays(spec, 5)
    nets = {}
    for n, m in spec.nets.items():
        nets[n] = (a.build(m), m)
        a.set_arrays(nets[n][0], m, W.split(arrays, n))
    src_path = a.save_native(tmp_path / f"ckpt{a.SUFFIX}", nets)
    out_path = tmp_path / f"out{b.SUFFIX}"
    assert main(["convert", "--spec", "dcgan", "--set", "ngf=4", "--set", "ndf=4", "--from", src, "--to", dst,
                 str(src_path), str(out_path)]) == 0
    assert "verified" in capsys.readouterr().out
    back = b.load_native(out_path, spec.nets)
    assert all(np.array_equal(back[k], arrays[k]) for k in arrays)


def test_convert_refuses_a_foreign_file(tmp_path, both, capsys):
    bad = tmp_path / "x.pt"
    bad.write_bytes(b"nonsense")
    assert main(["convert", "--spec", "dcgan", "--from", "torch", "--to", "mxnet", str(bad), str(tmp_path / "o")]) == 2
    assert "is not a PyTorch checkpoint" in capsys.readouterr().err


@pytest.mark.parametrize("old, new, note", [
    (["porting", "dcgan"], ["differences", "dcgan"], "ganparity porting is deprecated; use ganparity differences"),
    (["gpu-check", "--no-train"], ["bench", "gpu-check", "--no-train"],
     "ganparity gpu-check is deprecated; use ganparity bench gpu-check"),
    (["bench", "--rounds", "3"], ["bench", "step", "--rounds", "3"],
     "ganparity bench without a sub-command is deprecated; use ganparity bench step"),
    (["bench"], ["bench", "step"], "ganparity bench without a sub-command is deprecated; use ganparity bench step"),
])
def test_old_command_names_work_for_one_release_with_one_note(old, new, note, capsys):
    from ganparity.common.cli.main import renamed

    assert renamed(old) == new
    assert capsys.readouterr().err == f"ganparity: note: {note}\n"
    assert renamed(new) == new and capsys.readouterr().err == ""  # the new words say nothing


@pytest.mark.parametrize("argv, dest, value, note", [
    (["bench", "step", "--semantics", "native"], "semantics", "own", "--semantics native is deprecated; use "
                                                                     "--semantics own"),
    (["bench", "step", "--semantics", "faithful"], "semantics", "source", "--semantics faithful is deprecated; use "
                                                                          "--semantics source"),
    (["parity", "--native"], "semantics", "own", "--native is deprecated; use --semantics own"),
    (["bench", "zoo", "--trainer", "adam:lr=0.1"], "optimizer", "adam:lr=0.1",
     "--trainer is deprecated; use --optimizer"),
])
def test_old_flags_work_for_one_release_with_one_note(argv, dest, value, note, capsys):
    assert getattr(build_parser().parse_args(argv), dest) == value
    assert capsys.readouterr().err == f"ganparity: note: {note}\n"


def test_one_word_for_whose_numbers_a_step_follows():
    """`--semantics` everywhere, torch | mxnet, and where a command compares each backend in its own
    framework's semantics with the spec's, the two relative values own | source."""
    parser = build_parser()
    for argv, valid in ((["bench", "step"], {"own", "source", "torch", "mxnet"}),
                        (["parity"], {"own", "source", "torch", "mxnet"})):
        for v in valid:
            assert parser.parse_args([*argv, "--semantics", v]).semantics == v
    assert parser.parse_args(["port", "--mxnet", "m:f", "--input-shape", "1,2", "--out", "o", "--semantics",
                              "mxnet"]).semantics == "mxnet"


def test_the_gpu_check_trains_through_the_training_function(tmp_path, monkeypatch):
    """The self-check's training run is common/gan/loop.py train with a TrainConfig, not the command
    line parsed again (no import of the CLI's main from the benchmarks or the bench command)."""
    import ast
    from pathlib import Path

    from ganparity.benchmarks import selfcheck
    from ganparity.common.gan import loop

    seen = []

    def fake_train(cfg):
        seen.append(cfg)
        (Path(cfg.out) / "checkpoint.npz").parent.mkdir(parents=True, exist_ok=True)
        (Path(cfg.out) / "checkpoint.npz").write_bytes(b"")
        return loop.RunResult(Path(cfg.out), epochs_done=1, step=4)

    monkeypatch.setattr(loop, "train", fake_train)
    selfcheck.train_tiny("torch", "cpu", tmp_path / "run")
    [cfg] = seen
    assert (cfg.spec, cfg.backend, cfg.device, cfg.epochs, cfg.knobs) == ("dcgan", "torch", "cpu", 1, selfcheck.TINY)
    root = Path(__file__).resolve().parents[1]
    for f in (root / "common" / "cli" / "bench.py", root / "benchmarks" / "selfcheck.py"):
        imported = {a.name for n in ast.walk(parse_source(f)) if isinstance(n, ast.ImportFrom)
                    for a in n.names}
        assert "main" not in imported, f
