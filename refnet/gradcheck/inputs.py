"""What a check accepts: argument validation with clear errors, promotion to float64,
fingerprints (did backward modify something?) and the checker's private random stream."""

import inspect
import math
import warnings

import numpy as np

from refnet import backend
from refnet.gradcheck.report import GradcheckWarning

MODES = ("auto", "full", "directional", "fast")


def checker_rng(seed):
    """The generator behind the random upstream gradient (its first draw) and the probes.

    A private stream: with a bare default_rng(seed), a user who drew the inputs from
    default_rng(0) would get an upstream gradient equal to them (dy = x), which makes
    dy.T @ x symmetric and lets a transposed weight gradient pass."""
    return np.random.default_rng([seed, 0x67726164])


def callable_(where, name, fn):
    if not callable(fn):
        raise TypeError(f"{where}({name}): got {type(fn).__name__}, expected a function")


def args_tuple(where, args):
    if not isinstance(args, (tuple, list)):
        raise TypeError(f"{where}(args): got {type(args).__name__}, expected a tuple of forward's "
                        f"positional arguments (for one argument write (x,))")
    return list(args)


def kwargs_dict(where, kwargs):
    if kwargs is not None and not isinstance(kwargs, dict):
        raise TypeError(f"{where}(kwargs): got {type(kwargs).__name__}, expected a dict or None")
    return dict(kwargs or {})


def _number(where, name, value, positive):
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) \
        and math.isfinite(value) and (value > 0 if positive else value >= 0)
    if not ok:
        raise ValueError(f"{where}({name}): got {value!r}, expected a finite number "
                         f"{'> 0' if positive else '>= 0'}")
    return float(value)


def options(where, *, rtol, atol, mode, max_full, step, nondet_tol):
    """The numerical options, checked: a tolerance that is negative or NaN is an error."""
    if mode not in MODES:
        raise ValueError(f"{where}(mode): got {mode!r}, expected one of {', '.join(map(repr, MODES))}")
    if isinstance(max_full, bool) or not isinstance(max_full, (int, np.integer)) or max_full < 0:
        raise ValueError(f"{where}(max_full): got {max_full!r}, expected an integer >= 0")
    return {"rtol": _number(where, "rtol", rtol, True), "atol": _number(where, "atol", atol, False),
            "step": _number(where, "step", step, True), "mode": mode, "max_full": int(max_full),
            "nondet_tol": _number(where, "nondet_tol", nondet_tol, False)}


def seed(where, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{where}(seed): got {value!r}, expected an integer >= 0")
    return int(value)


def real(where, name, a):
    """TypeError for a complex array: its gradient is not what a real check measures."""
    if hasattr(a, "dtype") and a.dtype.kind == "c":
        raise TypeError(f"{where}({name}): got {describe(a)}, expected a real floating-point array "
                        "(complex inputs are not checked)")


def float_output(what, out):
    """TypeError for an output that is not floating point (an integer output has no gradient)."""
    if hasattr(out, "dtype") and out.dtype.kind != "f":
        raise TypeError(f"{what}: got {describe(out)}, expected a floating-point array")


def finite_kwargs(where, kwargs):
    """ValueError naming the keyword of the first non-finite number, array or list of numbers."""
    for key, value in kwargs.items():
        if isinstance(value, (list, tuple)):
            try:
                value = np.asarray(value, dtype=np.float64)
            except (TypeError, ValueError):
                continue  # not numbers: nothing to check
        finite(f"{where}(kwargs[{key!r}])", value)


def arg_names(fn, count):
    try:
        params = list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):  # a builtin without a signature
        params = []
    return [params[i] if i < len(params) else f"arg{i}" for i in range(count)]


def is_float_array(a):
    return hasattr(a, "dtype") and hasattr(a, "shape") and a.dtype.kind == "f"


def describe(a):
    """What an argument is, in a few words: "float", "list", "int64 array"."""
    if hasattr(a, "dtype") and hasattr(a, "shape"):
        return f"{a.dtype} {'array' if len(a.shape) else 'scalar'}"
    return type(a).__name__


def promote(where, name, a, stacklevel=2):
    """A float64 copy of a floating array (so perturbations never touch the caller's)."""
    if not is_float_array(a):
        return a
    if a.dtype != np.float64:
        warnings.warn(f"{where}: {name} is {a.dtype}; promoted to float64 (finite differences in "
                      "single precision cannot resolve 0.1% errors)", GradcheckWarning, stacklevel=stacklevel + 1)
    return backend.array_module(a).array(a, dtype=np.float64)


def finite(what, a):
    """ValueError naming ``what`` and the first non-finite entry of a floating array."""
    if not is_float_array(a) and not isinstance(a, (float, np.floating)):
        return
    bad = ~np.isfinite(backend.asnumpy(a))
    if bad.any():
        first = np.argwhere(bad)[0] if np.ndim(bad) else ()
        value = backend.asnumpy(a)[tuple(first)] if np.ndim(bad) else a
        raise ValueError(f"{what}: {value} at index {tuple(int(i) for i in first)} "
                         f"({int(bad.sum())} non-finite entr{'y' if bad.sum() == 1 else 'ies'}); "
                         "a gradient check needs finite values")


def forward_pair(where, forward, args, kwargs):
    """forward(*args, **kwargs), which must return (out, cache) with a finite array out."""
    result = forward(*args, **kwargs)
    name = getattr(forward, "__name__", "forward")
    if not (isinstance(result, tuple) and len(result) == 2):
        got = f"a tuple of {len(result)}" if isinstance(result, tuple) else type(result).__name__
        raise TypeError(f"{where}(forward): {name} returned {got}, expected a pair (out, cache)")
    out = result[0]
    if not (hasattr(out, "shape") and hasattr(out, "dtype") or isinstance(out, (float, np.floating))):
        raise TypeError(f"{where}(forward): {name} returned out of type {type(out).__name__}, "
                        "expected an array (or a float)")
    if hasattr(out, "dtype") and out.dtype.kind != "f":
        raise TypeError(f"{where}(forward): {name} returned out of dtype {out.dtype}, "
                        "expected a floating-point array")
    finite(f"{where}(forward): {name}'s output", out)
    return result


def nondeterminism(what, first, second, tol):
    """Problems for [(name, array)] pairs that differ by more than ``tol`` between two runs."""
    problems = []
    for (name, a), (_, b) in zip(first, second):
        if not (is_float_array(a) and is_float_array(b) and a.shape == b.shape):
            continue  # a missing or misshapen gradient is reported elsewhere
        diff = np.abs(backend.asnumpy(a).astype(np.float64) - backend.asnumpy(b).astype(np.float64))
        if diff.size and diff.max() > tol:
            at = tuple(int(i) for i in np.unravel_index(int(diff.argmax()), diff.shape))
            problems.append(f"{what} is not deterministic: {name!r} differs by {diff.max():.1e} at {at} "
                            f"between two runs on the same inputs (nondet_tol {tol:g})")
    return problems


def fingerprint(obj):
    """Bytes that change when any array inside ``obj`` (nested tuples, lists, dicts) changes."""
    if hasattr(obj, "shape") and hasattr(obj, "dtype"):
        a = backend.asnumpy(obj)
        return repr((a.shape, a.dtype.str)).encode() + np.ascontiguousarray(a).tobytes()
    if isinstance(obj, dict):
        obj = list(obj.items())
    if isinstance(obj, (tuple, list)):
        return b"(" + b",".join(fingerprint(o) for o in obj) + b")"
    return repr(obj).encode()
