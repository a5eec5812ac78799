"""The factor-2 trap between the paper's L2 and PyTorch's ``weight_decay``, in one place.

Convention A (the paper, the default everywhere in theory/): the loss gains ``lam*||w||^2``, so
the gradient gains ``2*lam*w``. Convention B (PyTorch's ``weight_decay`` in SGD and Adam, most
follow-ups): the gradient gains ``lam_B*w``. Hence ``lam_B = 2*lam``.

Decoupled weight decay (AdamW: ``w <- (1 - lr*wd) w - lr*step``) is not an L2 term and has no
convention: ``wd`` is the same number in both. For plain SGD (no momentum) it coincides with
coupled L2 at ``wd = 2*lam = lam_B``.
"""

CONVENTIONS = ("A", "B")


def to_pytorch_weight_decay(lam):
    """Paper's ``lam`` (convention A) -> PyTorch ``weight_decay`` (convention B): ``2*lam``."""
    return 2.0 * lam


def from_pytorch_weight_decay(weight_decay):
    """PyTorch ``weight_decay`` (convention B) -> paper's ``lam`` (convention A): ``wd/2``."""
    return weight_decay / 2.0


def paper_lam(lam, convention="A"):
    """Return the coupled-L2 coefficient in convention A, given it in ``convention``."""
    if convention == "A":
        return lam
    if convention == "B":
        return from_pytorch_weight_decay(lam)
    raise ValueError(f"convention: got {convention!r}, expected 'A' (paper: lam*||w||^2) "
                     f"or 'B' (PyTorch weight_decay = 2*lam)")
