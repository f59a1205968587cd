"""`ganparity dogs reorganize` on a tiny folder shaped like the Kaggle data."""

import os

import pytest

from ganparity.common.cli import main
from ganparity.common.errors import GanparityError
from ganparity.common.finetune.layout import reorganize


@pytest.fixture
def kaggle(tmp_path):
    d = tmp_path / "kaggle"
    (d / "train").mkdir(parents=True)
    (d / "test").mkdir()
    breeds = ["affenpinscher", "afghan_hound", "basenji"]
    rows = ["id,breed"]
    for i in range(30):
        (d / "train" / f"id{i:03d}.jpg").write_bytes(b"jpeg" + bytes([i]))
        rows.append(f"id{i:03d},{breeds[i % 3]}")
    for i in range(7):
        (d / "test" / f"t{i}.jpg").write_bytes(b"jpeg")
    (d / "labels.csv").write_text("\n".join(rows) + "\n")
    return d


def tree(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*.jpg"))


def test_layout_counts_and_links(kaggle, tmp_path):
    out = tmp_path / "out"
    counts = reorganize(kaggle, out, 0.1, seed=0)
    assert counts == {"train": 27, "valid": 3, "train_valid": 30, "test": 7}
    assert sorted(p.name for p in (out / "train").iterdir()) == ["affenpinscher", "afghan_hound", "basenji"]
    assert len(list((out / "test" / "unknown").iterdir())) == 7
    some = next((out / "train_valid" / "basenji").iterdir())
    assert os.path.samefile(some, kaggle / "train" / some.name)  # a link, not a copy
    valid = {p.name for p in (out / "valid").rglob("*.jpg")}
    train = {p.name for p in (out / "train").rglob("*.jpg")}
    assert not valid & train and len(valid | train) == 30


def test_idempotent_and_reproducible(kaggle, tmp_path):
    out = tmp_path / "out"
    reorganize(kaggle, out, 0.2, seed=1)
    first = tree(out)
    assert main(["finetune", "reorganize", "--data", str(kaggle), "--out", str(out), "--valid-ratio", "0.2",
                 "--seed", "1"]) == 0
    assert tree(out) == first
    other = tmp_path / "other"
    reorganize(kaggle, other, 0.2, seed=1)
    assert tree(other) == first
    with pytest.raises(GanparityError, match="reorganised with other settings"):
        reorganize(kaggle, out, 0.2, seed=2)


def test_ids_missing_from_labels_are_refused(kaggle, tmp_path, capsys):
    (kaggle / "train" / "stray.jpg").write_bytes(b"x")
    assert main(["finetune", "reorganize", "--data", str(kaggle), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "1 image(s) in" in err and "have no row in labels.csv: stray" in err


def test_not_a_kaggle_folder(tmp_path):
    with pytest.raises(GanparityError, match="labels.csv"):
        reorganize(tmp_path, tmp_path / "o")
