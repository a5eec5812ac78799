"""Exact identities for a scale-invariant weight group (THEORY.md, identities 1-4, 6, 7).

Assumption throughout: the loss ``L`` is invariant to the scale of the group ``w`` (one unit
before BatchNorm / WeightNorm, the whole tensor before LayerNorm), so ``L(a w) = L(w)`` for
``a > 0``; differentiating gives ``grad L(a w) = grad L(w)/a`` and, at ``a = 1``,
``<w, grad L(w)> = 0`` (Euler). All functions accept numpy arrays and broadcast.
Convention A (paper, default): the loss gains ``lam*||w||^2``; ``convention="B"`` reads ``lam``
as PyTorch's ``weight_decay`` (``= 2*lam``).
"""

import numpy as np

from theory.conventions import paper_lam

_SGD = ("sgd",)
_ADAM = ("adam", "adamw")


def _kind(optimizer, where):
    if optimizer in _SGD:
        return "sgd"
    if optimizer in _ADAM:
        return "adam"
    raise ValueError(f"{where}(optimizer): got {optimizer!r}, expected 'sgd', 'adam' or 'adamw'")


def l2_after_rescaling(lam, a):
    """Identity 1: ``L_lam(a w) = L_{lam a^2}(w)`` with ``L_lam = L + lam||w||^2``; returns
    ``lam*a^2``. Rescaling the weights only moves the L2 coefficient: L2 does not change the
    set of functions, only the scale at which they are represented."""
    return lam * np.square(a)


def effective_lr(lr, norm, optimizer="sgd", momentum=0.0):
    """Effective learning rate of the direction ``w_hat`` of a scale-invariant group.

    SGD: ``lr / ||w||^2`` (``lr / ((1-momentum) ||w||^2)`` in the long run with heavy-ball
    momentum, whose buffer sums ``1/(1-momentum)`` steps). Adam / AdamW: ``lr / ||w||``
    (Adam divides by the gradient's RMS, which cancels one of the two factors ``1/||w||``).
    ``norm`` is ``||w||`` (not squared). Why: ``g = g_tilde/||w||`` and the step moves
    ``w_hat = w/||w||`` by ``step/||w||``.
    """
    if _kind(optimizer, "effective_lr") == "sgd":
        return lr / ((1.0 - momentum) * np.square(norm))
    return lr / np.asarray(norm, dtype=float)


def one_step_angle_scaling(optimizer):
    """Identity 3: the exponent ``k`` in ``angle(one step after w -> c w) ~ c^k``.

    -2 for SGD (the step ``lr g/c`` over the radius ``c ||w||``), -1 for Adam / AdamW (the
    step is scale-free, up to eps, over the radius ``c ||w||``). Exact for SGD; for Adam it
    holds when ``eps`` is negligible against ``sqrt(v_hat)``.
    """
    return -2 if _kind(optimizer, "one_step_angle_scaling") == "sgd" else -1


def sgd_norm_recursion(norm2, lr, lam, grad_norm2, convention="A"):
    """Identity 4 (exact, plain SGD + coupled L2, no momentum):

        ||w_{t+1}||^2 = (1 - 2 lr lam)^2 ||w_t||^2 + lr^2 ||g_t||^2,

    from ``w_{t+1} = (1 - 2 lr lam) w_t - lr g_t`` and ``<w_t, g_t> = 0``. ``norm2`` is
    ``||w_t||^2``, ``grad_norm2`` is ``||g_t||^2`` at ``w_t`` (not at the unit point:
    ``||g_t||^2 = ||g_tilde_t||^2 / ||w_t||^2``).
    """
    q = 1.0 - 2.0 * lr * paper_lam(lam, convention)
    return q * q * norm2 + lr * lr * grad_norm2


def zero_gradient_norm(t, norm0, lr, lam, convention="A"):
    """Identity 7: with zero gradient, ``||w_t|| = |1 - 2 lr lam|^t ||w_0||`` (so
    ``||w_t||^2 = (1 - 2 lr lam)^(2t) ||w_0||^2``): L2 alone shrinks the norm geometrically.
    This is what happens when the training loss reaches zero: the effective lr
    ``lr/||w_t||^2`` then grows like ``(1 - 2 lr lam)^(-2t)`` until training destabilizes."""
    q = 1.0 - 2.0 * lr * paper_lam(lam, convention)
    return np.abs(q) ** np.asarray(t, dtype=float) * norm0


def exponential_lr_equivalent(lr, lam, t, convention="A"):
    """Identity 6: SGD + L2 is SGD without L2 at the growing rate

        lr_t = lr (1 - 2 lr lam)^(-2t-1),     t = 0, 1, 2, ...

    Proof: with ``q = 1 - 2 lr lam`` put ``u_t = w_t / q^t``. Then
    ``u_{t+1} = u_t - (lr/q^(t+1)) g(q^t u_t) = u_t - (lr/q^(2t+1)) g(u_t)`` because
    ``g(a u) = g(u)/a``. So ``u`` follows plain SGD at ``lr_t``, has the same directions as
    ``w``, and ``||w_t|| = q^t ||u_t||``. Assumes ``0 < q`` (``lr lam < 1/2``).
    """
    q = 1.0 - 2.0 * lr * paper_lam(lam, convention)
    return lr * q ** (-2.0 * np.asarray(t, dtype=float) - 1.0)


def exponential_lr_ratio(lr, lam, momentum=0.0, convention="A"):
    """The per-step ratio ``r`` of identity 6 with heavy-ball momentum ``mu`` (README section 24):
    the larger root of ``r^2 - (1 + mu - 2 lr lam) r + mu = 0`` (``1 - 2 lr lam`` at ``mu = 0``).
    Real only when ``2 lr lam <= (1 - sqrt(mu))^2``; otherwise ValueError."""
    lam, mu = paper_lam(lam, convention), float(momentum)
    a = 1.0 + mu - 2.0 * lr * lam
    disc = a * a - 4.0 * mu
    if disc < 0 or a <= 0:
        raise ValueError(f"exponential_lr_ratio: got lr*lam = {lr * lam:g} with momentum {mu:g}; expected "
                         f"2 lr lam <= (1 - sqrt(momentum))^2 = {(1 - mu ** 0.5) ** 2:g} (a real, positive ratio)")
    return 0.5 * (a + np.sqrt(disc))


def exponential_lr_momentum(lr, lam, t, momentum=0.0, convention="A"):
    """Identity 6 with heavy-ball momentum (PyTorch's rule, no dampening; README section 24):
    SGD + momentum ``mu`` + L2 from a zero buffer equals SGD + momentum ``mu`` without L2 at

        lr_t = lr r^(-2t-1),     r = exponential_lr_ratio(lr, lam, mu),

    started from the buffer ``exponential_lr_initial_buffer(...) * w_0``, with ``w_t = r^t u_t``.
    At ``mu = 0`` this is ``exponential_lr_equivalent``."""
    r = exponential_lr_ratio(lr, lam, momentum, convention)
    return lr * r ** (-2.0 * np.asarray(t, dtype=float) - 1.0)


def exponential_lr_initial_buffer(lr, lam, momentum=0.0, convention="A"):
    """The factor ``k`` of the plain run's initial momentum buffer ``b_0 = k w_0`` that makes
    ``exponential_lr_momentum`` exact: ``k = -(1 - r)/(r lr)`` (README section 24). The first
    step then moves ``u`` by ``-lr_0 (mu b_0 + g_0)``, which is the L2 run's first step (its
    buffer starts at zero, as PyTorch's does) divided by ``r``. 0 without momentum."""
    if momentum == 0:
        return 0.0
    r = exponential_lr_ratio(lr, lam, momentum, convention)
    return -(1.0 - r) / (r * lr)
