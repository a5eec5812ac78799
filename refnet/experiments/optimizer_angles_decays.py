"""Experiment 9's decays (``refnet.experiments.optimizer_angles``): each optimizer's hyperparameters,
and its decay solved from theory/ so that its predicted steady angle is the target ``theta`` (Muon's
through a Monte Carlo, Adam + L2's through a pilot run's ``G2``, both inside the training task)."""

import functools
import math

import numpy as np

import theory
from refnet.experiments.measure import layers
from theory.sign_and_orthogonal import _decay_equilibrium

SGDM = {"lr": 0.05, "momentum": 0.9}
ADAMW = {"lr": 2e-3, "betas": (0.9, 0.99)}
LION = {"lr": 5e-4, "betas": (0.9, 0.99)}
MUON = {"lr": 0.02, "momentum": 0.95}
ADAM_L2 = {"lr": 2e-3, "betas": (0.9, 0.99), "pilot_l2": 1e-3}  # l2: solved from the pilot's G2


def _solve(angle, theta, lo=1e-8, hi=1e4):
    """The decay ``x`` in ``[lo, hi]`` with ``angle(x) = theta`` (``angle`` increasing; NaN past
    the largest decay the exact form allows counts as too large): bisection in ``log x``."""
    for _ in range(200):
        mid = math.sqrt(lo * hi)
        with np.errstate(invalid="ignore"):
            lo, hi = (mid, hi) if angle(mid) < theta else (lo, mid)
        if hi / lo < 1 + 1e-12:
            break
    return math.sqrt(lo * hi)


def _sgdm_angle(lam):
    return theory.sgd_momentum_l2_equilibrium(SGDM["lr"], lam, 1.0, SGDM["momentum"]).angle


def _adamw_angle(wd):
    return theory.adamw_equilibrium(ADAMW["lr"], wd, 1, ADAMW["betas"]).angle


def _lion_angle(wd):
    return theory.lion_equilibrium(LION["lr"], wd, 1, LION["betas"]).angle


def angle_from_R(lr, wd, R):
    """The steady angle of a decoupled-decay optimizer whose steps have correlation sum ``R``:
    the exact form of (16.4) and (17.1), ``theory.sign_and_orthogonal``'s closing step."""
    return _decay_equilibrium("R", lr, wd, 1.0, R).angle


MUON_SHAPE_CAP = 128  # Newton-Schulz's correlation h for square matrices: 128 and 256 give R within 2%


@functools.lru_cache(maxsize=None)
def _muon_wd(theta, width):
    """Muon's ``wd`` for the angle ``theta``, and its ``R``: ``theory.muon_R``'s sum
    ``R = 1 + 2 sum_k p^k h(rho_k)`` with ``h`` measured once (``theory.orthogonalized_correlation``,
    seeded Monte Carlo) on an ``(m, m)`` matrix, ``m = min(width, MUON_SHAPE_CAP)``, as the hidden
    ``(width, width)`` layer; then ``wd`` solves ``angle(wd, R(wd)) = theta``."""
    lr, mu, m = MUON["lr"], MUON["momentum"], min(width, MUON_SHAPE_CAP)
    knots = np.linspace(0.0, 1.0, 41)
    h, _ = theory.orthogonalized_correlation(knots, (m, m))

    def R_of(wd):
        p = 1 - lr * wd
        lags = int(np.ceil(np.log(1e-12) / np.log(p * mu)))
        return theory.correlation_sum(np.interp(theory.momentum_correlations(mu * mu, mu, lags), knots, h), p)

    wd = _solve(lambda x: angle_from_R(lr, x, R_of(x)), theta)
    return wd, R_of(wd)


@functools.lru_cache(maxsize=None)
def closed_form_decays(theta):
    """The decays that need no Monte Carlo (all but Muon's), and the small forms."""
    mu, lr = SGDM["momentum"], SGDM["lr"]
    k = (1 - ADAMW["betas"][0]) / (1 + ADAMW["betas"][0])
    return {"sgdm": _solve(_sgdm_angle, theta), "sgdm_small": theta ** 2 * (1 + mu) / (4 * lr),
            "adamw": _solve(_adamw_angle, theta), "adamw_small": theta ** 2 / (2 * k * ADAMW["lr"]),
            "lion": _solve(_lion_angle, theta)}


def decays(theta, width):
    """``{optimizer: decay}`` set so that each one's predicted steady angle is ``theta``, and
    the small forms beside them (``"<name>_small"``). Muon's needs a Monte Carlo (tens of
    CPU-seconds at width 128): the experiment solves it inside the Muon training task
    (``solve_decay``), so it is cached with that run and never computed in the main process."""
    muon_wd, muon_R = _muon_wd(theta, width)
    return {**closed_form_decays(theta), "muon": muon_wd, "muon_R_white": muon_R}


def solve_decay(target, spec=None):
    """Called by ``tasks.train_task`` when an optimizer spec's ``weight_decay`` or ``l2`` is a dict:
    ``{"muon_angle": theta, "width": width}`` gives ``{"wd": ..., "R_white": ...}`` (Muon);
    ``{"adam_l2_angle": theta, "pilot_steps": P, "pilot_l2": l2_0}`` gives ``{"l2": ...}`` and the
    pilot's record (``adam_l2_pilot``; ``spec`` is the run's task spec)."""
    if set(target) == {"adam_l2_angle", "pilot_steps", "pilot_l2"} and spec is not None:
        return adam_l2_pilot(target, spec)
    if set(target) != {"muon_angle", "width"}:
        raise ValueError(f"solve_decay(target): got {target!r}, expected keys 'muon_angle' and 'width', or "
                         f"'adam_l2_angle', 'pilot_steps' and 'pilot_l2' with the run's spec")
    wd, R = _muon_wd(float(target["muon_angle"]), int(target["width"]))
    return {"wd": wd, "R_white": R}


def adam_l2_pilot(target, spec):
    """Adam + L2's ``l2`` for the angle ``theta``, from ``G2`` measured before the run: a pilot (the
    same network, seed and batches, ``pilot_steps`` steps at ``l2 = pilot_l2``) gives the median
    over units of ``G2`` on the last scale-invariant layer (the one fed by normalized units) over its
    second half; ``l2`` then solves ``theory.adam_l2_equilibrium(lr, l2, G2, d).angle = theta``
    (exact form, theory/README.md (6.2)). Adam + L2's angle goes as ``G2^(-1/6)``: the other
    optimizers need no gradient statistic for this."""
    from refnet.experiments.tasks import train_task
    o, steps, theta = spec["optim"], int(target["pilot_steps"]), float(target["adam_l2_angle"])
    pilot = {k: v for k, v in spec.items() if k not in ("step_corr", "autocorr_lags", "keep_logits", "keep_units")}
    pilot.update(steps=steps, window=0.5, trace_every=max(1, steps // 200),
                 optim={**o, "l2": float(target["pilot_l2"])})
    arrays, meta = train_task(pilot)
    name = layers(meta)[-1]
    G2, d = arrays[f"{name}/win/G2"], meta["params"][name]["d"]
    G2 = float(np.median(G2[G2 > 0]))
    betas, eps = tuple(o["betas"]), o.get("eps", 1e-8)
    l2 = _solve(lambda x: theory.adam_l2_equilibrium(o["lr"], x, G2, d, betas, eps).angle, theta)
    return {"l2": l2, "pilot_steps": steps, "pilot_l2": float(target["pilot_l2"]),
            "pilot_window": [int(round(steps * 0.5)), steps], "layer": name, "G2": G2, "d": d,
            "seconds": meta["seconds"]}


def _small_sgdm(lam):
    """The rotational wrapper's default target around SGD + momentum + L2 (small form of (5.2))."""
    return theory.sgd_momentum_l2_equilibrium(SGDM["lr"], lam, 1.0, SGDM["momentum"]).angle_small


def _small_adamw(wd):
    return theory.adamw_equilibrium(ADAMW["lr"], wd, 1, ADAMW["betas"]).angle_small
