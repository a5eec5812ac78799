"""Every claim `refnet reproduce` judges, fixed here before any run: its id, text, kind, domain
(the layers and runs it is judged over), tolerance and where that tolerance comes from.

An experiment makes its rows with ``row(id, ...)`` / ``worst(id, ...)``: the text, kind,
tolerance, theory function and figure come from the entry, never from the run, so no
measurement can change what a claim says or how strictly it is held. What a run supplies is
the measured number, the predicted number, the inputs the prediction used and the window the
measurement comes from. A new experiment module adds its entries with ``register(Entry(...))``
at import time (ids are unique; registering an id twice with different content is an error).

Kinds (``refnet.experiments.claims``): ``identity`` exact and code-level, ``consistency`` the
prediction uses the window it judges (not counted as reproduction), ``prediction`` computed
from hyperparameters, at most from another run or an earlier, disjoint window.

Tolerance sources, in the words used below:
- "rounding": an exact identity in float64 (BN eps = 0), a few hundred operations deep at about
  1e-16 each, held to 1e-9;
- "quasi-static law, fixed in advance": the steady-state laws on real data, where G2 drifts;
  THEORY.md measured them within 1% on single runs, and 5% (10% for the small-lr*lam Adam + L2
  form) was set before the runs, then checked against a calibration over seeds (below);
- "significance level": a paired exact test over the same test images, at a level fixed here.

``CALIBRATION`` records, per claim, the errors measured over seeds 0, 1 and 2 of the quick
preset (``refnet reproduce --quick --seed S``, 2026-12-07): the tolerances were checked against
them, not computed from the run they judge, and each row's ``tolerance_source`` quotes them.
Across seeds the relative errors move by one or two points (the angle laws' misses are
systematic); the McNemar claim fails on one seed of three (training noise, see experiment 6).
"""

import math
from dataclasses import dataclass

from refnet.experiments import claims

ROUNDING = "rounding: exact identity in float64 with BN eps = 0; about 1e-16 per operation, a few hundred deep"
QUASI_STATIC = ("quasi-static law, fixed in advance: THEORY.md measured these laws within 1% on single runs; "
                "5% allows G2's drift on real data")
QUASI_STATIC_ADAM = ("quasi-static law, fixed in advance: 10% for the small-lr*lam form of Adam + L2 and its "
                     "white-in-time gradient assumption")
ALPHA = 0.05

# id -> errors over quick seeds 0, 1, 2 (relative, or -log10 p for the McNemar claim)
CALIBRATION = {
    "sgd_l2_angle": (0.0079, 0.0173, 0.0029), "sgd_l2_angle_grid": (0.0269, 0.0206, 0.0168),
    "adamw_angle_every_layer": (0.069, 0.0596, 0.0641), "adamw_angle_normalized_layers": (0.0218, 0.023, 0.0198),
    "balance_adamw": (0.0035, 0.0034, 0.0004), "projected_accuracy_lr_alone": (2.309, 0.264, 0.0),
    "sgd_l2_norm_equilibrium": (0.0249, 0.0515, 0.0183), "sgd_no_l2_growth_norm": (0.0005, 0.0005, 0.0006),
    "adam_l2_angle_ordinary": (0.137, 0.122, 0.142), "adam_l2_angle_invariant": (0.0568, 0.0533, 0.0594),
    "balance_adam": (0.0285, 0.0449, 0.0264), "no_l2_growth_efflr": (0.0034, 0.0034, 0.0042),
    "no_l2_asymptote": (0.0252, 0.0243, 0.0255), "no_l2_l2_equilibrium_efflr": (0.0211, 0.0157, 0.0205),
}


def _calibrated(id, source):
    errs = CALIBRATION.get(id)
    if errs is None:
        return source
    return source + "; errors over quick seeds 0-2: " + ", ".join(f"{e:.3g}" for e in errs)


@dataclass(frozen=True)
class Entry:
    id: str
    text: str
    kind: str
    domain: str
    tolerance: float
    tolerance_source: str
    theory: str
    figure: str
    note: str = ""  # why the claim is of its kind, when that is not obvious
    error_kind: str = None  # claims.ERROR_KINDS; None: relative (absolute when the prediction is 0)


REGISTRY = {}


def register(*entries):
    """Add entries to the registry (at import time of the module that judges them)."""
    for e in entries:
        if e.kind not in claims.KINDS:
            raise ValueError(f"register: entry {e.id!r} has kind {e.kind!r}, expected one of {claims.KINDS}")
        if not (e.tolerance >= 0 and math.isfinite(e.tolerance)):
            raise ValueError(f"register: entry {e.id!r} has tolerance {e.tolerance!r}, expected a finite number >= 0")
        if e.error_kind not in (None,) + claims.ERROR_KINDS:
            raise ValueError(f"register: entry {e.id!r} has error_kind {e.error_kind!r}, expected one of "
                             f"{claims.ERROR_KINDS}")
        if e.id in CALIBRATION and "quick seeds" not in e.tolerance_source:
            e = Entry(**{**e.__dict__, "tolerance_source": _calibrated(e.id, e.tolerance_source)})
        if e.id in REGISTRY and REGISTRY[e.id] != e:
            raise ValueError(f"register: id {e.id!r} is already registered with other content")
        REGISTRY[e.id] = e


def entry(id):
    if id not in REGISTRY:
        raise KeyError(f"claim id {id!r} is not in the registry (refnet/experiments/registry.py)")
    return REGISTRY[id]


def _tagged(r, e):
    r["id"], r["domain"] = e.id, e.domain
    return r


def row(id, quantity, predicted, measured, *, inputs=None, window="", note="", error_kind=None):
    """The claim row of registry entry ``id`` for one comparison (``claims.claim``)."""
    e = entry(id)
    return _tagged(claims.claim(e.text, e.figure, quantity, predicted, measured, e.tolerance, e.theory,
                                error_kind or e.error_kind, kind=e.kind, inputs=inputs, note=note or e.note,
                                tolerance_source=e.tolerance_source, window=window), e)


def worst(id, rows, quantity, *, inputs=None, window="", note=""):
    """The claim row of entry ``id`` over many ``(predicted, measured, label)`` (``claims.worst``)."""
    e = entry(id)
    return _tagged(claims.worst(rows, e.text, e.figure, quantity, e.tolerance, e.theory, e.error_kind, kind=e.kind,
                                inputs=inputs, note=note or e.note, tolerance_source=e.tolerance_source,
                                window=window), e)


def lookup(r):
    """The registry entry of a report row: by its ``id``, else by its text (None if neither)."""
    if r.get("id") in REGISTRY:
        return REGISTRY[r["id"]]
    return next((e for e in REGISTRY.values() if e.text == r.get("claim")), None)


def tag(r):
    """Give a row made with ``claims.claim`` directly the id and domain of the entry whose text it
    carries (``refnet reproduce`` does this for every row); a row that matches no entry keeps none,
    and the registry test then names it."""
    e = None if "id" in r else lookup(r)
    return _tagged(r, e) if e is not None else r


F1, F2, F3, F4 = "fig1_invariance.png", "fig2_effective_lr.png", "fig3_norm_dynamics.png", "fig4_lr_dynamics.png"
F5, F6, F7, F8 = "fig5_one_knob.png", "fig6_fix.png", "fig7_balance.png", "fig8_no_l2.png"
HYPER_ONLY = "predicted from the hyperparameters alone; nothing measured goes into it"

register(
    # --- identities: exact, code-level ----------------------------------------------------------
    *(Entry(f"invariance_{n}", f"{n.upper()}: loss, outputs and gradients invariant to rescaling ({g})", "identity",
            f"a briefly trained {n.upper()} MLP, float64, eps = 0, one batch; every scale in the preset",
            1e-9, ROUNDING, "theory.identities (identities 1-2)", F1)
      for n, g in (("bn", "per unit"), ("ln", "per tensor"), ("wn", "per unit"))),
    Entry("one_step_sgd", "SGD: one-step angle after w -> c w scales as c^-2", "identity",
          "every hidden layer of a trained BN MLP, float64, BN eps = 0, fresh optimizer state", 1e-9, ROUNDING,
          "theory.one_step_angle_scaling", F2),
    Entry("one_step_adam", "ADAM: one-step angle after w -> c w scales as c^-1", "consistency",
          "every hidden layer of a trained BN MLP, float64, BN eps = 0, fresh optimizer state (lr 1e-4)", 1e-2,
          "bound, fixed in advance: eps and the step's radial part shift the angle by a relative amount of the "
          "order of the angle itself (< 1e-2 at lr 1e-4)", "theory.one_step_angle_scaling", F2,
          "Adam's first step from a fresh state is lr g/(|g| + eps): scale-free by construction, a property "
          "of one step, not of Adam's dynamics over training; held to a bound (eps and the radial part), not "
          "to rounding, so not an identity (a failed identity means a bug and exit 1)"),
    Entry("norm_recursion", "SGD: every step obeys the norm recursion (identity 4)", "identity",
          "every step and unit of the L2 and no-L2 runs of experiment 3 (float64, BN eps = 0)", 1e-9, ROUNDING,
          "theory.sgd_norm_recursion", F3),
    Entry("symmetry_sgd", "SGD + L2, fully invariant network: runs (c^2 lr, lam/c^2, c w0) give the same predictions",
          "identity", "fully invariant MLP, float64, BN eps = 0; every c of the preset", 1e-9, ROUNDING,
          "theory.symmetry_map('sgd')", F5),
    Entry("symmetry_adam", "Adam + L2, fully invariant network: runs (c lr, lam/c^2, c w0, eps/c) give the same "
          "predictions", "identity", "fully invariant MLP, float64, BN eps = 0; every c of the preset", 1e-9,
          ROUNDING, "theory.symmetry_map('adam')", F5),
    Entry("projected_step", "Projected SGD: each step turns w by tan(angle) = lr ||g~||/(1 - 2 lr lam)", "identity",
          "every step, unit and layer of the projected float64 identity run(s) of experiment 6", 1e-9, ROUNDING,
          "theory.projected_sgd_equilibrium", F6),
    # --- consistency: the prediction uses the window it judges -----------------------------------
    Entry("sgd_l2_norm_equilibrium", "SGD + L2: ||w||^4 settles at lr G2/(4 lam (1-lr lam))", "consistency",
          "every hidden layer of the L2 run of experiment 3, second half", 0.05, QUASI_STATIC,
          "theory.sgd_l2_equilibrium", F3,
          "G2 is the same window's mean of ||g||^2 ||w||^2, so it contains the measured norm; with the exact "
          "recursion this holds once the norm is stationary"),
    Entry("sgd_no_l2_growth_norm", "SGD, no L2: ||w||^4 grows as ||w0||^4 + 2 lr^2 G2 t", "consistency",
          "every hidden layer of the no-L2 run of experiment 3, final norm", 0.05, QUASI_STATIC,
          "theory.sgd_growth", F3,
          "G2 is the same run's mean: identity 4 summed over the run, not a prediction"),
    Entry("sgd_momentum_norm_same_window", "SGD + momentum + L2: ||w||^4 law with the measured gradient correlations",
          "consistency", "every hidden layer of the momentum run of experiment 4, second half", 0.05, QUASI_STATIC,
          "theory.sgd_momentum_l2_equilibrium(autocorr=...)", F4,
          "the correlation factor S and G2 come from the window the law is judged on"),
    Entry("adam_l2_angle_ordinary", "Adam + L2, ordinary network (trained gamma, beta, head): every layer's steady "
          "angle = the closed form in lr^2*lam, d and G2", "consistency",
          "every hidden layer of every run of the Adam + L2 grid, ordinary BN MLP, second half", 0.10,
          QUASI_STATIC_ADAM, "theory.adam_l2_equilibrium", F5,
          "uses the window's G2. The law takes G2 as steady; with trained gammas the first layer's gamma and G2 "
          "collapse over the window (gamma feedback), and layer 1 is fed by raw pixels of uneven scale; layer 2 "
          "misses too (default 0.83x with its G2 moving 3x over the window; quick 0.86x with G2 moving 1.24x: "
          "there the cause is not measured). This original, wider claim fails; the narrower claim on the fully "
          "invariant network stands beside it"),
    Entry("adam_l2_angle_invariant", "Adam + L2, fully invariant network: steady angle of the layers fed by normalized "
          "units = the closed form in lr^2*lam, d and G2", "consistency",
          "layers 2.. of every run of the Adam + L2 grid on the fully invariant MLP, second half", 0.10,
          QUASI_STATIC_ADAM, "theory.adam_l2_equilibrium", F5,
          "uses the window's G2; narrowed (beside the wider claim on the ordinary network) to where the law's "
          "assumptions hold: no gamma feedback, evenly fed coordinates"),
    Entry("balance_adam", "Adam + L2: unbalanced steady angles across layers, ratio (d2/d3)^(1/3) (G2_3/G2_2)^(1/6)",
          "consistency", "layers 2 and 3 (d = 4w and w) of the fully invariant [4w, w, w] MLP, middle of the grid",
          0.10, QUASI_STATIC_ADAM, "theory.steady_angle", F7, "uses each layer's G2 from the window it judges"),
    Entry("no_l2_growth_efflr", "SGD, no L2: lr/||w||^2 follows the growth law from each initial scale", "consistency",
          "every hidden layer, every initial scale of experiment 8 without L2, final step", 0.05, QUASI_STATIC,
          "theory.sgd_growth", F8, "G2 is the same run's mean: the growth law integrates the measured G2"),
    Entry("no_l2_asymptote", "SGD, no L2: lr/||w||^2 -> 1/sqrt(2 G2 t) (small initial scale)", "consistency",
          "every hidden layer, smallest initial scale of experiment 8 without L2, final step", 0.05, QUASI_STATIC,
          "theory.sgd_growth(...).effective_lr_asymptotic", F8,
          "G2 is the same run's mean; one lr and one initial scale are run, so this does not show independence "
          "from lr"),
    Entry("no_l2_l2_equilibrium_efflr", "SGD + L2: lr/||w||^2 settles at the equilibrium from every initial scale",
          "consistency", "every hidden layer, every initial scale of experiment 8 with L2, second half", 0.05,
          QUASI_STATIC, "theory.sgd_l2_equilibrium", F8, "G2 is the same window's mean, as in experiment 3"),
    # --- predictions: from hyperparameters (at most another run or an earlier window) -----------
    Entry("sgd_l2_angle", "SGD + L2 (on every weight, float64): steady angle per step = arccos(1 - 2 lr lam)",
          "prediction", "every hidden layer of the L2 run of experiment 3, second half", 0.05, QUASI_STATIC,
          "theory.sgd_l2_equilibrium", F4, HYPER_ONLY),
    Entry("sgd_momentum_angle", "SGD + momentum + L2: steady angle = arccos(1 - 2 lr lam/(1+mu))", "prediction",
          "every hidden layer of the momentum run of experiment 4, second half", 0.05, QUASI_STATIC,
          "theory.sgd_momentum_l2_equilibrium", F4, HYPER_ONLY),
    Entry("sgd_l2_angle_grid", "SGD + L2: every layer's steady angle = arccos(1 - 2 lr lam), a function of lr*lam",
          "prediction", "every hidden layer of every run of the SGD grid (ordinary BN MLP), second half", 0.05,
          QUASI_STATIC, "theory.sgd_l2_equilibrium", F5, HYPER_ONLY),
    Entry("adamw_angle_every_layer", "AdamW: every layer's steady angle = the closed form in lr*wd and the betas",
          "prediction", "every hidden layer of every run of the AdamW grid (ordinary BN MLP), second half", 0.05,
          QUASI_STATIC, "theory.adamw_equilibrium", F5,
          "predicted from lr, wd and the betas (independent of d and G2). Layer 1 is fed by raw pixels of uneven "
          "scale (std from 0.09% to 100% of the largest), which the law's evenly-fed-coordinates assumption "
          "ignores: where this fails it fails there; the narrower claim on layers 2.. stands beside it"),
    Entry("adamw_angle_normalized_layers", "AdamW: steady angle of the layers fed by normalized units = the closed "
          "form, a function of lr*wd", "prediction",
          "layers 2.. of every run of the AdamW grid (ordinary BN MLP), second half", 0.05, QUASI_STATIC,
          "theory.adamw_equilibrium", F5, "predicted from lr, wd and the betas; narrowed beside the every-layer claim"),
    Entry("balance_adamw", "AdamW: balanced steady angles across layers of different size", "prediction",
          "layers 2 and 3 (d = 4w and w) of the fully invariant [4w, w, w] MLP, middle of the grid", 0.05,
          QUASI_STATIC, "theory.steady_angle", F7,
          "the AdamW angle does not depend on d or G2: the ratio 1 is predicted from nothing measured"),
)
