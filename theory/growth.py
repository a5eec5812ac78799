"""Without L2 the norm of a scale-invariant group grows forever and the effective lr decays.

Each function takes an array of steps ``t`` and returns a ``Growth`` of arrays over ``t``.
Assumptions: ``G2 = E||g_tilde||^2`` constant (quasi-static), gradients uncorrelated across
steps, steps with ``t >= 0`` counted from a weight of norm ``norm0``. Derivations:
theory/README.md.
"""

from dataclasses import dataclass

import numpy as np

from theory.equilibria import adam_v_noise_factor


@dataclass(frozen=True)
class Growth:
    """``norm``: ``||w_t||`` (exact form), ``norm_small``: THEORY.md's law; ``slope``: the growth
    per step of ``||w||^power`` (exact form, at ``t``), ``slope_small``: the law's constant;
    ``angle``: RMS angle per step at ``t``, ``angle_asymptotic``: its large-``t`` form;
    ``effective_lr`` / ``effective_lr_asymptotic`` likewise."""

    t: np.ndarray
    power: int
    norm: np.ndarray
    norm_small: np.ndarray
    slope: np.ndarray
    slope_small: float
    angle: np.ndarray
    angle_asymptotic: np.ndarray
    effective_lr: np.ndarray
    effective_lr_asymptotic: np.ndarray


def sgd_growth(t, lr, G2, norm0=1.0):
    """Plain SGD, no L2. From identity 4 at ``lam = 0``, ``y = ||w||^4`` obeys
    ``y' = y + 2 lr^2 ||g_tilde||^2 + lr^4 ||g_tilde||^4 / y``, so with ``c = lr^2 G2``:

        ||w_t||^4 = ||w_0||^4 + 2 c t + (c/2) ln(1 + 2 c t/||w_0||^4)   (small: drop the log),

    ``tan(angle_t) = lr sqrt(G2)/||w_t||^2 -> 1/sqrt(2t)``, effective lr
    ``lr/||w_t||^2 -> 1/sqrt(2 G2 t)``: independent of ``lr`` in the long run, and set by the
    early steps through ``||w_0||``."""
    t = np.asarray(t, dtype=float)
    c = lr * lr * G2
    y_small = norm0 ** 4 + 2 * c * t
    y = y_small + 0.5 * c * np.log1p(2 * c * t / norm0 ** 4)
    with np.errstate(divide="ignore"):
        return Growth(t, 4, y ** 0.25, y_small ** 0.25, 2 * c + c * c / y, 2 * c,
                      np.arctan(lr * np.sqrt(G2) / np.sqrt(y)), 1 / np.sqrt(2 * t),
                      lr / np.sqrt(y), 1 / np.sqrt(2 * G2 * t))


def adam_growth(t, lr, d, norm0=1.0, betas=(0.9, 0.999)):
    """Adam, no L2. Each step has mean square ``lr^2 d (1-b1)/(1+b1)``; momentum's radial part
    adds the factor ``(1+b1)/(1-b1)``, so ``||w_t||^2 = ||w_0||^2 + lr^2 d t`` (small), angle
    ``sqrt((1-b1)/(1+b1) lr^2 d/||w_t||^2) -> sqrt((1-b1)/((1+b1) t))``, effective lr
    ``lr/||w_t|| -> 1/sqrt(d t)``. ``t``: integer steps.

    Exact form (the ``1/(1-b2)`` lag): ``v`` averages ``g^2 ~ G2/(d ||w||^2)`` over the last
    ``~b2/(1-b2)`` steps, when the norm was smaller, so it overestimates the current ``g^2`` and
    the step shrinks. Mean field, with ``x = ||w||^2`` and ``a`` the bias-corrected EMA of
    ``1/x`` (what ``v`` tracks, up to ``G2/d``):

        a_t = EMA_b2(1/x_0 .. 1/x_t) / (1 - b2^(t+1)),   x_{t+1} = x_t + F lr^2 d / (x_t a_t),

    ``F = adam_v_noise_factor(betas)``; ``slope`` is ``x_{t+1} - x_t`` and the angle
    ``sqrt(k slope/x_t)``. Without the lag (``a_t = 1/x_t``) this is the small law. Run over
    ``max(t)`` steps (a Python loop: fine up to ~1e6 steps).
    """
    t = np.asarray(t)
    if t.size and (np.any(t < 0) or np.any(t != np.round(t))):
        raise ValueError(f"adam_growth(t): got {t!r}, expected non-negative integer steps")
    t = t.astype(int)
    b1, b2 = betas
    k, c = (1 - b1) / (1 + b1), adam_v_noise_factor(betas) * lr * lr * d
    n = int(t.max()) + 1 if t.size else 1
    x, slope = np.empty(n + 1), np.empty(n)
    x[0], ema = norm0 ** 2, 0.0
    for i in range(n):
        ema = b2 * ema + (1 - b2) / x[i]
        slope[i] = c / (x[i] * ema / (1 - b2 ** (i + 1)))
        x[i + 1] = x[i] + slope[i]
    x, slope = x[t], slope[t]
    x_small = norm0 ** 2 + lr * lr * d * t
    tf = t.astype(float)
    with np.errstate(divide="ignore"):
        return Growth(tf, 2, np.sqrt(x), np.sqrt(x_small), slope, lr * lr * d,
                      np.sqrt(k * slope / x), np.sqrt(k / tf), lr / np.sqrt(x), 1 / np.sqrt(d * tf))
