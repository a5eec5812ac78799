"""check_op, check_loss and check_module: a hand-written backward against central differences.

Each turns the code under test into one scalar, L = sum(dout * forward(args)) with a random
upstream gradient dout, runs backward once for the analytic gradients, and hands every
floating-point argument (or parameter) to the engine in ``refnet.gradcheck.probes``.
"""

import copy
import warnings

import numpy as np

from refnet import backend
from refnet.gradcheck import inputs
from refnet.gradcheck.inputs import checker_rng, fingerprint, promote
from refnet.gradcheck.probes import LinearMap, check_argument
from refnet.gradcheck.report import ArgCheck, GradcheckError, GradcheckReport, GradcheckWarning

RTOL = 1e-5       # largest error allowed per entry, relative to its scale
FLOOR = 1e-2      # entries below FLOOR * max|grad| are judged against FLOOR * max|grad|
STEP = 1e-4       # first finite-difference step (at least 1e-6 max|x|); adapted per probe
MAX_FULL = 2048   # tensors up to this many entries are checked entry by entry ("auto")


def check_op(forward, backward, args, kwargs=None, *, rtol=RTOL, atol=0.0, mode="auto", seed=0,
             max_full=MAX_FULL, step=STEP, nondet_tol=0.0, raise_exception=False, _fd_cache=None):
    """Check ``backward(dout, cache)`` against ``forward(*args, **kwargs) -> (out, cache)``.

    Every floating-point array in ``args`` (a tuple), 0-d arrays and NumPy float scalars
    included, is checked (promoted to float64 with a GradcheckWarning); ``None`` args must
    get ``None`` gradients; any other argument (integer labels, a Python float or a list)
    is passed through, listed as not differentiated, and makes the report inconclusive if
    backward returns a gradient for it (nothing checked that gradient). With no
    floating-point array at all, nothing is checked and the status is inconclusive.
    ``mode``: "auto" (full up to ``max_full`` entries, directional above), "full",
    "directional" or "fast" (one random Gaussian direction per argument: cheap, less power).
    ``atol``: an absolute scale below which entries are not judged relatively (default 0:
    floors relative to the gradients). ``nondet_tol``: how far a second run of forward and
    backward on the same inputs may differ (default 0: bitwise equal).
    ``raise_exception=True`` raises GradcheckError unless the status is ok.
    ``_fd_cache`` is internal: a dict through which the power campaign's mutants of one
    configuration share their finite differences.
    """
    where = "check_op"
    inputs.callable_(where, "forward", forward)
    inputs.callable_(where, "backward", backward)
    args, kwargs = inputs.args_tuple(where, args), inputs.kwargs_dict(where, kwargs)
    opts = inputs.options(where, rtol=rtol, atol=atol, mode=mode, max_full=max_full, step=step,
                          nondet_tol=nondet_tol)
    rng = checker_rng(inputs.seed(where, seed))
    names = inputs.arg_names(forward, len(args))
    for i, (n, a) in enumerate(zip(names, args)):
        inputs.real(where, f"args[{i}] {n!r}", a)
    inputs.finite_kwargs(where, kwargs)
    args = [promote(where, n, a, stacklevel=3) for n, a in zip(names, args)]
    for i, (n, a) in enumerate(zip(names, args)):
        inputs.finite(f"{where}(args[{i}] {n!r})", a)
    inputs_before = fingerprint(args)
    out, cache = inputs.forward_pair(where, forward, args, kwargs)
    xp = backend.array_module(out)
    dout = xp.asarray(rng.standard_normal(np.shape(out)))
    dout_before, cache_before, pristine = fingerprint(dout), fingerprint(cache), dout.copy()
    grads = backward(dout, cache)
    problems = [what for what, was, now in (
        ("backward modified dout", dout_before, dout), ("backward modified the cache", cache_before, cache),
        ("forward or backward modified the inputs", inputs_before, args)) if was != fingerprint(now)]
    unchecked = []
    targets = _align(names, args, grads, problems, unchecked)
    dout = pristine  # a backward that modified dout is reported; the numbers use the original
    out2, cache2 = forward(*args, **kwargs)
    problems += inputs.nondeterminism("forward", [("out", out)], [("out", out2)], nondet_tol)
    again = _align(names, args, backward(dout.copy(), cache2), [])
    problems += inputs.nondeterminism("backward", [(n, g) for n, _, g in targets],
                                      [(n, g) for n, _, g in again], nondet_tol)

    def evaluate():
        return backend.scalar(xp.sum(dout * forward(*args, **kwargs)[0]))

    report = GradcheckReport(getattr(forward, "__name__", "op"),
                             _compare(evaluate, targets, rng, opts, _fd_cache), problems, rtol, mode, unchecked,
                             "" if any(map(inputs.is_float_array, args)) else
                             "nothing was checked: no argument is a floating-point array")
    return _finish(report, raise_exception)


def check_loss(loss_fn, logits, labels, *, rtol=RTOL, atol=0.0, mode="auto", seed=0,
               max_full=MAX_FULL, step=STEP, nondet_tol=0.0, raise_exception=False, _fd_cache=None):
    """Check ``loss_fn(logits, labels) -> (loss, dlogits)`` (e.g. softmax_cross_entropy)."""
    inputs.callable_("check_loss", "loss_fn", loss_fn)
    inputs.seed("check_loss", seed)
    inputs.real("check_loss", "logits", logits)

    def forward(logits, labels):
        result = loss_fn(logits, labels)
        if not (isinstance(result, tuple) and len(result) == 2):
            raise TypeError(f"check_loss(loss_fn): {getattr(loss_fn, '__name__', 'loss_fn')} returned "
                            f"{type(result).__name__}, expected a pair (loss, dlogits)")
        return result[0], (logits, labels)

    def backward(dloss, cache):
        return dloss * loss_fn(*cache)[1], None

    forward.__name__ = getattr(loss_fn, "__name__", "loss")
    return check_op(forward, backward, (logits, labels), rtol=rtol, atol=atol, mode=mode, seed=seed,
                    max_full=max_full, step=step, nondet_tol=nondet_tol,
                    raise_exception=raise_exception, _fd_cache=_fd_cache)


def check_module(module, x, *, rtol=RTOL, atol=0.0, mode="auto", seed=0, max_full=MAX_FULL,
                 step=STEP, nondet_tol=0.0, raise_exception=False, _fd_cache=None):
    """Check ``module.backward`` for ``dx`` and every named parameter, in the module's
    current train/eval mode, and that backward adds (+=) into ``.grad``.

    Parameters are perturbed in place and buffers (running statistics) restored after
    every forward, so a check costs six forwards per probe measurement (at least one per
    probe, and one per probe of the rounding-noise pool) and five more, no state-dict
    reloads. The module is left as found (parameters, buffers, ``.grad``). A module that is
    not float64 is checked on a float64 copy (with a GradcheckWarning).
    Options as in ``check_op``.
    """
    from refnet.nn.module import Module
    where = "check_module"
    if not isinstance(module, Module):
        raise TypeError(f"{where}(module): got {type(module).__name__}, expected a refnet.nn.Module")
    opts = inputs.options(where, rtol=rtol, atol=atol, mode=mode, max_full=max_full, step=step,
                          nondet_tol=nondet_tol)
    rng = checker_rng(inputs.seed(where, seed))
    inputs.real(where, "x", x)
    if not inputs.is_float_array(x):
        raise TypeError(f"{where}(x): got {type(x).__name__}"
                        f"{' of dtype ' + str(x.dtype) if hasattr(x, 'dtype') else ''}, "
                        "expected a floating-point array")
    x = promote(where, "x", x, stacklevel=3)
    inputs.finite(f"{where}(x)", x)
    if any(p.data.dtype != np.float64 for p in module.parameters()):
        warnings.warn(f"{where}: {type(module).__name__} has non-float64 parameters; "
                      "checking a float64 copy", GradcheckWarning, stacklevel=2)
        module = copy.deepcopy(module).double()
    params = list(module.named_parameters())
    for n, p in params:
        inputs.real(where, f"parameter {n!r}", p.data)
        inputs.finite(f"{where}(parameter {n!r})", p.data)
    buffers = _Buffers(module)
    grads_before = [p.grad.copy() for _, p in params]
    try:
        problems, targets, dy = _module_backward(module, x, params, buffers, rng, nondet_tol)
        xp = backend.array_module(dy)

        def evaluate():
            buffers.restore()
            return backend.scalar(xp.sum(dy * module(x)))

        checks = _compare(evaluate, targets, rng, opts, _fd_cache)
    finally:
        buffers.restore()
        for (_, p), g in zip(params, grads_before):
            p.grad[...] = g
    title = f"{type(module).__name__} ({'train' if module.training else 'eval'})"
    return _finish(GradcheckReport(title, checks, problems, rtol, mode), raise_exception)


def _module_backward(module, x, params, buffers, rng, nondet_tol):
    """Forward and backward three times: the gradients, a repeat (deterministic?), and a
    repeat without zero_grad (does backward add into .grad?)."""
    module.zero_grad()
    x_before = fingerprint(x)
    y = module(x)
    inputs.float_output("check_module: the module's output", y)
    inputs.finite("check_module: the module's output", y)
    dy = backend.array_module(y).asarray(rng.standard_normal(y.shape))
    dy_before, pristine = fingerprint(dy), dy.copy()
    dx = module.backward(dy)
    problems = [what for what, was, now in (("backward modified dy", dy_before, dy),
                ("forward or backward modified x", x_before, x)) if was != fingerprint(now)]
    dy = pristine
    targets = _align(["x"], [x], [dx], problems)
    first = [backend.asnumpy(p.grad).astype(np.float64) for _, p in params]
    for (n, _), g in zip(params, first):
        inputs.finite(f"check_module: the gradient of {n!r}", g)
    targets += [(n, p.data, g) for (n, p), g in zip(params, first)]

    buffers.restore()
    module.zero_grad()
    module(x)
    dx2 = module.backward(dy.copy())
    second = [backend.asnumpy(p.grad).astype(np.float64) for _, p in params]
    names = ["x"] + [n for n, _ in params]
    problems += inputs.nondeterminism("backward", list(zip(names, [targets[0][2]] + first)),
                                      list(zip(names, [dx2] + second)), nondet_tol)
    buffers.restore()
    module(x)
    module.backward(dy.copy())  # without zero_grad: every .grad must now hold first + second
    problems += [f"backward did not accumulate into {n}.grad (it must add, +=, not assign)"
                 for (n, p), g1, g2 in zip(params, first, second)
                 if not np.allclose(backend.asnumpy(p.grad), g1 + g2, rtol=1e-9, atol=1e-300)]
    return problems, targets, dy


class _Buffers:
    """The module's buffers, put back after every forward (BatchNorm's running statistics
    move in training mode). Cheap: only buffers are copied, never the parameters."""

    def __init__(self, module):
        self.saved = [(mod, name, getattr(mod, name), copy.copy(getattr(mod, name)))
                      for _, mod in module.named_modules() for name in mod._buffers]

    def restore(self):
        for mod, name, original, values in self.saved:
            if hasattr(original, "shape"):
                original[...] = values
            object.__setattr__(mod, name, original)


# --- shared plumbing -------------------------------------------------------------------
def _compare(evaluate, targets, rng, opts, cache):
    """An ArgCheck per (name, array, analytic gradient) target, for the scalar evaluate()."""
    f0, f0_again = evaluate(), evaluate()
    if not np.isfinite(f0):
        raise ValueError(f"gradcheck: the checked scalar sum(dout * out) is {f0!r}; expected a finite number")
    biggest = max((float(np.abs(g).max(initial=0.0)) for _, _, g in targets if not isinstance(g, ArgCheck)),
                  default=0.0)
    floor_abs = max(opts["atol"] / opts["rtol"], FLOOR ** 2 * biggest)
    checks = []
    for name, data, grad in targets:
        if isinstance(grad, ArgCheck):
            checks.append(grad)
            continue
        mode = opts["mode"]
        if mode == "auto":
            mode = "full" if grad.size <= opts["max_full"] else "directional"
        checks.append(check_argument(name, data, evaluate, LinearMap.from_gradient(grad), rng, f0=f0,
                                     rtol=opts["rtol"], floor=FLOOR, floor_abs=floor_abs, mode=mode,
                                     step=opts["step"], delta_min=abs(f0_again - f0), cache=cache))
    return checks


def _align(names, args, grads, problems, unchecked=None):
    """[(name, array, analytic grad as float64 numpy, or an ArgCheck)] for float args; the
    other arguments go to ``unchecked`` as (name, what it is), unless backward returned a
    gradient for one: that is an inconclusive ArgCheck, since nothing checked it."""
    grads = tuple(grads) if isinstance(grads, (tuple, list)) else (grads,)
    if len(grads) != len(args):
        problems.append(f"backward returned {len(grads)} gradient(s) for {len(args)} argument(s)")
        grads = grads + (None,) * (len(args) - len(grads))
    targets = []
    for name, a, g in zip(names, args, grads):
        if inputs.is_float_array(a) and a.ndim == 0 and isinstance(g, (int, float, np.number)):
            g = np.asarray(g, dtype=np.float64)  # a scalar's gradient may be a plain number
        if a is not None and not inputs.is_float_array(a):
            what = inputs.describe(a)
            if g is not None:
                targets.append((name, a, ArgCheck(
                    name, tuple(np.shape(a)), status="inconclusive", n_entries=int(np.size(a)),
                    note=f"backward returned a gradient for it, but it is {what}, not a floating-point "
                         f"array, so it was not checked (pass np.asarray({name}, dtype=np.float64))")))
            elif unchecked is not None:
                unchecked.append((name, what))
            continue
        if inputs.is_float_array(a):
            if g is None or not hasattr(g, "shape") or tuple(g.shape) != tuple(a.shape):
                what = "None" if g is None else (f"shape {tuple(g.shape)}" if hasattr(g, "shape")
                                                 else type(g).__name__)
                failed = ArgCheck(name, tuple(a.shape), status="failed", n_entries=a.size,
                                  note=f"backward returned {what}, expected shape {tuple(a.shape)}")
                targets.append((name, a, failed))
            else:
                inputs.finite(f"backward: the gradient for {name!r}", g)
                targets.append((name, a, backend.asnumpy(g).astype(np.float64)))
        elif a is None and g is not None:
            problems.append(f"{name} is None but backward returned a gradient for it")
    return targets


def _finish(report, raise_exception):
    if raise_exception and not report.ok:
        raise GradcheckError(report)
    return report
