"""`ganparity report` and `ganparity parity` end to end (small settings)."""

import json

import pytest

from ganparity.common.cli import main
from ganparity.common.cli import report as cli_report
from ganparity.common.report import data_parallel
from ganparity.common.report import parity as report_parity
from ganparity.common.report import write as report_write


def test_parity_command_writes_json(tmp_path, both, capsys):
    out = tmp_path / "parity.json"
    code = main(["parity", "--spec", "gan-gaussian", "--steps", "3", "--json", str(out)])
    text = capsys.readouterr().out
    assert code == 0
    assert "| gan-gaussian | torch | one step | agree |" in text
    rows = json.loads(out.read_text())
    assert {r["check"] for r in rows} >= {"forward G train", "gradients D", "one step", "lockstep 3 steps"}
    assert all(r["ok"] for r in rows)


def test_parity_under_the_other_semantics_and_natively(both, capsys):
    """--semantics mxnet (or --set semantics=mxnet) runs the spec with MXNet's numbers (torch emulates
    them); --semantics own runs each backend in its own framework's: dcgan-gluon's Gluon numbers
    computed by mxnet while the torch reference follows PyTorch's show what porting natively changes."""
    for how in (["--semantics", "mxnet"], ["--set", "semantics=mxnet"]):
        assert main(["parity", "--spec", "gan-gaussian", "--steps", "3", *how]) == 0
        assert "| gan-gaussian | mxnet | one step | agree |" in capsys.readouterr().out
    small = ["--steps", "2", "--set", "nz=8", "--set", "ngf=4", "--set", "ndf=4", "--set", "image_size=16", "--no-fp64"]
    with pytest.raises(SystemExit) as e:
        main(["parity", "--spec", "dcgan-gluon", "--semantics", "own", *small])
    captured = capsys.readouterr()
    assert e.value.code == 1
    assert "| dcgan-gluon | torch; candidate's own: adam-betas, adam-eps, bce-clamp, bn-stats" in captured.out
    assert "| one step | differ |" in captured.out
    assert "ganparity: note" not in captured.err


def test_parity_accepts_the_old_native_flag_for_one_release(capsys):
    """--native is --semantics own, with one line saying so; a --semantics that contradicts --set
    semantics=... is one line too."""
    from ganparity.common.cli import build_parser

    assert build_parser().parse_args(["parity", "--native"]).semantics == "own"
    assert capsys.readouterr().err == "ganparity: note: --native is deprecated; use --semantics own\n"
    assert main(["parity", "--spec", "gan-gaussian", "--semantics", "own", "--set", "semantics=mxnet"]) == 2
    assert "--semantics own and --set semantics=mxnet disagree" in capsys.readouterr().err


@pytest.mark.slow
def test_report_covers_every_spec_and_backend(tmp_path, both, monkeypatch):
    small = dict(nz=8, ngf=4, ndf=4, image_size=16)
    monkeypatch.setattr(report_parity, "PARITY_KNOBS", {k: ({} if k == "gan-gaussian" else small)
                                                        for k in report_parity.PARITY_KNOBS})
    # torch DDP vs mxnet kvstore
    monkeypatch.setattr(data_parallel, "PARITY_CHECKS", data_parallel.PARITY_CHECKS[2:3])
    results = cli_report.main_report(tmp_path, ["torch", "mxnet"], steps=3)
    assert {(r["spec"], r["backend"]) for r in results["shapes"]} == {
        (s, b) for s in ("gan-gaussian", "dcgan", "dcgan-d2l", "dcgan-gluon") for b in ("torch", "mxnet")}
    assert all(r["ok"] for r in results["shapes"])
    assert {c["spec"] for c in results["parity"]} == {"gan-gaussian", "dcgan", "dcgan-d2l", "dcgan-gluon"}
    md = (tmp_path / "report.md").read_text()
    assert "## Shape parity" in md and "## Numerical parity" in md and "## Data-parallel parity" in md
    [dp] = results["data_parallel"]
    assert dp["ok"] and dp["weights"] < data_parallel.PARITY_ATOL, dp
    assert f"| torch DDP 2 workers vs mxnet dist_sync 2 workers; gan-gaussian, same numpy weights and data | " \
           f"{dp['weights']:.1e} |" in md
    assert (tmp_path / "lockstep.png").stat().st_size > 10_000
    assert json.loads((tmp_path / "results.json").read_text())["environment"]["mxnet"] == "1.9.1"


@pytest.mark.slow
def test_report_with_one_backend_skips_parity(tmp_path, backend, monkeypatch):
    monkeypatch.setattr(report_write, "DATA_PARALLEL", False)
    results = cli_report.main_report(tmp_path, [backend.NAME], steps=2)
    assert results["parity"] == [] and len(results["shapes"]) == 4


@pytest.mark.parametrize("bad", ["torch", "torch,mxnet,torch"])
def test_parity_needs_two_backends(bad, capsys):
    assert main(["parity", "--backends", bad]) == 2
    assert "--backends takes two names" in capsys.readouterr().err
