"""A scale-invariant random walk: the cleanest setting in which the equilibrium laws hold.

Many independent units, one per row of a ``(units, d)`` array ``w``. At each step every unit
gets the gradient a scale-invariant loss would give it (identity 2 of THEORY.md):

    g_tilde = P_perp(w) xi,    g = g_tilde / ||w||,    P_perp(w) = I - w w^T / ||w||^2,

with ``xi ~ N(0, G2/(d-1) I)``, so that ``<w, g> = 0`` exactly and ``E||g_tilde||^2 = G2``.
With ``rho != 0`` the noise is AR(1) in time, ``xi_t = rho xi_{t-1} + sqrt(1-rho^2) eta_t``,
so consecutive gradients are correlated (lag-m correlation ~ ``rho^m``), as minibatch
gradients on real data are.

The update is supplied by the caller, so the same walk drives theory's reference rules
(``theory.updates``) or any other optimizer (e.g. refnet's): ``make_step(w0)`` must return a
callable ``step(w, g) -> w_next``. The walk records per step and unit the squared norm, the
angle between ``w_t`` and ``w_{t+1}`` and ``||g_tilde||^2``; the ``Walk`` it returns averages
them over a late window (default: the second half).
"""

from dataclasses import dataclass

import numpy as np


def initial_weights(units, d, norm0=1.0, rng=None):
    """``(units, d)`` float64 array of uniformly random directions, each row of norm ``norm0``."""
    rng = np.random.default_rng() if rng is None else rng
    w = rng.standard_normal((units, d))
    return norm0 * w / np.linalg.norm(w, axis=1, keepdims=True)


def scale_invariant_gradient(w, xi):
    """``g = P_perp(w) xi / ||w||`` per row: orthogonal to ``w`` and scaling as ``1/||w||``."""
    n2 = (w * w).sum(axis=1, keepdims=True)
    g_tilde = xi - w * ((w * xi).sum(axis=1, keepdims=True) / n2)
    return g_tilde / np.sqrt(n2)


def row_angles(a, b):
    """Angle between corresponding rows, ``2*atan2(||a_hat-b_hat||, ||a_hat+b_hat||)`` (accurate
    for tiny angles, where ``arccos`` of a dot product loses every digit)."""
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return 2.0 * np.arctan2(np.linalg.norm(a - b, axis=1), np.linalg.norm(a + b, axis=1))


@dataclass
class Walk:
    """What a walk recorded. ``norms2``: ``(steps+1, units)`` squared norms ``||w_t||^2``;
    ``angles``: ``(steps, units)`` angle between ``w_t`` and ``w_{t+1}``; ``gt2``:
    ``(steps, units)`` ``||g_tilde_t||^2``. ``start`` below is the fraction of the run skipped."""

    norms2: np.ndarray
    angles: np.ndarray
    gt2: np.ndarray

    def _window(self, a, start):
        return a[int(start * (a.shape[0] - 1)):]

    def steady_norm(self, start=0.5):
        """RMS norm ``sqrt(mean ||w||^2)`` over the window and the units."""
        return float(np.sqrt(self._window(self.norms2, start).mean()))

    def rms_angle(self, start=0.5):
        """RMS angular update per step over the window and the units."""
        return float(np.sqrt((self._window(self.angles, start) ** 2).mean()))

    def G2(self, start=0.5):
        """Measured ``E||g_tilde||^2`` over the window."""
        return float(self._window(self.gt2, start).mean())

    def slope(self, power=2.0, start=0.5):
        """Least-squares slope per step of the unit-averaged ``||w_t||^power`` over the window."""
        y = self._window(self.norms2 ** (power / 2.0), start).mean(axis=1)
        t = np.arange(y.size, dtype=float)
        return float(np.polyfit(t, y, 1)[0])


def random_walk(make_step, *, d=256, units=64, steps=4000, G2=1.0, norm0=1.0, rho=0.0, rng=None,
                scales=None):
    """Run ``steps`` steps of the scale-invariant walk and return a ``Walk``.

    make_step: ``make_step(w0) -> step``, ``step(w, g) -> w_next`` (may update in place and
    return the same array; the walk copies what it needs first). ``w0`` is ``(units, d)``
    float64 with rows of norm ``norm0``. ``G2``: ``E||g_tilde||^2``. ``rho``: lag-1 correlation
    of the noise (AR(1)); 0 gives independent gradients. ``scales``: optional ``(d,)``
    per-coordinate noise scales (normalized to mean square 1, so ``G2`` is unchanged), to
    model uneven gradients (README section 14, ``effective_width``); None: all equal.
    """
    if not (d >= 2 and units >= 1 and steps >= 1):
        raise ValueError(f"random_walk: got d={d}, units={units}, steps={steps}; "
                         "expected d >= 2, units >= 1, steps >= 1")
    if not -1.0 < rho < 1.0:
        raise ValueError(f"random_walk(rho): got {rho}, expected -1 < rho < 1")
    rng = np.random.default_rng() if rng is None else rng
    scale = np.sqrt(G2 / (d - 1.0))
    if scales is not None:
        scales = np.asarray(scales, dtype=np.float64)
        if scales.shape != (d,) or np.any(scales <= 0) or not np.all(np.isfinite(scales)):
            raise ValueError(f"random_walk(scales): got shape {scales.shape}, expected ({d},) "
                             "finite values > 0")
        scale = scale * scales / np.sqrt((scales ** 2).mean())
    w = initial_weights(units, d, norm0, rng)
    step = make_step(w.copy())
    norms2 = np.empty((steps + 1, units))
    angles = np.empty((steps, units))
    gt2 = np.empty((steps, units))
    norms2[0] = (w * w).sum(axis=1)
    xi = scale * rng.standard_normal((units, d))
    for t in range(steps):
        if t and rho:
            xi = rho * xi + np.sqrt(1.0 - rho * rho) * scale * rng.standard_normal((units, d))
        elif t:
            xi = scale * rng.standard_normal((units, d))
        g = scale_invariant_gradient(w, xi)
        gt2[t] = (g * g).sum(axis=1) * norms2[t]
        w_prev = w.copy()
        w = step(w, g)
        w = np.array(w.get() if hasattr(w, "get") else w, dtype=np.float64, copy=True)  # cupy -> host
        angles[t] = row_angles(w_prev, w)
        norms2[t + 1] = (w * w).sum(axis=1)
    return Walk(norms2=norms2, angles=angles, gt2=gt2)
