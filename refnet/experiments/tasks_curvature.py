"""The curvature tasks of the sharpness experiment (experiment 10): second-order identities and
Lanczos during training. Each takes a plain spec dict and returns ``(arrays, meta)``, as the
training task in ``refnet.experiments.tasks`` does.

The curvature is always of a float64 copy of the model in training mode (batch statistics) with
every BN/LN eps set to ``eps`` (0 unless given: the identities are then exact), on a fixed batch
of the first ``curvature_batch`` training examples.
"""

import time

import numpy as np

from refnet import backend
from refnet.experiments.tasks import build_model, build_optimizer, load_data
from refnet.nn.norm import LayerNorm, _BatchNorm


def _curvature_copy(model, eps):
    import copy
    net = copy.deepcopy(model).double().train()
    for m in net.modules():
        if isinstance(m, (_BatchNorm, LayerNorm)):
            m.eps = float(eps)
    return net


def _curvature_batch(data, n):
    n = min(int(n), len(data.x_train))
    return (backend.to_device(np.asarray(data.x_train[:n], dtype=np.float64)),
            backend.to_device(np.asarray(data.y_train[:n], dtype=np.int64)))


def _invariant(model):
    return [n for n, p in model.named_parameters() if p.scale_group is not None]


def _euler_residual(net, x, y, name, g, mask=None):
    """max |H [w_G, 0] + [g_G, 0]| over every parameter entry, relative to max |g| of the layer
    (``g``: the gradient at w; ``mask``: the group, a 0/1 array of the weight's shape; None: the
    whole layer)."""
    from refnet.nn.curvature import hvp
    p = dict(net.named_parameters())[name]
    m = 1.0 if mask is None else mask
    hv = hvp(net, x, y, {name: p.data * m})
    scale = float(np.abs(backend.asnumpy(g[name])).max())
    err = max(float(np.abs(backend.asnumpy(hv[k] + (g[k] * m if k == name else 0))).max()) for k in hv)
    return err / scale


def _pre_norm_var(net, name, x):
    """Per unit, the batch variance of the input of the normalization after ``name``'s layer
    (the model is a Sequential; the layers before it are run on ``x``)."""
    index = int(name.split(".")[0])
    for layer in list(net)[:index + 1]:
        x = layer(x)
    pre = backend.asnumpy(x)
    return pre.var(axis=(0,) + tuple(range(2, pre.ndim)))


def _scaling_residuals(net, x, y, name, cs, seed, mask=None):
    """H(c w_G) v = H(w) v / c^2 on the group's block and / c on every other parameter (other
    units of the same weight included), for a random v on the group (``mask``: a 0/1 array of
    the weight's shape; None: the whole layer) and the group alone scaled by each c: per c, the
    largest entry error relative to each block's largest entry."""
    from refnet.nn.curvature import hvp
    p = dict(net.named_parameters())[name]
    m = np.ones(p.shape) if mask is None else backend.asnumpy(mask)
    v = {name: backend.to_device(np.random.default_rng(seed).standard_normal(p.shape) * m)}
    before = {k: backend.asnumpy(b) for k, b in hvp(net, x, y, v).items()}
    original = p.data.copy()
    out = []
    for c in cs:
        p.data *= backend.to_device(1 + (c - 1) * m)
        after = hvp(net, x, y, v)
        p.data[...] = original
        err = 0.0
        for k, b in before.items():
            a = backend.asnumpy(after[k]) * (np.where(m > 0, c * c, c) if k == name else c)
            for block in ((m > 0, m == 0) if k == name else (np.ones(b.shape, bool),)):
                top = float(np.abs(b[block]).max()) if block.any() else 0.0
                if top > 0:
                    err = max(err, float(np.abs(a - b)[block].max()) / top)
        out.append(err)
    return out


def curvature_identities_task(spec):
    """The second-order identities of every scale-invariant weight on a briefly trained network
    (``probes.trained_model``), float64, eps = 0, one batch: arrays ``euler/layer``,
    ``euler/units`` (the first ``units`` units one by one, the largest), ``scaling`` (len(c),: the
    layer scaled as a whole) and ``scaling/units`` (each of those units alone, the largest),
    and with the layers' eps (``bend_eps``), every invariant layer scaled by each of
    ``bend_c``: ``bend`` (len(bend_c),), the largest relative Euler residual over layers, and
    ``bend_order``, the largest eps / (var + eps) over their units (``theory.second_order.eps_bend``)."""
    from refnet.experiments.probes import trained_model
    from refnet.nn.curvature import gradient
    from theory import second_order
    t0 = time.perf_counter()
    model, data = trained_model(spec)
    x, y = _curvature_batch(data, spec.get("curvature_batch", 256))
    net = _curvature_copy(model, 0.0)
    names = _invariant(net)
    cs = np.asarray(spec["c"], dtype=np.float64)
    arrays = {"c": cs, "bend_c": np.asarray(spec["bend_c"], dtype=np.float64)}
    g = gradient(net, x, y)
    for i, name in enumerate(names):
        p = dict(net.named_parameters())[name]
        arrays[f"{name}/euler/layer"] = np.asarray(_euler_residual(net, x, y, name, g))
        per_unit, scaling = [], []
        for u in range(min(spec.get("units", 1), p.shape[0])):
            mask = np.zeros(p.shape)
            mask[u] = 1.0
            per_unit.append(_euler_residual(net, x, y, name, g, backend.to_device(mask)))
            scaling.append(_scaling_residuals(net, x, y, name, cs, spec.get("seed", 0) + i, backend.to_device(mask)))
        arrays[f"{name}/euler/units"] = np.asarray(max(per_unit))
        arrays[f"{name}/scaling"] = np.asarray(_scaling_residuals(net, x, y, name, cs, spec.get("seed", 0) + i))
        arrays[f"{name}/scaling/units"] = np.max(scaling, axis=0)
    bent = _curvature_copy(model, spec.get("bend_eps", 1e-5))
    named = dict(bent.named_parameters())
    bend, order = [], []
    for c in arrays["bend_c"]:
        saved = {n: named[n].data.copy() for n in names}
        for n in names:
            named[n].data *= c
        gc = gradient(bent, x, y)
        bend.append(max(_euler_residual(bent, x, y, n, gc) for n in names))
        order.append(max(float(np.max(second_order.eps_bend(spec.get("bend_eps", 1e-5), _pre_norm_var(bent, n, x))))
                         for n in names))
        for n in names:
            named[n].data[...] = saved[n]
    arrays["bend"], arrays["bend_order"] = np.asarray(bend), np.asarray(order)
    return arrays, {"layers": names, "arch": spec["model"].get("arch", "mlp"),
                    "seconds": time.perf_counter() - t0}


def sharpness_task(spec):
    """Train (float32, the spec's optimizer, batches of ``batch_size`` drawn with ``seed``) and at
    each of ``checkpoints`` (steps) measure, for each tracked invariant weight (``layers``, default
    all), by Lanczos (``top_eigenvalues``, tolerance ``lanczos_tol``) on the float64 copy:
    arrays ``step``, ``<name>/norm2`` (||w||^2, Frobenius: the layer as one scale group),
    ``<name>/lam`` (lambda_max(H_ww(w))); at the checkpoints in ``identity_at`` also
    ``<name>/lam_hat`` (lambda_max(H_ww(w / ||w||)), the same start vector) and
    ``identity_step``."""
    from refnet.nn.curvature import top_eigenvalues
    from refnet.ops import softmax_cross_entropy
    t0 = time.perf_counter()
    backend.use(spec.get("device", "cpu"))
    data = load_data(spec["data"])
    model = build_model(spec["model"], data)
    opt = build_optimizer(spec["optim"], model)
    x, y = _curvature_batch(data, spec.get("curvature_batch", 512))
    names = spec.get("layers") or _invariant(model)
    checkpoints = sorted(int(s) for s in spec["checkpoints"])
    identity_at = set(int(s) for s in spec.get("identity_at", []))
    tol, dtype = spec.get("lanczos_tol", 1e-6), model.parameters()[0].dtype
    rng = np.random.default_rng(spec.get("seed", 0))
    out = {k: [] for k in ["step", "identity_step"] + [f"{n}/{q}" for n in names for q in ("norm2", "lam", "lam_hat")]}
    lanczos_s = 0.0
    for step in range(checkpoints[-1] + 1):
        if step in checkpoints:
            t1 = time.perf_counter()
            net = _curvature_copy(model, spec.get("eps", 0.0))
            params = dict(net.named_parameters())
            out["step"].append(step)
            if step in identity_at:
                out["identity_step"].append(step)
            for n in names:
                w = params[n]
                n2 = float((backend.asnumpy(w.data) ** 2).sum())
                out[f"{n}/norm2"].append(n2)
                out[f"{n}/lam"].append(float(top_eigenvalues(net, x, y, n, tol=tol)[0]))
                if step in identity_at:
                    w.data /= np.sqrt(n2)
                    out[f"{n}/lam_hat"].append(float(top_eigenvalues(net, x, y, n, tol=tol)[0]))
                    w.data *= np.sqrt(n2)
            lanczos_s += time.perf_counter() - t1
        if step == checkpoints[-1]:
            break
        idx = rng.integers(0, len(data.x_train), spec.get("batch_size", 128))
        xb = backend.to_device(np.asarray(data.x_train[idx], dtype=dtype))
        model.zero_grad()
        model.backward(softmax_cross_entropy(model(xb), backend.to_device(np.asarray(data.y_train[idx])))[1])
        opt.step()
    arrays = {k: np.asarray(v, dtype=np.int64 if "step" in k else np.float64) for k, v in out.items()}
    return arrays, {"layers": names, "seconds": time.perf_counter() - t0, "lanczos_seconds": lanczos_s}
