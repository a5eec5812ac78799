"""Readers for the on-disk formats of Fashion-MNIST / MNIST (IDX) and CIFAR-10 (binary and
python versions). Offline only: nothing here downloads anything.

Every reader returns raw ``uint8`` images in NCHW and ``int64`` labels, and validates what it
reads (magic numbers, dimensions, sizes, label range), because a truncated download that loads
"successfully" costs a user hours of wondering why training fails.
"""

import gzip
import math
import os
import pickle
from pathlib import Path

import numpy as np

ENV_VAR = "REFNET_DATA"
SYSTEM_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")

IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC = 2051, 2049  # 0x0803: ubyte, 3 dims; 0x0801: ubyte, 1 dim

CIFAR_BIN = ([f"data_batch_{i}.bin" for i in range(1, 6)], ["test_batch.bin"])
CIFAR_PY = ([f"data_batch_{i}" for i in range(1, 6)], ["test_batch"])
CIFAR_RECORD = 1 + 3 * 32 * 32  # one label byte, then 1024 red, 1024 green, 1024 blue bytes

HOW_TO_GET = {
    "fashion-mnist": "install it with `sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu, "
                     f"installs to {SYSTEM_FASHION_MNIST}), or download the four "
                     "*-ubyte.gz files from https://github.com/zalandoresearch/fashion-mnist into a "
                     f"directory and pass --data-dir DIR (or set ${ENV_VAR}=DIR)",
    "mnist": "download train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
             "t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz (http://yann.lecun.com/exdb/mnist/ "
             f"or a mirror) into a directory and pass --data-dir DIR (or set ${ENV_VAR}=DIR)",
    "cifar10": "download cifar-10-binary.tar.gz (or cifar-10-python.tar.gz) from "
               "https://www.cs.toronto.edu/~kriz/cifar.html, extract it into a directory and pass "
               f"--data-dir DIR (or set ${ENV_VAR}=DIR)",
}


class DatasetError(ValueError):
    """A data set is corrupt, incomplete or cannot be read safely."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """A data set is in none of the places refnet looks; the message lists them all."""


# ----------------------------------------------------------------------------- lookup
def candidate_dirs(name, data_dir=None, subdirs=()):
    """Directories to search, in order: ``data_dir`` alone when given (a directory the user
    named must hold the data: silently reading another copy would hide the mistake), else
    ``$REFNET_DATA`` then the system copy (Fashion-MNIST only). Each root is tried as is and
    with each of ``subdirs`` appended, so a root holding several data sets
    (``$REFNET_DATA/fashion-mnist/...``) works too."""
    if data_dir is not None:
        root = Path(data_dir).expanduser()
        if not root.is_dir():
            raise DatasetNotFoundError(f"{name}: the data directory {root} (data_dir, --data-dir) "
                                       f"{'is not a directory' if root.exists() else 'does not exist'}")
        roots = [root]
    else:
        roots = [Path(d).expanduser() for d in (os.environ.get(ENV_VAR),) if d]
        if name == "fashion-mnist":
            roots.append(SYSTEM_FASHION_MNIST)
    out = []
    for root in roots:
        for d in [root] + [root / s for s in subdirs]:
            if d not in out:
                out.append(d)
    return out


def _existing(directory, stem, suffixes):
    for suffix in suffixes:
        if (directory / (stem + suffix)).is_file():
            return directory / (stem + suffix)
    return None


def find_files(name, stems, dirs, suffixes=("",)):
    """Return ``{stem: path}`` from the first directory holding every stem (with any suffix).

    A directory holding only some of them is an error (an interrupted download), not a reason
    to keep looking, since silently taking another copy would hide the problem."""
    for d in dirs:
        found = {s: _existing(d, s, suffixes) for s in stems}
        if all(found.values()):
            return found
        if any(found.values()):
            missing = [s for s, p in found.items() if p is None]
            raise DatasetNotFoundError(f"{name}: {d} holds only part of the data set; missing "
                                       f"{', '.join(missing)}. To get it: {HOW_TO_GET[name]}.")
    looked = "\n  ".join(str(d) for d in dirs) or f"(nowhere: no --data-dir given and ${ENV_VAR} unset)"
    raise DatasetNotFoundError(f"{name}: could not find {', '.join(s + suffixes[0] for s in stems)}. "
                               f"Looked in:\n  {looked}\nTo get it: {HOW_TO_GET[name]}.")


# ----------------------------------------------------------------------------- IDX
def read_bytes(path):
    """The contents of ``path``, gunzipped when it starts with the gzip magic (whatever its name)."""
    raw = Path(path).read_bytes()
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, ValueError) as err:  # BadGzipFile, truncated stream, bad CRC
        raise DatasetError(f"{path}: corrupt gzip file ({err}); delete it and download it again") from err


def read_idx(path, magic):
    """Parse an unsigned-byte IDX file; return a ``uint8`` array of the dimensions in its header."""
    buf = read_bytes(path)
    if len(buf) < 4:
        raise DatasetError(f"{path}: {len(buf)} bytes, too short to be an IDX file")
    got = int.from_bytes(buf[:4], "big")
    if got != magic:
        raise DatasetError(f"{path}: magic number {got}, expected {magic} "
                           f"({'images' if magic == IDX_IMAGES_MAGIC else 'labels'} IDX file)")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(buf) < header:
        raise DatasetError(f"{path}: truncated header ({len(buf)} bytes, expected {header})")
    dims = tuple(int.from_bytes(buf[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = header + math.prod(dims)  # python ints: a corrupt header cannot overflow
    if len(buf) != expected:
        raise DatasetError(f"{path}: {len(buf)} bytes, expected {expected} for dimensions {dims} "
                           f"({'truncated' if len(buf) < expected else 'trailing data'})")
    return np.frombuffer(buf, dtype=np.uint8, offset=header).reshape(dims)


def _check_labels(labels, num_classes, where):
    if labels.size and int(labels.max()) >= num_classes:
        raise DatasetError(f"{where}: label {int(labels.max())} out of range, expected 0..{num_classes - 1}")


def load_idx_pair(images_path, labels_path, num_classes=10):
    """Images ``(N, 1, H, W) uint8`` and labels ``(N,) int64`` from one IDX image/label pair."""
    images = read_idx(images_path, IDX_IMAGES_MAGIC)
    labels = read_idx(labels_path, IDX_LABELS_MAGIC)
    if len(images) != len(labels):
        raise DatasetError(f"{images_path} holds {len(images)} images but {labels_path} holds "
                           f"{len(labels)} labels")
    _check_labels(labels, num_classes, labels_path)
    return images[:, None, :, :], labels.astype(np.int64)


def _find_idx(name, data_dir):
    stems = [s for split in ("train", "test") for s in IDX_FILES[split]]
    return stems, find_files(name, stems, candidate_dirs(name, data_dir, (name,)), (".gz", ""))


def load_idx_dataset(name, data_dir=None):
    """``(x_train, y_train, x_test, y_test, source_dir)`` for an IDX data set (raw uint8)."""
    stems, found = _find_idx(name, data_dir)
    x_tr, y_tr = load_idx_pair(*(found[s] for s in IDX_FILES["train"]))
    x_te, y_te = load_idx_pair(*(found[s] for s in IDX_FILES["test"]))
    if x_tr.shape[1:] != x_te.shape[1:]:
        raise DatasetError(f"{name}: train images are {x_tr.shape[2:]} but test images are {x_te.shape[2:]}")
    return x_tr, y_tr, x_te, y_te, str(found[stems[0]].parent)


# ----------------------------------------------------------------------------- CIFAR-10
def read_cifar_bin(path):
    """One CIFAR-10 binary batch: records of 1 label byte + 3072 pixel bytes (R, G, B planes)."""
    buf = read_bytes(path)
    if len(buf) == 0 or len(buf) % CIFAR_RECORD:
        raise DatasetError(f"{path}: {len(buf)} bytes is not a whole number of {CIFAR_RECORD}-byte "
                           f"CIFAR-10 records (truncated or not a CIFAR-10 binary batch)")
    records = np.frombuffer(buf, dtype=np.uint8).reshape(-1, CIFAR_RECORD)
    labels = records[:, 0].astype(np.int64)
    _check_labels(labels, 10, path)
    return records[:, 1:].reshape(-1, 3, 32, 32), labels


# numpy needs these globals to rebuild arrays and dtypes from a pickle (numpy 1 names them
# numpy.core.*, numpy 2 numpy._core.*; either may appear in a file written by either version).
try:
    from numpy._core import multiarray as _multiarray, numeric as _numeric
except ImportError:  # numpy 1.x
    from numpy.core import multiarray as _multiarray, numeric as _numeric

_SAFE_GLOBALS = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
                 # protocol <= 2 pickles from Python 3 spell bytes as _codecs.encode(str, "latin1")
                 ("_codecs", "encode"): __import__("codecs").encode}
for _core in ("numpy.core", "numpy._core"):
    _SAFE_GLOBALS[(_core + ".multiarray", "_reconstruct")] = _multiarray._reconstruct
    _SAFE_GLOBALS[(_core + ".multiarray", "scalar")] = _multiarray.scalar
    _SAFE_GLOBALS[(_core + ".numeric", "_frombuffer")] = _numeric._frombuffer
for _builtins in ("builtins", "__builtin__"):  # __builtin__: pickles written by Python 2
    for _t in (dict, list, tuple, set, frozenset, bytes, bytearray, str, int, float, complex, bool):
        _SAFE_GLOBALS[(_builtins, _t.__name__)] = _t


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that can rebuild only containers, strings, numbers and numpy arrays.

    Why: a pickle is a program. Its GLOBAL/REDUCE opcodes import any callable and call it, so
    ``pickle.load`` on a file from a stranger can run ``os.system(...)``. CIFAR-10's python
    version is pickled, and a user's "cifar-10-batches-py" may come from anywhere, so every
    global a pickle asks for is looked up in a fixed allow-list of harmless constructors;
    anything else is refused before it is imported, let alone called."""

    def find_class(self, module, name):
        try:
            return _SAFE_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load global {module}.{name}: only dicts, lists, bytes, strings, "
                f"numbers and numpy arrays are allowed") from None


def safe_unpickle(path):
    """Unpickle ``path`` with :class:`RestrictedUnpickler` (``encoding="bytes"``, as CIFAR's
    Python 2 pickles need)."""
    try:
        with open(path, "rb") as f:
            return RestrictedUnpickler(f, encoding="bytes").load()
    except pickle.UnpicklingError as err:
        raise DatasetError(f"{path}: unsafe or corrupt pickle: {err}") from err
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            UnicodeDecodeError, MemoryError) as err:
        raise DatasetError(f"{path}: corrupt pickle ({type(err).__name__}: {err})") from err


def read_cifar_py(path):
    """One CIFAR-10 python batch: a pickled dict with ``data`` (N, 3072) uint8 and ``labels``."""
    batch = safe_unpickle(path)
    if not isinstance(batch, dict):
        raise DatasetError(f"{path}: expected a pickled dict, got {type(batch).__name__}")
    get = lambda key: batch.get(key.encode(), batch.get(key))  # noqa: E731 (bytes or str keys)
    data, labels = get("data"), get("labels")
    if not isinstance(data, np.ndarray) or labels is None:
        raise DatasetError(f"{path}: expected keys b'data' (a numpy array) and b'labels'; "
                           f"got keys {sorted(map(repr, batch))}")
    labels = np.asarray(labels)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != CIFAR_RECORD - 1:
        raise DatasetError(f"{path}: data has shape {data.shape} and dtype {data.dtype}, "
                           f"expected (N, {CIFAR_RECORD - 1}) uint8")
    if labels.shape != (len(data),) or labels.dtype.kind not in "iu":
        raise DatasetError(f"{path}: labels have shape {labels.shape} and dtype {labels.dtype}, "
                           f"expected ({len(data)},) integers")
    if labels.size and int(labels.min()) < 0:
        raise DatasetError(f"{path}: negative label {int(labels.min())}")
    _check_labels(labels, 10, path)
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def load_cifar10(data_dir=None):
    """``(x_train, y_train, x_test, y_test, source_dir)`` for CIFAR-10 (raw uint8, NCHW).

    The binary version is preferred; the python version is read through the restricted
    unpickler."""
    found, read, stems = _find_cifar10(data_dir)
    train = [read(found[s]) for s in stems[0]]
    x_te, y_te = read(found[stems[1][0]])
    x_tr = np.concatenate([x for x, _ in train])
    y_tr = np.concatenate([y for _, y in train])
    return x_tr, y_tr, x_te, y_te, str(found[stems[1][0]].parent)


def _find_cifar10(data_dir):
    dirs = candidate_dirs("cifar10", data_dir, ("cifar-10-batches-bin", "cifar-10-batches-py", "cifar10"))
    (train_bin, test_bin), (train_py, test_py) = CIFAR_BIN, CIFAR_PY
    for d in dirs:  # the python version only where the binary one is absent from d entirely
        if any((d / s).is_file() for s in train_bin + test_bin):
            found, read, stems = find_files("cifar10", train_bin + test_bin, [d]), read_cifar_bin, CIFAR_BIN
            break
        if any((d / s).is_file() for s in train_py + test_py):
            found, read, stems = find_files("cifar10", train_py + test_py, [d]), read_cifar_py, CIFAR_PY
            break
    else:
        find_files("cifar10", train_bin + test_bin, dirs)  # raises, listing every directory
    return found, read, stems


def locate(name, data_dir=None):
    """The directory ``load_idx_dataset``/``load_cifar10`` would read ``name`` from, found
    without reading the files (a quick check before long work); raises as they do."""
    if name == "cifar10":
        found, _, stems = _find_cifar10(data_dir)
        return str(found[stems[1][0]].parent)
    stems, found = _find_idx(name, data_dir)
    return str(found[stems[0]].parent)
