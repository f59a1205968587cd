"""House rules about imports: nothing heavy at import time, and both frameworks in one process."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# The backend files that are pure data (how a framework spells layers and names files).
PURE_BACKEND_FILES = ("layers", "zoo")


def light_modules() -> list[str]:
    """Every module of the package that must import without a framework: all of common/ and
    benchmarks/ (but the pytest-benchmark suite), and the pure-data files of each backend."""
    mods = ["ganparity"]
    for folder in ("common", "benchmarks"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path.name.startswith("test_"):
                continue
            parts = path.relative_to(ROOT).with_suffix("").parts
            parts = parts[:-1] if parts[-1] == "__init__" else parts
            mods.append(".".join(("ganparity", *parts)))
    mods += [f"ganparity.backends.{b}.{f}" for b in ("torch", "mxnet") for f in PURE_BACKEND_FILES]
    return mods


def test_import_ganparity_loads_no_framework():
    code = ("import sys\n" + "".join(f"import {m}\n" for m in light_modules())
            + "from ganparity.common.sheets import differences_sheet; differences_sheet()\n"
            + "from ganparity.common.cli import build_parser; build_parser()\n"
            + "heavy = sorted(m for m in ('torch', 'torchvision', 'mxnet') if m in sys.modules)\n"
            + "print(','.join(heavy))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/")
    assert out.stdout.strip() == "", f"imported at import time: {out.stdout.strip()}"
    assert len(light_modules()) > 40


@pytest.mark.slow
def test_both_frameworks_import_in_one_process():
    """An extra dependency must never have upgraded numpy past what mxnet 1.9.1 accepts."""
    pytest.importorskip("torch")
    pytest.importorskip("mxnet")
    code = ("import numpy, torch, mxnet\n"
            "from ganparity.common.backend import get_backend\n"
            "get_backend('torch'); get_backend('mxnet')\n"
            "print(numpy.__version__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    major, minor = map(int, out.stdout.strip().splitlines()[-1].split(".")[:2])
    assert (major, minor) < (1, 24), "mxnet 1.9.1 needs numpy < 1.24"


def test_missing_backend_names_the_extra(monkeypatch):
    import importlib.util as iu

    from ganparity.common import backend
    from ganparity.common.errors import GanparityError

    real = iu.find_spec
    monkeypatch.setattr(backend.importlib.util, "find_spec",
                        lambda name, *a: None if name == "mxnet" else real(name, *a))
    with pytest.raises(GanparityError, match=r"pip install 'ganparity\[mxnet\]'"):
        backend.get_backend("mxnet")


def test_unknown_backend_lists_valid_ones():
    from ganparity.common.backend import get_backend
    from ganparity.common.errors import GanparityError

    with pytest.raises(GanparityError, match="unknown backend 'jax'; valid: torch, mxnet"):
        get_backend("jax")
