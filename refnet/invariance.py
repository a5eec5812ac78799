"""Scale invariance: which weights a normalization makes scale-free, and the per-group
quantities the theory talks about (norm, effective learning rate, angular update).

A *scale group* is the set of numbers whose common scale the loss ignores:
``"unit"``: one output unit (row of a dense weight, one conv filter: index along axis 0),
e.g. a weight feeding BatchNorm, or WeightNorm's v;
``"tensor"``: the whole tensor, e.g. a weight feeding LayerNorm.
"""

from refnet import backend


def _as_array_and_group(p, scale_group):
    data = getattr(p, "data", p)
    group = scale_group if scale_group is not None else getattr(p, "scale_group", None)
    return data, group


def group_sq_norms(p, scale_group=None):
    """Squared L2 norm of each scale group of ``p`` (a Parameter or an array).

    Returns shape (out,) for ``"unit"`` (norm over every axis but 0) and (1,) for
    ``"tensor"`` or an unmarked parameter.
    """
    w, group = _as_array_and_group(p, scale_group)
    xp = backend.array_module(w)
    if group == "unit":
        return (w.reshape(w.shape[0], -1) ** 2).sum(axis=1)
    if group in (None, "tensor"):
        return xp.reshape((w ** 2).sum(), (1,))
    raise ValueError(f"group_sq_norms(scale_group): got {group!r}, expected None, 'unit' or 'tensor'")


def group_norms(p, scale_group=None):
    """L2 norm ``||w||`` of each scale group of ``p``; see ``group_sq_norms`` for shapes."""
    xp = backend.array_module(getattr(p, "data", p))
    return xp.sqrt(group_sq_norms(p, scale_group))


def effective_lr(p, lr, optimizer="sgd", scale_group=None):
    """Effective learning rate per scale group: ``lr/||w||^2`` for SGD, ``lr/||w||`` for Adam.

    For a scale-invariant w the gradient is ``g_tilde/||w||`` (g_tilde taken at w/||w||),
    so an SGD step moves the direction w/||w|| by ``lr*g_tilde/||w||^2``; Adam divides the
    gradient by its own RMS, which cancels one factor ``1/||w||`` and leaves ``lr/||w||``.
    """
    norms2 = group_sq_norms(p, scale_group)
    if optimizer == "sgd":
        return lr / norms2
    if optimizer == "adam":
        return lr / backend.array_module(norms2).sqrt(norms2)
    raise ValueError(f"effective_lr(optimizer): got {optimizer!r}, expected 'sgd' or 'adam'")


def angular_update(w_before, w_after, scale_group="unit"):
    """Angle (radians) between ``w_before`` and ``w_after`` per scale group.

    Computed as ``atan2(||a x b_perp||, <a, b>)`` via ``2*atan2(||a_hat - b_hat||, ||a_hat + b_hat||)``,
    which stays accurate for tiny angles where ``arccos`` of a dot product loses all digits.
    """
    xp = backend.array_module(w_before, w_after)
    if scale_group == "unit":
        a = w_before.reshape(w_before.shape[0], -1)
        b = w_after.reshape(w_after.shape[0], -1)
    elif scale_group in (None, "tensor"):
        a = w_before.reshape(1, -1)
        b = w_after.reshape(1, -1)
    else:
        raise ValueError(f"angular_update(scale_group): got {scale_group!r}, expected None, 'unit' or 'tensor'")
    a = a / xp.linalg.norm(a, axis=1, keepdims=True)
    b = b / xp.linalg.norm(b, axis=1, keepdims=True)
    return 2 * xp.arctan2(xp.linalg.norm(a - b, axis=1), xp.linalg.norm(a + b, axis=1))
