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


@pytest.mark.slow
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
    # the peak is measured beside the row: a GEMM of the same framework, precision and threads
    assert row["peak_tflops"] > 0 and row["peak_precision"] == "fp32" and row["datasheet_peak_tflops"] is None
    assert row["fraction_of_peak"] == pytest.approx(row["tflops_achieved"] / row["peak_tflops"])
    assert ("torch.mm" if name == "torch" else "FullyConnected") in row["peak_how"]
    from ganparity.benchmarks.results import markdown

    table = markdown([row])
    assert "unknown peak" not in table and f"% of {row['peak_tflops']:.3g} fp32" in table


def test_hybridize_row_and_parity():
    """Native semantics: the hybridized graph follows MXNet's own BatchNorm statistics, so its parity
    check compares every tensor, running statistics included."""
    pytest.importorskip("mxnet")
    row = H.bench_row("dcgan", TINY, VARIANTS["mxnet"]["hybridize"], "cpu", 4, rounds=1, warmup=1, min_round_s=0,
                      source=False)
    assert row["status"] == "ok", row["reason"]
    assert row["semantics"] == "mxnet" and "refused" in row["arms"]["emulating"]
    assert "cannot run" in row["note"] and "running stats" not in row["parity"]["note"]


def _stats_after_one_step(be, spec, opts):
    from ganparity.common import parity

    state, _ = VariantRunner(be, spec, parity.make_inputs(spec, 4), opts).run_steps(1)
    return {k: v for k, v in state.items() if k.endswith(("running_mean", "running_var"))}


def test_hybridize_follows_mxnet_statistics_exactly():
    pytest.importorskip("mxnet")
    import numpy as np

    from ganparity.common.backend import get_backend

    be, spec = get_backend("mxnet"), get_spec("dcgan", **TINY, semantics="mxnet")
    eager, hybrid = (_stats_after_one_step(be, spec, o) for o in (frozenset(), frozenset({"hybridize"})))
    assert eager and eager.keys() == hybrid.keys()
    assert float(abs(eager["G.1.running_mean"]).max()) > 0  # they moved
    for k in eager:
        np.testing.assert_allclose(hybrid[k], eager[k], rtol=1e-5, atol=1e-7, err_msg=k)


def test_hybridize_refuses_emulated_statistics():
    """A hybridized graph runs no Python, so it cannot move the statistics PyTorch's way: a spec with
    PyTorch's BatchNorm semantics is refused in one line, never trained on other statistics."""
    pytest.importorskip("mxnet")
    from ganparity.common.backend import build_nets, get_backend

    be, spec = get_backend("mxnet"), get_spec("dcgan", **TINY)  # seed 001: PyTorch's semantics
    with pytest.raises(GanparityError, match="hybridize"):
        be.GANTrainer(spec, *build_nets(be, spec).values(), options={"hybridize"})
    row = H.bench_row("dcgan", TINY, VARIANTS["mxnet"]["hybridize"], "cpu", 4, rounds=1, warmup=1,
                      min_round_s=0, semantics="source", source=False, check=False)
    assert row["status"] == "refused" and "hybridize" in row["reason"] and "median_ms" not in row
    gaussian = get_spec("gan-gaussian")  # no BatchNorm: nothing to emulate, nothing refused
    be.GANTrainer(gaussian, *build_nets(be, gaussian).values(), options={"hybridize"})


@pytest.mark.slow
@pytest.mark.parametrize("name", ["torch", "mxnet"])
def test_row_has_three_arms_and_their_ratios(name):
    """Native step, the emulation of the other framework, the source loop: all timed in one run."""
    pytest.importorskip(name)
    knobs = dict(nz=8, ngf=4, ndf=4, image_size=64)  # the sources build 64x64 DCGANs
    row = H.bench_row("dcgan", knobs, VARIANTS[name][DEFAULT], "cpu", 2, rounds=2, warmup=1, min_round_s=0,
                      check=False, phases=False)
    assert row["status"] == "ok", row["reason"]
    arms = row["arms"]
    assert set(arms) == {"native", "emulating", "source"}
    assert arms["native"]["semantics"] == name == row["semantics"]
    assert arms["emulating"]["semantics"] == H.OTHER[name]
    assert row["median_ms"] == arms["native"]["median_ms"] and row["source_ms"] == arms["source"]["median_ms"]
    assert row["x_source"] == pytest.approx(row["median_ms"] / row["source_ms"])
    assert row["over_source_flag"] == (row["x_source"] > H.SOURCE_FLAG)
    assert row["emulation_cost"] == pytest.approx(arms["emulating"]["median_ms"] / arms["native"]["median_ms"] - 1)
    assert row["source_how"] in ("transcribed", "idiomatic")
    source = H.bench_row("dcgan", knobs, VARIANTS[name][DEFAULT], "cpu", 2, rounds=1, warmup=1, min_round_s=0,
                         check=False, phases=False, semantics="source")
    assert source["semantics"] == "torch"  # seed 001 is PyTorch's: the 'source' row reports its semantics


@pytest.mark.slow
def test_source_arm_refused_off_64px():
    """The sources' DCGANs are 64x64: at another size the row says why it has no source ratio."""
    pytest.importorskip("torch")
    row = H.bench_row("dcgan", TINY, VARIANTS["torch"][DEFAULT], "cpu", 2, rounds=1, warmup=1, min_round_s=0,
                      check=False, phases=False)
    assert row["status"] == "ok" and "x_source" not in row
    assert "64" in row["arms"]["source"]["refused"]


def test_interleaved_timing_rotates_the_arms():
    from ganparity.benchmarks.timing import time_interleaved

    calls = []
    arms = {n: (lambda n=n: calls.append(n) or n) for n in ("a", "b", "c")}
    out = time_interleaved(arms, lambda: None, rounds=3, warmup=1, min_round_s=0)
    assert set(out) == {"a", "b", "c"} and all(out[n]["last"] == n for n in out)
    timed = calls[3:]  # after one warm-up call each
    firsts = {timed[i] for i in range(0, len(timed), len(timed) // 3)}
    assert firsts == {"a", "b", "c"}  # each arm leads one round: no arm always runs cold or hot
    assert all(out[n]["p10_ms"] <= out[n]["median_ms"] <= out[n]["p90_ms"] for n in out)


def test_bf16_runs_the_emulated_statistics_too():
    """bf16 autocast on CPU through the BatchNorm that emulates MXNet's statistics (the bench row's
    emulating arm): CPU batch_norm refuses bf16 statistics beside float32 parameters."""
    pytest.importorskip("torch")
    import math

    from ganparity.common import parity
    from ganparity.common.backend import build_nets, get_backend

    be, spec = get_backend("torch"), get_spec("dcgan", **TINY, semantics="mxnet")
    inputs = parity.make_inputs(spec, 4)
    nets = build_nets(be, spec)
    out = be.GANTrainer(spec, nets["G"], nets["D"], options={"bf16"}).step(
        be.to_device(nets["D"], inputs.real[0]), be.to_device(nets["G"], inputs.noise[0]))
    assert all(math.isfinite(be.scalar(v)) for v in out.values())


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


@pytest.mark.slow
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


@pytest.mark.slow
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


def test_each_row_runs_in_a_fresh_process():
    """The harness's rows run in a new process each (a row's times depended on the rows before it)."""
    import os

    assert H.in_fresh_process(os.getpid) != os.getpid()
    assert H.in_fresh_process(sorted, [3, 1, 2], reverse=True) == [3, 2, 1]


def test_port_speed_goal_says_cannot_tell_inside_the_interval():
    """bench port-speed's verdict on the worst written/twin ratio: within x1.02 is 'yes'; beyond it
    with its 90% interval beyond it too is 'no'; beyond it with an interval that reaches it is
    'cannot tell'."""
    from ganparity.benchmarks.port_speed import goal_met

    assert goal_met({"worst": 1.01, "worst_ci": [0.9, 1.1]}) == "yes"
    assert goal_met({"worst": 1.08, "worst_ci": [1.05, 1.1]}) == "no (x1.080, 90% in x1.050-1.100)"
    assert goal_met({"worst": 1.03, "worst_ci": [1.01, 1.05]}).startswith("cannot tell (x1.030")


def test_port_speed_pairs_each_rounds_arms():
    """The written / twin ratio is the median of each round's own ratio: a machine whose speed moves
    by 1.5x between rounds hides a steady 3% difference from the ratio of the two medians (their
    p10-p90 ranges span +-20%), not from the paired rounds ('no', its interval at 1.03 exactly);
    two equal arms under the same drift are x1.000 ('yes'). One arm's rounds shifted by one (the
    pairing lost) cannot say 'no'."""
    from ganparity.benchmarks.port_speed import goal_met, paired

    speed = [1.0, 1.5, 1.0, 1.4, 1.1, 1.5, 1.0, 1.3, 1.2, 1.5, 1.0]
    twin = [100 * s for s in speed]
    slower = [103 * s for s in speed]
    ratio, low, high = paired(slower, twin)
    assert abs(ratio - 1.03) < 1e-12 and abs(low - 1.03) < 1e-12 and abs(high - 1.03) < 1e-12
    assert goal_met({"worst": ratio, "worst_ci": [low, high]}).startswith("no (x1.030")
    assert paired(twin, twin) == (1.0, 1.0, 1.0) and goal_met({"worst": 1.0, "worst_ci": [1.0, 1.0]}) == "yes"
    ratio, low, high = paired(slower[1:] + slower[:1], twin)
    assert low <= 1.02 < high and not goal_met({"worst": ratio, "worst_ci": [low, high]}).startswith("no")


def test_port_speed_rerun_keeps_the_tables_settings(tmp_path, monkeypatch):
    """--rerun measures models again into a committed table: with other settings than the table's
    it is refused in one line before anything is measured, naming each one that differs; without
    a table to measure into, too."""
    import argparse

    from ganparity.benchmarks import port_speed
    from ganparity.common.errors import GanparityError

    meta = {"shape": [4, 3, 224, 224], "rounds": 30, "layouts": ["contiguous", "channels_last"], "threads": 2}
    (tmp_path / "port-speed.json").write_text(json.dumps({"meta": meta, "rows": []}))
    monkeypatch.setattr(port_speed, "ROOT", tmp_path)
    real_run = port_speed.subprocess.run

    def run(cmd, *a, **k):
        assert "ganparity.benchmarks.port_speed" not in cmd, "measured before the check"
        return real_run(cmd, *a, **k)
    monkeypatch.setattr(port_speed.subprocess, "run", run)
    p = argparse.ArgumentParser()
    port_speed.add_arguments(p)
    with pytest.raises(GanparityError, match=r"^--rerun: benchmarks/results/port-speed.json was measured with "
                       r"rounds 30, not 7; threads 2, not 1 \(a rerun keeps its shape, rounds, layouts, threads\)$"):
        port_speed.run(p.parse_args(["--models", "vgg11_bn", "--rounds", "7", "--threads", "1", "--rerun",
                                     "--no-source"]))
    with pytest.raises(GanparityError, match=r"^--rerun: no table to measure into: benchmarks/results/other.json "):
        port_speed.run(p.parse_args(["--models", "vgg11_bn", "--rerun", "--stem", "other", "--no-source"]))


def test_port_speed_edit_of_the_written_model_keeps_its_result():
    """bench port-speed times the written mobilenet_v2_1_0 beside a copy edited in one place (its 1x1
    convolution head on the pooled 1x1 map as torchvision's nn.Linear) to name what its ratio to the
    twin comes from: the copy computes the same values from the same weights, the written model is
    left as it was; a weight copied wrongly would show in the output."""
    import torch
    from torch import nn

    from ganparity.common.backend import get_backend

    tb = get_backend("torch")
    torch.manual_seed(0)
    written = nn.Module()
    written.features = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU6(), nn.AdaptiveAvgPool2d(1))
    written.output = nn.Sequential(nn.Conv2d(8, 5, 1, bias=False), nn.Flatten())
    written.forward = lambda x: written.output(written.features(x))
    edited, what = tb.edit_written("mobilenet_v2_1_0", written)
    assert "nn.Linear" in what and isinstance(edited.output[1], nn.Linear)
    assert isinstance(written.output[0], nn.Conv2d)  # a copy was edited
    x = torch.randn(2, 3, 9, 11)
    with torch.no_grad():
        torch.testing.assert_close(edited.output(edited.features(x)), written(x), rtol=1e-6, atol=1e-6)
        edited.output[1].weight.mul_(-1)
        assert not torch.allclose(edited.output(edited.features(x)), written(x))
    assert tb.edit_written("resnet18_v1", written) is None


def test_port_speed_ports_in_a_child_and_says_why_it_failed(tmp_path):
    """bench port-speed runs `ganparity port` in a process of its own (the timing process holds only
    what it times); a port that fails is one line naming the model and the port's own last line."""
    from ganparity.benchmarks.port_speed import _port_in_child
    from ganparity.common.errors import GanparityError

    with pytest.raises(GanparityError, match=r"^port-speed nosuch_v9: `ganparity port` failed \(exit 2\): .*nosuch_v9"):
        _port_in_child("nosuch_v9", (1, 3, 32, 32), tmp_path / "out")


def test_port_speed_lists_each_replaced_row_under_the_rerun_that_replaced_it():
    """A table measured again twice: each rerun lists only the rows it replaced, each with the date
    of the run that measured it (a row a rerun wrote and a later rerun replaced: the first rerun's),
    and its own load average beside the first run's."""
    from ganparity.benchmarks.port_speed import markdown

    def row(model, slower, measured=None, replaced_by=None):
        arms = {f"{k} contiguous {m}": {"median_ms": 100 * f, "p10_ms": 90, "p90_ms": 110, "times_ms": [100 * f] * 5}
                for k, f in (("written", slower), ("twin", 1.0)) for m in ("train", "eval")}
        return {"model": model, "twin": "t", "gflops": {"written": 1, "twin": 1}, "same_network": True, "arms": arms,
                "difference": ""} | ({"measured": {"date": measured}} if measured else {}) | (
                    {"replaced_by": replaced_by} if replaced_by else {})

    first, second = "2026-01-02 10:00:00 UTC", "2026-01-02 11:00:00 UTC"
    meta = {"machine": "m", "threads": 2, "torch": "2", "shape": [1], "rounds": 5, "layouts": ["contiguous"],
            "command": "c", "date": "2026-01-02 09:00:00 UTC", "load_start": "0", "load_end": "0",
            "reruns": [{"models": ["a"], "date": first, "git_commit": "1" * 40, "command": "r1"},
                       {"models": ["a"], "date": second, "git_commit": "2" * 40, "command": "r2",
                        "load_start": "0.5", "load_end": "1.5"}]}
    data = {"meta": meta, "rows": [row("a", 1.0, second)],
            "earlier": [row("a", 1.10, meta["date"], first), row("a", 1.05, first, second)]}
    text = markdown(data)
    r1 = next(line for line in text.splitlines() if line.startswith("Rerun by `r1`"))
    r2 = next(line for line in text.splitlines() if line.startswith("Rerun by `r2`"))
    assert "a no (x1.100, 90% in x1.100-1.100) (2026-01-02 09:00:00 UTC)." in r1 and "x1.050" not in r1
    assert "a no (x1.050, 90% in x1.050-1.050) (2026-01-02 10:00:00 UTC)." in r2 and "x1.100" not in r2
    # each run's own load average: a rerun's, and the first run's left as it was
    assert "load average at the start 0.5, at the end 1.5" in r2 and "load average" not in r1
    assert text.rstrip().endswith("load average at the start 0, at the end 0).")
