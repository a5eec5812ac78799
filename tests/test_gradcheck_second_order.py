"""refnet.gradcheck.second_order: check_jvp / check_hvp on every op, check_module_jvp /
check_model_hvp on the models, and planted second-order errors coming out failed.

Tolerance: the checker's default rtol = 1e-5 per entry (a correct JVP reads ~1e-10)."""

import numpy as np
import pytest

from refnet import ops
from refnet.gradcheck import check_hvp, check_jvp, check_model_hvp, check_module_jvp
from refnet.gradcheck.second_order import loss_as_op
from refnet.nn import cnn, mlp
from refnet.nn import norm as nn_norm
from test_second_order_ops import OPS, _make


def _ok(report):
    assert report.ok, "\n" + str(report)


@pytest.mark.parametrize("fwd, bwd, fjvp, bjvp, shapes, kwargs", OPS)
def test_every_op_passes_check_jvp(fwd, bwd, fjvp, bjvp, shapes, kwargs, rng):
    args, _ = _make(rng, shapes)
    _ok(check_jvp(fwd, fjvp, bwd, tuple(args), kwargs))


@pytest.mark.parametrize("fwd, bwd, fjvp, bjvp, shapes, kwargs", OPS)
def test_every_op_passes_check_hvp(fwd, bwd, fjvp, bjvp, shapes, kwargs, rng):
    args, _ = _make(rng, shapes)
    _ok(check_hvp(fwd, bwd, fjvp, bjvp, tuple(args), kwargs))


def test_the_loss_passes_both_checks(rng):
    fwd, bwd, fjvp, bjvp = loss_as_op(ops.softmax_cross_entropy, ops.softmax_cross_entropy_jvp)
    args = (rng.standard_normal((5, 4)), rng.integers(0, 4, 5))
    _ok(check_jvp(fwd, fjvp, bwd, args))
    _ok(check_hvp(fwd, bwd, fjvp, bjvp, args))


# --- planted errors ---------------------------------------------------------------------------
def _variance_term(dy, cache, tx):
    """BatchNorm's ts * Q for a 2-D (N, C) input: the variance's tangent moving s."""
    s, gamma = cache["inv_std"], cache["gamma"]
    xhat = (cache["xc"] - cache["shift"]) * s
    dxhat = gamma * dy
    q = dxhat - dxhat.mean(0) - xhat * (dxhat * xhat).mean(0)
    return -(s ** 2) * (xhat * tx).mean(0) * q


def _bn_without_variance_term(dy, tdy, cache, tx, tgamma=None, tbeta=None):
    tdx, tdgamma, tdbeta = ops.batchnorm_backward_jvp(dy, tdy, cache, tx, tgamma, tbeta)
    if tx is not None:
        tdx = tdx - _variance_term(dy, cache, tx)
    return tdx, tdgamma, tdbeta


def test_a_dropped_batchnorm_variance_term_is_caught_by_check_hvp(rng):
    args = (rng.standard_normal((6, 3)), rng.standard_normal(3), rng.standard_normal(3))
    report = check_hvp(ops.batchnorm_forward, ops.batchnorm_backward, ops.batchnorm_forward_jvp,
                       _bn_without_variance_term, args, {"eps": 1e-5})
    assert report.status == "failed" and report.errors["x"].status == "failed", str(report)


def test_a_dropped_batchnorm_variance_term_is_caught_in_the_model(monkeypatch, rng):
    model = mlp(6, num_classes=3, width=5, norm="bn", rng=0, dtype=np.float64)
    x, y = rng.standard_normal((8, 6)), rng.integers(0, 3, 8)
    _ok(check_model_hvp(model, x, y))
    monkeypatch.setitem(nn_norm._BN_JVPS, ops.batchnorm_backward,
                        (ops.batchnorm_forward_jvp, _bn_without_variance_term))
    assert check_model_hvp(model, x, y).status == "failed"


def test_a_jvp_off_by_a_tenth_of_a_percent_fails_check_jvp(rng):
    args = (rng.standard_normal((4, 5)), rng.standard_normal((3, 5)), rng.standard_normal(3))

    def wrong(cache, tx, tw, tb=None):
        return ops.linear_forward_jvp(cache, tx, tw, tb) * 1.001
    assert check_jvp(ops.linear_forward, wrong, ops.linear_backward, args).status == "failed"


def test_a_missing_cross_term_breaks_symmetry(rng):
    """Dropping dy @ tw from linear's tdx leaves tdw's dy^T @ tx: H is no longer symmetric."""
    args = (rng.standard_normal((4, 5)), rng.standard_normal((3, 5)), rng.standard_normal(3))

    def wrong(dy, tdy, cache, tx, tw, tb=None):
        return ops.linear_backward_jvp(dy, tdy, cache, tx, None, tb)[0], \
            *ops.linear_backward_jvp(dy, tdy, cache, tx, tw, tb)[1:]
    report = check_hvp(ops.linear_forward, ops.linear_backward, ops.linear_forward_jvp, wrong, args)
    assert report.errors["<u,Hv>=<Hu,v>"].status == "failed" and report.status == "failed"


def test_a_wrong_module_forward_jvp_fails(monkeypatch, rng):
    model = mlp(6, num_classes=3, width=5, norm="ln", rng=0, dtype=np.float64)
    x = rng.standard_normal((8, 6))
    _ok(check_module_jvp(model, x))
    from refnet.nn import layers
    original = layers.Linear._op_forward_jvp
    monkeypatch.setattr(layers.Linear, "_op_forward_jvp",
                        staticmethod(lambda cache, tx, tw, tb=None: original(cache, tx, None, tb)))
    assert check_module_jvp(model, x).status == "failed"


# --- the models -------------------------------------------------------------------------------
MODELS = [
    pytest.param(lambda n=n: mlp(6, num_classes=3, width=5, norm=n, rng=0, dtype=np.float64), (8, 6),
                 id=f"mlp-{n}")
    for n in ("bn", "ln", "wn", "none")
] + [
    pytest.param(lambda: cnn(1, num_classes=3, image_size=6, widths=(2,), norm="bn", rng=0, dtype=np.float64),
                 (3, 1, 6, 6), id="cnn-bn"),
]


@pytest.mark.parametrize("build, x_shape", MODELS)
def test_models_pass_check_model_hvp_and_check_module_jvp(build, x_shape, rng):
    model = build()
    x, y = rng.standard_normal(x_shape), rng.integers(0, 3, x_shape[0])
    _ok(check_model_hvp(model, x, y))
    _ok(check_module_jvp(model, x))


def test_the_checks_leave_the_model_as_found(rng):
    model = mlp(6, num_classes=3, width=5, norm="bn", rng=0, dtype=np.float64)
    x, y = rng.standard_normal((8, 6)), rng.integers(0, 3, 8)
    before = model.state_dict()
    check_model_hvp(model, x, y)
    check_module_jvp(model, x)
    after = model.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before)
    assert all(not p.grad.any() for p in model.parameters())
