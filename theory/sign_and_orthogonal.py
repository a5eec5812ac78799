"""Lion and Muon under decoupled weight decay on a scale-invariant weight (README sections 16-17).

Both take steps whose length does not follow the gradient's scale (Lion: every entry moves by
``lr``; Muon: the momentum's singular values are pushed to about 1), so, as for AdamW, the
steady norm balances ``(1 - p^2) ||w||^2`` (``p = 1 - lr wd``) against the mean square step,
enlarged by how much consecutive steps point the same way:

    ||w||^2 (1 - p^2) = lr^2 E||s||^2 R,      R = 1 + 2 sum_{k>=1} p^k r_k,
    angle^2 ~ (1 - p^2) / R  ~  2 lr wd / R,

with ``r_k`` the lag-k correlation of the steps. Both steps are odd functions of a linear
momentum ``c_t = sum_j a_j g_{t-j}`` of white gradients, whose lag-k correlation is
``rho_k = A b2^(k-1)`` (``momentum_correlations``). Lion's sign turns it into
``r_k = (2/pi) arcsin(rho_k)`` (Sheppard's formula, Gaussian entries); Muon's Newton-Schulz
turns it into ``r_k = h(rho_k)``, which has no closed form here and is measured by Monte Carlo
on Gaussian matrices (``orthogonalized_correlation``), as the arcsine law would be for Lion.
"""

import numpy as np

from theory.equilibria import Equilibrium

NS_COEFFICIENTS = (3.4445, -4.775, 2.0315)


def momentum_filter(b1, b2):
    """``(a_0, ratio, a_1)``: Lion's ``c_t = b1 m_{t-1} + (1-b1) g_t``, ``m`` an EMA at ``b2``, is
    ``sum_j a_j g_{t-j}`` with ``a_0 = 1 - b1`` and ``a_j = b1 (1-b2) b2^(j-1)`` for ``j >= 1``.
    Muon's update has the same form: Nesterov ``(b1, b2) = (mu^2, mu)``, heavy ball ``(mu, mu)``."""
    return 1.0 - b1, b2, b1 * (1.0 - b2)


def momentum_correlations(b1, b2, lags):
    """Lag-k correlation ``rho_k = A b2^(k-1)`` (k = 1..lags) of ``c_t`` for white gradients:
    ``rho_k = sum_j a_j a_{j+k} / V``, ``V = sum_j a_j^2 = (1-b1)^2 + b1^2 (1-b2)/(1+b2)``,
    ``A = b1 (1-b2) ((1-b1) + b1 b2/(1+b2)) / V``."""
    V = (1 - b1) ** 2 + b1 * b1 * (1 - b2) / (1 + b2)
    A = b1 * (1 - b2) * ((1 - b1) + b1 * b2 / (1 + b2)) / V
    return A * b2 ** np.arange(lags, dtype=float)


def sign_correlation(rho):
    """``E[sign(X) sign(Y)] = (2/pi) arcsin(rho)`` for jointly Gaussian X, Y of correlation rho."""
    return 2.0 / np.pi * np.arcsin(np.clip(rho, -1.0, 1.0))


def correlation_sum(r, p):
    """``R = 1 + 2 sum_{k>=1} p^k r_k`` for lag correlations ``r = (r_1, r_2, ...)``."""
    r = np.asarray(r, dtype=float)
    return 1.0 + 2.0 * float(np.sum(p ** np.arange(1, r.size + 1) * r))


def _lags(b2, p):
    """Enough lags for ``(p b2)^k`` to fall below 1e-12."""
    return int(min(200000, max(10, np.ceil(np.log(1e-12) / np.log(max(p * b2, 1e-300))))))


def _decay_equilibrium(name, lr, wd, mean_square, R):
    """Shared closing step: ``x (1-p^2) = lr^2 E||s||^2 R``, radial part of the step relative to
    ``||w||``: ``alpha = -(R-1) S / (2p)`` with ``S = lr^2 E||s||^2 / x = (1-p^2)/R``;
    ``tan(angle) = sqrt(S - alpha^2)/(p - alpha)``. ``||w||^2`` relaxes at ``2 lr wd``."""
    p = 1.0 - lr * wd
    x = lr * lr * mean_square * R / (1 - p * p)
    S = (1 - p * p) / R
    alpha = -(R - 1) * S / (2 * p)
    xs = lr * mean_square * R / (2 * wd)
    return Equilibrium(name, float(np.sqrt(x)), float(np.sqrt(xs)),
                       float(np.arctan(np.sqrt(S - alpha * alpha) / (p - alpha))),
                       float(np.sqrt(2 * lr * wd / R)), lr / float(np.sqrt(x)), lr / float(np.sqrt(xs)),
                       2 * lr * wd, "||w||^2")


def lion_R(lr, wd, betas=(0.9, 0.99)):
    """Lion's ``R = 1 + 2 sum_k p^k (2/pi) arcsin(rho_k)`` (README (16.3))."""
    b1, b2 = betas
    p = 1.0 - lr * wd
    return correlation_sum(sign_correlation(momentum_correlations(b1, b2, _lags(b2, p))), p)


def lion_equilibrium(lr, wd, d, betas=(0.9, 0.99)):
    """Lion with decoupled ``wd`` (no convention: decoupled) on a scale-invariant group of ``d``
    entries, white Gaussian gradients. ``||s||^2 = d`` exactly, so ``||w||^2 = lr^2 d R/(1-p^2)``
    (small: ``lr d R/(2 wd)``) and ``angle ~ sqrt(2 lr wd / R)``: free of ``G2`` and ``d``."""
    return _decay_equilibrium("lion", lr, wd, d, lion_R(lr, wd, betas))


def lion_angle_kosson(lr, wd, betas=(0.9, 0.99)):
    """Kosson et al.'s Lion angle ``sqrt(pi/2) sqrt(2 lr wd) sqrt((1-b1)^2 + b1^2 (1-b2)/(1+b2))``:
    (16.4) with the arcsine linearized, ``p^k = 1`` and ``R - 1 ~ R`` (README section 16)."""
    b1, b2 = betas
    return float(np.sqrt(np.pi / 2 * 2 * lr * wd * ((1 - b1) ** 2 + b1 * b1 * (1 - b2) / (1 + b2))))


def newton_schulz(u, coefficients=NS_COEFFICIENTS, steps=5, eps=1e-7):
    """Muon's orthogonalization of a stack of matrices ``(..., m, n)``: scale each to Frobenius norm
    1, then ``steps`` times ``X <- a X + (b A + c A^2) X``, ``A = X X^T`` (on the wide side)."""
    a, b, c = coefficients
    tall = u.shape[-2] > u.shape[-1]
    x = np.swapaxes(u, -1, -2) if tall else u
    x = x / np.maximum(np.linalg.norm(x, axis=(-2, -1), keepdims=True), eps)
    for _ in range(steps):
        gram = x @ np.swapaxes(x, -1, -2)
        x = a * x + (b * gram + c * gram @ gram) @ x
    return np.swapaxes(x, -1, -2) if tall else x


def orthogonalized_correlation(rhos, shape, samples=8, seed=0, coefficients=NS_COEFFICIENTS, steps=5):
    """``(h(rho) for rho in rhos, E||o_row||^2)``: the correlation ``E<O(X), O(Y)> / E||O(X)||^2``
    of Newton-Schulz outputs for Gaussian ``(m, n)`` matrices X, Y whose entries have correlation
    rho (Monte Carlo, ``samples`` pairs per rho, seeded), and the mean squared norm of a row of
    ``O(X)``. Muon's analogue of Sheppard's ``(2/pi) arcsin(rho)``."""
    rng = np.random.default_rng(seed)
    m, n = shape
    x = rng.standard_normal((samples, m, n))
    z = rng.standard_normal((samples, m, n))
    ox = newton_schulz(x, coefficients, steps)
    norm2 = float((ox * ox).sum() / (samples * m))
    rhos = np.asarray(rhos, dtype=float)
    h = np.empty(rhos.shape)
    for i, rho in enumerate(rhos.ravel()):
        oy = newton_schulz(rho * x + np.sqrt(max(1 - rho * rho, 0.0)) * z, coefficients, steps)
        h.flat[i] = (ox * oy).sum() / (samples * m) / norm2
    return h, norm2


def muon_R(lr, wd, shape, momentum=0.95, nesterov=True, grid=41, samples=8, seed=0):
    """Muon's ``R = 1 + 2 sum_k p^k h(rho_k)`` (README (17.3)), with ``h`` measured on a grid of
    ``rho`` and interpolated; also returns ``E||o_row||^2``."""
    b1, b2 = (momentum * momentum, momentum) if nesterov else (momentum, momentum)
    p = 1.0 - lr * wd
    rho = momentum_correlations(b1, b2, _lags(b2, p)) if momentum > 0 else np.zeros(1)
    knots = np.linspace(0.0, 1.0, grid)
    h, norm2 = orthogonalized_correlation(knots, shape, samples, seed)
    return correlation_sum(np.interp(rho, knots, h), p), norm2


def muon_equilibrium(lr, wd, shape, momentum=0.95, nesterov=True, adjusted_lr=None, **mc):
    """Muon with decoupled ``wd`` on a matrix of ``shape`` (rows = scale-invariant units), white
    Gaussian gradients: ``||w_row||^2 = lr_adj^2 E||o_row||^2 R/(1-p^2)``, ``p = 1 - lr wd`` (decay
    uses the unadjusted lr, the step the adjusted one), ``angle ~ sqrt(2 lr wd / R)``, free of
    ``lr_adj``, the shape's step size and ``G2``. At ``momentum = 0``, ``R = 1`` and
    ``cos(angle) = 1 - lr wd`` exactly."""
    R, norm2 = muon_R(lr, wd, shape, momentum, nesterov, **mc)
    step = lr if adjusted_lr is None else adjusted_lr
    eq = _decay_equilibrium("muon", lr, wd, norm2 * (step / lr) ** 2, R)
    return eq
