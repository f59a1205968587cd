"""docs/differences.md (the differences sheet, once the porting sheet) is generated from the code and
must stay in sync with it."""

from pathlib import Path

from ganparity.common.sheets import differences_sheet

DOC = Path(__file__).resolve().parents[1] / "docs" / "differences.md"


def test_differences_sheet_is_in_sync():
    assert DOC.read_text() == differences_sheet(), "run: ganparity docs"


def test_sheet_lists_every_difference_and_spec():
    from ganparity.common.differences import DIFFERENCES
    from ganparity.common.spec.registry import GAN_SPECS

    text = differences_sheet()
    assert all(f"| {d.key} |" in text for d in DIFFERENCES)
    assert all(f"## {s} " in text for s in GAN_SPECS)
    assert "beta2=0.9990000128746033" in text  # what backends/mxnet really passes
