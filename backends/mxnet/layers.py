"""How MXNet Gluon spells each spec layer: (class in mxnet.gluon.nn, positional args, keyword args).

Pure data, no mxnet import: build.py constructs from it and `ganparity specs` prints it, so the
porting table and the model cannot disagree. in_units / in_channels are always given, so Gluon
creates parameters eagerly instead of at the first forward.
"""

from __future__ import annotations

import numpy as np

from ...common.differences import native
from ...common.spec.layers import (
    BatchNorm,
    Conv2d,
    ConvTranspose2d,
    Flatten,
    GlobalAvgPool2d,
    Layer,
    LeakyReLU,
    Linear,
    MaxPool2d,
    ReLU,
    Sigmoid,
    Tanh,
)
from ...common.spec.model import GANSpec

Call = tuple[str, tuple, dict]

# Spec tensor name -> the Gluon parameter that holds it.
TENSOR_ALIASES: dict[type, dict[str, str]] = {BatchNorm: {"weight": "gamma", "bias": "beta"}}

RAW_LEAKY_RELU_SLOPE = 0.25  # mx.nd.LeakyReLU's default act_type='leaky' slope
_ACTIVATIONS = {ReLU: "relu", Tanh: "tanh", Sigmoid: "sigmoid"}


def layer_call(layer: Layer, in_shape: tuple[int, ...], naive: frozenset[str] = frozenset()) -> Call:
    if isinstance(layer, Linear):
        kwargs = {"in_units": layer.in_features}
        if not layer.bias:
            kwargs["use_bias"] = False
        if "dense-flatten" not in naive:
            kwargs["flatten"] = False
        return "Dense", (layer.out_features,), kwargs
    if isinstance(layer, Conv2d | ConvTranspose2d):
        name = "Conv2D" if isinstance(layer, Conv2d) else "Conv2DTranspose"
        kwargs = {"in_channels": layer.in_channels}
        if not layer.bias:
            kwargs["use_bias"] = False
        return name, (layer.out_channels, layer.kernel, layer.stride, layer.padding), kwargs
    if isinstance(layer, BatchNorm):
        momentum = layer.momentum if "bn-momentum" in naive else round(1.0 - layer.momentum, 12)
        return "BatchNorm", (), {"momentum": momentum, "epsilon": layer.eps,
                                 "in_channels": layer.num_features}
    if isinstance(layer, LeakyReLU):
        slope = RAW_LEAKY_RELU_SLOPE if "leaky-slope" in naive else layer.slope
        return "LeakyReLU", (slope,), {}
    if isinstance(layer, ReLU | Tanh | Sigmoid):
        return "Activation", (_ACTIVATIONS[type(layer)],), {}
    if isinstance(layer, Flatten):
        return "Flatten", (), {}
    if isinstance(layer, MaxPool2d):
        return "MaxPool2D", (layer.kernel, layer.stride, layer.padding), {}
    if isinstance(layer, GlobalAvgPool2d):
        return "GlobalAvgPool2D", (), {}
    raise TypeError(f"mxnet backend: no layer for {type(layer).__name__}")



def recipe_calls(spec: GANSpec, naive: frozenset[str] = frozenset()) -> dict[str, str]:
    """What train.py really calls for a spec's recipe, for the porting sheet."""
    r = spec.recipe
    own = {k: native(r.semantics, k, "mxnet", naive) for k in ("adam-eps", "adam-betas", "bce-clamp")}

    def adam(o) -> str:
        b1, b2 = (b if own["adam-betas"] else float(np.float32(b)) for b in (o.beta1, o.beta2))
        eps = f"epsilon={o.eps}" if own["adam-eps"] else f"epsilon={o.eps} * sqrt(1 - beta2^t)"
        return f"gluon.Trainer(params, Adam(learning_rate={o.lr}, beta1={b1!r}, beta2={b2!r}, {eps}))"

    bce = ("gluon.loss.SigmoidBinaryCrossEntropyLoss(from_sigmoid=True)" if own["bce-clamp"]
           else "PyTorch's clamped BCE from native ops (per sample)")
    scale = " / 2" if r.d_loss == "mean" else ""
    return {
        "loss": bce if r.loss == "bce" else "gluon.loss.SigmoidBinaryCrossEntropyLoss(from_sigmoid=False)",
        "optimizer D": adam(r.opt_D),
        "optimizer G": adam(r.opt_G),
        "D backward": ("grad_req='add' on D, zero_grad(); errD_real.backward(); errD_fake.backward()"
                       if r.d_backward == "separate" else f"((errD_real + errD_fake){scale}).backward()"),
        "fake seen by D": "fake.detach()" if r.detach_fake else "fake (graph through G)",
        "G step input": "netG(latent_z) again" if r.regenerate_fake else "the D step's fake",
        "optimizer step": "trainerD.step(batch_size); trainerG.step(batch_size)",
        "init": f"numpy draw of {spec.init.name}, loaded with param.set_data()",
    }
