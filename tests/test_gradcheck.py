"""The gradient checker's own specification: it passes correct backwards, catches wrong
ones (mutation tests on every op family), handles kinks, and reports what it did.

Default tolerance under test: rtol = 1e-5 per probe (refnet.gradcheck.RTOL)."""

import numpy as np
import pytest

from refnet import gradcheck
from refnet.gradcheck import GradcheckWarning, check_loss, check_module, check_op, checker_rng
from refnet.nn.module import Module, Parameter


# --- toy ops written here, so the checker is specified independently of refnet.ops ------
def tanh_forward(x):
    y = np.tanh(x)
    return y, y


def tanh_backward(dy, y):
    return dy * (1 - y ** 2)


def matmul_forward(x, w, b):
    return x @ w.T + (0 if b is None else b), (x, w, b is not None)


def matmul_backward(dy, cache):
    x, w, has_b = cache
    return dy @ w, dy.T @ x, dy.sum(0) if has_b else None


def relu_forward(x):
    return np.maximum(x, 0), x


def relu_backward(dy, x):
    return dy * (x > 0)


def rowmax_forward(x):
    """Max over axis 1; backward routes to the first maximum, as max-pooling does."""
    return x.max(axis=1), x


def rowmax_backward(dy, x):
    dx = np.zeros_like(x)
    dx[np.arange(x.shape[0]), x.argmax(axis=1)] = dy
    return dx


def centre_forward(x, b):
    """y = (x + b) - mean over rows: b has an exactly zero gradient (like a bias before BN)."""
    z = x + b
    return z - z.mean(axis=0), None


def centre_backward(dy, _):
    return dy - dy.mean(axis=0), np.zeros(dy.shape[1])


def toy_ce(logits, labels):
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    n = logits.shape[0]
    loss = -np.log(p[np.arange(n), labels]).mean()
    p[np.arange(n), labels] -= 1
    return loss, p / n


def _matmul_args(rng, n=5, d_in=7, d_out=6):
    return (rng.standard_normal((n, d_in)), rng.standard_normal((d_out, d_in)),
            rng.standard_normal(d_out))


def _off_by(grads, k, index, factor=1.001):
    grads = list(grads)
    grads[k] = grads[k].copy()
    grads[k][index] *= factor
    return tuple(grads)


# --- correct backwards pass -----------------------------------------------------------
@pytest.mark.parametrize("forward, backward, make_args", [
    (tanh_forward, tanh_backward, lambda rng: (rng.standard_normal((4, 5)),)),
    (matmul_forward, matmul_backward, _matmul_args),
    (centre_forward, centre_backward, lambda rng: (rng.standard_normal((5, 3)), rng.standard_normal(3))),
])
def test_correct_backward_passes(forward, backward, make_args, rng):
    report = check_op(forward, backward, make_args(rng))
    assert report.ok, str(report)
    assert bool(report) is True
    assert report.max_rel_err < 1e-7


def test_report_names_arguments_and_fields(rng):
    report = check_op(matmul_forward, matmul_backward, _matmul_args(rng))
    assert list(report.errors) == ["x", "w", "b"]
    c = report.errors["w"]
    assert (c.shape, c.mode, c.n_checked, c.n_excluded) == ((6, 7), "full", 42, 0)
    assert c.max_abs_err >= 0 and len(c.index) == 2
    text = str(report)
    assert "max rel err" in text and "w" in text and "ok" in text


def test_missing_bias_gets_none_and_is_not_checked(rng):
    x, w, _ = _matmul_args(rng)
    report = check_op(matmul_forward, matmul_backward, (x, w, None))
    assert report.ok and list(report.errors) == ["x", "w"]


def test_gradient_for_a_none_argument_fails(rng):
    x, w, _ = _matmul_args(rng)
    report = check_op(matmul_forward, lambda dy, c: (*matmul_backward(dy, c)[:2], np.zeros(6)),
                      (x, w, None))
    assert not report.ok and "None" in report.problems[0]


# --- wrong backwards fail -------------------------------------------------------------
@pytest.mark.parametrize("k, index", [(0, (2, 1)), (1, (3, 4)), (2, (5,))])
def test_one_entry_off_by_a_tenth_percent_fails_and_is_located(k, index, rng):
    def backward(dy, cache):
        return _off_by(matmul_backward(dy, cache), k, index)

    report = check_op(matmul_forward, backward, _matmul_args(rng))
    name = "xwb"[k]
    assert not report.ok
    assert [n for n, c in report.errors.items() if not c.ok] == [name]
    assert report.errors[name].index == index
    assert report.errors[name].max_rel_err == pytest.approx(1e-3, rel=0.01)


def test_backward_right_only_for_a_ones_upstream_gradient_fails(rng):
    """dx = ones @ w is right when dout = ones: the checker must not use ones."""
    def backward(dy, cache):
        _, dw, db = matmul_backward(dy, cache)
        return np.ones_like(dy) @ cache[1], dw, db

    report = check_op(matmul_forward, backward, _matmul_args(rng))
    assert not report.errors["x"].ok


def test_upstream_gradient_is_random_not_constant(rng):
    seen = []

    def backward(dy, cache):
        seen.append(dy.copy())
        return matmul_backward(dy, cache)

    check_op(matmul_forward, backward, _matmul_args(rng))
    assert np.ptp(seen[0]) > 0.5 and not np.allclose(np.abs(seen[0]), 1)


@pytest.mark.parametrize("bad, message", [
    (lambda dy, c: matmul_backward(dy, c)[:2], "2 gradient(s) for 3"),
    (lambda dy, c: (None,) + matmul_backward(dy, c)[1:], "returned None"),
    (lambda dy, c: (matmul_backward(dy, c)[0].T,) + matmul_backward(dy, c)[1:], "shape (7, 5)"),
])
def test_missing_or_misshapen_gradient_fails(bad, message, rng):
    report = check_op(matmul_forward, bad, _matmul_args(rng))
    assert not report.ok and message in str(report)


def test_backward_that_mutates_dout_is_caught(rng):
    def backward(dy, cache):
        grads = matmul_backward(dy, cache)
        dy *= 2
        return grads

    report = check_op(matmul_forward, backward, _matmul_args(rng))
    assert not report.ok and report.problems == ["backward modified dout"]


def test_backward_that_mutates_cache_or_input_is_caught(rng):
    def backward(dy, cache):
        grads = matmul_backward(dy, cache)
        cache[0][0, 0] += 1.0  # cache[0] is x itself: both are modified
        return grads

    report = check_op(matmul_forward, backward, _matmul_args(rng))
    assert "backward modified the cache" in report.problems
    assert "forward or backward modified the inputs" in report.problems


def test_caller_arrays_are_never_perturbed(rng):
    args = _matmul_args(rng)
    copies = [a.copy() for a in args]
    check_op(matmul_forward, matmul_backward, args)
    assert all(np.array_equal(a, c) for a, c in zip(args, copies))


# --- kinks ----------------------------------------------------------------------------
def test_relu_at_zero_is_excluded_and_reported(rng):
    x = rng.standard_normal((4, 5))
    x[0, 0] = x[2, 3] = x[3, 1] = 0.0
    report = check_op(relu_forward, relu_backward, (x,))
    assert report.ok
    assert report.errors["x"].n_excluded == 3 and report.errors["x"].n_checked == 17
    assert "3 probe(s) at a kink excluded" in str(report)


def test_tied_maxima_are_excluded_not_failed(rng):
    x = rng.standard_normal((4, 6))
    x[1, 4] = x[1, 2] = x[1].max() + 1.0  # a tie for the row's maximum
    report = check_op(rowmax_forward, rowmax_backward, (x,))
    assert report.ok and report.errors["x"].n_excluded == 2


def test_kink_inside_the_step_but_not_at_the_point_is_resampled(rng):
    x = rng.standard_normal((3, 4))
    x[1, 1] = 0.5 * gradcheck.STEP  # the +-h step crosses 0, the h/10 step does not
    report = check_op(relu_forward, relu_backward, (x,))
    assert report.ok and report.errors["x"].n_excluded == 0


def test_wrong_gradient_at_a_kink_free_entry_still_fails_next_to_kinks(rng):
    x = rng.standard_normal((4, 5))
    x[0, 0] = 0.0
    x[1, 1] = 2.0

    def backward(dy, cache):
        return _off_by((relu_backward(dy, cache),), 0, (1, 1))[0]

    report = check_op(relu_forward, backward, (x,))
    assert not report.ok and report.errors["x"].n_excluded == 1 and report.errors["x"].index == (1, 1)


def test_argument_at_kinks_everywhere_is_not_passed(rng):
    report = check_op(relu_forward, relu_backward, (np.zeros((2, 3)),))
    assert not report.ok and "nothing was checked" in str(report)


# --- precision ------------------------------------------------------------------------
def test_float32_input_is_promoted_with_a_warning(rng):
    x = rng.standard_normal((4, 5)).astype(np.float32)
    with pytest.warns(GradcheckWarning, match="float32"):
        report = check_op(tanh_forward, tanh_backward, (x,))
    assert report.ok


def test_exactly_zero_gradient_is_judged_against_rounding_noise(rng):
    """centre's db is 0 analytically; the numerical one is rounding noise (~1e-10)."""
    report = check_op(centre_forward, centre_backward, (rng.standard_normal((5, 3)), rng.standard_normal(3)))
    assert report.ok and report.errors["b"].max_abs_err < 1e-6


def test_invalid_mode_raises(rng):
    with pytest.raises(ValueError, match="mode"):
        check_op(tanh_forward, tanh_backward, (rng.standard_normal(3),), mode="fast")


# --- directional mode -----------------------------------------------------------------
def test_large_tensor_uses_directional_mode_and_passes(rng):
    report = check_op(matmul_forward, matmul_backward, _matmul_args(rng, 8, 300, 200))
    assert report.errors["w"].mode.startswith("dir") and report.errors["b"].mode == "full"
    assert report.ok


def test_directional_mode_catches_and_locates_one_wrong_entry_in_a_large_tensor(rng):
    def backward(dy, cache):
        return _off_by(matmul_backward(dy, cache), 1, (123, 45))

    report = check_op(matmul_forward, backward, _matmul_args(rng, 8, 300, 200))
    w = report.errors["w"]
    assert not w.ok and w.index == (123, 45) and w.mode.startswith("dir")
    assert report.errors["x"].ok


def test_directional_mode_catches_a_transposed_gradient(rng):
    def backward(dy, cache):
        dx, dw, db = matmul_backward(dy, cache)
        return dx, dw.T.copy(), db

    report = check_op(matmul_forward, backward, _matmul_args(rng, 4, 60, 60), mode="directional")
    assert not report.errors["w"].ok and report.errors["w"].max_rel_err > 0.1


# --- check_loss and check_module ------------------------------------------------------
def test_check_loss_passes_a_correct_loss_and_fails_a_wrong_one(rng):
    logits, labels = rng.standard_normal((6, 4)), rng.integers(0, 4, 6)
    assert check_loss(toy_ce, logits, labels).ok
    wrong = check_loss(lambda z, y: (toy_ce(z, y)[0], toy_ce(z, y)[1] * 6), logits, labels)
    assert not wrong.ok and list(wrong.errors) == ["logits"]


class ToyAffine(Module):
    """y = x * scale + shift with a running mean buffer updated in training mode."""

    def __init__(self, d, rng, wrong=False):
        super().__init__()
        self.scale = Parameter(rng.standard_normal(d))
        self.shift = Parameter(rng.standard_normal(d), decay=False)
        self.register_buffer("running_mean", np.zeros(d))
        self.wrong = wrong

    def forward(self, x):
        if self.training:
            self.running_mean = 0.9 * self.running_mean + 0.1 * x.mean(0)
        self._x = x
        return x * self.scale.data + self.shift.data

    def backward(self, dy):
        self.scale.grad += (dy * self._x).sum(0) * (1.001 if self.wrong else 1)
        self.shift.grad += dy.sum(0)
        return dy * self.scale.data


@pytest.mark.parametrize("training", [True, False])
def test_check_module_passes_and_leaves_the_module_as_found(training, rng):
    m = ToyAffine(3, rng).train(training)
    m.scale.grad[:] = 7.0
    before = m.state_dict()
    report = check_module(m, rng.standard_normal((4, 3)))
    assert report.ok and list(report.errors) == ["x", "scale", "shift"]
    after = m.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before)
    assert np.all(m.scale.grad == 7.0)


def test_check_module_catches_a_wrong_parameter_gradient(rng):
    report = check_module(ToyAffine(3, rng, wrong=True), rng.standard_normal((4, 3)))
    assert not report.errors["scale"].ok and report.errors["shift"].ok


def test_check_module_float32_checks_a_float64_copy_with_a_warning(rng):
    m = ToyAffine(3, rng).float()
    with pytest.warns(GradcheckWarning):
        assert check_module(m, rng.standard_normal((4, 3))).ok
    assert m.scale.data.dtype == np.float32


# --- mutation tests on the real ops ---------------------------------------------------
# Each family: forward, backward, inputs (small float64, seeded), kwargs, and the index of
# its weight (with how to transpose that weight's gradient; square, so shapes still match)
# and of its bias (or the gain of weight norm, which plays that role).
def _families():
    from refnet import ops
    r = lambda rng, *s: rng.standard_normal(s)  # noqa: E731
    return {
        "linear": (ops.linear_forward, ops.linear_backward,
                   lambda rng: (r(rng, 4, 6), r(rng, 6, 6), r(rng, 6)), {}, (1, lambda g: g.T), 2),
        "conv2d": (ops.conv2d_forward, ops.conv2d_backward,
                   lambda rng: (r(rng, 2, 3, 6, 5), r(rng, 3, 3, 3, 3), r(rng, 3)), {"padding": 1},
                   (1, lambda g: g.swapaxes(0, 1)), 2),
        "maxpool2d": (ops.maxpool2d_forward, ops.maxpool2d_backward,
                      lambda rng: (r(rng, 2, 2, 6, 6),), {"kernel_size": 3, "stride": 2}, None, None),
        "avgpool2d": (ops.avgpool2d_forward, ops.avgpool2d_backward,
                      lambda rng: (r(rng, 2, 2, 6, 6),), {"kernel_size": 3, "stride": 2}, None, None),
        "relu": (ops.relu_forward, ops.relu_backward, lambda rng: (r(rng, 4, 6),), {}, None, None),
        "batchnorm": (ops.batchnorm_forward, ops.batchnorm_backward,
                      lambda rng: (r(rng, 4, 3, 2, 2), r(rng, 3), r(rng, 3)), {}, None, 2),
        "batchnorm_eval": (ops.batchnorm_eval_forward, ops.batchnorm_eval_backward,
                           lambda rng: (r(rng, 4, 3, 2, 2), r(rng, 3), r(rng, 3), r(rng, 3),
                                        rng.uniform(0.5, 2, 3)), {}, None, 2),
        "layernorm": (ops.layernorm_forward, ops.layernorm_backward,
                      lambda rng: (r(rng, 3, 2, 3, 3), r(rng, 2, 3, 3), r(rng, 2, 3, 3)), {},
                      (1, lambda g: g.swapaxes(1, 2)), 2),
        "weightnorm": (ops.weightnorm_forward, ops.weightnorm_backward,
                       lambda rng: (r(rng, 4, 4), r(rng, 4)), {}, (0, lambda g: g.T), 1),
    }


FAMILIES = ["linear", "conv2d", "maxpool2d", "avgpool2d", "relu", "batchnorm", "batchnorm_eval",
            "layernorm", "weightnorm"]
ARGS = {"linear": 3, "conv2d": 3, "maxpool2d": 1, "avgpool2d": 1, "relu": 1, "batchnorm": 3,
        "batchnorm_eval": 5, "layernorm": 3, "weightnorm": 2}


def _typical_entry(g):
    """The nonzero entry of median magnitude: an ordinary entry, neither the largest nor ~0."""
    flat = np.flatnonzero(g)
    order = flat[np.argsort(np.abs(g.ravel()[flat]))]
    return np.unravel_index(order[len(order) // 2], g.shape)


def _mutant(backward, k, change):
    """backward with its k-th gradient replaced by change(gradient)."""
    def mutated(dout, cache):
        grads = backward(dout, cache)
        single = not isinstance(grads, tuple)
        grads = list((grads,) if single else grads)
        grads[k] = change(grads[k].copy())
        return grads[0] if single else tuple(grads)
    return mutated


def _off_by_a_tenth_percent(g):
    g[_typical_entry(g)] *= 1.001
    return g


@pytest.mark.parametrize("family", FAMILIES)
def test_real_backward_passes(family, rng):
    fwd, bwd, make, kwargs, _, _ = _families()[family]
    report = check_op(fwd, bwd, make(rng), kwargs)
    assert report.ok, str(report)


@pytest.mark.parametrize("family, k", [(f, k) for f in FAMILIES for k in range(ARGS[f])])
def test_one_entry_off_by_a_tenth_percent_is_caught(family, k, rng):
    fwd, bwd, make, kwargs, _, _ = _families()[family]
    args = make(rng)
    report = check_op(fwd, _mutant(bwd, k, _off_by_a_tenth_percent), args, kwargs)
    failing = [name for name, c in report.errors.items() if not c.ok]
    assert failing == [list(report.errors)[k]], str(report)
    expected = _typical_entry(_as_tuple(bwd(*_probe_grads(fwd, args, kwargs)))[k])
    assert report.errors[failing[0]].index == tuple(int(i) for i in expected)


def _as_tuple(g):
    return g if isinstance(g, tuple) else (g,)


def _probe_grads(fwd, args, kwargs):
    """(dout, cache) with the checker's own upstream gradient (seed 0), to find the entry it saw."""
    out, cache = fwd(*args, **kwargs)
    return checker_rng(0).standard_normal(out.shape), cache


@pytest.mark.parametrize("family", [f for f in FAMILIES if _families()[f][4] is not None])
def test_transposed_weight_gradient_is_caught(family, rng):
    fwd, bwd, make, kwargs, (k, transpose), _ = _families()[family]
    report = check_op(fwd, _mutant(bwd, k, transpose), make(rng), kwargs)
    assert not list(report.errors.values())[k].ok and not report.ok


@pytest.mark.parametrize("family", [f for f in FAMILIES if _families()[f][5] is not None])
def test_missing_bias_gradient_is_caught(family, rng):
    fwd, bwd, make, kwargs, _, k = _families()[family]
    report = check_op(fwd, _mutant(bwd, k, np.zeros_like), make(rng), kwargs)
    failing = [name for name, c in report.errors.items() if not c.ok]
    assert failing == [list(report.errors)[k]]


def test_softmax_cross_entropy_passes_and_one_entry_off_is_caught(rng):
    from refnet.ops import softmax_cross_entropy
    logits, labels = rng.standard_normal((5, 4)), rng.integers(0, 4, 5)
    assert check_loss(softmax_cross_entropy, logits, labels).ok

    def mutant(z, y):
        loss, dz = softmax_cross_entropy(z, y)
        return loss, _off_by_a_tenth_percent(dz.copy())

    report = check_loss(mutant, logits, labels)
    expected = _typical_entry(softmax_cross_entropy(logits, labels)[1])
    assert not report.ok and report.errors["logits"].index == tuple(int(i) for i in expected)


def test_conv_weight_gradient_off_by_a_tenth_percent_in_its_largest_and_smallest_typical_entry(rng):
    """The issue's acceptance line, at both ends of the entries that carry the gradient."""
    from refnet.ops import conv2d_backward, conv2d_forward
    args = (rng.standard_normal((2, 3, 8, 8)), rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4))
    dw = conv2d_backward(*_probe_grads(conv2d_forward, args, {"stride": 2, "padding": 1}))[1]
    for pick in (np.argmax, lambda a: np.argsort(a)[a.size // 10]):  # the largest; the 10th percentile
        index = np.unravel_index(pick(np.abs(dw).ravel()), dw.shape)

        def off(g, index=index):
            g[index] *= 1.001
            return g

        report = check_op(conv2d_forward, _mutant(conv2d_backward, 1, off), args, {"stride": 2, "padding": 1})
        assert not report.errors["w"].ok and report.errors["w"].index == tuple(int(i) for i in index)
        assert report.errors["x"].ok and report.errors["b"].ok


def test_real_relu_zeros_and_maxpool_ties_are_excluded_not_failed(rng):
    from refnet.ops import maxpool2d_backward, maxpool2d_forward, relu_backward, relu_forward
    x = rng.standard_normal((2, 2, 4, 4))
    x[0, 0, :2, :2] = 0.0  # relu: four kinks; pool: one window with a four-way tie
    relu = check_op(relu_forward, relu_backward, (x,))
    pool = check_op(maxpool2d_forward, maxpool2d_backward, (np.maximum(x, 0),), {"kernel_size": 2})
    assert relu.ok and relu.errors["x"].n_excluded == 4
    assert pool.ok and pool.errors["x"].n_excluded >= 4


@pytest.mark.gpu
def test_check_op_and_check_module_run_on_cupy_arrays(rng):
    from refnet import backend
    from refnet.nn.layers import Linear
    from refnet.ops import linear_backward, linear_forward
    cp = backend.use("cupy")
    try:
        args = [backend.to_device(a, "cupy") for a in _matmul_args(rng)]
        assert check_op(linear_forward, linear_backward, args).ok
        wrong = check_op(linear_forward, _mutant(linear_backward, 1, _off_by_a_tenth_percent), args)
        assert not wrong.errors["w"].ok
        layer = Linear(4, 3, rng=rng, dtype=np.float64)
        assert check_module(layer, cp.asarray(rng.standard_normal((2, 4)))).ok
    finally:
        backend.use("numpy")


def test_check_module_catches_a_backward_that_mutates_dy(rng):
    class Scaling(ToyAffine):
        def backward(self, dy):
            dx = super().backward(dy)
            dy *= 0.5
            return dx

    report = check_module(Scaling(3, rng), rng.standard_normal((4, 3)))
    assert report.problems == ["backward modified dy"]
