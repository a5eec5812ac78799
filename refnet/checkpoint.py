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

A file that cannot be read back -- empty, truncated, random bytes, another format, another
model -- raises ``CheckpointError`` (a ValueError) naming the file and what is wrong.
"""

import io
import json
import math
import os
import tempfile
import zipfile

import numpy as np

import refnet
from refnet import backend
from refnet.optim import flatten_state_dict, unflatten_state_dict

META_KEY = "__meta__"
FORMAT = "refnet-checkpoint-1"
# what np.load and zipfile raise on a damaged file (a bad CRC is a BadZipFile, a short member EOFError)
_DAMAGED = (zipfile.BadZipFile, EOFError, ValueError, OSError, KeyError, UnicodeDecodeError)


class CheckpointError(ValueError):
    """A file is not a readable refnet checkpoint (or not one for this model); the message
    names the file and what is wrong."""


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


def read_npz(path, meta_only=False):
    """``(arrays, meta)`` from a file written by ``write_npz`` (meta is None if absent);
    ``meta_only`` reads the metadata alone (arrays is then ``{}``). Raises FileNotFoundError
    or CheckpointError, naming the file."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"read_npz(path): no file at {path!r}")
    with open(path, "rb") as f:
        head = f.read(4)
    if not head:
        raise CheckpointError(f"{path} is empty (0 bytes)")
    if head not in (b"PK\x03\x04", b"PK\x05\x06"):  # what every zip (so every .npz) starts with
        raise CheckpointError(f"{path} is not an .npz file (it starts with {head!r}, not a zip header)")
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = [k for k in z.files if k == META_KEY] if meta_only else z.files
            arrays = {k: z[k] for k in keys}
        raw = arrays.pop(META_KEY, None)
        meta = None if raw is None else json.loads(raw.tobytes().decode("utf-8"))
    except _DAMAGED as err:
        why = ("holds object arrays, which cannot be read without pickle (refused: a pickle can "
               "run code)" if "pickle" in str(err) else
               f"is truncated or damaged ({type(err).__name__}: {err})")
        raise CheckpointError(f"{path} {why}") from err
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
    full_meta = {"format": FORMAT, "refnet": refnet.__version__, "optimizer": opt_meta, **meta}
    return write_npz(path, payload, full_meta)


def load_checkpoint(path, model, optimizer):
    """Restore ``model`` and ``optimizer`` from ``path``; return ``(meta, other arrays)``.

    Raises CheckpointError when the file is not a checkpoint of this format or holds
    another model's or optimizer's state (then neither is changed)."""
    arrays, meta = read_npz(path)
    check_format(path, meta)
    model_state = _strip(arrays, "model/")
    try:  # every check before anything is loaded; both loads validate before they assign
        difference = _model_difference(model.state_dict(), model_state)
        if difference:
            raise ValueError(difference)
        optimizer.load_state_dict(unflatten_state_dict(_strip(arrays, "optim/"), meta["optimizer"]))
    except (KeyError, ValueError, TypeError, IndexError) as err:
        raise CheckpointError(f"{os.fspath(path)} holds another model's or optimizer's state: "
                              f"{err}") from err
    model.load_state_dict(model_state)
    rest = {k: v for k, v in arrays.items() if not k.startswith(("model/", "optim/"))}
    return meta, rest


def check_format(path, meta):
    """Raise CheckpointError unless ``meta`` (from ``read_npz(path)``) is this refnet's format."""
    found = None if meta is None else meta.get("format")
    if found != FORMAT:
        by = f", written by refnet {meta['refnet']}" if meta and meta.get("refnet") else ""
        raise CheckpointError(f"{os.fspath(path)} has checkpoint format {found!r}{by}; this refnet "
                              f"({refnet.__version__}) reads {FORMAT!r}")


def _model_difference(own, saved):
    """How the arrays ``saved`` differ from the model's ``own`` (None: same names and shapes)."""
    missing, unexpected = sorted(set(own) - set(saved)), sorted(set(saved) - set(own))
    if missing or unexpected:
        return (f"its model has the arrays {sorted(saved)[:4]}..., this one {sorted(own)[:4]}... "
                f"({len(missing)} missing, {len(unexpected)} unexpected)")
    for k in own:
        if tuple(own[k].shape) != tuple(saved[k].shape):
            return f"{k!r} has shape {tuple(saved[k].shape)} there, {tuple(own[k].shape)} in this model"
    return None


def _strip(arrays, prefix):
    return {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}
