"""Curvature of the training loss by hand: Hessian- and Gauss-Newton-vector products.

For the mean softmax cross-entropy L(theta) = CE(model(x; theta), y) and a direction v
(a dict {parameter name: array}):

    hvp(model, x, y, v) = H v,          H = d^2 L / d theta^2
    gvp(model, x, y, v) = G v,          G = J^T H_z J   (J = d logits / d theta,
                                                        H_z = the loss Hessian in the logits)

H v is the directional derivative of the gradient, d/dt g(theta + t v) at t = 0
(Pearlmutter's R-operator). One forward keeps every layer's cache; ``forward_jvp`` pushes
the tangent v through the layers (the tangent of each activation, t z = J v at the logits);
``softmax_cross_entropy_jvp`` gives the tangent of dL/dz; ``backward_jvp`` runs the backward
and its tangent side by side, each layer adding the tangent of its parameters' gradient.
Cost: one forward, one forward_jvp, one backward and one backward_jvp: about two
forward-backward passes. G v drops the terms where the network's own second derivative
enters: it is the same forward_jvp to J v, then H_z J v, then a plain backward of that
(J^T, through ``.grad``, which is saved before and put back after).

The products are of the loss *as the model computes it now*: in training mode BatchNorm
normalizes with batch statistics, and their dependence on theta is differentiated; in
eval mode with the running ones. Neither product changes the model: buffers (running
statistics) are put back, ``.grad`` ends as it was, parameters are not moved.
"""

import numpy as np

from refnet import backend
from refnet.ops.loss import softmax_cross_entropy, softmax_cross_entropy_jvp


def _tangents(model, v, where):
    params = dict(model.named_parameters())
    if not isinstance(v, dict):
        raise TypeError(f"{where}(v): got {type(v).__name__}, expected a dict {{parameter name: array}}")
    unknown = [k for k in v if k not in params]
    if unknown:
        raise KeyError(f"{where}(v): got unknown parameter name(s) {unknown}, expected names among "
                       f"{list(params)}")
    out = {}
    for name, t in v.items():
        p = params[name]
        if tuple(getattr(t, "shape", ())) != tuple(p.shape):
            raise ValueError(f"{where}(v[{name!r}]): got shape {tuple(getattr(t, 'shape', ()))}, "
                             f"expected {tuple(p.shape)} (the parameter's)")
        if getattr(t, "dtype", None) != p.dtype:
            raise TypeError(f"{where}(v[{name!r}]): got dtype {getattr(t, 'dtype', type(t).__name__)}, "
                            f"expected {p.dtype} (the parameter's)")
        out[p] = t
    return out


class _KeepBuffers:
    """Puts every buffer (BatchNorm's running statistics, its batch counter) back on exit."""

    def __init__(self, model):
        self.saved = [(mod, name, getattr(mod, name), getattr(mod, name).copy())
                      for _, mod in model.named_modules() for name in mod._buffers]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for mod, name, original, values in self.saved:
            original[...] = values
            object.__setattr__(mod, name, original)


def _by_name(model, table):
    return {name: table[p] if p in table else backend.array_module(p.data).zeros_like(p.data)
            for name, p in model.named_parameters()}


def hvp(model, x, y, v):
    """H v of the mean softmax cross-entropy of ``model(x)`` against integer labels ``y``.

    ``v``: {parameter name: array of that parameter's shape and dtype}; a parameter not in
    ``v`` has a zero component. Returns {name: (H v)[name]} for every named parameter.
    """
    tangents = _tangents(model, v, "hvp")
    with _KeepBuffers(model):
        logits = model.forward(x)
        tlogits = model.forward_jvp(None, tangents)
        _, dlogits = softmax_cross_entropy(logits, y)
        _, tdlogits = softmax_cross_entropy_jvp(logits, y, tlogits)
        hgrads = {}
        model.backward_jvp(dlogits, tdlogits, hgrads)
    return _by_name(model, hgrads)


def gvp(model, x, y, v):
    """The Gauss-Newton product J^T H_z J v for the same loss (H_z: the loss Hessian in the
    logits, positive semidefinite, so G is too). Arguments and result as in ``hvp``."""
    tangents = _tangents(model, v, "gvp")
    params = list(model.named_parameters())
    saved = [p.grad.copy() for _, p in params]
    try:
        with _KeepBuffers(model):
            logits = model.forward(x)
            tlogits = model.forward_jvp(None, tangents)          # J v
            _, u = softmax_cross_entropy_jvp(logits, y, tlogits)  # H_z J v
            for _, p in params:
                p.grad[...] = 0
            model.backward(u)                                     # J^T H_z J v, into .grad
            return {name: p.grad.copy() for name, p in params}
    finally:
        for (_, p), g in zip(params, saved):
            p.grad[...] = g


def gradient(model, x, y):
    """The hand-written gradient {name: dL/dparam} of the same loss, leaving ``.grad`` and the
    buffers as found (what ``hvp`` differentiates; the checks difference it)."""
    params = list(model.named_parameters())
    saved = [p.grad.copy() for _, p in params]
    try:
        with _KeepBuffers(model):
            for _, p in params:
                p.grad[...] = 0
            model.backward(softmax_cross_entropy(model.forward(x), y)[1])
            return {name: p.grad.copy() for name, p in params}
    finally:
        for (_, p), g in zip(params, saved):
            p.grad[...] = g


def top_eigenvalues(model, x, y, name, k=1, product="hvp", tol=1e-10, seed=0):
    """The ``k`` largest (algebraic) eigenvalues of the Hessian block of one parameter,
    H_pp = d^2 L / dp^2 (or the Gauss-Newton block with ``product="gvp"``), by Lanczos:
    ``scipy.sparse.linalg.eigsh`` on a ``LinearOperator`` whose matvec is one ``hvp``
    restricted to ``name``. Returns a float64 array, largest first. A few dozen products
    per eigenvalue: seconds for a layer of a small network. The model is left as found.
    """
    from scipy.sparse.linalg import LinearOperator, eigsh

    if product not in ("hvp", "gvp"):
        raise ValueError(f"top_eigenvalues(product): got {product!r}, expected 'hvp' or 'gvp'")
    params = dict(model.named_parameters())
    if name not in params:
        raise KeyError(f"top_eigenvalues(name): got {name!r}, expected one of {list(params)}")
    p = params[name]
    n = int(np.prod(p.shape))
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or not 1 <= k < n:
        raise ValueError(f"top_eigenvalues(k): got {k!r}, expected an integer in [1, {n - 1}] "
                         f"({name!r} has {n} entries)")
    xp = backend.array_module(p.data)
    multiply = hvp if product == "hvp" else gvp

    def matvec(v):
        t = xp.asarray(np.asarray(v, dtype=np.float64).reshape(p.shape)).astype(p.dtype)
        return backend.asnumpy(multiply(model, x, y, {name: t})[name]).astype(np.float64).reshape(-1)

    op = LinearOperator((n, n), matvec=matvec, dtype=np.float64)
    v0 = np.random.default_rng(seed).standard_normal(n)
    values = eigsh(op, k=k, which="LA", tol=tol, v0=v0, return_eigenvectors=False)
    return np.sort(values)[::-1]
