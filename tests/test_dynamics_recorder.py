"""The per-step record (Trainer with ``log_every=1``, ``dynamics.Recorder``) computes the same
quantities as the plain formulas, in float64, to a stated tolerance: relative 1e-5 for the
norms, the effective lr and ``||w|| ||g||`` (float32 one-pass sums against float64 sums), and
relative 1e-5 for the angle from 1e-1 rad down to 1e-7 rad (1e-4 at 1e-7 rad when the step is
mostly radial), where ``arccos`` in float32 is off by more than 1e-2 at 1e-3 rad. The same
for every way the record takes the step, param groups of different kinds and lrs, a schedule,
whole-tensor groups and the bench's 784-256-256 MLP."""

from types import SimpleNamespace

import numpy as np
import pytest

from refnet.dynamics import Recorder
from refnet.invariance import angular_update, group_sq_norms, row_dots
from refnet.nn.models import mlp, trainable_parameters
from refnet.optim import SGD
from refnet.train import Trainer

RTOL = 1e-5


def old_angle(a, b, group):
    """The formula the record used before (half chord of the unit vectors), in float64."""
    rows = (lambda w: w.reshape(w.shape[0], -1)) if group == "unit" else (lambda w: w.reshape(1, -1))
    a, b = (rows(np.asarray(w, dtype=np.float64)) for w in (a, b))
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return 2 * np.arctan2(np.linalg.norm(a - b, axis=1), np.linalg.norm(a + b, axis=1))


def turned(rng, shape, angle, radial=0.0):
    """float32 (w, w') with w' turned from w by about ``angle`` per row, scaled by 1 + radial."""
    w = rng.standard_normal(shape)
    u = rng.standard_normal(shape)
    u -= (u * w).sum(axis=1, keepdims=True) / (w * w).sum(axis=1, keepdims=True) * w
    u *= np.linalg.norm(w, axis=1, keepdims=True) / np.linalg.norm(u, axis=1, keepdims=True)
    w2 = (1 + radial) * (np.cos(angle) * w + np.sin(angle) * u)
    return w.astype(np.float32), w2.astype(np.float32)


@pytest.mark.parametrize("angle", [1e-1, 1e-2, 1e-3, 1e-5, 1e-7])
@pytest.mark.parametrize("radial", [0.0, -1e-3])
def test_angle_matches_the_float64_formula_at_every_size(rng, angle, radial):
    # A step that mostly shrinks w (radial 1e-3, as 2 lr lam with lr 0.1, l2 5e-3) leaves
    # eps32 * radial/angle / sqrt(d) in the part across w: 2e-5 at 1e-7 rad, hence 1e-4 there.
    a, b = turned(rng, (64, 784), angle, radial)
    rtol = 1e-4 if radial and angle < 1e-5 else RTOL
    np.testing.assert_allclose(angular_update(a, b, "unit"), old_angle(a, b, "unit"), rtol=rtol)


def test_arccos_in_float32_fails_at_a_milliradian_where_the_record_does_not(rng):
    a, b = turned(rng, (64, 784), 1e-3)
    exact = old_angle(a, b, "unit")
    cos = row_dots(a, b) / np.sqrt(row_dots(a, a) * row_dots(b, b))
    arccos32 = np.arccos(np.clip(cos, -1, 1).astype(np.float32))
    assert np.max(np.abs(arccos32 / exact - 1)) > 1e-2
    assert np.max(np.abs(angular_update(a, b, "unit") / exact - 1)) < RTOL


@pytest.mark.parametrize("group, shape", [("unit", (16, 3, 3, 3)), ("tensor", (32, 40)), (None, (7,))])
def test_angle_with_known_norms_and_buffers_equals_the_plain_call(rng, group, shape):
    a = rng.standard_normal(shape).astype(np.float32)
    b = (a + 0.01 * rng.standard_normal(shape)).astype(np.float32)
    work = np.full_like(a, np.nan)
    got = angular_update(a, b, group, sq_before=group_sq_norms(a, group), work=work)
    np.testing.assert_array_equal(got, angular_update(a, b, group))
    np.testing.assert_allclose(got, old_angle(a, b, "unit" if group == "unit" else "tensor"), rtol=RTOL)
    assert got.dtype == np.float64


@pytest.mark.parametrize("group, shape", [("unit", (16, 3, 3, 3)), ("tensor", (32, 40))])
def test_group_sq_norms_match_float64_sums(rng, group, shape):
    w = rng.standard_normal(shape).astype(np.float32)
    rows = w.reshape(shape[0], -1) if group == "unit" else w.reshape(1, -1)
    want = (rows.astype(np.float64) ** 2).sum(axis=1)
    np.testing.assert_allclose(group_sq_norms(w, group), want, rtol=RTOL)


# Each way the record takes the angle (dynamics.applied_step): from SGD's momentum buffer
# (also with dampening), from the plain SGD step (with and without L2), and measured from a
# copy of w (Nesterov, decoupled weight decay, unit_norm: the step is not SGD's plain one).
OPTIONS = {"momentum": dict(momentum=0.9, l2=5e-4), "momentum, dampening": dict(momentum=0.9, dampening=0.5, l2=5e-4),
           "plain": dict(l2=5e-4), "plain, no l2": dict(), "nesterov": dict(momentum=0.9, nesterov=True, l2=5e-4),
           "weight_decay": dict(momentum=0.9, weight_decay=1e-3), "unit_norm": dict(l2=5e-4, unit_norm=True)}


def _setup(rng, steps=4, options=OPTIONS["momentum"], dead=()):
    model = mlp(20, width=16, depth=2, norm="bn", rng=0)
    for name, p in model.named_parameters():
        if name in ("2.weight", "5.weight"):
            p.data[list(dead)] = 0   # BN's gamma 0: the unit's weight gets no gradient, only L2
    opt = SGD(trainable_parameters(model), lr=0.1, **options)
    x = rng.standard_normal((steps * 8, 1, 4, 5)).astype(np.float32)
    y = rng.integers(0, 10, size=steps * 8)
    return model, opt, x, y


def _old_rows(model, opt, x, y):
    """Take the steps by hand, recording with the plain float64 formulas."""
    from refnet.ops import softmax_cross_entropy
    tracked = [(n, p) for n, p in model.named_parameters() if p.scale_group is not None]
    rows = {}
    for i in range(0, len(x), 8):
        model.zero_grad()
        _, dlogits = softmax_cross_entropy(model(x[i:i + 8]), y[i:i + 8])
        model.backward(dlogits)
        before = {n: (p.data.astype(np.float64), p.grad.astype(np.float64)) for n, p in tracked}
        opt.step()
        for n, p in tracked:
            w, g = before[n]
            sq = (w.reshape(w.shape[0], -1) ** 2).sum(axis=1)
            g2 = (g.reshape(g.shape[0], -1) ** 2).sum(axis=1)
            for key, v in (("norm", np.sqrt(sq)), ("effective_lr", 0.1 / sq),
                           ("grad_norm_unit", np.sqrt(sq * g2)), ("angle", old_angle(w, p.data, "unit"))):
                rows.setdefault(f"{key}/{n}", []).append(v)
    return {k: np.array(v) for k, v in rows.items()}


@pytest.mark.parametrize("options", list(OPTIONS.values()), ids=list(OPTIONS))
def test_trainer_record_equals_the_plain_formulas(rng, options):
    model, opt, x, y = _setup(rng, options=options)
    want = _old_rows(*_setup(np.random.default_rng(0), options=options)[:2], x, y)
    data = SimpleNamespace(x_train=x, y_train=y, x_test=None, name="t")
    trainer = Trainer(model, opt, data, batch_size=8, log_every=1, progress=False)
    for i in range(0, len(x), 8):
        trainer.train_step(x[i:i + 8], y[i:i + 8])
    got = trainer.history.steps
    assert set(want) <= set(got)
    for key, v in want.items():
        np.testing.assert_allclose(got[key], v, rtol=RTOL, err_msg=key)


@pytest.mark.parametrize("options", list(OPTIONS.values()), ids=list(OPTIONS))
def test_recorder_equals_the_plain_formulas(rng, options):
    model, opt, x, y = _setup(rng, options=options)
    want = _old_rows(*_setup(np.random.default_rng(0), options=options)[:2], x, y)
    rec = Recorder(model, opt).attach()
    _old_rows(model, opt, x, y)  # the same steps; the Recorder records them
    got = rec.detach().steps
    for key, v in want.items():
        np.testing.assert_allclose(got[key], v, rtol=RTOL, err_msg=key)


def test_a_unit_that_only_shrinks_turns_by_its_rounding_only(rng):
    # dead units (zero gradient) only shrink under L2: the step is radial, the angle ~0
    a, b = turned(rng, (8, 784), 1e-3)
    b[::2] = (1 - 1e-3) * a[::2]
    got, want = angular_update(a, b, "unit"), old_angle(a, b, "unit")
    np.testing.assert_allclose(got[1::2], want[1::2], rtol=RTOL)
    np.testing.assert_allclose(got[::2], want[::2], rtol=0, atol=1e-9)
    assert np.all(got[::2] < 1e-7)


@pytest.mark.parametrize("options", [OPTIONS[k] for k in ("momentum", "plain", "nesterov")],
                         ids=["momentum", "plain", "nesterov"])
def test_a_dead_unit_in_training_turns_by_rounding_only_and_the_others_as_before(rng, options):
    dead = (0, 5)
    model, opt, x, y = _setup(rng, options=options, dead=dead)
    want = _old_rows(*_setup(np.random.default_rng(0), options=options, dead=dead)[:2], x, y)
    data = SimpleNamespace(x_train=x, y_train=y, x_test=None, name="t")
    trainer = Trainer(model, opt, data, batch_size=8, log_every=1, progress=False)
    for i in range(0, len(x), 8):
        trainer.train_step(x[i:i + 8], y[i:i + 8])
    for key in ("angle/1.weight", "angle/4.weight"):
        got, v = trainer.history.steps[key], want[key]
        alive = [i for i in range(v.shape[1]) if i not in dead]
        np.testing.assert_allclose(got[:, alive], v[:, alive], rtol=RTOL, err_msg=key)
        np.testing.assert_allclose(got[:, list(dead)], v[:, list(dead)], rtol=0, atol=1e-7, err_msg=key)
        assert np.all(got[:, list(dead)] < 1e-6) and np.all(v[:, alive] > 1e-4)


# The record handles every tracked parameter at once (dynamics.StepAngles: one row per scale
# group of all of them, per-row lr): param groups of different kinds and lrs, a schedule that
# changes the lr every step, whole-tensor groups (LayerNorm), and the bench's MLP must all
# give the plain float64 formulas, to RTOL, parameter by parameter.
def _reference(model, opt, x, y, batch, schedule=None):
    """Take the steps by hand and record with the plain formulas, in float64: per parameter
    the norm, effective lr (its group's lr / ||w||^2), ||w|| ||g||, angle (``old_angle``
    between copies of w) and the squared norm of its momentum buffer."""
    from refnet.ops import softmax_cross_entropy
    group_of = {id(p): g for g in opt.param_groups for p in g["params"]}
    base = [g["lr"] for g in opt.param_groups]
    tracked = [(n, p) for n, p in model.named_parameters() if p.scale_group is not None]
    rows = {}
    for step, i in enumerate(range(0, len(x), batch)):
        if schedule is not None:
            for g, lr in zip(opt.param_groups, base):
                g["lr"] = lr * schedule(step)
        model.zero_grad()
        _, dlogits = softmax_cross_entropy(model(x[i:i + batch]), y[i:i + batch])
        model.backward(dlogits)
        before = {n: (p.data.astype(np.float64), p.grad.astype(np.float64)) for n, p in tracked}
        opt.step()
        for n, p in tracked:
            as_rows = (lambda a: a.reshape(a.shape[0], -1)) if p.scale_group == "unit" else (lambda a: a.reshape(1, -1))
            w, g = (as_rows(a) for a in before[n])
            sq, g2 = (w * w).sum(axis=1), (g * g).sum(axis=1)
            got = {"norm": np.sqrt(sq), "effective_lr": group_of[id(p)]["lr"] / sq,
                   "grad_norm_unit": np.sqrt(sq * g2), "angle": old_angle(before[n][0], p.data, p.scale_group)}
            buf = opt.state[p].get("momentum_buffer")
            if buf is not None:
                b = as_rows(buf.astype(np.float64))
                got["buffer_sq"] = (b * b).sum(axis=1)
            for key, v in got.items():
                rows.setdefault(f"{key}/{n}", []).append(v)
    return {k: np.array(v) for k, v in rows.items()}


def _mixed_groups(model):
    """Param groups of three kinds: momentum (lr 0.1), plain SGD (lr 0.03), Nesterov (0.05)."""
    named = dict(model.named_parameters())
    kinds = [("1.weight", dict(lr=0.1, momentum=0.9, l2=5e-4)), ("4.weight", dict(lr=0.03, momentum=0.0, l2=1e-3)),
             ("7.weight", dict(lr=0.05, momentum=0.9, nesterov=True, l2=5e-4))]
    groups = [{"params": [named[n]], **opts} for n, opts in kinds]
    rest = [p for n, p in named.items() if n not in dict(kinds) and p.requires_grad]
    return SGD(groups + [{"params": rest}], lr=0.1, momentum=0.9)


def _assert_record(got, want, keys=None):
    for key in keys or want:
        np.testing.assert_allclose(got[key], want[key], rtol=RTOL, err_msg=key)


def _data(rng, n, shape):
    return rng.standard_normal((n,) + shape).astype(np.float32), rng.integers(0, 10, size=n)


def test_trainer_record_with_groups_of_every_kind_and_lr(rng):
    x, y = _data(rng, 32, (1, 4, 5))
    model = mlp(20, width=16, depth=3, norm="bn", rng=0)
    ref_model = mlp(20, width=16, depth=3, norm="bn", rng=0)
    want = _reference(ref_model, _mixed_groups(ref_model), x, y, 8)
    trainer = Trainer(model, _mixed_groups(model), SimpleNamespace(x_train=x, y_train=y, x_test=None, name="t"),
                      batch_size=8, log_every=1, progress=False)
    for i in range(0, len(x), 8):
        trainer.train_step(x[i:i + 8], y[i:i + 8])
    _assert_record(trainer.history.steps, want, [k for k in want if not k.startswith("buffer_sq")])


def test_recorder_with_groups_of_every_kind_and_lr_and_its_buffer_norms(rng):
    x, y = _data(rng, 32, (1, 4, 5))
    ref_model = mlp(20, width=16, depth=3, norm="bn", rng=0)
    want = _reference(ref_model, _mixed_groups(ref_model), x, y, 8)
    model = mlp(20, width=16, depth=3, norm="bn", rng=0)
    opt = _mixed_groups(model)
    rec = Recorder(model, opt).attach()
    _reference(model, opt, x, y, 8)
    got = rec.detach().steps
    assert {k for k in want if k.startswith("buffer_sq")} == {"buffer_sq/1.weight", "buffer_sq/7.weight"}
    _assert_record(got, want)


def test_trainer_record_follows_a_schedule_that_changes_the_lr_every_step(rng):
    x, y = _data(rng, 40, (1, 4, 5))
    schedule = lambda step: 1.0 / (1 + step)  # noqa: E731
    ref_model = mlp(20, width=16, depth=2, norm="bn", rng=0)
    want = _reference(ref_model, SGD(trainable_parameters(ref_model), lr=0.1, momentum=0.9, l2=5e-4), x, y, 8, schedule)
    model = mlp(20, width=16, depth=2, norm="bn", rng=0)
    trainer = Trainer(model, SGD(trainable_parameters(model), lr=0.1, momentum=0.9, l2=5e-4),
                      SimpleNamespace(x_train=x, y_train=y, x_test=None, name="t"), batch_size=8,
                      schedule=schedule, log_every=1, progress=False)
    for i in range(0, len(x), 8):
        trainer.train_step(x[i:i + 8], y[i:i + 8])
        trainer.step += 1
    _assert_record(trainer.history.steps, want, [k for k in want if not k.startswith("buffer_sq")])


@pytest.mark.parametrize("options", [OPTIONS[k] for k in ("momentum", "plain", "nesterov")],
                         ids=["momentum", "plain", "nesterov"])
def test_record_of_whole_tensor_groups_layernorm(rng, options):
    x, y = _data(rng, 32, (1, 4, 5))
    ref_model = mlp(20, width=16, depth=2, norm="ln", rng=0)
    assert {p.scale_group for p in ref_model.parameters()} >= {"tensor"}
    want = _reference(ref_model, SGD(trainable_parameters(ref_model), lr=0.1, **options), x, y, 8)
    model = mlp(20, width=16, depth=2, norm="ln", rng=0)
    opt = SGD(trainable_parameters(model), lr=0.1, **options)
    rec = Recorder(model, opt).attach()
    _reference(model, opt, x, y, 8)
    _assert_record(rec.detach().steps, want)


def test_record_on_the_bench_mlp_keeps_the_milliradian_angle(rng):
    # 784-256-256 at lr 0.01, momentum 0.9, l2 5e-4 (the bench's record case): the angle is
    # about 1e-3 rad, where arccos in float32 is off by more than 1e-2
    x, y = _data(rng, 4 * 128, (1, 28, 28))
    ref_model = mlp(784, width=256, depth=2, norm="bn", rng=0)
    want = _reference(ref_model, SGD(trainable_parameters(ref_model), lr=0.01, momentum=0.9, l2=5e-4), x, y, 128)
    model = mlp(784, width=256, depth=2, norm="bn", rng=0)
    trainer = Trainer(model, SGD(trainable_parameters(model), lr=0.01, momentum=0.9, l2=5e-4),
                      SimpleNamespace(x_train=x, y_train=y, x_test=None, name="t"), batch_size=128,
                      log_every=1, progress=False)
    for i in range(0, len(x), 128):
        trainer.train_step(x[i:i + 128], y[i:i + 128])
    got = trainer.history.steps
    assert 1e-4 < np.median(want["angle/4.weight"][1:]) < 1e-2
    _assert_record(got, want, [k for k in want if not k.startswith("buffer_sq")])
