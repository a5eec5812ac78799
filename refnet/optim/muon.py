"""Muon (Jordan et al. 2024; ``torch.optim.Muon``): momentum, orthogonalized by a Newton-Schulz
iteration, for matrices; AdamW for the rest."""

import math

from refnet import backend
from refnet.optim.adam import Adam
from refnet.optim.lion import check_betas
from refnet.optim.optimizer import Optimizer, check_bool, check_real

ADJUST_LR_FNS = (None, "original", "match_rms_adamw")


def newton_schulz(g, ns_coefficients=(3.4445, -4.775, 2.0315), ns_steps=5, eps=1e-7):
    """``U S' V^T`` for ``g = U S V^T`` (2-D), with every singular value pushed into about
    [0.7, 1.2]: PyTorch's ``_zeropower_via_newtonschulz`` in ``g``'s own dtype.

    Work with the wide orientation (``X`` is ``g`` or ``g.T``, rows <= columns), scale to
    ``||X||_F <= 1`` (so every singular value is <= 1), then ``ns_steps`` times apply the odd
    quintic ``X <- a X + (b A + c A^2) X``, ``A = X X^T``, which maps each singular value
    ``s -> a s + b s^3 + c s^5`` and leaves the singular vectors alone. The coefficients
    maximize the slope at 0 (a = 3.4445), so small singular values grow fast; they overshoot
    instead of converging to exactly 1, which Muon does not mind.
    """
    xp = backend.array_module(g)
    a, b, c = ns_coefficients
    tall = g.shape[0] > g.shape[1]
    x = g.T if tall else g
    x = x / max(float(xp.linalg.norm(x)), eps)
    for _ in range(ns_steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * (gram @ gram)) @ x
    return x.T if tall else x


def adjusted_lr(lr, adjust_lr_fn, shape):
    """PyTorch's learning-rate adjustment for an ``(A, B)`` matrix: ``"original"`` (and None)
    ``lr * sqrt(max(1, A/B))``; ``"match_rms_adamw"`` ``lr * 0.2 * sqrt(max(A, B))``."""
    rows, cols = shape
    if adjust_lr_fn == "match_rms_adamw":
        return lr * 0.2 * math.sqrt(max(rows, cols))
    return lr * math.sqrt(max(1.0, rows / cols))


class Muon(Optimizer):
    """Muon with ``torch.optim.Muon``'s signature, defaults and arithmetic (PyTorch 2.13).

    For each parameter ``W`` with two or more axes, reshaped to ``(out, in)`` (a conv kernel
    ``(F, C, kh, kw)`` to ``(F, C*kh*kw)``), with gradient ``G`` (``mu`` = momentum, ``B``
    starts at 0; weight decay only where ``p.decay``)::

        B = mu * B + (1 - mu) * G                # PyTorch's buf.lerp_(grad, 1 - mu)
        U = (1 - mu) * G + mu * B   if nesterov  else  B
        O = newton_schulz(U, ns_coefficients, ns_steps, eps)
        W = (1 - lr * wd) * W                    # decoupled decay, with the unadjusted lr
        W = W - adjusted_lr(lr, adjust_lr_fn, (out, in)) * O

    The orthogonalized step's size is set by ``lr`` and the matrix's shape, not by the
    gradient's scale, so under ``weight_decay`` a scale-invariant weight settles at an angle
    per step set by ``lr * wd`` and the momentum's memory (theory/README.md, section 17).

    refnet's extensions, documented differences from PyTorch:

    - Newton-Schulz runs in the parameter's dtype (PyTorch: bfloat16), so float64 runs are
      exact to rounding.
    - PyTorch raises on parameters that are not 2-D. Here kernels with more axes are reshaped
      as above (the reference implementation does the same for convolutions), and parameters
      with fewer axes (biases, BN's gamma and beta) are updated by AdamW inside the same
      optimizer, as the reference implementation's auxiliary-Adam variant does: with the
      group's ``lr`` and ``weight_decay`` (decoupled, only where ``p.decay``), and
      ``adamw_betas`` / ``adamw_eps`` (defaults (0.9, 0.95) and 1e-10, that variant's), so
      that ``refnet train --opt muon`` trains a whole network. Put those parameters in a
      param group of their own to give them another ``lr``.
    - A reshaped kernel's learning-rate adjustment takes the shape of the matrix that is
      orthogonalized, ``(F, C*kh*kw)``: ``"original"`` gives ``sqrt(max(1, F / (C kh kw)))``.
      The two references differ from it and from each other: Keller Jordan's ``muon_update``
      scales by ``sqrt(max(1, grad.size(-2) / grad.size(-1)))`` on the 4-D gradient, i.e.
      ``sqrt(max(1, kh / kw))`` = 1 for square kernels; ``torch.optim.Muon``'s ``_adjust_lr``
      reads ``shape[:2] = (F, C)`` (moot, as it refuses 4-D parameters). They agree whenever
      ``F <= C kh kw`` (most hidden convolutions); they differ on a first layer such as
      (32, 1, 3, 3): ``sqrt(32/9) = 1.89`` here, 1 in the reference. ``"match_rms_adamw"``:
      ``0.2 sqrt(max(F, C kh kw))``.
    - ``weight_decay`` applies only to parameters with ``p.decay`` (refnet's convention;
      PyTorch's Muon decays every parameter it holds).

    State per parameter: ``momentum_buffer`` (matrices) or ``exp_avg`` and ``exp_avg_sq``
    (AdamW), and ``step``.
    """

    _state_keys = ("momentum_buffer", "exp_avg", "exp_avg_sq")

    def __init__(self, params, lr=1e-3, weight_decay=0.1, momentum=0.95, nesterov=True,
                 ns_coefficients=(3.4445, -4.775, 2.0315), eps=1e-7, ns_steps=5, adjust_lr_fn=None,
                 *, adamw_betas=(0.9, 0.95), adamw_eps=1e-10):
        defaults = dict(lr=lr, weight_decay=weight_decay, momentum=momentum, nesterov=nesterov,
                        ns_coefficients=ns_coefficients, eps=eps, ns_steps=ns_steps,
                        adjust_lr_fn=adjust_lr_fn, adamw_betas=adamw_betas, adamw_eps=adamw_eps,
                        unit_norm=False)
        super().__init__(params, defaults)

    def _check_group(self, group, where):
        for name in ("lr", "weight_decay", "eps", "adamw_eps"):
            group[name] = check_real(where, name, group[name])
        group["momentum"] = check_real(where, "momentum", group["momentum"], high=1.0, high_open=True)
        group["nesterov"] = check_bool(where, "nesterov", group["nesterov"])
        coefficients = group["ns_coefficients"]
        if not isinstance(coefficients, (tuple, list)) or len(coefficients) != 3:
            raise ValueError(f"{where('ns_coefficients')}: got {coefficients!r}, expected three numbers (a, b, c)")
        group["ns_coefficients"] = tuple(check_real(where, f"ns_coefficients[{i}]", v, low=-math.inf)
                                         for i, v in enumerate(coefficients))
        steps = group["ns_steps"]
        if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps < 100:
            raise ValueError(f"{where('ns_steps')}: got {steps!r}, expected an integer from 1 to 99")
        if group["adjust_lr_fn"] not in ADJUST_LR_FNS:
            raise ValueError(f"{where('adjust_lr_fn')}: got {group['adjust_lr_fn']!r}, expected one of "
                             f"{ADJUST_LR_FNS}")
        group["adamw_betas"] = check_betas(where, group["adamw_betas"], "adamw_betas")
        if group["unit_norm"]:
            raise ValueError(f"{where('unit_norm')}: Muon has no unit_norm option; wrap it in "
                             f"refnet.optim.Hyperball for a fixed-norm update")

    def _load_entry(self, name, i, p, entry):
        expected = ("momentum_buffer",) if p.data.ndim >= 2 else ("exp_avg", "exp_avg_sq")
        wrong = sorted(set(entry) & set(self._state_keys) - set(expected))
        if wrong:
            kind = "matrix (Muon)" if p.data.ndim >= 2 else f"{p.data.ndim}-D parameter (AdamW)"
            raise ValueError(f"{name}(state_dict): parameter {i} is a {kind} but has state {wrong}, "
                             f"expected {sorted(expected) + ['step']}")
        return super()._load_entry(name, i, p, entry)

    def _update(self, p, group, state):
        if p.data.ndim < 2:
            self._adamw_update(p, group, state)
            return
        xp = backend.array_module(p.data)
        lr, mu = group["lr"], group["momentum"]
        if not state:
            state["step"] = 0
            state["momentum_buffer"] = xp.zeros_like(p.data)
        state["step"] += 1
        buf = state["momentum_buffer"]
        buf *= mu
        buf += xp.multiply(p.grad, 1 - mu, out=self._scratch_array(p, 0))
        if group["nesterov"]:
            update = xp.multiply(buf, mu, out=self._scratch_array(p, 0))
            update += xp.multiply(p.grad, 1 - mu, out=self._scratch_array(p, 1))
        else:
            update = buf
        matrix = (p.data.shape[0], p.data.size // p.data.shape[0])
        ortho = newton_schulz(update.reshape(matrix), group["ns_coefficients"], group["ns_steps"], group["eps"])
        self._decoupled_decay(p, lr, group["weight_decay"])
        p.data -= adjusted_lr(lr, group["adjust_lr_fn"], matrix) * ortho.reshape(p.data.shape)

    def _adamw_update(self, p, group, state):
        """AdamW, ``refnet.optim.Adam``'s own step (PyTorch's arithmetic) with the adamw_* options."""
        adamw = {"lr": group["lr"], "betas": group["adamw_betas"], "eps": group["adamw_eps"], "l2": 0.0,
                 "weight_decay": group["weight_decay"]}
        Adam._update(self, p, adamw, state)
