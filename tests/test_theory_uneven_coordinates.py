"""Adam's laws with uneven per-coordinate gradient scales (theory/README.md section 14).

Sections 6-7 assume every coordinate of a group sees the same noise scale. With uneven
scales ``s_i``, Adam + L2's steady norm follows (14.1), ``||w||^3 = lr sqrt(G2 d_eff)/(4 lam)``
with ``d_eff = (sum s_i)^2 / sum s_i^2``, and its angle (14.2), ``theta^2 = k d lr^2/||w||^2``
(eta = 1 for white Gaussian noise). Checked with refnet's own Adam on the walk; tolerance 3%.
"""

import numpy as np
import pytest

import theory
from refnet.nn import Parameter
from refnet.optim import Adam

D, UNITS, TOL = 256, 32, 0.03


def adam_walk(scales, steps=3000, seed=21, lr=4e-3, lam=2e-2, betas=(0.9, 0.99), norm0=1.0):
    def make(w0):
        p = Parameter(w0.copy(), scale_group="unit")
        opt = Adam([p], lr=lr, betas=betas, l2=lam)

        def step(w, g):
            p.grad[...] = g
            opt.step()
            return p.data
        return step
    return theory.random_walk(make, d=D, units=UNITS, steps=steps, norm0=norm0,
                              rng=np.random.default_rng(seed), scales=scales)


def lognormal_scales(seed=3, sigma=1.0):
    return np.exp(sigma * np.random.default_rng(seed).standard_normal(D))


def test_effective_width_of_equal_scales_is_the_width():
    assert theory.effective_width(np.full(D, 0.3)) == (D, pytest.approx(D))


def test_effective_width_counts_only_active_coordinates():
    s = np.ones(10)
    s[:3] = 0
    d_active, d_eff = theory.effective_width(s)
    assert (d_active, d_eff) == (7, pytest.approx(7))


def test_effective_width_rejects_negative_scales():
    with pytest.raises(ValueError, match="scales"):
        theory.effective_width([1.0, -1.0])


def test_adam_l2_norm_follows_d_eff_with_uneven_scales():
    lr, lam = 4e-3, 2e-2
    scales = lognormal_scales()
    _, d_eff = theory.effective_width(scales)
    w = adam_walk(scales, lr=lr, lam=lam, norm0=(lr * np.sqrt(d_eff) / (4 * lam)) ** (1 / 3))
    law_d = theory.adam_l2_equilibrium(lr, lam, w.G2(), D, betas=(0.9, 0.99))
    law_eff = theory.adam_l2_equilibrium(lr, lam, w.G2(), d_eff, betas=(0.9, 0.99))
    assert d_eff < 0.5 * D
    assert abs(w.steady_norm() / law_eff.norm - 1) < TOL          # (14.1) holds
    assert w.steady_norm() / law_d.norm - 1 < -0.1                # the even-scale law does not (-17%)


def test_adam_l2_angle_uses_all_active_coordinates():
    lr, lam, k = 4e-3, 2e-2, (1 - 0.9) / (1 + 0.9)
    scales = lognormal_scales()
    _, d_eff = theory.effective_width(scales)
    w = adam_walk(scales, lr=lr, lam=lam, norm0=(lr * np.sqrt(d_eff) / (4 * lam)) ** (1 / 3))
    predicted = np.sqrt(k * D * lr * lr / w.steady_norm() ** 2)   # (14.2), eta = 1
    assert abs(w.rms_angle() / predicted - 1) < TOL
