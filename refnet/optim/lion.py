"""Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms"): the sign of an
interpolated momentum, with decoupled weight decay."""

from refnet import backend
from refnet.optim.optimizer import Optimizer, check_real


class Lion(Optimizer):
    """Lion, the paper's Algorithm 2 step for step.

    For each parameter ``w`` with gradient ``g`` (``wd`` = weight_decay, only where
    ``p.decay``; ``m`` starts at 0)::

        c = b1 * m + (1 - b1) * g                # the interpolation the sign is taken of
        w = w - lr * (sign(c) + wd * w)          # = (1 - lr * wd) * w - lr * sign(c)
        m = b2 * m + (1 - b2) * g                # the momentum remembers longer (b2 > b1)

    ``sign(0) = 0``. Every entry moves by exactly ``lr`` (or 0), whatever the gradient's
    scale: like Adam, Lion's step does not shrink when a scale-invariant weight grows, so its
    equilibrium under ``weight_decay`` is set by ``lr * wd`` and the betas alone
    (theory/README.md, section 16). ``weight_decay`` is decoupled, as in AdamW and the paper
    (which suggests a 3-10x smaller lr and a 3-10x larger wd than AdamW's). No bias correction,
    no eps. PyTorch ships no Lion; the tests check this against the paper's algorithm.

    params: a list of ``Parameter``, or of dicts ``{"params": [...], option: value}``. State per
    parameter: ``exp_avg`` (m) and ``step``.
    """

    _state_keys = ("exp_avg",)

    def __init__(self, params, lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0):
        super().__init__(params, dict(lr=lr, betas=betas, weight_decay=weight_decay, unit_norm=False))

    def _check_group(self, group, where):
        group["lr"] = check_real(where, "lr", group["lr"])
        group["betas"] = check_betas(where, group["betas"])
        group["weight_decay"] = check_real(where, "weight_decay", group["weight_decay"])
        if group["unit_norm"]:
            raise ValueError(f"{where('unit_norm')}: Lion has no unit_norm option; wrap it in "
                             f"refnet.optim.Hyperball for a fixed-norm update")

    def _update(self, p, group, state):
        xp = backend.array_module(p.data)
        lr, (b1, b2) = group["lr"], group["betas"]
        if not state:
            state["step"] = 0
            state["exp_avg"] = xp.zeros_like(p.data)
        state["step"] += 1
        m = state["exp_avg"]
        c = xp.multiply(m, b1, out=self._scratch_array(p, 0))
        c += xp.multiply(p.grad, 1 - b1, out=self._scratch_array(p, 1))
        self._decoupled_decay(p, lr, group["weight_decay"])
        p.data -= xp.multiply(xp.sign(c, out=c), lr, out=c)
        m *= b2
        m += xp.multiply(p.grad, 1 - b2, out=self._scratch_array(p, 1))


def check_betas(where, betas, name="betas"):
    """``(b1, b2)`` as floats in [0, 1), or an error naming the option ``name``."""
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"{where(name)}: got {betas!r}, expected a pair (beta1, beta2)")
    return tuple(check_real(where, f"{name}[{i}]", b, high=1.0, high_open=True) for i, b in enumerate(betas))
