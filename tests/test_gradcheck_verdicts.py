"""A verdict that cannot be a false pass: the three ways the old checker's ``ok`` broke, in
both probing modes, and the other two outcomes (``inconclusive`` with its reason; ``failed``).

- kinks are excluded entry by entry (ReLU with 10% exact zeros; a max-pool after a ReLU,
  full of tied windows), so a wrong entry beside them still fails;
- the noise floor comes from the measured noise, not from the output: an output offset of
  1e4, or a small entry in a block of large ones, hides no error;
- ``ok`` needs every non-kink entry covered and a resolution within rtol; otherwise the
  report says inconclusive and why.
"""

import numpy as np
import pytest

from refnet import ops
from refnet.gradcheck import GradcheckError, check_module, check_op
from refnet.nn import MaxPool2d, ReLU

MODES = ["full", "directional"]


def _plant(backward, change):
    def mutated(dout, cache):
        g = backward(dout, cache)
        if isinstance(g, tuple):
            return tuple(change(a.copy()) if i == 1 else a for i, a in enumerate(g))
        return change(g.copy())
    return mutated


def _relu_input(rng, shape=(64, 64)):
    x = rng.standard_normal(shape)
    x[rng.random(shape) < 0.1] = 0.0
    return x


# --- kinks, entry by entry ----------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_relu_with_ten_percent_exact_zeros_is_ok_with_every_zero_listed(mode, rng):
    x = _relu_input(rng)
    report = check_op(ops.relu_forward, ops.relu_backward, (x,), mode=mode)
    c = report.errors["x"]
    zeros = {tuple(int(i) for i in z) for z in np.argwhere(x == 0)}
    assert report.ok and set(c.kinks) == zeros
    assert c.n_covered == x.size - len(zeros) and c.coverage == 1.0
    assert f"{len(zeros)} entries at or within {c.kink_step:.0e} of a kink excluded: {c.kinks[0]}" in str(report)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("mode", MODES)
def test_relu_one_positive_entry_off_by_one_percent_of_the_largest_fails_beside_the_zeros(mode, seed):
    rng = np.random.default_rng(seed)
    x = _relu_input(rng)
    at = tuple(int(i) for i in np.argwhere(x > 0)[rng.integers((x > 0).sum())])

    def change(g):
        g[at] += 0.01 * np.abs(g).max()
        return g

    report = check_op(ops.relu_forward, _plant(ops.relu_backward, change), (x,), mode=mode)
    assert report.status == "failed" and report.errors["x"].index == at


def _post_relu(rng, shape=(4, 8, 16, 16)):
    return np.maximum(rng.standard_normal(shape), 0)


@pytest.mark.parametrize("mode", MODES)
def test_maxpool_after_relu_is_ok_with_its_tied_windows_excluded(mode, rng):
    x = _post_relu(rng)
    report = check_op(ops.maxpool2d_forward, ops.maxpool2d_backward, (x,), {"kernel_size": 2}, mode=mode)
    c = report.errors["x"]
    tied = (x.reshape(4, 8, 8, 2, 8, 2).max(axis=(3, 5)) == 0).sum() * 4  # all-zero windows
    assert report.ok and 0 < c.n_kinks <= tied and c.coverage == 1.0


@pytest.mark.parametrize("mode", MODES)
def test_maxpool_routed_entry_off_by_one_percent_of_the_largest_fails(mode, rng):
    x = _post_relu(rng)
    y, cache = ops.maxpool2d_forward(x, 2)
    routed = np.argwhere((ops.maxpool2d_backward(np.ones_like(y), cache) != 0) & (x > 0))
    at = tuple(int(i) for i in routed[len(routed) // 2])

    def change(g):
        g[at] += 0.01 * np.abs(g).max()
        return g

    report = check_op(ops.maxpool2d_forward, _plant(ops.maxpool2d_backward, change), (x,),
                      {"kernel_size": 2}, mode=mode)
    assert report.status == "failed" and report.errors["x"].index == at


def test_a_kink_inside_the_step_but_not_at_the_point_is_judged_not_excluded(rng):
    x = rng.standard_normal((3, 4))
    x[1, 1] = 5e-5  # within the first step (1e-4) of ReLU's kink, but not at it
    report = check_op(ops.relu_forward, ops.relu_backward, (x,))
    assert report.ok and report.n_kinks == 0


@pytest.mark.parametrize("distance", [1e-8, 3e-8])
@pytest.mark.parametrize("mode", MODES)
def test_an_entry_near_a_kink_but_not_at_it_is_judged_at_a_shorter_step_not_excluded(distance, mode, rng):
    """ReLU input 1e-8: the first steps straddle the kink, but a step below 1e-8 does not."""
    x = rng.standard_normal((3, 4))
    x[1, 1] = distance
    report = check_op(ops.relu_forward, ops.relu_backward, (x,), mode=mode)
    assert report.ok and report.n_kinks == 0 and report.errors["x"].n_covered == 12

    def change(g):
        g[1, 1] *= 1.01
        return g

    wrong = check_op(ops.relu_forward, _plant(ops.relu_backward, change), (x,), mode=mode)
    assert wrong.status == "failed" and wrong.errors["x"].index == (1, 1)


def test_a_kink_entry_is_excluded_only_after_the_step_has_shrunk_to_the_noise(rng):
    """Exactly at the kink, no step clears it: it is excluded at the shortest step the rounding
    noise allows, and the report says within what distance."""
    x = rng.standard_normal((3, 4))
    x[1, 1] = 0.0
    report = check_op(ops.relu_forward, ops.relu_backward, (x,))
    c = report.errors["x"]
    assert report.ok and c.kinks == [(1, 1)] and 0 < c.kink_step < 1e-7
    assert f"1 entry at or within {c.kink_step:.0e} of a kink excluded: (1, 1)" in str(report)


@pytest.mark.parametrize("mode", MODES)
def test_an_argument_at_kinks_everywhere_is_inconclusive_not_ok(mode):
    report = check_op(ops.relu_forward, ops.relu_backward, (np.zeros((2, 3)),), mode=mode)
    assert report.status == "inconclusive" and "nothing was checked" in str(report)


@pytest.mark.parametrize("mode", MODES)
def test_relu_module_with_zeros_and_maxpool_module_with_ties_are_ok(mode, rng):
    assert check_module(ReLU(), _relu_input(rng, (16, 32)), mode=mode).ok
    assert check_module(MaxPool2d(2), _post_relu(rng, (2, 4, 8, 8)), mode=mode).ok


# --- noise from the gradient, not from the output -----------------------------------------
def _offset_linear(rng):
    return rng.standard_normal((16, 20)), rng.standard_normal((10, 20)), np.full(10, 1e4)


@pytest.mark.parametrize("mode", MODES)
def test_an_output_offset_of_1e4_blinds_nothing(mode, rng):
    args = _offset_linear(rng)

    def change(g):
        g[3, 4] += 1e-3 * np.abs(g).max()  # 0.1% of max|dw|: the old checker read 6e-6 here
        return g

    assert check_op(ops.linear_forward, ops.linear_backward, args, mode=mode).ok
    report = check_op(ops.linear_forward, _plant(ops.linear_backward, change), args, mode=mode)
    assert report.errors["w"].status == "failed" and report.errors["w"].index == (3, 4)


@pytest.mark.parametrize("mode", MODES)
def test_a_small_entry_beside_large_ones_is_judged_on_its_own_scale(mode, rng):
    """dw's column 0 is 100x smaller than the rest; 0.1% of that entry must still fail."""
    x, w, b = rng.standard_normal((8, 30)), rng.standard_normal((20, 30)), rng.standard_normal(20)
    x[:, 0] *= 1e-2
    dy = rng.standard_normal((8, 20))
    dw = ops.linear_backward(dy, ops.linear_forward(x, w, b)[1])[1]
    at = (int(np.argmax(np.abs(dw[:, 0]))), 0)
    assert np.abs(dw[at]) < 0.05 * np.abs(dw).max()

    def change(g):
        g[at] *= 1.001
        return g

    report = check_op(ops.linear_forward, _plant(ops.linear_backward, change), (x, w, b), mode=mode)
    assert report.errors["w"].status == "failed" and report.errors["w"].index == at


def test_a_large_loss_does_not_blind_the_check(rng):
    x = 100 * rng.standard_normal((40, 50))
    w = rng.standard_normal((30, 50))

    def change(g):
        g[7, 7] += 1e-3 * np.abs(g).max()
        return g

    assert check_op(ops.linear_forward, ops.linear_backward, (x, w, None)).ok
    assert check_op(ops.linear_forward, _plant(ops.linear_backward, change), (x, w, None)).status == "failed"


# --- inconclusive, with its reason ----------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_a_tolerance_below_what_finite_differences_resolve_is_inconclusive(mode, rng):
    report = check_op(ops.linear_forward, ops.linear_backward, _offset_linear(rng), rtol=1e-12, mode=mode)
    assert report.status == "inconclusive" and not report.ok
    assert "resolution" in str(report) and report.resolution > 1e-12


def test_inconclusive_is_not_failed_and_a_real_error_still_fails_at_that_tolerance(rng):
    args = _offset_linear(rng)

    def change(g):
        g[0, 0] *= 1.5
        return g

    report = check_op(ops.linear_forward, _plant(ops.linear_backward, change), args, rtol=1e-12)
    assert report.errors["w"].status == "failed"


# --- what PyTorch's gradcheck offers: fast mode, nondet_tol, raise_exception ---------------
def test_fast_mode_probes_one_direction_per_argument_and_says_so(rng):
    args = _offset_linear(rng)
    report = check_op(ops.linear_forward, ops.linear_backward, args, mode="fast")
    assert report.ok and {c.mode for c in report.errors.values()} == {"fast"}
    assert "fast mode: one random Gaussian direction per argument" in str(report)
    full = check_op(ops.linear_forward, ops.linear_backward, args, mode="full")
    assert sum(c.n_probes for c in report.errors.values()) < sum(c.n_probes for c in full.errors.values()) / 10


def test_fast_mode_still_fails_a_wrong_entry(rng):
    def change(g):
        g[3, 4] += 1e-3 * np.abs(g).max()
        return g

    report = check_op(ops.linear_forward, _plant(ops.linear_backward, change), _offset_linear(rng), mode="fast")
    assert report.errors["w"].status == "failed" and report.errors["w"].index == (3, 4)


def _flaky(scale):
    """A backward whose dx wobbles by ``scale`` from one call to the next."""
    calls = []

    def backward(dy, cache):
        calls.append(1)
        dx, dw, db = ops.linear_backward(dy, cache)
        return dx + scale * len(calls), dw, db
    return backward


def test_a_nondeterministic_backward_fails_and_nondet_tol_admits_a_small_wobble(rng):
    args = (rng.standard_normal((3, 4)), rng.standard_normal((2, 4)), rng.standard_normal(2))
    report = check_op(ops.linear_forward, _flaky(1e-13), args)
    assert report.status == "failed" and "not deterministic" in report.problems[0]
    assert not any("deterministic" in p for p in check_op(ops.linear_forward, _flaky(1e-13), args,
                                                          nondet_tol=1e-12).problems)


def test_raise_exception_raises_with_the_report_unless_ok(rng):
    args = (rng.standard_normal((3, 4)), rng.standard_normal((2, 4)), rng.standard_normal(2))
    assert check_op(ops.linear_forward, ops.linear_backward, args, raise_exception=True).ok
    with pytest.raises(GradcheckError, match="FAILED") as info:
        check_op(ops.linear_forward, _plant(ops.linear_backward, lambda g: 2 * g), args, raise_exception=True)
    assert info.value.report.errors["w"].status == "failed"


def test_a_module_whose_backward_wobbles_fails_as_not_deterministic(rng):
    class Wobbly(ReLU):
        calls = 0

        def backward(self, dy):
            Wobbly.calls += 1
            return super().backward(dy) + 1e-14 * Wobbly.calls

    report = check_module(Wobbly(), rng.standard_normal((3, 4)))
    assert report.status == "failed" and report.problems[0].startswith("backward is not deterministic: 'x'")


# --- large inputs full of kinks: the pooled noise is rounding, not kinks -------------------------
def _large_relu(rng):
    return (ops.relu_forward, ops.relu_backward, (_relu_input(rng, (128, 128)),), {})


def _large_maxpool(rng):  # 18432 entries after a ReLU: most 2x2 windows hold ties at 0
    return (ops.maxpool2d_forward, ops.maxpool2d_backward, (_post_relu(rng, (4, 8, 24, 24)),), {"kernel_size": 2})


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("make", [_large_relu, _large_maxpool], ids=["relu 128x128", "maxpool 4x8x24x24"])
def test_a_correct_backward_on_a_large_input_full_of_kinks_is_ok(make, seed):
    """Almost every block holds a kink: the rounding noise must not be read off them."""
    report = check_op(*make(np.random.default_rng(seed)), mode="directional")
    assert report.ok, str(report)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("make", [_large_relu, _large_maxpool], ids=["relu 128x128", "maxpool 4x8x24x24"])
def test_the_pooled_rounding_noise_of_a_kinky_input_is_rounding(make, seed, monkeypatch):
    from refnet.gradcheck import probes
    seen = []
    original = probes._Engine.pool_noise

    def spy(self, probe_list, rng):
        original(self, probe_list, rng)
        seen.append(self.delta / (np.finfo(float).eps * abs(self.f0)))
    monkeypatch.setattr(probes._Engine, "pool_noise", spy)
    check_op(*make(np.random.default_rng(seed)), mode="directional")
    assert seen and seen[0] < 1e3  # about an ulp of the loss per evaluation, not the slope jumps


@pytest.mark.parametrize("in_features, width, batch", [(100, 64, 16), (784, 64, 8)])
def test_check_module_on_the_mlp_model_is_ok(in_features, width, batch):
    from refnet.nn import models
    model = models.mlp(in_features, num_classes=10, width=width, rng=0, dtype=np.float64)
    report = check_module(model, np.random.default_rng(1).standard_normal((batch, in_features)))
    assert report.ok, str(report)


# --- at the tolerance the user asked for --------------------------------------------------------
def _spread_linear(rng):
    """dw entries spanning two orders of magnitude (columns of x scaled): blocks mix large and small."""
    x = rng.standard_normal((8, 30)) * np.logspace(-1.5, 0.5, 30)
    return x, rng.standard_normal((20, 30)), rng.standard_normal(20)


def _largest_entry(args, rng):
    dy = rng.standard_normal((8, 20))
    dw = ops.linear_backward(dy, ops.linear_forward(*args)[1])[1]
    return np.unravel_index(int(np.argmax(np.abs(dw))), dw.shape)


@pytest.mark.parametrize("mode", MODES + ["fast"])
def test_one_entry_off_by_ten_times_rtol_fails(mode, rng):
    args = _spread_linear(rng)
    at = _largest_entry(args, rng)

    def change(g):
        g[at] *= 1 + 10 * 1e-5
        return g

    report = check_op(ops.linear_forward, _plant(ops.linear_backward, change), args, mode=mode)
    assert report.errors["w"].status == "failed" and report.errors["w"].index == at


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("mode", MODES + ["fast"])
def test_one_entry_off_by_a_third_of_rtol_is_not_failed(mode, seed):
    """0.3 rtol of the largest entry is far above the tolerance of the smallest entries in its
    block, but below what was asked for that entry: not a failure."""
    rng = np.random.default_rng(seed)
    args = _spread_linear(rng)
    at = _largest_entry(args, rng)

    def change(g):
        g[at] *= 1 + 0.3 * 1e-5
        return g

    report = check_op(ops.linear_forward, _plant(ops.linear_backward, change), args, mode=mode)
    assert report.errors["w"].status != "failed", str(report)
