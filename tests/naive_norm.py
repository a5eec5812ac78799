"""Independent references for the normalization tests, written the plain way.

* ``batchnorm_two_pass``: batch norm forward and the staged (non-compact) backward of the
  CS231n derivation -- dxhat, then dvar, then dmu, then dx -- on a (M, C) view of the
  data, so it shares no code and no algebra with the compact ``batchnorm_backward``.
* ``layernorm_two_pass``: the same staged backward per sample (the statistics of each row of
  the (N, D) view), with gamma and beta per feature.
* ``running_stats_reference``: PyTorch's documented running-average update,
  ``running = (1 - momentum) * running + momentum * batch_stat`` with the *unbiased*
  variance (``np.var(ddof=1)``), or the cumulative average when ``momentum`` is None.
"""

import numpy as np


def _rows(x):
    """(N, C, *S) -> (N * prod(S), C): one row per value, one column per channel."""
    return np.moveaxis(x, 1, -1).reshape(-1, x.shape[1])


def _unrows(a, shape):
    moved = (shape[0],) + tuple(shape[2:]) + (shape[1],)
    return np.moveaxis(a.reshape(moved), -1, 1)


def batchnorm_two_pass(x, gamma, beta, dy, eps=1e-5):
    """(y, dx, dgamma, dbeta) of training-mode batch norm, backward in stages."""
    xr, dyr = _rows(x), _rows(dy)
    m = xr.shape[0]
    mu = xr.sum(axis=0) / m
    xmu = xr - mu
    var = (xmu ** 2).sum(axis=0) / m
    s = 1.0 / np.sqrt(var + eps)
    xhat = xmu * s
    y = gamma * xhat + beta
    # backward, one node of the graph at a time
    dgamma = (dyr * xhat).sum(axis=0)
    dbeta = dyr.sum(axis=0)
    dxhat = dyr * gamma
    dvar = (dxhat * xmu).sum(axis=0) * -0.5 * s ** 3
    dmu = (-dxhat * s).sum(axis=0) + dvar * (-2.0 * xmu).sum(axis=0) / m
    dx = dxhat * s + dvar * 2.0 * xmu / m + dmu / m
    return _unrows(y, x.shape), _unrows(dx, x.shape), dgamma, dbeta


def layernorm_two_pass(x, gamma, beta, dy, eps=1e-5):
    """(y, dx, dgamma, dbeta) of layer norm over every axis but 0, backward in stages."""
    n, d = x.shape[0], x[0].size
    xr, dyr, g, b = x.reshape(n, d), dy.reshape(n, d), gamma.reshape(d), beta.reshape(d)
    mu = xr.sum(axis=1, keepdims=True) / d
    xmu = xr - mu
    var = (xmu ** 2).sum(axis=1, keepdims=True) / d
    s = 1.0 / np.sqrt(var + eps)
    xhat = xmu * s
    y = g * xhat + b
    dgamma = (dyr * xhat).sum(axis=0)
    dbeta = dyr.sum(axis=0)
    dxhat = dyr * g
    dvar = (dxhat * xmu).sum(axis=1, keepdims=True) * -0.5 * s ** 3
    dmu = (-dxhat * s).sum(axis=1, keepdims=True) + dvar * (-2.0 * xmu).sum(axis=1, keepdims=True) / d
    dx = dxhat * s + dvar * 2.0 * xmu / d + dmu / d
    return (y.reshape(x.shape), dx.reshape(x.shape), dgamma.reshape(gamma.shape),
            dbeta.reshape(beta.shape))


def running_stats_reference(batches, momentum=0.1):
    """Running mean and variance after training-mode forwards on ``batches``, PyTorch's rule."""
    c = batches[0].shape[1]
    mean, var = np.zeros(c), np.ones(c)
    for t, x in enumerate(batches, start=1):
        f = 1.0 / t if momentum is None else momentum
        xr = _rows(np.asarray(x, dtype=np.float64))
        mean = (1 - f) * mean + f * xr.mean(axis=0)
        var = (1 - f) * var + f * xr.var(axis=0, ddof=1)
    return mean, var
