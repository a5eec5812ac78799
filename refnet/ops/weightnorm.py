"""Weight normalization (Salimans & Kingma, 2016): ``w = g * v / ||v||`` per output unit.

Shapes: ``v`` is (out, ...) (a dense (out, in) or conv (F, C, KH, KW) weight), ``g`` is
(out,). The norm is over every axis but 0, one per output unit i:

    r_i = ||v_i||,     w_i = g_i * v_i / r_i

Gradient. For one unit drop the index: w = g v / r with dr/dv = v / r, so

    dg = <dw, v> / r                                   (= <dw, v_hat>)
    dv = (g / r) * dw  +  g <dw, v> * d(1/r)/dv  = (g / r) * (dw - v_hat * <dw, v_hat>)
       = (g / r) * (dw - (v / r) * dg)

dv is dw with its component along v removed, scaled by g/r: hence <v, dv> = 0 and
dv(a v) = dv(v) / a. ``w`` depends only on the direction of each v_i, so every output unit
of v is its own scale group (``scale_group = "unit"``); g carries the scale.

Forward mode and second order (tangents tv, tg; tdw of dw). tr = <v, tv> / r, so

    tw  = tg v / r + (g / r) tv - (g tr / r^2) v
        = tg v_hat + (g / r) (tv - v_hat <v_hat, tv>)                     (weightnorm_forward_jvp)
    tdg = (<tdw, v> + <dw, tv>) / r - dg tr / r                           (weightnorm_backward_jvp)
    tdv = t(g/r) (dw - v dg / r) + (g / r) (tdw - tv dg / r - v tdg / r + v dg tr / r^2),
          t(g/r) = tg / r - g tr / r^2

each the product rule on one line of the gradient above.
"""

from refnet import backend
from refnet.ops._checks import check_dtype, check_float, check_shape

_OP = "weightnorm_forward"


def weightnorm_forward(v, g):
    """``w = g * v / ||v||`` with the norm per output unit (every axis but 0). Returns ``(w, cache)``."""
    if not hasattr(v, "ndim") or v.ndim < 2:
        raise ValueError(f"{_OP}(v): got {getattr(v, 'shape', type(v).__name__)}, "
                         f"expected an array of rank >= 2 (out, ...)")
    check_float("v", v, _OP)
    check_shape("g", g, v.shape[:1], _OP)
    check_dtype("g", g, "v", v, _OP)
    xp = backend.array_module(v, g)
    unit = (-1,) + (1,) * (v.ndim - 1)
    r = xp.sqrt(xp.einsum("ij,ij->i", v.reshape(v.shape[0], -1), v.reshape(v.shape[0], -1)))
    w = v * (g / r).reshape(unit)
    return w, {"v": v, "g": g, "r": r}


def weightnorm_backward(dw, cache):
    """Gradients of ``weightnorm_forward``: ``(dv, dg)``."""
    v, g, r = cache["v"], cache["g"], cache["r"]
    check_shape("dw", dw, v.shape, "weightnorm_backward")
    check_dtype("dw", dw, "the forward's v", v, "weightnorm_backward")
    xp = backend.array_module(dw, v)
    unit = (-1,) + (1,) * (v.ndim - 1)
    dg = xp.einsum("ij,ij->i", dw.reshape(v.shape[0], -1), v.reshape(v.shape[0], -1)) / r
    dv = v * (-dg / r).reshape(unit)
    dv += dw
    dv *= (g / r).reshape(unit)
    return dv, dg


def _unit_dot(a, b, xp):
    return xp.einsum("ij,ij->i", a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1))


def weightnorm_forward_jvp(cache, tv, tg=None):
    """Tangent of w: tg v_hat + (g/r) (tv - v_hat <v_hat, tv>) (None tangents are zero)."""
    v, g, r = cache["v"], cache["g"], cache["r"]
    xp = backend.array_module(v, g)
    unit = (-1,) + (1,) * (v.ndim - 1)
    tw = xp.zeros_like(v)
    if tv is not None:
        tr = _unit_dot(v, tv, xp) / r
        tw += tv * (g / r).reshape(unit) - v * (g * tr / r ** 2).reshape(unit)
    if tg is not None:
        tw += v * (tg / r).reshape(unit)
    return tw


def weightnorm_backward_jvp(dw, tdw, cache, tv, tg=None):
    """Tangents of ``weightnorm_backward``'s (dv, dg) (derivation in the module docstring)."""
    v, g, r = cache["v"], cache["g"], cache["r"]
    xp = backend.array_module(dw, v)
    unit = (-1,) + (1,) * (v.ndim - 1)
    tv = xp.zeros_like(v) if tv is None else tv
    tg = xp.zeros_like(g) if tg is None else tg
    tdw = xp.zeros_like(dw) if tdw is None else tdw
    dg = _unit_dot(dw, v, xp) / r
    tr = _unit_dot(v, tv, xp) / r
    tdg = (_unit_dot(tdw, v, xp) + _unit_dot(dw, tv, xp)) / r - dg * tr / r
    t_ratio = tg / r - g * tr / r ** 2
    tdv = (dw - v * (dg / r).reshape(unit)) * t_ratio.reshape(unit)
    tdv += (tdw - tv * (dg / r).reshape(unit) - v * (tdg / r - dg * tr / r ** 2).reshape(unit)) \
        * (g / r).reshape(unit)
    return tdv, tdg
