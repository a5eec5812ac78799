"""Adam with coupled L2 (Adam's own ``weight_decay`` in PyTorch), decoupled weight decay
(AdamW) and the paper's unit-norm projection."""

import math

from refnet import backend
from refnet.optim.optimizer import Optimizer, check_bool, check_real


class Adam(Optimizer):
    """Adam, step for step the same arithmetic as ``torch.optim.Adam`` / ``AdamW``.

    For each parameter ``w`` with gradient ``g``, at step ``t = 1, 2, ...`` (``lam`` = l2,
    ``wd`` = weight_decay; L2 and weight decay only where ``p.decay``)::

        d = g + 2 * lam * w                      # coupled L2: the loss gained lam * ||w||^2
        w = (1 - lr * wd) * w                    # decoupled weight decay (AdamW)
        m = b1 * m + (1 - b1) * d                # m, v start at 0
        v = b2 * v + (1 - b2) * d * d
        denom = sqrt(v) / sqrt(1 - b2**t) + eps  # eps added after the bias correction
        w = w - (lr / (1 - b1**t)) * m / denom
        w = w / ||w||  per unit ("unit") or per tensor ("tensor")   if unit_norm

    i.e. ``w -= lr * m_hat / (sqrt(v_hat) + eps)`` with ``m_hat = m / (1 - b1**t)``,
    ``v_hat = v / (1 - b2**t)``. The coupled L2 term passes through m and v, so Adam
    normalizes it away along with the gradient; the decoupled decay does not.

    Mapping to PyTorch (same numbers to rounding):
    ``torch.optim.Adam(lr, betas, eps, weight_decay=wd)`` == ``Adam(lr, betas, eps, l2=wd / 2)``
    (PyTorch adds ``wd * w`` to the gradient: the gradient of ``(wd / 2) * ||w||^2``);
    ``torch.optim.AdamW(lr, betas, eps, weight_decay=wd)`` == ``Adam(lr, betas, eps,
    weight_decay=wd)``. Note that ``torch.optim.Adam(weight_decay=wd)`` is therefore
    ``Adam(l2=wd / 2)`` here, NOT ``Adam(weight_decay=wd)``. No amsgrad.

    params: a list of ``Parameter``, or of dicts ``{"params": [...], option: value}`` whose
    options override the defaults for that group. The trainer may set ``group["lr"]``
    before each step (schedules). State per parameter: ``exp_avg`` (m), ``exp_avg_sq`` (v)
    and ``step`` (t).
    """

    _state_keys = ("exp_avg", "exp_avg_sq")

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, l2=0.0, weight_decay=0.0,
                 unit_norm=False):
        defaults = dict(lr=lr, betas=betas, eps=eps, l2=l2, weight_decay=weight_decay,
                        unit_norm=unit_norm)
        super().__init__(params, defaults)

    def _check_group(self, group, where):
        group["lr"] = check_real(where, "lr", group["lr"])
        betas = group["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"{where('betas')}: got {betas!r}, expected a pair (beta1, beta2)")
        group["betas"] = tuple(check_real(where, f"betas[{i}]", b, high=1.0, high_open=True)
                               for i, b in enumerate(betas))
        group["eps"] = check_real(where, "eps", group["eps"])
        group["l2"] = check_real(where, "l2", group["l2"])
        group["weight_decay"] = check_real(where, "weight_decay", group["weight_decay"])
        group["unit_norm"] = check_bool(where, "unit_norm", group["unit_norm"])

    def _update(self, p, group, state):
        xp = backend.array_module(p.data)
        lr, (b1, b2), eps = group["lr"], group["betas"], group["eps"]
        if not state:
            state["step"] = 0
            state["exp_avg"] = xp.zeros_like(p.data)
            state["exp_avg_sq"] = xp.zeros_like(p.data)
        state["step"] += 1
        t = state["step"]
        m, v = state["exp_avg"], state["exp_avg_sq"]
        d = self._grad_with_l2(p, group["l2"], out=self._scratch_array(p, 0))
        self._decoupled_decay(p, lr, group["weight_decay"])
        tmp = self._scratch_array(p, 1)
        m *= b1
        m += xp.multiply(d, 1 - b1, out=tmp)
        v *= b2
        xp.multiply(d, d, out=tmp)
        tmp *= 1 - b2
        v += tmp
        step_size = lr / (1 - b1 ** t)
        denom = xp.sqrt(v, out=tmp)
        denom /= math.sqrt(1 - b2 ** t)
        denom += eps
        update = xp.divide(m, denom, out=tmp)
        update *= step_size
        p.data -= update
