"""Fully connected layer: y = x w^T + b, as PyTorch's ``nn.Linear``.

Shapes: x (N, in), w (out, in), b (out,) or None, y (N, out).

    y[n, o] = sum_i x[n, i] w[o, i] + b[o]

Gradient, with dy = dL/dy (N, out):

    dL/dx[n, i] = sum_o dy[n, o] w[o, i]      ->  dx = dy @ w        (N, in)
    dL/dw[o, i] = sum_n dy[n, o] x[n, i]      ->  dw = dy^T @ x      (out, in)
    dL/db[o]    = sum_n dy[n, o]              ->  db = dy.sum(0)     (out,)
"""

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
    x, w, has_bias = cache
    check_shape("dy", dy, (x.shape[0], w.shape[0]), "linear_backward")
    check_dtype("dy", dy, "the forward's x", x, "linear_backward")
    dx = dy @ w
    dw = dy.T @ x
    db = dy.sum(axis=0) if has_bias else None
    return dx, dw, db
