"""`ganparity report` and `ganparity parity` end to end (small settings)."""

import json

import pytest

from ganparity.common.cli import main, report


def test_parity_command_writes_json(tmp_path, both, capsys):
    out = tmp_path / "parity.json"
    code = main(["parity", "--spec", "gan-gaussian", "--steps", "3", "--json", str(out)])
    text = capsys.readouterr().out
    assert code == 0
    assert "| gan-gaussian | torch | one step | pass |" in text
    rows = json.loads(out.read_text())
    assert {r["check"] for r in rows} >= {"forward G train", "gradients D", "one step", "lockstep 3 steps"}
    assert all(r["ok"] for r in rows)


def test_parity_under_the_other_semantics_and_natively(both, capsys):
    """--set semantics=mxnet runs the spec with MXNet's numbers (torch emulates them); --native has
    the candidate port naively: dcgan-gluon's Gluon numbers computed by mxnet while the torch
    reference follows the spec (semantics=torch) show what porting natively changes."""
    assert main(["parity", "--spec", "gan-gaussian", "--steps", "3", "--set", "semantics=mxnet"]) == 0
    assert "| gan-gaussian | mxnet | one step | pass |" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        main(["parity", "--spec", "dcgan-gluon", "--set", "semantics=torch", "--native", "--steps", "2",
              "--set", "nz=8", "--set", "ngf=4", "--set", "ndf=4", "--set", "image_size=16", "--no-fp64"])
    text = capsys.readouterr().out
    assert e.value.code == 1
    assert "| dcgan-gluon | torch; candidate native: adam-betas, adam-eps, bce-clamp, bn-stats" in text
    assert "| one step | FAIL |" in text


def test_report_covers_every_spec_and_backend(tmp_path, both, monkeypatch):
    small = dict(nz=8, ngf=4, ndf=4, image_size=16)
    monkeypatch.setattr(report, "PARITY_KNOBS", {k: ({} if k == "gan-gaussian" else small)
                                                 for k in report.PARITY_KNOBS})
    from ganparity.common.cli import distributed

    monkeypatch.setattr(distributed, "PARITY_CHECKS", distributed.PARITY_CHECKS[2:3])  # torch DDP vs mxnet kvstore
    results = report.main_report(tmp_path, ["torch", "mxnet"], steps=3)
    assert {(r["spec"], r["backend"]) for r in results["shapes"]} == {
        (s, b) for s in ("gan-gaussian", "dcgan", "dcgan-d2l", "dcgan-gluon") for b in ("torch", "mxnet")}
    assert all(r["ok"] for r in results["shapes"])
    assert {c["spec"] for c in results["parity"]} == {"gan-gaussian", "dcgan", "dcgan-d2l", "dcgan-gluon"}
    md = (tmp_path / "report.md").read_text()
    assert "## Shape parity" in md and "## Numerical parity" in md and "## Data-parallel parity" in md
    [dp] = results["data_parallel"]
    assert dp["ok"] and dp["weights"] < distributed.PARITY_ATOL, dp
    assert f"| torch DDP 2 workers vs mxnet dist_sync 2 workers; gan-gaussian, same numpy weights and data | " \
           f"{dp['weights']:.1e} |" in md
    assert (tmp_path / "lockstep.png").stat().st_size > 10_000
    assert json.loads((tmp_path / "results.json").read_text())["environment"]["mxnet"] == "1.9.1"


def test_report_with_one_backend_skips_parity(tmp_path, backend, monkeypatch):
    monkeypatch.setattr(report, "DATA_PARALLEL", False)
    results = report.main_report(tmp_path, [backend.NAME], steps=2)
    assert results["parity"] == [] and len(results["shapes"]) == 4


@pytest.mark.parametrize("bad", ["torch", "torch,mxnet,torch"])
def test_parity_needs_two_backends(bad, capsys):
    assert main(["parity", "--backends", bad]) == 2
    assert "--backends takes two names" in capsys.readouterr().err
