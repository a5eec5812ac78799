"""Lion, Muon, SGD + momentum with decoupled decay, the rotational wrapper and Hyperball reach the
equilibria of theory/ (README sections 16-18) on the scale-invariant random walk.

As in tests/test_theory_randomwalk.py: 64 units of d = 256, gradients orthogonal to w scaling as
1/||w||, driven by refnet's own optimizers on one (64, 256) Parameter with scale_group="unit"
(Muon orthogonalizes it as one matrix), steady norm and RMS angle over the second half against
the closed form. The issue asks for 3%; the laws hold to <= 0.4% here, so TOL is 1.5% (Muon's
correlation function comes from a seeded Monte Carlo). Lion's test starts 30% above the predicted
norm and runs 6 relaxation times, so the walk must reach the equilibrium; the others start at the
predicted norm, so their runs are spent in equilibrium, not relaxing towards it.
"""

import math

import numpy as np
import pytest
from test_theory_randomwalk import refnet_step, walk

import theory
from refnet.nn import Parameter
from refnet.optim import SGD, Adam, Hyperball, Lion, Muon, Rotational, equilibrium_angle
from theory import LionRule, MuonRule

D, UNITS = 256, 64
TOL = 0.015


def assert_close(measured, predicted, tol=TOL, what=""):
    assert abs(measured / predicted - 1) < tol, f"{what}: measured {measured:.6g}, predicted {predicted:.6g}"


# --- refnet and theory's reference rules are the same update -----------------------------------
@pytest.mark.parametrize("cls, rule, options", [
    (Lion, LionRule, dict(lr=1e-3, betas=(0.9, 0.99), weight_decay=1.0)),
    (Muon, MuonRule, dict(lr=0.02, momentum=0.95, nesterov=True, weight_decay=0.1)),
    (Muon, MuonRule, dict(lr=0.02, momentum=0.9, nesterov=False, weight_decay=0.1)),
])
def test_refnet_optimizer_follows_theorys_reference_rule(cls, rule, options):
    ours = walk(refnet_step(cls, **options), 100, seed=1)
    ref = walk(lambda w0: rule(**options), 100, seed=1)
    np.testing.assert_allclose(ours.norms2, ref.norms2, rtol=1e-12)
    np.testing.assert_allclose(ours.angles, ref.angles, rtol=1e-9)


# --- Lion (section 16) -------------------------------------------------------------------------
LION_START, LION_RELAX = 1.3, 6  # start 30% off the predicted norm; run 6 relaxation times of ||w||^2


@pytest.mark.parametrize("betas, lr", [pytest.param((0.9, 0.99), 1e-3, marks=pytest.mark.slow), ((0.0, 0.99), 1e-3),
                                       ((0.5, 0.9), 1e-3), ((0.9, 0.99), 3e-3)])
def test_lion_equilibrium_is_reached_from_a_norm_30_percent_high(betas, lr):
    """The walk must relax to the equilibrium, not only stay there: it starts at 1.3 times the
    predicted norm and runs LION_RELAX times ||w||^2's relaxation time 1/(2 lr wd) (the decay
    w <- (1 - lr wd) w), measured over the second half (3 relaxation times in: the start's
    offset has fallen below 1% of ||w||^2 there)."""
    wd = 1.0
    steps = math.ceil(LION_RELAX / (2 * lr * wd))
    eq = theory.lion_equilibrium(lr, wd, D, betas)
    w = walk(refnet_step(Lion, lr=lr, betas=betas, weight_decay=wd), steps, seed=21, norm0=LION_START * eq.norm)
    assert math.sqrt(w.norms2[0].mean()) / eq.norm == pytest.approx(LION_START, rel=1e-6)
    assert_close(w.steady_norm(), eq.norm, what="norm")
    assert_close(w.rms_angle(), eq.angle, what="angle")


def test_lion_angle_is_not_kossons_without_momentum():
    # Kosson et al.'s sqrt(pi/2) assumes consecutive signs strongly correlated; at b1 = 0 they are
    # independent and the angle is sqrt(2 lr wd): their form is 25% high, the walk tells them apart.
    lr, wd, betas = 1e-3, 1.0, (0.0, 0.99)
    eq = theory.lion_equilibrium(lr, wd, D, betas)
    w = walk(refnet_step(Lion, lr=lr, betas=betas, weight_decay=wd), 600, seed=21, norm0=eq.norm)
    assert w.rms_angle() / theory.lion_angle_kosson(lr, wd, betas) - 1 < -0.15


# --- Muon (section 17) -------------------------------------------------------------------------
@pytest.mark.slow  # a Newton-Schulz per step and per Monte Carlo sample: ~5 s each
@pytest.mark.parametrize("momentum, nesterov, lr, wd", [(0.0, False, 0.02, 0.1), (0.95, True, 0.02, 0.1),
                                                       (0.9, False, 0.02, 0.1), (0.95, True, 0.05, 0.2)])
def test_muon_equilibrium(momentum, nesterov, lr, wd):
    eq = theory.muon_equilibrium(lr, wd, (UNITS, D), momentum, nesterov)
    w = walk(refnet_step(Muon, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=wd), 1200, seed=22,
             norm0=eq.norm)
    assert_close(w.steady_norm(), eq.norm, what="norm")
    assert_close(w.rms_angle(), eq.angle, what="angle")
    if momentum == 0:  # no correlation in time: cos(angle) = 1 - lr wd, as SGD + L2 at lam = wd/2
        assert_close(w.rms_angle(), math.acos(1 - lr * wd), what="arccos(1 - lr wd)")


# --- SGD + momentum + decoupled decay (section 18) ------------------------------------------------
@pytest.mark.parametrize("mu, lr, wd", [(0.9, 0.02, 0.1), (0.5, 0.05, 0.1)])
def test_sgd_momentum_weight_decay_equilibrium(mu, lr, wd):
    eq = theory.sgdm_weight_decay_equilibrium(lr, wd, 1.0, mu)
    w = walk(refnet_step(SGD, lr=lr, momentum=mu, weight_decay=wd), 800, seed=23, norm0=eq.norm)
    eq = theory.sgdm_weight_decay_equilibrium(lr, wd, w.G2(), mu)
    assert_close(w.steady_norm(), eq.norm, what="norm")
    assert_close(w.rms_angle(), eq.angle, what="angle")


@pytest.mark.parametrize("decay", [dict(l2=0.01), dict(weight_decay=0.1)], ids=["l2", "weight_decay"])
def test_nesterov_turns_faster_than_heavy_ball_by_the_predicted_factor(decay):
    lr, mu = 0.02, 0.9
    eq = (theory.sgd_momentum_l2_equilibrium(lr, decay["l2"], 1.0, mu) if "l2" in decay
          else theory.sgdm_weight_decay_equilibrium(lr, decay["weight_decay"], 1.0, mu))
    w = walk(refnet_step(SGD, lr=lr, momentum=mu, nesterov=True, **decay), 800, seed=26, norm0=eq.norm)
    assert_close(w.steady_norm(), eq.norm, what="norm (heavy ball's)")
    assert_close(w.rms_angle(), eq.angle * theory.nesterov_angle_factor(mu), what="angle")
    assert w.rms_angle() / eq.angle > 1.1  # and not heavy ball's angle


# --- the wrappers (section 18) -----------------------------------------------------------------
ROTATIONAL = {  # inner optimizer, and its equilibrium angle from theory/ (small forms)
    "sgdm-l2": (lambda ps: SGD(ps, lr=0.05, momentum=0.9, l2=1e-3),
                theory.sgd_momentum_l2_equilibrium(0.05, 1e-3, 1.0, 0.9).angle_small),
    "sgdm-wd": (lambda ps: SGD(ps, lr=0.05, momentum=0.9, weight_decay=2e-3),
                theory.sgdm_weight_decay_equilibrium(0.05, 2e-3, 1.0, 0.9).angle_small),
    "nesterov-l2": (lambda ps: SGD(ps, lr=0.05, momentum=0.9, nesterov=True, l2=1e-3),
                    theory.sgd_momentum_l2_equilibrium(0.05, 1e-3, 1.0, 0.9).angle_small
                    * theory.nesterov_angle_factor(0.9)),
    "adamw": (lambda ps: Adam(ps, lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1),
              theory.adamw_equilibrium(1e-3, 0.1, D, (0.9, 0.99)).angle_small),
    "lion": (lambda ps: Lion(ps, lr=1e-3, weight_decay=1.0), theory.lion_equilibrium(1e-3, 1.0, D).angle_small),
}


@pytest.mark.parametrize("name", sorted(ROTATIONAL))
def test_rotational_wrapper_targets_the_inner_equilibrium_and_turns_by_it(name):
    make, law = ROTATIONAL[name]
    p = Parameter(np.ones((2, 3)), scale_group="unit")
    inner = make([p])
    assert equilibrium_angle(inner, inner.param_groups[0]) == pytest.approx(law, rel=1e-12)
    w = walk(refnet_step(lambda ps: Rotational(make(ps))), 300, seed=24)
    assert_close(w.rms_angle(), theory.rotational_angle(law), what="angle")
    np.testing.assert_allclose(w.norms2, 1.0, rtol=1e-12)


@pytest.mark.parametrize("name, make, lr, beta", [
    ("sgd", lambda ps: Hyperball(SGD(ps, lr=0.05)), 0.05, 0.0),
    ("sgdm", lambda ps: Hyperball(SGD(ps, lr=0.05, momentum=0.9)), 0.05, 0.9),
    ("sgdm-large-lr", lambda ps: Hyperball(SGD(ps, lr=0.2, momentum=0.9)), 0.2, 0.9),
    ("adam", lambda ps: Hyperball(Adam(ps, lr=0.05, betas=(0.9, 0.99))), 0.05, 0.9),
])
def test_hyperball_angle(name, make, lr, beta):
    w = walk(refnet_step(make), 400, seed=25)
    assert_close(w.rms_angle(), theory.hyperball_angle(lr, beta), what="angle")
    np.testing.assert_allclose(w.norms2, 1.0, rtol=1e-12)
    if beta:  # the momentum's backward lean matters: atan(lr) alone is off by 9% or more
        assert w.rms_angle() / math.atan(lr) - 1 < -0.05


# --- closed forms: limits and the approximations behind Kosson et al.'s Lion angle ------------
def test_lion_without_momentum_has_uncorrelated_steps():
    assert theory.lion_R(1e-3, 1.0, (0.0, 0.99)) == 1.0
    assert theory.lion_equilibrium(1e-3, 1.0, D, (0.0, 0.99)).angle == pytest.approx(math.acos(1 - 1e-3), rel=1e-9)


@pytest.mark.parametrize("betas", [(0.9, 0.99), (0.5, 0.9), (0.95, 0.98)])
def test_kossons_lion_angle_is_the_linearized_law_with_p_1_and_R_minus_1_as_R(betas):
    b1, b2 = betas
    V = (1 - b1) ** 2 + b1 * b1 * (1 - b2) / (1 + b2)
    rho = theory.momentum_correlations(b1, b2, 20000)
    assert rho.sum() == pytest.approx((1 - V) / (2 * V), rel=1e-9)  # sum_k rho_k, since sum_j a_j = 1
    R_linear = theory.correlation_sum(2 / np.pi * rho, 1.0)
    assert R_linear - 1 == pytest.approx(2 / (np.pi * V) * (1 - V), rel=1e-9)
    assert theory.lion_angle_kosson(1e-3, 1.0, betas) == pytest.approx(math.sqrt(2e-3 / (2 / (np.pi * V))), rel=1e-12)


@pytest.mark.parametrize("shape", [(128, 128), (64, 256)])
def test_orthogonalized_correlation_runs_from_0_to_1_with_steins_slope_at_0(shape):
    h, norm2 = theory.orthogonalized_correlation([0.0, 0.2, 1.0], shape, samples=8)
    assert abs(h[0]) < 0.01 and h[2] == pytest.approx(1.0, abs=1e-12)
    assert 0.5 < norm2 < 1.0  # Newton-Schulz leaves singular values in about [0.7, 1.2]
    # Stein's lemma: h'(0) = (E<O(X), X>)^2 / (m n E||O(X)||^2), from other samples
    # (0.67 square, 0.92 at 64 x 256; the exact polar factor of a large square matrix: (8/(3 pi))^2 = 0.72)
    x = np.random.default_rng(5).standard_normal((16,) + shape)
    o = theory.newton_schulz(x)
    slope = (o * x).sum(axis=(1, 2)).mean() ** 2 / (shape[0] * shape[1] * (o * o).sum(axis=(1, 2)).mean())
    assert h[1] / 0.2 == pytest.approx(slope, rel=0.03)
