"""benchmarks/gpu_run.py, the one prepared GPU run: its dry run end to end on the CPU (every code path
the GPU run takes, so that the one GPU run cannot fail on a typo), and its pieces: the arms' order,
the plan and the budget, the goals, the train summary, MXNet's row, a part killed at its cap.
Behaviour only: no test asserts a timing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from ganparity.benchmarks import gpu_run as G
from ganparity.benchmarks.variants import VARIANTS
from ganparity.common import gpu
from ganparity.common.errors import GanparityError

ROOT = Path(__file__).resolve().parents[1]
CUDA_ONLY = {n for n, v in VARIANTS["torch"].items() if v.cuda_only}


def _dry_run(out: Path, *extra: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    door = [sys.executable, "-m", "ganparity", "bench", "gpu-run"]  # the parts: this module, each in its process
    return subprocess.run([*door, "--dry-run", "--out", str(out), *extra], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.slow
def test_the_dry_run_writes_every_part_row_and_goal(tmp_path):
    """The whole run at tiny widths on the CPU, as the GPU runs it (a process per part): three files
    under --out; every part done; every dcgan arm once, the CPU ones measured with their % of the
    GEMM peak measured beside them, the CUDA-only ones stopped at the device check; the train part's
    three rows; the goals written down and, off the GPU, never judged."""
    pytest.importorskip("torch")
    out = tmp_path / "out"
    proc = _dry_run(out)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == sorted(G.FILES)
    res = json.loads((out / "gpu_run.json").read_text())
    assert res["metadata"]["dry_run"] and res["metadata"]["device"] == "cpu"
    assert list(res["parts"]) == ["selfcheck", "peaks", "dcgan-b2", "train", "finetune"]
    assert all(p["status"] == "done" and p["done"] for p in res["parts"].values()), {
        k: p["status"] for k, p in res["parts"].items()}
    rows = res["parts"]["dcgan-b2"]["rows"]
    assert sorted(r["variant"] for r in rows) == sorted(G.arm_order())
    for r in rows:
        if r["variant"] in CUDA_ONLY:
            assert r["status"].startswith("needs cuda"), r
        elif G._compiles(r["variant"]):
            assert r["status"].startswith("skipped: --dry-run"), r
        else:
            assert r["status"] == "ok" and r["median_ms"] > 0 and r["finite"], r
            assert r["peak_tflops"] > 0 and r["fraction_of_peak"] > 0 and r["speedup_vs_source"] > 0
    by_name = {r["variant"]: r for r in rows}
    assert by_name["source"]["speedup_vs_source"] == 1.0 and "errD.item()" in by_name["source"]["note"]
    assert by_name["bf16"]["peak_precision"] == "bf16" and by_name["default"]["peak_precision"] == "fp32"
    train = {r["run"]: r for r in res["parts"]["train"]["rows"]}
    assert set(train) == {"train (prefetched)", "train (old way: --prefetch 0 --log-every 1)", "harness step"}
    assert all(r["status"] == "ok" and r["img_per_s"] > 0 for r in train.values()), train
    assert train["train (prefetched)"]["steps"] == 2 * 4
    peaks = res["parts"]["peaks"]["rows"]
    assert [p["precision"] for p in peaks] == ["fp32", "bf16"] and all(p["tflops"] > 0 for p in peaks)
    (ft,) = res["parts"]["finetune"]["rows"]
    assert ft["status"] == "ok" and ft["fraction_of_peak"] > 0
    checks = res["parts"]["selfcheck"]["rows"]
    assert {c["status"] for c in checks} == {"pass", "skipped"} and len(checks) >= 10
    assert [g["met"] for g in res["goals"]] == [None] * 4  # a dry run never passes a goal
    assert any("needs cuda" in u for u in res["unmeasured"])
    md = (out / "gpu_run.md").read_text()
    for heading in ("## Goals (issue 30)", "## GEMM peaks", "## dcgan, batch 2", "## `ganparity train` against",
                    "## resnet34-finetune", "## mxnet", "## Self-check", "## Not measured in this run"):
        assert heading in md, heading
    assert "% of " in md and "| fastest-cuda | bf16 | needs cuda" in md
    assert "part finetune: done" in (out / "gpu_run.log").read_text()
    assert "| dcgan b128: the fastest step |" in proc.stdout  # the summary ends the output


def test_arm_order_source_and_default_first_compile_last():
    order = G.arm_order()
    assert order[:3] == ["source", "default", "fastest-cuda"]
    compiled = [n for n in order if n != "source" and G._compiles(n)]
    assert compiled and order[-len(compiled):] == compiled and order[-1] == "compile-max-autotune"
    assert set(order) == {"source", *VARIANTS["torch"]}
    assert G.arm_order(["cuda-graph", "compile"]) == ["source", "default", "cuda-graph", "compile"]
    with pytest.raises(GanparityError, match="unknown torch variant 'turbo'"):
        G.arm_order(["turbo"])


def _args(*argv: str):
    return G.resolve_args(["--out", "unused", *argv])


def test_plan_and_its_defaults():
    a = _args()
    assert (a.device, a.budget_s, a.rounds, a.batch_sizes, a.train_batch, a.finetune_batch) == (
        "cuda", 450.0, 10, [128, 2048, 64], 128, 128)
    names = [p.name for p in G.plan(a)]
    assert names == ["selfcheck", "peaks", "dcgan-b128", "train", "dcgan-b2048", "dcgan-b64", "finetune",
                     "selfcheck-compile"]
    shares = sum(p.share for p in G.plan(a) if p.share < 1)
    assert shares < 0.95  # something is left for the compile checks
    dry = _args("--dry-run")
    assert (dry.device, dry.batch_sizes, dry.rounds) == ("cpu", [2], 2)
    assert "selfcheck-compile" not in [p.name for p in G.plan(dry)]
    assert [p.name for p in G.plan(_args("--only", "peaks,train"))] == ["peaks", "train"]
    with pytest.raises(GanparityError, match="unknown part 'warp'; valid: selfcheck"):
        G.plan(_args("--only", "warp"))
    assert G.main(["--out", "unused", "--variants", "nope"]) == 2


def test_a_spent_budget_skips_every_part_and_still_writes(tmp_path, capsys):
    """No part starts with less than its minimum left: each says 'skipped: time budget', and the
    files are written all the same."""
    rc = G.main(["--dry-run", "--out", str(tmp_path), "--budget-s", "3"])
    assert rc == 0
    res = json.loads((tmp_path / "gpu_run.json").read_text())
    assert {p["status"] for p in res["parts"].values()} == {"skipped: time budget"}
    assert all(g["text"] == "not measured" for g in res["goals"])
    assert "part dcgan-b2: skipped: time budget" in (tmp_path / "gpu_run.md").read_text()
    assert "skipped" in capsys.readouterr().out


def test_a_part_past_its_cap_is_killed_with_its_children(tmp_path):
    """stream() kills the whole process group at the timeout, a grandchild included."""
    marker = tmp_path / "alive"
    (tmp_path / "grandchild.py").write_text(
        f"import pathlib, time\ntime.sleep(3)\npathlib.Path({str(marker)!r}).touch()\n")
    (tmp_path / "child.py").write_text(f"import subprocess, sys, time\nsubprocess.Popen([sys.executable, "
                                       f"{str(tmp_path / 'grandchild.py')!r}])\nprint('started', flush=True)\n"
                                       "time.sleep(60)\n")
    lines = []
    t = time.perf_counter()
    rc, tail = G.stream([sys.executable, str(tmp_path / "child.py")], 1.5, "> ", lines.append)
    assert rc is None and time.perf_counter() - t < 20 and tail == ["started"] and lines == ["> started"]
    time.sleep(4)
    assert not marker.exists()  # the grandchild died with the group


def _result(device="cuda", dry=False, b128=(), b2048=(), train=()) -> dict:
    return {"metadata": {"device": device, "dry_run": dry},
            "parts": {"dcgan-b128": {"rows": list(b128)}, "dcgan-b2048": {"rows": list(b2048)},
                      "train": {"rows": list(train)}}}


def test_goals_judge_only_a_real_gpu_run():
    b128 = [{"variant": "source", "status": "ok", "median_ms": 7.8, "speedup_vs_source": 1.0},
            {"variant": "default", "status": "ok", "median_ms": 7.5, "speedup_vs_source": 1.04},
            {"variant": "fastest-cuda", "status": "ok", "median_ms": 2.0, "speedup_vs_source": 3.9},
            {"variant": "cuda-graph", "status": "failed: capture", "median_ms": None}]
    b2048 = [{"variant": "fastest-cuda", "status": "ok", "tflops_achieved": 202.0}]
    train = [{"run": "train (prefetched)", "status": "ok", "img_per_s": 15000.0},
             {"run": "harness step", "status": "ok", "img_per_s": 16000.0}]
    goals = G.goals(_result(b128=b128, b2048=b2048, train=train))
    assert [g["met"] for g in goals] == [True, True, False, True]
    assert goals[0]["text"] == "2.00 ms (fastest-cuda)" and goals[3]["text"].startswith("94%")
    assert [g["met"] for g in G.goals(_result(dry=True, b128=b128, b2048=b2048, train=train))] == [None] * 4
    assert [g["text"] for g in G.goals(_result())] == ["not measured"] * 4


def test_train_summary_leaves_out_the_first_window():
    metrics = [{"epoch": 1, "img_per_s": 100.0}] * 2 + [{"epoch": 1, "img_per_s": 1000.0}] * 2 + [
        {"epoch": 2, "img_per_s": 1000.0}] * 2 + [{"epoch": 2, "img_per_s": 500.0}] * 2
    s = G.train_summary(metrics, batch=10)
    assert s["windows"] == 4 and s["steps"] == 8
    assert s["img_per_s"] == pytest.approx(60 / (20 / 1000 + 20 / 1000 + 20 / 500))


def test_mxnet_row_says_why_there_is_no_gpu_number(monkeypatch):
    h100 = gpu.GPU(0, "NVIDIA H100 80GB HBM3", (9, 0), "580.159.04")
    monkeypatch.setattr(G, "is_installed", lambda name: False)
    row = G.mxnet_row("cuda", [h100])
    assert row["status"] == "unavailable" and "not installed" in row["reason"]
    assert "compute capability 9.0" in row["reason"] and "sm_86" in row["reason"]
    assert gpu.mxnet_191_refusal(gpu.GPU(0, "A100", (8, 0), "")) is None
    assert G.mxnet_row("cpu", [])["status"] == "not run"


@pytest.mark.slow
@pytest.mark.gpu
def test_the_gpu_run_on_cuda_at_tiny_widths(tmp_path):
    """On a CUDA machine: the dry run's sizes on the GPU, so every CUDA-only arm really runs (the CUDA
    graph captures, the pinned-memory feeder of `ganparity train --device cuda`)."""
    out = tmp_path / "out"
    proc = _dry_run(out, "--device", "cuda", "--only", "peaks,dcgan-b2,train", "--budget-s", "300")
    assert proc.returncode == 0, proc.stdout[-3000:]
    res = json.loads((out / "gpu_run.json").read_text())
    rows = {r["variant"]: r for r in res["parts"]["dcgan-b2"]["rows"]}
    for name in ("source", "default", "fastest-cuda", "cuda-graph", "cudnn-benchmark"):
        assert rows[name]["status"] == "ok" and rows[name]["finite"], rows[name]
    assert [p["precision"] for p in res["parts"]["peaks"]["rows"]] == ["fp32", "tf32", "bf16"]
    assert all(r["status"] == "ok" for r in res["parts"]["train"]["rows"])


def test_run_part_writes_its_file_even_when_the_part_fails(tmp_path, monkeypatch):
    def boom(a, sink):
        sink.row({"x": 1})
        raise RuntimeError("no device")

    monkeypatch.setitem(G.PARTS, "peaks", boom)
    a = SimpleNamespace(part="peaks", part_out=str(tmp_path / "p.json"))
    assert G.run_part(a) == 1
    data = json.loads((tmp_path / "p.json").read_text())
    assert data["done"] and data["rows"] == [{"x": 1}] and "RuntimeError: no device" in data["info"]["error"]


def test_a_compile_arm_is_timed_beside_the_source_and_default_steps(tmp_path, monkeypatch):
    """The torch.compile arms' path (a compile takes minutes on this CPU, so a cheap arm stands in for
    one): timed after the others are written, in rounds of its own with the source and default steps
    again, its speed-up from those rounds."""
    pytest.importorskip("torch")
    monkeypatch.setattr(G, "_compiles", lambda name: name == "fused-adam")
    a = SimpleNamespace(device="cpu", knobs=json.dumps(G.DRY_DCGAN), batch=2, variants="fused-adam", rounds=2,
                        min_round_s=0.0, part_budget_s=120.0, dry_run=False, with_compile=False)
    sink = G.Sink(tmp_path / "part.json", "dcgan")
    G.part_dcgan(a, sink)
    rows = {r["variant"]: r for r in json.loads((tmp_path / "part.json").read_text())["rows"]}
    assert list(rows) == ["source", "default", "fused-adam"]
    assert all(r["status"] == "ok" for r in rows.values()), rows
    late = rows["fused-adam"]
    assert late["set"].startswith("fused-adam with the source and default steps")
    assert set(late["same_rounds_ms"]) == {"source", "default"}
    assert late["speedup_vs_source"] == pytest.approx(late["same_rounds_ms"]["source"] / late["median_ms"])
    assert "same_rounds_ms" not in rows["default"] and rows["default"]["set"] == "plain"
