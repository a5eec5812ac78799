"""What the norm-fixing wrappers aim at (README section 18): the rotational wrapper's target, the
inner optimizer's equilibrium angle, which for SGD with momentum and decoupled decay is derived
here; and the angle Hyperball's fixed-length step makes.

- SGD + heavy-ball momentum + decoupled ``wd`` (refnet's ``SGD(weight_decay=wd)``; PyTorch's SGD
  has no such option): the buffer holds only gradients, the decay acts on ``w`` directly.
- Rotational: ``tan(angle) = eta_r ||u|| / RMS(||u||)`` each step, so the RMS angle is about
  ``atan(eta_r)`` (exactly, every step, without the running average).
- Hyperball: step ``lr R u_hat`` on the sphere of radius ``R``; with ``c = <w_hat, u_hat>``,
  ``tan(angle) = lr sqrt(1 - c^2)/(1 - lr c)``; ``c`` is 0 for plain SGD and follows from the
  correlation of consecutive update directions otherwise.
"""

import numpy as np

from theory.equilibria import Equilibrium


def sgdm_weight_decay_equilibrium(lr, wd, G2, momentum):
    """SGD, heavy-ball momentum ``mu`` (buffer of gradients only), decoupled ``wd``:
    ``w <- p w - lr b``, ``p = 1 - lr wd``. Exact: ``||w||^4 = lr^2 G2 (1 + mu p) /
    ((1-p^2)(1-mu^2)(1-mu p))`` (small: ``lr G2 / (2 wd (1-mu)^2)``); the step relative to ``||w||``
    has mean square ``S = (1-p^2)(1-mu p)/(1+mu p)`` and radial part ``a = -mu S/(1 - mu p)``,
    ``tan(angle) = sqrt(S - a^2)/(p - a)`` (small: ``sqrt(2 lr wd (1-mu)/(1+mu))``): the decay
    outside the buffer counts ``(1-mu)`` times what coupled L2 ``2 lam = wd`` does (README (18.2)).
    Effective lr ``lr/((1-mu) ||w||^2)``; ``||w||^4`` relaxes at ``4 lr wd``. ``wd`` is decoupled:
    no convention."""
    mu, p = momentum, 1.0 - lr * wd
    x2 = lr * lr * G2 * (1 + mu * p) / ((1 - p * p) * (1 - mu * mu) * (1 - mu * p))
    x2s = lr * G2 / (2 * wd * (1 - mu) ** 2)
    S = (1 - p * p) * (1 - mu * p) / (1 + mu * p)
    a = -mu * S / (1 - mu * p)
    return Equilibrium("sgd+momentum+weight_decay", x2 ** 0.25, x2s ** 0.25,
                       float(np.arctan(np.sqrt(S - a * a) / (p - a))),
                       float(np.sqrt(2 * lr * wd * (1 - mu) / (1 + mu))),
                       lr / ((1 - mu) * np.sqrt(x2)), lr / ((1 - mu) * np.sqrt(x2s)), 4 * lr * wd, "||w||^4")


def nesterov_angle_factor(momentum):
    """Nesterov's steady angle over heavy ball's at the same norm, for SGD + L2 or + decoupled
    decay: ``sqrt(1 + 2 mu - 2 mu^3)``. The step ``g + mu b`` (``b = mu b' + g``) has mean square
    ``E||g||^2 (1 + 2 mu + mu^2/(1 - mu^2))`` against heavy ball's ``E||g||^2/(1 - mu^2)``
    (white gradients, ``E<g_t, b_t> = E||g||^2``); the norm is the same (README section 18)."""
    mu = momentum
    return float(np.sqrt(1 + 2 * mu - 2 * mu ** 3))


def rotational_angle(eta_r):
    """The rotational wrapper's angle per step: ``atan(eta_r)`` (exact with ``update_norm_decay = 0``;
    the RMS over steps otherwise, to the spread of ``||u||`` around its running RMS)."""
    return float(np.arctan(eta_r))


def hyperball_radial(lr, correlations):
    """``c = <w_hat, u_hat>`` in Hyperball's steady state: ``c = -lr sum_k N^-k r_k``,
    ``N = sqrt(1 - 2 lr c + lr^2)`` (the projection's divisor), ``r_k`` the lag-k correlation of the
    update directions (an EMA of white gradients at ``beta``: ``r_k = beta^k``, and then
    ``c (N - beta) = -beta lr``). Solved by fixed-point iteration."""
    r = np.asarray(correlations, dtype=float)
    k = np.arange(1, r.size + 1)
    c = 0.0
    for _ in range(200):
        N = np.sqrt(1 - 2 * lr * c + lr * lr)
        c_new = -lr * float(np.sum(N ** (-k) * r))
        if abs(c_new - c) <= 1e-15:
            break
        c = c_new
    return c_new


def hyperball_angle(lr, beta=0.0, correlations=None):
    """Hyperball's angle per step, ``atan(lr sqrt(1 - c^2)/(1 - lr c))`` with ``c`` from
    ``hyperball_radial``: ``atan(lr)`` when the inner update is orthogonal to ``w`` (plain SGD,
    ``beta = 0``); for a momentum inner (SGD heavy ball ``beta = mu``, Adam ``beta = b1``) the
    update leans backwards (``c < 0``) and the angle is slightly smaller. ``correlations``
    overrides the EMA's ``r_k = beta^k`` (e.g. Lion's sign correlations)."""
    if correlations is None:
        correlations = beta ** np.arange(1, 1 + (int(np.ceil(np.log(1e-16) / np.log(beta))) if beta > 0 else 1))
    c = hyperball_radial(lr, correlations)
    return float(np.arctan(lr * np.sqrt(1 - c * c) / (1 - lr * c)))
