"""Every measured table of README.md and docs/ is generated from the committed data by `ganparity
docs` (common/cli/docs.py), and stays in sync with it: a table edited by hand, or data committed
without regenerating the docs, fails here. The pattern of tests/test_differences_sheet.py, for
every table."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from ganparity.common import generated
from ganparity.common.cli import docs
from ganparity.common.errors import GanparityError

ROOT = Path(__file__).resolve().parents[1]
HINT = "out of date with its data: run `ganparity docs` (make docs) and commit"


def _files() -> list[Path]:
    return sorted({p for pattern in docs.FILES for p in ROOT.glob(pattern)})


def test_every_generated_table_matches_its_data():
    stale = {str(p.relative_to(ROOT)): text for p, text in docs.regenerate(ROOT).items() if p.read_text() != text}
    assert not stale, f"{', '.join(stale)}: {HINT}"


def test_every_region_has_its_generator_and_every_generator_is_used():
    used = {n for p in _files() for n in generated.names(p.read_text())}
    known = set(docs.renderers(ROOT))
    assert used <= known, used - known
    assert known <= used, f"generators no file uses: {known - used}"
    readme = generated.names((ROOT / "README.md").read_text())
    assert {"step-cost", "parity-summary"} <= set(readme)  # the specs table lives in docs/train.md


def _copy(tmp: Path) -> Path:
    for rel in ("README.md", "docs", docs.REPORT, docs.RESULTS):
        src, dst = ROOT / rel, tmp / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dst)
    return tmp


def _stale(root: Path) -> list[str]:
    return [str(p.relative_to(root)) for p, text in docs.regenerate(root).items() if p.read_text() != text]


def test_a_table_edited_by_hand_or_data_changed_alone_is_caught(tmp_path):
    root = _copy(tmp_path)
    assert _stale(root) == []
    readme = root / "README.md"
    text = readme.read_text()
    row = next(line for line in text.splitlines() if line.startswith("| dcgan | torch | agree"))
    readme.write_text(text.replace(row, row.replace("agree", "differ", 1)))  # a table edited by hand
    assert _stale(root) == ["README.md"]
    readme.write_text(text)
    quiet = root / docs.RESULTS / "cpu-2026-12-03-quiet.json"  # the data changed, the docs not regenerated
    quiet.write_text(re.sub(r'"median_ms": (\d)', r'"median_ms": 9\1', quiet.read_text(), count=1))
    assert "README.md" in _stale(root) and "docs/bench.md" in _stale(root)


def test_the_docs_command_rewrites_and_checks(tmp_path, capsys):
    from ganparity.common.cli import main

    root = _copy(tmp_path)
    (root / "reports" / "lockstep.png").unlink(missing_ok=True)
    readme = root / "README.md"
    good = readme.read_text()
    readme.write_text(good.replace("| gan-gaussian | torch | agree", "| gan-gaussian | torch | differ", 1))
    with pytest.raises(SystemExit) as e:
        main(["docs", "--root", str(root), "--check"])
    assert e.value.code == 1 and "README.md" in capsys.readouterr().out
    assert main(["docs", "--root", str(root)]) == 0
    assert readme.read_text() == good and "rewrote README.md" in capsys.readouterr().out
    assert (root / docs.PLOT).stat().st_size > 10_000
    assert main(["docs", "--root", str(root), "--check"]) == 0
    assert "every generated table matches its data" in capsys.readouterr().out


def test_regions_must_pair_and_be_known():
    with pytest.raises(GanparityError, match="no generator named 'nope'"):
        generated.fill("<!-- generated: nope -->\nx\n<!-- end generated -->\n", {}, "f.md")
    with pytest.raises(GanparityError, match="do not pair up"):
        generated.fill("<!-- generated: a -->\nx\n", {"a": lambda: "y"}, "f.md")
    assert generated.fill("a\n<!-- generated: a -->\nold\n<!-- end generated -->\nb", {"a": lambda: "new\n"}) == (
        "a\n<!-- generated: a -->\nnew\n<!-- end generated -->\nb")


# A table row that reads as a measurement: a time, a percentage, a ratio to a source loop, a float
# in scientific notation, a count of images per second.
MEASURED = re.compile(r"\d\.\d+e-\d|\b\d+(\.\d+)? ?ms\b|\d+(\.\d+)?%|\bx\d\.\d\d\b|img/s \|")
# Tables of settings and rules, whose numbers are constants of the code, not measurements.
NOT_MEASURED = ("| check | what | tolerance |", "| goal | measured as |", "| part | what | cap (share of the budget) |")


def _tables_outside_regions(text: str) -> list[str]:
    text = re.sub(r"<!-- generated: [a-z0-9-]+ -->.*?<!-- end generated -->", "", text, flags=re.S)
    text = re.sub(r"```.*?```", "", text, flags=re.S)  # console output: what a command printed, an example
    rows, header, out = text.splitlines(), None, []
    for line in rows:
        if not line.startswith("|"):
            header = None
            continue
        header = header or line
        if header.startswith(NOT_MEASURED):
            continue
        if MEASURED.search(line):
            out.append(line)
    return out


@pytest.mark.parametrize("path", [p for p in _files() if str(p.relative_to(ROOT)) not in docs.WHOLE],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_no_measured_table_outside_a_generated_region(path):
    """docs/differences.md is generated whole (test_differences_sheet.py); the other files' tables
    that read as measurements must sit inside a generated region."""
    hand = _tables_outside_regions(path.read_text())
    assert not hand, f"{path.relative_to(ROOT)}: a measured table typed by hand (generate it: common/cli/docs.py):\n" \
                     + "\n".join(hand[:5])


def test_the_check_finds_a_measured_table_typed_by_hand():
    assert _tables_outside_regions("| spec | torch ms |\n|---|---|\n| dcgan | 31.3 ms |\n")
    assert not _tables_outside_regions("<!-- generated: x -->\n| dcgan | 31.3 ms |\n<!-- end generated -->\n")
