"""Naive loop twins of the ops: slow, obvious, written straight from the definitions.

They are the oracles the fast ops are tested against, so they share no code with refnet
(padding by np.pad, one output element or one window at a time, first maximum by
np.argmax on the flattened window, which scans in row-major order).
"""

import math

import numpy as np


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


# --- linear ---------------------------------------------------------------------------
def linear_forward_naive(x, w, b=None):
    n, out = x.shape[0], w.shape[0]
    y = np.zeros((n, out), dtype=x.dtype)
    for i in range(n):
        for o in range(out):
            y[i, o] = np.dot(x[i], w[o]) + (0 if b is None else b[o])
    return y


def linear_backward_naive(dy, x, w, has_bias=True):
    dx, dw = np.zeros_like(x), np.zeros_like(w)
    for i in range(x.shape[0]):
        for o in range(w.shape[0]):
            dx[i] += dy[i, o] * w[o]
            dw[o] += dy[i, o] * x[i]
    db = dy.sum(axis=0) if has_bias else None
    return dx, dw, db


# --- conv2d ---------------------------------------------------------------------------
def _pad(x, padding):
    ph, pw = _pair(padding)
    return np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))


def conv2d_forward_naive(x, w, b=None, stride=1, padding=0):
    (sh, sw), xp = _pair(stride), _pad(x, padding)
    n, f, (kh, kw) = x.shape[0], w.shape[0], w.shape[2:]
    ho, wo = (xp.shape[2] - kh) // sh + 1, (xp.shape[3] - kw) // sw + 1
    y = np.zeros((n, f, ho, wo), dtype=x.dtype)
    for i in range(n):
        for o in range(f):
            for r in range(ho):
                for c in range(wo):
                    window = xp[i, :, r * sh:r * sh + kh, c * sw:c * sw + kw]
                    y[i, o, r, c] = np.sum(window * w[o]) + (0 if b is None else b[o])
    return y


def conv2d_backward_naive(dy, x, w, stride=1, padding=0, has_bias=True):
    (sh, sw), (ph, pw), xp = _pair(stride), _pair(padding), _pad(x, padding)
    kh, kw = w.shape[2:]
    dxp, dw = np.zeros_like(xp), np.zeros_like(w)
    n, f, ho, wo = dy.shape
    for i in range(n):
        for o in range(f):
            for r in range(ho):
                for c in range(wo):
                    sl = (i, slice(None), slice(r * sh, r * sh + kh), slice(c * sw, c * sw + kw))
                    dxp[sl] += dy[i, o, r, c] * w[o]
                    dw[o] += dy[i, o, r, c] * xp[sl]
    dx = dxp[:, :, ph:ph + x.shape[2], pw:pw + x.shape[3]]
    db = dy.sum(axis=(0, 2, 3)) if has_bias else None
    return dx, dw, db


# --- pooling --------------------------------------------------------------------------
def _windows(x_shape, kernel_size, stride):
    """Yield (n, c, r, col, window slice) for every pooling window."""
    (kh, kw) = _pair(kernel_size)
    (sh, sw) = _pair(kernel_size if stride is None else stride)
    n, ch, h, w = x_shape
    for i in range(n):
        for c in range(ch):
            for r in range((h - kh) // sh + 1):
                for col in range((w - kw) // sw + 1):
                    yield i, c, r, col, (i, c, slice(r * sh, r * sh + kh),
                                         slice(col * sw, col * sw + kw))


def _out_shape(x_shape, kernel_size, stride):
    (kh, kw), (sh, sw) = _pair(kernel_size), _pair(kernel_size if stride is None else stride)
    return x_shape[:2] + ((x_shape[2] - kh) // sh + 1, (x_shape[3] - kw) // sw + 1)


def maxpool2d_forward_naive(x, kernel_size, stride=None):
    y = np.zeros(_out_shape(x.shape, kernel_size, stride), dtype=x.dtype)
    for i, c, r, col, sl in _windows(x.shape, kernel_size, stride):
        y[i, c, r, col] = x[sl].max()
    return y


def maxpool2d_backward_naive(dy, x, kernel_size, stride=None):
    dx = np.zeros_like(x)
    for i, c, r, col, sl in _windows(x.shape, kernel_size, stride):
        window = x[sl]
        p, q = np.unravel_index(np.argmax(window), window.shape)   # first maximum
        dx[sl][p, q] += dy[i, c, r, col]
    return dx


def avgpool2d_forward_naive(x, kernel_size, stride=None):
    y = np.zeros(_out_shape(x.shape, kernel_size, stride), dtype=x.dtype)
    for i, c, r, col, sl in _windows(x.shape, kernel_size, stride):
        y[i, c, r, col] = x[sl].mean()
    return y


def avgpool2d_backward_naive(dy, x, kernel_size, stride=None):
    dx = np.zeros_like(x)
    for i, c, r, col, sl in _windows(x.shape, kernel_size, stride):
        dx[sl] += dy[i, c, r, col] / x[sl].size
    return dx


# --- relu and softmax cross-entropy -----------------------------------------------------
def relu_forward_naive(x):
    return np.array([v if v > 0 else 0.0 for v in x.ravel()], dtype=x.dtype).reshape(x.shape)


def relu_backward_naive(dy, x):
    return np.array([d if v > 0 else 0.0 for d, v in zip(dy.ravel(), x.ravel())],
                    dtype=dy.dtype).reshape(x.shape)


def softmax_cross_entropy_naive(logits, labels):
    """Row by row with Python floats and math.fsum; returns (loss, dlogits) in float64."""
    n, c = logits.shape
    loss, dlogits = 0.0, np.zeros((n, c))
    for i in range(n):
        row = [float(v) for v in logits[i]]
        m = max(row)
        exps = [math.exp(v - m) for v in row]
        total = math.fsum(exps)
        loss += (m + math.log(total) - row[int(labels[i])]) / n
        for k in range(c):
            dlogits[i, k] = (exps[k] / total - (k == labels[i])) / n
    return loss, dlogits
