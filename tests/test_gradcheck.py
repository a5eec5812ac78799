"""The gradient checker's own specification: it passes correct backwards, fails wrong ones and
names the entry, reports what it did, and leaves the caller's arrays and modules as found.

Default tolerance under test: rtol = 1e-5 per entry (refnet.gradcheck.RTOL). Every verdict
is shown both ways. Both probing modes ("full": every entry alone; "directional": random
blocks plus dense directions) are held to the same specification."""

import numpy as np
import pytest
from requirement import unmet

from refnet.gradcheck import GradcheckWarning, check_loss, check_module, check_op, checker_rng
from refnet.nn.module import Module, Parameter

MODES = ["full", "directional"]


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
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("forward, backward, make_args", [
    (tanh_forward, tanh_backward, lambda rng: (rng.standard_normal((4, 5)),)),
    (matmul_forward, matmul_backward, _matmul_args),
    (centre_forward, centre_backward, lambda rng: (rng.standard_normal((5, 3)), rng.standard_normal(3))),
], ids=["tanh", "matmul", "centre"])
def test_correct_backward_is_ok(forward, backward, make_args, mode, rng):
    report = check_op(forward, backward, make_args(rng), mode=mode)
    assert report.ok and bool(report) is True and report.status == "ok", str(report)
    assert report.max_rel_err < 1e-7 and report.resolution <= 1e-5


def test_report_names_arguments_and_shows_coverage_and_resolution(rng):
    report = check_op(matmul_forward, matmul_backward, _matmul_args(rng))
    assert list(report.errors) == ["x", "w", "b"]
    c = report.errors["w"]
    assert (c.shape, c.mode, c.status, c.n_entries, c.n_covered, c.n_kinks) == ((6, 7), "full", "ok", 42, 42, 0)
    assert 0 < c.resolution <= 1e-5 and c.coverage == 1.0 and len(c.index) == 2
    text = str(report)
    for column in ("status", "covered", "kinks", "resolution", "max rel err", "42/42"):
        assert column in text


def test_missing_bias_gets_none_and_is_not_checked(rng):
    x, w, _ = _matmul_args(rng)
    report = check_op(matmul_forward, matmul_backward, (x, w, None))
    assert report.ok and list(report.errors) == ["x", "w"]


def test_gradient_for_a_none_argument_fails(rng):
    x, w, _ = _matmul_args(rng)
    report = check_op(matmul_forward, lambda dy, c: (*matmul_backward(dy, c)[:2], np.zeros(6)),
                      (x, w, None))
    assert report.status == "failed" and "None" in report.problems[0]


# --- wrong backwards fail, and the entry is named ----------------------------------------
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("k, index", [(0, (2, 1)), (1, (3, 4)), (2, (5,))])
def test_one_entry_off_by_a_tenth_percent_fails_and_is_located(k, index, mode, rng):
    def backward(dy, cache):
        return _off_by(matmul_backward(dy, cache), k, index)

    report = check_op(matmul_forward, backward, _matmul_args(rng), mode=mode)
    name = "xwb"[k]
    assert report.status == "failed"
    assert [n for n, c in report.errors.items() if c.status != "ok"] == [name]
    assert report.errors[name].index == index


def test_full_mode_reads_the_relative_error_of_the_entry(rng):
    def backward(dy, cache):
        return _off_by(matmul_backward(dy, cache), 1, (3, 4))

    report = check_op(matmul_forward, backward, _matmul_args(rng), mode="full")
    assert report.errors["w"].max_rel_err == pytest.approx(1e-3, rel=0.01)


@pytest.mark.parametrize("mode", MODES)
def test_backward_right_only_for_a_ones_upstream_gradient_fails(mode, rng):
    """dx = ones @ w is right when dout = ones: the checker must not use ones."""
    def backward(dy, cache):
        _, dw, db = matmul_backward(dy, cache)
        return np.ones_like(dy) @ cache[1], dw, db

    report = check_op(matmul_forward, backward, _matmul_args(rng), mode=mode)
    assert report.errors["x"].status == "failed"


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
], ids=["too-few", "none", "transposed-shape"])
def test_missing_or_misshapen_gradient_fails(bad, message, rng):
    report = check_op(matmul_forward, bad, _matmul_args(rng))
    assert report.status == "failed" and message in str(report)


def test_backward_that_mutates_dout_is_caught(rng):
    def backward(dy, cache):
        grads = matmul_backward(dy, cache)
        dy *= 2
        return grads

    report = check_op(matmul_forward, backward, _matmul_args(rng))
    assert report.status == "failed" and report.problems[0] == "backward modified dout"


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


# --- precision ------------------------------------------------------------------------
def test_float32_input_is_promoted_with_a_warning(rng):
    x = rng.standard_normal((4, 5)).astype(np.float32)
    with pytest.warns(GradcheckWarning, match="float32"):
        report = check_op(tanh_forward, tanh_backward, (x,))
    assert report.ok


@pytest.mark.parametrize("mode", MODES)
def test_exactly_zero_gradient_is_judged_on_absolute_error(mode, rng):
    """centre's db is 0 analytically; its numerical slope is rounding noise; a wrong db is not."""
    args = (rng.standard_normal((5, 3)), rng.standard_normal(3))
    assert check_op(centre_forward, centre_backward, args, mode=mode).ok
    wrong = check_op(centre_forward, lambda dy, c: (centre_backward(dy, c)[0], np.full(3, 1e-4)), args, mode=mode)
    assert wrong.errors["b"].status == "failed"


# --- directional mode on a large tensor -----------------------------------------------
def test_large_tensor_uses_directional_mode_and_is_ok(rng):
    report = check_op(matmul_forward, matmul_backward, _matmul_args(rng, 8, 300, 200))
    assert report.errors["w"].mode == "directional" and report.errors["b"].mode == "full"
    assert report.ok and report.errors["w"].n_covered == 60000


def test_directional_mode_catches_and_locates_one_wrong_entry_in_a_large_tensor(rng):
    def backward(dy, cache):
        return _off_by(matmul_backward(dy, cache), 1, (123, 45))

    report = check_op(matmul_forward, backward, _matmul_args(rng, 8, 300, 200))
    w = report.errors["w"]
    assert w.status == "failed" and w.index == (123, 45) and w.mode == "directional"
    assert report.errors["x"].ok


@pytest.mark.parametrize("mode", MODES)
def test_a_transposed_gradient_fails(mode, rng):
    def backward(dy, cache):
        dx, dw, db = matmul_backward(dy, cache)
        return dx, dw.T.copy(), db

    report = check_op(matmul_forward, backward, _matmul_args(rng, 4, 12, 12), mode=mode)
    assert report.errors["w"].status == "failed" and report.errors["w"].max_rel_err > 0.1


# --- check_loss and check_module ------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_check_loss_passes_a_correct_loss_and_fails_a_wrong_one(mode, rng):
    logits, labels = rng.standard_normal((6, 4)), rng.integers(0, 4, 6)
    assert check_loss(toy_ce, logits, labels, mode=mode).ok
    wrong = check_loss(lambda z, y: (toy_ce(z, y)[0], toy_ce(z, y)[1] * 6), logits, labels, mode=mode)
    assert wrong.status == "failed" and list(wrong.errors) == ["logits"]


class ToyAffine(Module):
    """y = x * scale + shift with a running mean buffer updated in training mode."""

    def __init__(self, d, rng, wrong=False):
        super().__init__()
        self.scale = Parameter(rng.standard_normal(d))
        self.shift = Parameter(rng.standard_normal(d), decay=False)
        self.register_buffer("running_mean", np.zeros(d))
        self.wrong = wrong
        self.forwards = 0

    def forward(self, x):
        self.forwards += 1
        if self.training:
            self.running_mean = 0.9 * self.running_mean + 0.1 * x.mean(0)
        self._x = x
        return x * self.scale.data + self.shift.data

    def backward(self, dy):
        self.scale.grad += (dy * self._x).sum(0) * (1.001 if self.wrong else 1)
        self.shift.grad += dy.sum(0)
        return dy * self.scale.data


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("training", [True, False])
def test_check_module_is_ok_and_leaves_the_module_as_found(training, mode, rng):
    m = ToyAffine(3, rng).train(training)
    m.scale.grad[:] = 7.0
    before = m.state_dict()
    report = check_module(m, rng.standard_normal((4, 3)), mode=mode)
    assert report.ok and list(report.errors) == ["x", "scale", "shift"]
    after = m.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before)
    assert np.all(m.scale.grad == 7.0)


@pytest.mark.parametrize("mode", MODES)
def test_check_module_catches_a_wrong_parameter_gradient(mode, rng):
    report = check_module(ToyAffine(3, rng, wrong=True), rng.standard_normal((4, 3)), mode=mode)
    assert report.errors["scale"].status == "failed" and report.errors["shift"].ok


@pytest.mark.parametrize("mode", MODES)
def test_check_module_costs_six_forwards_per_probe_and_no_reloads(mode, rng, monkeypatch):
    """Six forwards per probe measurement, plus five (the gradients, a repeat, the += check,
    and the unperturbed loss twice); the state dict is never reloaded to evaluate."""
    m = ToyAffine(3, rng)
    monkeypatch.setattr(ToyAffine, "load_state_dict", lambda *a: pytest.fail("state dict reloaded"))
    report = check_module(m, rng.standard_normal((4, 3)), mode=mode)
    probes = sum(c.n_probes for c in report.errors.values())
    assert report.ok and probes >= 4 * 3 + 3 + 3
    assert m.forwards == 6 * probes + 5


def test_check_module_float32_checks_a_float64_copy_with_a_warning(rng):
    m = ToyAffine(3, rng).float()
    with pytest.warns(GradcheckWarning):
        assert check_module(m, rng.standard_normal((4, 3))).ok
    assert m.scale.data.dtype == np.float32


def test_check_module_catches_a_backward_that_mutates_dy(rng):
    class Scaling(ToyAffine):
        def backward(self, dy):
            dx = super().backward(dy)
            dy *= 0.5
            return dx

    report = check_module(Scaling(3, rng), rng.standard_normal((4, 3)))
    assert report.problems == ["backward modified dy"]


# --- the real ops: every family passes, and planted errors fail -------------------------
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


def _as_tuple(g):
    return g if isinstance(g, tuple) else (g,)


def _probe_grads(fwd, args, kwargs):
    """(dout, cache) with the checker's own upstream gradient (seed 0), to find the entry it saw."""
    out, cache = fwd(*args, **kwargs)
    return checker_rng(0).standard_normal(out.shape), cache


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("family", FAMILIES)
def test_real_backward_is_ok(family, mode, rng):
    fwd, bwd, make, kwargs, _, _ = _families()[family]
    report = check_op(fwd, bwd, make(rng), kwargs, mode=mode)
    assert report.ok, str(report)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("family, k", [(f, k) for f in FAMILIES for k in range(ARGS[f])])
def test_one_entry_off_by_a_tenth_percent_is_caught(family, k, mode, rng):
    fwd, bwd, make, kwargs, _, _ = _families()[family]
    args = make(rng)
    report = check_op(fwd, _mutant(bwd, k, _off_by_a_tenth_percent), args, kwargs, mode=mode)
    failing = [name for name, c in report.errors.items() if c.status == "failed"]
    assert failing == [list(report.errors)[k]], str(report)
    expected = _typical_entry(_as_tuple(bwd(*_probe_grads(fwd, args, kwargs)))[k])
    assert report.errors[failing[0]].index == tuple(int(i) for i in expected)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("family", [f for f in FAMILIES if _families()[f][4] is not None])
def test_transposed_weight_gradient_is_caught(family, mode, rng):
    fwd, bwd, make, kwargs, (k, transpose), _ = _families()[family]
    report = check_op(fwd, _mutant(bwd, k, transpose), make(rng), kwargs, mode=mode)
    assert list(report.errors.values())[k].status == "failed"


@pytest.mark.parametrize("family", [f for f in FAMILIES if _families()[f][5] is not None])
def test_missing_bias_gradient_is_caught(family, rng):
    fwd, bwd, make, kwargs, _, k = _families()[family]
    report = check_op(fwd, _mutant(bwd, k, np.zeros_like), make(rng), kwargs)
    failing = [name for name, c in report.errors.items() if c.status == "failed"]
    assert failing == [list(report.errors)[k]]


def test_softmax_cross_entropy_is_ok_and_one_entry_off_is_caught(rng):
    from refnet.ops import softmax_cross_entropy
    logits, labels = rng.standard_normal((5, 4)), rng.integers(0, 4, 5)
    assert check_loss(softmax_cross_entropy, logits, labels).ok

    def mutant(z, y):
        loss, dz = softmax_cross_entropy(z, y)
        return loss, _off_by_a_tenth_percent(dz.copy())

    report = check_loss(mutant, logits, labels)
    expected = _typical_entry(softmax_cross_entropy(logits, labels)[1])
    assert report.status == "failed" and report.errors["logits"].index == tuple(int(i) for i in expected)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("which", ["largest", "10th percentile"])
def test_conv_weight_gradient_off_by_a_tenth_percent_in_its_largest_and_a_small_entry(which, mode, rng):
    from refnet.ops import conv2d_backward, conv2d_forward
    args = (rng.standard_normal((2, 3, 8, 8)), rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4))
    kwargs = {"stride": 2, "padding": 1}
    dw = np.abs(conv2d_backward(*_probe_grads(conv2d_forward, args, kwargs))[1])
    flat = np.argmax(dw) if which == "largest" else np.argsort(dw.ravel())[dw.size // 10]
    index = tuple(int(i) for i in np.unravel_index(flat, dw.shape))

    def off(g):
        g[index] *= 1.001
        return g

    report = check_op(conv2d_forward, _mutant(conv2d_backward, 1, off), args, kwargs, mode=mode)
    assert report.errors["w"].status == "failed" and report.errors["w"].index == index
    assert report.errors["x"].ok and report.errors["b"].ok


@pytest.mark.gpu
def test_check_op_and_check_module_run_on_cupy_arrays(rng):
    from refnet import backend
    from refnet.nn.layers import Linear
    from refnet.ops import linear_backward, linear_forward
    cp = backend.use("cupy")
    try:
        args = [backend.to_device(a, "cupy") for a in _matmul_args(rng)]
        for mode in MODES:
            assert check_op(linear_forward, linear_backward, args, mode=mode).ok
            wrong = check_op(linear_forward, _mutant(linear_backward, 1, _off_by_a_tenth_percent), args, mode=mode)
            assert wrong.errors["w"].status == "failed"
        layer = Linear(4, 3, rng=rng, dtype=np.float64)
        assert check_module(layer, cp.asarray(rng.standard_normal((2, 4)))).ok
    finally:
        backend.use("numpy")


# --- the documentation site links the package to its API page ----------------------------------
def _without_mkdocs():
    import importlib.util
    return [] if importlib.util.find_spec("mkdocs") else ["mkdocs (python -m pip install -e '.[docs]')"]


@unmet(_without_mkdocs())
@pytest.mark.parametrize("link", ["refnet/gradcheck/", "refnet/gradcheck", "refnet/gradcheck/probes.py"])
def test_the_site_links_the_gradcheck_package_to_its_api_page(link):
    """docs/hooks.py maps repository paths in README and docs links to site pages; the checker
    is a package, refnet/gradcheck/, no longer the module refnet/gradcheck.py."""
    import importlib.util
    from pathlib import Path
    spec = importlib.util.spec_from_file_location(
        "refnet_docs_hooks", Path(__file__).resolve().parents[1] / "docs" / "hooks.py")
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)
    assert hooks.rewrite_links(f"see [the checker]({link})", "README.md", "index.md", set()) == \
        "see [the checker](api/gradcheck.md)"
