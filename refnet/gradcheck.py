"""Numerical gradient checks: a hand-written backward against central differences.

    report = check_op(conv2d_forward, conv2d_backward, (x, w, b), {"stride": 2})
    print(report)           # per argument: worst abs/rel error, where, kinks excluded
    assert report.ok        # bool(report) is the same

* An op becomes one scalar ``L(args) = sum(dout * forward(args))`` with a *random* upstream
  gradient: with ``dout = ones`` a backward that sums the wrong axis can still pass.
* A probe ``d`` (e_j in full mode, a random +-1 vector in directional mode) compares the
  analytic slope ``a = <grad, d>`` with ``c = (L(x+hd) - L(x-hd)) / 2h`` in float64
  (h = 1e-6 * max(1, max|x|): truncation ~h^2, rounding ~eps*|L|/h).
* Its error is ``|a - c| / scale``, scale = max(largest |grad_j d_j|, |c|/sqrt(size),
  FLOOR * max|grad|, atol/rtol): the floors keep ~0 entries, whose relative error is
  rounding noise, from failing (``atol`` defaults to an estimate of that noise, 512 * eps *
  (|L| + ||dout * out||) / h). 0.1% off in one ordinary entry reads 1e-3, 100x the default
  ``rtol = 1e-5``; correct float64 backwards read ~1e-7 or less.
* Kinks (ReLU at 0, tied maxima in a pool): there the one-sided slopes (L(x+hd) - L(x))/h
  and (L(x) - L(x-hd))/h disagree. When that could change the verdict the probe is redone
  with h/10; if the slopes still disagree, and not ~10x less (smooth curvature), the probe
  straddles a kink and is excluded and counted in the report, never silently judged.
* Full mode (every entry) up to ``max_full`` entries; above, directional mode: 4 dense
  random directions (a transpose, a wrong scale) plus +-1 directions on <= 256 disjoint
  random blocks covering every entry (one wrong entry); a failing block is bisected down
  to the entry responsible, which the report names.
* Backward must leave ``dout``, the cache and the inputs untouched (compared byte for byte).
"""

import copy
import inspect
import warnings

import numpy as np

from refnet import backend
from refnet.gradcheck_report import ArgCheck, GradcheckReport, GradcheckWarning  # noqa: F401

RTOL = 1e-5       # largest relative error allowed per probe
FLOOR = 1e-2      # entries below FLOOR * max|grad| are judged on their absolute error
STEP = 1e-6       # finite-difference step, times max(1, max|x|)
MAX_FULL = 2048   # tensors up to this many entries are checked entry by entry
N_DENSE = 4       # dense random directions in directional mode
MAX_BLOCKS = 256  # block directions in directional mode
_NOISE = 512 * np.finfo(np.float64).eps


def check_op(forward, backward, args, kwargs=None, *, rtol=RTOL, atol=None, mode="auto",
             seed=0, max_full=MAX_FULL, step=STEP):
    """Check ``backward(dout, cache)`` against ``forward(*args, **kwargs) -> (out, cache)``.

    Every floating-point array in ``args`` is checked (promoted to float64 with a
    GradcheckWarning); ``None`` args must get ``None`` gradients; integer arrays (labels)
    are not differentiated. ``mode``: "auto", "full" or "directional".
    """
    kwargs, rng = dict(kwargs or {}), _rng(seed, mode)
    names = _arg_names(forward, len(args))
    args = [_promote(n, a) for n, a in zip(names, args)]
    inputs_before = _fingerprint(args)
    out, cache = forward(*args, **kwargs)
    dout = backend.array_module(out).asarray(rng.standard_normal(np.shape(out)))
    dout_before, cache_before = _fingerprint(dout), _fingerprint(cache)
    grads = backward(dout, cache)
    problems = [what for what, was, now in (
        ("backward modified dout", dout_before, dout), ("backward modified the cache", cache_before, cache),
        ("forward or backward modified the inputs", inputs_before, args)) if was != _fingerprint(now)]
    targets = _align(names, args, grads, problems)
    checks = _compare(lambda: forward(*args, **kwargs)[0], dout, out, targets, rng,
                      rtol=rtol, atol=atol, mode=mode, max_full=max_full, step=step)
    return GradcheckReport(getattr(forward, "__name__", "op"), checks, problems, rtol)


def check_loss(loss_fn, logits, labels, *, rtol=RTOL, atol=None, mode="auto", seed=0,
               max_full=MAX_FULL, step=STEP):
    """Check ``loss_fn(logits, labels) -> (loss, dlogits)`` (e.g. softmax_cross_entropy)."""
    def forward(logits, labels):
        return loss_fn(logits, labels)[0], (logits, labels)

    def backward(dloss, cache):
        return dloss * loss_fn(*cache)[1], None

    forward.__name__ = getattr(loss_fn, "__name__", "loss")
    return check_op(forward, backward, (logits, labels), rtol=rtol, atol=atol, mode=mode,
                    seed=seed, max_full=max_full, step=step)


def check_module(module, x, *, rtol=RTOL, atol=None, mode="auto", seed=0, max_full=MAX_FULL,
                 step=STEP):
    """Check ``module.backward`` for ``dx`` and every named parameter, in the module's
    current train/eval mode. Buffers (running statistics) are restored before every
    forward and at the end, as are the parameters' ``.grad``: the module is left as found.
    A module that is not float64 is checked on a float64 copy (with a GradcheckWarning)."""
    rng, x = _rng(seed, mode), _promote("x", x)
    if any(p.data.dtype != np.float64 for p in module.parameters()):
        warnings.warn(f"check_module: {type(module).__name__} has non-float64 parameters; "
                      "checking a float64 copy", GradcheckWarning, stacklevel=2)
        module = copy.deepcopy(module).double()
    params = list(module.named_parameters())
    state = module.state_dict()
    buffers = {k: v for k, v in state.items() if k not in dict(params)}
    grads_before = [p.grad.copy() for _, p in params]
    try:
        x_before = _fingerprint(x)
        module.zero_grad()
        y = module(x)
        dy = backend.array_module(y).asarray(rng.standard_normal(y.shape))
        dy_before, dy_pristine = _fingerprint(dy), dy.copy()
        dx = module.backward(dy)
        problems = [what for what, was, now in (("backward modified dy", dy_before, dy),
                    ("forward or backward modified x", x_before, x)) if was != _fingerprint(now)]
        targets = _align(["x"], [x], [dx], problems)
        targets += [(n, p.data, backend.asnumpy(p.grad).astype(np.float64)) for n, p in params]
        problems += _accumulation_problems(module, x, dy_pristine, params, state)

        def output():
            module.load_state_dict({**{n: p.data for n, p in params}, **buffers})
            return module(x)

        checks = _compare(output, dy, y, targets, rng, rtol=rtol, atol=atol, mode=mode,
                          max_full=max_full, step=step)
    finally:
        module.load_state_dict(state)
        for (_, p), g in zip(params, grads_before):
            p.grad[...] = g
    title = f"{type(module).__name__} ({'train' if module.training else 'eval'})"
    return GradcheckReport(title, checks, problems, rtol)


def _accumulation_problems(module, x, dy, params, state):
    """A second backward without zero_grad must DOUBLE every .grad: modules add (+=) into
    p.grad, so that a parameter used twice, or gradients summed over micro-batches, come out
    right. A backward that assigns (=) passes every numerical check, so test it here."""
    first = [p.grad.copy() for _, p in params]
    module.load_state_dict(state)
    module(x)
    module.backward(dy)
    return [f"backward did not accumulate into {n}.grad (it must add, +=, not assign)"
            for (n, p), g in zip(params, first)
            if not np.allclose(backend.asnumpy(p.grad), 2 * backend.asnumpy(g), rtol=1e-9, atol=1e-300)]


# --- the engine ------------------------------------------------------------------------
def _compare(output, dout, out, targets, rng, **opts):
    """An ArgCheck per (name, array, analytic grad) target, for L = sum(dout * output())."""
    xp = backend.array_module(out)

    def loss():
        return backend.scalar(xp.sum(dout * output()))

    f0 = loss()
    fscale = abs(f0) + backend.scalar(xp.sqrt(xp.sum((dout * out) ** 2)))
    return [g if isinstance(g, ArgCheck) else _check_var(loss, f0, n, a, g, rng, fscale=fscale, **opts)
            for n, a, g in targets]


def _check_var(loss, f0, name, data, grad, rng, *, rtol, atol, mode, max_full, step, fscale):
    """Compare the analytic ``grad`` of ``loss`` w.r.t. ``data`` (perturbed in place)."""
    n, flat, xp = grad.size, grad.reshape(-1), backend.array_module(data)
    full = mode == "full" or (mode == "auto" and n <= max_full)
    h = step * max(1.0, float(np.abs(backend.asnumpy(data)).max(initial=0.0)))
    atol = _NOISE * fscale / h if atol is None else atol
    floor = max(FLOOR * float(np.abs(grad).max(initial=0.0)), atol / rtol, 1e-300)

    def slopes(support, signs, hh):
        idx = tuple(xp.asarray(i) for i in np.unravel_index(support, data.shape))
        orig, s = data[idx].copy(), xp.asarray(signs)
        data[idx] = orig + hh * s
        fp = loss()
        data[idx] = orig - hh * s
        fm = loss()
        data[idx] = orig
        return (fp - fm) / (2 * hh), abs((fp - f0) - (f0 - fm)) / hh

    def judge(support, signs):
        """(a, c, scale) along the probe, or None where it straddles a kink. The scale is the
        largest term |a_j d_j|, not the sum, in which one wrong entry would be diluted."""
        a, big, gaps = float(flat[support] @ signs), float(np.abs(flat[support]).max()), []
        for hh in (h, h / 10):
            c, gap = slopes(support, signs, hh)
            scale = max(big, abs(c) / np.sqrt(support.size), floor)
            if gap <= rtol * scale or (gaps and gap <= 0.2 * gaps[0]):
                return a, c, scale
            gaps.append(gap)
        return None

    if full:
        probes = [(np.array([j]), np.ones(1)) for j in range(n)]
    else:
        probes = [(np.arange(n), rng.choice([-1.0, 1.0], n)) for _ in range(N_DENSE)]
        probes += [(b, rng.choice([-1.0, 1.0], b.size))
                   for b in np.array_split(rng.permutation(n), min(n, MAX_BLOCKS))]
    check = ArgCheck(name, tuple(grad.shape), "full" if full else f"dir/{len(probes)}")
    worst_block = None
    for k, (support, signs) in enumerate(probes):
        res = judge(support, signs)
        check.n_excluded += res is None
        if res is None:
            continue
        check.n_checked += 1
        err = abs(res[0] - res[1])
        rel = err / res[2]
        check.max_abs_err = max(check.max_abs_err, err)
        if rel > check.max_rel_err and full:
            check.index = tuple(int(i) for i in np.unravel_index(support[0], grad.shape))
        if not full and k >= N_DENSE and rel > rtol and (worst_block is None or rel >= worst_block[0]):
            worst_block = (rel, support, signs)
        check.max_rel_err = max(check.max_rel_err, rel)
    check.ok = check.max_rel_err <= rtol
    if check.n_checked == 0 and n > 0:
        check.ok, check.note = False, "every probe straddles a kink: nothing was checked"
    elif worst_block is not None:
        check.index = _bisect(worst_block[1], worst_block[2], flat, slopes, h, grad.shape)
    if check.n_excluded and not check.note:
        check.note = f"{check.n_excluded} probe(s) at a kink excluded"
    return check


def _bisect(support, signs, flat, slopes, h, shape):
    """Halve a failing block, keeping the half with the larger absolute error."""
    while support.size > 1:
        halves = [(support[:support.size // 2], signs[:support.size // 2]),
                  (support[support.size // 2:], signs[support.size // 2:])]
        errs = [abs(float(flat[s] @ g) - slopes(s, g, h)[0]) for s, g in halves]
        support, signs = halves[int(np.argmax(errs))]
    return tuple(int(i) for i in np.unravel_index(support[0], shape))


# --- plumbing --------------------------------------------------------------------------
def _rng(seed, mode):
    if mode not in ("auto", "full", "directional"):
        raise ValueError(f"gradcheck(mode): got {mode!r}, expected 'auto', 'full' or 'directional'")
    return checker_rng(seed)


def checker_rng(seed):
    """The generator behind the random upstream gradient (its first draw) and the probes.

    A private stream: with a bare default_rng(seed), a user who drew the inputs from
    default_rng(0) would get an upstream gradient equal to them (dy = x), which makes
    dy.T @ x symmetric and lets a transposed weight gradient pass."""
    return np.random.default_rng([seed, 0x67726164])


def _arg_names(fn, count):
    try:
        params = list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):  # a builtin without a signature
        params = []
    return [params[i] if i < len(params) else f"arg{i}" for i in range(count)]


def _is_float_array(a):
    return hasattr(a, "dtype") and hasattr(a, "shape") and a.dtype.kind == "f"


def _promote(name, a):
    """A float64 copy of a floating array (so perturbations never touch the caller's)."""
    if not _is_float_array(a):
        return a
    if a.dtype != np.float64:
        warnings.warn(f"gradcheck: {name} is {a.dtype}; promoted to float64 (finite differences "
                      "in single precision cannot resolve 0.1% errors)", GradcheckWarning, stacklevel=3)
    return backend.array_module(a).array(a, dtype=np.float64)


def _align(names, args, grads, problems):
    """[(name, array, analytic grad as float64 numpy or a failed ArgCheck)] for float args."""
    grads = tuple(grads) if isinstance(grads, (tuple, list)) else (grads,)
    if len(grads) != len(args):
        problems.append(f"backward returned {len(grads)} gradient(s) for {len(args)} argument(s)")
        grads = grads + (None,) * (len(args) - len(grads))
    targets = []
    for name, a, g in zip(names, args, grads):
        if _is_float_array(a):
            if g is None or tuple(np.shape(g)) != tuple(a.shape):
                what = "None" if g is None else f"shape {tuple(np.shape(g))}"
                targets.append((name, a, ArgCheck(name, tuple(a.shape), ok=False, note=(
                    f"backward returned {what}, expected shape {tuple(a.shape)}"))))
            else:
                targets.append((name, a, backend.asnumpy(g).astype(np.float64)))
        elif a is None and g is not None:
            problems.append(f"{name} is None but backward returned a gradient for it")
    return targets


def _fingerprint(obj):
    """Bytes that change when any array inside ``obj`` (nested tuples, lists, dicts) changes."""
    if hasattr(obj, "shape") and hasattr(obj, "dtype"):
        a = backend.asnumpy(obj)
        return repr((a.shape, a.dtype.str)).encode() + np.ascontiguousarray(a).tobytes()
    if isinstance(obj, dict):
        obj = list(obj.items())
    if isinstance(obj, (tuple, list)):
        return b"(" + b",".join(_fingerprint(o) for o in obj) + b")"
    return repr(obj).encode()
