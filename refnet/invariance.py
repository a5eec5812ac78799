"""Scale invariance: which weights a normalization makes scale-free, and the per-group
quantities the theory talks about (norm, effective learning rate, angular update).

A *scale group* is the set of numbers whose common scale the loss ignores:
``"unit"``: one output unit (row of a dense weight, one conv filter: index along axis 0),
e.g. a weight feeding BatchNorm, or WeightNorm's v;
``"tensor"``: the whole tensor, e.g. a weight feeding LayerNorm.
"""

from refnet import backend


def _is_parameter(p):
    # not getattr(p, "data", p): a numpy array's .data is its memoryview (a cupy one's a pointer)
    return hasattr(p, "scale_group") and hasattr(p, "grad")


def _as_array_and_group(p, scale_group):
    data = p.data if _is_parameter(p) else p
    group = scale_group if scale_group is not None else getattr(p, "scale_group", None)
    return data, group


def _rows(w, group, where):
    """``w`` as a 2-D view, one scale group per row."""
    if group == "unit":
        return w.reshape(w.shape[0], -1)
    if group in (None, "tensor"):
        return w.reshape(1, -1)
    raise ValueError(f"{where}(scale_group): got {group!r}, expected None, 'unit' or 'tensor'")


def row_dots(a, b):
    """``<a_i, b_i>`` for each row of two 2-D arrays: one fused pass, no temporary as large as
    ``a`` (``(a * b).sum(axis=1)`` writes the whole product first); ``vecdot`` where the
    array module has it (NumPy 2: about twice einsum's speed)."""
    xp = backend.array_module(a, b)
    vecdot = getattr(xp, "vecdot", None)
    return vecdot(a, b) if vecdot is not None else xp.einsum("ij,ij->i", a, b)


def group_sq_norms(p, scale_group=None):
    """Squared L2 norm of each scale group of ``p`` (a Parameter or an array).

    Returns shape (out,) for ``"unit"`` (norm over every axis but 0) and (1,) for
    ``"tensor"`` or an unmarked parameter.
    """
    w, group = _as_array_and_group(p, scale_group)
    rows = _rows(w, group, "group_sq_norms")
    return row_dots(rows, rows)


def group_norms(p, scale_group=None):
    """L2 norm ``||w||`` of each scale group of ``p``; see ``group_sq_norms`` for shapes."""
    xp = backend.array_module(p.data if _is_parameter(p) else p)
    return xp.sqrt(group_sq_norms(p, scale_group))


def effective_lr(p, lr, optimizer="sgd", scale_group=None):
    """Effective learning rate per scale group: ``lr/||w||^2`` for SGD, ``lr/||w||`` for Adam.

    For a scale-invariant w the gradient is ``g_tilde/||w||`` (g_tilde taken at w/||w||),
    so an SGD step moves the direction w/||w|| by ``lr*g_tilde/||w||^2``; Adam divides the
    gradient by its own RMS, which cancels one factor ``1/||w||`` and leaves ``lr/||w||``.
    """
    norms2 = group_sq_norms(p, scale_group)
    if optimizer == "sgd":
        return lr / norms2
    if optimizer == "adam":
        return lr / backend.array_module(norms2).sqrt(norms2)
    raise ValueError(f"effective_lr(optimizer): got {optimizer!r}, expected 'sgd' or 'adam'")


def angular_update(w_before, w_after, scale_group="unit", sq_before=None, work=None):
    """Angle (radians, float64) between ``w_before`` and ``w_after`` per scale group.

    With ``a = w_before``, ``x = ||a||^2``, the step ``d = w_after - a`` (exact in floating point
    where the two are close, Sterbenz's lemma), ``s = <a, d>`` and ``q = ||d||^2``: the dot part
    is ``<a, w_after> = x + s``, the cross part ``||a|| ||d_perp||``, where ``||d_perp||^2 =
    q - s^2/x`` is the step across ``a``; the angle is ``atan2(||a|| ||d_perp||, x + s)``,
    combined in float64. No difference of nearly equal numbers enters while the step is
    mostly across ``a`` (``s^2 <= x q / 2``), so the angle keeps a relative error of about
    ``1e-6`` in float32 at any size, where ``arccos(<a, b>/(||a|| ||b||))`` in float32 has an
    absolute error of about ``sqrt(eps) = 3e-4`` rad (useless at the ``1e-3`` rad of a training
    step). Rows whose step is mostly radial (a dead unit only shrinks) take
    ``d_perp = d - (s/x) a`` elementwise instead. The sums are fused one-pass dot products.

    sq_before: ``x`` when already known (a Trainer computes it for the norm it records);
    work: an array shaped like ``w_before`` to hold ``d`` (reused between steps, it saves an
    allocation the size of the weight).
    """
    xp = backend.array_module(w_before, w_after)
    a = _rows(w_before, scale_group, "angular_update")
    b = _rows(w_after, scale_group, "angular_update")
    d = xp.empty_like(a) if work is None else _rows(work, scale_group, "angular_update")
    x = row_dots(a, a) if sq_before is None else sq_before
    xp.subtract(b, a, out=d)
    f64 = xp.float64  # few calls on purpose: at a small step these are most of the cost
    x, s, q = x.astype(f64), row_dots(a, d).astype(f64), row_dots(d, d).astype(f64)
    perp = q - s * s / x
    if bool((perp + perp < q).any()):  # s^2 > x q / 2: mostly radial rows
        rows = xp.nonzero(perp + perp < q)[0]
        dp = d[rows] - (s[rows] / x[rows])[:, None].astype(d.dtype) * a[rows]
        perp[rows] = row_dots(dp, dp)
    return xp.arctan2(xp.sqrt(x * xp.maximum(perp, 0.0)), x + s)


# --- finding the scale groups -------------------------------------------------------
class ScaleInvarianceWarning(UserWarning):
    """A layer's placement wastes or breaks a scale invariance (e.g. a bias before BatchNorm)."""


def _data_path(module, prefix=""):
    """(name, leaf) in the order data flows through nested Sequentials."""
    from refnet.nn.module import Sequential
    if isinstance(module, Sequential):
        for name, child in module._modules.items():
            yield from _data_path(child, f"{prefix}.{name}" if prefix else name)
    else:
        yield prefix, module


def mark_scale_invariant(model):
    """Set ``Parameter.scale_group`` on every parameter of ``model`` from its architecture.

    ``"unit"``: the weight of a Linear/Conv2d whose output goes straight (through nothing
    but its own bias) into a BatchNorm: BN normalizes each channel on its own, so each
    output unit's scale is irrelevant. Also WeightNorm's ``weight_v``, wherever it is.
    ``"tensor"``: the weight of a bias-free Linear/Conv2d feeding a LayerNorm: LN divides
    by one standard deviation per sample, taken over all of the layer's units, so only the
    scale of the whole tensor is irrelevant.
    ``None``: everything else (the head, biases, gamma/beta, WeightNorm's g, any layer
    separated from the normalization by another layer, even a positively homogeneous one).

    Adjacency is read from Sequential order (nested Sequentials are flattened); modules of
    other types are opaque, but Sequentials inside them are read too. The invariances are
    those of training mode (batch statistics) with eps = 0; ``check_scale_invariance``
    verifies them numerically.

    Warns (ScaleInvarianceWarning) about a bias right before a BatchNorm: in training mode
    its gradient is exactly zero (the batch mean removes any per-channel constant), so it
    is dead weight; build the layer with ``bias=False``. A bias before a LayerNorm is not
    removed by LN's per-sample mean and breaks the invariance of the weight alone: that
    weight is left unmarked, with a warning. Returns ``model``.
    """
    import warnings

    from refnet.nn.layers import Conv2d, Linear
    from refnet.nn.module import Sequential
    from refnet.nn.norm import LayerNorm, WeightNorm, _BatchNorm

    for p in model.parameters():
        p.scale_group = None
    for _, seq in model.named_modules():
        if not isinstance(seq, Sequential):
            continue
        path = list(_data_path(seq))
        for (name, layer), (norm_name, norm) in zip(path, path[1:]):
            if not isinstance(layer, (Linear, Conv2d, WeightNorm)):
                continue
            what = f"{type(layer).__name__} {name!r} -> {type(norm).__name__} {norm_name!r}"
            has_bias = getattr(layer, "bias", None) is not None
            if isinstance(norm, _BatchNorm):
                if isinstance(layer, (Linear, Conv2d)):
                    layer.weight.scale_group = "unit"
                if has_bias:
                    warnings.warn(f"{what}: the bias has an exactly zero gradient in training mode "
                                  f"(the batch mean removes it); build the layer with bias=False",
                                  ScaleInvarianceWarning, stacklevel=2)
            elif isinstance(norm, LayerNorm) and isinstance(layer, (Linear, Conv2d)):
                if has_bias:
                    warnings.warn(f"{what}: the bias breaks the scale invariance of the weight alone "
                                  f"(LN removes only a constant shared by all units); weight left "
                                  f"unmarked: build the layer with bias=False", ScaleInvarianceWarning,
                                  stacklevel=2)
                else:
                    layer.weight.scale_group = "tensor"
    for m in model.modules():
        if isinstance(m, WeightNorm):
            m.weight_v.scale_group = "unit"
    return model


def scale_groups(model):
    """``{parameter name: scale_group}`` for every parameter of ``model``, in order."""
    return {name: p.scale_group for name, p in model.named_parameters()}


# --- verifying them -----------------------------------------------------------------
class InvarianceReport:
    """Result of ``check_scale_invariance``. ``ok``; ``loss`` (the unscaled loss);
    ``errors``: {parameter name: {"group", "loss", "grad", "orth", "others"}}, the worst
    deviation from each identity over the trials (see ``check_scale_invariance``);
    ``worst``: the largest of them all. ``print(report)`` gives a table."""

    KEYS = ("loss", "grad", "orth", "others")

    def __init__(self, loss, errors, tol):
        self.loss, self.errors, self.tol = loss, errors, tol

    def failed(self):
        """Names of the parameters whose group is not invariant as marked."""
        return [n for n, e in self.errors.items() if max(e[k] for k in self.KEYS) > self.tol]

    @property
    def ok(self):
        return not self.failed()

    def __bool__(self):
        return self.ok

    @property
    def worst(self):
        return max((e[k] for e in self.errors.values() for k in self.KEYS), default=0.0)

    def __str__(self):
        verdict = "ok" if self.ok else "FAILED"
        lines = [f"scale invariance: {verdict} (tol {self.tol:.0e}, loss {self.loss:.6g})",
                 f"  {'parameter':24s} {'group':6s} " + " ".join(f"{k:>9s}" for k in self.KEYS)]
        for n, e in self.errors.items():
            lines.append(f"  {n:24s} {e['group']:6s} " + " ".join(f"{e[k]:9.2e}" for k in self.KEYS)
                         + ("" if n not in self.failed() else "  NOT INVARIANT"))
        return "\n".join(lines)

    __repr__ = __str__


def check_scale_invariance(model, x, y, loss_fn=None, scales=(0.1, 10.0), trials=2, seed=0,
                           tol=1e-9, zero_eps=True):
    """Verify numerically that each marked scale group is scale-invariant, as marked.

    Runs on a float64 copy of ``model`` in training mode (batch statistics); ``model`` is
    left untouched. For every parameter with a ``scale_group`` and each of ``trials``
    draws, every group (each unit for ``"unit"``, the whole tensor for ``"tensor"``) is
    multiplied by its own factor a, log-uniform in ``scales``, the others left as they are,
    and four relative deviations are measured (each should be rounding noise):

        loss    |L(a w) - L(w)| / |L(w)|                         (identity 1)
        grad    ||a * g(a w) - g(w)|| / ||g(w)||                  (identity 2: g scales as 1/a)
        orth    max over groups |<w_i, g_i>| / (||w_i|| ||g_i||)  (identity 2: Euler)
        others  max over the other parameters q of ||g_q(a w) - g_q(w)|| / ||g_q(w)||

    Gradient norms below 1e-6 of the largest in the model are floored there, so exactly
    zero gradients (a bias before BN, a dead unit) do not divide noise by noise.
    ``zero_eps``: set every BatchNorm/LayerNorm eps to 0 on the copy: the identities are
    exact only without eps (eps makes the error ~eps/var). ``loss_fn(logits, y) -> (loss,
    dlogits)`` defaults to ``softmax_cross_entropy``. Returns an ``InvarianceReport``.
    """
    import copy

    import numpy as np

    from refnet.nn.norm import LayerNorm, _BatchNorm

    if loss_fn is None:
        from refnet.ops.loss import softmax_cross_entropy as loss_fn
    lo, hi = (float(s) for s in scales)
    if not 0 < lo <= hi:
        raise ValueError(f"check_scale_invariance(scales): got {scales!r}, "
                         f"expected (low, high) with 0 < low <= high")
    net = copy.deepcopy(model).double().train()
    if zero_eps:
        for m in net.modules():
            if isinstance(m, (_BatchNorm, LayerNorm)):
                m.eps = 0.0
    params = list(net.named_parameters())
    marked = [(n, p) for n, p in params if p.scale_group is not None]
    if not marked:
        raise ValueError("check_scale_invariance(model): no parameter has a scale_group; "
                         "call mark_scale_invariant(model) first or set them by hand")
    xp = backend.array_module(*(p.data for _, p in params))
    x = xp.asarray(x, dtype=np.float64)
    y = xp.asarray(y)
    rng = np.random.default_rng(seed)

    def evaluate():
        net.zero_grad()
        loss, dlogits = loss_fn(net(x), y)
        net.backward(dlogits)
        return backend.scalar(loss), {n: p.grad.copy() for n, p in params}

    def norm(a):
        return backend.scalar(xp.linalg.norm(a.reshape(-1)))

    loss0, grads0 = evaluate()
    floor = 1e-6 * max(norm(g) for g in grads0.values()) + 1e-300
    errors = {}
    for name, p in marked:
        unit = p.scale_group == "unit"
        shape = (p.shape[0],) + (1,) * (p.data.ndim - 1) if unit else (1,) * p.data.ndim
        w, g = p.data.reshape(shape[0], -1), grads0[name].reshape(shape[0], -1)
        g_norms = xp.maximum(xp.linalg.norm(g, axis=1), floor)
        cos = xp.abs((w * g).sum(axis=1)) / (xp.linalg.norm(w, axis=1) * g_norms)
        err = {"group": p.scale_group, "loss": 0.0, "grad": 0.0, "orth": backend.scalar(cos.max()),
               "others": 0.0}
        original = p.data.copy()
        for _ in range(trials):
            a = xp.asarray(np.exp(rng.uniform(np.log(lo), np.log(hi), size=shape)))
            p.data *= a
            loss1, grads1 = evaluate()
            p.data[...] = original
            err["loss"] = max(err["loss"], abs(loss1 - loss0) / max(abs(loss0), 1e-300))
            scaled_back = norm(a * grads1[name] - grads0[name]) / max(norm(grads0[name]), floor)
            err["grad"] = max(err["grad"], scaled_back)
            for other, g1 in grads1.items():
                if other != name:
                    change = norm(g1 - grads0[other]) / max(norm(grads0[other]), floor)
                    err["others"] = max(err["others"], change)
        errors[name] = err
    return InvarianceReport(loss0, errors, tol)
