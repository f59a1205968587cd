"""House rules about imports: nothing heavy at import time, and both frameworks in one process."""

import subprocess
import sys

import pytest

LIGHT = ("common", "backends", "common.cli", "common.registry", "common.shapes", "common.porting",
         "common.parity", "common.report", "common.weights", "common.differences",
         "common.data", "common.quality", "common.plots", "common.train", "common.train_cli",
         "backends.torch.layers", "backends.mxnet.layers")


def test_import_common_and_backends_loads_no_framework():
    code = ("import sys\n" + "".join(f"import {m}\n" for m in LIGHT)
            + "from common.porting import porting_sheet; porting_sheet()\n"
            + "heavy = sorted(m for m in ('torch', 'mxnet') if m in sys.modules)\n"
            + "print(','.join(heavy))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"imported at import time: {out.stdout.strip()}"


def test_both_frameworks_import_in_one_process():
    """An extra dependency must never have upgraded numpy past what mxnet 1.9.1 accepts."""
    pytest.importorskip("torch")
    pytest.importorskip("mxnet")
    code = ("import numpy, torch, mxnet\n"
            "from common.backend import get_backend\n"
            "get_backend('torch'); get_backend('mxnet')\n"
            "print(numpy.__version__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    major, minor = map(int, out.stdout.strip().splitlines()[-1].split(".")[:2])
    assert (major, minor) < (1, 24), "mxnet 1.9.1 needs numpy < 1.24"


def test_missing_backend_names_the_extra(monkeypatch):
    import importlib.util as iu

    from common import backend
    from common.errors import GanparityError

    real = iu.find_spec
    monkeypatch.setattr(backend.importlib.util, "find_spec",
                        lambda name, *a: None if name == "mxnet" else real(name, *a))
    with pytest.raises(GanparityError, match=r"pip install 'ganparity\[mxnet\]'"):
        backend.get_backend("mxnet")


def test_unknown_backend_lists_valid_ones():
    from common.backend import get_backend
    from common.errors import GanparityError

    with pytest.raises(GanparityError, match="unknown backend 'jax'; valid: torch, mxnet"):
        get_backend("jax")
