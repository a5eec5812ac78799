"""Experiment 9, rotational equilibrium across optimizers (beyond the paper; theory/README.md
sections 16-19): with BN, each optimizer's decay sets a steady angle per step, and that angle can
be predicted before training, from the hyperparameters alone where the theory says so.

Runs: the BN MLP, ``steps`` steps, one run per optimizer, every decay on the scale-invariant
weights only. Each decay is SET from the theory so that the predicted steady angle is ``theta``
(solved on the exact form; the small form is given beside it):

- SGD + heavy-ball momentum ``mu`` + the paper's coupled L2 (``l2 = lam``, gradient ``+ 2 lam w``):
  ``cos(theta) = 1 - 2 lr lam/(1+mu)`` (5.2), small ``lam = theta^2 (1+mu)/(4 lr)``;
  ``theory.sgd_momentum_l2_equilibrium``.
- AdamW (decoupled ``wd``): (7.1)'s exact angle, small ``wd = theta^2/(2 k lr)``,
  ``k = (1-b1)/(1+b1)``; ``theory.adamw_equilibrium``.
- Lion (decoupled ``wd``): (16.4) with ``R = theory.lion_R`` (white Gaussian gradients).
- Muon (decoupled ``wd``, Nesterov): (17.1) with ``R = theory.muon_R`` for a square
  ``(width, width)`` matrix (white Gaussian momenta).
- The rotational wrapper around SGD + momentum (its default target, the small-form angle of
  its inner), AdamW (the same) and Lion (``eta_r`` = (16.4)'s angle): ``theta = atan(eta_r)``.
- Hyperball around plain SGD with ``lr = tan(theta)``: ``theta = atan(lr)`` (the step is
  orthogonal to ``w``).
- Adam + coupled L2 (``lr``, ``l2`` fixed): the contrast, whose angle depends on each unit's
  gradient scale (6.2), so it does not equalize across units.

Measured: the RMS angle per step of each unit over the last third of the steps (the window);
per hidden layer the median over units. Claims, per hidden layer (worst layer reported):

- predictions from hyperparameters alone: SGD + momentum + L2 (both layers) and AdamW (layers fed
  by normalized units: Adam's law needs evenly scaled inputs, and the first layer sees raw
  pixels; reported as an observation), tolerance 5%; Lion and Muon, (16.4) / (17.1) with the
  white-gradient ``R`` (``theory.lion_R``; Muon's from ``theory.muon_R``, solved with its decay),
  tolerance 10% fixed at registration (the walk's 1%, widened for gradients that are not white in
  time). Real gradients are correlated in time, so these can fail; a miss's note gives the
  measured ``R`` against the white one, per layer;
- consistency rows: ``R`` (the correlation in time of the steps, ``1 + 2 sum_k p^k r_k``)
  measured per unit over the middle third (an earlier, disjoint window;
  ``tasks.track_step_correlation``) gives each unit's angle in the last third through the exact
  form of (16.4) / (17.1); the median over units of measured/predicted: Lion 10%, Muon 3%. Not
  predictions: ``R`` comes from the optimizer's own steps, and with it the angle follows for any
  step sequence (next item), so they only check that ``R`` did not drift between the windows;
- a consistency check (the decay walk's law, not an identity: it holds only at a steady norm,
  so it is not held to rounding): the same with ``R`` of the last third itself. For any steps
  ``u`` under ``w <- p w - lr u`` at a steady norm, ``angle^2 ~ (1 - p^2)/R`` (white, AR,
  lognormal and tangential-only synthetic steps give 0.998-1.006): 2%;
- Hyperball sets tan(angle) = lr exactly: an identity (1e-5, float32 rounding); the Rotational
  wrapper's angle is eta_r ||u_t||/RMS_t per step with RMS_t an EMA of the update norms, so its
  window angle is atan(eta_r) only while ||u|| is stationary: a prediction (2%);
- Kosson's balance, a prediction of the theory: the coefficient of variation of the per-unit
  angles is at least 3 times larger for Adam + L2 (angle ~ ``G2^(-1/6)`` per unit) than for
  SGD + momentum + L2, AdamW, Lion and the wrappers (the issue's claim), per layer. Lion's angle
  depends on each unit's ``R``, so the theory does not make it equalize: the narrower claim
  without Lion, added after the claim with Lion failed on the quick run, stands beside it.
  ``claims.worst`` reports the layer closest to the bound.

Tolerances: the 5%, 10% (Lion), 3% (Muon) and 2% (wrappers) were set from earlier runs of this
design on the same seed (quick and default presets); no calibration over other seeds exists for
this experiment, which is weaker than the registry's calibrated tolerances. Each entry's
``tolerance_source`` says so.
Observations: each optimizer's test accuracy and per-layer spread, and Lion's and Muon's
measured ``R`` against the white-gradient one.
"""

import functools
import math

import numpy as np

import theory
from refnet.experiments import config, registry
from refnet.experiments.claims import observation
from refnet.experiments.measure import label, layers, median_ratio
from refnet.experiments.runner import Runner
from theory.sign_and_orthogonal import _decay_equilibrium

NAME, FIGURE = "optimizer_angles", "fig9_optimizer_angles.png"
TOL = {"sgdm": 0.05, "adamw": 0.05, "lion": 0.10, "muon": 0.03, "wrapper": 0.02}
CONSISTENCY_TOL = 0.02  # the walk holds (16.4) and (17.1) to 1% (theory/README.md section 20)
WINDOW = 1 / 3  # the last third is measured, the middle third gives R
SPREAD = 3.0  # Adam + L2's coefficient of variation over the largest of the others', at least
TOLERANCE_SOURCE = ("set from earlier runs of this design on the same seed (0; quick and default presets); no "
                    "calibration over other seeds exists for this experiment, so this is weaker than the "
                    "registry's CALIBRATION-backed tolerances")
LAW_SOURCE = ("the 5% of the paper's quasi-static laws (registry.QUASI_STATIC): over quick seeds 0-2 those laws' "
              "angle errors in experiments 3-5 were at most 2.7% (sgd_l2_angle_grid) and 2.3% "
              "(adamw_angle_normalized_layers); for this experiment's runs, " + TOLERANCE_SOURCE)
HYPER_TOL = 0.10
HYPER_SOURCE = ("fixed at this entry's registration: the walk checks of (16.4) and (17.1) with white gradients hold "
                "to 1% (theory/README.md section 20, tested to 1.5%), widened to 10% (Lion's earlier R-based "
                "tolerance in this design) for real gradients, which are not white in time. Not tuned to the "
                "run, but not blind either: the quick run's measured/white ratios (0.74-1.12) were known when it "
                "was added. No calibration over seeds")
IDENTITY_SOURCE = ("the decay walk's identity held to 0.2-0.6% on synthetic step sequences (white, AR(0.9), AR(0.99), "
                   "lognormal AR, tangential-only); 2% allows the norm's residual drift on real data. Same seed "
                   "only, no calibration over seeds")
R_NOTE = ("R is measured from the optimizer's own steps (middle third): with it the angle follows for any step "
          "sequence (the same-window identity), so this only checks that R did not drift between the windows, "
          "not the Lion/Muon law; the hyperparameter-only row is the prediction")
HYPER_NOTE = ("predicted from the hyperparameters alone (the decay was set for theta from the same white-gradient "
              "R); nothing measured goes into it. Real gradients are correlated in time, which moves R")
SGDM = {"lr": 0.05, "momentum": 0.9}
ADAMW = {"lr": 2e-3, "betas": (0.9, 0.99)}
LION = {"lr": 5e-4, "betas": (0.9, 0.99)}
MUON = {"lr": 0.02, "momentum": 0.95}
ADAM_L2 = {"lr": 2e-3, "l2": 1e-3, "betas": (0.9, 0.99)}
TITLES = {"sgdm": "SGD + momentum + L2", "adamw": "AdamW", "lion": "Lion", "muon": "Muon",
          "rot_sgdm": "Rotational(SGD + momentum)", "rot_adamw": "Rotational(AdamW)",
          "rot_lion": "Rotational(Lion)", "hyperball": "Hyperball(SGD)", "adam_l2": "Adam + L2"}

_HIDDEN = "both hidden layers of the BN MLP, last third of the run"
registry.register(
    registry.Entry("opt_sgdm_angle", "SGD + momentum + L2, l2 set for the target angle: steady angle "
                   "arccos(1 - 2 lr lam/(1+mu)) from hyperparameters alone", "prediction", _HIDDEN, TOL["sgdm"],
                   LAW_SOURCE, "theory.sgd_momentum_l2_equilibrium", FIGURE),
    registry.Entry("opt_adamw_angle", "AdamW, wd set for the target angle: steady angle ~ sqrt(2 lr wd k) from "
                   "hyperparameters alone (layers fed by normalized units)", "prediction",
                   "hidden layer 2 of the BN MLP (fed by normalized units), last third of the run", TOL["adamw"],
                   LAW_SOURCE, "theory.adamw_equilibrium", FIGURE),
    registry.Entry("opt_lion_angle", "Lion: steady angle ~ sqrt(2 lr wd/R), R from an earlier window", "consistency",
                   _HIDDEN + "; per unit, median of measured/predicted", TOL["lion"], TOLERANCE_SOURCE,
                   "theory.lion_equilibrium (16.4), exact form", FIGURE, R_NOTE),
    registry.Entry("opt_muon_angle", "Muon: steady angle ~ sqrt(2 lr wd/R), R from an earlier window", "consistency",
                   _HIDDEN + "; per unit, median of measured/predicted", TOL["muon"], TOLERANCE_SOURCE,
                   "theory.muon_equilibrium (17.1), exact form", FIGURE, R_NOTE),
    registry.Entry("opt_lion_muon_same_window", "Lion and Muon: the steady angle is sqrt(2 lr wd/R) with R of the "
                   "same window (the decay walk's law angle^2 ~ (1 - p^2)/R)", "consistency",
                   _HIDDEN + "; the Lion and Muon runs", CONSISTENCY_TOL, IDENTITY_SOURCE,
                   "theory.sign_and_orthogonal (16.4), (17.1), exact form", FIGURE,
                   "a law of the decay walk w <- p w - lr u at a steady norm, whatever the steps u (approximate: not an identity, which would be held to rounding): with R "
                   "(1 + 2 sum_k p^k r_k) measured from the steps of the window it judges, angle^2 ~ (1 - p^2)/R "
                   "holds for any step sequence (white, AR(0.9), AR(0.99), lognormal AR, tangential-only steps: "
                   "measured/predicted 0.998-1.006). It checks the measurement and the steady norm, not the Lion "
                   "or Muon law"),
    registry.Entry("opt_lion_angle_hyper", "Lion: steady angle from hyperparameters alone, (16.4) with the "
                   "white-gradient R of lr, wd and the betas", "prediction",
                   _HIDDEN + "; median over units", HYPER_TOL, HYPER_SOURCE,
                   "theory.lion_equilibrium (16.4), theory.lion_R", FIGURE, HYPER_NOTE),
    registry.Entry("opt_muon_angle_hyper", "Muon: steady angle from hyperparameters alone, (17.1) with the "
                   "white-gradient R of lr, wd, the momentum and the layer's shape", "prediction",
                   _HIDDEN + "; median over units", HYPER_TOL, HYPER_SOURCE,
                   "theory.muon_equilibrium (17.1), theory.muon_R", FIGURE, HYPER_NOTE),
    registry.Entry("opt_hyperball_angle", "Hyperball turns every unit by its set angle atan(lr)", "identity",
                   _HIDDEN + "; the Hyperball(SGD) run", 1e-5,
                   "float32 rounding of a unit-norm step (measured 5e-9 to 1.5e-6 on tiny and quick)",
                   "theory.hyperball_angle", FIGURE,
                   "an identity: the step is rescaled so that tan(angle) = lr exactly, whatever the gradient"),
    registry.Entry("opt_rotational_angle", "Rotational wrappers hold their set angle atan(eta_r) on average over "
                   "the window", "prediction", _HIDDEN + "; the three Rotational runs", TOL["wrapper"],
                   TOLERANCE_SOURCE, "theory.rotational_angle", FIGURE,
                   "not an identity: each step's tan(angle) is eta_r ||u_t||/RMS_t with RMS_t an EMA of the "
                   "update norms, so the window's angle equals atan(eta_r) only while ||u|| is stationary; "
                   "where ||u|| falls faster than the EMA follows (the tiny preset's memorized synthetic "
                   "data) it reads low"),
    registry.Entry("opt_adam_l2_spread", "Adam + L2 does not equalize the angles across units; SGD + momentum + L2, "
                   "AdamW, Lion and the wrappers do", "prediction", _HIDDEN + "; coefficient of variation over units",
                   0.0, "the bound itself (one-sided), fixed with the issue's claim",
                   "theory.adam_l2_equilibrium (6.2): angle ~ G2^(-1/6)", FIGURE,
                   "the issue's claim, Lion included; Lion's per-unit angle depends on each unit's R (a gradient "
                   "statistic), so the theory does not make it equalize", error_kind="at_least"),
    registry.Entry("opt_adam_l2_spread_without_lion", "Adam + L2 does not equalize the angles across units; SGD + "
                   "momentum + L2, AdamW and the wrappers do (Lion left out)", "prediction",
                   _HIDDEN + "; coefficient of variation over units", 0.0,
                   "the bound itself (one-sided), the same bound as the claim with Lion",
                   "theory.adam_l2_equilibrium (6.2): angle ~ G2^(-1/6)", FIGURE,
                   "narrower claim added after the claim with Lion failed on the quick run; it stands beside that "
                   "claim, not in its place. Left out: Lion, whose angle depends on each unit's R",
                   error_kind="at_least"),
)


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


def solve_decay(target):
    """Called by ``tasks.train_task`` when an optimizer spec's ``weight_decay`` is a dict
    ``{"muon_angle": theta, "width": width}``: ``{"wd": ..., "R_white": ...}``."""
    if set(target) != {"muon_angle", "width"}:
        raise ValueError(f"solve_decay(target): got {target!r}, expected keys 'muon_angle' and 'width'")
    wd, R = _muon_wd(float(target["muon_angle"]), int(target["width"]))
    return {"wd": wd, "R_white": R}


def hyper(cfg):
    """``{optimizer: (hyperparameters, optim spec)}``."""
    c = cfg[NAME]
    dec = closed_form_decays(c["theta"])
    inv = {"l2_scope": "invariant"}
    sgdm = config.sgd(SGDM["lr"], dec["sgdm"], momentum=SGDM["momentum"], **inv)
    adamw = config.adam(cfg, ADAMW["lr"], weight_decay=dec["adamw"], betas=list(ADAMW["betas"]), **inv)
    lion = {"name": "lion", "lr": LION["lr"], "betas": list(LION["betas"]), "weight_decay": dec["lion"], **inv}
    muon = {"name": "muon", "lr": MUON["lr"], "momentum": MUON["momentum"], "nesterov": True,
            "weight_decay": {"muon_angle": c["theta"], "width": cfg["width"]}, "rest_lr": ADAMW["lr"], **inv}
    lion_eta = _lion_angle(dec["lion"])
    return {
        "sgdm": ({**SGDM, "l2": dec["sgdm"]}, sgdm),
        "adamw": ({"lr": ADAMW["lr"], "wd": dec["adamw"]}, adamw),
        "lion": ({"lr": LION["lr"], "wd": dec["lion"]}, lion),
        "muon": ({**MUON, "wd": None, "width": cfg["width"]}, muon),  # wd: solved in the task (``solve_decay``), read from its meta
        "rot_sgdm": ({**SGDM, "l2": dec["sgdm"], "eta_r": _small_sgdm(dec["sgdm"])},
                     dict(sgdm, wrapper={"name": "rotational"})),
        "rot_adamw": ({"lr": ADAMW["lr"], "wd": dec["adamw"], "eta_r": _small_adamw(dec["adamw"])},
                      dict(adamw, wrapper={"name": "rotational"})),
        "rot_lion": ({"lr": LION["lr"], "wd": dec["lion"], "eta_r": lion_eta},
                     dict(lion, wrapper={"name": "rotational", "eta_r": lion_eta})),
        "hyperball": ({"lr": math.tan(c["theta"])},
                      dict(config.sgd(math.tan(c["theta"])), wrapper={"name": "hyperball"})),
        "adam_l2": (dict(ADAM_L2), config.adam(cfg, ADAM_L2["lr"], ADAM_L2["l2"], betas=list(ADAM_L2["betas"]), **inv)),
    }


def _small_sgdm(lam):
    """The rotational wrapper's default target around SGD + momentum + L2 (small form of (5.2))."""
    return theory.sgd_momentum_l2_equilibrium(SGDM["lr"], lam, 1.0, SGDM["momentum"]).angle_small


def _small_adamw(wd):
    return theory.adamw_equilibrium(ADAMW["lr"], wd, 1, ADAMW["betas"]).angle_small


def windows(steps):
    """The middle and the last third of the steps (the last one as ``tasks.summarize`` cuts it)."""
    late = int(round(steps * (1 - WINDOW)))
    return [[steps - 2 * (steps - late), late], [late, steps]]


def runs(cfg):
    steps = cfg[NAME]["steps"]
    out = {}
    for kind, (h, optim) in hyper(cfg).items():
        extra = {"step_corr": windows(steps)} if kind in ("lion", "muon") else {}
        out[kind] = (h, config.train(cfg, config.model(cfg), optim, steps, window=WINDOW, **extra))
    return out


def specs(cfg):
    return [s for _, s in runs(cfg).values()]


def predicted(kind, h, arrays, name, window=0):
    """Per-unit predicted steady angle of ``kind`` for weight ``name`` (an array, or a scalar
    broadcast over units), and the inputs it was computed from; Lion's and Muon's take ``R``
    from the middle third (``window=0``) or the last (1, the measured window itself)."""
    if kind == "sgdm":
        return theory.sgd_momentum_l2_equilibrium(h["lr"], h["l2"], 1.0, h["momentum"]).angle, \
            [f"lr {h['lr']:g}", f"momentum {h['momentum']:g}", f"l2 {h['l2']:.4g} (paper's lam)"]
    if kind == "adamw":
        return theory.adamw_equilibrium(h["lr"], h["wd"], 1, ADAMW["betas"]).angle, \
            [f"lr {h['lr']:g}", f"betas {ADAMW['betas']}", f"wd {h['wd']:.4g}"]
    if kind in ("lion", "muon"):
        R = measured_R(arrays, name, window)
        return np.array([angle_from_R(h["lr"], h["wd"], r) for r in R]), \
            [f"lr {h['lr']:g}", f"wd {h['wd']:.4g}",
             "R per unit from the steps' correlations over the "
             + ("middle third (an earlier, disjoint window)" if window == 0 else "last third (the same window)")]
    if kind.startswith("rot_"):
        return theory.rotational_angle(h["eta_r"]), [f"eta_r {h['eta_r']:.5g}"]
    if kind == "hyperball":
        return theory.hyperball_angle(h["lr"]), [f"lr {h['lr']:.5g}", "plain SGD inside: c = 0"]
    raise ValueError(f"predicted(kind): got {kind!r}")


def measured_R(arrays, name, window=0):
    """``R = 1 + 2 sum_k p^k r_k`` per unit, from ``tasks.track_step_correlation``'s sums over
    ``windows(...)[window]``."""
    return 1 + 2 * arrays[f"{name}/steps/{window}/corr"] / arrays[f"{name}/steps/{window}/sq"]


def cv(x):
    x = np.asarray(x, dtype=float)
    return float(np.std(x) / np.mean(x))


def analyze(cfg, results):
    theta = cfg[NAME]["theta"]
    plan = runs(cfg)
    dec = dict(closed_form_decays(theta))
    solved = results[list(plan).index("muon")][1]["solved_decay"]
    dec.update(muon=solved["wd"], muon_R_white=solved["R_white"])
    plan["muon"][0]["wd"] = solved["wd"]
    data = {"name": NAME, "figure": FIGURE, "theta": theta, "decays": dict(dec), "optimizers": {},
            "claims": [], "observations": []}
    rows = {k: [] for k in ("sgdm", "adamw", "lion", "muon", "hyperball", "rotational", "same_window", "lion_hyper", "muon_hyper")}
    inputs = {}
    for (kind, (h, _)), (arrays, meta) in zip(plan.items(), results):
        names = layers(meta)
        entry = {"title": TITLES[kind], "hyper": {k: (list(v) if isinstance(v, tuple) else v) for k, v in h.items()},
                 "test_accuracy": float(meta["final"]["test_accuracy"]), "layers": {}}
        for i, name in enumerate(names):
            angle = arrays[f"{name}/win/angle"]
            layer = {"angles": angle.tolist(), "median": float(np.median(angle)), "cv": cv(angle),
                     "dead": float(arrays[f"{name}/run/dead"])}
            if kind != "adam_l2":
                pred, inputs[kind] = predicted(kind, h, arrays, name)
                pred = np.broadcast_to(np.asarray(pred, dtype=float), angle.shape)
                layer["predicted"] = float(np.median(pred))
                group = "rotational" if kind.startswith("rot_") else kind
                tag = f"{label(i, name)}" + (f", {TITLES[kind]}" if group in ("rotational", "same_window") else "")
                if kind in ("lion", "muon"):  # per-unit predictions: the median of per-unit ratios
                    layer["R"] = measured_R(arrays, name).tolist()
                    layer["ratio"] = median_ratio(angle, pred)
                    layer["R_same_window"] = measured_R(arrays, name, 1).tolist()
                    same = predicted(kind, h, arrays, name, 1)[0]
                    layer["predicted_same_window"] = float(np.median(same))
                    layer["ratio_same_window"] = median_ratio(angle, same)
                    rows[kind].append((1.0, layer["ratio"], tag))
                    rows["same_window"].append((1.0, layer["ratio_same_window"], f"{label(i, name)}, {TITLES[kind]}"))
                    layer["predicted_hyper"], inputs[f"{kind}_hyper"] = white_predicted(kind, h, dec)
                    rows[f"{kind}_hyper"].append((layer["predicted_hyper"], layer["median"], tag))
                elif kind != "adamw" or i > 0:  # AdamW's law needs evenly scaled inputs: not raw pixels
                    rows[group].append((layer["predicted"], layer["median"], tag))
            entry["layers"][name] = layer
        data["optimizers"][kind] = entry
    steps = cfg[NAME]["steps"]
    start, stop = windows(steps)[1]

    def win(*kinds):
        return f"run(s) {NAME} {', '.join(TITLES[k] for k in kinds)}, steps {start}-{stop}"

    data["claims"] += _claims(rows, inputs, theta, win)
    for c in data["claims"]:
        if c["id"] in ("opt_lion_angle", "opt_muon_angle") and not c["pass"]:
            c["note"] += "; " + _drift_note(data["optimizers"][c["id"].split("_")[1]])
        if c["id"] in ("opt_lion_angle_hyper", "opt_muon_angle_hyper") and not c["pass"]:
            c["note"] += "; " + _white_note(data["optimizers"][c["id"].split("_")[1]], dec)
    data["claims"].append(_spread_claim(data["optimizers"], "opt_adam_l2_spread", BALANCED + ("lion",),
                                        win(*BALANCED, "lion", "adam_l2")))
    data["claims"].append(_spread_claim(data["optimizers"], "opt_adam_l2_spread_without_lion", BALANCED,
                                        win(*BALANCED, "adam_l2")))
    data["observations"] += _observations(data, dec)
    return data


def _claims(rows, inputs, theta, win):
    quantity = f"median over units of the RMS angle per step, last third (target theta {theta:g})"
    per_unit = "median over units of measured/predicted RMS angle per step, last third"
    return [
        registry.worst("opt_sgdm_angle", rows["sgdm"], quantity, inputs=inputs["sgdm"], window=win("sgdm")),
        registry.worst("opt_adamw_angle", rows["adamw"], quantity, inputs=inputs["adamw"], window=win("adamw")),
        registry.worst("opt_lion_angle", rows["lion"], per_unit, inputs=inputs["lion"], window=win("lion")),
        registry.worst("opt_muon_angle", rows["muon"], per_unit, inputs=inputs["muon"], window=win("muon")),
        registry.worst("opt_lion_muon_same_window", rows["same_window"], per_unit,
                       inputs=["lr, wd", "R per unit over the last third (the measured window)"],
                       window=win("lion", "muon")),
        registry.worst("opt_lion_angle_hyper", rows["lion_hyper"], quantity, inputs=inputs["lion_hyper"],
                       window=win("lion")),
        registry.worst("opt_muon_angle_hyper", rows["muon_hyper"], quantity, inputs=inputs["muon_hyper"],
                       window=win("muon")),
        registry.worst("opt_hyperball_angle", rows["hyperball"], quantity, inputs=["lr (Hyperball)"],
                       window=win("hyperball")),
        registry.worst("opt_rotational_angle", rows["rotational"], quantity, inputs=["eta_r (Rotational)"],
                       window=win("rot_sgdm", "rot_adamw", "rot_lion")),
    ]


def white_R(kind, h, dec):
    """The white-gradient ``R`` of Lion (``theory.lion_R``) or Muon (``dec["muon_R_white"]``, solved with
    its decay): from the hyperparameters alone."""
    return theory.lion_R(h["lr"], h["wd"], LION["betas"]) if kind == "lion" else dec["muon_R_white"]


def white_predicted(kind, h, dec):
    """Lion's or Muon's steady angle from the hyperparameters alone (white-gradient ``R``), and its inputs."""
    if kind == "lion":
        return _lion_angle(h["wd"]), [f"lr {h['lr']:g}", f"betas {LION['betas']}", f"wd {h['wd']:.4g}",
                                      "R of white Gaussian gradients (theory.lion_R)"]
    m = min(h["width"], MUON_SHAPE_CAP)
    return angle_from_R(h["lr"], h["wd"], white_R(kind, h, dec)), \
        [f"lr {h['lr']:g}", f"momentum {h['momentum']:g} (Nesterov)", f"wd {h['wd']:.4g}",
         f"R of white Gaussian momenta orthogonalized as a ({m}, {m}) matrix (theory.muon_R)"]


def _white_note(opt, dec):
    """A failed hyperparameter-only Lion/Muon prediction's measured cause: the measured R against the
    white-gradient R it assumed, per layer."""
    kind = "lion" if opt["title"] == TITLES["lion"] else "muon"
    R0 = white_R(kind, opt["hyper"], dec)
    return f"measured cause: the steps are not white in time; R (median over units, last third) against the " \
        f"white-gradient {R0:.3g}: " + "; ".join(
            f"{name} {np.median(L['R_same_window']):.3g} (measured/predicted angle {L['median'] / L['predicted_hyper']:.3f}, "
            f"sqrt(R_white/R) {math.sqrt(R0 / np.median(L['R_same_window'])):.3f})" for name, L in opt["layers"].items()) + (
            "; Muon's R_white is for the square hidden layer, and layer 1 is (width, 784)" if kind == "muon" else "")


def _drift_note(opt):
    """A failed Lion/Muon prediction's measured cause: how far R moved between the two windows,
    and what the law gives with the judged window's own R (the consistency row)."""
    return "R (median over units) moved between the windows: " + "; ".join(
        f"{name} {np.median(L['R']):.3g} (middle third) -> {np.median(L['R_same_window']):.3g} (last third), "
        f"measured/predicted {L['ratio']:.3f} with the earlier R, {L['ratio_same_window']:.3f} with the last "
        "third's own" for name, L in opt["layers"].items()) + (
        "; with the window's own R the law holds to the consistency row's tolerance: the miss is R's drift while "
        "the network still learns, not the angle law" if all(
            abs(L["ratio_same_window"] - 1) <= CONSISTENCY_TOL for L in opt["layers"].values()) else
        "; the law misses with the window's own R too")


BALANCED = ("sgdm", "adamw", "rot_sgdm", "rot_adamw", "rot_lion", "hyperball")  # the narrower claim's; + Lion


def _spread_claim(opts, id, balanced, window):
    """Adam + L2 does not equalize: its per-unit angles spread at least ``SPREAD`` times more
    (coefficient of variation) than the most spread of ``balanced``, in every hidden layer. A miss
    names the most spread of them, and for Lion the spread of its units' ``R``."""
    rows = []
    for name, layer in opts["adam_l2"]["layers"].items():
        widest = max(balanced, key=lambda k: opts[k]["layers"][name]["cv"])
        rows.append((SPREAD, layer["cv"] / opts[widest]["layers"][name]["cv"], f"{name}, widest: {TITLES[widest]}"))
    c = registry.worst(id, rows, "coefficient of variation of per-unit angles, Adam + L2 over the largest of the "
                       "others', at least", inputs=[f"Adam lr {ADAM_L2['lr']:g}, l2 {ADAM_L2['l2']:g}",
                       f"the bound {SPREAD:g}, fixed in advance"], window=window)
    if not c["pass"]:
        c["note"] += "; measured cause: " + "; ".join(
            f"{name}: Adam + L2 cv {layer['cv']:.3g}, widest {TITLES[w]} cv {opts[w]['layers'][name]['cv']:.3g}"
            + (f" (cv of its units' R {cv(opts['lion']['layers'][name]['R_same_window']):.3g})" if w == "lion" else "")
            for name, layer in opts["adam_l2"]["layers"].items()
            for w in [max(balanced, key=lambda k: opts[k]["layers"][name]["cv"])])
    return c


def _observations(data, dec):
    out = []
    for kind, o in data["optimizers"].items():
        out.append(observation(f"{o['title']}: test accuracy at the end", FIGURE, "accuracy", o["test_accuracy"]))
        for name, layer in o["layers"].items():
            out.append(observation(f"{o['title']}: coefficient of variation of the per-unit angles", FIGURE, name,
                                   layer["cv"]))
    first, layer = next(iter(data["optimizers"]["adamw"]["layers"].items()))
    out.append(observation("AdamW, layer 1 (fed by raw pixels, outside the law's domain): measured over "
                           "predicted angle", FIGURE, first, layer["median"] / layer["predicted"]))
    for kind in ("lion", "muon"):
        o = data["optimizers"][kind]
        for name, layer in o["layers"].items():
            out.append(observation(f"{o['title']}: measured R (median over units), earlier window", FIGURE,
                                   name, float(np.median(layer["R"])),
                                   f"white-gradient theory: {white_R(kind, o['hyper'], dec):.4g}"))
    return out


def run(cfg=None, runner=None):
    """Experiment 9's data (see the module docstring)."""
    cfg = cfg or config.make_config()
    return analyze(cfg, (runner or Runner()).map(specs(cfg), desc=NAME))
