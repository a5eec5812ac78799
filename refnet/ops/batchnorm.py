"""Batch normalization: statistics over the batch (every axis but the channel axis 1).

Shapes: ``x`` is (N, C) or (N, C, L) or (N, C, H, W); ``gamma``, ``beta``, ``mean``, ``var``
are (C,). Each channel c is normalized over its m = N*L (or N*H*W) values:

    mu    = (1/m) sum_i x_i                    (sums over every axis but 1)
    var   = (1/m) sum_i (x_i - mu)^2           (biased, as PyTorch normalizes)
    s     = 1 / sqrt(var + eps)
    xhat  = (x - mu) * s
    y     = gamma * xhat + beta

Gradient (training mode). With dxhat = gamma * dy:

    dbeta  = sum_i dy_i
    dgamma = sum_i dy_i * xhat_i
    dvar   = sum_i dxhat_i (x_i - mu) * (-1/2) s^3
    dmu    = -s sum_i dxhat_i  +  dvar * (-2/m) sum_i (x_i - mu)      (the last sum is 0)
    dx_i   = s dxhat_i + dvar * 2 (x_i - mu) / m + dmu / m

Since x_i - mu = xhat_i / s: dvar = -(1/2) s^2 gamma dgamma, so the var term of dx_i is
-s gamma xhat_i dgamma / m; the mu term is -s gamma dbeta / m. Collecting the three terms
gives the compact form used below:

    dx = (1/m) * gamma * s * (m * dy - dbeta - xhat * dgamma)

Why the mean's (and the variance's) gradient path matters: mu and var are functions of the
whole batch, so dx_i depends on every dy_j. Treating mu as a constant drops the
``- dbeta`` term: then dx no longer sums to zero over the batch although y ignores any
per-channel shift of x, so a bias before BN would get a gradient it cannot have. Likewise
dropping the var path drops ``- xhat * dgamma``. Keeping both makes dx orthogonal to 1 and
to xhat per channel: the output is invariant to shifting and to scaling each channel's
input, which is the scale invariance this whole project studies (<w, dL/dw> = 0).

How the training-mode code computes this (one x-sized array and two passes fewer per
forward than the textbook order; on a 2-core CPU the three BatchNorm2d layers of a
3-block CNN step at batch 128 went from 20 to 15 ms, thread CPU time):
  * Statistics in one pass where it is safe: var = mean(x^2) - mu^2 needs no centred
    copy of x, but loses about log10(mean(x^2) / var) digits to cancellation. When
    mu^2 <= var in every channel that is at most a factor 2 -- the rounding of the
    two-pass sum itself -- so the forward uses it and caches x (kept alive anyway: it is
    the previous layer's output); otherwise it centres once, xc = x - mu, takes the
    two-pass variance of xc and caches xc. Either way the cache holds xc and the shift
    ``c`` (mu or 0) with xhat = (xc - c) * s, and xhat itself is never stored.
  * y = xc * (gamma s) + (beta - c gamma s): one new array, two passes.
  * Backward, with every per-channel factor folded before touching a big array:
        dgamma = s * (sum_i dy_i xc_i - c * dbeta)     (c = mu only where |mu| <= std)
        dx     = k * (xc * a + dy + b),   k = gamma s,  a = -s dgamma / m,  b = -dbeta / m - c a
    four passes and one new array besides the two reductions.
  * Each pass at NumPy's full speed (``_per_channel``, ``_channel_sums``, ``_sum_products``):
    per-channel factors repeated over H*W, so a product is one contiguous loop per sample;
    channel sums with einsum; sums of products as ``vecdot`` along H*W. No BLAS matrix
    product (vecdot's BLAS dot splits across threads only above 10000 values): a
    multithreaded BLAS splits even these small memory-bound calls across the cores, and its
    threads then spin for a while, taking a core from the next op (PyTorch's BN took 6 ms
    instead of 3.5 after them). Forward+backward on (128, 64, 16, 16) went from 4.4-4.9 ms
    to 2.4-2.8 ms (one thread; PyTorch's, on two threads: about 3.4 ms).

Eval mode (``batchnorm_eval_forward``) normalizes with given running ``mean`` and ``var``:
y is then an affine function of x per channel, and

    dx = gamma * s * dy,   dgamma = sum dy * xhat,   dbeta = sum dy,
    dmean = -gamma * s * dbeta,   dvar = -(1/2) * gamma * s^2 * dgamma.

``gamma``/``beta`` may be None (``affine=False``): they act as 1 and 0 and get None gradients.

Forward mode (training mode; tangents tx, tgamma, tbeta; E = the mean over a channel's m
values). From tmu = E[tx] and tvar = 2 E[(x - mu) tx] = (2/s) E[xhat tx]:

    ts    = -(1/2) s^3 tvar = -s^2 E[xhat tx]
    txhat = s (tx - tmu) + (x - mu) ts = s (tx - E[tx] - xhat E[xhat tx])
    ty    = gamma txhat + tgamma xhat + tbeta                       (batchnorm_forward_jvp)

txhat is s times tx projected off 1 and xhat: the same projection as dx, as it must be.

Second order (batchnorm_backward_jvp; tdy the tangent of dy). Write the gradient as
dx = s Q with dxhat = gamma dy and Q = dxhat - E[dxhat] - xhat E[dxhat xhat]. The product
rule on each factor (tdxhat = gamma tdy + tgamma dy):

    tdx     = ts Q + s (tdxhat - E[tdxhat] - txhat E[dxhat xhat]
                        - xhat E[tdxhat xhat + dxhat txhat])
    tdgamma = sum_i (tdy_i xhat_i + dy_i txhat_i),     tdbeta = sum_i tdy_i

How the code computes it: with a1 = E[dxhat], a2 = E[dxhat xhat], b1 = E[tdxhat],
b2 = E[tdxhat xhat], c1 = E[tx], c2 = E[xhat tx] (so ts = -s^2 c2) and
d = E[dxhat txhat], expanding Q and txhat collects tdx into per-channel factors times the
four big arrays,

    tdx = (ts gamma + s tgamma) dy + s gamma tdy - s^2 a2 tx
          + (2 s^2 c2 a2 - s (b2 + d)) xhat + (-ts a1 - s b1 + s^2 c1 a2),

and tdgamma = m (E[tdy xhat] + E[dy txhat]), all from per-channel means (``_sum_products``, no
products materialized); likewise ty = gamma s tx + (tgamma - gamma s c2) xhat - gamma s c1 + tbeta.

``ts Q`` is the variance's term: the tangent of var moving s = 1/sqrt(var + eps), which
multiplies every path of dx (the term a planted error drops in the tests). At eps = 0 the
output is invariant to scaling x, and so are these: tdx(c x; tx) = tdx(x; tx/c) / c, the
per-layer H(cw) = H(w)/c^2 of theory/second_order.py.

Eval mode (``batchnorm_eval_forward_jvp`` / ``batchnorm_eval_backward_jvp``; tangents of
the given mean and var allowed too). With k = gamma s, ts = -(1/2) s^3 tvar and
tk = tgamma s + gamma ts:

    txhat = s (tx - tmean) + (x - mean) ts = s (tx - tmean) - (1/2) s^2 xhat tvar
    ty    = gamma txhat + tgamma xhat + tbeta
    tdx   = tk dy + k tdy,     tdgamma = sum (tdy xhat + dy txhat),    tdbeta = sum tdy
    tdmean = -tk dbeta - k tdbeta,
    tdvar  = -(1/2) (tk s + k ts) dgamma - (1/2) k s tdgamma
"""

import math

from refnet import backend
from refnet.ops._checks import check_dtype, check_float, check_ndim, check_shape

_OP = "batchnorm_forward"


def _per_channel(a, x):
    """(C,) -> (1, C, *x.shape[2:]), each channel's value repeated over its positions. An
    operand of shape (1, C, 1, 1) would make NumPy run N*C short loops over H*W values; the
    repeated one is read contiguously with x, in one loop of C*H*W values per sample: about
    twice as fast on (128, 64, 16, 16), for a copy of C*H*W values."""
    spatial = x.shape[2:]
    return a.repeat(math.prod(spatial)).reshape((1, -1) + spatial)


def _channel_sums(a, xp):
    """sum over every axis but 1, in one pass (einsum's loop: 3x faster than ``a.sum(axes)``)."""
    n, c = a.shape[:2]
    return xp.einsum("ncl->c", a.reshape(n, c, -1))


def _sum_products(a, b, xp):
    """sum over every axis but 1 of a*b, without materializing a*b: dot products along each
    (sample, channel)'s positions (``vecdot``, a fused loop; einsum where there is one
    position per channel, or no vecdot), then a short sum over the batch."""
    n, c = a.shape[:2]
    vecdot = getattr(xp, "vecdot", None)
    if a.ndim == 2 or vecdot is None:
        return xp.einsum("ncl,ncl->c", a.reshape(n, c, -1), b.reshape(n, c, -1))
    return vecdot(a.reshape(n * c, -1), b.reshape(n * c, -1)).reshape(n, c).sum(axis=0)


def _check(x, gamma, beta, op, extra=()):
    check_ndim("x", x, (2, 3, 4), op)
    check_float("x", x, op)
    c = x.shape[1]
    for name, a in (("gamma", gamma), ("beta", beta)) + tuple(extra):
        if a is not None:
            check_shape(name, a, (c,), op)
            check_dtype(name, a, "x", x, op)


def batchnorm_forward(x, gamma, beta, eps=1e-5):
    """Training-mode batch norm with batch statistics. Returns ``(y, cache)``.

    ``cache["mean"]`` and ``cache["var"]`` (shape (C,), var biased) are the batch statistics,
    for a module's running averages. Raises ValueError when a channel has a single value
    (m = 1): its variance is 0 and the output would be identically beta.
    """
    _check(x, gamma, beta, _OP)
    m = x.size // x.shape[1]
    if m < 2:
        raise ValueError(f"{_OP}(x): expected more than 1 value per channel when training, "
                         f"got input of shape {tuple(x.shape)}")
    xp = backend.array_module(x, gamma, beta)
    mean = _channel_sums(x, xp) / m
    var = _sum_products(x, x, xp) / m - mean * mean          # one pass: see the module docstring
    if bool((mean * mean <= var).all()):
        xc, shift = x, mean
    else:                                                    # cancellation: centre, two passes
        xc, shift = x - _per_channel(mean, x), xp.zeros_like(mean)
        var = _sum_products(xc, xc, xp) / m
    inv_std = 1 / xp.sqrt(var + eps)
    scale = inv_std if gamma is None else gamma * inv_std
    y = xc * _per_channel(scale, x)
    y += _per_channel(-shift * scale if beta is None else beta - shift * scale, x)
    cache = {"xc": xc, "shift": shift, "gamma": gamma, "beta": beta, "inv_std": inv_std,
             "mean": mean, "var": var}
    return y, cache


def _affine(xhat, gamma, beta):
    y = xhat * _per_channel(gamma, xhat) if gamma is not None else xhat.copy()
    if beta is not None:
        y += _per_channel(beta, xhat)
    return y


def batchnorm_backward(dy, cache):
    """Gradients of ``batchnorm_forward``: ``(dx, dgamma, dbeta)`` (None where gamma/beta were None)."""
    xc, shift, gamma, beta = cache["xc"], cache["shift"], cache["gamma"], cache["beta"]
    inv_std = cache["inv_std"]
    check_shape("dy", dy, xc.shape, "batchnorm_backward")
    check_dtype("dy", dy, "the forward's x", xc, "batchnorm_backward")
    xp = backend.array_module(dy, xc)
    m = xc.size // xc.shape[1]
    dbeta = _channel_sums(dy, xp)
    dgamma = inv_std * (_sum_products(dy, xc, xp) - shift * dbeta)   # = sum_i dy_i * xhat_i
    k = inv_std if gamma is None else gamma * inv_std
    a = -inv_std * dgamma / m
    # dx = k * (dy - dbeta/m - xhat * dgamma/m) = k * (xc * a + dy + b), built in one buffer
    dx = xc * _per_channel(a, xc)
    dx += dy
    dx += _per_channel(-dbeta / m - shift * a, xc)
    dx *= _per_channel(k, xc)
    return dx, (dgamma if gamma is not None else None), (dbeta if beta is not None else None)


def batchnorm_eval_forward(x, gamma, beta, mean, var, eps=1e-5):
    """Eval-mode batch norm with given statistics ``mean``, ``var`` (C,). Returns ``(y, cache)``."""
    op = "batchnorm_eval_forward"
    _check(x, gamma, beta, op, extra=(("mean", mean), ("var", var)))
    xp = backend.array_module(x, gamma, beta, mean, var)
    inv_std = 1 / xp.sqrt(var + eps)
    xhat = x - _per_channel(mean, x)
    xhat *= _per_channel(inv_std, x)
    y = _affine(xhat, gamma, beta)
    return y, {"xhat": xhat, "gamma": gamma, "beta": beta, "inv_std": inv_std}


def batchnorm_eval_backward(dy, cache):
    """Gradients of ``batchnorm_eval_forward``: ``(dx, dgamma, dbeta, dmean, dvar)``."""
    xhat, gamma, beta, inv_std = cache["xhat"], cache["gamma"], cache["beta"], cache["inv_std"]
    check_shape("dy", dy, xhat.shape, "batchnorm_eval_backward")
    check_dtype("dy", dy, "the forward's x", xhat, "batchnorm_eval_backward")
    xp = backend.array_module(dy, xhat)
    dbeta = _channel_sums(dy, xp)
    dgamma = _sum_products(dy, xhat, xp)
    k = inv_std if gamma is None else gamma * inv_std
    dx = dy * _per_channel(k, dy)
    dmean = -k * dbeta
    dvar = -0.5 * k * inv_std * dgamma
    return dx, (dgamma if gamma is not None else None), (dbeta if beta is not None else None), dmean, dvar


def _or_zeros(t, like, xp):
    return xp.zeros_like(like) if t is None else t


def _means(a, b, xp, m):
    """E[a b] per channel (over every axis but 1), without materializing a b."""
    return _sum_products(a, b, xp) / m


def batchnorm_forward_jvp(cache, tx, tgamma=None, tbeta=None):
    """Tangent of y (training mode): gamma s (tx - E[tx] - xhat E[xhat tx]) + tgamma xhat + tbeta,
    computed as k_tx tx + k_xc xc + k_0 (per-channel factors; module docstring)."""
    xc, shift, gamma, s = cache["xc"], cache["shift"], cache["gamma"], cache["inv_std"]
    xp = backend.array_module(xc)
    m = xc.size // xc.shape[1]
    g = xp.ones_like(s) if gamma is None else gamma
    tg = xp.zeros_like(s) if tgamma is None else tgamma
    k_xhat, k_0 = tg, xp.zeros_like(s) if tbeta is None else tbeta
    if tx is not None:
        e_tx = _channel_sums(tx, xp) / m
        e_xhat_tx = s * (_means(xc, tx, xp, m) - shift * e_tx)
        k_xhat = tg - g * s * e_xhat_tx
        k_0 = k_0 - g * s * e_tx
    ty = xc * _per_channel(k_xhat * s, xc)                      # xhat = s (xc - shift)
    if tx is not None:
        ty += tx * _per_channel(g * s, xc)
    ty += _per_channel(k_0 - k_xhat * s * shift, xc)
    return ty


def batchnorm_backward_jvp(dy, tdy, cache, tx, tgamma=None, tbeta=None):
    """Tangents of ``batchnorm_backward``'s (dx, dgamma, dbeta): the module docstring's tdx,
    expanded into k_dy dy + k_tdy tdy + k_tx tx + k_xc xc + k_0 with per-channel factors
    from seven per-channel means, so that no x-sized temporary but the result is made."""
    xc, shift, gamma, beta, s = cache["xc"], cache["shift"], cache["gamma"], cache["beta"], cache["inv_std"]
    xp = backend.array_module(dy, xc)
    m = xc.size // xc.shape[1]
    g = xp.ones_like(s) if gamma is None else gamma
    tg = xp.zeros_like(s) if tgamma is None else tgamma
    tx, tdy = _or_zeros(tx, xc, xp), _or_zeros(tdy, dy, xp)
    e_dy, e_tdy, e_tx = (_channel_sums(a, xp) / m for a in (dy, tdy, tx))
    e_dy_xhat = s * (_means(dy, xc, xp, m) - shift * e_dy)
    e_tdy_xhat = s * (_means(tdy, xc, xp, m) - shift * e_tdy)
    e_xhat_tx = s * (_means(xc, tx, xp, m) - shift * e_tx)
    e_dy_txhat = s * (_means(dy, tx, xp, m) - e_tx * e_dy - e_xhat_tx * e_dy_xhat)   # E[dy txhat]
    a1, a2 = g * e_dy, g * e_dy_xhat                            # E[dxhat], E[dxhat xhat]
    b1, b2 = g * e_tdy + tg * e_dy, g * e_tdy_xhat + tg * e_dy_xhat   # E[tdxhat], E[tdxhat xhat]
    ts = -s * s * e_xhat_tx
    k_xhat = 2 * s * s * e_xhat_tx * a2 - s * (b2 + g * e_dy_txhat)
    k_0 = -ts * a1 - s * b1 + s * s * e_tx * a2
    tdx = dy * _per_channel(ts * g + s * tg, dy)
    tdx += tdy * _per_channel(s * g, dy)
    tdx += tx * _per_channel(-s * s * a2, dy)
    tdx += xc * _per_channel(k_xhat * s, dy)                    # xhat = s (xc - shift)
    tdx += _per_channel(k_0 - k_xhat * s * shift, dy)
    tdgamma = m * (e_tdy_xhat + e_dy_txhat) if gamma is not None else None
    tdbeta = m * e_tdy if beta is not None else None
    return tdx, tdgamma, tdbeta


def batchnorm_eval_forward_jvp(cache, tx, tgamma=None, tbeta=None, tmean=None, tvar=None):
    """Tangent of y (eval mode), tangents of the given mean and var included."""
    xhat, gamma, inv_std = cache["xhat"], cache["gamma"], cache["inv_std"]
    xp = backend.array_module(xhat)
    txhat = _eval_txhat(xhat, inv_std, tx, tmean, tvar, xp)
    ty = txhat * _per_channel(gamma, xhat) if gamma is not None else txhat
    if tgamma is not None:
        ty = ty + xhat * _per_channel(tgamma, xhat)
    if tbeta is not None:
        ty = ty + _per_channel(tbeta, xhat)
    return ty


def _eval_txhat(xhat, inv_std, tx, tmean, tvar, xp):
    txhat = xp.zeros_like(xhat) if tx is None else tx * _per_channel(inv_std, xhat)
    if tmean is not None:
        txhat = txhat - _per_channel(inv_std * tmean, xhat)
    if tvar is not None:
        txhat = txhat - xhat * _per_channel(0.5 * inv_std ** 2 * tvar, xhat)
    return txhat


def batchnorm_eval_backward_jvp(dy, tdy, cache, tx, tgamma=None, tbeta=None, tmean=None, tvar=None):
    """Tangents of ``batchnorm_eval_backward``'s (dx, dgamma, dbeta, dmean, dvar)."""
    xhat, gamma, beta, s = cache["xhat"], cache["gamma"], cache["beta"], cache["inv_std"]
    xp = backend.array_module(dy, xhat)
    tdy = _or_zeros(tdy, dy, xp)
    gam = xp.ones_like(s) if gamma is None else gamma
    ts = xp.zeros_like(s) if tvar is None else -0.5 * s ** 3 * tvar
    k = gam * s
    tk = gam * ts + (0 if tgamma is None else tgamma * s)
    txhat = _eval_txhat(xhat, s, tx, tmean, tvar, xp)
    dbeta, dgamma = _channel_sums(dy, xp), _sum_products(dy, xhat, xp)
    tdbeta = _channel_sums(tdy, xp)
    tdgamma = _sum_products(tdy, xhat, xp) + _sum_products(dy, txhat, xp)
    tdx = dy * _per_channel(tk, dy) + tdy * _per_channel(k, dy)
    tdmean = -tk * dbeta - k * tdbeta
    tdvar = -0.5 * (tk * s + k * ts) * dgamma - 0.5 * k * s * tdgamma
    return (tdx, (tdgamma if gamma is not None else None), (tdbeta if beta is not None else None),
            tdmean, tdvar)
