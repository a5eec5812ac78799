"""Modules wrapping the ops, with PyTorch's names and defaults."""

from refnet.nn.module import Module, Parameter, Sequential  # noqa: F401
