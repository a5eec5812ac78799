"""Reference update rules, written straight from THEORY.md, for the random walk and checks.

Each rule is a small stateful callable ``rule(w, g) -> w_next`` acting on a 2-D array whose
rows are the scale groups (one row = one unit ``w``), with the gradient ``g`` of the loss
*without* regularization. They exist so that theory/ can check its own closed forms by direct
simulation, and so that another implementation (refnet.optim) can be compared against an
independent one step by step. They are not a training library.

Conventions (THEORY.md): ``l2=lam`` is the paper's coupled L2 (convention A: the loss gains
``lam*||w||^2``, the gradient gains ``2*lam*w``); ``weight_decay=wd`` is decoupled
(``w <- (1 - lr*wd) w - lr*step``); ``unit_norm=True`` rescales every row to norm 1 after the
step (the paper's fix). Momentum and Adam follow PyTorch (heavy-ball buffer without dampening;
Adam with bias corrections and ``eps`` added to ``sqrt(v_hat)``).
"""

import numpy as np

from theory.sign_and_orthogonal import newton_schulz


def _project_rows(w):
    return w / np.linalg.norm(w, axis=1, keepdims=True)


class SGDRule:
    """SGD (optionally heavy-ball momentum ``mu``) with coupled L2, decoupled decay, projection.

    ``b <- mu*b + (g + 2*l2*w)``; ``w <- (1 - lr*wd)*w - lr*b`` (``b = g + 2*l2*w`` when mu = 0);
    then ``w <- w/||w||`` per row when ``unit_norm``.
    """

    def __init__(self, lr, momentum=0.0, l2=0.0, weight_decay=0.0, unit_norm=False):
        self.lr, self.mu, self.l2, self.wd, self.unit_norm = lr, momentum, l2, weight_decay, unit_norm
        self.buf = None

    def __call__(self, w, g):
        d = g + 2.0 * self.l2 * w
        if self.mu:
            self.buf = d.copy() if self.buf is None else self.mu * self.buf + d
            d = self.buf
        w = (1.0 - self.lr * self.wd) * w - self.lr * d
        return _project_rows(w) if self.unit_norm else w


class AdamRule:
    """Adam with coupled L2 (``l2``), AdamW (``weight_decay``) and projection (``unit_norm``).

    ``d = g + 2*l2*w``; ``m <- b1*m + (1-b1)*d``; ``v <- b2*v + (1-b2)*d^2``;
    ``w <- (1 - lr*wd)*w - lr * (m/(1-b1^t)) / (sqrt(v/(1-b2^t)) + eps)``; then ``w/||w||`` per
    row when ``unit_norm``.
    """

    def __init__(self, lr, betas=(0.9, 0.999), eps=1e-8, l2=0.0, weight_decay=0.0, unit_norm=False):
        self.lr, (self.b1, self.b2), self.eps = lr, betas, eps
        self.l2, self.wd, self.unit_norm = l2, weight_decay, unit_norm
        self.m = self.v = None
        self.t = 0

    def __call__(self, w, g):
        d = g + 2.0 * self.l2 * w
        if self.m is None:
            self.m, self.v = np.zeros_like(w), np.zeros_like(w)
        self.t += 1
        self.m = self.b1 * self.m + (1.0 - self.b1) * d
        self.v = self.b2 * self.v + (1.0 - self.b2) * d * d
        m_hat = self.m / (1.0 - self.b1 ** self.t)
        v_hat = self.v / (1.0 - self.b2 ** self.t)
        w = (1.0 - self.lr * self.wd) * w - self.lr * m_hat / (np.sqrt(v_hat) + self.eps)
        return _project_rows(w) if self.unit_norm else w


class LionRule:
    """Lion (Chen et al. 2023): ``c = b1 m + (1-b1) g``; ``w <- (1 - lr wd) w - lr sign(c)``;
    ``m <- b2 m + (1-b2) g`` (``m`` starts at 0)."""

    def __init__(self, lr, betas=(0.9, 0.99), weight_decay=0.0):
        self.lr, (self.b1, self.b2), self.wd = lr, betas, weight_decay
        self.m = 0.0

    def __call__(self, w, g):
        c = self.b1 * self.m + (1.0 - self.b1) * g
        self.m = self.b2 * self.m + (1.0 - self.b2) * g
        return (1.0 - self.lr * self.wd) * w - self.lr * np.sign(c)


class MuonRule:
    """Muon on the whole ``(units, d)`` array as one matrix (PyTorch's): ``B <- mu B + (1-mu) g``;
    ``U = (1-mu) g + mu B`` (Nesterov) or ``B``; ``w <- (1 - lr wd) w - lr_adj NS(U)`` with
    ``lr_adj = lr sqrt(max(1, units/d))`` (PyTorch's "original" adjustment)."""

    def __init__(self, lr, momentum=0.95, nesterov=True, weight_decay=0.1):
        self.lr, self.mu, self.nesterov, self.wd = lr, momentum, nesterov, weight_decay
        self.buf = 0.0

    def __call__(self, w, g):
        self.buf = self.mu * self.buf + (1.0 - self.mu) * g
        u = (1.0 - self.mu) * g + self.mu * self.buf if self.nesterov else self.buf
        lr_adj = self.lr * np.sqrt(max(1.0, w.shape[0] / w.shape[1]))
        return (1.0 - self.lr * self.wd) * w - lr_adj * newton_schulz(u)
