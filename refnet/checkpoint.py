"""Checkpoints and other files, written atomically and read without pickle.

A checkpoint is ONE ``.npz`` file: every array (model parameters and buffers, optimizer
state, whatever the caller adds) under a slash-separated key, plus the JSON metadata
(step, epoch, RNG state, optimizer hyperparameters, ...) as UTF-8 bytes under the key
``"__meta__"``. One file, so arrays and metadata can never come from different saves.
It is read with ``np.load(..., allow_pickle=False)``: a checkpoint from someone else can
hold numbers and text only, never code.

Writes go to a temporary file in the target directory, are flushed to disk and then
renamed over the target (``os.replace`` is atomic on POSIX and Windows), so a crash or an
exception mid-save leaves the previous file untouched and no partial file behind.
"""

import io
import json
import math
import os
import tempfile

import numpy as np

from refnet import backend
from refnet.optim import flatten_state_dict, unflatten_state_dict

META_KEY = "__meta__"
FORMAT = "refnet-checkpoint-1"


def atomic_write(path, write):
    """Call ``write(fileobj)`` on a temporary file beside ``path``, then rename it to ``path``."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file open()'s usual mode
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def json_safe(x):
    """``x`` with numpy numbers as Python numbers, tuples as lists, NaN/inf as None (not JSON)."""
    if isinstance(x, dict):
        return {str(k): json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    if isinstance(x, (bool, str, np.bool_)) or x is None:
        return bool(x) if isinstance(x, np.bool_) else x
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    return str(x)


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path, obj):
    """Atomically write ``obj`` as indented JSON (NaN/inf are refused: they are not JSON)."""
    text = json.dumps(obj, indent=1, allow_nan=False) + "\n"
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def write_npz(path, arrays, meta=None):
    """Atomically write ``{key: array}`` (host copies) and optional JSON ``meta`` as one .npz."""
    if META_KEY in arrays:
        raise ValueError(f"write_npz(arrays): the key {META_KEY!r} is reserved for the metadata")
    payload = {k: backend.asnumpy(v) for k, v in arrays.items()}
    if meta is not None:
        text = json.dumps(meta, allow_nan=False)
        payload[META_KEY] = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)

    def write(f):
        buf = io.BytesIO()  # np.savez seeks; write the finished zip in one go
        np.savez(buf, **payload)
        f.write(buf.getbuffer())

    return atomic_write(path, write)


def read_npz(path):
    """``(arrays, meta)`` from a file written by ``write_npz`` (meta is None if absent)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"read_npz(path): no file at {path!r}")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except ValueError as err:
        raise ValueError(f"read_npz(path): {path!r} is not a readable .npz without pickle: {err}") from err
    raw = arrays.pop(META_KEY, None)
    meta = None if raw is None else json.loads(raw.tobytes().decode("utf-8"))
    return arrays, meta


# --- whole checkpoints --------------------------------------------------------------------
def save_checkpoint(path, model, optimizer, meta, arrays=None):
    """Write model state, optimizer state, ``arrays`` and JSON ``meta`` atomically to ``path``."""
    payload = {f"model/{k}": v for k, v in model.state_dict().items()}
    opt_arrays, opt_meta = flatten_state_dict(optimizer.state_dict())
    payload.update({f"optim/{k}": v for k, v in opt_arrays.items()})
    for k, v in (arrays or {}).items():
        if k in payload:
            raise ValueError(f"save_checkpoint(arrays): key {k!r} clashes with model/optimizer state")
        payload[k] = v
    full_meta = {"format": FORMAT, "optimizer": opt_meta, **meta}
    return write_npz(path, payload, full_meta)


def load_checkpoint(path, model, optimizer):
    """Restore ``model`` and ``optimizer`` from ``path``; return ``(meta, other arrays)``."""
    arrays, meta = read_npz(path)
    if meta is None or meta.get("format") != FORMAT:
        found = None if meta is None else meta.get("format")
        raise ValueError(f"load_checkpoint(path): {os.fspath(path)!r} has format {found!r}, "
                         f"expected {FORMAT!r}")
    model.load_state_dict(_strip(arrays, "model/"))
    optimizer.load_state_dict(unflatten_state_dict(_strip(arrays, "optim/"), meta["optimizer"]))
    rest = {k: v for k, v in arrays.items() if not k.startswith(("model/", "optim/"))}
    return meta, rest


def _strip(arrays, prefix):
    return {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}
