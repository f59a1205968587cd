"""Architecture as data: layers, model and GAN specs, recipes, and the spec factories."""

from .layers import (  # noqa: F401
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
    Residual,
    Sequential,
    Sigmoid,
    Tanh,
    tensor_names,
)
from .model import Adam, GANRecipe, GANSpec, InitScheme, ModelSpec  # noqa: F401
