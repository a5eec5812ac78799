"""Prediction: Adam removes only part of the scale. Without L2, Adam's step has a size that does
not depend on the gradient's scale (``m_hat/sqrt(v_hat)``), so a scale-invariant weight's
``||w||^2`` grows linearly, ``||w_t||^2 = ||w_0||^2 + lr^2 E||u||^2 t`` with ``E||u||^2 = F d``
(momentum's radial part included; ``F = theory.adam_v_noise_factor(betas)``), and the angle per
step falls as ``1/||w||`` (``sqrt(k F lr^2 d)/||w_t||``, ``k = (1-b1)/(1+b1)``): the effective lr
``lr/||w||`` decays like ``1/sqrt(t)``. ``theory.adam_growth`` adds ``v``'s ``1/(1-b2)`` lag.
(The one-step probe on a fresh Adam state is sign descent and cannot show this.)

Runs: Adam (betas 0.9, 0.99), no L2, on the ordinary BN MLP (trained gamma, beta and head).
Claims (kind "prediction"), per hidden layer, worst layer:
- from the hyperparameters (lr, betas, the unit's size d) and the initial norm only: the final
  ``||w||^2``, median over units of measured / ``theory.adam_growth(T, lr, d, ||w_0||).norm^2``;
- the same law for the angle: RMS angle over the last third, median over units, against
  ``theory.adam_growth``'s angle over the same steps;
- from an earlier, disjoint window: ``E||u||^2`` measured as the growth rate of the median
  unit's ``||w||^2`` over steps ``[T/5, 2T/5]`` predicts the mean ``||w||^2`` over the last third
  (linear growth); the row lists that window in ``inputs``.
Tolerances: calibrated on the quick preset over batch orders 1-3 (same initial weights): see
CALIBRATION. CPU-seconds per preset: the table in ``refnet.experiments.config``.
"""

import numpy as np

import theory
from refnet.experiments import config, registry
from refnet.experiments.measure import label, layers
from refnet.experiments.runner import Runner

NAME, FIGURE = "adam_growth", "fig14_adam_growth.png"
# Calibration (quick preset, batch orders 1-3, same init, 2026-12-07): largest run-to-run change of
# the median unit's ||w||^2 2.0%, of the RMS angle 3.8% -> 1.5x; the window prediction uses ||w||^2.
TOL = {"norm": 0.03, "angle": 0.056, "window": 0.03}
CALIBRATION = ("1.5x the run-to-run noise over batch orders 1-3 (quick preset): ||w||^2 2.0%, angle 3.8%")
WINDOW, EARLY = 1 / 3, (0.2, 0.4)
_DOMAIN = "every hidden layer of the ordinary BN MLP (trained gamma, beta, head), Adam betas (0.9, 0.99), no L2"
registry.register(
    registry.Entry("adam_growth_norm", "Adam, no L2: ||w||^2 grows as ||w0||^2 + F lr^2 d t (with v's lag)",
                   "prediction", _DOMAIN + "; the final ||w||^2, unit by unit", TOL["norm"], CALIBRATION,
                   "theory.adam_growth", FIGURE),
    registry.Entry("adam_growth_angle", "Adam, no L2: the angle per step falls as 1/||w|| (sqrt(k F lr^2 d)/||w_t||)",
                   "prediction", _DOMAIN + "; RMS angle over the last third", TOL["angle"], CALIBRATION,
                   "theory.adam_growth", FIGURE),
    registry.Entry("adam_growth_window", "Adam, no L2: the growth rate lr^2 E||u||^2 of an earlier window predicts "
                   "the later ||w||^2", "prediction", _DOMAIN + "; the median unit, mean ||w||^2 over the last third",
                   TOL["window"], CALIBRATION, "theory.adam_growth (small form: linear growth)", FIGURE,
                   narrows="adam_growth_norm"))


def runs(cfg, seed=None):
    c = cfg[NAME]
    seed = cfg["seed"] if seed is None else seed
    m = config.model(cfg, width=c["width"], seed=seed)
    return [({"lr": c["lr"]}, config.train(cfg, m, config.adam(cfg, c["lr"]), c["steps"], window=WINDOW, seed=seed))]


def specs(cfg):
    return [s for _, s in runs(cfg)]


def analyze(cfg, results):
    c = cfg[NAME]
    lr, betas, T = c["lr"], tuple(cfg["adam_betas"]), c["steps"]
    (arrays, meta), = results
    step = arrays["trace/step"].astype(float)
    late = step >= T * (1 - WINDOW)
    early = (step >= EARLY[0] * T) & (step <= EARLY[1] * T)
    wsteps = np.arange(int(round(T * (1 - WINDOW))), T)
    data = {"name": NAME, "figure": FIGURE, "lr": lr, "betas": list(betas), "step": step.tolist(), "layers": {},
            "claims": [], "observations": []}
    rows = {"norm": [], "angle": [], "window": []}
    for i, name in enumerate(layers(meta)):
        d, n0 = meta["params"][name]["d"], arrays[f"{name}/run/norm0"]
        n0m = float(np.median(n0))
        law = theory.adam_growth(np.arange(T), lr, d, n0m, betas)
        final = np.array([theory.adam_growth([T - 1], lr, d, x, betas).norm[0] ** 2 for x in n0])
        rows["norm"].append((1.0, float(np.median(arrays[f"{name}/run/normT"] ** 2 / final)), label(i, name)))
        ang_pred = float(np.sqrt(np.mean(law.angle[wsteps] ** 2)))
        rows["angle"].append((ang_pred, float(np.median(arrays[f"{name}/win/angle"])), label(i, name)))
        x = arrays[f"{name}/trace/norm"][:, 1] ** 2
        slope, icpt = np.polyfit(step[early], x[early], 1)
        x_late_pred = float(np.mean(icpt + slope * step[late]))
        late_slope = float(np.polyfit(step[late], x[late], 1)[0])
        G2 = arrays[f"{name}/trace/G2"][:, 1]
        g2_drop = float(np.mean(G2[late]) / np.mean(G2[early]))
        rows["window"].append((x_late_pred, float(np.mean(x[late])), label(i, name)))
        data["layers"][name] = {"d": d, "x": x.tolist(), "law_x": (law.norm[step.astype(int)] ** 2).tolist(),
                                "early_fit": [float(slope), float(icpt)],
                                "angle": arrays[f"{name}/trace/angle"][:, 1].tolist(),
                                "law_angle": law.angle[step.astype(int)].tolist(),
                                "u2_early": float(slope / lr ** 2), "u2_late": late_slope / lr ** 2,
                                "G2_late_over_early": g2_drop, "u2_law": float(theory.adam_v_noise_factor(betas) * d),
                                "u2_lag_law": float(np.mean(law.slope[step[early].astype(int)]) / lr ** 2)}
    hyper = [f"Adam lr {lr:g}, betas {betas}", "each unit's size d", "each unit's initial norm ||w_0||"]
    cause = ("measured: the early window's E||u||^2 over F d is " +
             ", ".join(f"{n} {L['u2_early'] / L['u2_law']:.3f} (the law with v's lag: {L['u2_lag_law'] / L['u2_law']:.3f})"
                       for n, L in data["layers"].items()) +
             "; the lag term assumes G2 constant, while G2 (late over early window: " +
             ", ".join(f"{n} {L['G2_late_over_early']:.3g}" for n, L in data["layers"].items()) +
             ") changes as the network learns, which moves v and "
             "offsets the lag; an angle off by more than the norm means the tangential share of the step is not "
             "the white-gradient k = (1-b1)/(1+b1) (gradients correlated across steps)")
    w0 = int(round(T * (1 - WINDOW)))
    data["claims"] += [
        registry.worst("adam_growth_norm", rows["norm"], f"median over units of measured / predicted final ||w||^2 "
                       f"(lr {lr:g})", inputs=hyper, window=f"run {NAME}, step {T}", note=cause),
        registry.worst("adam_growth_angle", rows["angle"], "median over units of the RMS angle, last third",
                       inputs=hyper, window=f"run {NAME}, steps {w0}-{T}", note=cause),
        registry.worst("adam_growth_window", rows["window"], "mean ||w||^2 of the median unit over the last third",
                       inputs=[f"slope and level of the median unit's ||w||^2 over steps {EARLY[0] * T:g}-"
                               f"{EARLY[1] * T:g} (an earlier, disjoint window of this run)"],
                       window=f"run {NAME}, steps {w0}-{T}",
                       note="measured: E||u||^2 late over early " + ", ".join(
                           f"{n} {L['u2_late'] / L['u2_early']:.3f}" for n, L in data["layers"].items()) +
                       " (1 for linear growth; above 1: the step grows as G2 falls and v lags behind it)")]
    return data


def run(cfg=None, runner=None):
    """The data of this prediction (see the module docstring)."""
    cfg = cfg or config.make_config()
    return analyze(cfg, (runner or Runner()).map(specs(cfg), desc=NAME))
