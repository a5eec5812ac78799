"""refnet.data: offline loaders (IDX, CIFAR-10 binary and python), their validation and error
messages, the restricted unpickler, class-balanced subsets, train-only standardization, the
synthetic problem and the epoch/minibatch indexing that resumable training relies on.

Every file a loader reads here is written by the test itself into tmp_path."""

import gzip
import os
import pickle

import numpy as np
import pytest

from refnet import data, datasets_io
from refnet.data import (Dataset, DatasetError, DatasetNotFoundError, balanced_subset, batch_indices,
                         iterate_minibatches, load_dataset, synthetic)

SYSTEM_FMNIST = "/usr/share/datasets/fashion-mnist"


@pytest.fixture(autouse=True)
def no_ambient_data(monkeypatch, tmp_path_factory):
    """Neither $REFNET_DATA nor the system copy may leak into a test that did not ask for them."""
    monkeypatch.delenv("REFNET_DATA", raising=False)
    monkeypatch.setattr(datasets_io, "SYSTEM_FASHION_MNIST", tmp_path_factory.mktemp("no-system-copy"))


# ----------------------------------------------------------------------------- writers
def idx_bytes(array, magic):
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_idx_dir(directory, rng, n_train=40, n_test=20, hw=(6, 5), gz=True, test_shift=0):
    """Write the four IDX files; return the raw arrays. ``test_shift`` brightens the test split
    so that its statistics differ from the training split's."""
    directory.mkdir(parents=True, exist_ok=True)
    raw = {}
    for split, n, shift in (("train", n_train, 0), ("t10k", n_test, test_shift)):
        images = np.clip(rng.integers(0, 200, size=(n,) + hw) + shift, 0, 255).astype(np.uint8)
        labels = rng.permutation(np.arange(n) % 10).astype(np.uint8)
        for kind, arr, magic in (("images-idx3", images, 2051), ("labels-idx1", labels, 2049)):
            blob = idx_bytes(arr, magic)
            name = f"{split}-{kind}-ubyte" + (".gz" if gz else "")
            (directory / name).write_bytes(gzip.compress(blob) if gz else blob)
        raw[split] = (images, labels)
    return raw


def write_cifar(directory, rng, version="bin", per_batch=10, protocol=2):
    """Write a tiny CIFAR-10 (5 train batches + 1 test batch); return raw (N, 3072) and labels."""
    directory.mkdir(parents=True, exist_ok=True)
    out = {}
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        pixels = rng.integers(0, 256, size=(per_batch, 3072)).astype(np.uint8)
        labels = rng.integers(0, 10, size=per_batch)
        if version == "bin":
            records = np.concatenate([labels[:, None].astype(np.uint8), pixels], axis=1)
            (directory / f"{name}.bin").write_bytes(records.tobytes())
        else:  # the layout of the official python version (keys are bytes after encoding="bytes")
            batch = {b"batch_label": name.encode(), b"labels": [int(v) for v in labels],
                     b"data": pixels, b"filenames": [b"img%d.png" % i for i in range(per_batch)]}
            (directory / name).write_bytes(pickle.dumps(batch, protocol=protocol))
        out[name] = (pixels, labels)
    x_train = np.concatenate([out[n][0] for n in names[:5]])
    y_train = np.concatenate([out[n][1] for n in names[:5]])
    return x_train, y_train, out["test_batch"][0], out["test_batch"][1]


# ----------------------------------------------------------------------------- IDX
@pytest.mark.parametrize("gz", [True, False], ids=["gzipped", "plain"])
@pytest.mark.parametrize("name", ["fashion-mnist", "mnist"])
def test_idx_loader_returns_float32_nchw_pixels_and_int64_labels(tmp_path, rng, name, gz):
    raw = write_idx_dir(tmp_path, rng, gz=gz)
    d = load_dataset(name, data_dir=tmp_path, standardize=False)
    assert d.x_train.shape == (40, 1, 6, 5) and d.x_test.shape == (20, 1, 6, 5)
    assert d.x_train.dtype == np.float32 and d.y_train.dtype == np.int64 and d.y_test.dtype == np.int64
    np.testing.assert_allclose(d.x_train[:, 0], raw["train"][0] / 255, rtol=1e-6)
    np.testing.assert_array_equal(d.y_test, raw["t10k"][1])
    assert (d.name, d.num_classes, len(d.classes)) == (name, 10, 10)


def test_fashion_mnist_is_found_through_refnet_data_env_var(tmp_path, rng, monkeypatch):
    raw = write_idx_dir(tmp_path / "fashion-mnist", rng)  # a root holding several data sets
    monkeypatch.setenv("REFNET_DATA", str(tmp_path))
    d = load_dataset("fashion-mnist", standardize=False)
    np.testing.assert_array_equal(d.y_train, raw["train"][1])
    assert d.source == str(tmp_path / "fashion-mnist")


def test_data_dir_takes_precedence_over_env_var(tmp_path, rng, monkeypatch):
    write_idx_dir(tmp_path / "env", rng, n_train=30)
    write_idx_dir(tmp_path / "arg", rng, n_train=50)
    monkeypatch.setenv("REFNET_DATA", str(tmp_path / "env"))
    assert len(load_dataset(data_dir=tmp_path / "arg").x_train) == 50


def _bad_magic(d):
    p = d / "train-images-idx3-ubyte.gz"
    blob = bytearray(gzip.decompress(p.read_bytes()))
    blob[3] = 0x01  # 2049: a labels file where images were expected
    p.write_bytes(gzip.compress(bytes(blob)))
    return p, "magic number 2049, expected 2051"


def _truncated_images(d):
    p = d / "train-images-idx3-ubyte.gz"
    p.write_bytes(gzip.compress(gzip.decompress(p.read_bytes())[:-7]))
    return p, "truncated"


def _truncated_gzip(d):
    p = d / "t10k-images-idx3-ubyte.gz"
    p.write_bytes(p.read_bytes()[:50])
    return p, "corrupt gzip"


def _wrong_label_count(d):
    p = d / "train-labels-idx1-ubyte.gz"
    p.write_bytes(gzip.compress(idx_bytes(np.zeros(39, np.uint8), 2049)))
    return p, "40 images but"


def _label_out_of_range(d):
    p = d / "t10k-labels-idx1-ubyte.gz"
    p.write_bytes(gzip.compress(idx_bytes(np.full(20, 10, np.uint8), 2049)))
    return p, "label 10 out of range"


@pytest.mark.parametrize("corrupt", [_bad_magic, _truncated_images, _truncated_gzip,
                                     _wrong_label_count, _label_out_of_range])
def test_corrupt_idx_file_gives_a_dataset_error_naming_the_file(tmp_path, rng, corrupt):
    write_idx_dir(tmp_path, rng)
    path, why = corrupt(tmp_path)
    with pytest.raises(DatasetError, match="(?s)" + why) as info:
        load_dataset("fashion-mnist", data_dir=tmp_path)
    assert str(path) in str(info.value) and isinstance(info.value, ValueError)


@pytest.mark.parametrize("name", ["fashion-mnist", "mnist", "cifar10"])
def test_missing_data_names_every_place_searched_and_how_to_get_it(tmp_path, monkeypatch, name):
    monkeypatch.setenv("REFNET_DATA", str(tmp_path / "env"))
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset(name)
    msg = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    assert str(tmp_path / "env") in msg and "--data-dir" in msg
    if name == "fashion-mnist":
        assert str(datasets_io.SYSTEM_FASHION_MNIST) in msg
        assert "apt-get install dataset-fashion-mnist" in msg


@pytest.mark.parametrize("name", ["fashion-mnist", "mnist", "cifar10"])
@pytest.mark.parametrize("make, why", [(lambda p: None, "does not exist"),
                                       (lambda p: p.write_bytes(b""), "is not a directory")])
def test_a_given_data_dir_that_is_not_a_directory_is_named(tmp_path, name, make, why):
    given = tmp_path / "given"
    make(given)
    with pytest.raises(DatasetNotFoundError, match=why) as info:
        load_dataset(name, data_dir=given)
    assert str(given) in str(info.value)


def test_a_given_data_dir_is_the_only_place_searched(tmp_path, rng, monkeypatch):
    """Data elsewhere ($REFNET_DATA, the system copy) is not silently taken instead."""
    write_idx_dir(tmp_path / "env", rng)
    monkeypatch.setenv("REFNET_DATA", str(tmp_path / "env"))
    monkeypatch.setattr(datasets_io, "SYSTEM_FASHION_MNIST", tmp_path / "env")
    (tmp_path / "given").mkdir()
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("fashion-mnist", data_dir=tmp_path / "given")
    assert str(tmp_path / "given") in str(info.value) and str(tmp_path / "env") not in str(info.value)
    assert load_dataset("fashion-mnist").source == str(tmp_path / "env")


def test_partial_directory_is_an_error_naming_the_missing_file(tmp_path, rng):
    write_idx_dir(tmp_path, rng)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetNotFoundError, match="missing t10k-labels-idx1-ubyte"):
        load_dataset("mnist", data_dir=tmp_path)


# ----------------------------------------------------------------------------- CIFAR-10
@pytest.mark.parametrize("version,subdir,protocol", [("bin", "cifar-10-batches-bin", None),
                                                     ("bin", "", None),
                                                     ("py", "cifar-10-batches-py", 2),
                                                     ("py", "", pickle.HIGHEST_PROTOCOL)])
def test_cifar10_loader_maps_records_to_rgb_planes(tmp_path, rng, version, subdir, protocol):
    x_tr, y_tr, x_te, y_te = write_cifar(tmp_path / subdir, rng, version, protocol=protocol)
    d = load_dataset("cifar10", data_dir=tmp_path, standardize=False)
    assert d.x_train.shape == (50, 3, 32, 32) and d.x_test.shape == (10, 3, 32, 32)
    assert d.x_train.dtype == np.float32 and d.y_train.dtype == np.int64
    # record layout: 1024 red bytes, 1024 green, 1024 blue, each row-major 32x32
    i, c, h, w = 17, 2, 5, 30
    assert d.x_train[i, c, h, w] == np.float32(x_tr[i, c * 1024 + h * 32 + w] / 255)
    np.testing.assert_array_equal(d.y_train, y_tr)
    np.testing.assert_array_equal(d.y_test, y_te)
    assert d.classes[0] == "airplane" and d.num_classes == 10


def test_truncated_cifar_binary_batch_is_a_dataset_error(tmp_path, rng):
    write_cifar(tmp_path, rng, "bin")
    p = tmp_path / "data_batch_3.bin"
    p.write_bytes(p.read_bytes()[:-1])
    with pytest.raises(DatasetError, match="not a whole number of 3073-byte"):
        load_dataset("cifar10", data_dir=tmp_path)


def test_cifar_pickle_without_data_key_is_a_dataset_error(tmp_path, rng):
    write_cifar(tmp_path, rng, "py")
    (tmp_path / "test_batch").write_bytes(pickle.dumps({b"labels": [1, 2]}))
    with pytest.raises(DatasetError, match="expected keys b'data'"):
        load_dataset("cifar10", data_dir=tmp_path)


class _Evil:
    """Unpickling this calls ``func(*args)``: what a hostile pickle does."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _payloads(marker):
    return {"os.system": _Evil(os.system, f"touch {marker}"),
            "builtins.eval": _Evil(eval, f"open({str(marker)!r}, 'w')"),
            "builtins.exec": _Evil(exec, f"open({str(marker)!r}, 'w')"),
            "numpy.load": _Evil(np.load, str(marker))}


@pytest.mark.parametrize("payload", ["os.system", "builtins.eval", "builtins.exec", "numpy.load"])
def test_malicious_cifar_pickle_is_refused_without_running(tmp_path, rng, payload):
    write_cifar(tmp_path, rng, "py")
    marker = tmp_path / "pwned"
    evil = {b"data": _payloads(marker)[payload], b"labels": [0]}
    (tmp_path / "data_batch_2").write_bytes(pickle.dumps(evil, protocol=2))
    with pytest.raises(DatasetError, match="refusing to load global") as info:
        load_dataset("cifar10", data_dir=tmp_path)
    assert str(tmp_path / "data_batch_2") in str(info.value)
    assert not marker.exists()


def test_restricted_unpickler_round_trips_what_cifar_needs(tmp_path):
    obj = {b"a": np.arange(6, dtype=np.uint8).reshape(2, 3), "b": [1, 2.5, -3j, True, None],
           b"c": (b"x", "y", bytearray(b"z")), b"d": np.float64(0.5), b"e": {1, 2}}
    for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
        (tmp_path / "p").write_bytes(pickle.dumps(obj, protocol=protocol))
        back = datasets_io.safe_unpickle(tmp_path / "p")
        np.testing.assert_array_equal(back[b"a"], obj[b"a"])
        assert back["b"] == obj["b"] and back[b"c"] == obj[b"c"] and back[b"d"] == 0.5


# A Python 2 cPickle (protocol 2) file as CIFAR-10's python version was written: numpy 1's
# global names, py2 str as SHORT_BINSTRING; hand-assembled (no memo opcodes).
PY2_CIFAR_PICKLE = (b"\x80\x02}(U\x04data"
                    b"cnumpy.core.multiarray\n_reconstruct\n" b"cnumpy\nndarray\n" b"K\x00\x85U\x01b\x87R"
                    b"(K\x01K\x02K\x03\x86" b"cnumpy\ndtype\n" b"U\x02u1K\x00K\x01\x87R"
                    b"(K\x03U\x01|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
                    b"\x89U\x06\x00\x01\x02\x03\x04\x05tb"
                    b"U\x06labels](K\x01K\x02eu.")


def test_restricted_unpickler_reads_a_python2_numpy1_pickle(tmp_path):
    (tmp_path / "p").write_bytes(PY2_CIFAR_PICKLE)
    back = datasets_io.safe_unpickle(tmp_path / "p")
    np.testing.assert_array_equal(back[b"data"], np.arange(6, dtype=np.uint8).reshape(2, 3))
    assert back[b"labels"] == [1, 2]


# ----------------------------------------------------------------------------- subsets, stats
@pytest.mark.parametrize("n", [10, 20, 37])
def test_subset_is_class_balanced_and_seeded(tmp_path, rng, n):
    write_idx_dir(tmp_path, rng, n_train=100)
    d = load_dataset("mnist", data_dir=tmp_path, subset=n, seed=3)
    counts = np.bincount(d.y_train, minlength=10)
    assert counts.sum() == n and counts.max() - counts.min() <= (0 if n % 10 == 0 else 1)
    again = load_dataset("mnist", data_dir=tmp_path, subset=n, seed=3)
    np.testing.assert_array_equal(again.x_train, d.x_train)
    other = load_dataset("mnist", data_dir=tmp_path, subset=n, seed=4)
    assert not np.array_equal(other.x_train, d.x_train)


def test_test_subset_is_class_balanced(tmp_path, rng):
    write_idx_dir(tmp_path, rng, n_test=50)
    d = load_dataset("mnist", data_dir=tmp_path, test_subset=30)
    np.testing.assert_array_equal(np.bincount(d.y_test, minlength=10), np.full(10, 3))
    assert len(d.y_train) == 40


@pytest.mark.parametrize("n,match", [(41, "only 40 examples"), (9, "at least one example per class"),
                                     (0, ">= 1")])
def test_bad_subset_size_is_a_clear_error(tmp_path, rng, n, match):
    write_idx_dir(tmp_path, rng)
    with pytest.raises(ValueError, match=match):
        load_dataset("mnist", data_dir=tmp_path, subset=n)


def test_subset_needing_more_of_a_class_than_exists_is_an_error(rng):
    labels = np.array([0] * 2 + [1] * 8)
    with pytest.raises(ValueError, match="needs 5 examples of class 0, but the split has only 2"):
        balanced_subset(labels, 10, 2, rng)


def test_standardization_uses_training_statistics_only(tmp_path, rng):
    raw = write_idx_dir(tmp_path, rng, test_shift=50)
    d = load_dataset("mnist", data_dir=tmp_path)
    train01 = raw["train"][0].astype(np.float64) / 255
    np.testing.assert_allclose(d.mean, [train01.mean()], rtol=1e-6)
    np.testing.assert_allclose(d.std, [train01.std()], rtol=1e-6)
    expected_test = (raw["t10k"][0] / 255 - train01.mean()) / train01.std()
    np.testing.assert_allclose(d.x_test[:, 0], expected_test, rtol=1e-5, atol=1e-5)
    assert abs(d.x_train.mean()) < 1e-5 and abs(d.x_train.std() - 1) < 1e-5
    assert d.x_test.mean() > 0.5  # the brighter test split stays brighter: no test statistics used


def test_standardization_is_per_channel_and_after_subset(tmp_path, rng):
    x_tr, y_tr, _, _ = write_cifar(tmp_path, rng, "bin", per_batch=20)
    d = load_dataset("cifar10", data_dir=tmp_path, subset=30, seed=1)
    keep = balanced_subset(y_tr, 30, 10, np.random.default_rng(np.random.SeedSequence(1).spawn(2)[0]))
    sub = x_tr[keep].reshape(30, 3, 1024).astype(np.float64) / 255
    np.testing.assert_allclose(d.mean, sub.mean(axis=(0, 2)), rtol=1e-6)
    np.testing.assert_allclose(d.std, sub.std(axis=(0, 2)), rtol=1e-6)
    np.testing.assert_allclose(d.x_train.mean(axis=(0, 2, 3)), 0, atol=1e-5)


def test_unknown_name_lists_the_known_names():
    with pytest.raises(ValueError, match="fashion-mnist, mnist, cifar10, synthetic"):
        load_dataset("imagenet")


def test_synthetic_options_are_refused_for_real_data_sets(tmp_path):
    with pytest.raises(TypeError, match="n_train"):
        load_dataset("mnist", data_dir=tmp_path, n_train=10)


# ----------------------------------------------------------------------------- synthetic
def test_synthetic_is_reproducible_for_a_seed():
    a, b, c = (synthetic(n_train=50, n_test=20, seed=s) for s in (7, 7, 8))
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    assert not np.array_equal(a.x_train, c.x_train)


@pytest.mark.parametrize("shape", [(3, 8, 8), (16,), (2, 5, 7)])
def test_synthetic_has_the_requested_shape_and_balanced_classes(shape):
    d = synthetic(n_train=60, n_test=30, shape=shape, num_classes=3)
    assert d.x_train.shape == (60,) + shape and d.x_test.shape == (30,) + shape
    assert d.x_train.dtype == np.float32 and d.y_train.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(d.y_train), [20, 20, 20])


def test_synthetic_test_split_does_not_depend_on_n_train():
    a = synthetic(n_train=50, n_test=20, standardize=False)
    b = synthetic(n_train=90, n_test=20, standardize=False)
    np.testing.assert_array_equal(a.x_test, b.x_test)


def test_synthetic_is_learnable_but_not_trivial():
    d = synthetic(n_train=2000, n_test=1000, shape=(1, 12, 12))
    x, xt = d.x_train.reshape(2000, -1), d.x_test.reshape(1000, -1)
    means = np.stack([x[d.y_train == k].mean(axis=0) for k in range(10)])
    acc = np.mean(np.argmin(((xt[:, None] - means[None]) ** 2).sum(-1), axis=1) == d.y_test)
    assert 0.8 < acc < 0.99  # nearest class mean: well above chance (0.1), short of perfect


def test_load_dataset_synthetic_applies_subset_and_standardization():
    d = load_dataset("synthetic", subset=40, n_train=100, n_test=30, shape=(2, 4, 4), seed=5)
    assert isinstance(d, Dataset) and d.x_train.shape == (40, 2, 4, 4) and d.source == "generated"
    np.testing.assert_allclose(d.x_train.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(d.x_train.std(axis=(0, 2, 3)), 1, atol=1e-5)


# ----------------------------------------------------------------------------- minibatches
@pytest.mark.parametrize("n,bs", [(10, 3), (12, 4), (5, 8)])
def test_batch_indices_cover_every_index_once_per_epoch(rng, n, bs):
    batches = batch_indices(n, bs, rng)
    assert all(b.dtype == np.int64 for b in batches)
    assert [len(b) for b in batches[:-1]] == [bs] * (len(batches) - 1)
    np.testing.assert_array_equal(np.sort(np.concatenate(batches)), np.arange(n))


def test_batch_indices_are_reproducible_and_consume_exactly_one_permutation():
    a = batch_indices(1000, 64, np.random.default_rng(0))
    b = batch_indices(1000, 64, np.random.default_rng(0))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    rng, twin = np.random.default_rng(0), np.random.default_rng(0)
    batch_indices(1000, 64, rng)
    np.testing.assert_array_equal(np.concatenate(a), twin.permutation(1000))
    assert rng.bit_generator.state == twin.bit_generator.state


def test_batch_indices_drop_last_drops_only_the_short_batch(rng):
    batches = batch_indices(10, 4, rng, drop_last=True)
    assert [len(b) for b in batches] == [4, 4]
    with pytest.raises(ValueError, match="no batch at all"):
        batch_indices(3, 4, rng, drop_last=True)


def test_batch_indices_without_shuffle_is_in_order_and_needs_no_rng():
    batches = batch_indices(5, 2, None, shuffle=False)
    np.testing.assert_array_equal(np.concatenate(batches), np.arange(5))


@pytest.mark.parametrize("kwargs,exc,match", [({"batch_size": 0}, ValueError, "batch_size"),
                                              ({"n": 0}, ValueError, "n"),
                                              ({"rng": 0}, TypeError, "Generator")])
def test_batch_indices_rejects_bad_arguments(kwargs, exc, match):
    args = {"n": 10, "batch_size": 4, "rng": np.random.default_rng(0), **kwargs}
    with pytest.raises(exc, match=match):
        batch_indices(**args)


def test_iterate_minibatches_resumes_mid_epoch_from_the_saved_rng_state():
    x, y = np.arange(20.0).reshape(10, 2), np.arange(10)
    rng = np.random.default_rng(5)
    saved = rng.bit_generator.state
    full = list(iterate_minibatches(x, y, 3, rng))
    rng.bit_generator.state = saved
    resumed = list(iterate_minibatches(x, y, 3, rng, start=2))
    assert len(resumed) == len(full) - 2
    for (xa, ya), (xb, yb) in zip(full[2:], resumed):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    np.testing.assert_array_equal(full[0][0][:, 0] / 2, full[0][1])  # pairs stay paired


def test_iterate_minibatches_rejects_mismatched_lengths(rng):
    with pytest.raises(ValueError, match="x has 4 examples but y has 3"):
        iterate_minibatches(np.zeros((4, 2)), np.zeros(3), 2, rng)


# ----------------------------------------------------------------------------- real data
@pytest.mark.skipif(not os.path.isfile(os.path.join(SYSTEM_FMNIST, "train-images-idx3-ubyte.gz")),
                    reason=f"Fashion-MNIST not installed in {SYSTEM_FMNIST} "
                           "(sudo apt-get install dataset-fashion-mnist)")
def test_real_fashion_mnist_loads_with_the_published_sizes(monkeypatch):
    from pathlib import Path
    monkeypatch.setattr(datasets_io, "SYSTEM_FASHION_MNIST", Path(SYSTEM_FMNIST))
    d = data.load_dataset("fashion-mnist")
    assert d.x_train.shape == (60000, 1, 28, 28) and d.x_test.shape == (10000, 1, 28, 28)
    assert d.x_train.dtype == np.float32 and d.y_train.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(d.y_train), np.full(10, 6000))
    np.testing.assert_array_equal(np.bincount(d.y_test), np.full(10, 1000))
    np.testing.assert_allclose([d.mean[0], d.std[0]], [0.2860, 0.3530], atol=1e-4)  # published stats
    assert d.classes[9] == "Ankle boot"
