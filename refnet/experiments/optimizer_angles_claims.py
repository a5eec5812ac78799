"""Experiment 9's claims (``refnet.experiments.optimizer_angles``): the constants and tolerances, the
registry entries (the BN MLP's, and the same claims on the BN CNN under ids ending in ``_cnn``, run by
the ``full`` preset only), and the rows built from the per-layer measurements."""

import numpy as np

from refnet.experiments import registry

FIGURE = "fig9_optimizer_angles.png"

TOL = {"sgdm": 0.05, "adamw": 0.05, "lion": 0.10, "muon": 0.03, "wrapper": 0.02}
CONSISTENCY_TOL = 0.02  # the walk holds (16.4) and (17.1) to 1% (theory/README.md section 20)
WINDOW = 1 / 3  # the last third is measured, the middle third gives R
SPREAD = 3.0  # Adam + L2's coefficient of variation over the largest of the others', at least
TOLERANCE_SOURCE = ("set from earlier runs of this design on the same seed (0; quick and default presets), before "
                    "any calibration over other seeds; refnet/experiments/calibration.json's record (quick seeds "
                    "1-4) replaces it where one exists (registry.register)")
LAW_SOURCE = ("the 5% of the paper's quasi-static laws (registry.QUASI_STATIC): over quick seeds 0-2 those laws' "
              "angle errors in experiments 3-5 were at most 2.7% (sgd_l2_angle_grid) and 2.3% "
              "(adamw_angle_normalized_layers); for this experiment's runs, " + TOLERANCE_SOURCE)
HYPER_TOL = 0.10
HYPER_SOURCE = ("fixed at this entry's registration: the walk checks of (16.4) and (17.1) with white gradients hold "
                "to 1% (theory/README.md section 20, tested to 1.5%), widened to 10% (Lion's earlier R-based "
                "tolerance in this design) for real gradients, which are not white in time. Not tuned to the "
                "run, but not blind either: the quick run's measured/white ratios (0.74-1.12) were known when it "
                "was added. Replaced by the calibration over seeds where calibration.json has a record")
IDENTITY_SOURCE = ("the decay walk's identity held to 0.2-0.6% on synthetic step sequences (white, AR(0.9), AR(0.99), "
                   "lognormal AR, tangential-only); 2% allows the norm's residual drift on real data. Same seed "
                   "only; replaced by the calibration over seeds where calibration.json has a record")
R_NOTE = ("R is measured from the optimizer's own steps (middle third): with it the angle follows for any step "
          "sequence (the same-window identity), so this only checks that R did not drift between the windows, "
          "not the Lion/Muon law; the hyperparameter-only row is the prediction")
HYPER_NOTE = ("predicted from the hyperparameters alone (the decay was set for theta from the same white-gradient "
              "R); nothing measured goes into it. Real gradients are correlated in time, which moves R")
HYPER_SHAPE_SOURCE = ("fixed at this entry's registration: the same 10% as opt_muon_angle_hyper's registration (the "
                      "walk's 1%, widened for real gradients), not tuned to the run; no calibration over seeds yet")
HYPER_SHAPE_NOTE = ("added after the square-R row (opt_muon_angle_hyper) missed: that row, whose registered text "
                    "said 'the layer's shape', used one R of a square (width, width) matrix for every layer; this "
                    "row takes theory.muon_R of each layer's own (out, in) shape (conv kernels as (out, in*k*k)) "
                    "at the same wd. It stands beside that row, not in its place. " + HYPER_NOTE)
TITLES = {"sgdm": "SGD + momentum + L2", "adamw": "AdamW", "lion": "Lion", "muon": "Muon",
          "rot_sgdm": "Rotational(SGD + momentum)", "rot_adamw": "Rotational(AdamW)",
          "rot_lion": "Rotational(Lion)", "hyperball": "Hyperball(SGD)", "adam_l2": "Adam + L2"}

_HIDDEN = "both hidden layers of the BN MLP, last third of the run"
ENTRIES = (
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
                   "white-gradient R of lr, wd and the momentum for a square width x width matrix (width capped at "
                   "128), the same R for every layer", "prediction",
                   _HIDDEN + "; median over units", HYPER_TOL, HYPER_SOURCE,
                   "theory.muon_equilibrium (17.1), theory.muon_R", FIGURE, HYPER_NOTE),
    registry.Entry("opt_muon_angle_hyper_shape", "Muon: steady angle from hyperparameters alone, (17.1) with the "
                   "white-gradient R of lr, wd, the momentum and each layer's own (out, in) shape", "prediction",
                   _HIDDEN + "; median over units", HYPER_TOL, HYPER_SHAPE_SOURCE,
                   "theory.muon_equilibrium (17.1), theory.muon_R per layer shape", FIGURE, HYPER_SHAPE_NOTE,
                   narrows="opt_muon_angle_hyper"),
    registry.Entry("opt_hyperball_angle", "Hyperball turns every unit by its set angle atan(lr)", "identity",
                   _HIDDEN + "; the Hyperball(SGD) run", 1e-5,
                   "float32 rounding of a unit-norm step (measured 5e-9 to 1.5e-6 on tiny and quick)",
                   "theory.hyperball_angle", FIGURE,
                   "an identity: the step is rescaled so that tan(angle) = lr exactly, whatever the gradient"),
    registry.Entry("opt_rotational_angle", "Rotational wrappers hold their set angle atan(eta_r) on average over "
                   "the window", "consistency", _HIDDEN + "; the three Rotational runs", TOL["wrapper"],
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
                   error_kind="at_least", narrows="opt_adam_l2_spread"),
)

ADAM_L2_TOL = 0.10
ADAM_L2_SOURCE = ("registry.QUASI_STATIC_ADAM (10%, fixed in advance for the small-lr*lam form of Adam + L2 and its "
                  "white-in-time gradient assumption), the tolerance of experiment 5's Adam + L2 rows; "
                  "calibration.json has no record for this row yet")
ENTRIES += (
    registry.Entry("opt_adam_l2_angle", "Adam + L2, l2 set for the target angle from a pilot's G2: steady angle per "
                   "unit = the closed form in lr^2*lam, d and that unit's G2 from an earlier window",
                   "prediction", "hidden layer 2 of the BN MLP (fed by normalized units), last third of the run; "
                   "per unit, median of measured/predicted", ADAM_L2_TOL, ADAM_L2_SOURCE,
                   "theory.adam_l2_equilibrium (6.2), exact form", FIGURE,
                   "G2 per unit from the middle third of the same run (an earlier, disjoint window): the law takes "
                   "G2 as steady, and on this ordinary network (trained BN gammas) Adam + L2 feeds back on G2 "
                   "(theory/README.md section 14). Layer 1, fed by raw pixels of uneven scale, is left out a "
                   "priori (as for AdamW) and reported as an observation", narrows="adam_l2_angle_ordinary"),
)

ADAM_L2_SPREAD_TOL = 0.20
ADAM_L2_SPREAD_SOURCE = ("fixed at this entry's registration, before any run judged it: the per-unit law's 10% "
                         "(registry.QUASI_STATIC_ADAM) doubled for a ratio of two spreads, each a sample over "
                         "128-256 units (a coefficient of variation's sampling error is about 1/sqrt(2n), 4-6%); "
                         "no calibration over seeds yet")
ENTRIES += (
    registry.Entry("opt_adam_l2_spread_predicted", "Adam + L2: the spread of the steady angles across units "
                   "(coefficient of variation) is the spread of the per-unit angles predicted from each unit's "
                   "G2 in an earlier window", "prediction",
                   "hidden layer 2 of the BN MLP (fed by normalized units), last third of the run; coefficient "
                   "of variation over the units with a gradient", ADAM_L2_SPREAD_TOL, ADAM_L2_SPREAD_SOURCE,
                   "theory.adam_l2_equilibrium (6.2), exact form, per unit", FIGURE,
                   "the quantitative form of the spread claims: not only wider than the others, but as wide as "
                   "(6.2) makes it from the units' G2 (angle ~ G2^(-1/6)), G2 per unit from the middle third "
                   "(an earlier, disjoint window). Layer 1, fed by raw pixels, is left out a priori as for the "
                   "angle row"),
)

CNN_SOURCE = "the MLP's tolerance (its registered, calibrated where calibration.json has a record), applied to " \
    "the CNN untested (no CNN run informed it); the MLP's source: "


def cnn_entry(e):
    """The same claim on the BN CNN (``full`` preset): id ``<id>_cnn``, from the REGISTERED MLP entry ``e``
    (its calibrated tolerance, where the MLP's is calibrated), taken over untested. Its source starts
    with ``registry.PENDING`` (the CNN itself is not calibrated), so the registry keeps this tolerance
    rather than looking for a record under the ``_cnn`` id; an identity keeps its rounding source."""
    domain = e.domain.replace("both hidden layers of the BN MLP", "both conv layers of the BN CNN").replace(
        "hidden layer 2 of the BN MLP", "conv layer 2 of the BN CNN")
    source = (e.tolerance_source + "; on the BN CNN taken over from the MLP's entry" if e.kind == "identity" else
              registry.PENDING + CNN_SOURCE + e.tolerance_source.removeprefix(registry.PENDING))
    return registry.Entry(e.id + "_cnn", e.text + " (BN CNN)", e.kind, domain, e.tolerance, source,
                          e.theory, e.figure, e.note, error_kind=e.error_kind,
                          narrows=e.narrows and e.narrows + ("_cnn" if e.narrows.startswith("opt_") else ""))


registry.register(*ENTRIES)
registry.register(*(cnn_entry(registry.entry(e.id)) for e in ENTRIES))


def cv(x):
    x = np.asarray(x, dtype=float)
    return float(np.std(x) / np.mean(x))


def claims(rows, inputs, theta, win, sfx=""):
    """The per-layer rows of each claim, judged (``sfx``: "" for the MLP, "_cnn" for the CNN)."""
    quantity = f"median over units of the RMS angle per step, last third (target theta {theta:g})"
    per_unit = "median over units of measured/predicted RMS angle per step, last third"
    return [
        registry.worst("opt_sgdm_angle" + sfx, rows["sgdm"], quantity, inputs=inputs["sgdm"], window=win("sgdm")),
        registry.worst("opt_adamw_angle" + sfx, rows["adamw"], quantity, inputs=inputs["adamw"], window=win("adamw")),
        registry.worst("opt_lion_angle" + sfx, rows["lion"], per_unit, inputs=inputs["lion"], window=win("lion")),
        registry.worst("opt_muon_angle" + sfx, rows["muon"], per_unit, inputs=inputs["muon"], window=win("muon")),
        registry.worst("opt_lion_muon_same_window" + sfx, rows["same_window"], per_unit,
                       inputs=["lr, wd", "R per unit over the last third (the measured window)"],
                       window=win("lion", "muon")),
        registry.worst("opt_lion_angle_hyper" + sfx, rows["lion_hyper"], quantity, inputs=inputs["lion_hyper"],
                       window=win("lion")),
        registry.worst("opt_muon_angle_hyper" + sfx, rows["muon_hyper"], quantity, inputs=inputs["muon_hyper"],
                       window=win("muon")),
        registry.worst("opt_muon_angle_hyper_shape" + sfx, rows["muon_hyper_shape"], quantity,
                       inputs=inputs["muon_hyper_shape"], window=win("muon")),
        registry.worst("opt_hyperball_angle" + sfx, rows["hyperball"], quantity, inputs=["lr (Hyperball)"],
                       window=win("hyperball")),
        registry.worst("opt_rotational_angle" + sfx, rows["rotational"], quantity, inputs=["eta_r (Rotational)"],
                       window=win("rot_sgdm", "rot_adamw", "rot_lion")),
        registry.worst("opt_adam_l2_angle" + sfx, rows["adam_l2"], per_unit, inputs=inputs["adam_l2"],
                       window=win("adam_l2")),
        registry.worst("opt_adam_l2_spread_predicted" + sfx, rows["adam_l2_spread"],
                       "coefficient of variation over units of the RMS angle per step, last third (live units)",
                       inputs=inputs["adam_l2"], window=win("adam_l2")),
    ]


BALANCED = ("sgdm", "adamw", "rot_sgdm", "rot_adamw", "rot_lion", "hyperball")  # the narrower claim's; + Lion


def spread_claim(opts, id, balanced, window):
    """Adam + L2 does not equalize: its per-unit angles spread at least ``SPREAD`` times more
    (coefficient of variation) than the most spread of ``balanced``, in every hidden layer. A miss
    names the most spread of them, and for Lion the spread of its units' ``R``."""
    rows = []
    for name, layer in opts["adam_l2"]["layers"].items():
        widest = max(balanced, key=lambda k: opts[k]["layers"][name]["cv"])
        rows.append((SPREAD, layer["cv"] / opts[widest]["layers"][name]["cv"], f"{name}, widest: {TITLES[widest]}"))
    h = opts["adam_l2"]["hyper"]
    c = registry.worst(id, rows, "coefficient of variation of per-unit angles, Adam + L2 over the largest of the "
                       "others', at least", inputs=[f"Adam lr {h['lr']:g}, l2 {h['l2']:.4g} (set from a pilot)",
                       f"the bound {SPREAD:g}, fixed in advance"], window=window)
    if not c["pass"]:
        c["note"] += "; measured cause: " + "; ".join(
            f"{name}: Adam + L2 cv {layer['cv']:.3g}, widest {TITLES[w]} cv {opts[w]['layers'][name]['cv']:.3g}"
            + (f" (cv of its units' R {cv(opts['lion']['layers'][name]['R_same_window']):.3g})" if w == "lion" else "")
            for name, layer in opts["adam_l2"]["layers"].items()
            for w in [max(balanced, key=lambda k: opts[k]["layers"][name]["cv"])])
    return c
