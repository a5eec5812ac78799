"""Planted errors for the power campaign: wrong backwards that a checker must catch.

A mutant is (name, target, change): ``change(g, grads, dout)`` returns the wrong gradient of
``target`` from the right one ``g`` (``grads``: every right gradient by name; ``dout``: the
upstream gradient). A name that starts with CONTROL is a change below the tolerance (one
entry scaled by 1 + 0.3 rtol): it must not come out failed, next to its near-threshold twin
(1 + 10 rtol), which must. Generic mutants apply to every argument; structural ones are the slips
people make in a given layer (BatchNorm without its mean or variance path, LayerNorm over
the wrong axis, WeightNorm without the projection, conv's dw transposed or flipped). The
entry a one-entry mutant changes is never at a kink: there no finite difference can see it.
"""

import numpy as np

from refnet.gradcheck.check import FLOOR, RTOL

ONE_ENTRY = 1e-3  # "one entry off by 0.1% of the largest"
SCALE = 1.001     # "a mis-scaled gradient"
NEAR = 10.0       # one entry scaled by 1 + NEAR * rtol: an error of 10x the tolerance, must fail
BELOW = 0.3       # one entry scaled by 1 + BELOW * rtol: within the tolerance, must not fail
CONTROL = "control: "  # a planted change that is not an error at rtol: it must not come out failed


def generic(name, shape, kinks, rng):
    """The mutants of every argument: one entry off, mis-scaled, transposed, a sign flipped."""
    free = np.flatnonzero(~kinks.reshape(-1)) if kinks is not None else np.arange(int(np.prod(shape)))
    if free.size == 0:
        return []
    at = np.unravel_index(int(rng.choice(free)), shape)
    sign = float(rng.choice([-1.0, 1.0]))

    def one_entry(g, grads, dout):
        g[at] += sign * ONE_ENTRY * np.abs(g).max()
        return g

    def flipped(g, grads, dout):
        typical = _typical(g, free)
        if typical is not None:
            g[typical] = -g[typical]
        return g

    pick = rng.random()

    def near(g, grads, dout):  # a random entry judged on its own scale (|g_j| >= FLOOR max|g|)
        flat = np.abs(g.reshape(-1))
        big = free[flat[free] >= FLOOR * flat.max(initial=0.0)] if flat.size else free
        if big.size:
            g.reshape(-1)[big[int(pick * big.size)]] *= 1 + NEAR * RTOL
        return g

    def below(g, grads, dout):  # the largest entry: beside small ones, the hardest not to flag
        flat = g.reshape(-1)
        flat[free[int(np.argmax(np.abs(flat[free])))]] *= 1 + BELOW * RTOL
        return g

    return [("one entry +-0.1% of max", name, one_entry),
            ("scaled x1.001", name, lambda g, grads, dout: g * SCALE),
            ("transposed", name, lambda g, grads, dout: _transposed(g)),
            ("one sign flipped", name, flipped),
            ("one entry x(1+10 rtol)", name, near),
            (CONTROL + "one entry x(1+0.3 rtol)", name, below)]


def _typical(g, free):
    """The free (non-kink) nonzero entry of median magnitude, or None."""
    flat = g.reshape(-1)
    nonzero = free[flat[free] != 0]
    if nonzero.size == 0:
        return None
    order = nonzero[np.argsort(np.abs(flat[nonzero]), kind="stable")]
    return np.unravel_index(int(order[order.size // 2]), g.shape)


def _transposed(g):
    """The gradient with its entries in transposed places (same shape)."""
    if g.ndim >= 2 and g.shape[0] == g.shape[1]:
        return g.swapaxes(0, 1).copy()
    if g.ndim >= 2 and g.shape[-1] == g.shape[-2]:
        return g.swapaxes(-1, -2).copy()
    return g.reshape(-1)[::-1].reshape(g.shape).copy()


# --- structural slips, per layer -----------------------------------------------------------
def batchnorm(x, gamma, eps, target="x"):
    """dx without the mean path (the '- dbeta' term) or without the variance path."""
    axes = tuple(i for i in range(x.ndim) if i != 1)
    m = x.size // x.shape[1]
    keep = [1] * x.ndim
    keep[1] = x.shape[1]
    s = 1 / np.sqrt(x.var(axis=axes, keepdims=True) + eps)
    xhat = (x - x.mean(axis=axes, keepdims=True)) * s
    k = s * (1.0 if gamma is None else gamma.reshape(keep)) / m

    def no_mean(g, grads, dout):
        return g + k * dout.sum(axis=axes, keepdims=True)

    def no_var(g, grads, dout):
        return g + k * xhat * (dout * xhat).sum(axis=axes, keepdims=True)

    return [("BN without its mean path", target, no_mean), ("BN without its variance path", target, no_var)]


def layernorm(x, gamma, eps, target="x", lead=1):
    """dx with the statistics' terms averaged over the batch axis instead of the features."""
    n = int(np.prod(x.shape[:lead]))
    x2 = x.reshape(n, -1)
    s = 1 / np.sqrt(x2.var(axis=1, keepdims=True) + eps)
    xhat = (x2 - x2.mean(axis=1, keepdims=True)) * s
    gam = 1.0 if gamma is None else gamma.reshape(1, -1)

    def wrong_axis(g, grads, dout):
        dxhat = dout.reshape(n, -1) * gam
        dx = s * (dxhat - dxhat.mean(axis=0, keepdims=True) - xhat * (dxhat * xhat).mean(axis=0, keepdims=True))
        return dx.reshape(g.shape)

    return [("LN over the wrong axis", target, wrong_axis)]


def weightnorm(v, g_param, target="v", gain="g"):
    """dv without the projection that removes its component along v (dv = g/|v| dw)."""
    r2 = (v.reshape(v.shape[0], -1) ** 2).sum(axis=1)
    unit = (-1,) + (1,) * (v.ndim - 1)

    def no_projection(g, grads, dout):
        return g + v * (g_param * grads[gain] / r2).reshape(unit)

    return [("WN without the projection", target, no_projection)]


def conv(w_shape, target="w"):
    """dw with F and C swapped (when F == C) or its kernel flipped (correlation vs convolution)."""
    found = [("conv dw kernel flipped", target, lambda g, grads, dout: g[:, :, ::-1, ::-1].copy())]
    if w_shape[0] == w_shape[1]:
        found.append(("conv dw transposed (F and C)", target, lambda g, grads, dout: g.swapaxes(0, 1).copy()))
    return found


def structural(setup):
    """The layer-specific mutants of a built-in case's Setup (an empty list for the others)."""
    from refnet.nn import layers, norm
    if setup.kind == "op":
        forward = setup.fn[0].__name__
        a = setup.args
        if forward == "batchnorm_forward":
            return batchnorm(a[0], a[1], setup.kwargs.get("eps", 1e-5))
        if forward == "layernorm_forward":
            return layernorm(a[0], a[1], setup.kwargs.get("eps", 1e-5))
        if forward == "weightnorm_forward":
            return weightnorm(a[0], a[1])
        if forward == "conv2d_forward":
            return conv(a[1].shape)
        return []
    if setup.kind != "module":
        return []
    m, x = setup.fn, setup.args[0]
    if isinstance(m, (norm.BatchNorm1d, norm.BatchNorm2d)) and (m.training or not m.track_running_stats):
        return batchnorm(x, None if m.weight is None else m.weight.data, m.eps)
    if isinstance(m, norm.LayerNorm):
        lead = x.ndim - len(m.normalized_shape)
        return layernorm(x, None if m.weight is None else m.weight.data, m.eps, lead=lead)
    if isinstance(m, norm.WeightNorm):
        found = weightnorm(m.weight_v.data, m.weight_g.data, "weight_v", "weight_g")
        if isinstance(m.module, layers.Conv2d):
            found += conv(m.weight_v.shape, "weight_v")
        return found
    if isinstance(m, layers.Conv2d):
        return conv(m.weight.shape, "weight")
    return []
