"""The Gluon model zoo's resnet_v1 parameter names <-> the neutral names: pure data and renaming,
no mxnet import (checkpoint.py reads and writes the files with it).

  Gluon model zoo resnet34_v1 save_parameters   neutral
  features.0.weight                             backbone.0.weight
  features.1.{gamma,beta,running_*}             backbone.1.{weight,bias,running_*}
  features.4.0.body.0.weight                    backbone.4.0.body.0.weight
  features.4.0.body.1.* / .3 / .4               backbone.4.0.body.1.* / .3 / .4
  features.5.0.downsample.0/1.*                 backbone.5.0.downsample.0/1.*
  output.{weight,bias} (ImageNet, 1000)         fc.*  (not part of the spec: the head replaces it)
"""

from __future__ import annotations

import numpy as np

from ...common import shapes
from ...common.spec.finetune import IMAGENET_FC, FinetuneSpec
from ...common.spec.layers import BatchNorm
from ...common.weights import validate
from .layers import TENSOR_ALIASES


def zoo_name(neutral: str, spec: FinetuneSpec) -> str:
    """'backbone.4.0.body.1.weight' -> 'features.4.0.body.1.gamma'."""
    if neutral in IMAGENET_FC:
        return "output." + neutral.split(".", 1)[1]
    owner = shapes.tensor_owners(spec.backbone)[neutral]
    prefix, short = neutral.rsplit(".", 1)
    if isinstance(owner, BatchNorm):
        short = TENSOR_ALIASES[BatchNorm].get(short, short)
    return "features." + prefix.split(".", 1)[1] + "." + short


def _neutral_names(spec: FinetuneSpec) -> dict[str, str]:
    return {zoo_name(k, spec): k for k in [*shapes.tensor_shapes(spec.backbone), *IMAGENET_FC]}


def neutral_name(name: str, spec: FinetuneSpec) -> str:
    """'features.4.0.body.1.gamma' -> 'backbone.4.0.body.1.weight'; a name of no ResNet of this
    spec is kept, so that validation reports it as extra."""
    return _neutral_names(spec).get(name, f"(unrecognised) {name}")


def from_zoo(params: dict[str, np.ndarray], spec: FinetuneSpec, what: str = ".params") -> dict[str, np.ndarray]:
    """A Gluon model-zoo resnet_v1 save_parameters dict -> neutral backbone arrays (+ fc.*)."""
    back = _neutral_names(spec)
    out = {back.get(k, f"(unrecognised) {k}"): v for k, v in params.items()}
    return validate(out, spec, ("backbone",), what, allow=IMAGENET_FC)


def to_zoo(arrays: dict[str, np.ndarray], spec: FinetuneSpec) -> dict[str, np.ndarray]:
    """Neutral -> the model zoo's names, exactly what vision.resnet34_v1().load_parameters wants."""
    arrays = validate({k: v for k, v in arrays.items() if k.startswith("backbone.") or k in IMAGENET_FC},
                      spec, ("backbone",), allow=IMAGENET_FC)
    return {zoo_name(k, spec): v for k, v in arrays.items()}
