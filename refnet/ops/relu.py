"""Rectified linear unit: y = max(x, 0), elementwise, any shape.

Gradient: dL/dx = dy * [x > 0]. At x == 0 the derivative is taken as 0, as in PyTorch.
"""

from refnet import backend
from refnet.ops._checks import check_dtype, check_float, check_shape


def relu_forward(x):
    """y = max(x, 0), same shape and dtype as x. Returns (y, cache)."""
    check_float("x", x, "relu_forward")
    xp = backend.array_module(x)
    y = xp.maximum(x, 0)         # a Python 0 keeps x's dtype; NaN propagates, as in PyTorch
    # y > 0 exactly where x > 0, and y is kept alive by the next layer anyway, so caching
    # y instead of x costs no extra memory.
    return y, y


def relu_backward(dy, cache):
    """dx = dy * [x > 0]."""
    y = cache
    check_shape("dy", dy, y.shape, "relu_backward")
    check_dtype("dy", dy, "the forward's x", y, "relu_backward")
    return dy * (y > 0)
