"""SGD and Adam as specified: against closed forms and independent step-by-step references
written here in plain numpy, the l2 / weight_decay conventions (l2=lam adds 2*lam*w to the
gradient; weight_decay=wd shrinks w by lr*wd apart from it), param groups, decay=False,
the unit-norm projection, state dicts, bad input, and torch.optim when torch is present."""

import io
import json

import numpy as np
import pytest
from oracle import require_torch

from refnet import backend
from refnet.invariance import group_norms
from refnet.nn import Parameter
from refnet.optim import SGD, Adam, flatten_state_dict, unflatten_state_dict

STEPS = 8
TOL = 1e-12


def grad_at(w, t):
    """A deterministic gradient that depends on the point and on the step."""
    return np.cos(w + 0.7 * t) + 0.3 * w


def make_params(rng, shapes=((3, 4), (5,)), decay=(True, True), dtype=np.float64):
    return [Parameter(rng.standard_normal(s).astype(dtype), decay=d) for s, d in zip(shapes, decay)]


def train(opt, params, steps=STEPS, start=0, grad=grad_at):
    for t in range(start, start + steps):
        for p in params:
            p.grad[...] = grad(p.data, t)
        opt.step()


# --- independent references: the textbook rules, one step at a time ------------------------
def ref_sgd(w, decay, lr, momentum=0.0, dampening=0.0, nesterov=False, l2=0.0, wd=0.0,
            steps=STEPS, grad=grad_at):
    w = w.copy()
    buf = None
    for t in range(steps):
        g = grad(w, t)
        if decay:
            g = g + 2 * l2 * w
            w = w - lr * wd * w
        if momentum:
            buf = g if buf is None else momentum * buf + (1 - dampening) * g
            g = g + momentum * buf if nesterov else buf
        w = w - lr * g
    return w


def ref_adam(w, decay, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, l2=0.0, wd=0.0, steps=STEPS,
             grad=grad_at):
    w = w.copy()
    b1, b2 = betas
    m = np.zeros_like(w)
    v = np.zeros_like(w)
    for t in range(1, steps + 1):
        g = grad(w, t - 1)
        if decay:
            g = g + 2 * l2 * w
            w = w - lr * wd * w
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g ** 2
        m_hat = m / (1 - b1 ** t)
        v_hat = v / (1 - b2 ** t)
        w = w - lr * m_hat / (np.sqrt(v_hat) + eps)
    return w


SGD_SETTINGS = [
    dict(lr=0.1),
    dict(lr=0.1, momentum=0.9),
    dict(lr=0.1, momentum=0.8, dampening=0.3),
    dict(lr=0.1, momentum=0.9, nesterov=True),
    dict(lr=0.1, momentum=0.9, l2=0.05),
    dict(lr=0.1, momentum=0.9, weight_decay=0.3),
    dict(lr=0.05, momentum=0.7, nesterov=True, l2=0.02, weight_decay=0.4),
]
ADAM_SETTINGS = [
    dict(lr=0.01),
    dict(lr=0.01, betas=(0.8, 0.99), eps=1e-3),
    dict(lr=0.01, l2=0.05),
    dict(lr=0.01, weight_decay=0.5),
    dict(lr=0.02, betas=(0.5, 0.9), eps=1e-2, l2=0.1, weight_decay=0.2),
]


def _ref_kwargs(cfg):
    cfg = dict(cfg)
    cfg["wd"] = cfg.pop("weight_decay", 0.0)
    return cfg


@pytest.mark.parametrize("cfg", SGD_SETTINGS, ids=str)
def test_sgd_matches_step_by_step_reference(rng, cfg):
    params = make_params(rng, decay=(True, False))
    w0 = [p.data.copy() for p in params]
    train(SGD(params, **cfg), params)
    for p, w in zip(params, w0):
        np.testing.assert_allclose(p.data, ref_sgd(w, p.decay, **_ref_kwargs(cfg)), rtol=0, atol=TOL)


@pytest.mark.parametrize("cfg", ADAM_SETTINGS, ids=str)
def test_adam_matches_step_by_step_reference(rng, cfg):
    params = make_params(rng, decay=(True, False))
    w0 = [p.data.copy() for p in params]
    train(Adam(params, **cfg), params)
    for p, w in zip(params, w0):
        np.testing.assert_allclose(p.data, ref_adam(w, p.decay, **_ref_kwargs(cfg)), rtol=0, atol=TOL)


@pytest.mark.parametrize("momentum,dampening,nesterov",
                         [(0.9, 0.0, False), (0.9, 0.5, False), (0.6, 0.0, True)])
def test_sgd_momentum_constant_gradient_closed_form(rng, momentum, dampening, nesterov):
    # b_1 = g and b_t = mu b_{t-1} + (1 - tau) g give b_t = g (mu^(t-1) + (1 - tau)(1 - mu^(t-1))/(1 - mu))
    p = make_params(rng, shapes=((6,),))[0]
    g = rng.standard_normal(6)
    w0, lr, T = p.data.copy(), 0.1, 12
    train(SGD([p], lr=lr, momentum=momentum, dampening=dampening, nesterov=nesterov), [p], T,
          grad=lambda w, t: g)
    b = [momentum ** (t - 1) + (1 - dampening) * (1 - momentum ** (t - 1)) / (1 - momentum)
         for t in range(1, T + 1)]
    total = sum((1 + momentum * bt) if nesterov else bt for bt in b)
    np.testing.assert_allclose(p.data, w0 - lr * total * g, rtol=0, atol=TOL)


@pytest.mark.parametrize("betas,eps", [((0.9, 0.999), 1e-8), ((0.5, 0.9), 1e-2)])
def test_adam_bias_correction_makes_constant_gradient_steps_equal(rng, betas, eps):
    # with bias correction m_hat = g and v_hat = g^2 from the first step on
    p = make_params(rng, shapes=((6,),))[0]
    g = rng.standard_normal(6)
    w0, lr, T = p.data.copy(), 0.01, 10
    train(Adam([p], lr=lr, betas=betas, eps=eps), [p], T, grad=lambda w, t: g)
    np.testing.assert_allclose(p.data, w0 - T * lr * g / (np.abs(g) + eps), rtol=0, atol=TOL)


@pytest.mark.parametrize("make,factor", [
    (lambda ps: SGD(ps, lr=0.1, l2=0.2), 1 - 2 * 0.1 * 0.2),          # coupled: gradient 2*lam*w
    (lambda ps: SGD(ps, lr=0.1, weight_decay=0.2), 1 - 0.1 * 0.2),     # decoupled: lr*wd
    (lambda ps: Adam(ps, lr=0.1, weight_decay=0.2), 1 - 0.1 * 0.2),
], ids=["sgd-l2", "sgd-weight_decay", "adam-weight_decay"])
def test_decay_alone_shrinks_geometrically(rng, make, factor):
    params = make_params(rng)
    w0 = [p.data.copy() for p in params]
    train(make(params), params, 15, grad=lambda w, t: np.zeros_like(w))
    for p, w in zip(params, w0):
        np.testing.assert_allclose(p.data, factor ** 15 * w, rtol=1e-13, atol=0)


def test_plain_sgd_l2_equals_weight_decay_twice_as_large(rng):
    a = make_params(rng)
    b = [Parameter(p.data.copy()) for p in a]
    train(SGD(a, lr=0.1, l2=0.05), a)
    train(SGD(b, lr=0.1, weight_decay=0.1), b)
    for pa, pb in zip(a, b):
        np.testing.assert_allclose(pa.data, pb.data, rtol=0, atol=TOL)


@pytest.mark.parametrize("make", [lambda ps, **kw: SGD(ps, lr=0.1, momentum=0.9, **kw),
                                  lambda ps, **kw: Adam(ps, lr=0.1, **kw)], ids=["sgd-momentum", "adam"])
def test_coupled_l2_differs_from_decoupled_decay_through_the_moments(rng, make):
    a = make_params(rng)
    b = [Parameter(p.data.copy()) for p in a]
    train(make(a, l2=0.05), a)
    train(make(b, weight_decay=0.1), b)
    assert max(np.abs(pa.data - pb.data).max() for pa, pb in zip(a, b)) > 1e-3


@pytest.mark.parametrize("make", [lambda ps: SGD(ps, lr=0.1, momentum=0.9, l2=1.0, weight_decay=2.0),
                                  lambda ps: Adam(ps, lr=0.1, l2=1.0, weight_decay=2.0)],
                         ids=["sgd", "adam"])
def test_decay_false_parameters_are_untouched_by_decay(rng, make):
    params = make_params(rng, decay=(True, False))
    w0 = [p.data.copy() for p in params]
    train(make(params), params, grad=lambda w, t: np.zeros_like(w))
    assert not np.allclose(params[0].data, w0[0])
    np.testing.assert_array_equal(params[1].data, w0[1])


@pytest.mark.parametrize("make", [lambda ps: SGD(ps, lr=0.1, momentum=0.9, l2=1.0, weight_decay=2.0, unit_norm=True),
                                  lambda ps: Adam(ps, lr=0.1, l2=1.0, weight_decay=2.0, unit_norm=True)],
                         ids=["sgd", "adam"])
def test_parameters_with_requires_grad_false_are_left_alone(rng, make):
    """As in PyTorch: no step, no decay, no projection, no state for a frozen parameter,
    even with a gradient in place; the others train as usual."""
    params = make_params(rng)
    for p in params:
        p.scale_group = "unit" if p.data.ndim == 2 else None
    params[0].requires_grad = False
    frozen, w1 = params[0].data.copy(), params[1].data.copy()
    opt = make(params)
    train(opt, params)
    np.testing.assert_array_equal(params[0].data, frozen)
    assert params[0] not in opt.state and not np.allclose(params[1].data, w1)


def test_sgd_param_groups_use_their_own_settings(rng):
    a, b, c = make_params(rng, shapes=((3, 4), (4,), (2, 5)), decay=(True, False, True))
    groups = [{"params": [a, b], "momentum": 0.9, "l2": 0.05},
              {"params": [c], "lr": 0.02, "nesterov": True, "momentum": 0.5, "weight_decay": 0.3}]
    w0 = [p.data.copy() for p in (a, b, c)]
    train(SGD(groups, lr=0.1), [a, b, c])
    np.testing.assert_allclose(a.data, ref_sgd(w0[0], True, 0.1, momentum=0.9, l2=0.05), atol=TOL, rtol=0)
    np.testing.assert_allclose(b.data, ref_sgd(w0[1], False, 0.1, momentum=0.9), atol=TOL, rtol=0)
    np.testing.assert_allclose(c.data, ref_sgd(w0[2], True, 0.02, momentum=0.5, nesterov=True, wd=0.3),
                               atol=TOL, rtol=0)


def test_adam_param_groups_use_their_own_settings(rng):
    a, b = make_params(rng)
    groups = [{"params": [a], "weight_decay": 0.2}, {"params": [b], "betas": (0.5, 0.9), "lr": 0.05}]
    w0 = [a.data.copy(), b.data.copy()]
    train(Adam(groups, lr=0.01, l2=0.1), [a, b])
    np.testing.assert_allclose(a.data, ref_adam(w0[0], True, 0.01, l2=0.1, wd=0.2), atol=TOL, rtol=0)
    np.testing.assert_allclose(b.data, ref_adam(w0[1], True, 0.05, betas=(0.5, 0.9), l2=0.1),
                               atol=TOL, rtol=0)


def test_lr_set_in_param_groups_is_used_by_the_next_step(rng):
    params = make_params(rng)
    w0 = [p.data.copy() for p in params]
    opt = SGD(params, lr=1.0)
    opt.param_groups[0]["lr"] = 0.1  # what the trainer does for schedules
    train(opt, params, 1)
    for p, w in zip(params, w0):
        np.testing.assert_allclose(p.data, w - 0.1 * grad_at(w, 0), rtol=0, atol=TOL)


# --- unit-norm projection ------------------------------------------------------------------
def marked_params(rng, dtype=np.float64):
    conv = Parameter(rng.standard_normal((4, 3, 2, 2)).astype(dtype), scale_group="unit")
    dense = Parameter(rng.standard_normal((5, 6)).astype(dtype), scale_group="unit")
    ln = Parameter(rng.standard_normal((3, 7)).astype(dtype), scale_group="tensor")
    bias = Parameter(rng.standard_normal(5).astype(dtype), decay=False)
    return [conv, dense, ln, bias]


@pytest.mark.parametrize("make", [lambda ps: SGD(ps, lr=0.5, momentum=0.9, l2=0.01, unit_norm=True),
                                  lambda ps: Adam(ps, lr=0.05, weight_decay=0.1, unit_norm=True)],
                         ids=["sgd", "adam"])
def test_unit_norm_keeps_every_scale_group_at_norm_one(rng, make):
    params = marked_params(rng)
    bias_norm0 = np.linalg.norm(params[3].data)
    opt = make(params)
    for t in range(STEPS):
        train(opt, params, 1, start=t)
        for p in params[:3]:
            np.testing.assert_allclose(group_norms(p), 1.0, rtol=0, atol=1e-12)
    rows = np.linalg.norm(params[2].data, axis=1)
    assert np.abs(rows - 1).max() > 0.1  # "tensor" is normalized as a whole, not per row
    assert abs(np.linalg.norm(params[3].data) - bias_norm0) > 1e-3  # unmarked: left alone


def test_unit_norm_step_is_the_plain_step_rescaled(rng):
    params = marked_params(rng)
    w0 = [p.data.copy() for p in params]
    train(SGD(params, lr=0.3, unit_norm=True), params, 1)
    moved = [w - 0.3 * grad_at(w, 0) for w in w0]
    expect = [moved[0] / np.linalg.norm(moved[0].reshape(4, -1), axis=1)[:, None, None, None],
              moved[1] / np.linalg.norm(moved[1], axis=1, keepdims=True),
              moved[2] / np.linalg.norm(moved[2]), moved[3]]
    for p, e in zip(params, expect):
        np.testing.assert_allclose(p.data, e, rtol=0, atol=TOL)


def test_project_puts_weights_on_the_sphere_before_training(rng):
    params = marked_params(rng)
    SGD(params, lr=0.1, unit_norm=True).project()
    for p in params[:3]:
        np.testing.assert_allclose(group_norms(p), 1.0, rtol=0, atol=1e-12)


def test_unit_norm_of_a_zero_unit_is_an_error(rng):
    p = Parameter(np.zeros((2, 3)), scale_group="unit")
    with pytest.raises(FloatingPointError, match="unit_norm"):
        train(SGD([p], lr=0.1, unit_norm=True), [p], 1, grad=lambda w, t: np.zeros_like(w))


# --- state dicts ---------------------------------------------------------------------------
RESUMABLE = [
    lambda ps: SGD(ps, lr=0.1, momentum=0.9, nesterov=True, l2=0.01, weight_decay=0.1),
    lambda ps: SGD([{"params": ps[:1], "dampening": 0.5}, {"params": ps[1:], "lr": 0.01}],
                   lr=0.1, momentum=0.8),
    lambda ps: Adam(ps, lr=0.01, l2=0.01),
    lambda ps: Adam(ps, lr=0.01, betas=(0.8, 0.95), weight_decay=0.1, unit_norm=True),
]


def _through_files(state_dict):
    """What a checkpoint does: arrays to .npz, the rest to JSON, and back."""
    arrays, meta = flatten_state_dict(state_dict)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    buf.seek(0)
    with np.load(buf, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    return unflatten_state_dict(arrays, json.loads(json.dumps(meta)))


@pytest.mark.parametrize("make", RESUMABLE)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_state_dict_round_trip_continues_bit_identically(rng, make, dtype):
    straight = marked_params(rng, dtype)
    resumed = [Parameter(p.data.copy(), decay=p.decay, scale_group=p.scale_group) for p in straight]
    train(make(straight), straight, 2 * STEPS)
    first = make(resumed)
    train(first, resumed, STEPS)
    saved = _through_files(first.state_dict())
    del first
    second = make(resumed)
    second.param_groups[0]["lr"] = 123.0  # must be restored from the state dict
    second.load_state_dict(saved)
    train(second, resumed, STEPS, start=STEPS)
    for a, b in zip(straight, resumed):
        assert a.data.dtype == b.data.dtype == dtype
        np.testing.assert_array_equal(a.data, b.data)


def test_state_dict_has_torch_layout_with_plain_values_and_copies(rng):
    params = make_params(rng)
    opt = Adam([{"params": params[:1]}, {"params": params[1:], "lr": 0.1}], betas=(0.8, 0.9))
    train(opt, params, 3)
    sd = opt.state_dict()
    assert [g["params"] for g in sd["param_groups"]] == [[0], [1]]
    assert sd["param_groups"][0]["betas"] == [0.8, 0.9] and sd["param_groups"][1]["lr"] == 0.1
    assert sorted(sd["state"][1]) == ["exp_avg", "exp_avg_sq", "step"] and sd["state"][1]["step"] == 3
    json.dumps(sd["param_groups"])
    json.dumps(flatten_state_dict(sd)[1])
    sd["state"][0]["exp_avg"][...] = 0
    assert np.abs(opt.state[params[0]]["exp_avg"]).max() > 0


@pytest.mark.parametrize("edit,match", [
    (lambda sd: sd["param_groups"].pop(), "parameter groups"),
    (lambda sd: sd["param_groups"][0]["params"].pop(), "parameters"),
    (lambda sd: sd["state"][0].update(momentum_buffer=np.zeros((2, 2))), "shape"),
    (lambda sd: sd["state"][0].update(exp_avg=np.zeros((3, 4))), "exp_avg"),
    (lambda sd: sd["param_groups"][1].update(lr=-1.0), r"params\[1\]\['lr'\]"),
])
def test_load_state_dict_rejects_a_mismatch(rng, edit, match):
    params = make_params(rng)
    opt = SGD([{"params": params[:1]}, {"params": params[1:]}], lr=0.1, momentum=0.9)
    train(opt, params, 2)
    sd = opt.state_dict()
    edit(sd)
    with pytest.raises(ValueError, match=match):
        SGD([{"params": params[:1]}, {"params": params[1:]}], lr=0.1, momentum=0.9).load_state_dict(sd)


# --- the rest of the API and bad input -----------------------------------------------------
def test_zero_grad_zeroes_every_gradient(rng):
    params = make_params(rng)
    for p in params:
        p.grad[...] = 1.0
    SGD(params, lr=0.1).zero_grad()
    assert all(not p.grad.any() for p in params)


@pytest.mark.parametrize("make", [lambda ps: SGD(ps, lr=0.1, momentum=0.9, l2=0.1),
                                  lambda ps: Adam(ps, l2=0.1, weight_decay=0.1)], ids=["sgd", "adam"])
def test_float32_parameters_and_state_stay_float32(rng, make):
    params = make_params(rng, dtype=np.float32)
    opt = make(params)
    train(opt, params, 3)
    assert all(p.data.dtype == np.float32 for p in params)
    assert all(v.dtype == np.float32 for s in opt.state.values() for k, v in s.items() if k != "step")


@pytest.mark.parametrize("build,error,match", [
    (lambda ps: SGD(ps), TypeError, r"SGD\(lr\)"),
    (lambda ps: SGD(ps, lr=-0.1), ValueError, r"SGD\(lr\): got -0.1"),
    (lambda ps: SGD(ps, lr=float("nan")), ValueError, "lr"),
    (lambda ps: SGD(ps, lr=0.1, momentum=1.0), ValueError, "momentum"),
    (lambda ps: SGD(ps, lr=0.1, momentum=-0.1), ValueError, "momentum"),
    (lambda ps: SGD(ps, lr=0.1, nesterov=True), ValueError, "nesterov"),
    (lambda ps: SGD(ps, lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), ValueError, "nesterov"),
    (lambda ps: SGD(ps, lr=0.1, l2=-1e-4), ValueError, "l2"),
    (lambda ps: SGD(ps, lr=0.1, weight_decay=-1e-4), ValueError, "weight_decay"),
    (lambda ps: SGD(ps, lr="0.1"), TypeError, "lr"),
    (lambda ps: Adam(ps, betas=(1.0, 0.999)), ValueError, r"betas\[0\]"),
    (lambda ps: Adam(ps, betas=(0.9, -0.1)), ValueError, r"betas\[1\]"),
    (lambda ps: Adam(ps, betas=(0.9,)), ValueError, "betas"),
    (lambda ps: Adam(ps, eps=-1e-8), ValueError, "eps"),
    (lambda ps: Adam(ps, lr=-1e-3), ValueError, "lr"),
    (lambda ps: SGD([], lr=0.1), ValueError, "empty"),
    (lambda ps: SGD(ps[0], lr=0.1), TypeError, "single Parameter"),
    (lambda ps: SGD([ps[0], np.zeros(3)], lr=0.1), TypeError, r"params\[1\].*Parameter"),
    (lambda ps: SGD([{"params": ps}, ps[0]], lr=0.1), TypeError, "mix"),
    (lambda ps: SGD([{"params": ps, "momentm": 0.9}], lr=0.1), ValueError, "momentm"),
    (lambda ps: SGD([{"params": []}], lr=0.1), ValueError, "empty"),
    (lambda ps: SGD([{"lr": 0.1}], lr=0.1), ValueError, "'params'"),
    (lambda ps: SGD([{"params": ps}, {"params": ps[:1]}], lr=0.1), ValueError, "more than once"),
    (lambda ps: SGD([{"params": ps[:1]}, {"params": ps[1:], "lr": -1}], lr=0.1), ValueError,
     r"params\[1\]\['lr'\]"),
    (lambda ps: SGD(ps, lr=0.1, unit_norm=True), ValueError, "scale_group"),
    (lambda ps: Adam(ps, unit_norm=True), ValueError, "scale_group"),
])
def test_bad_arguments_raise_clear_errors(rng, build, error, match):
    with pytest.raises(error, match=match):
        build(make_params(rng))


def test_gradient_of_the_wrong_shape_is_an_error(rng):
    p = make_params(rng)[0]
    opt = SGD([p], lr=0.1)
    p.grad = np.zeros((4, 3))
    with pytest.raises(ValueError, match=r"gradient of shape \(4, 3\), expected \(3, 4\)"):
        opt.step()


# --- the same numbers as torch.optim (optional) ---------------------------------------------
TORCH_CASES = {  # name: (refnet class, refnet options, torch class name, torch options)
    "sgd": (SGD, dict(lr=0.05, l2=0.01 / 2), "SGD", dict(lr=0.05, weight_decay=0.01)),
    "sgd-momentum": (SGD, dict(lr=0.05, momentum=0.9, l2=0.01 / 2),
                     "SGD", dict(lr=0.05, momentum=0.9, weight_decay=0.01)),
    "sgd-dampening": (SGD, dict(lr=0.05, momentum=0.9, dampening=0.3, l2=0.01 / 2),
                      "SGD", dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=0.01)),
    "sgd-nesterov": (SGD, dict(lr=0.05, momentum=0.9, nesterov=True, l2=0.01 / 2),
                     "SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)),
    "adam-l2": (Adam, dict(lr=0.01, betas=(0.9, 0.99), l2=0.05 / 2),
                "Adam", dict(lr=0.01, betas=(0.9, 0.99), weight_decay=0.05)),
    "adamw": (Adam, dict(lr=0.01, weight_decay=0.1), "AdamW", dict(lr=0.01, weight_decay=0.1)),
}


@pytest.mark.parametrize("case", sorted(TORCH_CASES))
def test_equals_torch_optim_in_float64_over_60_steps(rng, case):
    torch = require_torch()
    ours, our_kw, theirs, their_kw = TORCH_CASES[case]
    params = make_params(rng, shapes=((4, 3), (5,), (2, 3, 2, 2)), decay=(True, False, True))
    tensors = [torch.tensor(p.data.copy()) for p in params]
    opt = ours(params, **our_kw)
    groups = [{"params": [tensors[0], tensors[2]]}, {"params": [tensors[1]], "weight_decay": 0.0}]
    topt = getattr(torch.optim, theirs)(groups, **their_kw)
    for t in range(60):
        for p, x in zip(params, tensors):
            p.grad[...] = grad_at(p.data, t)
            x.grad = torch.tensor(grad_at(x.numpy(), t))
        opt.step()
        topt.step()
    for p, x in zip(params, tensors):
        np.testing.assert_allclose(p.data, x.numpy(), rtol=0, atol=1e-10)


# --- GPU: the same code on cupy arrays -------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.parametrize("make", [lambda ps: SGD(ps, lr=0.3, momentum=0.9, nesterov=True, l2=0.01,
                                                 unit_norm=True),
                                  lambda ps: Adam(ps, lr=0.01, l2=0.01, weight_decay=0.1, unit_norm=True)],
                         ids=["sgd", "adam"])
def test_cupy_parameters_match_numpy(rng, make):
    host = marked_params(rng)
    dev = [Parameter(backend.to_device(p.data, "cupy"), decay=p.decay, scale_group=p.scale_group)
           for p in host]
    opt_host, opt_dev = make(host), make(dev)
    for t in range(STEPS):
        for p, q in zip(host, dev):
            p.grad[...] = grad_at(p.data, t)
            q.grad[...] = backend.to_device(p.grad, "cupy")
        opt_host.step()
        opt_dev.step()
    saved = _through_files(opt_dev.state_dict())
    opt_host.load_state_dict(saved)
    for p, q in zip(host, dev):
        assert backend.is_cupy_array(q.data)
        np.testing.assert_allclose(backend.asnumpy(q.data), p.data, rtol=0, atol=1e-12)
