"""Edge cases shared by the norm-fixing wrappers (Rotational, Hyperball): float32 proposals,
degenerate weights, and what their state dicts keep."""

import numpy as np
import pytest

from refnet.nn import Parameter
from refnet.optim import SGD, Hyperball, Rotational

WRAPPERS = {
    "hyperball": lambda ps: Hyperball(SGD(ps, lr=0.02)),
    "rotational": lambda ps: Rotational(SGD(ps, lr=0.02), eta_r=0.01, update_norm_decay=0.0),
}


def _step(make, w0, g, dtype):
    p = Parameter(w0.astype(dtype), scale_group="unit")
    opt = make([p])
    p.grad[...] = g.astype(dtype)
    opt.step()
    return p.data.astype(np.float64) - w0.astype(dtype).astype(np.float64)


@pytest.mark.parametrize("name", sorted(WRAPPERS))
def test_float32_step_direction_agrees_with_float64_for_tiny_gradients(name):
    # gradient entries ~1e-7 of weights ~1: w - lr*u rounds u away in float32, so the
    # proposal must not be read back from the difference of the weights
    rng = np.random.default_rng(0)
    w0 = rng.standard_normal((4, 64))
    g = rng.standard_normal((4, 64))
    g -= w0 * ((g * w0).sum(1, keepdims=True) / (w0 * w0).sum(1, keepdims=True))
    a = _step(WRAPPERS[name], w0, 1e-7 * g, np.float64)
    b = _step(WRAPPERS[name], w0, 1e-7 * g, np.float32)
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.min() > 0.999, cos


@pytest.mark.parametrize("name", sorted(WRAPPERS))
@pytest.mark.parametrize("bad", [0.0, np.nan])
def test_a_unit_of_zero_or_nan_norm_raises_and_leaves_the_weights(name, bad):
    rng = np.random.default_rng(1)
    w = rng.standard_normal((3, 4))
    w[1] = bad
    p = Parameter(w.copy(), scale_group="unit")
    opt = WRAPPERS[name]([p])
    p.grad[...] = rng.standard_normal((3, 4))
    with pytest.raises(FloatingPointError, match=r"\.step\(\): cannot rescale .*a scale group has norm "
                                                 r"(0\.0|nan), expected a finite norm > 0"):
        opt.step()
    np.testing.assert_array_equal(p.data, w)


OPTIONS = {  # wrapper built one way, then one option changed: the loaded state brings it back
    "rotational-eta_r": (lambda ps: Rotational(SGD(ps, lr=0.1), eta_r=0.1),
                         lambda ps: Rotational(SGD(ps, lr=0.1), eta_r=0.5), "eta_r", 0.1),
    "rotational-update_norm_decay": (lambda ps: Rotational(SGD(ps, lr=0.1), eta_r=0.1, update_norm_decay=0.5),
                                     lambda ps: Rotational(SGD(ps, lr=0.1), eta_r=0.1), "update_norm_decay", 0.5),
    "rotational-zero_mean": (lambda ps: Rotational(SGD(ps, lr=0.1), eta_r=0.1, zero_mean=True),
                             lambda ps: Rotational(SGD(ps, lr=0.1), eta_r=0.1), "zero_mean", True),
    "hyperball-radius": (lambda ps: Hyperball(SGD(ps, lr=0.1), radius=2.0),
                         lambda ps: Hyperball(SGD(ps, lr=0.1)), "radius", 2.0),
}


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_wrapper_options_are_saved_and_restored_as_the_inner_hyperparameters(name):
    saved_as, loaded_into, option, value = OPTIONS[name]
    rng = np.random.default_rng(2)
    p = Parameter(rng.standard_normal((3, 4)), scale_group="unit")
    a = saved_as([p])
    p.grad[...] = rng.standard_normal((3, 4))
    a.step()
    b = loaded_into([p])
    b.load_state_dict(a.state_dict())
    assert getattr(b, option) == value
    p.grad[...] = rng.standard_normal((3, 4))
    before = p.data.copy()
    a.step()
    after_a, p.data[...] = p.data.copy(), before
    b.step()
    np.testing.assert_array_equal(p.data, after_a)


@pytest.mark.parametrize("option, value, match", [
    ("eta_r", -1.0, r"Rotational.load_state_dict\(state_dict\).*eta_r.*got -1.0"),
    ("update_norm_decay", 1.0, r"update_norm_decay.*got 1.0"),
    ("zero_mean", "yes", r"zero_mean.*got 'yes'"),
])
def test_bad_saved_wrapper_options_are_refused_by_name(option, value, match):
    rng = np.random.default_rng(3)
    p = Parameter(rng.standard_normal((3, 4)), scale_group="unit")
    opt = Rotational(SGD([p], lr=0.1), eta_r=0.1)
    sd = opt.state_dict()
    for group in sd["param_groups"]:
        group["rotational_" + option] = value
    with pytest.raises((ValueError, TypeError), match=match):
        Rotational(SGD([p], lr=0.1), eta_r=0.1).load_state_dict(sd)


def test_state_saved_without_wrapper_options_is_refused_by_name():
    rng = np.random.default_rng(3)
    p = Parameter(rng.standard_normal((3, 4)), scale_group="unit")
    opt = Rotational(SGD([p], lr=0.1), eta_r=0.1)
    with pytest.raises(ValueError, match=r"Rotational.load_state_dict\(state_dict\).*rotational_eta_r"):
        opt.load_state_dict(SGD([p], lr=0.1).state_dict())


def test_rotational_target_of_a_group_without_an_angle_is_a_clear_error_and_the_trainer_check_passes():
    from refnet.optim import Adam
    from refnet.train import effective_lr
    rng = np.random.default_rng(4)
    w = Parameter(rng.standard_normal((3, 4)), scale_group="unit")
    bias = Parameter(np.zeros(3), decay=False)
    opt = Rotational(Adam([{"params": [bias], "l2": 1e-3}, {"params": [w], "weight_decay": 0.1}]))
    effective_lr(opt, opt.param_groups[0], None, 1.0)  # the Trainer's check of the kind
    assert effective_lr(opt, opt.param_groups[1], w, 1.0) == opt.target(opt.param_groups[1]) > 0
    with pytest.raises(ValueError, match=r"Rotational.target\(group\): group 0 has no equilibrium angle"):
        opt.target(opt.param_groups[0])
