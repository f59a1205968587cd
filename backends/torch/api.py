"""The torch backend as common.backend.get_backend('torch') hands it out: one flat namespace, the same
names in backends/torch/api.py and backends/mxnet/api.py, every member of common.backend.Backend."""

from . import distributed  # noqa: F401
from .build import (  # noqa: F401
    build,
    forward,
    get_arrays,
    get_grads,
    layer_outputs,
    param_count,
    scalar,
    scalars,
    set_arrays,
    to_device,
)
from .checkpoint import PRETRAINED_SUFFIX, SUFFIX, load_native, load_pretrained, save_native, save_pretrained  # noqa: F401
from .device import (  # noqa: F401
    DEVICES,
    Feeder,
    describe,
    effective_precision,
    flags,
    peak_gemm,
    peak_memory,
    reset_peak_memory,
    resolve,
    set_threads,
    speed_flags,
    sync,
)
from .finetune import FinetuneTrainer, logits  # noqa: F401
from .inception import INCEPTION_SUFFIXES, inception_features, load_inception  # noqa: F401
from .layers import layer_call, recipe_calls  # noqa: F401
from .sources import source_loop  # noqa: F401
from .speed import SPEED_MODELS, edit_written, model_size, speed_arms, zoo_model  # noqa: F401
from .state import load_optimizer_state, optimizer_state  # noqa: F401
from .train import OPTIONS, GANTrainer  # noqa: F401

NAME = "torch"


def versions() -> dict[str, str]:
    import torch
    return {"torch": torch.__version__, "cuda": str(torch.version.cuda), "cudnn": str(torch.backends.cudnn.version())}
