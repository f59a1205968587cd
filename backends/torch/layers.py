"""How PyTorch spells each spec layer: (class in torch.nn, positional args, keyword args).

Pure data, no torch import: build.py constructs from it and `ganparity specs` prints it, so the
porting table and the model cannot disagree.
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

# Spec tensor name -> the attribute that holds it on the module (PyTorch names are the spec's).
TENSOR_ALIASES: dict[type, dict[str, str]] = {}


def layer_call(layer: Layer, in_shape: tuple[int, ...], naive: frozenset[str] = frozenset()) -> Call:
    if isinstance(layer, Linear):
        return "Linear", (layer.in_features, layer.out_features), {} if layer.bias else {"bias": False}
    if isinstance(layer, Conv2d | ConvTranspose2d):
        name = type(layer).__name__
        args = (layer.in_channels, layer.out_channels, layer.kernel, layer.stride, layer.padding)
        return name, args, {} if layer.bias else {"bias": False}
    if isinstance(layer, BatchNorm):
        name = "BatchNorm2d" if len(in_shape) == 3 else "BatchNorm1d"
        kwargs = {}
        if layer.eps != 1e-5:
            kwargs["eps"] = layer.eps
        momentum = round(1.0 - layer.momentum, 12) if "bn-momentum" in naive else layer.momentum
        if momentum != 0.1:
            kwargs["momentum"] = momentum
        return name, (layer.num_features,), kwargs
    if isinstance(layer, LeakyReLU):
        return "LeakyReLU", () if "leaky-slope" in naive else (layer.slope,), {}
    if isinstance(layer, ReLU | Tanh | Sigmoid | Flatten):
        return type(layer).__name__, (), {}
    if isinstance(layer, MaxPool2d):
        return "MaxPool2d", (layer.kernel, layer.stride, layer.padding), {}
    if isinstance(layer, GlobalAvgPool2d):
        return "AdaptiveAvgPool2d", (1,), {}
    raise TypeError(f"torch backend: no layer for {type(layer).__name__}")



def recipe_calls(spec: GANSpec, naive: frozenset[str] = frozenset()) -> dict[str, str]:
    """What train.py really calls for a spec's recipe, for the porting sheet."""
    r = spec.recipe
    own = {k: native(r.semantics, k, "torch", naive) for k in ("adam-eps", "adam-betas", "bce-clamp")}

    def adam(o) -> str:
        b1, b2 = (b if own["adam-betas"] else float(np.float32(b)) for b in (o.beta1, o.beta2))
        eps = f"eps={o.eps}" if own["adam-eps"] else f"eps={o.eps} / sqrt(1 - beta2^t)"
        lr = f"lr={o.lr}" if own["adam-betas"] else f"lr={o.lr} * (double / float32 bias corrections at t)"
        return f"optim.Adam(params, {lr}, betas=({b1!r}, {b2!r}), {eps})"

    adam_calls = {n: adam(o) for n, o in (("D", r.opt_D), ("G", r.opt_G))}
    bce = "nn.BCELoss()" if own["bce-clamp"] else "Gluon's -(y log(p + 1e-12) + (1 - y) log(1 - p + 1e-12)), mean"
    scale = " / 2" if r.d_loss == "mean" else ""
    return {
        "loss": bce if r.loss == "bce" else "nn.BCEWithLogitsLoss()",
        "optimizer D": adam_calls["D"],
        "optimizer G": adam_calls["G"],
        "D backward": ("errD_real.backward(); errD_fake.backward()" if r.d_backward == "separate"
                       else f"((errD_real + errD_fake){scale}).backward()"),
        "fake seen by D": "fake.detach()" if r.detach_fake else "fake (graph through G)",
        "G step input": "netG(noise) again" if r.regenerate_fake else "the D step's fake",
        "optimizer step": "optimizerD.step(); optimizerG.step()",
        "init": f"numpy draw of {spec.init.name}, loaded with tensor.copy_()",
    }
