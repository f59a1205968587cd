"""FLOPs of a spec, in pure Python from common.shapes.infer: what the step-cost benchmarks divide by.

Convention (stated so numbers can be compared with other counters):
- One multiply-add is 2 FLOPs.
- Conv2d:          2 * C_in * k * k * C_out * H_out * W_out   (+ C_out * H_out * W_out with a bias)
- ConvTranspose2d: 2 * C_in * k * k * C_out * H_in * W_in     (every input pixel scatters a k x k x C_out
                   patch; + C_out * H_out * W_out with a bias)
- Linear:          2 * in * out                               (+ out with a bias)
- BatchNorm:       4 per element (subtract mean, multiply by 1/std, scale, shift); the batch
                   statistics themselves and activations, losses and the optimizer are not counted.
Counts are per sample; multiply by the batch size.

A backward pass costs 2x its forward (gradients for the inputs and for the weights), so a pass
that is run forward and backward costs 3x forward. step_flops counts the passes the GAN recipe
does in one D+G step (see GANRecipe):
- D on real:   3 F_D
- G forward:   1 F_G, or 3 F_G when the D step does not detach the fake (the graph runs through G)
- D on fake:   3 F_D
- G step:      3 F_D (D forward and backward into its input) + 2 F_G (G backward), + 1 F_G more
               when the recipe regenerates the fake
"""

from __future__ import annotations

import math

from .shapes import infer, output_shape
from .spec.finetune import FinetuneSpec
from .spec.layers import BatchNorm, Conv2d, ConvTranspose2d, Linear, Residual, Sequential
from .spec.model import GANSpec, ModelSpec

BN_FLOPS_PER_ELEMENT = 4
BACKWARD_FACTOR = 2


def _chain_flops(layers: tuple, in_shape: tuple[int, ...]) -> int:
    total, shape = 0, tuple(in_shape)
    for layer in layers:
        out = output_shape(layer, shape)
        total += layer_flops(layer, shape, out)
        shape = out
    return total


def layer_flops(layer, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> int:
    """Forward FLOPs of one layer for one sample (0 for activations, pooling, Flatten; containers
    sum their layers, a residual block adds 1 per output element for the sum)."""
    if isinstance(layer, Sequential):
        return _chain_flops(layer.layers, in_shape)
    if isinstance(layer, Residual):
        return (_chain_flops(layer.body, in_shape) + _chain_flops(layer.downsample, in_shape)
                + math.prod(out_shape))
    if isinstance(layer, Conv2d):
        spatial = math.prod(out_shape[1:])
        return 2 * layer.in_channels * layer.kernel ** 2 * layer.out_channels * spatial + (
            layer.out_channels * spatial if layer.bias else 0)
    if isinstance(layer, ConvTranspose2d):
        return 2 * layer.in_channels * layer.kernel ** 2 * layer.out_channels * math.prod(in_shape[1:]) + (
            math.prod(out_shape) if layer.bias else 0)
    if isinstance(layer, Linear):
        rows = math.prod(in_shape[:-1])
        return rows * (2 * layer.in_features * layer.out_features + (layer.out_features if layer.bias else 0))
    if isinstance(layer, BatchNorm):
        return BN_FLOPS_PER_ELEMENT * math.prod(out_shape)
    return 0


def forward_flops(model: ModelSpec) -> int:
    """Forward FLOPs of a whole stack for one sample."""
    return sum(layer_flops(i.layer, i.in_shape, i.out_shape) for i in infer(model))


def per_layer(model: ModelSpec) -> dict[str, int]:
    return {i.name: layer_flops(i.layer, i.in_shape, i.out_shape) for i in infer(model)}


def step_passes(spec: GANSpec) -> dict[str, int]:
    """How many forward-equivalents of G and of D one D+G step of the recipe costs."""
    r = spec.recipe
    d = 3 + 3 + 3  # D real, D fake, D in the G step
    g = (1 if r.detach_fake else 3) + BACKWARD_FACTOR + (1 if r.regenerate_fake else 0)
    return {"G": g, "D": d}


def step_flops(spec: GANSpec, batch: int) -> int:
    """FLOPs of one full training step (D step + G step) at a batch size, by the convention above."""
    p = step_passes(spec)
    return batch * (p["G"] * forward_flops(spec.G) + p["D"] * forward_flops(spec.D))


def finetune_step_flops(spec: FinetuneSpec, batch: int) -> int:
    """One fine-tune step: a frozen backbone runs forward only (nothing upstream needs a
    gradient), the head forward and backward (3x); an unfrozen backbone costs 3x too."""
    backbone = (1 if spec.recipe.freeze_backbone else 1 + BACKWARD_FACTOR) * forward_flops(spec.backbone)
    return batch * (backbone + (1 + BACKWARD_FACTOR) * forward_flops(spec.head))
