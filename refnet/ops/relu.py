"""Rectified linear unit: y = max(x, 0), elementwise, any shape.

Gradient: dL/dx = dy * [x > 0]. At x == 0 the derivative is taken as 0, as in PyTorch.

Forward mode and second order. ReLU is piecewise linear, so its second derivative is zero
almost everywhere; the tangents follow the SAME mask as the first derivative, kinks included
(x == 0 counts as the flat side in all three):

    ty  = tx * [x > 0]                  (relu_forward_jvp)
    tdx = tdy * [x > 0]                 (relu_backward_jvp: no tx term, d^2 relu = 0)
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


def relu_forward_jvp(cache, tx):
    """ty = tx * [x > 0]."""
    y = cache
    return backend.array_module(y).zeros_like(y) if tx is None else tx * (y > 0)


def relu_backward_jvp(dy, tdy, cache, tx=None):
    """Tangent of dx: tdy * [x > 0]; tx does not enter (zero second derivative a.e.)."""
    y = cache
    return backend.array_module(y).zeros_like(y) if tdy is None else tdy * (y > 0)
