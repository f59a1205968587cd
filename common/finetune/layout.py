"""Source 000's Kaggle dog-breed data, reorganised as the source lays it out.

    DIR/train/<breed>/<id>.jpg, DIR/valid/<breed>/..., DIR/train_valid/<breed>/..., DIR/test/unknown/...

The source copies every training image three times (shutil.copy); here each entry is a hard link to
the original (a symlink where the file system refuses hard links), so the image bytes exist once.
The split is reproducible: ids are sorted, then shuffled with random.Random(seed). Running it
again with the same settings changes nothing; other settings on the same DIR are refused.
"""

from __future__ import annotations

import csv
import json
import os
import random
from pathlib import Path

from ..errors import GanparityError
from ..files import write_json

MANIFEST = "reorganize.json"


def read_labels(path: Path) -> dict[str, str]:
    """labels.csv: a header, then id,breed per row."""
    if not path.is_file():
        raise GanparityError(f"{str(path)!r} not found: a Kaggle dog-breed folder has labels.csv, train/ and test/")
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows or [c.strip() for c in rows[0][:2]] != ["id", "breed"]:
        raise GanparityError(f"{str(path)!r} must start with the header 'id,breed'")
    return {r[0].strip(): r[1].strip() for r in rows[1:] if len(r) >= 2}


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
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise GanparityError(f"{len(missing)} image(s) in {str(train_dir)!r} have no row in labels.csv: {shown}")
    settings = {"data": str(data.resolve()), "valid_ratio": valid_ratio, "seed": seed}
    manifest = out / MANIFEST
    if manifest.is_file():
        before = json.loads(manifest.read_text())
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
