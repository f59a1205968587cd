"""The step-cost harness: FLOP counts, rows and metadata, skip reasons, bad names, the bench CLI.
Behaviour only; a benchmark records numbers, a test never asserts a timing."""

from __future__ import annotations

import importlib.util
import json

import pytest

from ganparity.benchmarks import harness as H
from ganparity.benchmarks.variants import DEFAULT, VARIANTS, VariantRunner, resolve_variants
from ganparity.common import flops
from ganparity.common.errors import GanparityError
from ganparity.common.spec.registry import get_spec

TINY = dict(nz=8, ngf=4, ndf=4, image_size=16)
META_KEYS = {"date", "git_commit", "command", "python", "platform", "numpy", "backend", "device",
             "device_name", "threads"}
ROW_KEYS = {"spec", "knobs", "backend", "variant", "device", "batch", "status", "median_ms", "p10_ms", "p90_ms",
            "img_per_s", "flops_per_step", "tflops_achieved", "peak_mem_bytes", "peak_mem_kind", "warmup_s",
            "phases_ms", "parity", "meta"}


def test_dcgan_flops_by_hand():
    spec = get_spec("dcgan")
    per = flops.per_layer(spec.G)
    # G.3: ConvTranspose2d(512, 256, 4, 2, 1) on 4x4: every input pixel scatters 4*4*256 MACs per channel.
    assert per["G.3"] == 2 * 512 * 4 * 4 * 256 * 4 * 4
    # D.0: Conv2d(3, 64, 4, 2, 1) on 64x64 -> 32x32 outputs, no bias.
    assert flops.per_layer(spec.D)["D.0"] == 2 * 3 * 4 * 4 * 64 * 32 * 32
    assert per["G.1"] == 4 * 512 * 4 * 4  # BatchNorm: 4 FLOPs per element
    # Radford's DCGAN at 64x64: ~0.21 GFLOP forward for each of G and D, per sample.
    assert 1.5e8 < flops.forward_flops(spec.G) < 3e8 and 1.5e8 < flops.forward_flops(spec.D) < 3e8
    assert flops.step_passes(spec) == {"G": 3, "D": 9}  # detached fake, fake reused in the G step
    assert 2e11 < flops.step_flops(spec, 128) < 5e11


def test_gaussian_recipe_passes():
    spec = get_spec("gan-gaussian")  # graph through G in the D step, regenerated fake
    assert flops.step_passes(spec) == {"G": 6, "D": 9}
    assert flops.forward_flops(spec.G) == 2 * 2 * 2 + 2


@pytest.mark.parametrize("name", ["torch", "mxnet"])
def test_row_has_numbers_and_metadata(name):
    pytest.importorskip(name)
    row = H.bench_row("dcgan", TINY, VARIANTS[name][DEFAULT], "cpu", 4, rounds=2, warmup=1, min_round_s=0)
    assert row["status"] == "ok", row["reason"]
    assert ROW_KEYS <= set(row) and META_KEYS <= set(row["meta"])
    assert row["meta"][name]  # the framework's version
    assert row["p10_ms"] <= row["median_ms"] <= row["p90_ms"] and row["finite"]
    assert row["flops_per_step"] == flops.step_flops(get_spec("dcgan", **TINY), 4)
    assert row["parity"]["ok"], row["parity"]
    assert row["peak_tflops"] is None  # no known CPU peak


def test_hybridize_row_and_parity():
    pytest.importorskip("mxnet")
    row = H.bench_row("dcgan", TINY, VARIANTS["mxnet"]["hybridize"], "cpu", 4, rounds=1, warmup=1, min_round_s=0)
    assert row["status"] == "ok", row["reason"]
    assert "running stats" in row["note"] and "running stats" in row["parity"]["note"]


def test_hybridize_leaves_running_stats():
    """The documented caveat: hooks do not run in a hybridized graph, so running stats stay put."""
    pytest.importorskip("mxnet")
    from ganparity.common import parity
    from ganparity.common.backend import get_backend

    be, spec = get_backend("mxnet"), get_spec("dcgan", **TINY)
    inputs = parity.make_inputs(spec, 4)
    moved = {}
    for opts in (frozenset(), frozenset({"hybridize"})):
        state, _ = VariantRunner(be, spec, inputs, opts).run_steps(1)
        moved[opts] = float(abs(state["G.1.running_mean"]).max())
    assert moved[frozenset()] > 0 and moved[frozenset({"hybridize"})] == 0


def test_cuda_only_variant_skipped_on_cpu():
    row = H.bench_row("gan-gaussian", {}, VARIANTS["torch"]["cuda-graph"], "cpu", 8)
    assert row["status"] == "skipped" and "CUDA only" in row["reason"] and "median_ms" not in row
    assert META_KEYS <= set(row["meta"])


def test_mxnet_refusal_is_a_row(monkeypatch):
    pytest.importorskip("mxnet")
    from ganparity.common.backend import get_backend

    be = get_backend("mxnet")

    def refuse(device):
        raise GanparityError("MXNet 1.9.1 cannot run on GPU 0 (NVIDIA H100, compute capability 9.0)")

    monkeypatch.setattr(be, "resolve", refuse)
    row = H.bench_row("gan-gaussian", {}, VARIANTS["mxnet"][DEFAULT], "cuda", 8)
    assert row["status"] == "unavailable" and "compute capability 9.0" in row["reason"]


def test_bad_names_list_valid_choices():
    with pytest.raises(GanparityError, match="unknown variant 'turbo'; valid: all, default"):
        resolve_variants(["turbo"], ["torch", "mxnet"])
    with pytest.raises(GanparityError, match="unknown spec 'biggan'; valid: gan-gaussian"):
        H.run_matrix(["biggan"], {}, ["torch"], "cpu", [8], [DEFAULT])
    with pytest.raises(GanparityError, match="valid: torch, mxnet"):
        resolve_variants([DEFAULT], ["jax"])


def test_trainer_rejects_unknown_option():
    pytest.importorskip("torch")
    from ganparity.common.backend import build_nets, get_backend

    be, spec = get_backend("torch"), get_spec("gan-gaussian")
    with pytest.raises(GanparityError, match="valid: channels_last"):
        be.GANTrainer(spec, *build_nets(be, spec).values(), options={"warp"})


def test_bench_cli_writes_files(tmp_path, capsys):
    pytest.importorskip("torch")
    from ganparity.common.cli import main

    rc = main(["bench", "--spec", "gan-gaussian", "--backends", "torch", "--batch-sizes", "8",
               "--variants", "default,cuda-graph", "--rounds", "2", "--warmup", "1", "--out", str(tmp_path)])
    assert rc == 0
    data = json.loads((tmp_path / "results.json").read_text())
    assert [r["status"] for r in data["rows"]] == ["ok", "skipped"] and data["metadata"]["git_commit"] is not None
    assert "| gan-gaussian | torch | default |" in (tmp_path / "results.md").read_text()
    assert (tmp_path / "results.png").stat().st_size > 0
    assert main(["bench", "--variants", "nope", "--out", str(tmp_path)]) == 2
    assert "unknown variant 'nope'; valid:" in capsys.readouterr().err


def test_finetune_step_rows(tmp_path):
    """The dog-breed fine-tune step (frozen backbone) in the same harness: a row per backend."""
    from ganparity.common import flops
    from ganparity.common.spec.registry import get_spec

    knobs = dict(width=4, blocks=1, image_size=32, num_classes=3, hidden=8)
    spec = get_spec("resnet34-finetune", **knobs)
    backbone, head = flops.forward_flops(spec.backbone), flops.forward_flops(spec.head)
    assert flops.finetune_step_flops(spec, 2) == 2 * (backbone + 3 * head)  # frozen: backbone forward only
    full = get_spec("resnet34-finetune")
    assert 7.2e9 < flops.forward_flops(full.backbone) < 7.5e9  # ResNet-34 at 224: 3.6 GMAC
    installed = [b for b in ("torch", "mxnet") if importlib.util.find_spec(b)]
    rows = H.run_matrix(["resnet34-finetune"], knobs, installed, "cpu", [2], [DEFAULT], rounds=2, warmup=1)
    assert [r["backend"] for r in rows] == installed
    for r in rows:
        assert r["status"] == "ok" and r["median_ms"] > 0 and r["finite"]
        assert r["flops_per_step"] == flops.finetune_step_flops(spec, 2)
        assert {r["backend"], "numpy", "threads", "date", "git_commit"} <= set(r["meta"])
