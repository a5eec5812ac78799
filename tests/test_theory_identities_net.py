"""THEORY.md's exact identities hold on real refnet networks, to rounding (float64).

Tiny MLPs from ``refnet.nn.models.mlp`` -- BatchNorm (a scale group per unit) and LayerNorm
(a scale group per tensor) -- on a seeded synthetic problem from ``refnet.data``. The
normalizations' eps is set to 0: the identities are exact only without it (eps makes the
error ~ eps/variance). Each identity is checked against the closed form in ``theory``:
invariance (1, 2), ``L_lam(a w) = L_{lam a^2}(w)`` (1), the one-step angle exponents (3), the
SGD norm recursion (4), the symmetries of the optimizers (5) and the exponential-lr
equivalence (6). Convention A throughout: ``l2=lam`` adds ``lam ||w||^2`` to the loss.
"""

import numpy as np
import pytest

import theory
from refnet.data import synthetic
from refnet.invariance import angular_update, group_sq_norms
from refnet.nn.models import mlp, trainable_parameters
from refnet.nn.norm import LayerNorm, _BatchNorm
from refnet.ops import softmax_cross_entropy
from refnet.optim import SGD, Adam

EXACT = 1e-10
NORMS = ["bn", "ln"]


@pytest.fixture(scope="module")
def batches():
    """Eight batches of 32 examples of a 4x4, 3-class problem, in a fixed order."""
    data = synthetic(n_train=256, n_test=3, shape=(1, 4, 4), num_classes=3, seed=0)
    x = data.x_train.astype(np.float64)
    return [(x[i:i + 32], data.y_train[i:i + 32]) for i in range(0, 256, 32)]


def net(norm, fully_invariant=False, seed=0):
    """A 16-12-12-3 MLP, float64, eps = 0. ``fully_invariant``: no gamma/beta and a frozen
    head, so that every trained parameter is a scale-invariant weight."""
    model = mlp(16, num_classes=3, width=12, depth=2, norm=norm, rng=seed, dtype=np.float64,
                affine=not fully_invariant, train_head=not fully_invariant)
    for m in model.modules():
        if isinstance(m, (_BatchNorm, LayerNorm)):
            m.eps = 0.0
    return model


def marked(model):
    return [p for p in model.parameters() if p.scale_group is not None]


def rows(p, a=None):
    """``a`` (default ``p.data``) with one row per scale group."""
    a = p.data if a is None else a
    return a.reshape(a.shape[0] if p.scale_group == "unit" else 1, -1)


def loss_and_grads(model, batch):
    model.zero_grad()
    loss, dlogits = softmax_cross_entropy(model(batch[0]), batch[1])
    model.backward(dlogits)
    return float(loss)


def group_factors(p, rng):
    """One factor a in [0.1, 10] per scale group, shaped to broadcast over ``p``."""
    n = p.shape[0] if p.scale_group == "unit" else 1
    shape = (n,) + (1,) * (p.data.ndim - 1) if p.scale_group == "unit" else (1,) * p.data.ndim
    return np.exp(rng.uniform(np.log(0.1), np.log(10.0), n)).reshape(shape)


def directions(model):
    return [rows(p) / np.linalg.norm(rows(p), axis=1, keepdims=True) for p in marked(model)]


def rel(a, b):
    return abs(a - b) / abs(b)


# --- identities 1 and 2: invariance ------------------------------------------------------------
@pytest.mark.parametrize("norm", NORMS)
def test_loss_is_unchanged_when_each_scale_group_is_rescaled(norm, batches, rng):
    model = net(norm)
    loss = loss_and_grads(model, batches[0])
    for p in marked(model):
        p.data *= group_factors(p, rng)
    assert rel(loss_and_grads(model, batches[0]), loss) < EXACT


@pytest.mark.parametrize("norm", NORMS)
def test_gradient_scales_inversely_with_each_groups_scale(norm, batches, rng):
    model = net(norm)
    loss_and_grads(model, batches[0])
    before = [p.grad.copy() for p in marked(model)]
    factors = [group_factors(p, rng) for p in marked(model)]
    for p, a in zip(marked(model), factors):
        p.data *= a
    loss_and_grads(model, batches[0])
    for p, a, g in zip(marked(model), factors, before):
        assert np.linalg.norm(a * p.grad - g) / np.linalg.norm(g) < EXACT


@pytest.mark.parametrize("norm", NORMS)
def test_gradient_is_orthogonal_to_each_scale_group(norm, batches):
    model = net(norm)
    loss_and_grads(model, batches[0])
    for p in marked(model):
        w, g = rows(p), rows(p, p.grad)
        cos = (w * g).sum(axis=1) / (np.linalg.norm(w, axis=1) * np.linalg.norm(g, axis=1))
        assert np.abs(cos).max() < EXACT


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("a", [0.3, 4.0])
def test_rescaled_l2_loss_equals_l2_loss_with_lam_times_a_squared(norm, a, batches):
    """``L(a w) + lam ||a w||^2 = L(w) + (lam a^2) ||w||^2``, ``w``: every scale-invariant weight."""
    lam, model = 0.01, net(norm)
    sq = sum(float((p.data ** 2).sum()) for p in marked(model))
    unscaled = loss_and_grads(model, batches[0]) + theory.l2_after_rescaling(lam, a) * sq
    for p in marked(model):
        p.data *= a
    scaled = loss_and_grads(model, batches[0]) + lam * sum(float((p.data ** 2).sum()) for p in marked(model))
    assert rel(scaled, unscaled) < EXACT


# --- identity 3: one-step angle exponents ------------------------------------------------------
ONE_STEP = {"sgd": (SGD, dict(lr=1e-3)), "adam": (Adam, dict(lr=1e-5, eps=1e-300))}


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_one_step_angle_scales_as_c_to_the_theory_exponent(norm, optimizer, batches):
    """One step after ``w -> c w``: angle ~ c^-2 (SGD), c^-1 (Adam, eps negligible); slope of
    log(angle) against log(c) fitted per scale group over c in [0.5, 8]."""
    cls, options = ONE_STEP[optimizer]
    cs = np.geomspace(0.5, 8.0, 5)
    angles = []
    for c in cs:
        model = net(norm)
        for p in marked(model):
            p.data *= c
        before = [p.data.copy() for p in marked(model)]
        loss_and_grads(model, batches[0])
        cls(trainable_parameters(model), **options).step()
        angles.append(np.concatenate([angular_update(w, p.data, p.scale_group)
                                      for w, p in zip(before, marked(model))]))
    slopes = np.polyfit(np.log(cs), np.log(np.array(angles)), 1)[0]
    assert np.abs(slopes - theory.one_step_angle_scaling(optimizer)).max() < 1e-3


# --- identity 4: SGD norm recursion ------------------------------------------------------------
@pytest.mark.parametrize("norm", NORMS)
def test_sgd_norm_recursion_holds_at_every_step(norm, batches):
    """``||w_{t+1}||^2 = (1 - 2 lr lam)^2 ||w_t||^2 + lr^2 ||g_t||^2`` per group, 24 steps."""
    lr, lam, model = 0.2, 0.05, net(norm)
    opt = SGD(trainable_parameters(model), lr=lr, l2=lam)
    worst = 0.0
    for t in range(24):
        loss_and_grads(model, batches[t % len(batches)])
        predicted = [theory.sgd_norm_recursion(group_sq_norms(p), lr, lam, group_sq_norms(p.grad, p.scale_group))
                     for p in marked(model)]
        opt.step()
        worst = max(worst, max(np.abs(group_sq_norms(p) / x - 1).max() for p, x in zip(marked(model), predicted)))
    assert worst < EXACT


# --- identity 5: symmetries of the optimizers --------------------------------------------------
SYMMETRIES = {
    "sgd": (SGD, dict(lr=0.2, l2=1e-2)),
    "sgd_momentum": (SGD, dict(lr=0.05, momentum=0.9, l2=1e-2)),
    "adam": (Adam, dict(lr=1e-2, l2=1e-2, eps=1e-8)),
    "adamw": (Adam, dict(lr=1e-2, weight_decay=1e-1, eps=1e-8)),
}


def mapped_options(rule, options, c):
    """``options`` after ``rule``'s map for ``w0 -> c w0`` (theory.symmetry_map)."""
    new = theory.symmetry_map(rule, c, lr=options["lr"], lam=options.get("l2", 0.0),
                              wd=options.get("weight_decay", 0.0), eps=options.get("eps", 0.0))
    out = dict(options, lr=new["lr"])
    for key, theirs in (("l2", "lam"), ("weight_decay", "wd"), ("eps", "eps")):
        if key in options:
            out[key] = new[theirs]
    return out


def run_directions(norm, cls, options, c, batches, steps=100):
    model = net(norm, fully_invariant=True)
    for p in marked(model):
        p.data *= c
    opt = cls(trainable_parameters(model), **options)
    for t in range(steps):
        loss_and_grads(model, batches[t % len(batches)])
        opt.step()
    return directions(model)


def direction_gap(norm, optimizer, rule, batches, c=3.0):
    cls, options = SYMMETRIES[optimizer]
    a = run_directions(norm, cls, options, 1.0, batches)
    b = run_directions(norm, cls, mapped_options(rule, options, c), c, batches)
    return max(np.abs(u - v).max() for u, v in zip(a, b))


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("optimizer", list(SYMMETRIES))
def test_symmetry_map_leaves_directions_unchanged_after_100_steps(norm, optimizer, batches):
    assert direction_gap(norm, optimizer, optimizer, batches) < 1e-8


@pytest.mark.parametrize("norm", NORMS)
def test_adam_with_l2_under_the_sgd_map_changes_the_directions(norm, batches):
    assert direction_gap(norm, "adam", "sgd", batches) > 1e-3


# --- identity 6: SGD + L2 is SGD at an exponentially growing lr --------------------------------
@pytest.mark.parametrize("norm", NORMS)
def test_sgd_l2_equals_sgd_without_l2_at_exponentially_growing_lr(norm, batches):
    """Same directions, and ``||w_t|| = (1 - 2 lr lam)^t ||u_t||``, after 100 steps."""
    lr, lam, steps = 0.1, 0.05, 100
    with_l2, without = net(norm, fully_invariant=True), net(norm, fully_invariant=True)
    opt_a = SGD(trainable_parameters(with_l2), lr=lr, l2=lam)
    opt_b = SGD(trainable_parameters(without), lr=lr)
    for t in range(steps):
        opt_b.param_groups[0]["lr"] = float(theory.exponential_lr_equivalent(lr, lam, t))
        for model, opt in ((with_l2, opt_a), (without, opt_b)):
            loss_and_grads(model, batches[t % len(batches)])
            opt.step()
    assert max(np.abs(u - v).max() for u, v in zip(directions(with_l2), directions(without))) < EXACT
    q = 1 - 2 * lr * lam
    for p, u in zip(marked(with_l2), marked(without)):
        ratio = np.sqrt(group_sq_norms(p) / group_sq_norms(u))
        assert np.abs(ratio / q ** steps - 1).max() < EXACT


def momentum_schedule_gap(norm, batches, buffer=True):
    """Largest direction gap after 100 steps between SGD + momentum 0.9 + L2 and SGD + momentum
    0.9 on ``exponential_lr_momentum``, with or without the initial buffer of README section 24."""
    lr, lam, mu, steps = 0.05, 0.01, 0.9, 100
    with_l2, without = net(norm, fully_invariant=True), net(norm, fully_invariant=True)
    opt_a = SGD(trainable_parameters(with_l2), lr=lr, momentum=mu, l2=lam)
    opt_b = SGD(trainable_parameters(without), lr=lr, momentum=mu)
    if buffer:
        k = theory.exponential_lr_initial_buffer(lr, lam, mu)
        for p in trainable_parameters(without):
            opt_b.state.setdefault(p, {})["momentum_buffer"] = k * p.data
    for t in range(steps):
        opt_b.param_groups[0]["lr"] = float(theory.exponential_lr_momentum(lr, lam, t, mu))
        for model, opt in ((with_l2, opt_a), (without, opt_b)):
            loss_and_grads(model, batches[t % len(batches)])
            opt.step()
    return max(np.abs(u - v).max() for u, v in zip(directions(with_l2), directions(without)))


@pytest.mark.parametrize("norm", NORMS)
def test_sgd_momentum_l2_equals_sgd_momentum_at_exponential_lr_from_the_initial_buffer(norm, batches):
    assert momentum_schedule_gap(norm, batches) < EXACT


@pytest.mark.parametrize("norm", NORMS)
def test_sgd_momentum_exponential_lr_from_a_zero_buffer_drifts(norm, batches):
    assert momentum_schedule_gap(norm, batches, buffer=False) > 1e-6
