"""theory/'s closed forms against direct numpy simulation of the update rules (float64).

The exact identities of THEORY.md (SGD norm recursion, zero-gradient decay, exponential-lr
equivalence, one-step angle exponents, symmetries) must hold to rounding; the equilibria must
be fixed points of the recursions they come from, and their small-lr*lam forms must agree with
the exact ones as lr*lam -> 0. Pure numpy: theory/ is checked without refnet.
"""

import pathlib
import subprocess
import sys

import numpy as np
import pytest

import theory
from theory import (AdamRule, SGDRule, initial_weights, row_angles, scale_invariant_gradient)

EXACT = 1e-10


class ScaleInvariantLoss:
    """``L_t(w) = f_t(w/||w||)`` per row, ``f_t(u) = u^T A u / 2 + b_t . u``: a deterministic,
    step-dependent scale-invariant loss, so that two runs can see the same "data" in the same
    order. Its gradient is ``P_perp(w) (A u + b_t) / ||w||``."""

    def __init__(self, d, rng, steps=200):
        a = rng.standard_normal((d, d)) / np.sqrt(d)
        self.A = (a + a.T) / 2
        self.b = rng.standard_normal((steps, d)) / np.sqrt(d)

    def value(self, w, t):
        u = w / np.linalg.norm(w, axis=1, keepdims=True)
        return 0.5 * np.einsum("ij,jk,ik->i", u, self.A, u) + u @ self.b[t]

    def grad(self, w, t):
        u = w / np.linalg.norm(w, axis=1, keepdims=True)
        return scale_invariant_gradient(w, u @ self.A + self.b[t])


def directions(ws):
    """Unit vectors along the last axis (rows of a weight, or of a whole trajectory)."""
    return ws / np.linalg.norm(ws, axis=-1, keepdims=True)


def run(rule, loss, w0, steps):
    w, out = w0.copy(), [w0.copy()]
    for t in range(steps):
        w = rule(w, loss.grad(w, t))
        out.append(w)
    return np.array(out)


@pytest.fixture
def loss(rng):
    return ScaleInvariantLoss(32, rng)


@pytest.fixture
def w0(rng):
    return initial_weights(4, 32, norm0=1.3, rng=rng)


# --- identities 1-3 ------------------------------------------------------------------------
def test_gradient_of_scale_invariant_loss_is_orthogonal_and_scales_inversely(loss, w0):
    g = loss.grad(w0, 0)
    assert np.abs((g * w0).sum(axis=1)).max() < EXACT
    np.testing.assert_allclose(loss.grad(3.0 * w0, 0), g / 3.0, rtol=EXACT)


@pytest.mark.parametrize("a", [0.3, 2.5])
def test_l2_after_rescaling_moves_only_the_coefficient(loss, w0, a):
    lam = 0.07
    lhs = loss.value(a * w0, 0) + lam * (a * a * w0 * w0).sum(axis=1)
    rhs = loss.value(w0, 0) + theory.l2_after_rescaling(lam, a) * (w0 * w0).sum(axis=1)
    np.testing.assert_allclose(lhs, rhs, rtol=EXACT)


@pytest.mark.parametrize("optimizer, rule", [
    ("sgd", lambda: SGDRule(lr=1e-4)),
    ("adam", lambda: AdamRule(lr=1e-6, eps=0.0)),
])
def test_one_step_angle_exponent_fitted_over_scales(loss, w0, optimizer, rule):
    scales = np.geomspace(0.5, 8.0, 7)
    angles = [row_angles(c * w0, rule()(c * w0, loss.grad(c * w0, 0))).mean() for c in scales]
    slope = np.polyfit(np.log(scales), np.log(angles), 1)[0]
    # SGD exactly up to tan(angle) ~ angle; Adam up to its O(lr) radial part
    assert slope == pytest.approx(theory.one_step_angle_scaling(optimizer), abs=1e-4)


def test_effective_lr_forms():
    assert theory.effective_lr(0.1, 2.0, "sgd") == pytest.approx(0.025)
    assert theory.effective_lr(0.1, 2.0, "sgd", momentum=0.9) == pytest.approx(0.25)
    assert theory.effective_lr(0.1, 2.0, "adam") == pytest.approx(0.05)
    with pytest.raises(ValueError, match="optimizer"):
        theory.effective_lr(0.1, 2.0, "rmsprop")


# --- identities 4, 6, 7 ----------------------------------------------------------------------
@pytest.mark.parametrize("lr, lam", [(0.1, 5e-3), (0.5, 0.3), (1e-3, 1.0)])
@pytest.mark.parametrize("convention", ["A", "B"])
def test_sgd_norm_recursion_holds_every_step(loss, w0, lr, lam, convention):
    l2 = lam if convention == "A" else theory.from_pytorch_weight_decay(lam)
    rule, w = SGDRule(lr, l2=l2), w0.copy()
    for t in range(50):
        g = loss.grad(w, t)
        predicted = theory.sgd_norm_recursion((w * w).sum(1), lr, lam, (g * g).sum(1), convention)
        w = rule(w, g)
        np.testing.assert_allclose((w * w).sum(1), predicted, rtol=EXACT)


def test_zero_gradient_norm_decays_geometrically(w0):
    lr, lam, rule, w = 0.1, 0.02, SGDRule(0.1, l2=0.02), w0.copy()
    for _ in range(100):
        w = rule(w, np.zeros_like(w))
    np.testing.assert_allclose(np.linalg.norm(w, axis=1),
                               theory.zero_gradient_norm(100, np.linalg.norm(w0, axis=1), lr, lam),
                               rtol=EXACT)


def test_sgd_with_l2_equals_sgd_without_at_exponential_lr(loss, w0):
    lr, lam, steps = 0.2, 0.05, 100
    w = run(SGDRule(lr, l2=lam), loss, w0, steps)
    u, us = w0.copy(), [w0.copy()]
    for t in range(steps):
        u = u - theory.exponential_lr_equivalent(lr, lam, t) * loss.grad(u, t)
        us.append(u)
    us = np.array(us)
    np.testing.assert_allclose(directions(w), directions(us), atol=EXACT)
    q = 1 - 2 * lr * lam
    np.testing.assert_allclose(np.linalg.norm(w, axis=2),
                               q ** np.arange(steps + 1)[:, None] * np.linalg.norm(us, axis=2),
                               rtol=EXACT)


def momentum_schedule_gap(loss, w0, lr, lam, mu, steps, buffer=True):
    """Largest direction gap between SGD + momentum + L2 and SGD + momentum on
    ``exponential_lr_momentum``, with or without the initial buffer of section 24."""
    w = run(SGDRule(lr, momentum=mu, l2=lam), loss, w0, steps)
    rule, u, us = SGDRule(lr, momentum=mu), w0.copy(), [w0.copy()]
    if buffer:
        rule.buf = theory.exponential_lr_initial_buffer(lr, lam, mu) * w0
    for t in range(steps):
        rule.lr = theory.exponential_lr_momentum(lr, lam, t, mu)
        u = rule(u, loss.grad(u, t))
        us.append(u)
    return np.abs(directions(w) - directions(np.array(us))).max()


@pytest.mark.parametrize("lr, lam, mu", [(0.05, 0.01, 0.9), (0.2, 0.05, 0.5), (0.1, 0.05, 0.0)])
def test_sgd_momentum_l2_equals_sgd_momentum_at_exponential_lr_with_initial_buffer(loss, w0, lr, lam, mu):
    assert momentum_schedule_gap(loss, w0, lr, lam, mu, 100) < EXACT


@pytest.mark.parametrize("lr, lam, mu", [(0.05, 0.01, 0.9), (0.2, 0.05, 0.5)])
def test_sgd_momentum_schedule_from_a_zero_buffer_is_not_exact(loss, w0, lr, lam, mu):
    assert momentum_schedule_gap(loss, w0, lr, lam, mu, 100, buffer=False) > 1e-6


def test_momentum_schedule_ratio_is_the_l2_factor_without_momentum():
    assert theory.exponential_lr_ratio(0.1, 0.03) == pytest.approx(1 - 2 * 0.1 * 0.03, rel=1e-15)
    np.testing.assert_allclose(theory.exponential_lr_momentum(0.1, 0.03, np.arange(5)),
                               theory.exponential_lr_equivalent(0.1, 0.03, np.arange(5)), rtol=1e-14)


def test_momentum_schedule_refuses_a_complex_ratio():
    with pytest.raises(ValueError, match="2 lr lam <="):
        theory.exponential_lr_ratio(0.1, 0.1, 0.9)


def test_projected_sgd_angle_is_exact_each_step(loss, w0):
    lr, lam = 0.3, 0.1
    rule, w = SGDRule(lr, l2=lam, unit_norm=True), directions(w0)
    for t in range(30):
        g = loss.grad(w, t)
        w_next = rule(w, g)
        expected = np.arctan(lr * np.linalg.norm(g, axis=1) / (1 - 2 * lr * lam))
        np.testing.assert_allclose(row_angles(w, w_next), expected, rtol=1e-9)
        w = w_next


# --- identity 5: symmetries ------------------------------------------------------------------
SYMMETRIC = [
    ("sgd", SGDRule, dict(lr=0.1, lam=0.01)),
    ("sgd_momentum", SGDRule, dict(lr=0.05, lam=0.01, momentum=0.9)),
    ("sgd_momentum", SGDRule, dict(lr=0.05, wd=0.04, momentum=0.9)),
    ("adam", AdamRule, dict(lr=0.01, lam=0.01, eps=1e-3)),
    ("adamw", AdamRule, dict(lr=0.01, wd=0.1, eps=1e-3)),
]


def build(cls, cfg):
    kw = dict(lr=cfg["lr"], l2=cfg.get("lam", 0.0), weight_decay=cfg.get("wd", 0.0))
    if cls is SGDRule:
        kw["momentum"] = cfg.get("momentum", 0.0)
    else:
        kw["eps"] = cfg.get("eps", 0.0)
    return cls(**kw)


@pytest.mark.parametrize("kind, cls, cfg", SYMMETRIC)
@pytest.mark.parametrize("c", [0.3, 3.7])
def test_symmetry_map_gives_identical_directions(loss, w0, kind, cls, cfg, c):
    settings = {k: v for k, v in cfg.items() if k in ("lr", "lam", "wd", "eps")}
    image = theory.symmetry_map(kind, c, **settings)
    mapped = dict(cfg, **{k: image[k] for k in settings})
    a = run(build(cls, cfg), loss, w0, 100)
    b = run(build(cls, mapped), loss, image["w0_scale"] * w0, 100)
    np.testing.assert_allclose(directions(b), directions(a), atol=1e-10)
    np.testing.assert_allclose(b, c * a, rtol=1e-9)
    assert theory.is_symmetry(kind, dict(settings, w0_scale=1.0), image)


def test_adam_with_l2_under_sgd_rule_is_not_equivalent(loss, w0):
    cfg, c = dict(lr=0.01, lam=0.01, eps=0.0), 3.0
    image = theory.symmetry_map("sgd", c, **cfg)
    a = run(build(AdamRule, cfg), loss, w0, 100)
    b = run(build(AdamRule, image), loss, c * w0, 100)
    assert np.abs(directions(b) - directions(a)).max() > 1e-3
    assert not theory.is_symmetry("adam", dict(cfg, w0_scale=1.0), image)


@pytest.mark.parametrize("kind, law, scale_norm", [
    ("sgd", lambda lr, lam: theory.sgd_l2_equilibrium(lr, lam, 0.7), 1),
    ("adam", lambda lr, lam: theory.adam_l2_equilibrium(lr, lam, 0.7, 256, eps=0.0), 1),
])
def test_equilibria_respect_the_symmetry(kind, law, scale_norm):
    c, lr, lam = 2.5, 0.01, 0.02
    image = theory.symmetry_map(kind, c, lr=lr, lam=lam)
    before, after = law(lr, lam), law(image["lr"], image["lam"])
    assert after.norm == pytest.approx(c * before.norm, rel=1e-9)
    assert after.angle == pytest.approx(before.angle, rel=1e-9)
    assert theory.equilibrium_invariant(kind, image["lr"], image["lam"]) == pytest.approx(
        theory.equilibrium_invariant(kind, lr, lam))


# --- equilibria: fixed points and limits -----------------------------------------------------
@pytest.mark.parametrize("lr, lam, G2", [(0.1, 5e-3, 1.0), (0.5, 0.4, 3.0)])
def test_sgd_equilibrium_is_the_fixed_point_of_the_recursion(lr, lam, G2):
    eq = theory.sgd_l2_equilibrium(lr, lam, G2)
    x = eq.norm ** 2
    assert theory.sgd_norm_recursion(x, lr, lam, G2 / x) == pytest.approx(x, rel=1e-12)
    # one step from the fixed point: tan(angle) = lr ||g|| / ((1 - 2 lr lam) ||w||)
    tan = lr * np.sqrt(G2 / x) / ((1 - 2 * lr * lam) * eq.norm)
    assert np.arctan(tan) == pytest.approx(eq.angle, rel=1e-12)
    assert eq.effective_lr == pytest.approx(theory.effective_lr(lr, eq.norm, "sgd"), rel=1e-12)


def test_convention_b_is_half_the_coefficient():
    a = theory.sgd_l2_equilibrium(0.1, 0.01, 1.0)
    b = theory.sgd_l2_equilibrium(0.1, theory.to_pytorch_weight_decay(0.01), 1.0, convention="B")
    assert a == b
    with pytest.raises(ValueError, match="convention"):
        theory.sgd_l2_equilibrium(0.1, 0.01, 1.0, convention="C")


LAWS = {
    "sgd+l2": lambda e: theory.sgd_l2_equilibrium(0.1, e / 0.1, 2.0),
    "sgd+momentum+l2": lambda e: theory.sgd_momentum_l2_equilibrium(0.1, e / 0.1, 2.0, 0.9),
    "adam+l2": lambda e: theory.adam_l2_equilibrium(0.01, e / 0.01 ** 2 * 1e-4, 2.0, 256, eps=0.0),
    "adamw": lambda e: theory.adamw_equilibrium(0.01, e / 0.01, 256, betas=(0.9, 1 - 1e-12)),
    "projected sgd": lambda e: theory.projected_sgd_equilibrium(e, 0.5, 2.0),  # small angle too
    "projected adam": lambda e: theory.projected_adam_equilibrium(e, 256, betas=(0.9, 1 - 1e-12)),
}


@pytest.mark.parametrize("name", sorted(LAWS))
def test_small_forms_agree_with_exact_forms_in_the_limit(name):
    errors = []
    for e in (1e-3, 1e-5, 1e-7):
        eq = LAWS[name](e)
        errors.append(max(abs(eq.norm / eq.norm_small - 1), abs(eq.angle / eq.angle_small - 1),
                          abs(eq.effective_lr / eq.effective_lr_small - 1)))
    assert errors[-1] < 1e-5
    assert errors[0] >= errors[1] >= errors[2]


def test_adamw_exact_form_at_b1_zero_is_theorys():
    lr, wd, d = 0.05, 0.4, 256
    eq = theory.adamw_equilibrium(lr, wd, d, betas=(0.0, 1 - 1e-12))
    assert eq.norm ** 2 == pytest.approx(lr * d / (wd * (2 - lr * wd)), rel=1e-9)


def test_projected_adam_at_b1_zero_turns_by_the_full_step():
    lr, d = 0.02, 256
    eq = theory.projected_adam_equilibrium(lr, d, betas=(0.0, 1 - 1e-12))
    assert eq.angle == pytest.approx(np.arctan(lr * np.sqrt(d)), rel=1e-9)


def test_momentum_correlation_factor_for_ar1_gradients():
    mu, rho = 0.9, -0.3
    S = theory.momentum_correlation_factor(mu, rho ** np.arange(1, 400))
    assert S == pytest.approx((1 + mu * rho) / (1 - mu * rho), rel=1e-12)
    assert theory.momentum_correlation_factor(mu) == 1.0
    base = theory.sgd_momentum_l2_equilibrium(0.01, 5e-3, 1.0, mu)
    shifted = theory.sgd_momentum_l2_equilibrium(0.01, 5e-3, 1.0, mu, autocorr=[0.1, -0.2])
    assert shifted.norm ** 4 / base.norm ** 4 == pytest.approx(1 + 2 * (mu * 0.1 - mu * mu * 0.2))
    assert shifted.angle == base.angle


def test_relaxation_times_are_inverse_rates():
    eq = theory.sgd_momentum_l2_equilibrium(0.02, 0.01, 1.0, 0.9)
    assert eq.relaxation_rate == pytest.approx(8 * 0.02 * 0.01 / 0.1)
    assert eq.relaxation_time == pytest.approx(1 / eq.relaxation_rate)
    assert theory.projected_sgd_equilibrium(0.1, 0.01, 1.0).relaxation_time == 0.0


# --- growth without L2 ---------------------------------------------------------------------
def test_sgd_growth_matches_the_exact_recursion_without_noise():
    lr, G2, steps = 0.1, 2.0, 5000
    y, ys = 1.0, [1.0]
    for _ in range(steps):  # ||w||^4 with ||g_tilde||^2 = G2 every step, identity 4 at lam = 0
        x = np.sqrt(y)
        y = (x + lr * lr * G2 / x) ** 2
        ys.append(y)
    growth = theory.sgd_growth(np.arange(steps + 1), lr, G2)
    np.testing.assert_allclose(growth.norm ** 4, ys, rtol=1e-4)
    assert np.abs(growth.norm_small ** 4 / ys - 1).max() > 1e-3  # the log term matters
    assert growth.slope_small == 2 * lr * lr * G2
    assert growth.angle[-1] / growth.angle_asymptotic[-1] == pytest.approx(1, rel=0.02)


def test_adam_growth_tends_to_the_small_law_when_the_lag_vanishes():
    t = np.arange(0, 2001, 500)
    growth = theory.adam_growth(t, 1e-5, 256, betas=(0.9, 1 - 1e-9))  # F = 1, c*tau << ||w||^2
    np.testing.assert_allclose(growth.norm, growth.norm_small, rtol=1e-6)
    lagged = theory.adam_growth(t, 3e-3, 256, betas=(0.9, 0.999))
    assert np.all(lagged.norm[1:] < lagged.norm_small[1:])


# --- balance -------------------------------------------------------------------------------
@pytest.mark.parametrize("optimizer, kw", [
    ("sgd", dict(lam=0.01)), ("sgd_momentum", dict(lam=0.01, momentum=0.9)),
    ("adamw", dict(wd=0.1)), ("adam", dict(lam=0.01)),
])
def test_steady_angle_scales_with_the_stated_exponents(optimizer, kw):
    d = np.array([64.0, 256.0, 1024.0])
    G2 = np.array([0.5, 2.0, 8.0])
    exps = theory.balance_exponents(optimizer)
    by_d = theory.steady_angle(optimizer, d, 1.0, lr=0.01, **kw)
    by_G = theory.steady_angle(optimizer, 256, G2, lr=0.01, **kw)
    np.testing.assert_allclose(np.diff(np.log(by_d)) / np.diff(np.log(d)), exps["d"], atol=1e-12)
    np.testing.assert_allclose(np.diff(np.log(by_G)) / np.diff(np.log(np.sqrt(G2))), exps["G"], atol=1e-12)
    gamma_fixed = theory.steady_angle(optimizer, d, 1e-2 * d, lr=0.01, **kw)  # G2/d constant
    np.testing.assert_allclose(np.diff(np.log(gamma_fixed)) / np.diff(np.log(d)),
                               exps["d_at_fixed_gamma"], atol=1e-12)


def test_balance_matches_the_equilibrium_functions():
    lr, lam = 0.01, 0.02
    assert theory.steady_angle("adam", 300, 1.5, lr=lr, lam=lam)[()] == pytest.approx(
        theory.adam_l2_equilibrium(lr, lam, 1.5, 300).angle_small)
    assert theory.steady_angle("sgd", 300, 1.5, lr=lr, lam=lam)[()] == pytest.approx(
        theory.sgd_l2_equilibrium(lr, lam, 1.5).angle)


def test_theory_imports_nothing_from_refnet():
    code = "import sys, theory; sys.exit(any(m.split('.')[0] == 'refnet' for m in sys.modules))"
    root = pathlib.Path(theory.__file__).resolve().parents[1]
    assert subprocess.run([sys.executable, "-c", code], cwd=root).returncode == 0
