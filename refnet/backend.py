"""The one place that knows NumPy from CuPy.

Ops never ask "are we on the GPU?": they take the array module from their inputs,

    xp = array_module(x, w)      # numpy for numpy arrays, cupy for cupy arrays

and call ``xp.matmul``, ``xp.maximum``... as Chainer's ``get_array_module`` did.
Only *creating* arrays (parameters, data batches) needs a default device: that is
``use("numpy" | "cupy")``, read back by ``default_module()``.

CuPy is imported lazily and only here, so refnet imports (and its CPU tests run)
without it.
"""

import numpy as np

_DEVICES = {"numpy": "numpy", "cpu": "numpy", "cupy": "cupy", "gpu": "cupy"}
_default = "numpy"


def _cupy():
    """Return the cupy module, or None when it cannot be imported."""
    try:
        import cupy
    except Exception:
        return None
    return cupy


def gpu_status():
    """Return ``(usable, reason)``: whether CuPy can run arrays on a device, and why not."""
    cupy = _cupy()
    if cupy is None:
        return False, "cupy is not installed (pip install 'refnet[gpu]' or a cupy-cudaXXx wheel)"
    try:
        # cupy imports fine without a GPU; only touching a device fails.
        available = cupy.is_available()
    except Exception as err:  # broken CUDA install
        return False, f"cupy is installed but CUDA failed: {err}"
    if not available:
        return False, "cupy is installed but sees no CUDA device"
    return True, "ok"


def cupy_version():
    """CuPy's version string, or None when it cannot be imported (for reports)."""
    cupy = _cupy()
    return None if cupy is None else cupy.__version__


def gpu_available():
    """True when CuPy is installed and sees a CUDA device."""
    return gpu_status()[0]


def use(name):
    """Choose where new arrays are created: ``"numpy"``/``"cpu"`` or ``"cupy"``/``"gpu"``.

    Raises RuntimeError, saying why, when the GPU is asked for but not usable.
    """
    global _default
    if name not in _DEVICES:
        raise ValueError(f"use(name): got {name!r}, expected one of {sorted(_DEVICES)}")
    name = _DEVICES[name]
    if name == "cupy":
        ok, why = gpu_status()
        if not ok:
            raise RuntimeError(f"cannot use the GPU: {why}")
    _default = name
    return default_module()


def default_name():
    """``"numpy"`` or ``"cupy"``: the module new arrays are created with."""
    return _default


def default_module():
    """The array module (numpy or cupy) new arrays are created with."""
    return _cupy() if _default == "cupy" else np


def is_cupy_array(x):
    """True for a cupy.ndarray (without importing cupy when it is not loaded)."""
    return type(x).__module__.startswith("cupy")


def array_module(*arrays):
    """numpy, or cupy if any of ``arrays`` is a cupy array (None entries are ignored)."""
    for a in arrays:
        if a is not None and is_cupy_array(a):
            return _cupy()
    return np


def asnumpy(x):
    """A numpy array with the values of ``x`` (copied off the GPU when needed)."""
    if is_cupy_array(x):
        return x.get()
    return np.asarray(x)


def to_device(x, device=None):
    """``x`` as an array of ``device`` (``"numpy"``/``"cupy"``; default: the current one)."""
    name = _DEVICES.get(device or _default)
    if name is None:
        raise ValueError(f"to_device(device): got {device!r}, expected one of {sorted(_DEVICES)}")
    if name == "cupy":
        ok, why = gpu_status()
        if not ok:
            raise RuntimeError(f"cannot move arrays to the GPU: {why}")
        return _cupy().asarray(x)
    return asnumpy(x)


def scalar(x):
    """A Python float from a 0-d array of either module (synchronizes on the GPU)."""
    return float(asnumpy(x))
