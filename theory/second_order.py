"""Second order of a scale-invariant weight group: the curvature side of the effective
learning rate (theory/README.md, section 23).

Assumption: the loss is invariant to the scale of the group w_G (a unit before BatchNorm
or WeightNorm, a tensor before LayerNorm), L(w_G -> c w_G) = L(w) for c > 0, with every
other parameter w_o held fixed. Differentiating once in w gives the gradient's scaling
g_G(c w_G) = g_G(w) / c, g_o(c w_G) = g_o(w); differentiating that in c at c = 1 and in w
once more gives, for the Hessian H = d^2 L / dw^2 (blocks GG, Go, oo):

    H(w) [w_G, 0] = [-g_G(w), 0]                       (Euler, second order)
    H_GG(c w_G) = H_GG(w) / c^2,   H_Go(c w_G) = H_Go(w) / c,   H_oo(c w_G) = H_oo(w)

so lambda_max(H_GG(w)) = lambda_max(H_GG(w_hat)) / ||w_G||^2 with w_hat = w_G / ||w_G||, and
lr lambda_max(H_GG(w)) = (lr / ||w_G||^2) lambda_max(H_GG(w_hat)): the effective learning
rate times the curvature of the direction. With BatchNorm's eps > 0 the invariance is
broken: scaling w_G by c acts as eps -> eps / c^2 on the unit's pre-normalization variance
var, so each identity bends by a relative amount of order eps / (var + eps).

NumPy only, like the rest of ``theory``: these are the closed forms the networks are checked
against (tests/test_theory_second_order.py).
"""

import numpy as np

_BLOCKS = {"group": -2, "cross": -1, "other": 0}


def euler_hvp(grad_group):
    """H(w) [w_G, 0] restricted to the group: ``-g_G(w)`` (zero on every other parameter)."""
    return -np.asarray(grad_group, dtype=float)


def hessian_scale_factor(c, block="group"):
    """How the Hessian's block scales when the group is scaled by c: ``c**-2`` for the
    group-group block, ``c**-1`` for group-other ("cross"), 1 for other-other ("other")."""
    if block not in _BLOCKS:
        raise ValueError(f"hessian_scale_factor(block): got {block!r}, expected one of {list(_BLOCKS)}")
    return np.asarray(c, dtype=float) ** _BLOCKS[block]


def sharpness(lam_max_direction, norm):
    """lambda_max(H_GG(w)) from the curvature of the direction, ``lambda_max(H_GG(w_hat)) / ||w_G||^2``."""
    return np.asarray(lam_max_direction, dtype=float) / np.square(norm)


def effective_sharpness(lr, lam_max_direction, norm):
    """lr lambda_max(H_GG(w)) = (lr / ||w_G||^2) lambda_max(H_GG(w_hat)): the step-size x
    curvature product that decides stability, as the effective lr times the direction's curvature."""
    return lr * sharpness(lam_max_direction, norm)


def eps_bend(eps, var):
    """The relative size, ``eps / (var + eps)``, by which BatchNorm's eps bends the identities
    for a unit whose pre-normalization (batch) variance is ``var``."""
    var = np.asarray(var, dtype=float)
    return eps / (var + eps)
