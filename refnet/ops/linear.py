"""Fully connected layer: y = x w^T + b, as PyTorch's ``nn.Linear``.

Shapes: x (N, in), w (out, in), b (out,) or None, y (N, out).

    y[n, o] = sum_i x[n, i] w[o, i] + b[o]

Gradient, with dy = dL/dy (N, out):

    dL/dx[n, i] = sum_o dy[n, o] w[o, i]      ->  dx = dy @ w        (N, in)
    dL/dw[o, i] = sum_n dy[n, o] x[n, i]      ->  dw = dy^T @ x      (out, in)
    dL/db[o]    = sum_n dy[n, o]              ->  db = dy.sum(0)     (out,)

Forward mode and second order (tangents tx, tw, tb of the inputs; tdy of dy). y is
bilinear in (x, w), so the product rule is the whole story:

    ty  = tx @ w^T + x @ tw^T + tb                       (linear_forward_jvp)
    tdx = tdy @ w + dy @ tw                              (linear_backward_jvp)
    tdw = tdy^T @ x + dy^T @ tx
    tdb = tdy.sum(0)

A None tangent is zero (its products are skipped).
"""

from refnet import backend
from refnet.ops._checks import check_dtype, check_float, check_ndim, check_shape

_OP = "linear_forward"


def linear_forward(x, w, b=None):
    """y = x @ w.T + b. Returns (y, cache); y has x's dtype (float32 stays float32)."""
    check_ndim("x", x, 2, _OP)
    check_ndim("w", w, 2, _OP)
    check_float("x", x, _OP)
    check_dtype("w", w, "x", x, _OP)
    if x.shape[1] != w.shape[1]:
        raise ValueError(f"{_OP}(x): x has shape {tuple(x.shape)}, i.e. {x.shape[1]} features, "
                         f"but w has shape {tuple(w.shape)}, expecting {w.shape[1]} features")
    if b is not None:
        check_shape("b", b, (w.shape[0],), _OP)
        check_dtype("b", b, "x", x, _OP)
    y = x @ w.T                  # BLAS reads w.T in place: no transpose copy
    if b is not None:
        y += b                   # in place: no second (N, out) temporary
    return y, (x, w, b is not None)


def linear_backward(dy, cache):
    """Returns (dx, dw, db): dx = dy @ w, dw = dy^T @ x, db = dy.sum(0) (None without bias)."""
    x, w, _ = cache
    check_shape("dy", dy, (x.shape[0], w.shape[0]), "linear_backward")
    check_dtype("dy", dy, "the forward's x", x, "linear_backward")
    return (dy @ w,) + linear_backward_params(dy, cache)


def linear_backward_params(dy, cache):
    """(dw, db) alone, without dx's product: all that a network's first layer needs, whose
    input is data and needs no gradient."""
    x, w, has_bias = cache
    check_shape("dy", dy, (x.shape[0], w.shape[0]), "linear_backward_params")
    check_dtype("dy", dy, "the forward's x", x, "linear_backward_params")
    return dy.T @ x, (dy.sum(axis=0) if has_bias else None)


def linear_forward_jvp(cache, tx, tw, tb=None):
    """Tangent of y: ty = tx @ w.T + x @ tw.T + tb (None tangents are zero)."""
    x, w, _ = cache
    ty = backend.array_module(x, w).zeros((x.shape[0], w.shape[0]), dtype=x.dtype)
    if tx is not None:
        ty += tx @ w.T
    if tw is not None:
        ty += x @ tw.T
    if tb is not None:
        ty += tb
    return ty


def linear_backward_jvp(dy, tdy, cache, tx, tw, tb=None):
    """Tangents of (dx, dw, db): (tdy @ w + dy @ tw, tdy^T @ x + dy^T @ tx, tdy.sum(0))."""
    x, w, has_bias = cache
    xp = backend.array_module(dy, x, w)
    tdy = xp.zeros_like(dy) if tdy is None else tdy
    tdx, tdw = tdy @ w, tdy.T @ x
    if tw is not None:
        tdx += dy @ tw
    if tx is not None:
        tdw += dy.T @ tx
    return tdx, tdw, (tdy.sum(axis=0) if has_bias else None)
