"""Per-layer balance: does the steady angular update depend on a group's size and gradient scale?

Inputs per scale group: ``d``, its number of entries, and ``G2 = E||g_tilde||^2``, its squared
gradient norm at the unit point. Small-``lr*lam`` steady angles (theory.equilibria):

- SGD (+ momentum) + L2: ``arccos(1 - 2 lr lam/(1+mu))`` -- no ``d``, no ``G2``: every layer
  turns at the same rate, set by ``lr*lam`` alone (balanced).
- AdamW: ``sqrt(2 lr wd (1-b1)/(1+b1))`` -- balanced again.
- Adam + L2: ``sqrt((1-b1)/(1+b1)) (4 lam lr^2 d/G)^(1/3)``, ``G = sqrt(G2)``: unbalanced,
  ``~ d^(1/3) G^(-1/3)``. In terms of the RMS gradient per entry ``gamma = sqrt(G2/d)`` this is
  ``~ d^(1/6) gamma^(-1/3)`` -- the ``d^(1/6)`` of THEORY.md's summary holds at fixed ``gamma``,
  not at fixed ``G2``.
"""

import numpy as np

from theory.conventions import paper_lam
from theory.equilibria import adamw_equilibrium

_EXPONENTS = {
    "sgd": {"d": 0.0, "G": 0.0, "d_at_fixed_gamma": 0.0, "gamma": 0.0},
    "sgd_momentum": {"d": 0.0, "G": 0.0, "d_at_fixed_gamma": 0.0, "gamma": 0.0},
    "adamw": {"d": 0.0, "G": 0.0, "d_at_fixed_gamma": 0.0, "gamma": 0.0},
    "adam": {"d": 1 / 3, "G": -1 / 3, "d_at_fixed_gamma": 1 / 6, "gamma": -1 / 3},
}


def balance_exponents(optimizer):
    """Exponents of the steady angle ``~ d^a G^b`` (``G = sqrt(G2)``, key ``"d"``/``"G"``) and
    ``~ d^a' gamma^b'`` (``gamma = sqrt(G2/d)``, keys ``"d_at_fixed_gamma"``/``"gamma"``).
    optimizer: ``"sgd"``, ``"sgd_momentum"``, ``"adam"`` (coupled L2) or ``"adamw"``."""
    try:
        return dict(_EXPONENTS[optimizer])
    except KeyError:
        raise ValueError(f"balance_exponents(optimizer): got {optimizer!r}, expected one of "
                         f"{sorted(_EXPONENTS)}") from None


def steady_angle(optimizer, d, G2, *, lr, lam=0.0, wd=0.0, momentum=0.0, betas=(0.9, 0.999),
                 convention="A"):
    """Steady RMS angle per step for groups of size ``d`` and gradient scale ``G2`` (arrays
    broadcast), small-``lr*lam`` forms for Adam + L2, exact ones for SGD and AdamW (which do not
    depend on ``d`` or ``G2`` anyway). ``lam`` in ``convention`` (A: paper)."""
    d, G2 = np.broadcast_arrays(np.asarray(d, dtype=float), np.asarray(G2, dtype=float))
    lam = paper_lam(lam, convention)
    if optimizer in ("sgd", "sgd_momentum"):
        return np.full(d.shape, np.arccos(1 - 2 * lr * lam / (1 + momentum)))
    if optimizer == "adamw":
        # s = step^2/||w||^2 and ||w||^2 are both proportional to d: any d gives the angle
        return np.full(d.shape, adamw_equilibrium(lr, wd, 1.0, betas).angle)
    if optimizer == "adam":
        b1 = betas[0]
        return np.sqrt((1 - b1) / (1 + b1)) * (4 * lam * lr * lr * d / np.sqrt(G2)) ** (1 / 3)
    raise ValueError(f"steady_angle(optimizer): got {optimizer!r}, expected one of {sorted(_EXPONENTS)}")
