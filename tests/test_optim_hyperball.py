"""Hyperball as specified: against Wen et al.'s update ``W <- R normalize(W - lr R normalize(u))``
written here in plain numpy around textbook SGD(M), Adam and Lion (float64, 60 steps, 1e-12),
per unit and per tensor; the fixed norm, the angle ``atan(lr)`` for an update orthogonal to w,
weight decay having no role; bad input. State dicts and checkpoints: tests/test_optim_resume.py."""

import math

import numpy as np
import pytest
from test_optim import grad_at, train
from test_optim_rotational import adam_proposal, lion_proposal, sgdm_proposal

from refnet.nn import Parameter
from refnet.optim import SGD, Adam, Hyperball, Lion

STEPS = 60
TOL = 1e-12


def ref_hyperball(w, proposal, lr, radius=None, per_unit=True, steps=STEPS):
    """Wen et al.'s update with each row (a unit) or the whole tensor as one 'matrix'."""
    shape = w.shape
    as_rows = (lambda a: a.reshape(shape[0], -1)) if per_unit else (lambda a: a.reshape(1, -1))
    normalize = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    w = as_rows(w.copy())
    R = np.linalg.norm(w, axis=1, keepdims=True) if radius is None else radius
    for t in range(1, steps + 1):
        u = as_rows(proposal(grad_at(w.reshape(shape), t - 1), t))
        w = R * normalize(w - lr * R * normalize(u))
    return w.reshape(shape)


CASES = {  # name: (inner factory, its proposal, lr, Hyperball options)
    "sgd": (lambda ps: SGD(ps, lr=0.05), lambda: sgdm_proposal(0.0), 0.05, {}),
    "sgdm-decay-ignored": (lambda ps: SGD(ps, lr=0.05, momentum=0.9, l2=0.1, weight_decay=0.3),
                           lambda: sgdm_proposal(0.9), 0.05, {}),
    "adam": (lambda ps: Adam(ps, lr=0.01, betas=(0.9, 0.99)), lambda: adam_proposal((0.9, 0.99), 1e-8), 0.01, {}),
    "lion-radius": (lambda ps: Lion(ps, lr=0.02, weight_decay=1.0), lambda: lion_proposal((0.9, 0.99)), 0.02,
                    dict(radius=3.0)),
}


@pytest.mark.parametrize("scale_group", ["unit", "tensor"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_wen_et_al_update_over_60_steps_in_float64(rng, case, scale_group):
    make, proposal, lr, options = CASES[case]
    w = Parameter(rng.standard_normal((5, 3, 2, 2)), scale_group=scale_group)
    bias = Parameter(rng.standard_normal(5), decay=False)
    w0, b0 = w.data.copy(), bias.data.copy()
    train(Hyperball(make([w, bias]), **options), [w, bias], STEPS)
    expected = ref_hyperball(w0, proposal(), lr, radius=options.get("radius"), per_unit=scale_group == "unit")
    np.testing.assert_allclose(w.data, expected, rtol=0, atol=TOL)
    plain = Parameter(b0.copy(), decay=False)
    train(make([plain]), [plain], STEPS)
    np.testing.assert_allclose(bias.data, plain.data, rtol=0, atol=TOL)


@pytest.mark.parametrize("lr", [0.01, 0.3])
def test_an_update_orthogonal_to_w_turns_it_by_atan_lr_every_step(rng, lr):
    w = Parameter(rng.standard_normal((6, 8)) * rng.uniform(0.1, 5, (6, 1)), scale_group="unit")
    n0 = np.linalg.norm(w.data, axis=1)
    opt = Hyperball(SGD([w], lr=lr, l2=0.5))  # plain SGD on a scale-invariant gradient; l2 ignored
    for t in range(20):
        before = w.data.copy()
        g = rng.standard_normal(w.shape)
        g -= before * ((g * before).sum(axis=1, keepdims=True) / (before * before).sum(axis=1, keepdims=True))
        train(opt, [w], 1, grad=lambda a, t, g=g: g * rng.uniform(1e-3, 1e3))
        cos = (before * w.data).sum(axis=1) / np.linalg.norm(before, axis=1) / np.linalg.norm(w.data, axis=1)
        np.testing.assert_allclose(np.arccos(np.clip(cos, -1, 1)), math.atan(lr), rtol=1e-9)
        np.testing.assert_allclose(np.linalg.norm(w.data, axis=1), n0, rtol=1e-12)


def test_a_zero_proposal_leaves_the_weights_where_they_are(rng):
    w = Parameter(rng.standard_normal((3, 4)), scale_group="unit")
    w0 = w.data.copy()
    train(Hyperball(SGD([w], lr=0.1)), [w], 3, grad=lambda a, t: np.zeros_like(a))
    np.testing.assert_allclose(w.data, w0, rtol=0, atol=1e-15)


@pytest.mark.parametrize("build,error,match", [
    (lambda ps: Hyperball(ps), TypeError, r"Hyperball\(inner\): got list"),
    (lambda ps: Hyperball(Adam(ps, unit_norm=True)), ValueError, "unit_norm"),
    (lambda ps: Hyperball(Adam(ps[1:])), ValueError, "scale_group"),
    (lambda ps: Hyperball(Adam(ps), radius=0), ValueError, r"Hyperball\(radius\): got 0"),
    (lambda ps: Hyperball(Adam(ps), radius=-1.0), ValueError, r"Hyperball\(radius\): got -1.0"),
    (lambda ps: Hyperball(Adam(ps), radius="1"), TypeError, r"Hyperball\(radius\)"),
    (lambda ps: Hyperball(Adam(ps), eps=float("nan")), ValueError, r"Hyperball\(eps\)"),
])
def test_bad_arguments_raise_clear_errors(rng, build, error, match):
    ps = [Parameter(rng.standard_normal((3, 4)), scale_group="unit"), Parameter(rng.standard_normal(3), decay=False)]
    with pytest.raises(error, match=match):
        build(ps)
