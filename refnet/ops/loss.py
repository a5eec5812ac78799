"""Softmax cross-entropy, averaged over the batch (PyTorch's ``F.cross_entropy``).

Shapes: logits z (N, C) float, labels y (N,) integers in [0, C); loss a scalar.

    p[n, k]  = exp(z[n, k]) / sum_j exp(z[n, j])
    L        = -(1/N) sum_n log p[n, y_n]
             =  (1/N) sum_n (logsumexp(z[n]) - z[n, y_n])

Stability: logsumexp(z) = m + log sum_j exp(z_j - m) with m = max_j z_j, so every exponent is
<= 0 and the largest is exactly 0: nothing overflows at |z| ~ 1e3 and the sum is >= 1.

Gradient: d logsumexp(z[n]) / dz[n, k] = p[n, k] and d z[n, y_n] / dz[n, k] = [k == y_n], so

    dL/dz[n, k] = (p[n, k] - [k == y_n]) / N

Forward mode and second order (``softmax_cross_entropy_jvp``). The loss and its gradient
come from one call, so one function gives both tangents along tz. With dp/dz = diag(p) - p p^T
per row,

    tL          = sum_{n,k} dL/dz[n, k] tz[n, k]
    t(dL/dz)[n] = (p[n] * tz[n] - p[n] <p[n], tz[n]>) / N        (the Hessian of L times tz)

The Hessian (diag(p) - p p^T) / N is positive semidefinite: it is also the middle factor of
the Gauss-Newton product J^T H_L J.
"""

from refnet import backend
from refnet.ops._checks import check_float, check_ndim

_OP = "softmax_cross_entropy"


def _check_labels(labels, n, c):
    check_ndim("labels", labels, 1, _OP)
    if labels.dtype.kind not in "iu":
        raise TypeError(f"{_OP}(labels): got dtype {labels.dtype}, expected an integer array "
                        f"of class indices")
    if labels.shape[0] != n:
        raise ValueError(f"{_OP}(labels): got {labels.shape[0]} labels, expected {n} "
                         f"(one per row of logits)")
    lo, hi = int(labels.min()), int(labels.max())  # one device sync on the GPU
    if lo < 0 or hi >= c:
        bad = lo if lo < 0 else hi
        raise ValueError(f"{_OP}(labels): got label {bad}, expected labels in [0, {c}) "
                         f"(logits have {c} classes)")


def softmax_cross_entropy(logits, labels):
    """Mean cross-entropy of softmax(logits) against integer labels. Returns (loss, dlogits).

    loss is a 0-d scalar of logits' dtype (float(loss) for a Python number); dlogits has
    logits' shape and dtype.
    """
    check_ndim("logits", logits, 2, _OP)
    check_float("logits", logits, _OP)
    n, c = logits.shape
    if n == 0 or c == 0:
        raise ValueError(f"{_OP}(logits): got shape {tuple(logits.shape)}, expected at least "
                         f"one row and one class")
    _check_labels(labels, n, c)
    xp = backend.array_module(logits, labels)
    rows = xp.arange(n)

    z = logits - logits.max(axis=1, keepdims=True)      # shifted: max exponent is 0
    e = xp.exp(z)
    s = e.sum(axis=1, keepdims=True)                     # >= 1, so log(s) is safe
    loss = (xp.log(s[:, 0]) - z[rows, labels]).mean()

    dlogits = e
    dlogits /= s                                         # reuse e's buffer: e is no longer needed
    dlogits[rows, labels] -= 1
    dlogits *= 1.0 / n
    return loss, dlogits


def softmax_cross_entropy_jvp(logits, labels, tlogits):
    """Tangents of ``softmax_cross_entropy``'s (loss, dlogits) along ``tlogits``: (tloss, tdlogits)."""
    loss, dlogits = softmax_cross_entropy(logits, labels)
    if tlogits is None or tuple(tlogits.shape) != tuple(logits.shape):
        raise ValueError(f"softmax_cross_entropy_jvp(tlogits): got "
                         f"{None if tlogits is None else tuple(tlogits.shape)}, expected {tuple(logits.shape)}")
    xp = backend.array_module(logits, tlogits)
    n = logits.shape[0]
    z = logits - logits.max(axis=1, keepdims=True)
    p = xp.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    tloss = xp.sum(dlogits * tlogits)
    tdlogits = p * (tlogits - xp.einsum("nk,nk->n", p, tlogits)[:, None])
    tdlogits *= 1.0 / n
    return tloss, tdlogits
