"""The mxnet backend as common.backend.get_backend('mxnet') hands it out: one flat namespace,
the same names in backends/torch/api.py and backends/mxnet/api.py."""

from .build import (  # noqa: F401
    build,
    forward,
    get_arrays,
    get_grads,
    layer_outputs,
    param_count,
    set_arrays,
    to_device,
)  # noqa: F401
from .checkpoint import SUFFIX, load_native, save_native  # noqa: F401
from .device import DEVICES, describe, resolve, sync  # noqa: F401
from .layers import layer_call  # noqa: F401
from .state import load_optimizer_state, optimizer_state  # noqa: F401
from .train import GANTrainer  # noqa: F401

NAME = "mxnet"


def versions() -> dict[str, str]:
    import mxnet as mx
    features = mx.runtime.Features()
    return {"mxnet": mx.__version__, "cuda": str(features.is_enabled("CUDA")),
            "mkldnn": str(features.is_enabled("MKLDNN"))}
