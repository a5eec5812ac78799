"""Lion as specified: against the paper's algorithm (Chen et al. 2023, Algorithm 2) written here
step by step in plain numpy, decoupled decay only on ``decay`` parameters, param groups, bad
input. State dicts and checkpoints: tests/test_optim_resume.py."""

import numpy as np
import pytest
from test_optim import grad_at, make_params, train

from refnet.optim import Lion

STEPS = 60
TOL = 1e-12


def ref_lion(w, decay, lr=1e-4, betas=(0.9, 0.99), wd=0.0, steps=STEPS, grad=grad_at):
    """The paper's update: c = b1 m + (1-b1) g; w -= lr (sign(c) + wd w); m = b2 m + (1-b2) g."""
    w, m = w.copy(), np.zeros_like(w)
    b1, b2 = betas
    for t in range(steps):
        g = grad(w, t)
        c = b1 * m + (1 - b1) * g
        w = w - lr * (np.sign(c) + (wd if decay else 0.0) * w)
        m = b2 * m + (1 - b2) * g
    return w


SETTINGS = [dict(lr=1e-2), dict(lr=3e-3, betas=(0.95, 0.98)), dict(lr=1e-2, weight_decay=0.5),
            dict(lr=2e-2, betas=(0.0, 0.5), weight_decay=1.0)]


@pytest.mark.parametrize("cfg", SETTINGS, ids=str)
def test_lion_matches_the_papers_algorithm_over_60_steps_in_float64(rng, cfg):
    params = make_params(rng, shapes=((3, 4), (5,), (2, 3, 2, 2)), decay=(True, False, True))
    w0 = [p.data.copy() for p in params]
    train(Lion(params, **cfg), params, STEPS)
    ref = dict(cfg)
    ref["wd"] = ref.pop("weight_decay", 0.0)
    for p, w in zip(params, w0):
        np.testing.assert_allclose(p.data, ref_lion(w, p.decay, **ref), rtol=0, atol=TOL)


def test_every_entry_moves_by_lr_whatever_the_gradient_scale(rng):
    params = make_params(rng, shapes=((6, 5),))
    w0 = params[0].data.copy()
    scale = 10.0 ** rng.integers(-6, 6, size=w0.shape)
    train(Lion(params, lr=0.01), params, 1, grad=lambda w, t: scale * rng.standard_normal(w.shape))
    np.testing.assert_allclose(np.abs(params[0].data - w0), 0.01, rtol=1e-12)


def test_decay_is_decoupled_and_only_on_decay_parameters(rng):
    params = make_params(rng, decay=(True, False))
    w0 = [p.data.copy() for p in params]
    train(Lion(params, lr=0.1, weight_decay=0.2), params, 10, grad=lambda w, t: np.zeros_like(w))
    np.testing.assert_allclose(params[0].data, (1 - 0.1 * 0.2) ** 10 * w0[0], rtol=1e-13)
    np.testing.assert_array_equal(params[1].data, w0[1])


def test_param_groups_use_their_own_settings(rng):
    a, b = make_params(rng)
    w0 = [a.data.copy(), b.data.copy()]
    train(Lion([{"params": [a], "weight_decay": 0.3}, {"params": [b], "betas": (0.5, 0.9)}], lr=0.01),
          [a, b], STEPS)
    np.testing.assert_allclose(a.data, ref_lion(w0[0], True, 0.01, wd=0.3), rtol=0, atol=TOL)
    np.testing.assert_allclose(b.data, ref_lion(w0[1], True, 0.01, betas=(0.5, 0.9)), rtol=0, atol=TOL)


@pytest.mark.parametrize("build,error,match", [
    (lambda ps: Lion(ps, lr=-1e-4), ValueError, r"Lion\(lr\): got -0.0001"),
    (lambda ps: Lion(ps, betas=(1.0, 0.99)), ValueError, r"Lion\(betas\[0\]\)"),
    (lambda ps: Lion(ps, betas=(0.9, -0.1)), ValueError, r"Lion\(betas\[1\]\)"),
    (lambda ps: Lion(ps, betas=0.9), ValueError, r"Lion\(betas\): got 0.9, expected a pair"),
    (lambda ps: Lion(ps, weight_decay=float("inf")), ValueError, r"Lion\(weight_decay\)"),
    (lambda ps: Lion(ps, weight_decay="0.1"), TypeError, r"Lion\(weight_decay\)"),
    (lambda ps: Lion([{"params": ps, "lr": -1}]), ValueError, r"Lion\(params\[0\]\['lr'\]\)"),
    (lambda ps: Lion([{"params": ps, "momentum": 0.9}]), ValueError, "momentum"),
    (lambda ps: Lion([{"params": ps, "unit_norm": True}]), ValueError, "Hyperball"),
])
def test_bad_arguments_raise_clear_errors(rng, build, error, match):
    with pytest.raises(error, match=match):
        build(make_params(rng))
