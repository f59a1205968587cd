"""One reader per file kind: .npz archives, .npy arrays, JSON and JSON-lines, CSV tables (the
frameworks' own files are read by backends/<name>/checkpoint.py, after check_file).

Every failure (missing, a folder, empty, truncated, the wrong kind, the wrong keys, the wrong
shape; and, through check_finite, NaN or inf where numbers must be finite) is a one-line
GanparityError that names the file, what was expected and what was found, so the CLI can print
it alone (exit 2) instead of a traceback from zipfile, numpy or json.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .errors import GanparityError
from .files import reason

# What each kind of file is expected to be, for the messages.
NPZ = "a .npz archive of named arrays (np.savez, ganparity init)"
NPY = "a .npy array (np.save)"
JSON = "a JSON file"
CSV = "a CSV table"
# What a damaged .npz or .npy raises, depending on where it was cut or changed.
_DAMAGED = (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError, KeyError, UnicodeDecodeError)
MAX_SHOWN = 6


def _q(path: Path) -> str:
    return repr(str(path))


def _shown(names) -> str:
    names = list(names)
    return ", ".join(names[:MAX_SHOWN]) + (f" and {len(names) - MAX_SHOWN} more" if len(names) > MAX_SHOWN else "")


def check_file(path: str | os.PathLike, what: str, expected: str) -> Path:
    """`path` as a Path if it is a readable, non-empty file; else say what it is instead."""
    path = Path(path)
    if not path.exists():
        raise GanparityError(f"{what} {_q(path)} does not exist (expected {expected})")
    if path.is_dir():
        raise GanparityError(f"{what} {_q(path)} is a folder, expected {expected}")
    try:
        size = path.stat().st_size
        with open(path, "rb"):
            pass
    except OSError as e:
        raise GanparityError(f"{what} {_q(path)} cannot be read ({reason(e)}), expected {expected}") from None
    if size == 0:
        raise GanparityError(f"{what} {_q(path)} is empty (0 bytes), expected {expected}")
    return path


def sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _kind(path: Path, error: BaseException | None = None) -> str:
    """What a file that failed to load looks like, from its first bytes."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError:
        return "an unreadable file"
    if head.startswith(b"PK"):
        return "a damaged zip archive (truncated or changed)"
    if head.startswith(b"\x93NUMPY"):
        return "an array of pickled Python objects" if "pickle" in str(error) else "a damaged .npy array"
    if head[:1] in (b"{", b"["):
        return "JSON text"
    if all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        return "text"
    return "binary data of another kind"


def non_finite(x: np.ndarray) -> str | None:
    """'2 NaN and 1 inf of 16 values (the first at index (0, 3))' for an array holding non-finite
    values; None when every value is finite (integer and boolean arrays always are)."""
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.inexact):
        return None
    bad = ~np.isfinite(x)
    if not bad.any():
        return None
    nan = int(np.count_nonzero(np.isnan(x)))
    inf = int(np.count_nonzero(bad)) - nan
    counts = " and ".join(c for c in (f"{nan} NaN" if nan else "", f"{inf} inf" if inf else "") if c)
    first = tuple(int(i) for i in np.unravel_index(int(np.argmax(bad)), x.shape))
    return f"{counts} of {x.size} values (the first at index {first})"


def check_finite(arrays: Mapping[str, np.ndarray] | np.ndarray, what: str):
    """`arrays` unchanged if every value is finite, else one line naming each non-finite tensor
    (the first few): "weights 'w.npz' hold non-finite values, refused: G.0.weight has 1 NaN of 2048
    values (the first at index (0, 0, 0, 0))". A NaN weight or input makes every output NaN, and
    a comparison of NaN with anything an unexplained difference: refused before any work."""
    if isinstance(arrays, Mapping):
        bad = [(k, d) for k, v in arrays.items() if (d := non_finite(v))]
        if bad:
            raise GanparityError(f"{what} hold non-finite values, refused: "
                                 + "; ".join(f"{k} has {d}" for k, d in bad[:MAX_SHOWN])
                                 + (f"; and {len(bad) - MAX_SHOWN} more tensors" if len(bad) > MAX_SHOWN else ""))
        return arrays
    d = non_finite(arrays)
    if d:
        raise GanparityError(f"{what} holds non-finite values, refused: {d}")
    return arrays


def read_npz(path: str | os.PathLike, what: str = "weights file", required: tuple[str, ...] = (),
             expected: str = NPZ) -> dict[str, np.ndarray]:
    """Every array of an .npz archive, read in full (so a damaged member fails here, not later)."""
    path = check_file(path, what, expected)
    try:
        z = np.load(path, allow_pickle=False, mmap_mode="r")
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise GanparityError(f"{what} {_q(path)} holds one .npy array {tuple(z.shape)}, expected {expected}")
        with z:
            arrays = {k: np.asarray(z[k]) for k in z.files}
    except GanparityError:
        raise
    except _DAMAGED as e:
        found = _kind(path, e)
        detail = f": {e}" if str(e) and "pickle" not in str(e) else ""
        raise GanparityError(f"{what} {_q(path)} is {found}, not {expected}{detail}") from None
    missing = [k for k in required if k not in arrays]
    if missing:
        raise GanparityError(f"{what} {_q(path)} has no {_shown(missing)}, expected {expected}; "
                             f"found {len(arrays)} arrays: {_shown(arrays) or 'none'}")
    return arrays


def read_npy(path: str | os.PathLike, what: str = "input", shape: tuple[int | None, ...] | None = None,
             expected: str = NPY, mmap: bool = False) -> np.ndarray:
    """A numeric .npy array; `shape` checks it, None for any size on that axis ((None, 100, 1, 1)).
    mmap: a read-only memory map (a large cache), read from disk only where it is indexed."""
    path = check_file(path, what, expected)
    try:
        x = np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
    except _DAMAGED as e:
        found = _kind(path, e)
        detail = "" if "pickle" in str(e) else f": {e}"
        raise GanparityError(f"{what} {_q(path)} is {found}, not {expected}{detail}") from None
    if isinstance(x, np.lib.npyio.NpzFile):
        n = len(x.files)
        x.close()
        raise GanparityError(f"{what} {_q(path)} is a .npz archive of {n} arrays, expected {expected}")
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
        raise GanparityError(f"{what} {_q(path)} holds {x.dtype} values, expected numbers")
    if shape is not None:
        want = "(" + ", ".join("N" if s is None else str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"
        if x.ndim != len(shape) or any(s is not None and s != d for s, d in zip(shape, x.shape)):
            raise GanparityError(f"{what} {_q(path)} has shape {tuple(x.shape)}, expected {want}")
        if x.ndim and x.shape[0] == 0 and shape[0] is None:
            raise GanparityError(f"{what} {_q(path)} has shape {tuple(x.shape)}: no rows, expected {want} with N >= 1")
    return x


def read_json(path: str | os.PathLike, what: str, expected: str = JSON, kind: type = dict):
    path = check_file(path, what, expected)
    try:
        obj = json.loads(path.read_text())
    except UnicodeDecodeError:
        raise GanparityError(f"{what} {_q(path)} is {_kind(path)}, not {expected}") from None
    except json.JSONDecodeError as e:
        raise GanparityError(f"{what} {_q(path)} is not valid JSON ({e.msg} at line {e.lineno} column {e.colno}), "
                             f"expected {expected}") from None
    if not isinstance(obj, kind):
        raise GanparityError(f"{what} {_q(path)} holds a JSON {type(obj).__name__}, expected {expected}")
    return obj


def read_jsonl(path: str | os.PathLike, what: str) -> list[dict]:
    """The rows of a JSON-lines log that ganparity appends to. A line cut short (kill -9 in the
    middle of a write) is dropped when it is the last one; anywhere else it is an error."""
    path = Path(path)
    if not path.is_file():
        return []
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    rows = []
    for i, line in enumerate(lines):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                break
            raise GanparityError(f"{what} {_q(path)} line {i + 1} is not JSON: {line[:60]!r}") from None
        if isinstance(row, dict):
            rows.append(row)
    return rows


def read_csv(path: str | os.PathLike, what: str, header: tuple[str, ...]) -> list[list[str]]:
    """The rows after a header that starts with `header`; each row has at least its columns."""
    expected = f"a CSV table with the header {','.join(header)!r}"
    path = check_file(path, what, expected)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except (UnicodeDecodeError, csv.Error) as e:
        raise GanparityError(f"{what} {_q(path)} is {_kind(path)}, not {expected} ({e})") from None
    rows = [r for r in rows if any(c.strip() for c in r)]
    if not rows:
        raise GanparityError(f"{what} {_q(path)} has no rows, expected {expected}")
    found = [c.strip() for c in rows[0][:len(header)]]
    if found != list(header):
        raise GanparityError(f"{what} {_q(path)} starts with {','.join(rows[0])[:60]!r}, expected {expected}")
    short = [i + 2 for i, r in enumerate(rows[1:]) if len(r) < len(header)]
    if short:
        raise GanparityError(f"{what} {_q(path)}: line(s) {_shown(map(str, short))} have fewer than "
                             f"{len(header)} columns, expected {expected}")
    return [[c.strip() for c in r] for r in rows[1:]]
