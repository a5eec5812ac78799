"""Checkpoint files: atomic writes, no pickle, exact round trips of model and optimizer state."""

import io
import json
import os

import numpy as np
import pytest

import refnet
from refnet import checkpoint
from refnet.nn.models import mlp
from refnet.optim import SGD, Adam


def _trained(opt_cls, seed, steps=3, **opt_kw):
    """A small BN MLP and its optimizer after ``steps`` updates (state non-trivial)."""
    model = mlp(6, num_classes=3, width=5, depth=1, rng=seed)
    opt = opt_cls(model.parameters(), lr=0.1, **opt_kw)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        model.zero_grad()
        y = model(rng.standard_normal((8, 6)).astype(np.float32))
        model.backward(np.ones_like(y))
        opt.step()
    return model, opt


def _assert_same_state(a, b):
    assert list(a) == list(b)
    for k in a:
        assert np.array_equal(a[k], b[k]), k


@pytest.mark.parametrize("opt_cls, kw", [(SGD, dict(momentum=0.9, l2=1e-3)),
                                         (Adam, dict(betas=(0.8, 0.99), weight_decay=0.1))])
def test_round_trip_restores_model_and_optimizer_exactly(tmp_path, opt_cls, kw):
    model, opt = _trained(opt_cls, 0, **kw)
    path = checkpoint.save_checkpoint(tmp_path / "c.npz", model, opt, {"step": 3})
    fresh, fresh_opt = _trained(opt_cls, 1, steps=1, **kw)  # other weights, other state
    meta, rest = checkpoint.load_checkpoint(path, fresh, fresh_opt)
    assert meta["step"] == 3 and rest == {}
    _assert_same_state(model.state_dict(), fresh.state_dict())
    sd, fresh_sd = opt.state_dict(), fresh_opt.state_dict()
    assert sd["param_groups"] == fresh_sd["param_groups"]
    for i, entry in sd["state"].items():
        for k, v in entry.items():
            assert np.array_equal(v, fresh_sd["state"][i][k]), (i, k)


def test_extra_arrays_and_metadata_come_back(tmp_path):
    model, opt = _trained(SGD, 0)
    extra = {"trainer/order": np.arange(5), "history/loss": np.array([1.5, 0.25])}
    path = checkpoint.save_checkpoint(tmp_path / "c.npz", model, opt, {"rng": {"s": 2 ** 100}}, extra)
    meta, rest = checkpoint.load_checkpoint(path, *_trained(SGD, 1))
    assert meta["rng"] == {"s": 2 ** 100}
    _assert_same_state(rest, extra)


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "c.npz"
    checkpoint.write_npz(path, {"a": np.arange(3)}, {"v": 1})
    old = path.read_bytes()

    def broken_savez(f, **arrays):
        f.write(b"PK\x03\x04 half a zip")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.write_npz(path, {"a": np.arange(4)}, {"v": 2})
    assert path.read_bytes() == old
    assert os.listdir(tmp_path) == ["c.npz"]


def test_atomic_write_interrupted_midway_keeps_the_old_file(tmp_path):
    path = tmp_path / "h.json"
    checkpoint.write_json(path, {"a": 1})

    def interrupted(f):
        f.write(b'{"a": 2, "b"')
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        checkpoint.atomic_write(path, interrupted)
    assert json.loads(path.read_text()) == {"a": 1}
    assert os.listdir(tmp_path) == ["h.json"]


def test_json_refuses_nan_instead_of_writing_invalid_json(tmp_path):
    with pytest.raises(ValueError):
        checkpoint.write_json(tmp_path / "h.json", {"a": float("nan")})
    assert os.listdir(tmp_path) == []


def test_object_arrays_are_refused_not_unpickled(tmp_path):
    path = tmp_path / "evil.npz"
    buf = io.BytesIO()
    np.savez(buf, x=np.array([{"code": "runs"}], dtype=object))  # needs pickle to read back
    path.write_bytes(buf.getvalue())
    with pytest.raises(ValueError, match="without pickle"):
        checkpoint.read_npz(path)


def test_a_file_that_is_not_a_checkpoint_is_refused(tmp_path):
    path = checkpoint.write_npz(tmp_path / "x.npz", {"a": np.zeros(2)}, {"format": "other"})
    with pytest.raises(ValueError, match="format"):
        checkpoint.load_checkpoint(path, *_trained(SGD, 0))


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        checkpoint.read_npz(tmp_path / "nope.npz")


def test_json_safe_turns_numpy_and_non_finite_values_into_json():
    out = checkpoint.json_safe({"a": np.float32(0.5), "b": (np.int64(2), float("inf")), 3: np.bool_(True)})
    assert out == {"a": 0.5, "b": [2, None], "3": True}
    json.dumps(out, allow_nan=False)


def test_written_files_get_the_usual_permissions_not_mkstemps_0600(tmp_path):
    path = checkpoint.write_json(tmp_path / "h.json", {"a": 1})
    mask = os.umask(0)
    os.umask(mask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~mask


# --- a file that cannot be resumed from gets a CheckpointError naming it and the problem -------
def _good(tmp_path):
    model, opt = _trained(SGD, 0, momentum=0.9)
    return checkpoint.save_checkpoint(tmp_path / "c.npz", model, opt, {"step": 3})


@pytest.mark.parametrize("damage, why", [
    (lambda b: b[:len(b) // 2], "is truncated or damaged"),
    (lambda b: b"", "is empty (0 bytes)"),
    (lambda b: np.random.default_rng(0).bytes(len(b)), "is not an .npz file"),
    (lambda b: b[:len(b) // 2] + bytes([b[len(b) // 2] ^ 0xFF]) + b[len(b) // 2 + 1:], "is truncated or damaged"),
], ids=["truncated", "empty", "random-bytes", "one-byte-flipped"])
def test_a_damaged_file_is_a_checkpoint_error_naming_it(tmp_path, damage, why):
    path = _good(tmp_path)
    with open(path, "rb") as f:
        blob = f.read()
    with open(path, "wb") as f:
        f.write(damage(blob))
    with pytest.raises(checkpoint.CheckpointError) as err:
        checkpoint.load_checkpoint(path, *_trained(SGD, 1, momentum=0.9))
    assert str(err.value).startswith(f"{path} {why}") and isinstance(err.value, ValueError)


def test_another_format_names_the_refnet_that_wrote_it(tmp_path):
    path = _good(tmp_path)
    arrays, meta = checkpoint.read_npz(path)
    assert meta["refnet"] == refnet.__version__
    checkpoint.write_npz(path, arrays, {**meta, "format": "refnet-checkpoint-9", "refnet": "9.0"})
    with pytest.raises(checkpoint.CheckpointError, match="format 'refnet-checkpoint-9', written by refnet 9.0"):
        checkpoint.load_checkpoint(path, *_trained(SGD, 1, momentum=0.9))


@pytest.mark.parametrize("other", [lambda: mlp(6, num_classes=3, width=7, depth=1, rng=1),
                                   lambda: mlp(6, num_classes=3, width=5, depth=2, rng=1)],
                         ids=["other-shape", "other-layers"])
def test_another_models_checkpoint_is_refused_and_changes_nothing(tmp_path, other):
    path = _good(tmp_path)
    model = other()
    opt = SGD(model.parameters(), lr=0.1, momentum=0.9)
    before = {k: v.copy() for k, v in model.state_dict().items()}
    with pytest.raises(checkpoint.CheckpointError, match="another model's or optimizer's state"):
        checkpoint.load_checkpoint(path, model, opt)
    _assert_same_state(model.state_dict(), before)
    assert opt.state == {}


def test_another_optimizers_checkpoint_is_refused_and_changes_nothing(tmp_path):
    path = _good(tmp_path)
    model, opt = _trained(Adam, 1)
    before, opt_before = model.state_dict(), opt.state_dict()
    with pytest.raises(checkpoint.CheckpointError, match="another model's or optimizer's state"):
        checkpoint.load_checkpoint(path, model, opt)
    _assert_same_state(model.state_dict(), before)
    assert opt.state_dict()["param_groups"] == opt_before["param_groups"]


def test_read_meta_only_reads_no_arrays(tmp_path):
    path = _good(tmp_path)
    arrays, meta = checkpoint.read_npz(path, meta_only=True)
    assert arrays == {} and meta["step"] == 3
