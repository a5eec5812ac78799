"""Stochastic gradient descent with momentum, coupled L2, decoupled weight decay and the
paper's unit-norm projection."""

from refnet import backend
from refnet.optim.optimizer import Optimizer, check_bool, check_real

_REQUIRED = object()


class SGD(Optimizer):
    """SGD, step for step the same arithmetic as ``torch.optim.SGD``.

    For each parameter ``w`` with gradient ``g`` (``lr``, ``mu`` = momentum,
    ``tau`` = dampening, ``lam`` = l2, ``wd`` = weight_decay; L2 and weight decay only
    where ``p.decay``)::

        d = g + 2 * lam * w                      # coupled L2: the loss gained lam * ||w||^2
        w = (1 - lr * wd) * w                    # decoupled weight decay (AdamW's order)
        if mu != 0:
            b = d                      on the first step
            b = mu * b + (1 - tau) * d on later steps
            d = d + mu * b  if nesterov  else  b
        w = w - lr * d
        w = w / ||w||  per unit ("unit") or per tensor ("tensor")   if unit_norm

    Mapping to PyTorch (same numbers to rounding):
    ``torch.optim.SGD(lr, momentum, dampening, weight_decay=wd, nesterov)``
    == ``SGD(lr, momentum, dampening, nesterov, l2=wd / 2)`` -- PyTorch adds ``wd * w`` to
    the gradient, which is the gradient of ``(wd / 2) * ||w||^2``. ``weight_decay`` here
    has no ``torch.optim.SGD`` twin: it shrinks ``w`` outside the momentum buffer, as
    AdamW does for Adam. Without momentum the two coincide: ``l2=lam`` equals
    ``weight_decay=2 * lam``.

    params: a list of ``Parameter``, or of dicts ``{"params": [...], option: value}`` whose
    options override the defaults for that group. The trainer may set ``group["lr"]``
    before each step (schedules). State per parameter: ``momentum_buffer`` (when
    momentum != 0) and ``step``.
    """

    _state_keys = ("momentum_buffer",)

    def __init__(self, params, lr=_REQUIRED, momentum=0.0, dampening=0.0, nesterov=False,
                 l2=0.0, weight_decay=0.0, unit_norm=False):
        if lr is _REQUIRED:
            raise TypeError("SGD(lr): missing, expected a learning rate >= 0")
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, nesterov=nesterov,
                        l2=l2, weight_decay=weight_decay, unit_norm=unit_norm)
        super().__init__(params, defaults)

    def _check_group(self, group, where):
        group["lr"] = check_real(where, "lr", group["lr"])
        group["momentum"] = check_real(where, "momentum", group["momentum"], high=1.0, high_open=True)
        group["dampening"] = check_real(where, "dampening", group["dampening"], high=1.0)
        group["nesterov"] = check_bool(where, "nesterov", group["nesterov"])
        group["l2"] = check_real(where, "l2", group["l2"])
        group["weight_decay"] = check_real(where, "weight_decay", group["weight_decay"])
        group["unit_norm"] = check_bool(where, "unit_norm", group["unit_norm"])
        if group["nesterov"] and (group["momentum"] == 0 or group["dampening"] != 0):
            raise ValueError(f"{where('nesterov')}: got True with momentum={group['momentum']} and "
                             f"dampening={group['dampening']}, expected momentum > 0 and dampening 0")

    def _update(self, p, group, state):
        xp = backend.array_module(p.data)
        lr, mu, tau = group["lr"], group["momentum"], group["dampening"]
        state["step"] = state.get("step", 0) + 1
        tmp = self._scratch_array(p, 0)
        d = self._grad_with_l2(p, group["l2"], out=tmp)
        self._decoupled_decay(p, lr, group["weight_decay"])
        if mu != 0:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = d.copy()
            else:
                buf *= mu
                if tau == 0:
                    buf += d
                else:  # no Nesterov here, so d may be overwritten
                    buf += xp.multiply(d, 1 - tau, out=tmp)
            if group["nesterov"]:
                nes = xp.multiply(buf, mu, out=self._scratch_array(p, 1))
                nes += d
                d = nes
            else:
                d = buf
        p.data -= xp.multiply(d, lr, out=tmp)
