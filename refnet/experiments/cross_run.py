"""Prediction: L2 only sets the scale. SGD + L2 runs that share ``lr*lam`` (and the initial
weights and batch order) reach the same steady effective lr ``lr/||w||^2`` and angle per step,
and their steady ``||w||^2`` differ by ``sqrt(lr/lam)`` (``||w||^4 = lr G2 / (4 lam (1 - lr lam))``
with the same G2: ``theory.sgd_l2_equilibrium``), predicted from the hyperparameters alone.

Runs: plain SGD + L2 at ``pairs`` of ``(lr, lam)`` with one product, on the fully invariant BN MLP
(no gamma/beta, frozen head: every trained weight scale-invariant) and on the ordinary one
(trained gamma, beta and head; L2 on the scale-invariant weights only, so the head and BN
parameters train at lr 2x-4x apart without a regularizer). Each run is compared with the first
pair's run, unit by unit (the same initial unit in both), over the last third of the run (after
more than 5 relaxation times ``1/(8 lr lam)``): median over units of the ratio, worst layer and
run.

Tolerances (kind "prediction"; inputs: the hyperparameters): 1.5x the run-to-run noise of the
same ratio, calibrated on the quick preset: the runs above at batch orders 1, 2, 3 (never the
judged order 0), same initial weights and hyperparameters, ratio between batch orders, median
over units; largest of 12 (2 pairs x 3 runs x 2 layers) per net in NOISE. The ordinary net, where
the head and BN parameters train at each run's lr, has its own (larger) measured noise.
A failure keeps its note: the angle ratio implied by each unit's measured drift of ln ||w||^2 over
the window (cos = 1 - 2 lr lam holds only where E||w||^2 is steady).
CPU-seconds per preset: the table in ``refnet.experiments.config``.
"""

import numpy as np

from refnet.experiments import config, registry
from refnet.experiments.claims import observation
from refnet.experiments.measure import label, layers, window
from refnet.experiments.runner import Runner

NAME, FIGURE = "cross_run", "fig11_cross_run.png"
# largest |ratio - 1| between batch orders 1-3 at equal hyperparameters (quick preset, 2026-12-07)
NOISE = {"invariant": {"norm2": 0.036, "efflr": 0.033, "angle": 0.009},
         "ordinary": {"norm2": 0.063, "efflr": 0.055, "angle": 0.022}}
TOLS = {net: {k: round(1.5 * v, 4) for k, v in n.items()} for net, n in NOISE.items()}
CALIBRATION = ("1.5x the largest run-to-run noise of the same ratio (batch orders 1-3, same init and "
               "hyperparameters, quick preset): invariant net ||w||^2 3.6%, eff. lr 3.3%, angle 0.9%; "
               "ordinary net 6.3%, 5.5%, 2.2%")
NETS = {"invariant": {"affine": False, "train_head": False}, "ordinary": {}}
WINDOW = 1 / 3
TEXTS = {"norm2": ("||w||^2 ratio to the first run = sqrt((lr/lam)/(lr0/lam0))",
                   "median over units of ||w||^2 / ||w||^2 of the first run, last third"),
         "efflr": ("steady lr/||w||^2 is the same", "median over units of lr/||w||^2 over that of the first run"),
         "angle": ("steady angle per step is the same", "median over units of RMS angle over that of the first run")}
EFFLR_NOTE = ("not counted as a prediction: lr/||w||^2 over the first run's is the ||w||^2 ratio "
              "divided by the known lr ratio, so it restates the norm prediction beside it")
SYMMETRY_NOTE = ("not counted as a prediction: on the fully invariant net the run (lr', lam') from w0 is the "
                 "symmetry map (identity symmetry_sgd) of the run (lr, lam) from w0/c, c^2 = lr'/lr, so this is "
                 "that identity plus the equilibrium forgetting its initial scale (experiment 12)")
ORDINARY_NOTE = ("ordinary net: gamma, beta and head train at each run's lr, unregularized, so G2 may differ "
                 "between runs")
registry.register(*(
    registry.Entry(f"cross_run_{key}_{net}", f"SGD + L2, {net} net, runs sharing lr*lam: {what}",
                   "prediction" if (net, key) == ("ordinary", "norm2") else "consistency",
                   f"every hidden layer of the {net} BN MLP, each pair's run against the first pair's, unit by unit, "
                   "last third", TOLS[net][key], CALIBRATION, "theory.sgd_l2_equilibrium", FIGURE,
                   "; ".join(n for n in ("" if net == "invariant" else ORDINARY_NOTE,
                                         EFFLR_NOTE if key == "efflr" else "",
                                         registry.STATIONARY if key == "angle" else "",
                                         SYMMETRY_NOTE if (net, key) == ("invariant", "norm2") else "") if n))
    for net in NETS for key, (what, _) in TEXTS.items()))


def runs(cfg, seed=None):
    c = cfg[NAME]
    seed = cfg["seed"] if seed is None else seed
    out = []
    for net, over in NETS.items():
        for lr, lam in c["pairs"]:
            m = config.model(cfg, width=c["width"], seed=seed, **over)
            spec = config.train(cfg, m, config.sgd(lr, lam, l2_scope="invariant"), c["steps"], window=WINDOW,
                                seed=seed, record_drift=True)
            out.append(({"net": net, "lr": lr, "lam": lam}, spec))
    return out


def specs(cfg):
    return [s for _, s in runs(cfg)]


def _ratio(a, b, key, name):
    x, y = a[f"{name}/win/{key}"], b[f"{name}/win/{key}"]
    return float(np.median((x * x) / (y * y) if key == "norm" else x / y))


def _drift_factor(arrays, name, h):
    """Per unit, the angle over its steady value that the unit's drift in the window implies: exactly
    ``q^2 tan^2 = x_{t+1}/x_t - q^2`` each step (identity 4 with tan = lr ||g~|| / (q x)), so a mean
    ``delta = E ln(x_{t+1}/x_t)`` gives ``sqrt(1 + delta/(1 - q^2))`` to first order."""
    q2 = (1 - 2 * h["lr"] * h["lam"]) ** 2
    return np.sqrt(np.maximum(0.0, 1 + arrays[f"{name}/win/dlogx"] / (1 - q2)))


def compare(cfg, results):
    """Per net, layer and run: the measured ratios to the first pair's run and their predictions."""
    out = {}
    for (h, _), (arrays, meta) in zip(runs(cfg), results):
        out.setdefault(h["net"], []).append((h, arrays, meta))
    table = {}
    for net, rs in out.items():
        (h0, a0, m0), rows = rs[0], []
        for h, a, m in rs[1:]:
            for i, name in enumerate(layers(m)):
                rows.append({"lr": h["lr"], "lam": h["lam"], "layer": label(i, name),
                             "drift_angle": float(np.median(_drift_factor(a, name, h) / _drift_factor(a0, name, h0))),
                             "norm2": (np.sqrt((h["lr"] / h["lam"]) / (h0["lr"] / h0["lam"])),
                                       _ratio(a, a0, "norm", name)),
                             "efflr": (1.0, _ratio(a, a0, "efflr", name)),
                             "angle": (1.0, _ratio(a, a0, "angle", name))})
        table[net] = rows
    return table


def analyze(cfg, results):
    c = cfg[NAME]
    (lr0, lam0) = c["pairs"][0]
    data = {"name": NAME, "figure": FIGURE, "pairs": c["pairs"], "traces": {}, "ratios": compare(cfg, results),
            "tol": {net: {k: registry.entry(f"{NAME}_{k}_{net}").tolerance for k in TEXTS} for net in NETS},
            "claims": [], "observations": []}
    for (h, _), (arrays, meta) in zip(runs(cfg), results):
        name = layers(meta)[-1]
        data["traces"].setdefault(h["net"], []).append(
            {"lr": h["lr"], "lam": h["lam"], "layer": name, "step": arrays["trace/step"].tolist(),
             "efflr": arrays[f"{name}/trace/efflr"][:, 1].tolist(), "angle": arrays[f"{name}/trace/angle"][:, 1].tolist(),
             "accuracy": float(meta["final"]["test_accuracy"])})
    inputs = [f"hyperparameters (lr, lam) = {p}" for p in c["pairs"]]
    specs_of = {}
    for h, spec in runs(cfg):
        specs_of.setdefault(h["net"], spec)
    for net, rows in data["ratios"].items():
        for key, (what, quantity) in TEXTS.items():
            row = registry.worst(
                f"cross_run_{key}_{net}", [(*r[key], f"{r['layer']}, lr {r['lr']:g}, lam {r['lam']:g}") for r in rows],
                f"{quantity} (lr*lam = {lr0 * lam0:g})", inputs=inputs,
                window=window(f"{NAME} {net} net, each pair", specs_of[net]))
            if key == "angle" and not row["pass"]:
                drift = ", ".join(f"{r['layer'].split(' (')[0]} lr {r['lr']:g}: {r['drift_angle']:.4f}" for r in rows)
                row["note"] = (row["note"] + "; " if row["note"] else "") + (
                    "measured cause: the window is not steady: each unit's mean drift of ln ||w||^2 in it implies "
                    f"(median over units) angle ratios {drift}; cos = 1 - 2 lr lam assumes a steady E||w||^2")
            data["claims"].append(row)
        accs = [t["accuracy"] for t in data["traces"][net]]
        data["observations"].append(observation(
            f"SGD + L2, {net} net, runs sharing lr*lam: test accuracy spread", FIGURE,
            "max - min test accuracy over the runs", max(accs) - min(accs)))
    return data


def run(cfg=None, runner=None):
    """The data of this prediction (see the module docstring)."""
    cfg = cfg or config.make_config()
    return analyze(cfg, (runner or Runner()).map(specs(cfg), desc=NAME))
