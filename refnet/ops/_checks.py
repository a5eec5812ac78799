"""Input validation shared by the ops: every message names the argument, what it got and
what was expected, because a silently broadcast shape is the hardest bug to find."""


def check_ndim(name, x, ndims, op):
    """Raise ValueError unless ``x.ndim`` is in ``ndims`` (an int or a tuple of ints)."""
    ndims = (ndims,) if isinstance(ndims, int) else tuple(ndims)
    if not hasattr(x, "ndim"):
        raise TypeError(f"{op}({name}): got {type(x).__name__}, expected an array")
    if x.ndim not in ndims:
        want = " or ".join(str(n) for n in ndims)
        raise ValueError(f"{op}({name}): got an array of rank {x.ndim} with shape {tuple(x.shape)}, "
                         f"expected rank {want}")


def check_shape(name, x, expected, op):
    """Raise ValueError unless ``x.shape == expected``."""
    if tuple(x.shape) != tuple(expected):
        raise ValueError(f"{op}({name}): got shape {tuple(x.shape)}, expected {tuple(expected)}")


def check_float(name, x, op):
    """Raise TypeError unless ``x`` holds floating-point numbers."""
    if getattr(x, "dtype", None) is None or x.dtype.kind != "f":
        raise TypeError(f"{op}({name}): got dtype {getattr(x, 'dtype', type(x).__name__)}, "
                        f"expected float32 or float64")


def check_int(name, value, op, minimum=0):
    """Raise ValueError unless ``value`` is an integer >= ``minimum``; return it as int."""
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise TypeError(f"{op}({name}): got {value!r}, expected an integer >= {minimum}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{op}({name}): got {value}, expected an integer >= {minimum}")
    return value


def pair(name, value, op, minimum=0):
    """``value`` as a pair of ints (an int k means (k, k)), each >= ``minimum``."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{op}({name}): got {value!r}, expected an int or a pair of ints")
        return tuple(check_int(name, v, op, minimum) for v in value)
    v = check_int(name, value, op, minimum)
    return v, v


def check_dtype(name, a, like_name, like, op):
    """Raise TypeError unless ``a`` (None is fine) has the dtype of ``like`` (an array or a
    dtype): mixed float dtypes are never promoted, since a float64 parameter would silently
    turn a float32 network float64 (twice the memory and time) and a float32 one would round
    a gradient check."""
    want = getattr(like, "dtype", like)
    if a is not None and getattr(a, "dtype", None) != want:
        got = getattr(a, "dtype", type(a).__name__)
        raise TypeError(f"{op}({name}): got dtype {got}, expected {want} (the dtype of {like_name}); "
                        f"mixed float dtypes are not promoted: cast it with .astype({str(want)!r}) "
                        f"(a module: .double() or .float())")


def check_module_dtype(module, x, params):
    """Raise TypeError unless input ``x`` has the dtype of the module's parameter arrays
    ``params`` (Nones skipped), naming the module and the conversion that fixes it."""
    want = next((p.dtype for p in params if p is not None), None)
    got = getattr(x, "dtype", None)
    if want is None or got is None or got == want:
        return
    fix = {"float64": ".double()", "float32": ".float()"}.get(str(got))
    hint = (f"convert the module with {fix} or the input with .astype({str(want)!r})" if fix
            else f"convert the input with .astype({str(want)!r})")
    raise TypeError(f"{module!r}: input has dtype {got} but the module's parameters are {want}; {hint}")
