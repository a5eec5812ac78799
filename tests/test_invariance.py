"""Scale invariance as specified: which weights mark_scale_invariant marks and at which
granularity, the identities of THEORY.md (1 and 2) on a real conv-BN-ReLU-pool-linear-LN-
ReLU-linear network to 1e-10 in float64, check_scale_invariance catching a wrong mark, and
the per-group diagnostics (norms, effective learning rate, angular update)."""

import copy
import warnings

import numpy as np
import pytest

from refnet.invariance import (ScaleInvarianceWarning, angular_update, check_scale_invariance,
                               effective_lr, group_norms, group_sq_norms, mark_scale_invariant,
                               scale_groups)
from refnet.nn import (BatchNorm1d, BatchNorm2d, Conv2d, Flatten, LayerNorm, Linear, MaxPool2d,
                       Parameter, ReLU, Sequential, WeightNorm)
from refnet.ops import softmax_cross_entropy

F64 = np.float64
TOL = 1e-10
STACK_GROUPS = {"0.weight": "unit", "1.weight": None, "1.bias": None, "5.weight": "tensor",
                "6.weight": None, "6.bias": None, "8.weight": None, "8.bias": None}


def stack(rng, eps=1e-5, dtype=F64):
    """conv-BN-ReLU-pool-linear-LN-ReLU-linear with random gamma/beta."""
    model = Sequential(
        Conv2d(2, 4, 3, padding=1, bias=False, rng=rng, dtype=dtype), BatchNorm2d(4, eps=eps, dtype=dtype),
        ReLU(), MaxPool2d(2), Flatten(), Linear(4 * 3 * 3, 6, bias=False, rng=rng, dtype=dtype),
        LayerNorm(6, eps=eps, dtype=dtype), ReLU(), Linear(6, 3, rng=rng, dtype=dtype))
    for i in (1, 6):
        for p in model[i].parameters():
            p.data[...] = (1 + 0.3 * rng.standard_normal(p.shape)).astype(dtype)
    return mark_scale_invariant(model)


def wn_mlp(rng):
    return mark_scale_invariant(Sequential(
        WeightNorm(Linear(5, 4, rng=rng, dtype=F64)), ReLU(), Linear(4, 3, rng=rng, dtype=F64)))


def data(rng, n=5):
    return rng.standard_normal((n, 2, 6, 6)), rng.integers(0, 3, n)


def loss_and_grads(model, x, y):
    model.zero_grad()
    loss, dlogits = softmax_cross_entropy(model(x), y)
    model.backward(dlogits)
    return float(loss), {n: p.grad.copy() for n, p in model.named_parameters()}


# --- marking ----------------------------------------------------------------------------------
def test_stack_marks_conv_unit_linear_before_ln_tensor_and_the_rest_none(rng):
    assert scale_groups(stack(rng)) == STACK_GROUPS


def test_weightnorm_v_is_unit_and_g_and_bias_are_none(rng):
    assert scale_groups(wn_mlp(rng)) == {"0.bias": None, "0.weight_g": None, "0.weight_v": "unit",
                                         "2.weight": None, "2.bias": None}


def test_adjacency_is_read_through_nested_sequentials(rng):
    model = Sequential(Sequential(Linear(3, 4, bias=False, rng=rng)), Sequential(BatchNorm1d(4), ReLU()))
    assert mark_scale_invariant(model)[0][0].weight.scale_group == "unit"


@pytest.mark.parametrize("between", [ReLU(), Flatten()])
def test_a_layer_in_between_breaks_the_marking(rng, between):
    model = mark_scale_invariant(Sequential(Linear(3, 4, bias=False, rng=rng), between, BatchNorm1d(4)))
    assert model[0].weight.scale_group is None


def test_marking_resets_stale_groups(rng):
    model = stack(rng)
    model[8].weight.scale_group = "unit"
    assert scale_groups(mark_scale_invariant(model)) == STACK_GROUPS


def test_bias_before_batchnorm_warns_that_its_gradient_is_zero_and_weight_stays_unit(rng):
    model = Sequential(Linear(3, 4, rng=rng, dtype=F64), BatchNorm1d(4, dtype=F64))
    with pytest.warns(ScaleInvarianceWarning, match="exactly zero gradient"):
        mark_scale_invariant(model)
    assert model[0].weight.scale_group == "unit"
    _, grads = loss_and_grads(Sequential(model, Linear(4, 3, rng=rng, dtype=F64)),
                              rng.standard_normal((6, 3)), rng.integers(0, 3, 6))
    assert np.abs(grads["0.0.bias"]).max() < 1e-15 * np.abs(grads["0.0.weight"]).max()


def test_bias_before_layernorm_warns_and_leaves_the_weight_unmarked(rng):
    model = Sequential(Linear(3, 4, rng=rng), LayerNorm(4))
    with pytest.warns(ScaleInvarianceWarning, match="breaks the scale invariance"):
        mark_scale_invariant(model)
    assert model[0].weight.scale_group is None


def test_bias_free_stack_marks_without_warnings(rng):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        stack(rng)


# --- the identities, measured directly ---------------------------------------------------
@pytest.mark.parametrize("name", ["0.weight", "5.weight"])
def test_stack_identities_hold_per_group_as_marked(rng, name):
    """L(a w) = L(w), grad(a w) = grad(w) / a and <w_i, grad_i> = 0 per group, eps = 0."""
    model = stack(rng, eps=0.0)
    x, y = data(rng)
    p = dict(model.named_parameters())[name]
    loss0, grads0 = loss_and_grads(model, x, y)
    shape = (p.shape[0],) + (1,) * (p.data.ndim - 1) if p.scale_group == "unit" else (1,) * p.data.ndim
    w = p.data.reshape(shape[0], -1)
    g = grads0[name].reshape(shape[0], -1)
    cos = (w * g).sum(axis=1) / (np.linalg.norm(w, axis=1) * np.linalg.norm(g, axis=1))
    assert np.abs(cos).max() < TOL
    a = np.exp(rng.uniform(np.log(0.1), np.log(10), size=shape))
    p.data *= a
    loss1, grads1 = loss_and_grads(model, x, y)
    assert abs(loss1 - loss0) <= TOL * abs(loss0)
    assert np.linalg.norm(a * grads1[name] - grads0[name]) <= TOL * np.linalg.norm(grads0[name])


def test_ln_weight_is_not_invariant_per_unit(rng):
    model = stack(rng, eps=0.0)
    x, y = data(rng)
    loss0, _ = loss_and_grads(model, x, y)
    model[5].weight.data *= np.array([[0.5], [1], [1], [1], [1], [2]])
    assert abs(loss_and_grads(model, x, y)[0] - loss0) > 1e-4 * abs(loss0)


# --- check_scale_invariance -------------------------------------------------------------
@pytest.mark.parametrize("build", [stack, wn_mlp])
def test_check_scale_invariance_passes_on_correctly_marked_networks(rng, build):
    model = build(rng)
    x, y = data(rng) if build is stack else (rng.standard_normal((6, 5)), rng.integers(0, 3, 6))
    report = check_scale_invariance(model, x, y, seed=1)
    assert report.ok, str(report)
    assert set(report.errors) == {n for n, g in scale_groups(model).items() if g}
    assert report.worst < TOL, str(report)


@pytest.mark.parametrize("name, wrong", [("5.weight", "unit"), ("8.weight", "tensor"), ("6.weight", "unit")])
def test_check_scale_invariance_flags_a_wrongly_marked_group(rng, name, wrong):
    model = stack(rng)
    dict(model.named_parameters())[name].scale_group = wrong
    report = check_scale_invariance(model, *data(rng))
    assert not report.ok
    assert report.failed() == [name], str(report)


def test_check_scale_invariance_leaves_the_model_untouched(rng):
    model = stack(rng, dtype=np.float32)
    before = copy.deepcopy(model.state_dict())
    model.eval()
    check_scale_invariance(model, *data(rng))
    assert not model.training and scale_groups(model) == STACK_GROUPS
    for k, v in model.state_dict().items():
        assert v.dtype == before[k].dtype
        np.testing.assert_array_equal(v, before[k])


def test_check_scale_invariance_without_marks_raises(rng):
    model = Sequential(Linear(3, 2, rng=rng))
    with pytest.raises(ValueError, match="no parameter has a scale_group"):
        check_scale_invariance(model, rng.standard_normal((2, 3)), np.array([0, 1]))


# --- per-group diagnostics ------------------------------------------------------------------
def test_group_norms_are_per_unit_or_per_tensor(rng):
    w = rng.standard_normal((3, 2, 2, 2))
    np.testing.assert_allclose(group_norms(Parameter(w, scale_group="unit")),
                               np.sqrt((w ** 2).sum(axis=(1, 2, 3))), rtol=1e-14)
    np.testing.assert_allclose(group_sq_norms(w, "tensor"), [(w ** 2).sum()], rtol=1e-14)


def test_effective_lr_is_lr_over_norm_squared_for_sgd_and_over_norm_for_adam():
    w = Parameter(np.array([[3.0, 4.0], [0.6, 0.8]]), scale_group="unit")
    np.testing.assert_allclose(effective_lr(w, 0.1, "sgd"), [0.1 / 25, 0.1])
    np.testing.assert_allclose(effective_lr(w, 0.1, "adam"), [0.1 / 5, 0.1])


@pytest.mark.parametrize("angle", [1e-9, 1e-3, 1.0, 3.0])
def test_angular_update_is_accurate_for_tiny_and_large_angles(angle):
    before = np.array([[2.0, 0.0, 0.0]])
    after = 5 * np.array([[np.cos(angle), np.sin(angle), 0.0]])
    np.testing.assert_allclose(angular_update(before, after), [angle], rtol=1e-12)
