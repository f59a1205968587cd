"""Check your own port: any PyTorch module against any Gluon block, layer by layer.

A porting user has one model in two frameworks and one question: do the two compute the same
thing, and if not, where and why? compare_models() answers it without a spec:

1. walk   both models run one forward with hooks (backends/*/compare.py walk); every leaf layer
          and every layer that owns tensors comes back, in execution order, as a neutral record:
          kind ('conv', 'batchnorm', 'linear', ...), configuration in neutral words (BatchNorm
          momentum in PyTorch's convention, a Dense's flatten), tensors by role, output.
2. pair   layers that own tensors are paired by kind and tensor shapes in execution order
          (a sequence alignment, then leftovers by equal signature), which follows branches
          (ResNet's downsample runs where it runs in both); a mapping file pairs what cannot be
          inferred. Every tensor left unpaired is an error that lists it. Layers without tensors
          (activations, pooling) are aligned by kind and output shape between the paired ones.
3. copy   one model's weights go into the other as neutral numpy (weights='torch' by default), or
          each keeps its own (weights='own': a first row checks they are equal, as a port copies).
4. check  forward in train and eval mode (every paired layer's output), the gradients of a loss
          (default: the outputs dotted with a fixed random tensor), and K optimizer steps from one
          neutral setting (the update of the parameters and BatchNorm statistics since the start),
          each row judged agree / differ / cannot tell here (common/verdicts.py) against an fp64
          control run of both and the reference's own fp64 floor.
5. hint   the first tensor out of tolerance names its layer in both models, and both layers'
          configurations are read for the known differences (common/differences.py, and the
          layer-configuration ones below: BatchNorm eps, ConvTranspose output_padding, pooling
          ceil_mode / count_include_pad, dropout, upsampling align_corners).

Each framework runs natively. Two known semantic differences are translated so that the same
mathematics is compared, and the report says so: the optimizer (one neutral setting builds
torch.optim and mx.optimizer; Adam's eps placement and float32 betas follow `follow`, default
'torch'), and BatchNorm's running variance (Gluon on CPU moves it in backward with the biased
batch variance, PyTorch with the unbiased one: the Gluon value is corrected by n / (n - 1) on
its batch term before the comparison, with Gluon's own momentum, so a momentum passed
unconverted still shows).

The modules: inputs (mapping file, input batch, targets), pairing, hints, checks, report, run
(the driver). numpy and the standard library only; the frameworks are reached through get_backend().
"""

from __future__ import annotations

from ..usermodel import (
           DEFAULT_OPTIMIZER,
           LOSSES,
           MODES,
           OPTIMIZERS,
           load_factory,
           optimizer_text,
           parse_optimizer,
           parse_shape,
)
from .checks import DROPOUT_CHECK, WEIGHTS_CHECK, CheckResult
from .hints import CONFIG_HINTS, Hint, config_hints
from .inputs import MappingFile, load_mapping
from .pairing import Pair, WalkedLayer, pair_layers
from .report import Divergence, Report
from .run import compare_backend, compare_models

__all__ = ["CONFIG_HINTS", "DEFAULT_OPTIMIZER", "DROPOUT_CHECK", "LOSSES", "MODES", "OPTIMIZERS", "WEIGHTS_CHECK",
           "CheckResult", "Divergence", "Hint", "MappingFile", "Pair", "Report", "WalkedLayer", "compare_backend",
           "compare_models", "config_hints", "load_factory", "load_mapping", "optimizer_text", "pair_layers",
           "parse_optimizer", "parse_shape"]
