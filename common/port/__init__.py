"""`ganparity port`: a Gluon model ported to PyTorch, with the proof written beside it.

    read    the Gluon block's symbol graph (backends/mxnet/port.py read): ops in execution order,
            the block path of each, shapes, parameters as numpy
    emit    one readable nn.Module (emit.py): layers named after the Gluon blocks, arguments
            spelled out, the semantic choices (BatchNorm momentum converted, Dense flatten made
            explicit, MXNet's BatchNorm statistics and Adam copied in from
            backends/torch/emulations.py under semantics 'mxnet')
    write   model.py and everything beside it, atomically (write.py)
    prove   the proof (checks.py): weights, forward, gradients and K optimizer steps, every row
            agree / differ / cannot tell here; test_port.py runs it again through the public API
            (ganparity.prove_port)
"""

from __future__ import annotations

from .checks import Proof, prove
from .emit import SEMANTICS, Port, Unsupported, emit
from .write import DEFAULT_OPTIMIZER, DEFAULT_STEPS, PortResult, port, prove_port

__all__ = ["DEFAULT_OPTIMIZER", "DEFAULT_STEPS", "SEMANTICS", "Port", "PortResult", "Proof", "Unsupported", "emit",
           "port", "prove", "prove_port"]
