"""Steady states of a scale-invariant weight group under L2, weight decay or projection.

Each function returns an ``Equilibrium``: the steady norm ``||w||``, the steady RMS angle
between ``w_t`` and ``w_{t+1}`` (radians per step), the effective learning rate (SGD:
``lr/||w||^2``; Adam: ``lr/||w||``), each in an exact form (finite ``lr*lam``; the field
without suffix) and in THEORY.md's small-``lr*lam`` form (``*_small``), and the relaxation rate
per step of the quantity that relaxes. Derivations: theory/README.md.

Common assumptions: ``G2 = E||g_tilde||^2`` is the squared gradient norm at the unit point
``w/||w||``, averaged over about one relaxation time and constant over it (quasi-static);
minibatch gradients are uncorrelated across steps (see ``momentum_correlation_factor`` when
they are not); for Adam, ``d`` is the number of entries of the group, the gradient is spread
evenly over them, and ``eps`` is negligible unless passed. Convention A (paper, default): the
loss gains ``lam*||w||^2``; ``convention="B"`` reads ``lam`` as PyTorch's ``weight_decay``.
"""

from dataclasses import asdict, dataclass

import numpy as np

from theory.conventions import paper_lam


@dataclass(frozen=True)
class Equilibrium:
    """Steady state of one scale group; see the module docstring for the fields' meaning.

    ``relaxing`` names the quantity that relaxes exponentially at ``relaxation_rate`` per step
    (linearized); ``relaxation_time = 1/relaxation_rate`` steps (0 when the projection sets the
    norm every step)."""

    optimizer: str
    norm: float
    norm_small: float
    angle: float
    angle_small: float
    effective_lr: float
    effective_lr_small: float
    relaxation_rate: float
    relaxing: str

    def __post_init__(self):
        for name in ("norm", "norm_small", "angle", "angle_small", "effective_lr",
                     "effective_lr_small", "relaxation_rate"):
            object.__setattr__(self, name, float(getattr(self, name)))

    @property
    def relaxation_time(self):
        return 1.0 / self.relaxation_rate

    def as_dict(self):
        return dict(asdict(self), relaxation_time=self.relaxation_time)


def adam_v_noise_factor(betas):
    """Factor ``F`` on Adam's mean squared step, ``E||m_hat/sqrt(v_hat)||^2 = F * d * (1-b1)/(1+b1)``,
    from the noise in the second-moment estimate ``v`` (first order in ``1-b2``, white gradients):

        F = 1 - 2 (1-b2)(1-b1^2)/(1-b1^2 b2) + 2 (1-b2)/(1+b2).

    The middle term: ``v`` contains the same recent gradients as ``m``, so large ``m`` comes with
    large ``v``; the last: ``E[1/v] > 1/E[v]`` (Jensen, ``Var(v)/v^2 = 2(1-b2)/(1+b2)``).
    ``F = 0.991`` at ``(0.9, 0.99)``, ``0.999`` at ``(0.9, 0.999)``. Used in the exact AdamW,
    projected-Adam and no-L2 Adam forms; not in Adam + L2, whose radial shrink sees the noise too.
    """
    b1, b2 = betas
    return 1.0 - 2.0 * (1 - b2) * (1 - b1 * b1) / (1 - b1 * b1 * b2) + 2.0 * (1 - b2) / (1 + b2)


def momentum_correlation_factor(momentum, autocorr=None):
    """``S = 1 + 2 * sum_{m>=1} momentum^m c_m``: how correlated gradients change the momentum norm.

    ``autocorr``: ``(c_1, c_2, ...)``, the lag-m correlations ``E<g_t, g_{t+m}> / E||g_t||^2`` of
    the minibatch gradients along the run (None: uncorrelated, ``S = 1``). With heavy-ball momentum
    the buffer's mean square is ``E||b||^2 = S E||g||^2/(1-mu^2)`` and the steady ``||w||^4``
    scales by ``S``; the steady angle does not depend on ``S`` (README, "momentum on real data").
    AR(1) gradients, ``c_m = rho^m``, give ``S = (1 + mu rho)/(1 - mu rho)``.
    """
    if autocorr is None:
        return 1.0
    c = np.asarray(autocorr, dtype=float)
    return 1.0 + 2.0 * float(np.sum(momentum ** np.arange(1, c.size + 1) * c))


def sgd_l2_equilibrium(lr, lam, G2, convention="A"):
    """SGD + coupled L2. Exact (from identity 4):
    ``||w||^4 = lr G2 / (4 lam (1 - lr lam))``, ``cos(angle) = 1 - 2 lr lam``,
    ``lr/||w||^2 = 2 sqrt(lr lam (1 - lr lam) / G2)``. Small: ``||w||^4 = lr G2/(4 lam)``,
    ``angle = 2 sqrt(lr lam)``. ``||w||^4`` relaxes at ``8 lr lam`` per step."""
    lam = paper_lam(lam, convention)
    x2 = lr * G2 / (4 * lam * (1 - lr * lam))
    x2s = lr * G2 / (4 * lam)
    return Equilibrium("sgd+l2", x2 ** 0.25, x2s ** 0.25, float(np.arccos(1 - 2 * lr * lam)),
                       2 * np.sqrt(lr * lam), lr / np.sqrt(x2), lr / np.sqrt(x2s), 8 * lr * lam, "||w||^4")


def sgd_momentum_l2_equilibrium(lr, lam, G2, momentum, autocorr=None, convention="A"):
    """SGD + heavy-ball momentum ``mu`` (PyTorch, no dampening) + coupled L2:
    ``||w||^4 = S lr G2 (1+mu) / (4 lam (1-mu) (1+mu - lr lam))`` (small: ``S lr G2/(4 lam (1-mu))``),
    ``cos(angle) = 1 - 2 lr lam/(1+mu)`` (small: ``sqrt(4 lr lam/(1+mu))``), effective lr
    ``lr/((1-mu)||w||^2)``; ``||w||^4`` relaxes at ``8 lr lam/(1-mu)``. ``S`` from
    ``momentum_correlation_factor(mu, autocorr)`` (1 for uncorrelated gradients); it multiplies
    the norm law to leading order in ``lr lam`` and leaves the angle law alone."""
    lam, mu = paper_lam(lam, convention), momentum
    S = momentum_correlation_factor(mu, autocorr)
    x2 = S * lr * G2 * (1 + mu) / (4 * lam * (1 - mu) * (1 + mu - lr * lam))
    x2s = S * lr * G2 / (4 * lam * (1 - mu))
    return Equilibrium("sgd+momentum+l2", x2 ** 0.25, x2s ** 0.25,
                       float(np.arccos(1 - 2 * lr * lam / (1 + mu))), np.sqrt(4 * lr * lam / (1 + mu)),
                       lr / ((1 - mu) * np.sqrt(x2)), lr / ((1 - mu) * np.sqrt(x2s)),
                       8 * lr * lam / (1 - mu), "||w||^4")


def adam_l2_equilibrium(lr, lam, G2, d, betas=(0.9, 0.999), eps=1e-8, convention="A"):
    """Adam + coupled L2. Small: ``||w||^3 = lr sqrt(G2 d) / (4 lam)``,
    ``angle = sqrt((1-b1)/(1+b1)) (4 lam lr^2 d / sqrt(G2))^(1/3)``, effective lr ``lr/||w||``;
    ``||w||^2`` relaxes at ``1.5 lr^2 d/||w||^2`` (linearized, any b1; distorted unless well
    below ``1-b2``). Exact: with ``v`` steady, Adam is heavy-ball SGD with ``mu = b1`` and
    ``lr_eq = lr (1-b1) / (sqrt(v) + eps)``, ``v = G2/(d ||w||^2) + 4 lam^2 ||w||^2/d``; the SGD +
    momentum law is solved for ``||w||``, and ``cos(angle) = 1 - 2 lr_eq lam/(1+b1)``."""
    lam, b1 = paper_lam(lam, convention), betas[0]
    n3s = lr * np.sqrt(G2 * d) / (4 * lam)
    x = n3s ** (2.0 / 3.0)
    for _ in range(200):  # contraction: x ~ x^(1/4) near the fixed point
        lr_eq = lr * (1 - b1) / (np.sqrt(G2 / (d * x) + 4 * lam * lam * x / d) + eps)
        x_new = np.sqrt(lr_eq * G2 * (1 + b1) / (4 * lam * (1 - b1) * (1 + b1 - lr_eq * lam)))
        done = np.all(np.abs(x_new - x) <= 1e-15 * x)
        x = x_new
        if done:
            break
    kappa = (1 - b1) / (1 + b1)
    return Equilibrium("adam+l2", float(np.sqrt(x)), n3s ** (1 / 3),
                       float(np.arccos(1 - 2 * lr_eq * lam / (1 + b1))),
                       np.sqrt(kappa) * (4 * lam * lr * lr * d / np.sqrt(G2)) ** (1 / 3),
                       lr / float(np.sqrt(x)), lr / n3s ** (1 / 3),
                       1.5 * lr * lr * d / n3s ** (2 / 3), "||w||^2")


def adamw_equilibrium(lr, wd, d, betas=(0.9, 0.999)):
    """AdamW, ``w <- p w - lr m_hat/(sqrt(v_hat)+eps)``, ``p = 1 - lr wd``. Exact (``eps`` negligible):
    ``||w||^2 = F lr^2 d k (1 + b1 p) / ((1 - b1 p)(1 - p^2))``, ``k = (1-b1)/(1+b1)``,
    ``F = adam_v_noise_factor(betas)``; at b1 = 0, F = 1: ``lr d/(wd (2 - lr wd))``. Angle:
    ``tan = sqrt(s - a^2)/(p - a)`` with ``s = F lr^2 d k/||w||^2``, ``a = -b1 s/(1 - b1 p)``.
    Small: ``||w||^2 = lr d/(2 wd)``, ``angle = sqrt(2 lr wd k)``. ``||w||^2`` relaxes at
    ``2 lr wd``. Independent of ``G2``: Adam's step is scale-free. ``wd`` has no convention."""
    b1 = betas[0]
    p, k, F = 1 - lr * wd, (1 - b1) / (1 + b1), adam_v_noise_factor(betas)
    x = F * lr * lr * d * k * (1 + b1 * p) / ((1 - b1 * p) * (1 - p * p))
    xs = lr * d / (2 * wd)
    s = F * lr * lr * d * k / x
    a = -b1 * s / (1 - b1 * p)
    return Equilibrium("adamw", float(np.sqrt(x)), float(np.sqrt(xs)),
                       float(np.arctan(np.sqrt(s - a * a) / (p - a))), float(np.sqrt(2 * lr * wd * k)),
                       lr / float(np.sqrt(x)), lr / float(np.sqrt(xs)), 2 * lr * wd, "||w||^2")


def projected_sgd_equilibrium(lr, lam, G2, convention="A"):
    """Projected SGD (the paper's fix, ``||w|| = 1`` after every step), with coupled L2: each step
    ``tan(angle) = lr ||g_tilde|| / (1 - 2 lr lam)`` exactly, so the steady angle is
    ``atan(lr sqrt(G2)/(1 - 2 lr lam))`` (small: ``lr sqrt(G2)``) and the effective lr
    ``lr/(1 - 2 lr lam)`` (small: ``lr``): lam drops out. No relaxation: the norm is fixed."""
    lam = paper_lam(lam, convention)
    q = 1 - 2 * lr * lam
    return Equilibrium("projected sgd", 1.0, 1.0, float(np.arctan(lr * np.sqrt(G2) / q)),
                       lr * np.sqrt(G2), lr / q, lr, np.inf, "none (norm set every step)")


def projected_adam_equilibrium(lr, d, betas=(0.9, 0.999)):
    """Projected Adam (``||w|| = 1`` after every step, no L2). Small (THEORY.md):
    ``angle = theta0 sqrt(1 - (b1 theta0/(1-b1))^2)``, ``theta0 = lr sqrt(d (1-b1)/(1+b1))``.
    Exact: the step has mean square ``s = F theta0^2`` and a radial part ``-u`` (momentum
    remembers gradients orthogonal to earlier directions) with
    ``u (sqrt(1 + 2u + s) - b1) = b1 s``; then ``tan(angle) = sqrt(s - u^2)/(1 + u)``.
    Effective lr ``lr`` (``||w|| = 1``). Independent of ``G2`` (eps negligible)."""
    b1 = betas[0]
    theta0 = lr * np.sqrt(d * (1 - b1) / (1 + b1))
    s = adam_v_noise_factor(betas) * theta0 ** 2
    lo, hi = 0.0, b1 * s / (1 - b1) if b1 < 1 else s
    for _ in range(200):  # u*(sqrt(1+2u+s) - b1) - b1*s is increasing on [lo, hi] and changes sign
        mid = 0.5 * (lo + hi)
        if mid * (np.sqrt(1 + 2 * mid + s) - b1) < b1 * s:
            lo = mid
        else:
            hi = mid
    u = 0.5 * (lo + hi)
    small = theta0 * np.sqrt(1 - (b1 * theta0 / (1 - b1)) ** 2) if b1 * theta0 < 1 - b1 else np.nan
    return Equilibrium("projected adam", 1.0, 1.0, float(np.arctan(np.sqrt(s - u * u) / (1 + u))),
                       float(small), lr, lr, np.inf, "none (norm set every step)")


def effective_width(scales, rel_tol=1e-6):
    """``(d_active, d_eff)`` of one scale group from per-coordinate RMS gradients ``s_i``
    (taken at the unit point): ``d_active`` counts ``s_i > rel_tol * max s``;
    ``d_eff = (sum s_i)^2 / sum s_i^2 <= d_active`` (Cauchy-Schwarz; equal when all ``s_i``
    are equal). Adam + L2's steady norm uses ``d_eff`` and its angle ``d_active``: README
    section 14, (14.1)-(14.2). Convention-free."""
    s = np.asarray(scales, dtype=float).ravel()
    if s.size == 0 or np.any(s < 0) or not np.all(np.isfinite(s)):
        raise ValueError("effective_width(scales): expected a non-empty array of finite values >= 0")
    if s.max() == 0:
        return 0, 0.0
    return int((s > rel_tol * s.max()).sum()), float(s.sum() ** 2 / (s * s).sum())
