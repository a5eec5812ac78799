"""Modules wrapping the ops, with PyTorch's names and defaults."""

from refnet.nn.module import Module, Parameter, Sequential  # noqa: F401
from refnet.nn.layers import (  # noqa: F401
    AvgPool2d,
    Conv2d,
    Flatten,
    Linear,
    MaxPool2d,
    ReLU,
)
from refnet.nn.norm import BatchNorm1d, BatchNorm2d, LayerNorm, WeightNorm  # noqa: F401
from refnet.nn.models import cnn, freeze, mlp, trainable_parameters  # noqa: F401
