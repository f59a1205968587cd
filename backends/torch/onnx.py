"""The usual road out of MXNet, for the port-zoo benchmark to compare with: the ONNX file that
backends/mxnet/onnx.py wrote with MXNet's own exporter, read back as a torch module by onnx2torch
(1.5.15, the zoo extra). What comes back is a torch.fx graph of onnx2torch's modules: it runs, but
nobody would keep it as code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...common.errors import GanparityError


def onnx_model(path: str | Path) -> tuple[Any, Any]:
    """The ONNX file at `path` as (None, module) in eval mode, as port.outputs takes a model; any
    failure of the converter is one GanparityError with its first line."""
    try:
        import onnx
        from onnx2torch import convert
    except ImportError as e:
        raise GanparityError(f"onnx2torch does not import: {e} (pip install 'ganparity[zoo]')") from None
    try:
        net = convert(onnx.load(str(path)))
    except Exception as e:  # noqa: BLE001 - the converter's own error, as the user would see it
        line = (str(e).strip().splitlines() or [""])[0][:200]
        raise GanparityError(f"onnx2torch: {type(e).__name__}: {line}") from None
    return None, net.eval()
