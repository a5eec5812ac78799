"""The rotational wrapper (Kosson, Messmer, Jaggi 2024, "Rotational equilibrium: how weight
decay balances learning across neural networks", their Algorithm 1 and rotational-optimizer
code): every scale group turns by a fixed angle per step, the one weight decay would have
brought it to in equilibrium, from the first step on."""

import functools
import math

import numpy as np

from refnet.optim.adam import Adam
from refnet.optim.lion import Lion
from refnet.optim.optimizer import check_bool, check_real
from refnet.optim.sgd import SGD
from refnet.optim.wrapper import Wrapper, row_norms, rows


def equilibrium_angle(optimizer, group):
    """The steady angle per step that ``group``'s decay gives a scale-invariant weight under
    ``optimizer`` (small ``lr * decay`` forms; derivations in theory/README.md), or None when it
    depends on the gradients. Which decay each formula takes:

    - SGD, heavy-ball momentum ``mu`` (no dampening), coupled L2 ``l2 = lam`` (the paper's
      convention; PyTorch's ``weight_decay`` is ``2 lam``) and decoupled ``weight_decay = wd``:
      ``sqrt(2 lr (2 lam + (1 - mu) wd) / (1 + mu))``. At ``wd = 0`` this is Kosson et al.'s
      ``sqrt(2 lr wd_torch / (1 + mu))``; decay outside the buffer is worth ``(1 - mu)`` of it.
      Nesterov: times ``sqrt(1 + 2 mu - 2 mu^3)`` (its step adds the fresh gradient once more).
    - Adam with decoupled ``weight_decay = wd`` (AdamW): ``sqrt(2 lr wd (1 - b1) / (1 + b1))``.
      With coupled ``l2`` the angle depends on the gradient norm: None.
    - Lion, decoupled ``wd``: ``sqrt(2 lr wd / R)``, theory/README.md (16.4), with ``R``
      (16.3) the sum of the lag correlations of Lion's signs (``lion_correlation_sum``; white
      Gaussian gradients). Kosson et al.'s ``sqrt(pi/2) sqrt(2 lr wd) sqrt((1 - b1)^2 +
      b1^2 (1 - b2) / (1 + b2))`` linearizes (16.4): at betas (0.9, 0.99) it is 3% below it at
      ``lr wd = 1e-3`` and 16% below at ``6e-3``, 25% above at ``b1 = 0``. For Kosson et al.'s
      paper value pass ``eta_r=theory.lion_angle_kosson(lr, wd, betas)`` (fixed: it does not
      follow an lr schedule).
    - Muon and anything else: None (the orthogonalized momentum's correlation in time sets it).
    """
    lr = group["lr"]
    if isinstance(optimizer, SGD):
        if group["dampening"] != 0:
            return None
        mu = group["momentum"]
        nesterov = math.sqrt(1 + 2 * mu - 2 * mu ** 3) if group["nesterov"] else 1.0
        return nesterov * math.sqrt(2 * lr * (2 * group["l2"] + (1 - mu) * group["weight_decay"]) / (1 + mu))
    if isinstance(optimizer, Adam):
        if group["l2"] != 0:
            return None
        b1 = group["betas"][0]
        return math.sqrt(2 * lr * group["weight_decay"] * (1 - b1) / (1 + b1))
    if isinstance(optimizer, Lion):
        wd = group["weight_decay"]
        return math.sqrt(2 * lr * wd / lion_correlation_sum(lr * wd, *group["betas"]))
    return None


@functools.lru_cache(maxsize=256)
def lion_correlation_sum(lr_wd, b1, b2):
    """``R = 1 + (4/pi) sum_{k>=1} p^k arcsin(A b2^(k-1))``, ``p = 1 - lr wd`` (theory/README.md
    (16.3)): Lion's momentum ``c_t = sum_j a_j g_{t-j}`` (``a_0 = 1 - b1``, ``a_j = b1 (1 - b2)
    b2^(j-1)``) of white gradients has lag-k correlation ``A b2^(k-1)``, ``A = b1 (1 - b2) ((1 - b1)
    + b1 b2 / (1 + b2)) / V``, ``V = sum_j a_j^2 = (1 - b1)^2 + b1^2 (1 - b2) / (1 + b2)``, and the
    sign of Gaussian entries turns a correlation ``rho`` into ``(2/pi) arcsin(rho)`` (Sheppard).
    The sum runs until ``(p b2)^k`` is below 1e-12."""
    p = 1.0 - lr_wd
    V = (1 - b1) ** 2 + b1 * b1 * (1 - b2) / (1 + b2)
    A = b1 * (1 - b2) * ((1 - b1) + b1 * b2 / (1 + b2)) / V
    lags = int(min(200000, max(10, math.ceil(math.log(1e-12) / math.log(max(p * b2, 1e-300))))))
    k = np.arange(1, lags + 1, dtype=float)
    return 1.0 + 4.0 / math.pi * float(np.sum(p ** k * np.arcsin(np.clip(A * b2 ** (k - 1), -1.0, 1.0))))


class Rotational(Wrapper):
    """Turn each scale group of every scale-invariant weight by a set angle per step.

    Per scale group ``w`` (one output unit for ``scale_group="unit"``: a BN- or WN-fed weight's
    row or filter; the whole tensor for ``"tensor"``: LN-fed), with ``n`` its norm at the first
    step and ``u`` the inner optimizer's proposed step without ``-lr`` and without decay::

        u = u - mean(u)                          # if zero_mean
        u = u - <u, w> w / ||w||^2               # only the part that turns w
        nu = beta * nu + (1 - beta) * ||u||^2    # running mean square, nu starts at 0
        w = w - eta_r * n * u / (sqrt(nu / (1 - beta^t)) + eps)
        w = n * w / ||w||                        # back to the initial norm

    so ``tan(angle) = eta_r ||u|| / RMS(||u||)``: about ``eta_r`` every step (exactly, with
    ``update_norm_decay = beta = 0``). ``eta_r`` (None): the inner optimizer's equilibrium
    angle from its own hyperparameters, each step (it follows lr schedules as ``sqrt(lr)``),
    ``equilibrium_angle``; required where that depends on the gradients (Adam + L2, Muon).
    The inner's decay on the wrapped weights is not applied (the fixed norm replaces it);
    parameters without a scale group take the inner's plain step, decay included.

    zero_mean: also remove each group's mean from ``u`` and centre each group once, keeping its
    norm, at construction (Kosson et al.'s default, emulating Weight Standardization; build the
    wrapper before loading a checkpoint's weights, as ``refnet train --resume`` does). Off by default
    here: BatchNorm makes a weight scale-invariant, not shift-invariant.

    Kosson et al. treat every matrix with weight decay as rotational, per neuron by default;
    refnet wraps exactly the parameters with a ``scale_group`` and takes the group from it.
    State per wrapped parameter (``rotational_*`` in the state dict): ``norm`` (n),
    ``update_sq`` (nu), both ``(groups, 1)``, and ``step``.
    """

    _prefix = "rotational_"
    _state_keys = ("norm", "update_sq")

    def __init__(self, inner, eta_r=None, update_norm_decay=0.9, zero_mean=False, eps=1e-8):
        super().__init__(inner, eps)
        options = self._check_options(lambda option: f"Rotational({option})",
                                      dict(eta_r=eta_r, update_norm_decay=update_norm_decay,
                                           zero_mean=zero_mean, eps=self.eps))
        for k, v in options.items():
            setattr(self, k, v)
        self._check_after_load("Rotational")

        if self.zero_mean:  # Kosson et al.'s centring, at construction as theirs
            for p in self.wrapped():
                w = rows(p.data, p.scale_group)
                centred = w - w.mean(axis=1, keepdims=True)
                p.data[...] = (centred * (row_norms(w) / row_norms(centred))).reshape(p.data.shape)

    _options_saved = ("eta_r", "update_norm_decay", "zero_mean", "eps")

    def _check_options(self, where, options):
        eta_r = options["eta_r"]
        return {"eta_r": None if eta_r is None else check_real(where, "eta_r", eta_r),
                "update_norm_decay": check_real(where, "update_norm_decay", options["update_norm_decay"],
                                                high=1.0, high_open=True),
                "zero_mean": check_bool(where, "zero_mean", options["zero_mean"]),
                "eps": check_real(where, "eps", options["eps"])}

    def _check_after_load(self, name):
        """With ``eta_r`` None, every group holding wrapped weights needs an equilibrium angle."""
        if self.eta_r is not None:
            return
        for i, group in enumerate(self.inner.param_groups):
            if not any(p.scale_group is not None for p in group["params"]):
                continue
            angle = equilibrium_angle(self.inner, group)
            if angle is None or angle == 0:
                why = "depends on the gradients" if angle is None else "is 0 (no decay)"
                raise ValueError(f"{name}(eta_r): None, but the equilibrium angle of "
                                 f"{type(self.inner).__name__}'s group {i} {why}; give eta_r, the angle "
                                 f"per step in radians")

    def target(self, group):
        """The angle parameter ``eta_r`` for ``group`` this step."""
        if self.eta_r is not None:
            return self.eta_r
        angle = equilibrium_angle(self.inner, group)
        if angle is None:
            i = next((i for i, g in enumerate(self.inner.param_groups) if g is group), "?")
            raise ValueError(f"Rotational.target(group): group {i} has no equilibrium angle "
                             f"({type(self.inner).__name__} with these options: it depends on the "
                             f"gradients) and eta_r is None; it holds no wrapped weight, or give eta_r")
        return angle

    def _start(self, p, w, state):
        state["step"] = 0
        state["norm"] = row_norms(w)
        state["update_sq"] = 0 * state["norm"]

    def _move(self, p, w, u, group, state):
        beta = self.update_norm_decay
        state["step"] += 1
        if self.zero_mean:
            u = u - u.mean(axis=1, keepdims=True)
        u = u - w * ((u * w).sum(axis=1, keepdims=True) / (w * w).sum(axis=1, keepdims=True))
        state["update_sq"] *= beta
        state["update_sq"] += (1 - beta) * (u * u).sum(axis=1, keepdims=True)
        rms = (state["update_sq"] / (1 - beta ** state["step"])) ** 0.5
        moved = w - self.target(group) * state["norm"] * u / (rms + self.eps)
        p.data[...] = (moved * (state["norm"] / row_norms(moved))).reshape(p.data.shape)

    def _options(self):
        return (f"eta_r={self.eta_r!r}, update_norm_decay={self.update_norm_decay!r}, "
                f"zero_mean={self.zero_mean!r}, eps={self.eps!r}")
