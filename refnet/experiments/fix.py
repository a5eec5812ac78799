"""Experiment 6, the fix: keep every scale-invariant weight at norm 1 (``unit_norm=True``, the
paper's proposal). Then a step turns ``w`` by ``tan(angle) = lr ||g~|| / (1 - 2 lr lam)``: the
effective learning rate is ``lr/(1 - 2 lr lam) ~ lr`` and lam drops out.

Runs: the SGD grid of experiment 5 (lr x lam, L2 on the scale-invariant weights only), once
with L2 alone and once projected. Claims:
- every projected step obeys ``tan(angle) = lr ||g~|| / (1 - 2 lr lam)``
  (``theory.projected_sgd_equilibrium``): largest relative residual over steps, units, layers
  and runs; tolerance 1e-9 (exact: the projected runs are float64 with BN eps = 0);
- projected, the test accuracy depends on lr alone: at each lr, the accuracies across lam lie
  within ``3 sqrt(2 p (1-p) / n_test)`` of each other (three standard errors of the difference
  of two test accuracies: the runs differ by a factor ``1/(1 - 2 lr lam)`` on lr and by the
  chaos of training, no more); worst lr.
Observations: the same spread for the L2 runs, and the best accuracy of each grid.
"""

import numpy as np

from refnet.experiments import config, one_knob
from refnet.experiments.claims import claim, observation, worst
from refnet.experiments.measure import final_accuracy, layers
from refnet.experiments.runner import Runner

NAME, FIGURE = "fix", "fig6_fix.png"
TOL_STEP = 1e-9


def projected(cfg):
    """The SGD grid of experiment 5, projected; float64 with BN eps = 0, where the step identity
    is exact (in float32 a unit's angle of 1e-6 rad is rounding noise)."""
    out = []
    for hyper, spec in one_knob.grid(cfg, "sgd", dtype="float64", eps=0.0):
        out.append((hyper, {**spec, "optim": {**spec["optim"], "unit_norm": True}}))
    return out


def specs(cfg):
    return [s for _, s in projected(cfg)] + [s for _, s in one_knob.grid(cfg, "sgd")]


def _table(pairs, results):
    return [{**h, "accuracy": final_accuracy(m), "angle": {n: float(np.median(a[f"{n}/win/angle"])) for n in layers(m)}}
            for (h, _), (a, m) in zip(pairs, results)]


def _spread(runs):
    """Per lr: (max - min) accuracy across lam, and the runs' mean accuracy."""
    out = {}
    for lr in sorted({r["lr"] for r in runs}):
        acc = [r["accuracy"] for r in runs if r["lr"] == lr]
        out[lr] = (float(np.ptp(acc)), float(np.mean(acc)))
    return out


def analyze(cfg, results):
    proj_pairs = projected(cfg)
    n = len(proj_pairs)
    proj, l2 = _table(proj_pairs, results[:n]), _table(one_knob.grid(cfg, "sgd"), results[n:])
    n_test = results[0][1]["n_test"]
    resid = [(0.0, float(a[f"{name}/resid/angle"]), f"{name}, lr {h['lr']:g}, lam {h['lam']:g}")
             for (h, _), (a, m) in zip(proj_pairs, results[:n]) for name in layers(m)]
    rows = []
    for lr, (spread, p) in _spread(proj).items():
        tol = 3 * np.sqrt(2 * p * (1 - p) / n_test)
        rows.append(claim("Projected SGD: test accuracy depends on lr alone, lam drops out", FIGURE,
                          f"(max - min) accuracy across lam at lr {lr:g}", 0.0, spread, tol,
                          "theory.projected_sgd_equilibrium", "absolute"))
    acc_claim = max(rows, key=lambda r: r["rel_error"] - r["tolerance"])
    data = {"name": NAME, "figure": FIGURE, "projected": proj, "l2": l2, "n_test": n_test, "claims": [
        worst(resid, "Projected SGD: each step turns w by tan(angle) = lr ||g~||/(1 - 2 lr lam)", FIGURE,
              "max relative residual over steps and units", TOL_STEP, "theory.projected_sgd_equilibrium"),
        acc_claim]}
    data["observations"] = [
        observation("SGD + L2 (no projection): test accuracy at fixed lr depends on lam", FIGURE,
                    "max over lr of (max - min) accuracy across lam", max(s for s, _ in _spread(l2).values())),
        observation("best test accuracy, projected grid", FIGURE, "accuracy", max(r["accuracy"] for r in proj)),
        observation("best test accuracy, L2 grid", FIGURE, "accuracy", max(r["accuracy"] for r in l2))]
    return data


def run(cfg=None, runner=None):
    """Experiment 6's data (see the module docstring)."""
    cfg = cfg or config.make_config()
    return analyze(cfg, (runner or Runner()).map(specs(cfg), desc=NAME))
