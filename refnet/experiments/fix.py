"""Experiment 6, the fix: keep every scale-invariant weight at norm 1 (``unit_norm=True``, the
paper's proposal). Then a step turns ``w`` by ``tan(angle) = lr ||g~|| / (1 - 2 lr lam)``: the
effective learning rate is ``lr/(1 - 2 lr lam) ~ lr`` and lam drops out.

Runs: the SGD grid of experiment 5 (lr x lam, L2 on the scale-invariant weights only), once
with L2 alone and once projected, both in float32 (one dtype, so that the two arms differ by
the projection only), keeping their test predictions; and one projected run in float64 with BN
eps = 0 (the largest lr and lam of the grid), where the step identity is exact. Claims:
- identity: every step of the float64 projected run obeys
  ``tan(angle) = lr ||g~|| / (1 - 2 lr lam)`` (``theory.projected_sgd_equilibrium``), largest
  relative residual over steps, units and layers; tolerance 1e-9 (rounding);
- prediction: projected, the test accuracy depends on lr alone. At each lr, every pair of lam
  values is compared on the same test images with an exact McNemar test (a two-sided binomial
  test on the discordant images, ``scipy.stats.binomtest``); the claim holds when every
  Bonferroni-adjusted p-value is at least 0.05. The row's measured number is ``-log10`` of the
  smallest adjusted p-value, held to ``-log10(0.05)``.
Observations: the same test on the L2 arm; a control, the middle projected run again with
another batch order (McNemar sees two fixed models, not the run-to-run noise of training: the
control measures how much of a difference that noise alone makes); the best accuracy of each
grid.
"""

import itertools

import numpy as np
from scipy.stats import binomtest

from refnet.experiments import config, one_knob, registry
from refnet.experiments.claims import observation
from refnet.experiments.measure import final_accuracy, hyper, layers
from refnet.experiments.runner import Runner

NAME, FIGURE = "fix", "fig6_fix.png"


def projected(cfg, **model_over):
    """The SGD grid of experiment 5 (float32, with its test logits), projected."""
    return [(h, {**spec, "optim": {**spec["optim"], "unit_norm": True}})
            for h, spec in one_knob.grid(cfg, "sgd", **model_over)]


def identity_run(cfg):
    """One projected run in float64 with BN eps = 0 (largest lr and lam), for the step identity:
    in float32 a unit's angle of 1e-6 rad is rounding noise."""
    h, spec = max(projected(cfg, dtype="float64", eps=0.0), key=lambda p: (p[0]["lr"], p[0]["lam"]))
    return h, dict(spec, steps=max(10, spec["steps"] // 4), keep_logits=False)


def control_run(cfg):
    """The middle projected run of the grid, with another batch order (same init, same hyperparameters)."""
    runs = projected(cfg)
    i = len(runs) // 2
    return i, dict(runs[i][1], seed=runs[i][1]["seed"] + 1)


def specs(cfg):
    return ([s for _, s in projected(cfg)] + [s for _, s in one_knob.grid(cfg, "sgd")]
            + [identity_run(cfg)[1], control_run(cfg)[1]])


def _table(pairs, results):
    return [{**h, "accuracy": final_accuracy(m), "angle": {n: float(np.median(a[f"{n}/win/angle"])) for n in layers(m)}}
            for (h, _), (a, m) in zip(pairs, results)]


def mcnemar(correct_a, correct_b):
    """Exact two-sided McNemar p-value: a binomial test on the images exactly one run gets right."""
    b = int(np.sum(correct_a & ~correct_b))
    c = int(np.sum(~correct_a & correct_b))
    return 1.0 if b + c == 0 else float(binomtest(b, b + c, 0.5).pvalue), b, c


def paired(pairs, results):
    """Per lr, every pair of lam values compared on the same test images: a list of
    ``(lr, lam_a, lam_b, accuracy difference, p, Bonferroni-adjusted p)``."""
    correct = [a["test_logits"].argmax(1) == a["test_labels"] for a, _ in results]
    rows = []
    for lr in sorted({h["lr"] for h, _ in pairs}):
        idx = [i for i, (h, _) in enumerate(pairs) if h["lr"] == lr]
        for i, j in itertools.combinations(idx, 2):
            p, _, _ = mcnemar(correct[i], correct[j])
            rows.append((lr, pairs[i][0]["lam"], pairs[j][0]["lam"],
                         float(correct[i].mean() - correct[j].mean()), p))
    n = max(1, len(rows))
    return [(*r, min(1.0, r[-1] * n)) for r in rows]


def analyze(cfg, results):
    proj_pairs, l2_pairs = projected(cfg), one_knob.grid(cfg, "sgd")
    n = len(proj_pairs)
    proj_res, l2_res, (id_arrays, id_meta), ctrl = results[:n], results[n:2 * n], results[2 * n], results[2 * n + 1]
    i_ctrl = control_run(cfg)[0]
    correct = [a["test_logits"].argmax(1) == a["test_labels"] for a in (proj_res[i_ctrl][0], ctrl[0])]
    ctrl_p = mcnemar(*correct)[0]
    ctrl_diff = float(correct[0].mean() - correct[1].mean())
    h_ctrl = proj_pairs[i_ctrl][0]
    proj, l2 = _table(proj_pairs, proj_res), _table(l2_pairs, l2_res)
    n_test = proj_res[0][1]["n_test"]
    h_id, spec_id = identity_run(cfg)
    resid = [(0.0, float(id_arrays[f"{name}/resid/angle"]), f"{name}, lr {h_id['lr']:g}, lam {h_id['lam']:g}")
             for name in layers(id_meta)]
    tests = {"projected": paired(proj_pairs, proj_res), "l2": paired(l2_pairs, l2_res)}
    worst = min(tests["projected"], key=lambda r: r[-1])
    c = cfg[one_knob.NAME]
    control = (f"Control: the projected run at lr {h_ctrl['lr']:g}, lam {h_ctrl['lam']:g} and the same run with another "
               f"batch order differ by {ctrl_diff:+.4f} in accuracy (McNemar p {ctrl_p:.3g})")
    note = "" if worst[5] >= registry.ALPHA else (
        registry.entry("projected_accuracy_lr_alone").note + f". {control}: McNemar compares two fixed models "
        "on the test images and does not include training noise, so a failure here may be that noise, not lam")
    data = {"name": NAME, "figure": FIGURE, "projected": proj, "l2": l2, "n_test": n_test,
            "dtype": proj_pairs[0][1]["model"]["dtype"], "alpha": registry.ALPHA,
            "mcnemar": {k: [list(r) for r in v] for k, v in tests.items()}, "claims": [
                registry.worst("projected_step", resid, "max relative residual over steps and units"),
                registry.row("projected_accuracy_lr_alone",
                             f"-log10 of the smallest Bonferroni-adjusted McNemar p over {len(tests['projected'])} "
                             f"pairs [lr {worst[0]:g}, lam {worst[1]:g} vs {worst[2]:g}: accuracy difference "
                             f"{worst[3]:+.4f}, adjusted p {worst[5]:.3g}]", 0.0, -np.log10(max(worst[5], 1e-300)),
                             error_kind="absolute",
                             inputs=[hyper(lr=worst[0]) + f"; lam values {c['sgd_lam']} (predicted: no effect)"],
                             window=f"the final predictions of the projected runs on {n_test} test images",
                             note=note)]}
    l2_worst = min(tests["l2"], key=lambda r: r[-1])
    data["observations"] = [
        observation("SGD + L2 (no projection): does the test accuracy at fixed lr depend on lam?", FIGURE,
                    "smallest Bonferroni-adjusted McNemar p over the lam pairs at each lr", l2_worst[5],
                    f"lr {l2_worst[0]:g}, lam {l2_worst[1]:g} vs {l2_worst[2]:g}: accuracy difference "
                    f"{l2_worst[3]:+.4f}"),
        observation("control: a projected run against itself with another batch order", FIGURE,
                    "McNemar p (unadjusted)", ctrl_p, control),
        observation("best test accuracy, projected grid", FIGURE, "accuracy", max(r["accuracy"] for r in proj)),
        observation("best test accuracy, L2 grid", FIGURE, "accuracy", max(r["accuracy"] for r in l2))]
    return data


def run(cfg=None, runner=None):
    """Experiment 6's data (see the module docstring)."""
    cfg = cfg or config.make_config()
    return analyze(cfg, (runner or Runner()).map(specs(cfg), desc=NAME))
