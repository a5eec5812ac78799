"""Second-order and forward-mode gradient checks, on the first-order checker's engine.

    check_jvp(forward, forward_jvp, backward, args, kwargs)              # an op's forward JVP
    check_hvp(forward, backward, forward_jvp, backward_jvp, args, kwargs)  # an op's second order
    check_module_jvp(module, x)                                          # a module's forward_jvp
    check_model_hvp(model, x, y)                                         # model.hvp, per parameter

Each returns a ``GradcheckReport`` with the same verdicts ("ok", "failed", "inconclusive"),
coverage, kinks and resolution as ``check_op``: every argument goes through
``probes.check_argument`` (``check._compare``) with a claimed linear map.

* JVP: the scalar is ``<c, forward(args)>`` for a random c; the claimed slope along a probe d
  in one argument is ``<c, forward_jvp(cache, ..., d, ...)>`` (one JVP per probe). The
  per-entry scales |<c, J e_j>| come from the backward (J^T c): scales only, never the verdict.
* HVP: the scalar is ``<v, g(theta)>`` for a random v, with g the HAND-WRITTEN gradient; its
  gradient is J_g^T v, which is H v when g is right (H symmetric), and the claim is the
  second-order code's H v, entry by entry. For an op, theta is (dout, args) and g is
  (forward(args), backward(dout, cache)): the Hessian of L = <dout, forward(args)>, whose
  product with a tangent (tdout, targs) is (forward_jvp(targs), backward_jvp(dout, tdout,
  cache, targs)), so one check covers both JVPs. Plus a symmetry row: <u, H v> = <H u, v>
  for random u, v, to ``SYM_TOL`` relative to |u| |H v| + |H u| |v|.
"""

import copy
import warnings

import numpy as np

from refnet import backend
from refnet.gradcheck import inputs
from refnet.gradcheck.check import MAX_FULL, RTOL, STEP, _compare, _finish
from refnet.gradcheck.inputs import checker_rng, promote
from refnet.gradcheck.probes import LinearMap, check_argument
from refnet.gradcheck.report import ArgCheck, GradcheckReport, GradcheckWarning

SYM_TOL = 1e-10   # |<u, Hv> - <Hu, v>| / (|u||Hv| + |Hu||v|): float64 rounding reads ~1e-15


def _tuple(grads):
    return tuple(grads) if isinstance(grads, (tuple, list)) else (grads,)


def _dot(a, b):
    return sum(float(np.sum(backend.asnumpy(x) * backend.asnumpy(y))) for x, y in zip(a, b))


def _norm(a):
    return _dot(a, a) ** 0.5


def _symmetry(hvp, shapes, rng):
    """The ArgCheck row <u, H v> = <H u, v> for random u, v."""
    u = [rng.standard_normal(s) for s in shapes]
    v = [rng.standard_normal(s) for s in shapes]
    hu, hv = hvp(u), hvp(v)
    a, b = _dot(u, hv), _dot(hu, v)
    scale = _norm(u) * _norm(hv) + _norm(hu) * _norm(v)
    rel = abs(a - b) / scale if scale > 0 else 0.0
    return ArgCheck("<u,Hv>=<Hu,v>", (), mode="symmetry", status="ok" if rel <= SYM_TOL else "failed",
                    max_abs_err=abs(a - b), max_rel_err=rel, n_probes=1, n_entries=1, n_covered=1,
                    note="" if rel <= SYM_TOL else f"<u,Hv> = {a!r} but <Hu,v> = {b!r}")


def _hvp_report(title, names, arrays, grad_fn, hvp_fn, rng, opts, problems, raise_exception):
    """Entries of hvp_fn(v) against differences of <v, grad_fn()>, and the symmetry row."""
    v = [rng.standard_normal(a.shape) for a in arrays]
    hv = [backend.asnumpy(h).astype(np.float64) for h in hvp_fn(v)]

    def evaluate():
        return _dot(v, grad_fn())

    targets = [(n, a, h) for n, a, h in zip(names, arrays, hv)]
    checks = _compare(evaluate, targets, rng, opts, None)
    checks.append(_symmetry(hvp_fn, [a.shape for a in arrays], rng))
    return _finish(GradcheckReport(title, checks, problems, opts["rtol"], opts["mode"]), raise_exception)


# --- ops ---------------------------------------------------------------------------------------
def _op_setup(where, forward, args, kwargs, opts_kw):
    for name, fn in forward:
        inputs.callable_(where, name, fn)
    fwd = forward[0][1]
    args, kwargs = inputs.args_tuple(where, args), inputs.kwargs_dict(where, kwargs)
    opts = inputs.options(where, nondet_tol=0.0, **opts_kw)
    names = inputs.arg_names(fwd, len(args))
    args = [promote(where, n, a, stacklevel=4) for n, a in zip(names, args)]
    for i, (n, a) in enumerate(zip(names, args)):
        inputs.finite(f"{where}(args[{i}] {n!r})", a)
    floats = [i for i, a in enumerate(args) if inputs.is_float_array(a)]
    return args, kwargs, opts, names, floats


def check_jvp(forward, forward_jvp, backward, args, kwargs=None, *, rtol=RTOL, atol=0.0, mode="auto",
              seed=0, max_full=MAX_FULL, step=STEP, raise_exception=False):
    """Check ``forward_jvp(cache, *tangents)`` against central differences of ``forward``,
    one argument at a time (the others' tangents None). ``backward`` gives the per-entry
    scales only. Options as in ``check_op``."""
    where = "check_jvp"
    args, kwargs, opts, names, floats = _op_setup(
        where, [("forward", forward), ("forward_jvp", forward_jvp), ("backward", backward)], args, kwargs,
        dict(rtol=rtol, atol=atol, mode=mode, max_full=max_full, step=step))
    rng = checker_rng(seed)
    out, cache = inputs.forward_pair(where, forward, args, kwargs)
    xp = backend.array_module(out)
    c = xp.asarray(rng.standard_normal(np.shape(out)))
    scales = _tuple(backward(c, cache))

    def evaluate():
        return backend.scalar(xp.sum(c * forward(*args, **kwargs)[0]))

    f0, f0_again = evaluate(), evaluate()
    biggest = max(float(np.abs(backend.asnumpy(scales[i])).max(initial=0.0)) for i in floats)
    floor_abs = max(opts["atol"] / opts["rtol"], 1e-4 * biggest)
    checks = []
    for i in floats:
        def apply(support, weights, i=i):
            t = np.zeros(args[i].size)
            t[support] = weights
            tangents = [None] * len(args)
            tangents[i] = xp.asarray(t.reshape(args[i].shape))
            return backend.scalar(xp.sum(c * forward_jvp(cache, *tangents)))
        analytic = LinearMap(apply, np.abs(backend.asnumpy(scales[i])).reshape(-1))
        m = opts["mode"]
        m = ("full" if args[i].size <= opts["max_full"] else "directional") if m == "auto" else m
        checks.append(check_argument(names[i], args[i], evaluate, analytic, rng, f0=f0, rtol=opts["rtol"],
                                     floor=1e-2, floor_abs=floor_abs, mode=m, step=opts["step"],
                                     delta_min=abs(f0_again - f0)))
    title = f"{getattr(forward_jvp, '__name__', 'forward_jvp')} (JVP)"
    return _finish(GradcheckReport(title, checks, [], opts["rtol"], mode), raise_exception)


def check_hvp(forward, backward, forward_jvp, backward_jvp, args, kwargs=None, *, rtol=RTOL, atol=0.0,
              mode="auto", seed=0, max_full=MAX_FULL, step=STEP, raise_exception=False):
    """Check an op's second order: the Hessian of L = <dout, forward(args)> in (dout, args),
    whose product with (tdout, targs) is (forward_jvp, backward_jvp), against central
    differences of the hand-written (forward, backward); plus <u, Hv> = <Hu, v>. The report
    has a row "dout" (forward_jvp's claim) and one per float argument (backward_jvp's)."""
    where = "check_hvp"
    args, kwargs, opts, names, floats = _op_setup(
        where, [("forward", forward), ("backward", backward), ("forward_jvp", forward_jvp),
                ("backward_jvp", backward_jvp)], args, kwargs,
        dict(rtol=rtol, atol=atol, mode=mode, max_full=max_full, step=step))
    rng = checker_rng(seed)
    out = inputs.forward_pair(where, forward, args, kwargs)[0]
    xp = backend.array_module(out)
    dout = xp.asarray(rng.standard_normal(np.shape(out)))
    seed_view = dout.reshape(-1) if dout.ndim == 0 else dout   # a view: a scalar loss's seed as (1,)
    arrays = [seed_view] + [args[i] for i in floats]

    def grad_fn():
        out, cache = forward(*args, **kwargs)
        grads = _tuple(backward(dout, cache))
        return [out.reshape(seed_view.shape)] + [grads[i] for i in floats]

    def hvp_fn(t):
        cache = forward(*args, **kwargs)[1]
        tangents = [None] * len(args)
        for i, ti in zip(floats, t[1:]):
            tangents[i] = xp.asarray(ti)
        tgrads = _tuple(backward_jvp(dout, xp.asarray(t[0]).reshape(dout.shape), cache, *tangents))
        return [forward_jvp(cache, *tangents).reshape(seed_view.shape)] + [tgrads[i] for i in floats]

    title = f"{getattr(backward_jvp, '__name__', 'backward_jvp')} (HVP)"
    return _hvp_report(title, ["dout"] + [names[i] for i in floats], arrays, grad_fn, hvp_fn, rng, opts,
                       [], raise_exception)


def loss_as_op(loss_fn, loss_jvp):
    """(forward, backward, forward_jvp, backward_jvp) of a loss ``loss_fn(logits, labels) ->
    (loss, dlogits)`` with ``loss_jvp(logits, labels, tlogits) -> (tloss, tdlogits)``, so that
    ``check_jvp`` / ``check_hvp`` take it like any op (dout is the loss's scalar seed)."""
    def forward(logits, labels):
        return loss_fn(logits, labels)[0], (logits, labels)

    def backward(dloss, cache):
        return dloss * loss_fn(*cache)[1], None

    def forward_jvp(cache, tlogits, tlabels=None):
        return loss_jvp(*cache, tlogits)[0]

    def backward_jvp(dloss, tdloss, cache, tlogits, tlabels=None):
        dlogits = loss_fn(*cache)[1]
        tdlogits = loss_jvp(*cache, tlogits)[1]
        return tdloss * dlogits + dloss * tdlogits, None

    name = getattr(loss_fn, "__name__", "loss")
    for fn, suffix in ((forward, ""), (backward, "_backward"), (forward_jvp, "_jvp"),
                       (backward_jvp, "_backward_jvp")):
        fn.__name__ = name + suffix
    return forward, backward, forward_jvp, backward_jvp


# --- modules and models --------------------------------------------------------------------------
def _float64_module(where, module):
    from refnet.nn.module import Module
    if not isinstance(module, Module):
        raise TypeError(f"{where}(module): got {type(module).__name__}, expected a refnet.nn.Module")
    if any(p.data.dtype != np.float64 for p in module.parameters()):
        warnings.warn(f"{where}: {type(module).__name__} has non-float64 parameters; checking a float64 copy",
                      GradcheckWarning, stacklevel=3)
        module = copy.deepcopy(module).double()
    return module


def check_module_jvp(module, x, *, rtol=RTOL, atol=0.0, mode="auto", seed=0, max_full=MAX_FULL,
                     step=STEP, raise_exception=False):
    """Check ``module.forward_jvp`` against central differences of ``module(x)``, for x and
    every parameter in turn, in the module's current mode; the module is left as found
    (buffers restored, ``.grad`` untouched: the scales come from ``backward_jvp``'s gradients)."""
    from refnet.nn.curvature import _KeepBuffers
    where = "check_module_jvp"
    module = _float64_module(where, module)
    opts = inputs.options(where, rtol=rtol, atol=atol, mode=mode, max_full=max_full, step=step,
                          nondet_tol=0.0)
    rng = checker_rng(seed)
    x = promote(where, "x", x, stacklevel=3)
    inputs.finite(f"{where}(x)", x)
    params = list(module.named_parameters())
    with _KeepBuffers(module) as keep:
        y = module(x)
        xp = backend.array_module(y)
        c = xp.asarray(rng.standard_normal(y.shape))
        module.forward_jvp(None, {})
        grads = {}
        dx = module.backward_jvp(c, xp.zeros_like(c), {}, grads)[0]
        scales = [("x", x, dx)] + [(n, p.data, grads.get(p, xp.zeros_like(p.data))) for n, p in params]

        def evaluate():
            keep.__exit__()
            return backend.scalar(xp.sum(c * module(x)))

        f0, f0_again = evaluate(), evaluate()
        biggest = max(float(np.abs(backend.asnumpy(g)).max(initial=0.0)) for _, _, g in scales)
        floor_abs = max(opts["atol"] / opts["rtol"], 1e-4 * biggest)
        checks = []
        for k, (name, data, g) in enumerate(scales):
            def apply(support, weights, k=k, data=data):
                t = np.zeros(data.size)
                t[support] = weights
                t = xp.asarray(t.reshape(data.shape))
                keep.__exit__()
                module(x)
                ty = module.forward_jvp(t if k == 0 else None, {} if k == 0 else {params[k - 1][1]: t})
                return backend.scalar(xp.sum(c * ty))
            m = opts["mode"]
            m = ("full" if data.size <= opts["max_full"] else "directional") if m == "auto" else m
            checks.append(check_argument(name, data, evaluate,
                                         LinearMap(apply, np.abs(backend.asnumpy(g)).reshape(-1)), rng,
                                         f0=f0, rtol=opts["rtol"], floor=1e-2, floor_abs=floor_abs, mode=m,
                                         step=opts["step"], delta_min=abs(f0_again - f0)))
    title = f"{type(module).__name__} ({'train' if module.training else 'eval'}) forward_jvp"
    return _finish(GradcheckReport(title, checks, [], opts["rtol"], mode), raise_exception)


def check_model_hvp(model, x, y, *, rtol=RTOL, atol=0.0, mode="auto", seed=0, max_full=MAX_FULL,
                    step=STEP, raise_exception=False):
    """Check ``model.hvp(x, y, v)`` (mean softmax cross-entropy) entry by entry against
    central differences of the hand-written gradient, per parameter, and its symmetry.
    The model is left as found."""
    from refnet.nn.curvature import gradient
    where = "check_model_hvp"
    model = _float64_module(where, model)
    opts = inputs.options(where, rtol=rtol, atol=atol, mode=mode, max_full=max_full, step=step,
                          nondet_tol=0.0)
    rng = checker_rng(seed)
    x = promote(where, "x", x, stacklevel=3)
    params = list(model.named_parameters())
    names = [n for n, _ in params]
    xp = backend.array_module(x)

    def grad_fn():
        g = gradient(model, x, y)
        return [g[n] for n in names]

    def hvp_fn(t):
        hv = model.hvp(x, y, {n: xp.asarray(ti) for n, ti in zip(names, t)})
        return [hv[n] for n in names]

    title = f"{type(model).__name__} ({'train' if model.training else 'eval'}) hvp"
    return _hvp_report(title, names, [p.data for _, p in params], grad_fn, hvp_fn, rng, opts, [],
                       raise_exception)
