"""The Trainer: it learns, records the paper's quantities correctly, resumes bit for bit,
stops on a non-finite loss; and the ``refnet train`` command."""

import json
import os
import re

import numpy as np
import pytest

from refnet import backend
from refnet.cli import main
from refnet.data import batch_indices, synthetic
from refnet.invariance import angular_update
from refnet.nn.models import cnn, mlp, trainable_parameters
from refnet.ops import softmax_cross_entropy
from refnet.optim import SGD, Adam, get_schedule
from refnet.train import QUANTITIES, History, NonFiniteLossError, Trainer

SHAPE = (1, 6, 6)


@pytest.fixture(scope="module")
def data():
    return synthetic(n_train=300, n_test=100, shape=SHAPE, num_classes=4, seed=0)


def _setup(data, norm="bn", opt="sgd", seed=0, width=8, **opt_kw):
    model = mlp(36, num_classes=4, width=width, depth=2, norm=norm, rng=seed)
    kw = dict(lr=0.05, momentum=0.9, l2=1e-3) if opt == "sgd" else dict(lr=0.01, l2=1e-3)
    kw.update(opt_kw)
    optimizer = (SGD if opt == "sgd" else Adam)(trainable_parameters(model), **kw)
    return model, optimizer


def _trainer(data, out_dir=None, norm="bn", opt="sgd", seed=0, **kw):
    model, optimizer = _setup(data, norm, opt, seed)
    kw = {"batch_size": 32, "progress": False, **kw}
    return Trainer(model, optimizer, data, out_dir=out_dir, **kw)


# --- learning ---------------------------------------------------------------------------
@pytest.mark.parametrize("build", ["mlp", "cnn"])
def test_short_training_on_synthetic_data_reaches_90_percent(build):
    data = synthetic(n_train=1000, n_test=500, shape=(1, 8, 8), num_classes=4, seed=1, noise=0.3)
    model = mlp(64, num_classes=4, width=32, rng=0) if build == "mlp" else \
        cnn(1, num_classes=4, image_size=8, widths=(8, 16), rng=0)
    opt = SGD(model.parameters(), lr=0.05, momentum=0.9, l2=5e-4)
    history = Trainer(model, opt, data, batch_size=50, epochs=2, progress=False).fit()
    assert history["test_accuracy"][-1] >= 0.9
    assert history["train_loss"][-1] < history["train_loss"][0]


# --- what is recorded -----------------------------------------------------------------
def test_history_files_have_the_documented_schema(data, tmp_path):
    history = _trainer(data, tmp_path, epochs=2).fit()
    saved = json.loads((tmp_path / "history.json").read_text())
    for key in ("train_loss", "train_accuracy", "test_loss", "test_accuracy", "epoch_time"):
        assert len(saved[key]) == 2 and all(isinstance(v, float) for v in saved[key]), key
    assert saved["epoch"] == [1, 2] and saved["step"] == [10, 20]
    assert saved["config"]["batch_size"] == 32 and saved["config"]["optimizer"] == "SGD"
    assert saved["params"] == {"1.weight": {"scale_group": "unit", "shape": [8, 36], "n_groups": 8},
                               "4.weight": {"scale_group": "unit", "shape": [8, 8], "n_groups": 8}}
    steps = np.load(tmp_path / "history.npz", allow_pickle=False)
    expected = {"step", "loss", "lr"} | {f"{q}/{n}" for q in QUANTITIES for n in ("1.weight", "4.weight")}
    assert set(steps.files) == expected
    assert steps["norm/1.weight"].shape == (20, 8) and steps["loss"].shape == (20,)
    loaded = History.load(tmp_path)
    assert loaded["test_accuracy"] == history["test_accuracy"]
    assert np.array_equal(loaded["angle/4.weight"], history.steps["angle/4.weight"])


@pytest.mark.parametrize("log_every, logged", [(1, 15), (4, 4), (20, 1)])
def test_log_every_sets_which_steps_are_recorded(data, log_every, logged):
    history = _trainer(data, steps=15, log_every=log_every).fit()
    assert history.steps["step"].tolist() == list(range(0, 15, log_every))[:logged]
    assert history.steps["angle/1.weight"].shape == (logged, 8)


@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_recorded_step_matches_a_step_computed_by_hand(data, opt):
    """Norm, effective lr, angle and ||w||*||g|| (g without L2) of the first step."""
    kw = dict(momentum=0.0) if opt == "sgd" else {}
    probe, _ = _setup(data, opt=opt, **kw)  # the same initialization as the trained model
    w0 = {n: p.data.copy() for n, p in probe.named_parameters()}
    idx = batch_indices(len(data.x_train), 32, np.random.default_rng(7))[0]  # the first batch
    loss, dlogits = softmax_cross_entropy(probe(data.x_train[idx]), data.y_train[idx])
    probe.backward(dlogits)
    grads = {n: p.grad.copy() for n, p in probe.named_parameters()}
    model, optimizer = _setup(data, opt=opt, **kw)
    history = Trainer(model, optimizer, data, batch_size=32, steps=1, seed=7, progress=False).fit()
    lr = optimizer.param_groups[0]["lr"]
    for name in ("1.weight", "4.weight"):
        w, g, w1 = w0[name], grads[name], dict(model.named_parameters())[name].data
        norm = np.linalg.norm(w, axis=1)
        np.testing.assert_allclose(history.steps[f"norm/{name}"][0], norm, rtol=1e-6)
        want_eff = lr / norm ** 2 if opt == "sgd" else lr / norm
        np.testing.assert_allclose(history.steps[f"effective_lr/{name}"][0], want_eff, rtol=1e-6)
        np.testing.assert_allclose(history.steps[f"grad_norm_unit/{name}"][0],
                                   norm * np.linalg.norm(g, axis=1), rtol=1e-5)
        np.testing.assert_allclose(history.steps[f"angle/{name}"][0], angular_update(w, w1), rtol=1e-5)
    assert history.steps["loss"][0] == pytest.approx(float(loss), rel=1e-6)


def test_layernorm_weights_are_recorded_as_one_group_per_tensor(data):
    history = _trainer(data, norm="ln", steps=3).fit()
    assert history.steps["norm/1.weight"].shape == (3, 1)
    assert history.params["1.weight"]["scale_group"] == "tensor"


def test_schedule_multiplies_the_initial_lr_at_every_step(data):
    schedule = get_schedule("step", step_size=4, gamma=0.5)
    history = _trainer(data, steps=10, schedule=schedule).fit()
    np.testing.assert_allclose(history.steps["lr"], [0.05 * 0.5 ** (t // 4) for t in range(10)])


def test_steps_overrides_epochs_and_final_evaluation_is_recorded(data):
    trainer = _trainer(data, epochs=5, steps=13)
    history = trainer.fit()
    assert trainer.step == 13 and history["epoch"] == [1]
    assert history.final["step"] == 13 and 0 <= history.final["test_accuracy"] <= 1


def test_a_frozen_head_does_not_move(data):
    model = mlp(36, num_classes=4, width=8, norm="bn", affine=False, train_head=False, rng=0)
    head = [p.data.copy() for p in model[-1].parameters()]
    opt = SGD(trainable_parameters(model), lr=0.1, momentum=0.9, l2=1e-3)
    Trainer(model, opt, data, batch_size=32, steps=5, progress=False).fit()
    assert all(np.array_equal(a, p.data) for a, p in zip(head, model[-1].parameters()))


# --- checkpoints, resume, NaN -----------------------------------------------------------
def _snapshot(trainer):
    model = {k: backend.asnumpy(v) for k, v in trainer.model.state_dict().items()}
    opt = trainer.optimizer.state_dict()
    state = {f"{i}/{k}": backend.asnumpy(v) for i, e in opt["state"].items() for k, v in e.items()}
    epochs = {k: v for k, v in trainer.history.epochs.items() if k != "epoch_time"}
    return model, state, trainer.history.steps, epochs, trainer.history.final


@pytest.mark.parametrize("opt", ["sgd", "adam"])
@pytest.mark.parametrize("half", [7, 14])  # both stop mid-epoch (10 steps per epoch)
def test_resume_continues_bit_identically(data, tmp_path, opt, half):
    total = 2 * half
    straight = _trainer(data, opt=opt, steps=total, seed=3)
    straight.fit()
    first = _trainer(data, tmp_path, opt=opt, steps=half, seed=3)
    first.fit()
    resumed = _trainer(data, tmp_path, opt=opt, steps=total, seed=99)  # fresh objects, other init
    resumed.load_checkpoint()
    assert resumed.step == half
    resumed.fit()
    for a, b in zip(_snapshot(straight), _snapshot(resumed)):
        if isinstance(a, dict):
            assert sorted(a) == sorted(b)
            for k in a:
                assert np.array_equal(a[k], b[k]), k
        else:
            assert a == b


def test_nan_loss_stops_training_naming_the_step_and_keeps_the_last_checkpoint(data, tmp_path):
    model = mlp(36, num_classes=4, width=8, norm="none", rng=0)
    opt = SGD(model.parameters(), lr=1e6)
    trainer = Trainer(model, opt, data, batch_size=32, steps=50, checkpoint_every=1,
                      out_dir=tmp_path, progress=False)
    with pytest.raises(NonFiniteLossError, match=r"at step \d+") as err:
        trainer.fit()
    assert err.value.step >= 1
    assert err.value.checkpoint_path == os.path.join(tmp_path, "checkpoint.npz")
    fresh = Trainer(mlp(36, num_classes=4, width=8, norm="none", rng=1),
                    SGD(model.parameters(), lr=1e6), data, progress=False)
    fresh.load_checkpoint(err.value.checkpoint_path)
    assert fresh.step == err.value.step
    assert all(np.isfinite(p.data).all() for p in fresh.model.parameters())


@pytest.mark.parametrize("norm", ["bn", "ln", "none"])
def test_a_non_finite_loss_leaves_the_model_as_before_the_step(data, norm):
    """BatchNorm's running statistics included: the forward that produced the NaN moved
    them, and they are put back."""
    trainer = _trainer(data, norm=norm, steps=5)
    trainer.fit()  # running statistics away from their initial values
    before = {k: v.copy() for k, v in trainer.model.state_dict().items()}
    x = np.full((32, 1, 6, 6), np.inf, np.float32)
    with pytest.raises(NonFiniteLossError):
        trainer.train_step(x, np.zeros(32, np.int64))
    after = trainer.model.state_dict()
    assert list(after) == list(before)
    for k in before:
        assert np.array_equal(after[k], before[k]), k
    if norm == "bn":
        assert "2.running_mean" in before


# --- the command ------------------------------------------------------------------------
STEPS = ["train", "--data", "synthetic", "--model", "mlp", "--width", "16", "--batch-size", "500",
         "--subset", "1000", "--no-progress"]  # add --steps N
CLI = STEPS + ["--epochs", "1"]


def test_cli_trains_on_synthetic_data_and_says_where_it_wrote(tmp_path, capsys):
    assert main(CLI + ["--l2", "5e-4", "--out", str(tmp_path)]) == 0
    saved = json.loads((tmp_path / "history.json").read_text())
    assert len(saved["test_accuracy"]) == 1 and saved["config"]["args"]["l2"] == 5e-4
    out = capsys.readouterr().out
    assert f"files in {tmp_path}: checkpoint.npz, history.json, history.npz" in out
    assert (tmp_path / "checkpoint.npz").exists() and (tmp_path / "history.npz").exists()


def test_cli_ends_with_one_summary_line_also_when_stopping_mid_epoch(tmp_path, capsys):
    """Steps, final train loss and accuracy (the running means of the last, partial epoch),
    test loss and accuracy, wall time and where the files are."""
    assert main(STEPS + ["--steps", "1", "--out", str(tmp_path)]) == 0  # an epoch is 2 steps
    last = capsys.readouterr().out.strip().splitlines()[-1]
    final = json.loads((tmp_path / "history.json").read_text())["final"]
    assert final["step"] == 1 and json.loads((tmp_path / "history.json").read_text())["epoch"] == []
    assert re.fullmatch(rf"done: 1 steps in \d+\.\d s; train loss {final['train_loss']:.4f} acc "
                        rf"{final['train_accuracy']:.4f}, test loss {final['test_loss']:.4f} acc "
                        rf"{final['test_accuracy']:.4f}; files in {re.escape(str(tmp_path))}: "
                        rf"checkpoint.npz, history.json, history.npz", last), last


@pytest.mark.parametrize("progress, disable", [(True, None), (False, True)])
def test_the_test_pass_has_a_progress_bar_shown_on_a_terminal_only(data, monkeypatch, progress, disable):
    import refnet.train
    bars = []

    def bar(iterable, **kw):
        bars.append(kw)
        return tqdm(iterable, **kw)
    from tqdm import tqdm
    monkeypatch.setattr(refnet.train, "tqdm", bar)
    _trainer(data, progress=progress).evaluate()
    assert [(b["desc"], b["disable"]) for b in bars] == [("test", disable)]  # None: off unless a TTY


def test_cli_resume_continues_and_refuses_changed_flags(tmp_path, capsys):
    assert main(CLI + ["--out", str(tmp_path)]) == 0
    assert main(CLI + ["--out", str(tmp_path), "--resume", "--epochs", "2"]) == 0
    assert json.loads((tmp_path / "history.json").read_text())["epoch"] == [1, 2]
    assert main(CLI + ["--out", str(tmp_path), "--resume", "--lr", "0.5"]) == 2
    assert "--lr was 0.01, now 0.5" in capsys.readouterr().err


def test_cli_resume_from_mid_epoch_matches_a_straight_run_to_the_bit(tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert main(STEPS + ["--out", str(straight), "--steps", "5"]) == 0
    assert main(STEPS + ["--out", str(split), "--steps", "3"]) == 0
    assert main(STEPS + ["--out", str(split), "--steps", "5", "--resume"]) == 0
    for name in ("checkpoint.npz", "history.npz"):
        a, b = (np.load(d / name, allow_pickle=False) for d in (straight, split))
        assert sorted(a.files) == sorted(b.files)
        for k in a.files:
            if k != "__meta__":
                assert np.array_equal(a[k], b[k]), (name, k)


def test_cli_resume_without_a_checkpoint_fails_clearly(tmp_path, capsys):
    assert main(CLI + ["--out", str(tmp_path), "--resume"]) == 2
    assert "no checkpoint" in capsys.readouterr().err


@pytest.mark.skipif(backend.gpu_available(), reason="a GPU is present")
def test_cli_gpu_without_a_gpu_fails_clearly(tmp_path, capsys):
    assert main(CLI + ["--out", str(tmp_path), "--device", "gpu"]) == 2
    assert "cannot use the GPU" in capsys.readouterr().err


@pytest.mark.gpu
def test_training_records_and_resumes_bit_identically_on_the_gpu(data, tmp_path):
    backend.use("gpu")
    try:
        test_resume_continues_bit_identically(data, tmp_path, "sgd", 7)
        history = _trainer(data, steps=12).fit()
        assert np.isfinite(history.steps["angle/1.weight"]).all()
        assert backend.is_cupy_array(_trainer(data).model.parameters()[0].data)
    finally:
        backend.use("cpu")


@pytest.mark.parametrize("kw, match", [
    (dict(batch_size=0), "batch_size"), (dict(epochs=0), "epochs"), (dict(log_every=0), "log_every"),
    (dict(steps=-1), "steps"), (dict(steps=2.5), "steps"),
])
def test_bad_trainer_arguments_are_named(data, kw, match):
    with pytest.raises((ValueError, TypeError), match=match):
        _trainer(data, **kw)
