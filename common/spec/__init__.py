"""Architecture as data: layers, model and GAN specs, recipes, and the spec factories."""

from .layers import (  # noqa: F401
    BatchNorm,
    Conv2d,
    ConvTranspose2d,
    Flatten,
    Layer,
    LeakyReLU,
    Linear,
    ReLU,
    Sigmoid,
    Tanh,
    tensor_names,
)
from .model import Adam, GANRecipe, GANSpec, InitScheme, ModelSpec  # noqa: F401
