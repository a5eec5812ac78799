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


def _linear_jvp_one_entry_off(cache, tx, tw=None, tb=None):
    ty = ops.linear_forward_jvp(cache, tx, tw, tb)
    if tx is not None:
        ty = ty.copy()
        ty[0, 0] += 1e-3 * tx.reshape(-1)[0]
    return ty


@pytest.mark.parametrize("backward_factor", [1.0, 1e4, "one entry x1e6"])
def test_check_jvp_scales_do_not_come_from_the_backward(backward_factor, rng):
    """A JVP off by 1e-3 in one entry fails whatever the backward (not what is judged) says."""
    args = (rng.standard_normal((4, 5)), rng.standard_normal((3, 5)), rng.standard_normal(3))

    def backward(dy, cache):
        g = [np.array(a, copy=True) for a in ops.linear_backward(dy, cache)]
        if backward_factor == "one entry x1e6":
            g[0][0, 0] *= 1e6
        else:
            g = [backward_factor * a for a in g]
        return tuple(g)
    report = check_jvp(ops.linear_forward, _linear_jvp_one_entry_off, backward, args)
    assert report.errors["x"].status == "failed", report


@pytest.mark.parametrize("mode", ["full", "directional"])
def test_check_module_jvp_scales_do_not_come_from_the_backward(mode, monkeypatch, rng):
    from refnet.nn import Linear
    layer = Linear(5, 3, rng=np.random.default_rng(0), dtype=np.float64)
    real = type(layer).backward_jvp

    def scaled(self, dy, tdy, hgrads, grads=None):
        dx, tdx = real(self, dy, tdy, hgrads, grads)
        for k in list(grads or {}):
            grads[k] = 1e4 * grads[k]
        return 1e4 * dx, tdx
    monkeypatch.setattr(type(layer), "backward_jvp", scaled)
    monkeypatch.setattr(type(layer), "_op_forward_jvp", staticmethod(_linear_jvp_one_entry_off))
    report = check_module_jvp(layer, rng.standard_normal((4, 5)), mode=mode)
    assert report.errors["x"].status == "failed", report


def _conv_jvp_dropping_tx_when_tw(cache, tx, tw, tb=None):
    """conv(tx, w) lost when tw is also given: each tangent alone is right."""
    if tx is not None and tw is not None:
        return ops.conv2d_forward_jvp(cache, None, tw, tb)
    return ops.conv2d_forward_jvp(cache, tx, tw, tb)


def test_check_jvp_moves_all_tangents_together(rng):
    args = (rng.standard_normal((2, 2, 5, 5)), rng.standard_normal((3, 2, 3, 3)), rng.standard_normal(3))
    kwargs = {"stride": 1, "padding": 1}
    _ok(check_jvp(ops.conv2d_forward, ops.conv2d_forward_jvp, ops.conv2d_backward, args, kwargs))
    report = check_jvp(ops.conv2d_forward, _conv_jvp_dropping_tx_when_tw, ops.conv2d_backward, args, kwargs)
    assert report.status == "failed" and report.errors["all tangents"].status == "failed", report


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


# --- hygiene and clear errors -----------------------------------------------------------------
def _linear_args(rng):
    return (rng.standard_normal((4, 5)), rng.standard_normal((3, 5)), rng.standard_normal(3))


def _jvp_returning(what):
    def forward_jvp(cache, tx, tw=None, tb=None):
        ty = ops.linear_forward_jvp(cache, tx, tw, tb)
        return {"None": None, "shape": ty[:, :2], "nan": ty * np.nan}[what]
    return forward_jvp


def _bjvp_returning(what):
    def backward_jvp(dy, tdy, cache, tx, tw=None, tb=None):
        g = list(ops.linear_backward_jvp(dy, tdy, cache, tx, tw, tb))
        g[1] = {"None": None, "shape": g[1][:, :2], "nan": g[1] * np.nan}[what]
        return tuple(g)
    return backward_jvp


@pytest.mark.parametrize("what, match", [("None", "returned None"), ("shape", r"shape \(4, 2\).*\(4, 3\)"),
                                         ("nan", "non-finite|nan")])
@pytest.mark.parametrize("check", ["check_jvp", "check_hvp"])
def test_a_bad_forward_jvp_output_is_a_clear_error_naming_it(check, what, match, rng):
    fjvp = _jvp_returning(what)
    with pytest.raises(ValueError, match=match) as info:
        if check == "check_jvp":
            check_jvp(ops.linear_forward, fjvp, ops.linear_backward, _linear_args(rng))
        else:
            check_hvp(ops.linear_forward, ops.linear_backward, fjvp, ops.linear_backward_jvp, _linear_args(rng))
    assert "forward_jvp" in str(info.value)


@pytest.mark.parametrize("what, match", [("None", "returned None"), ("shape", r"shape \(3, 2\).*\(3, 5\)"),
                                         ("nan", "non-finite|nan")])
def test_a_bad_backward_jvp_output_is_a_clear_error_naming_it(what, match, rng):
    with pytest.raises(ValueError, match=match) as info:
        check_hvp(ops.linear_forward, ops.linear_backward, ops.linear_forward_jvp, _bjvp_returning(what),
                  _linear_args(rng))
    assert "backward_jvp" in str(info.value) and "'w'" in str(info.value)


def _modifying(fn, position):
    def wrapped(*a):
        out = fn(*a)
        if a[position] is not None:
            a[position][...] = 0.5 * a[position]
        return out
    wrapped.__name__ = fn.__name__
    return wrapped


@pytest.mark.parametrize("which", ["forward_jvp tangent", "forward_jvp cache", "backward_jvp tdout",
                                   "backward_jvp dout", "backward_jvp tangent"])
def test_a_jvp_that_modifies_its_inputs_is_a_named_problem(which, rng):
    fjvp, bjvp = ops.linear_forward_jvp, ops.linear_backward_jvp
    if which == "forward_jvp tangent":
        fjvp = _modifying(fjvp, 1)
    elif which == "forward_jvp cache":
        def fjvp(cache, *t):
            cache[0][...] *= 1.0 + 1e-3
            return ops.linear_forward_jvp(cache, *t)
    else:
        bjvp = _modifying(bjvp, {"backward_jvp tdout": 1, "backward_jvp dout": 0, "backward_jvp tangent": 3}[which])
    if which.startswith("forward_jvp"):
        report = check_jvp(ops.linear_forward, fjvp, ops.linear_backward, _linear_args(rng))
    else:
        report = check_hvp(ops.linear_forward, ops.linear_backward, fjvp, bjvp, _linear_args(rng))
    assert report.status == "failed" and any("modified" in p for p in report.problems), report


@pytest.mark.parametrize("check", ["check_jvp", "check_hvp", "check_module_jvp", "check_model_hvp"])
@pytest.mark.parametrize("seed", [-1, 1.5, True, "0"])
def test_a_bad_seed_is_named(check, seed, rng):
    model = mlp(4, num_classes=3, width=3, norm="bn", rng=0, dtype=np.float64)
    x, y = rng.standard_normal((5, 4)), rng.integers(0, 3, 5)
    call = {"check_jvp": lambda: check_jvp(ops.linear_forward, ops.linear_forward_jvp, ops.linear_backward,
                                           _linear_args(rng), seed=seed),
            "check_hvp": lambda: check_hvp(ops.linear_forward, ops.linear_backward, ops.linear_forward_jvp,
                                           ops.linear_backward_jvp, _linear_args(rng), seed=seed),
            "check_module_jvp": lambda: check_module_jvp(model, x, seed=seed),
            "check_model_hvp": lambda: check_model_hvp(model, x, y, seed=seed)}[check]
    with pytest.raises(ValueError, match=rf"{check}\(seed\)"):
        call()


@pytest.mark.parametrize("check", ["check_module_jvp", "check_model_hvp"])
def test_non_finite_x_is_named(check, rng):
    model = mlp(4, num_classes=3, width=3, norm="bn", rng=0, dtype=np.float64)
    x, y = rng.standard_normal((5, 4)), rng.integers(0, 3, 5)
    x[1, 2] = np.nan
    with pytest.raises(ValueError, match=rf"{check}\(x\)"):
        check_module_jvp(model, x) if check == "check_module_jvp" else check_model_hvp(model, x, y)


# --- kinks at second order: a jump in the gradient --------------------------------------------
def _relu_with_zeros(rng):
    x = rng.standard_normal((6, 7))
    x[rng.random(x.shape) < 0.2] = 0.0
    return x


def _maxpool_ties(rng):
    return np.maximum(rng.standard_normal((2, 2, 6, 6)), 0.0)


SECOND_ORDER_KINKS = [
    pytest.param(ops.relu_forward, ops.relu_backward, ops.relu_forward_jvp, ops.relu_backward_jvp,
                 _relu_with_zeros, {}, id="relu-zeros"),
    pytest.param(ops.maxpool2d_forward, ops.maxpool2d_backward, ops.maxpool2d_forward_jvp,
                 ops.maxpool2d_backward_jvp, _maxpool_ties, {"kernel_size": 2}, id="maxpool-ties"),
]


@pytest.mark.parametrize("mode", ["full", "directional"])
@pytest.mark.parametrize("fwd, bwd, fjvp, bjvp, make, kwargs", SECOND_ORDER_KINKS)
def test_check_hvp_excludes_jumps_of_the_gradient_at_kinks_and_lists_them(fwd, bwd, fjvp, bjvp, make, kwargs,
                                                                          mode, rng):
    x = make(rng)
    report = check_hvp(fwd, bwd, fjvp, bjvp, (x,), kwargs, mode=mode)
    _ok(report)
    assert report.errors["x"].n_kinks > 0


@pytest.mark.parametrize("fwd, bwd, fjvp, bjvp, make, kwargs", SECOND_ORDER_KINKS)
def test_check_hvp_beside_jumps_still_fails_a_wrong_entry(fwd, bwd, fjvp, bjvp, make, kwargs, rng):
    x = make(rng)
    at = tuple(int(i) for i in np.argwhere(x > 0.5)[0])

    def wrong(dy, tdy, cache, tx=None):
        tdx = bjvp(dy, tdy, cache, tx).copy()
        tdx[at] *= 1.001
        return tdx
    report = check_hvp(fwd, bwd, fjvp, wrong, (x,), kwargs, mode="full")
    assert report.status == "failed" and report.errors["x"].index == at, report
