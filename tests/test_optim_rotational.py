"""The rotational wrapper as specified: against Kosson et al.'s algorithm written here step by step
in plain numpy around textbook SGDM, AdamW and Lion (float64, 60 steps, 1e-12), per unit and per
tensor; the fixed norm and the fixed angle it enforces; the default target angle per inner
optimizer and which decay each formula takes; bad input. State dicts and checkpoints:
tests/test_optim_resume.py; the target angles against theory/: tests/test_theory_rotational.py."""

import math

import numpy as np
import pytest
import theory
from test_optim import grad_at, train

from refnet.nn import Parameter
from refnet.optim import SGD, Adam, Lion, Muon, Rotational, equilibrium_angle

STEPS = 60
TOL = 1e-12


# --- the inner optimizers' proposals without decay (textbook rules) --------------------------
def sgdm_proposal(momentum):
    state = {}

    def u(g, t):
        state["b"] = g.copy() if t == 1 else momentum * state["b"] + g
        return state["b"]
    return u


def adam_proposal(betas, eps):
    state = {"m": 0.0, "v": 0.0}

    def u(g, t):
        state["m"] = betas[0] * state["m"] + (1 - betas[0]) * g
        state["v"] = betas[1] * state["v"] + (1 - betas[1]) * g * g
        return (state["m"] / (1 - betas[0] ** t)) / (np.sqrt(state["v"] / (1 - betas[1] ** t)) + eps)
    return u


def lion_proposal(betas):
    state = {"m": 0.0}

    def u(g, t):
        c = betas[0] * state["m"] + (1 - betas[0]) * g
        state["m"] = betas[1] * state["m"] + (1 - betas[1]) * g
        return np.sign(c)
    return u


def ref_rotational(w, proposal, eta_r, beta=0.9, zero_mean=False, eps=1e-8, per_unit=True, steps=STEPS):
    """Kosson et al.'s rotational update, per neuron (row) or per tensor."""
    shape = w.shape
    as_rows = (lambda a: a.reshape(shape[0], -1)) if per_unit else (lambda a: a.reshape(1, -1))
    norm = lambda a: np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    w = as_rows(w.copy())
    if zero_mean:
        n0 = norm(w)
        w = w - w.mean(axis=1, keepdims=True)
        w = n0 * w / norm(w)
    n, nu = norm(w), 0.0
    for t in range(1, steps + 1):
        u = as_rows(proposal(grad_at(w.reshape(shape), t - 1), t))
        if zero_mean:
            u = u - u.mean(axis=1, keepdims=True)
        u = u - w * (u * w).sum(axis=1, keepdims=True) / norm(w) ** 2
        nu = beta * nu + (1 - beta) * norm(u) ** 2
        w = w - eta_r * n * u / (np.sqrt(nu / (1 - beta ** t)) + eps)
        w = n * w / norm(w)
    return w.reshape(shape)


CASES = {  # name: (inner factory, its proposal, Rotational options)
    "sgdm": (lambda ps: SGD(ps, lr=0.1, momentum=0.9, l2=1e-3), lambda: sgdm_proposal(0.9), {}),
    "sgdm-zero-mean": (lambda ps: SGD(ps, lr=0.1, momentum=0.9, l2=1e-3), lambda: sgdm_proposal(0.9),
                       dict(zero_mean=True, update_norm_decay=0.5)),
    "adamw": (lambda ps: Adam(ps, lr=1e-2, betas=(0.9, 0.99), weight_decay=0.1),
              lambda: adam_proposal((0.9, 0.99), 1e-8), {}),
    "adam-l2-explicit": (lambda ps: Adam(ps, lr=1e-2, l2=0.01), lambda: adam_proposal((0.9, 0.999), 1e-8),
                         dict(eta_r=0.02, update_norm_decay=0.0)),
    "lion": (lambda ps: Lion(ps, lr=1e-3, weight_decay=1.0), lambda: lion_proposal((0.9, 0.99)), {}),
}


@pytest.mark.parametrize("scale_group", ["unit", "tensor"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_kosson_et_al_algorithm_over_60_steps_in_float64(rng, case, scale_group):
    make, proposal, options = CASES[case]
    w = Parameter(rng.standard_normal((5, 3, 2, 2)), scale_group=scale_group)
    bias = Parameter(rng.standard_normal(5), decay=False)
    w0, b0 = w.data.copy(), bias.data.copy()
    opt = Rotational(make([w, bias]), **options)
    eta_r = opt.target(opt.param_groups[0])
    train(opt, [w, bias], STEPS)
    expected = ref_rotational(w0, proposal(), eta_r, beta=options.get("update_norm_decay", 0.9),
                              zero_mean=options.get("zero_mean", False), per_unit=scale_group == "unit")
    np.testing.assert_allclose(w.data, expected, rtol=0, atol=TOL)
    plain = Parameter(b0.copy(), decay=False)  # no scale group: the inner's own step
    train(make([plain]), [plain], STEPS)
    np.testing.assert_allclose(bias.data, plain.data, rtol=0, atol=TOL)


def test_parameters_without_a_scale_group_keep_the_inner_decay(rng):
    head = Parameter(rng.standard_normal((3, 4)))
    w = Parameter(rng.standard_normal((3, 4)), scale_group="unit")
    plain = Parameter(head.data.copy())
    train(Rotational(Adam([w, head], lr=1e-2, weight_decay=0.5)), [w, head], 10)
    train(Adam([plain], lr=1e-2, weight_decay=0.5), [plain], 10)
    np.testing.assert_allclose(head.data, plain.data, rtol=0, atol=TOL)
    assert w.decay and head.decay  # the wrapper switched decay off for its step only


@pytest.mark.parametrize("scale_group", ["unit", "tensor"])
def test_each_scale_group_keeps_its_initial_norm(rng, scale_group):
    w = Parameter(rng.standard_normal((6, 8)) * rng.uniform(0.1, 5, (6, 1)), scale_group=scale_group)
    n0 = np.linalg.norm(w.data, axis=1) if scale_group == "unit" else np.linalg.norm(w.data)
    train(Rotational(SGD([w], lr=0.1, momentum=0.9, weight_decay=0.1)), [w], STEPS)
    n = np.linalg.norm(w.data, axis=1) if scale_group == "unit" else np.linalg.norm(w.data)
    np.testing.assert_allclose(n, n0, rtol=1e-12)


@pytest.mark.parametrize("eta_r", [0.003, 0.05])
def test_without_averaging_every_step_turns_each_unit_by_atan_eta_r(rng, eta_r):
    w = Parameter(rng.standard_normal((6, 8)), scale_group="unit")
    opt = Rotational(Adam([w], lr=1e-3), eta_r=eta_r, update_norm_decay=0.0, eps=0.0)
    for t in range(20):
        before = w.data.copy()
        train(opt, [w], 1, start=t)
        cos = (before * w.data).sum(axis=1) / np.linalg.norm(before, axis=1) / np.linalg.norm(w.data, axis=1)
        np.testing.assert_allclose(np.arccos(np.clip(cos, -1, 1)), math.atan(eta_r), rtol=1e-6)


@pytest.mark.parametrize("make, expected", [
    (lambda ps: SGD(ps, lr=0.1, momentum=0.9, l2=1e-3), math.sqrt(2 * 0.1 * (2 * 1e-3) / 1.9)),  # torch wd = 2 lam
    (lambda ps: SGD(ps, lr=0.1, weight_decay=2e-3), math.sqrt(2 * 0.1 * 2e-3)),  # = l2 1e-3 without momentum
    (lambda ps: SGD(ps, lr=0.1, momentum=0.9, weight_decay=2e-3), math.sqrt(2 * 0.1 * 2e-3 * 0.1 / 1.9)),
    (lambda ps: SGD(ps, lr=0.1, momentum=0.9, nesterov=True, l2=1e-3),
     math.sqrt(2 * 0.1 * (2 * 1e-3) / 1.9) * math.sqrt(1 + 1.8 - 2 * 0.729)),
    (lambda ps: Adam(ps, lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1), math.sqrt(2e-4 * 0.1 / 1.9)),
    (lambda ps: Lion(ps, lr=1e-4, weight_decay=1.0), theory.lion_equilibrium(1e-4, 1.0, 12).angle_small),
    (lambda ps: Lion(ps, lr=1e-3, weight_decay=6.0), theory.lion_equilibrium(1e-3, 6.0, 12).angle_small),
    (lambda ps: Lion(ps, lr=1e-3, betas=(0.0, 0.99), weight_decay=1.0),
     math.sqrt(2e-3)),  # b1 = 0: independent signs, R = 1
], ids=["sgdm-l2", "sgd-wd", "sgdm-wd", "nesterov-l2", "adamw", "lion", "lion-large-lr-wd", "lion-b1-0"])
def test_default_target_is_the_inner_optimizers_equilibrium_angle(rng, make, expected):
    w = Parameter(rng.standard_normal((3, 4)), scale_group="unit")
    opt = Rotational(make([w]))
    assert opt.target(opt.param_groups[0]) == pytest.approx(expected, rel=1e-12)
    assert equilibrium_angle(opt.inner, opt.param_groups[0]) == opt.target(opt.param_groups[0])


def test_default_lion_target_is_refnets_law_not_kosson_et_als_approximation(rng):
    # theory/README.md (16.4) vs Kosson et al.'s linearized form: 16% apart at lr wd = 6e-3
    w = Parameter(rng.standard_normal((3, 4)), scale_group="unit")
    opt = Rotational(Lion([w], lr=1e-3, weight_decay=6.0))
    assert opt.target(opt.param_groups[0]) / theory.lion_angle_kosson(1e-3, 6.0) - 1 > 0.1


def test_default_target_follows_a_learning_rate_schedule_as_its_square_root(rng):
    w = Parameter(rng.standard_normal((3, 4)), scale_group="unit")
    opt = Rotational(Adam([w], lr=1e-3, weight_decay=0.1))
    before = opt.target(opt.param_groups[0])
    opt.param_groups[0]["lr"] = 4e-3
    assert opt.target(opt.param_groups[0]) == pytest.approx(2 * before, rel=1e-12)


def test_zero_lr_leaves_the_weights_where_they_are(rng):
    w = Parameter(rng.standard_normal((3, 4)), scale_group="unit")
    opt = Rotational(SGD([w], lr=0.1, l2=1e-3))
    opt.param_groups[0]["lr"] = 0.0
    w0 = w.data.copy()
    train(opt, [w], 3)
    np.testing.assert_array_equal(w.data, w0)


def _marked(rng):
    return [Parameter(rng.standard_normal((3, 4)), scale_group="unit"), Parameter(rng.standard_normal(3), decay=False)]


@pytest.mark.parametrize("build,error,match", [
    (lambda ps: Rotational(ps), TypeError, r"Rotational\(inner\): got list"),
    (lambda ps: Rotational(Rotational(SGD(ps, lr=0.1, l2=1e-3))), TypeError, r"Rotational\(inner\)"),
    (lambda ps: Rotational(SGD(ps, lr=0.1, l2=1e-3, unit_norm=True)), ValueError, "unit_norm"),
    (lambda ps: Rotational(SGD(ps[1:], lr=0.1, l2=1e-3)), ValueError, "scale_group"),
    (lambda ps: Rotational(SGD(ps, lr=0.1)), ValueError, r"Rotational\(eta_r\).*is 0"),
    (lambda ps: Rotational(Adam(ps, l2=1e-3)), ValueError, r"Rotational\(eta_r\).*depends on the gradients"),
    (lambda ps: Rotational(Muon(ps)), ValueError, r"Rotational\(eta_r\).*Muon"),
    (lambda ps: Rotational(SGD(ps, lr=0.1, momentum=0.9, dampening=0.5, l2=1e-3)), ValueError, "eta_r"),
    (lambda ps: Rotational(SGD(ps, lr=0.1), eta_r=-0.1), ValueError, r"Rotational\(eta_r\): got -0.1"),
    (lambda ps: Rotational(SGD(ps, lr=0.1), eta_r=0.1, update_norm_decay=1.0), ValueError,
     r"Rotational\(update_norm_decay\)"),
    (lambda ps: Rotational(SGD(ps, lr=0.1), eta_r=0.1, zero_mean=1), TypeError, r"Rotational\(zero_mean\)"),
    (lambda ps: Rotational(SGD(ps, lr=0.1), eta_r=0.1, eps=-1.0), ValueError, r"Rotational\(eps\)"),
])
def test_bad_arguments_raise_clear_errors(rng, build, error, match):
    with pytest.raises(error, match=match):
        build(_marked(rng))
