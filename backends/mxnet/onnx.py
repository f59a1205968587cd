"""The usual road out of MXNet, for the port-zoo benchmark to compare with: the Gluon block written
as an ONNX file by MXNet's own exporter (mx2onnx, in mxnet 1.9.1), which backends/torch/onnx.py
reads back with onnx2torch. Needs the zoo extra (onnx 1.14.1: mx2onnx imports onnx.mapping).

mx2onnx takes the installed onnx's newest opset (19 for onnx 1.14.1), which onnx2torch 1.5.15
mostly cannot read; its documented opsets are 12 and 13: the file is written at ONNX_OPSET."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mxnet as mx
import numpy as np

from ...common.errors import GanparityError
from .port import _input_names, _trace, _warnings_off

ONNX_OPSET = 13


def onnx_model(model: Any, x, path: str | Path, opset: int = ONNX_OPSET) -> Path:
    """The block's inference graph with its parameters as an ONNX file at `path` (x: one batch, an
    array or a list of them, which fixes the input shapes and types); any failure of the exporter
    is one GanparityError with its first line."""
    try:
        from mxnet.onnx.mx2onnx._export_onnx import MXNetGraph
        from onnx import helper, mapping
    except ImportError as e:
        raise GanparityError(f"the ONNX exporter does not import: {e} (pip install 'ganparity[zoo]')") from None
    xs = [np.asarray(a) for a in (x if isinstance(x, list | tuple) else [x])]
    try:
        with _warnings_off():
            out, _ = _trace(model, _input_names(model, len(xs)))
        sym = mx.sym.Group(list(out)) if isinstance(out, list | tuple) else out
        params = {p.name: p.data() for p in model.collect_params().values() if p._data is not None}
        types = [mapping.NP_TYPE_TO_TENSOR_TYPE[np.dtype(a.dtype)] for a in xs]
        graph = MXNetGraph().create_onnx_graph_proto(sym, params, [a.shape for a in xs], types,
                                                     opset_version=opset)
        proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    except Exception as e:  # noqa: BLE001 - the exporter's own error, as the user would see it
        line = (str(e).strip().splitlines() or [""])[0][:200]
        raise GanparityError(f"mx2onnx (opset {opset}): {type(e).__name__}: {line}") from None
    Path(path).write_bytes(proto.SerializeToString())
    return Path(path)
