"""The engine under the checks (refnet.gradcheck.probes): any scalar function against any
claimed linear map, with the noise measured from the evaluations and a bound that holds
next to a kink. What the JVP and Hessian-vector checks will build on."""

import numpy as np
import pytest

from refnet.gradcheck import probes
from refnet.gradcheck.probes import LinearMap, check_argument

MODES = ["full", "directional", "fast"]


def _check(data, evaluate, analytic, mode, rtol=1e-5, seed=0):
    return check_argument("x", data, evaluate, analytic, np.random.default_rng(seed), f0=evaluate(),
                          rtol=rtol, floor=1e-2, mode=mode)


# --- a JVP-style check through the same engine ------------------------------------------------
def _jvp_setup(rng):
    """F(x) = <c, tanh(A x)>: a claimed JVP, u -> <c, diag(1 - tanh^2(Ax)) A u>."""
    a, c, x = rng.standard_normal((7, 5)), rng.standard_normal(7), rng.standard_normal(5)

    def jvp(u, wrong=False):
        d = 1 - np.tanh(a @ x) ** 2
        return c @ (d * (a @ u)) * (1.001 if wrong else 1.0)
    return a, c, x, jvp


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("wrong", [False, True])
def test_a_claimed_jvp_is_checked_with_the_same_verdicts(wrong, mode, rng):
    a, c, x, jvp = _jvp_setup(rng)
    data = x.copy()

    def apply(support, weights):
        u = np.zeros(x.size)
        u[support] = weights
        return jvp(u, wrong)

    magnitudes = np.abs([jvp(e) for e in np.eye(x.size)])
    check = _check(data, lambda: float(c @ np.tanh(a @ data)), LinearMap(apply, magnitudes), mode)
    assert check.status == ("failed" if wrong else "ok") and check.n_covered == x.size
    assert np.array_equal(data, x)  # perturbed in place, restored exactly


# --- the noise, measured ----------------------------------------------------------------------
def _noisy(data, sigma):
    """sum(sin(data)) plus rounding-like noise of standard deviation sigma: a new draw at each
    new point, the same value at a point seen before (as rounding is)."""
    draws, seen = np.random.default_rng(7), {}

    def evaluate():
        key = data.tobytes()
        if key not in seen:
            seen[key] = float(np.sum(np.sin(data)) + sigma * draws.standard_normal())
        return seen[key]
    return evaluate


@pytest.mark.parametrize("sigma", [1e-12, 1e-9])
def test_the_rounding_noise_is_estimated_from_the_evaluations(sigma, monkeypatch, rng):
    seen = []
    original = probes._Engine.pool_noise

    def spy(self, probe_list, rng):
        original(self, probe_list, rng)
        seen.append(self.delta)
    monkeypatch.setattr(probes._Engine, "pool_noise", spy)
    x = rng.standard_normal(400)
    _check(x, _noisy(x, sigma), LinearMap.from_gradient(np.cos(x)), "full")
    assert sigma / 3 < seen[0] < 3 * sigma


@pytest.mark.parametrize("mode", MODES)
def test_the_step_grows_until_a_noisy_function_is_resolved(mode, monkeypatch, rng):
    x = rng.standard_normal(300)
    check = _check(x, _noisy(x, 1e-11), LinearMap.from_gradient(np.cos(x)), mode)
    assert check.status == "ok" and check.resolution <= 1e-5
    monkeypatch.setattr(probes, "MAX_TRIES", 1)  # the first step alone is too short for this noise
    assert _check(x, _noisy(x, 1e-11), LinearMap.from_gradient(np.cos(x)), mode).status == "inconclusive"


@pytest.mark.parametrize("mode", MODES)
def test_noise_the_step_cannot_beat_is_inconclusive_not_failed(mode, rng):
    x = rng.standard_normal(50)
    check = _check(x, _noisy(x, 1e-9), LinearMap.from_gradient(np.cos(x)), mode)
    assert check.status == "inconclusive" and check.resolution > 1e-5 and "resolution" in check.note


# --- next to a kink ---------------------------------------------------------------------------
@pytest.mark.parametrize("left, right", [(0.3, 1.3), (1.3, 0.3), (-1.0, 2.0)])
def test_a_kink_anywhere_inside_the_step_never_makes_a_right_slope_fail(left, right):
    """phi(t) = left * t below t0, right * t above: wherever t0 sits within +-4h, the estimate
    is either recognized as a kink at the point or within its own bound (err <= u)."""
    h = 1.0
    for t0 in np.linspace(-5, 5, 2001):
        if t0 == 0:
            continue
        phi = lambda t: left * t if t < t0 else left * t0 + right * (t - t0)  # noqa: E731
        m = probes._Measured([phi(t) for t in (h, -h, 2 * h, -2 * h, 4 * h, -4 * h)], phi(0.0), h, 1e-15)
        slope = left if t0 > 0 else right
        assert m.kink_like(0.0) or abs(m.c - slope) <= m.u, t0


def test_a_block_with_kinks_is_split_until_each_kink_entry_stands_alone(rng):
    x = rng.standard_normal(500)
    x[[3, 100, 101, 499]] = 0.0
    y = x.copy()
    w = rng.standard_normal(500)
    check = _check(y, lambda: float(w @ np.maximum(y, 0)), LinearMap.from_gradient(w * (x > 0)), "directional")
    assert check.status == "ok" and check.kinks == [(3,), (100,), (101,), (499,)]
    assert check.n_covered == 496
