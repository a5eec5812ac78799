"""Layer normalization: statistics per sample, over every axis but the batch axis 0.

Shapes: ``x`` is (N, *S) (e.g. (N, D) or (N, C, H, W)); ``gamma``, ``beta`` are S
(PyTorch's ``normalized_shape = x.shape[1:]``). Flatten each sample to D = prod(S) values:

    mu_n  = (1/D) sum_j x_nj,     var_n = (1/D) sum_j (x_nj - mu_n)^2
    s_n   = 1 / sqrt(var_n + eps),  xhat_nj = (x_nj - mu_n) * s_n
    y_nj  = gamma_j * xhat_nj + beta_j

Gradient: it is batch norm's with the roles of the axes swapped. Per sample n, with
dxhat_j = gamma_j * dy_j, the mean and variance paths (mu_n and var_n depend on the whole
row) give, exactly as in ``batchnorm.py``,

    dx_nj = (s_n / D) * (D * dxhat_nj - sum_k dxhat_nk - xhat_nj * sum_k dxhat_nk xhat_nk)

while the per-feature parameters sum over the batch:

    dgamma_j = sum_n dy_nj * xhat_nj,     dbeta_j = sum_n dy_nj.

dx is orthogonal to 1 and to xhat per sample: the output ignores a shift or a scale of each
sample's whole input, so a weight feeding LN is invariant to scaling the *whole* tensor
(not each row on its own, since the row scales would mix within a sample).
``gamma``/``beta`` may be None (no affine): they act as 1 and 0 and get None gradients.

Forward mode and second order: batch norm's (``batchnorm.py`` derives them), with the
mean E over a sample's D values instead of a channel's, and parameter sums over the batch:

    ts_n  = -s_n^2 E[xhat_n tx_n],      txhat = s (tx - E[tx] - xhat E[xhat tx])
    ty    = gamma txhat + tgamma xhat + tbeta                          (layernorm_forward_jvp)
    Q     = dxhat - E[dxhat] - xhat E[dxhat xhat]        (dx = s Q),   tdxhat = gamma tdy + tgamma dy
    tdx   = ts Q + s (tdxhat - E[tdxhat] - txhat E[dxhat xhat] - xhat E[tdxhat xhat + dxhat txhat])
    tdgamma_j = sum_n (tdy_nj xhat_nj + dy_nj txhat_nj),   tdbeta_j = sum_n tdy_nj
                                                                       (layernorm_backward_jvp)
"""

import math

from refnet import backend
from refnet.ops._checks import check_dtype, check_float, check_shape

_OP = "layernorm_forward"


def layernorm_forward(x, gamma, beta, eps=1e-5):
    """Layer norm over every axis but 0. Returns ``(y, cache)``."""
    if not hasattr(x, "ndim") or x.ndim < 2:
        raise ValueError(f"{_OP}(x): got {getattr(x, 'shape', type(x).__name__)}, "
                         f"expected an array of rank >= 2 (batch, *normalized_shape)")
    check_float("x", x, _OP)
    for name, a in (("gamma", gamma), ("beta", beta)):
        if a is not None:
            check_shape(name, a, x.shape[1:], _OP)
            check_dtype(name, a, "x", x, _OP)
    xp = backend.array_module(x, gamma, beta)
    n = x.shape[0]
    d = math.prod(x.shape[1:])
    x2 = x.reshape(n, d)
    xhat = x2 - x2.mean(axis=1, keepdims=True)
    var = xp.einsum("nd,nd->n", xhat, xhat) / d
    inv_std = 1 / xp.sqrt(var + eps)
    xhat *= inv_std[:, None]
    y = xhat * gamma.reshape(1, d) if gamma is not None else xhat.copy()
    if beta is not None:
        y += beta.reshape(1, d)
    return y.reshape(x.shape), {"xhat": xhat, "gamma": gamma, "beta": beta, "inv_std": inv_std,
                                "shape": x.shape}


def layernorm_backward(dy, cache):
    """Gradients of ``layernorm_forward``: ``(dx, dgamma, dbeta)`` (None where gamma/beta were None)."""
    xhat, gamma, beta, inv_std, shape = (cache[k] for k in ("xhat", "gamma", "beta", "inv_std", "shape"))
    check_shape("dy", dy, shape, "layernorm_backward")
    check_dtype("dy", dy, "the forward's x", xhat, "layernorm_backward")
    xp = backend.array_module(dy, xhat)
    n, d = xhat.shape
    dy2 = dy.reshape(n, d)
    dgamma = xp.einsum("nd,nd->d", dy2, xhat).reshape(shape[1:]) if gamma is not None else None
    dbeta = dy2.sum(axis=0).reshape(shape[1:]) if beta is not None else None
    dxhat = dy2 * gamma.reshape(1, d) if gamma is not None else dy2
    sum_dxhat = dxhat.sum(axis=1)
    sum_dxhat_xhat = xp.einsum("nd,nd->n", dxhat, xhat)
    # dx = s * (dxhat - sum_dxhat/D - xhat * sum_dxhat_xhat/D), built in one buffer
    dx = xhat * (-sum_dxhat_xhat / d)[:, None]
    dx += dxhat
    dx -= (sum_dxhat / d)[:, None]
    dx *= inv_std[:, None]
    return dx.reshape(shape), dgamma, dbeta


def _row_mean(a):
    return a.mean(axis=1, keepdims=True)


def _txhat(xhat, inv_std, tx):
    """s (tx - E[tx] - xhat E[xhat tx]) per row, and E[xhat tx]."""
    e = _row_mean(xhat * tx)
    return inv_std[:, None] * (tx - _row_mean(tx) - xhat * e), e


def layernorm_forward_jvp(cache, tx, tgamma=None, tbeta=None):
    """Tangent of y: gamma txhat + tgamma xhat + tbeta (None tangents are zero)."""
    xhat, gamma, inv_std, shape = cache["xhat"], cache["gamma"], cache["inv_std"], cache["shape"]
    xp = backend.array_module(xhat)
    n, d = xhat.shape
    ty = xp.zeros_like(xhat)
    if tx is not None:
        txhat = _txhat(xhat, inv_std, tx.reshape(n, d))[0]
        ty += txhat * gamma.reshape(1, d) if gamma is not None else txhat
    if tgamma is not None:
        ty += xhat * tgamma.reshape(1, d)
    if tbeta is not None:
        ty += tbeta.reshape(1, d)
    return ty.reshape(shape)


def layernorm_backward_jvp(dy, tdy, cache, tx, tgamma=None, tbeta=None):
    """Tangents of ``layernorm_backward``'s (dx, dgamma, dbeta) (derivation in the module docstring)."""
    xhat, gamma, beta, inv_std, shape = (cache[k] for k in ("xhat", "gamma", "beta", "inv_std", "shape"))
    xp = backend.array_module(dy, xhat)
    n, d = xhat.shape
    dy2 = dy.reshape(n, d)
    tdy2 = xp.zeros_like(dy2) if tdy is None else tdy.reshape(n, d)
    tx2 = xp.zeros_like(xhat) if tx is None else tx.reshape(n, d)
    g = 1.0 if gamma is None else gamma.reshape(1, d)
    s = inv_std[:, None]
    dxhat, tdxhat = g * dy2, g * tdy2
    if tgamma is not None:
        tdxhat = tdxhat + tgamma.reshape(1, d) * dy2
    txhat, e_xtx = _txhat(xhat, inv_std, tx2)
    ts = -s * s * e_xtx
    e_dxhat_xhat = _row_mean(dxhat * xhat)
    q = dxhat - _row_mean(dxhat) - xhat * e_dxhat_xhat
    tdx = ts * q + s * (tdxhat - _row_mean(tdxhat) - txhat * e_dxhat_xhat
                        - xhat * _row_mean(tdxhat * xhat + dxhat * txhat))
    tdgamma = (tdy2 * xhat + dy2 * txhat).sum(axis=0).reshape(shape[1:]) if gamma is not None else None
    tdbeta = tdy2.sum(axis=0).reshape(shape[1:]) if beta is not None else None
    return tdx.reshape(shape), tdgamma, tdbeta
