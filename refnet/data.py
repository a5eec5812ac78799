"""Data sets and minibatches, offline only.

``load_dataset(name)`` returns a :class:`Dataset`: float32 NCHW images, int64 labels, with
per-channel standardization whose statistics come from the training split alone (using the
test split would leak it into training). Names:

- ``"fashion-mnist"`` (default): IDX files in ``data_dir``, ``$REFNET_DATA`` or
  ``/usr/share/datasets/fashion-mnist`` (``sudo apt-get install dataset-fashion-mnist``);
- ``"mnist"``: the same IDX format, from ``data_dir`` or ``$REFNET_DATA``;
- ``"cifar10"``: the binary or python version, from ``data_dir`` or ``$REFNET_DATA``;
- ``"synthetic"``: :func:`synthetic`, a generated problem of any shape.

Minibatches: :func:`batch_indices` draws exactly one ``rng.permutation`` per epoch, so a
trainer that saves ``rng.bit_generator.state`` at the start of an epoch and the index of the
next batch can resume mid-epoch bit for bit.

File formats and their validation live in :mod:`refnet.datasets_io`.
"""

from dataclasses import dataclass

import numpy as np

from refnet.datasets_io import DatasetError, DatasetNotFoundError, load_cifar10, load_idx_dataset, locate
from refnet.ops._checks import check_int

__all__ = ["Dataset", "DatasetError", "DatasetNotFoundError", "DATASETS", "load_dataset", "locate_dataset",
           "synthetic",
           "balanced_subset", "standardize_stats", "batch_indices", "iterate_minibatches"]

CLASSES = {
    "fashion-mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                      "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    "mnist": tuple("0123456789"),
    "cifar10": ("airplane", "automobile", "bird", "cat", "deer",
                "dog", "frog", "horse", "ship", "truck"),
}
DATASETS = ("fashion-mnist", "mnist", "cifar10", "synthetic")
_ALIASES = {"fmnist": "fashion-mnist", "fashionmnist": "fashion-mnist", "cifar-10": "cifar10"}


@dataclass(repr=False, eq=False)
class Dataset:
    """A train/test split: ``x_*`` float32 ``(N, C, H, W)`` (or ``(N, *shape)``), ``y_*`` int64.

    ``mean`` and ``std`` (float32, one per channel) are what was subtracted and divided, so
    ``x * std[:, None, None] + mean[:, None, None]`` gives back the pixels in [0, 1]."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    name: str
    num_classes: int
    classes: tuple
    mean: np.ndarray
    std: np.ndarray
    source: str = ""  # where the files were read from ("generated" for synthetic)

    @property
    def input_shape(self):
        """The shape of one example, e.g. ``(1, 28, 28)``."""
        return tuple(self.x_train.shape[1:])

    def __repr__(self):
        return (f"Dataset({self.name!r}: train {self.x_train.shape}, test {self.x_test.shape}, "
                f"{self.num_classes} classes, from {self.source or '?'})")


# ----------------------------------------------------------------------------- loading
def load_dataset(name="fashion-mnist", data_dir=None, subset=None, seed=0, standardize=True,
                 test_subset=None, **synthetic_options):
    """Load a data set by name (see the module docstring) and return a :class:`Dataset`.

    subset, test_subset: take a class-balanced subset of this many training / test examples
        (:func:`balanced_subset`, seeded by ``seed``), before standardizing.
    standardize: subtract the per-channel mean and divide by the per-channel std of the
        (subset) training split, from both splits; if False, pixels are only scaled to [0, 1].
    synthetic_options: keyword arguments of :func:`synthetic` (``n_train``, ``shape``...),
        only for ``name="synthetic"``.

    Raises DatasetNotFoundError (a FileNotFoundError) listing every place searched and how
    to get the data, DatasetError (a ValueError) for corrupt files, ValueError for bad args.
    """
    key = canonical_name(name)
    if key == "synthetic":
        data = synthetic(seed=seed, standardize=False, **synthetic_options)
        x_tr, y_tr, x_te, y_te, classes, source = (data.x_train, data.y_train, data.x_test,
                                                    data.y_test, data.classes, data.source)
    else:
        if synthetic_options:
            raise TypeError(f"load_dataset({key!r}): unexpected options {sorted(synthetic_options)} "
                            f"(they are for name='synthetic')")
        loader = load_cifar10 if key == "cifar10" else lambda d: load_idx_dataset(key, d)
        x_tr, y_tr, x_te, y_te, source = loader(data_dir)
        classes = CLASSES[key]
    train_rng, test_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    if subset is not None:
        keep = balanced_subset(y_tr, subset, len(classes), train_rng, "subset")
        x_tr, y_tr = x_tr[keep], y_tr[keep]
    if test_subset is not None:
        keep = balanced_subset(y_te, test_subset, len(classes), test_rng, "test_subset")
        x_te, y_te = x_te[keep], y_te[keep]
    x_tr, x_te = _to_float(x_tr), _to_float(x_te)
    channels = x_tr.shape[1]
    mean, std = (standardize_stats(x_tr) if standardize else
                 (np.zeros(channels, np.float32), np.ones(channels, np.float32)))
    if standardize:
        for x in (x_tr, x_te):
            _apply_standardization(x, mean, std)
    return Dataset(x_tr, y_tr, x_te, y_te, key, len(classes), tuple(classes), mean, std, source)


def locate_dataset(name="fashion-mnist", data_dir=None):
    """The directory ``load_dataset(name, data_dir)`` would read (``"generated"`` for
    synthetic), found without reading the files: a second's check before hours of work.
    Raises as ``load_dataset`` does."""
    key = canonical_name(name)
    return "generated" if key == "synthetic" else locate(key, data_dir)


def canonical_name(name):
    """The name of a data set as in ``DATASETS`` (aliases such as "fmnist" resolved);
    raises ValueError for an unknown one."""
    if not isinstance(name, str):
        raise TypeError(f"load_dataset(name): got {name!r}, expected one of {', '.join(DATASETS)}")
    key = name.strip().lower().replace("_", "-")
    key = _ALIASES.get(key, key)
    if key not in DATASETS:
        raise ValueError(f"load_dataset(name): unknown data set {name!r}; known: {', '.join(DATASETS)}")
    return key


def _to_float(x):
    """float32 copy; raw pixels (uint8) are scaled to [0, 1]."""
    if x.dtype == np.uint8:
        return np.multiply(x, np.float32(1 / 255), dtype=np.float32)
    return np.array(x, dtype=np.float32)  # always a copy: standardizing works in place


def balanced_subset(labels, n, num_classes, rng, what="subset"):
    """Sorted int64 indices of ``n`` examples, ``n // num_classes`` from each class.

    When ``n`` is not a multiple of ``num_classes``, the ``n % num_classes`` leftover examples
    go to that many distinct classes chosen with ``rng``, so no class differs from another by
    more than one example. Raises ValueError when ``n`` exceeds the data, is smaller than the
    number of classes (some class would be absent), or a class has too few examples."""
    n = check_int(what, n, "load_dataset", minimum=1)
    if n > len(labels):
        raise ValueError(f"load_dataset({what}): got {n}, but the split has only {len(labels)} examples")
    if n < num_classes:
        raise ValueError(f"load_dataset({what}): got {n}, expected at least one example per class "
                         f"(>= {num_classes}) for a class-balanced subset")
    quota = np.full(num_classes, n // num_classes)
    quota[rng.choice(num_classes, n % num_classes, replace=False)] += 1
    picks = []
    for c in range(num_classes):
        members = np.flatnonzero(labels == c)
        if len(members) < quota[c]:
            raise ValueError(f"load_dataset({what}): got {n}, which needs {quota[c]} examples of "
                             f"class {c}, but the split has only {len(members)}")
        picks.append(rng.permutation(members)[:quota[c]])
    return np.sort(np.concatenate(picks)).astype(np.int64)


def standardize_stats(x, chunk=4096):
    """Per-channel (axis 1) mean and std of ``x`` as float32, accumulated in float64 chunks
    (a float32 sum over 47M pixels drifts; a float64 copy of all of them costs 376 MB).
    A constant channel gets std 1, so standardizing leaves it at 0 instead of dividing by 0."""
    axes = (0,) + tuple(range(2, x.ndim))
    count = x.size // x.shape[1]
    total = sum(x[i:i + chunk].sum(axis=axes, dtype=np.float64) for i in range(0, len(x), chunk))
    mean = total / count
    shape = (1, -1) + (1,) * (x.ndim - 2)
    sq = sum(np.square(x[i:i + chunk] - mean.reshape(shape)).sum(axis=axes)
             for i in range(0, len(x), chunk))
    std = np.sqrt(sq / count)
    std[std == 0] = 1.0
    return mean.astype(np.float32), std.astype(np.float32)


def _apply_standardization(x, mean, std):
    shape = (1, -1) + (1,) * (x.ndim - 2)
    x -= mean.reshape(shape)
    x /= std.reshape(shape)


# ----------------------------------------------------------------------------- synthetic
def synthetic(n_train=2000, n_test=1000, shape=(1, 28, 28), num_classes=10, seed=0, noise=0.3,
              standardize=True):
    """A seeded classification problem of any input ``shape``, for tests and users without data.

    Each class ``k`` has a random template ``t_k`` (unit RMS, white). An example of class
    ``y`` is ``x = t_y + noise * (sum_k c_k t_k + e)`` with ``c_k ~ N(0, 1)`` and white
    ``e ~ N(0, I)``: the ``c`` term moves examples toward other classes' templates, so classes
    overlap and accuracy saturates below 100% (with 10 classes and 5000 training examples a
    nearest-class-mean rule scores about 94% at the default ``noise=0.3``, 67% at 0.5,
    99.9% at 0.2); the ``e`` term makes every pixel noisy. Classes are balanced
    (``n % num_classes`` of them get one extra example). The test split is drawn from its own
    stream, so it does not change with ``n_train``."""
    op = "synthetic"
    n_train = check_int("n_train", n_train, op, minimum=1)
    n_test = check_int("n_test", n_test, op, minimum=1)
    num_classes = check_int("num_classes", num_classes, op, minimum=2)
    if isinstance(shape, (int, np.integer)):
        shape = (shape,)
    shape = tuple(check_int("shape", s, op, minimum=1) for s in shape)
    if not shape:
        raise ValueError(f"{op}(shape): got (), expected at least one dimension, e.g. (1, 28, 28)")
    if not (np.isfinite(noise) and noise >= 0):
        raise ValueError(f"{op}(noise): got {noise!r}, expected a finite number >= 0")
    t_seq, tr_seq, te_seq = np.random.SeedSequence(seed).spawn(3)
    templates = np.random.default_rng(t_seq).standard_normal((num_classes, int(np.prod(shape))))
    templates /= np.sqrt(np.mean(templates ** 2, axis=1, keepdims=True))

    def draw(n, seq):
        rng = np.random.default_rng(seq)
        y = rng.permutation(np.arange(n) % num_classes).astype(np.int64)
        mix = rng.standard_normal((n, num_classes)) @ templates
        x = templates[y] + noise * (mix + rng.standard_normal(mix.shape))
        return x.astype(np.float32).reshape((n,) + shape), y

    (x_tr, y_tr), (x_te, y_te) = draw(n_train, tr_seq), draw(n_test, te_seq)
    channels = shape[0]
    mean, std = np.zeros(channels, np.float32), np.ones(channels, np.float32)
    if standardize:
        mean, std = standardize_stats(x_tr)
        for x in (x_tr, x_te):
            _apply_standardization(x, mean, std)
    classes = tuple(str(k) for k in range(num_classes))
    return Dataset(x_tr, y_tr, x_te, y_te, "synthetic", num_classes, classes, mean, std, "generated")


# ----------------------------------------------------------------------------- minibatches
def batch_indices(n, batch_size, rng, shuffle=True, drop_last=False):
    """One epoch of minibatches: a list of int64 index arrays covering ``range(n)`` once.

    Shuffling draws exactly one ``rng.permutation(n)`` (and nothing else; with
    ``shuffle=False`` the rng is untouched and may be None), so the rng state at the start of
    an epoch plus a batch number pins down every remaining batch. ``drop_last`` drops a final
    batch smaller than ``batch_size``."""
    op = "batch_indices"
    n = check_int("n", n, op, minimum=1)
    batch_size = check_int("batch_size", batch_size, op, minimum=1)
    if shuffle:
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"{op}(rng): got {type(rng).__name__}, expected a numpy.random.Generator "
                            f"(e.g. np.random.default_rng(seed)) when shuffle=True")
        order = rng.permutation(n).astype(np.int64, copy=False)
    else:
        order = np.arange(n, dtype=np.int64)
    stop = n - n % batch_size if drop_last else n
    if stop == 0:
        raise ValueError(f"{op}: n={n} examples with batch_size={batch_size} and drop_last=True "
                         f"gives no batch at all; use a smaller batch_size or drop_last=False")
    return [order[i:i + batch_size] for i in range(0, stop, batch_size)]


def iterate_minibatches(x, y, batch_size, rng, shuffle=True, drop_last=False, start=0):
    """Yield ``(x[idx], y[idx])`` for one epoch of :func:`batch_indices`, skipping the first
    ``start`` batches (to resume mid-epoch from the rng state saved at the epoch's start)."""
    if len(x) != len(y):
        raise ValueError(f"iterate_minibatches: x has {len(x)} examples but y has {len(y)}")
    batches = batch_indices(len(x), batch_size, rng, shuffle, drop_last)
    start = check_int("start", start, "iterate_minibatches", minimum=0)
    if start > len(batches):
        raise ValueError(f"iterate_minibatches(start): got {start}, but the epoch has only "
                         f"{len(batches)} batches")
    return ((x[idx], y[idx]) for idx in batches[start:])  # not a generator function: errors now
