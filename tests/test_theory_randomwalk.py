"""refnet's own optimizers reach the equilibria of theory/ on the scale-invariant random walk.

The walk (theory.randomwalk): 64 independent units of d = 256, gradients orthogonal to w and
scaling as 1/||w|| with E||g_tilde||^2 = G2. Each test drives refnet.optim.SGD / Adam on one
(64, 256) Parameter with scale_group="unit", starts away from the equilibrium, and compares
the steady norm and RMS angle over the second half with the closed form (using the measured
G2). The issue asks for 3%; the exact forms hold to <= 0.5% here, so TOL is 1%. Adam runs use
b2 = 0.99 where THEORY.md says the 0.999 lag distorts the transient.
"""

import numpy as np
import pytest

import theory
from refnet.nn import Parameter
from refnet.optim import SGD, Adam
from theory import AdamRule, SGDRule, random_walk

D, UNITS = 256, 64
TOL = 0.01


def refnet_step(cls, **options):
    """``make_step`` for the walk: a refnet optimizer on one (units, d) unit-grouped Parameter."""
    def make(w0):
        p = Parameter(w0.copy(), scale_group="unit")
        opt = cls([p], **options)

        def step(w, g):
            p.grad[...] = g
            opt.step()
            return p.data
        return step
    return make


def walk(make, steps, seed, norm0=1.0, rho=0.0):
    return random_walk(make, d=D, units=UNITS, steps=steps, norm0=norm0, rho=rho,
                       rng=np.random.default_rng(seed))


def assert_close(measured, predicted, tol=TOL, what=""):
    assert abs(measured / predicted - 1) < tol, f"{what}: measured {measured:.6g}, predicted {predicted:.6g}"


# --- refnet and theory's reference rules are the same update -----------------------------------
SAME_RULE = [
    (SGD, SGDRule, dict(lr=0.1, l2=0.01)),
    (SGD, SGDRule, dict(lr=0.02, momentum=0.9, l2=0.01)),
    (SGD, SGDRule, dict(lr=0.05, momentum=0.9, weight_decay=0.1)),
    (SGD, SGDRule, dict(lr=0.1, l2=0.01, unit_norm=True)),
    (Adam, AdamRule, dict(lr=0.01, betas=(0.9, 0.99), l2=0.01)),
    (Adam, AdamRule, dict(lr=0.02, betas=(0.9, 0.99), weight_decay=0.1)),
    (Adam, AdamRule, dict(lr=0.01, betas=(0.9, 0.99), unit_norm=True)),
]


@pytest.mark.parametrize("cls, rule, options", SAME_RULE)
def test_refnet_optimizer_follows_theorys_reference_rule(cls, rule, options):
    ours = walk(refnet_step(cls, **options), 100, seed=1)
    ref = walk(lambda w0: rule(**options), 100, seed=1)
    np.testing.assert_allclose(ours.norms2, ref.norms2, rtol=1e-12)
    np.testing.assert_allclose(ours.angles, ref.angles, rtol=1e-9)


# --- equilibria ------------------------------------------------------------------------------
def test_sgd_l2_equilibrium():
    lr, lam = 0.1, 0.01
    w = walk(refnet_step(SGD, lr=lr, l2=lam), 2000, seed=2)
    eq = theory.sgd_l2_equilibrium(lr, lam, w.G2())
    assert_close(w.steady_norm(), eq.norm, what="norm")
    assert_close(w.rms_angle(), eq.angle, what="angle")


def test_sgd_momentum_l2_equilibrium():
    lr, lam, mu = 0.02, 0.01, 0.9
    w = walk(refnet_step(SGD, lr=lr, momentum=mu, l2=lam), 1500, seed=3)
    eq = theory.sgd_momentum_l2_equilibrium(lr, lam, w.G2(), mu)
    assert_close(w.steady_norm(), eq.norm, what="norm")
    assert_close(w.rms_angle(), eq.angle, what="angle")


@pytest.mark.parametrize("mu, start", [(0.0, 1.3), (0.0, 0.7), (0.5, 1.3)])
def test_sgd_norm4_relaxes_at_the_predicted_rate(mu, start):
    lr, lam = 0.05, 0.01
    eq = theory.sgd_momentum_l2_equilibrium(lr, lam, 1.0, mu)
    w = walk(refnet_step(SGD, lr=lr, momentum=mu, l2=lam), 250, seed=12, norm0=start * eq.norm)
    deviation = np.abs(w.norms2.mean(axis=1) ** 2 - eq.norm ** 4)[20:]  # skip the buffer's warm-up
    rate = -np.polyfit(np.arange(deviation.size), np.log(deviation), 1)[0]
    assert_close(rate, eq.relaxation_rate, tol=0.03, what="relaxation rate of ||w||^4")


@pytest.mark.parametrize("rho", [0.3, -0.3])
def test_correlated_gradients_move_the_momentum_norm_not_the_angle(rho):
    # Why SGD + momentum's norm misses the random-walk law on real data while its angle holds.
    lr, lam, mu = 0.02, 0.01, 0.9
    w = walk(refnet_step(SGD, lr=lr, momentum=mu, l2=lam), 1500, seed=4, rho=rho)
    S = theory.momentum_correlation_factor(mu, rho ** np.arange(1, 200))
    eq = theory.sgd_momentum_l2_equilibrium(lr, lam, w.G2(), mu, autocorr=rho ** np.arange(1, 200))
    assert abs(S - 1) > 0.4  # the correction is large, so the test can tell
    assert_close(w.steady_norm(), eq.norm, what="norm with S")
    assert_close(w.rms_angle(), theory.sgd_momentum_l2_equilibrium(lr, lam, w.G2(), mu).angle, what="angle")


def test_correlated_gradients_leave_plain_sgd_alone():
    lr, lam = 0.1, 0.01
    w = walk(refnet_step(SGD, lr=lr, l2=lam), 1500, seed=5, rho=0.5)
    eq = theory.sgd_l2_equilibrium(lr, lam, w.G2())
    assert_close(w.steady_norm(), eq.norm, what="norm")
    assert_close(w.rms_angle(), eq.angle, what="angle")


def test_adam_l2_equilibrium():
    lr, lam, betas = 0.01, 0.01, (0.9, 0.99)
    w = walk(refnet_step(Adam, lr=lr, betas=betas, l2=lam), 2000, seed=6)
    eq = theory.adam_l2_equilibrium(lr, lam, w.G2(), D, betas=betas)
    assert_close(w.steady_norm(), eq.norm, what="norm")
    assert_close(w.rms_angle(), eq.angle, what="angle")


def test_adamw_equilibrium():
    lr, wd, betas = 0.05, 0.1, (0.9, 0.99)
    # 2*lr*wd = 1-b2: v's lag slows the approach from ||w||^2 = x_eq/60 (README), hence 3000 steps
    w = walk(refnet_step(Adam, lr=lr, betas=betas, weight_decay=wd), 3000, seed=7)
    eq = theory.adamw_equilibrium(lr, wd, D, betas=betas)
    assert_close(w.steady_norm(), eq.norm, what="norm")
    assert_close(w.rms_angle(), eq.angle, what="angle")


def test_projected_sgd_equilibrium():
    lr, lam = 0.1, 0.05
    w = walk(refnet_step(SGD, lr=lr, l2=lam, unit_norm=True), 400, seed=8)
    eq = theory.projected_sgd_equilibrium(lr, lam, w.G2())
    assert_close(w.steady_norm(), 1.0, tol=1e-12, what="norm")
    assert_close(w.rms_angle(), eq.angle, what="angle")


@pytest.mark.parametrize("lr", [0.003, 0.02])
def test_projected_adam_equilibrium(lr):
    betas = (0.9, 0.99)
    w = walk(refnet_step(Adam, lr=lr, betas=betas, unit_norm=True), 600, seed=9)
    eq = theory.projected_adam_equilibrium(lr, D, betas=betas)
    assert_close(w.steady_norm(), 1.0, tol=1e-12, what="norm")
    assert_close(w.rms_angle(), eq.angle, what="angle")
    if lr < 0.01:  # THEORY.md's small form, first order in (b1 theta0/(1-b1))^2
        assert_close(w.rms_angle(), eq.angle_small, what="small-form angle")


# --- growth without L2 -------------------------------------------------------------------------
def test_sgd_norm4_grows_linearly_at_the_predicted_slope():
    lr, steps = 0.1, 2000
    w = walk(refnet_step(SGD, lr=lr), steps, seed=10)
    growth = theory.sgd_growth(np.arange(steps + 1), lr, w.G2(0.0))
    assert_close(w.slope(power=4), growth.slope_small, tol=0.05, what="||w||^4 slope (issue: 5%)")
    assert_close(w.slope(power=4), growth.slope[steps // 2:].mean(), what="||w||^4 slope")
    assert_close(w.rms_angle(), np.sqrt((growth.angle[steps // 2:-1] ** 2).mean()), what="angle")


def test_adam_norm2_grows_linearly_at_the_predicted_slope():
    lr, steps, betas = 1e-3, 3000, (0.9, 0.99)
    w = walk(refnet_step(Adam, lr=lr, betas=betas), steps, seed=11)
    growth = theory.adam_growth(np.arange(steps + 1), lr, D, betas=betas)
    predicted_x = growth.norm[steps // 2:] ** 2
    predicted_slope = np.polyfit(np.arange(predicted_x.size), predicted_x, 1)[0]
    assert_close(w.slope(power=2), predicted_slope, what="||w||^2 slope")
    assert_close(w.slope(power=2), growth.slope_small, tol=0.03, what="small-law slope")
    assert_close(w.rms_angle(), np.sqrt((growth.angle[steps // 2:-1] ** 2).mean()), what="angle")
