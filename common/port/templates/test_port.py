"""The proof of this port against the Gluon block it came from (written by `ganparity port`).

It runs ganparity's public proof, ganparity.prove_port, on this folder: the weights that model.py's
load() gives against the Gluon block's own (port.json names its factory and parameters), every
layer in train and eval mode, the gradients, and the optimizer steps through model.py's own
make_optimizer and gluon_step, each row judged agree / differ / cannot tell here. Every row must
keep the verdict it had when the port was written (proof.json): a row that agreed must still
agree, and no row may differ. A row that could not tell is skipped, with its reason.
Skips when mxnet or ganparity is missing. Run: pytest test_port.py
"""

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("mxnet")
ganparity = pytest.importorskip("ganparity")

HERE = Path(__file__).resolve().parent
WRITTEN = {row["check"]: row for row in json.loads((HERE / "proof.json").read_text())["rows"]}


@pytest.fixture(scope="module")
def proof():
    return ganparity.prove_port(HERE)


@pytest.mark.parametrize("check", list(WRITTEN))
def test_each_row_keeps_its_verdict(proof, check):
    row = next((r for r in proof.rows if r.check == check), None)
    assert row is not None, f"{check}: no longer in the proof\n{proof.summary}"
    detail = f"{check}: {row.verdict}: {row.reason} (worst: {row.worst})\n{proof.summary}"
    if WRITTEN[check]["verdict"] == "cannot tell here":
        assert row.verdict != "differ", detail
        if row.verdict != "agree":
            pytest.skip(f"cannot tell here: {row.reason}; would tell with: {row.suggestion}")
    else:
        assert row.verdict == "agree", detail


def test_no_row_differs(proof):
    assert proof.verdict != "differ", proof.failures() + "\n" + proof.summary
