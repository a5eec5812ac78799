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

How the code computes this (the same ideas as ``batchnorm.py``, with the reduction over
every axis but 0). LN is memory-bound: the time goes to passes over x-sized arrays, so
  * Everything runs block by block (``_BLOCK`` rows' worth of values, 2 MB in float32), each
    block's passes while it stays in cache, and the blocks run on ``_chunks.threads()``
    threads (two on the machines measured; ``_chunks.run_blocks``; rows are independent,
    the column sums are kept per block and added at the end). Inside a block there is no
    BLAS matrix product, only NumPy's own loops: row sums by einsum, row dot products by
    ``vecdot`` (its BLAS dot kept on one thread by pieces of at most ``_DOT`` values:
    ``_row_dots``), column sums by einsum. (The version before used BLAS matrix-vector products, faster on one thread,
    but a multithreaded BLAS split every one of those small calls across the cores: on a
    busy machine each call waited for a descheduled thread (170 ms for forward+backward instead of
    4.5 in refnet bench), and its spinning threads slowed the next op.)
  * Statistics in one pass where it is safe: var = mean(x^2) - mu^2, used when mu^2 <= var
    in every row (at most a factor 2 lost to cancellation, the rounding of the two-pass
    sum); otherwise (rare) the rows where it fails are centred (x - mu, shift 0) and get
    the two-pass variance. The cache holds that x, the per-row shift c (mu, or 0 where
    centred) and s, not xhat: xhat = (x - c) s.
  * Backward per block, from w = s dy (built in dx's block) and x - c (a scratch block):
    with A_n = sum_k dxhat_nk and B_n = sum_k dxhat_nk xhat_nk = sum_k (w gamma)_nk (x - c)_nk,
    the formula above reads

        dx_n = s_n dxhat_n - s_n^2 (B_n / D) (x_n - c_n) - s_n A_n / D,   s_n dxhat_n = (w gamma)_n

    and dgamma = sum_n w_n (x_n - c_n) = sum_n dy_n xhat_n, dbeta = sum_n dy_n from the
    same block: ten passes over a block, all while it is in cache.
On the bench shape (128, 64, 16, 16), fastest calls on a shared 2-core machine: PyTorch CPU
(two threads) 1.8-2.1 ms; this code 3.6-3.9 ms on one thread, 2.6-3.2 ms on two, so
1.3-1.5x. What is left is NumPy's one operation per pass: about 16 passes over x-sized data
where PyTorch's fused kernels make about 5, and two threads sharing the cache bandwidth
gain 1.4x on them where PyTorch's gain 1.7x.
"""

import math

from refnet import backend
from refnet.ops._checks import check_dtype, check_float, check_shape
from refnet.ops._chunks import row_blocks, run_blocks

_OP = "layernorm_forward"
# values per block of rows, 2 MB of float32: on the bench shape the fastest of 2^17 .. 2^20
# (forward+backward, fastest of 800 calls each on a shared 2-core machine; two threads:
# 2.6 ms against 4.4, 3.0 and 2.7; one thread: 3.8 ms against 4.6, 4.0 and 4.0)
_BLOCK = 2 ** 19
_DOT = 8192    # longest row piece for vecdot (see _row_dots)


def _row_dots(a, b, xp):
    """sum_j a_nj b_nj per row, without materializing a*b (``vecdot`` where the array module
    has it: a fused loop, faster than einsum). NumPy's vecdot calls BLAS's sdot, which
    OpenBLAS splits across its threads above 10000 values, inside ``run_blocks``'s threads:
    so long rows are summed in pieces of at most ``_DOT`` values."""
    vecdot = getattr(xp, "vecdot", None)
    n, d = a.shape
    if vecdot is not None and d <= _DOT:
        return vecdot(a, b)
    piece = math.gcd(d, _DOT)
    if vecdot is None or piece < 256:
        return xp.einsum("nd,nd->n", a, xp.broadcast_to(b, a.shape))
    return vecdot(a.reshape(n, -1, piece), b.reshape(b.shape[:-1] + (-1, piece))).sum(axis=-1)


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
    blocks = row_blocks(n, d, xp, _BLOCK)
    y = xp.empty_like(x2)
    shift, inv_std = xp.empty(n, dtype=x.dtype), xp.empty(n, dtype=x.dtype)
    safe = [True] * len(blocks)

    def normalize(k):
        r = blocks[k]
        xb, yb = x2[r], y[r]
        mu = xp.einsum("nd->n", xb) / d
        var = _row_dots(xb, xb, xp) / d - mu * mu          # one pass: see the module docstring
        if not bool((mu * mu <= var).all()):
            safe[k] = False                                # cancellation: redone below
            return
        s = 1 / xp.sqrt(var + eps)
        shift[r], inv_std[r] = mu, s
        _affine(xb, mu, s, gamma, beta, d, xp, out=yb)
    run_blocks(normalize, len(blocks))
    if not all(safe):
        x2, shift, inv_std = _centred_statistics(x2, eps, xp)
        _affine(x2, shift, inv_std, gamma, beta, d, xp, out=y)
    return y.reshape(x.shape), {"x": x2, "shift": shift, "inv_std": inv_std, "gamma": gamma,
                                "beta": beta, "shape": x.shape}


def _affine(x2, shift, inv_std, gamma, beta, d, xp, out):
    """out = gamma * (x2 - shift) * inv_std + beta, per row shift and inv_std."""
    xp.subtract(x2, shift[:, None], out=out)
    out *= inv_std[:, None]                                # xhat
    if gamma is not None:
        out *= gamma.reshape(d)
    if beta is not None:
        out += beta.reshape(d)


def _centred_statistics(x2, eps, xp):
    """(x2 with the rows where mu^2 > var centred, shift (mu, or 0 where centred), inv_std)."""
    d = x2.shape[1]
    mu = xp.einsum("nd->n", x2) / d
    var = _row_dots(x2, x2, xp) / d - mu * mu
    bad = ~(mu * mu <= var)
    x2 = x2 - xp.where(bad, mu, 0)[:, None]
    shift = xp.where(bad, 0, mu).astype(x2.dtype)
    var = xp.where(bad, _row_dots(x2, x2, xp) / d, var)
    return x2, shift, 1 / xp.sqrt(var + eps)


def layernorm_backward(dy, cache):
    """Gradients of ``layernorm_forward``: ``(dx, dgamma, dbeta)`` (None where gamma/beta were None)."""
    x2, c, s, gamma, beta, shape = (cache[k] for k in ("x", "shift", "inv_std", "gamma", "beta", "shape"))
    check_shape("dy", dy, shape, "layernorm_backward")
    check_dtype("dy", dy, "the forward's x", x2, "layernorm_backward")
    xp = backend.array_module(dy, x2)
    n, d = x2.shape
    dy2 = dy.reshape(n, d)
    blocks = row_blocks(n, d, xp, _BLOCK)
    col_sums = xp.zeros((2, len(blocks), d), dtype=dy.dtype)   # per block: dgamma, dbeta
    dx = xp.empty_like(dy2)

    def block(k):
        r = blocks[k]
        dyb, s_col = dy2[r], s[r][:, None]
        w = xp.multiply(dyb, s_col, out=dx[r])            # s dy, in dx's block until dx is built
        xc = x2[r] - c[r][:, None]                        # xhat / s
        if gamma is not None:
            col_sums[0, k] = xp.einsum("nd,nd->d", w, xc)  # sum_n dy_n xhat_n
            w *= gamma.reshape(d)                         # s dxhat
        if beta is not None:
            col_sums[1, k] = xp.einsum("nd->d", dyb)
        a = xp.einsum("nd->n", w)                         # s A
        b = _row_dots(w, xc, xp)                          # B
        xc *= (s[r] * s[r] * b / d)[:, None]
        w -= xc
        w -= (a / d)[:, None]
    run_blocks(block, len(blocks))
    col_sums = col_sums.sum(axis=1)
    return (dx.reshape(shape), None if gamma is None else col_sums[0].reshape(shape[1:]),
            None if beta is None else col_sums[1].reshape(shape[1:]))


def _xhat(cache):
    """xhat (N, D) rebuilt from the cache (which keeps x, its shift and s, not xhat)."""
    return (cache["x"] - cache["shift"][:, None]) * cache["inv_std"][:, None]


def _row_mean(a):
    return a.mean(axis=1, keepdims=True)


def _txhat(xhat, inv_std, tx):
    """s (tx - E[tx] - xhat E[xhat tx]) per row, and E[xhat tx]."""
    e = _row_mean(xhat * tx)
    return inv_std[:, None] * (tx - _row_mean(tx) - xhat * e), e


def layernorm_forward_jvp(cache, tx, tgamma=None, tbeta=None):
    """Tangent of y: gamma txhat + tgamma xhat + tbeta (None tangents are zero)."""
    xhat, gamma, inv_std, shape = _xhat(cache), cache["gamma"], cache["inv_std"], cache["shape"]
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
    gamma, beta, inv_std, shape = (cache[k] for k in ("gamma", "beta", "inv_std", "shape"))
    xhat = _xhat(cache)
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
