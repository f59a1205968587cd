"""Source 000's Kaggle dog-breed data, reorganised as the source lays it out.

    DIR/train/<breed>/<id>.jpg, DIR/valid/<breed>/..., DIR/train_valid/<breed>/..., DIR/test/unknown/...

The source copies every training image three times (shutil.copy); here each entry is a hard link to
the original (a symlink where the file system refuses hard links), so the image bytes exist once.
The split is reproducible: ids are sorted, then shuffled with random.Random(seed). Running it
again with the same settings changes nothing; other settings on the same DIR are refused.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

from ..errors import GanparityError
from ..files import write_json
from ..readers import read_csv, read_json

MANIFEST = "reorganize.json"


def read_labels(path: Path) -> dict[str, str]:
    """labels.csv: a header, then id,breed per row (each id once, none empty)."""
    if not path.exists():
        raise GanparityError(f"{str(path)!r} not found: a Kaggle dog-breed folder has labels.csv, train/ and test/")
    rows = read_csv(path, "labels", ("id", "breed"))
    if not rows:
        raise GanparityError(f"labels {str(path)!r} has a header and no rows, expected one id,breed row per image")
    labels: dict[str, str] = {}
    for line, (i, breed, *_) in enumerate(rows, start=2):
        if not i or not breed:
            raise GanparityError(f"labels {str(path)!r} line {line}: empty id or breed in {i!r},{breed!r}")
        if labels.get(i, breed) != breed:
            raise GanparityError(f"labels {str(path)!r} line {line}: id {i!r} is {labels[i]!r} and {breed!r}")
        labels[i] = breed
    return labels


def _shown(names: list[str]) -> str:
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def _link(src: Path, dst: Path) -> None:
    if dst.exists() or dst.is_symlink():
        if dst.resolve() == src.resolve() or os.path.samefile(dst, src):
            return
        raise GanparityError(f"{str(dst)!r} exists and is not a link to {str(src)!r}")
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        dst.symlink_to(src.resolve())


def reorganize(data: str | os.PathLike, out: str | os.PathLike, valid_ratio: float = 0.1,
               seed: int = 0) -> dict[str, int]:
    """Lay out train / valid / train_valid / test/unknown under `out`; return the counts."""
    data, out = Path(data), Path(out)
    if not 0 <= valid_ratio < 1:
        raise GanparityError(f"--valid-ratio must be in [0, 1), got {valid_ratio}")
    labels = read_labels(data / "labels.csv")
    train_dir, test_dir = data / "train", data / "test"
    for d in (train_dir, test_dir):
        if not d.is_dir():
            raise GanparityError(f"{str(d)!r} is not a folder: a Kaggle dog-breed folder has labels.csv, train/, test/")
    train_files = sorted(p for p in train_dir.iterdir() if p.is_file())
    missing = [p.stem for p in train_files if p.stem not in labels]
    if missing:
        raise GanparityError(f"{len(missing)} image(s) in {str(train_dir)!r} have no row in labels.csv: "
                             f"{_shown(missing)}")
    stems = {p.stem for p in train_files}
    lacking = sorted(i for i in labels if i not in stems)
    if lacking:
        found = f"it holds {len(train_files)} files" if train_files else "it is empty"
        raise GanparityError(f"{len(lacking)} of the {len(labels)} ids in labels.csv have no image in "
                             f"{str(train_dir)!r} ({found}), expected <id>.jpg for each: {_shown(lacking)}")
    settings = {"data": str(data.resolve()), "valid_ratio": valid_ratio, "seed": seed}
    manifest = out / MANIFEST
    if manifest.is_file():
        before = read_json(manifest, "reorganize record")
        if before != settings:
            raise GanparityError(f"{str(out)!r} was reorganised with other settings {before}; "
                                 "use a new --out or delete it")
    random.Random(seed).shuffle(train_files)
    n_valid = int(len(train_files) * valid_ratio)
    counts = {"train": 0, "valid": 0, "train_valid": 0, "test": 0}
    for i, f in enumerate(train_files):
        breed = labels[f.stem]
        split = "valid" if i < n_valid else "train"
        _link(f, out / split / breed / f.name)
        _link(f, out / "train_valid" / breed / f.name)
        counts[split] += 1
        counts["train_valid"] += 1
    for f in sorted(p for p in test_dir.iterdir() if p.is_file()):
        _link(f, out / "test" / "unknown" / f.name)
        counts["test"] += 1
    out.mkdir(parents=True, exist_ok=True)
    write_json(manifest, settings)
    return counts
