"""Identity 5: rescalings of the hyperparameters that leave every direction ``w_t/||w_t||`` unchanged.

Scale ``w_0 -> c w_0``. Because ``g(c w) = g(w)/c``, a run stays exactly ``c`` times the original
(same directions, same data order) if each update term scales by ``c`` too:

- SGD, with or without momentum: ``lr g`` must scale by ``c`` while ``g`` scales by ``1/c``, so
  ``lr -> c^2 lr``; the L2 term ``lr 2 lam w`` by ``c`` means ``lr lam`` fixed: ``lam -> lam/c^2``;
  decoupled ``lr wd w`` likewise ``wd -> wd/c^2``. The momentum buffer scales by ``1/c``.
- Adam + coupled L2: ``g + 2 lam w`` must scale like ``g`` (by ``1/c``): ``lam -> lam/c^2``; then
  ``m -> m/c``, ``sqrt(v) -> sqrt(v)/c``, and the step ``m/(sqrt(v) + eps)`` is unchanged if
  ``eps -> eps/c``; it must scale by ``c``: ``lr -> c lr``.
- AdamW: as Adam for the step (``lr -> c lr``, ``eps -> eps/c``); the decay ``lr wd w`` scales by
  ``c`` iff ``lr wd`` is fixed: ``wd -> wd/c``.

Adam + L2 under SGD's rule ``(c^2 lr, lam/c^2)`` is NOT a symmetry: the step then scales by
``c^2``, not ``c``. Consequently the equilibria depend on ``lr*lam`` (SGD), ``lr^2*lam``
(Adam + L2), ``lr*wd`` (AdamW), see ``equilibrium_invariant``. Convention-free: ``lam`` and
``lam_B = 2 lam`` scale alike.
"""

import math

# exponent of c for each setting: new = old * c**exponent
_EXPONENTS = {
    "sgd": {"lr": 2, "lam": -2, "wd": -2, "w0_scale": 1},
    "adam": {"lr": 1, "lam": -2, "wd": -1, "w0_scale": 1, "eps": -1},
}
_ALIASES = {"sgd": "sgd", "sgd_momentum": "sgd", "adam": "adam", "adamw": "adam"}


def _rule(optimizer):
    try:
        return _ALIASES[optimizer]
    except KeyError:
        raise ValueError(f"optimizer: got {optimizer!r}, expected one of {sorted(_ALIASES)}") from None


def symmetry_map(optimizer, c, *, lr, lam=0.0, wd=0.0, w0_scale=1.0, eps=0.0):
    """Map a configuration to the equivalent one for ``w_0 -> c w_0`` (identity 5).

    optimizer: ``"sgd"``/``"sgd_momentum"`` (``(c^2 lr, lam/c^2, wd/c^2, c w0)``) or
    ``"adam"``/``"adamw"`` (``(c lr, lam/c^2, wd/c, c w0, eps/c)``). Returns a dict with keys
    ``lr, lam, wd, w0_scale, eps`` (SGD has no eps; it is passed through). ``c > 0``.
    """
    if not c > 0:
        raise ValueError(f"symmetry_map(c): got {c!r}, expected a positive scale")
    old = {"lr": lr, "lam": lam, "wd": wd, "w0_scale": w0_scale, "eps": eps}
    exps = _EXPONENTS[_rule(optimizer)]
    return {key: value * c ** exps.get(key, 0) for key, value in old.items()}


def is_symmetry(optimizer, old, new, rtol=1e-12):
    """Whether configuration ``new`` (a dict as returned by ``symmetry_map``) is the image of
    ``old`` under ``optimizer``'s symmetry for some ``c`` (read off ``w0_scale``). E.g. Adam + L2
    mapped with SGD's rule gives False."""
    c = new["w0_scale"] / old["w0_scale"]
    image = symmetry_map(optimizer, c, **old)
    return all(math.isclose(image[key], new[key], rel_tol=rtol, abs_tol=0.0) for key in image)


def equilibrium_invariant(optimizer, lr, lam=0.0, wd=0.0):
    """The combination the steady angle depends on, unchanged by the symmetry:
    ``lr*lam`` for SGD (+ momentum) with L2 (``lr*wd`` with decoupled decay), ``lr^2*lam`` for
    Adam + L2, ``lr*wd`` for AdamW."""
    if optimizer in ("sgd", "sgd_momentum"):
        return lr * lam if lam else lr * wd
    if optimizer == "adam":
        return lr * lr * lam
    if optimizer == "adamw":
        return lr * wd
    raise ValueError(f"equilibrium_invariant(optimizer): got {optimizer!r}, expected 'sgd', "
                     "'sgd_momentum', 'adam' or 'adamw'")
