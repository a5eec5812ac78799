"""Experiment 3, norm dynamics: per-layer ``||w||`` of the BN MLP over SGD training on real
data, with and without L2 (float64, BN eps = 0, plain SGD).

Claims, each against ``theory``:
- every step obeys identity 4, ``||w_{t+1}||^2 = (1-2 lr lam)^2 ||w_t||^2 + lr^2 ||g_t||^2``
  (``theory.sgd_norm_recursion``), largest relative residual over steps and units, both runs;
  tolerance 1e-9 (exact; float64 rounding only);
- with L2 the norm settles at ``||w||^4 = lr G2 / (4 lam (1 - lr lam))``
  (``theory.sgd_l2_equilibrium``), G2 the unit's mean ``||g~||^2`` over the second half: median
  over units of measured / predicted ``||w||^4`` over that window, worst layer; tolerance 5%
  (the law is quasi-static: G2 drifts on real data; THEORY.md measured within 1%);
- without L2 it grows as ``||w_t||^4 = ||w_0||^4 + 2 lr^2 G2 t`` (+ a log term,
  ``theory.sgd_growth``), G2 the unit's mean over the run: median over units of measured /
  predicted final ``||w||^4``, worst layer; tolerance 5%.
"""

import numpy as np

import theory
from refnet.experiments import config
from refnet.experiments import registry
from refnet.experiments.measure import label, layers, median_ratio, smooth, window
from refnet.experiments.runner import Runner

NAME, FIGURE = "norm_dynamics", "fig3_norm_dynamics.png"


def run_specs(cfg):
    """The two runs (with L2, without), shared with experiment 4."""
    c = cfg[NAME]
    m = config.model(cfg, dtype="float64", eps=0.0)
    return [config.train(cfg, m, config.sgd(c["lr"], l2), c["steps"], keep_units=4)
            for l2 in (c["lam"], 0.0)]


def specs(cfg):
    return run_specs(cfg)


def recursion(norm0, G2, lr, lam):
    """Iterate identity 4 from ``norm0`` with the measured ``G2 = ||g~_t||^2`` of each step."""
    x = np.empty(len(G2))
    x[0] = norm0 ** 2
    for t in range(len(G2) - 1):
        x[t + 1] = theory.sgd_norm_recursion(x[t], lr, lam, G2[t] / x[t])
    return np.sqrt(x)


def analyze(cfg, results):
    c = cfg[NAME]
    lr, lam = c["lr"], c["lam"]
    (l2_arr, l2_meta), (free_arr, _) = results
    names = layers(l2_meta)
    steps = l2_arr["trace/step"]
    block = int(steps[1] - steps[0]) if len(steps) > 1 else 1
    relax = 1 / theory.sgd_l2_equilibrium(lr, lam, 1.0).relaxation_rate  # steps
    data = {"name": NAME, "figure": FIGURE, "lr": lr, "lam": lam, "layers": names,
            "step": steps.tolist(), "panels": {}, "claims": [], "observations": []}
    resid, eq_rows, grow_rows = [], [], []
    for i, name in enumerate(names):
        G2 = l2_arr[f"{name}/trace/G2"][:, 1]
        eq_now = np.array([theory.sgd_l2_equilibrium(lr, lam, g).norm for g in smooth(G2, relax / block)])
        free_G2 = free_arr[f"{name}/trace/G2"][:, 1]
        y0 = free_arr[f"{name}/trace/norm"][0, 1] ** 4
        law = (y0 + 2 * lr ** 2 * np.concatenate([[0], np.cumsum(free_G2)[:-1]]) * block) ** 0.25
        unit_n, unit_G2 = l2_arr[f"units/{name}/norm"][:, 0], l2_arr[f"units/{name}/G2"][:, 0]
        data["panels"][name] = {
            "l2_norm": l2_arr[f"{name}/trace/norm"].tolist(), "l2_equilibrium": eq_now.tolist(),
            "free_norm": free_arr[f"{name}/trace/norm"].tolist(), "free_law": law.tolist(),
            "unit_norm": unit_n.tolist(), "unit_recursion": recursion(unit_n[0], unit_G2, lr, lam).tolist()}
        resid += [float(l2_arr[f"{name}/resid/norm"]), float(free_arr[f"{name}/resid/norm"])]
        pred = np.array([theory.sgd_l2_equilibrium(lr, lam, g).norm ** 4 for g in l2_arr[f"{name}/win/G2"]])
        eq_rows.append((1.0, median_ratio(l2_arr[f"{name}/win/norm4"], pred), label(i, name)))
        t_end = len(free_arr[f"units/{name}/norm"]) - 1
        grown = np.array([theory.sgd_growth(t_end, lr, g, n0).norm ** 4 for g, n0 in
                          zip(free_arr[f"{name}/run/G2"], free_arr[f"{name}/run/norm0"])])
        grow_rows.append((1.0, median_ratio(free_arr[f"{name}/run/normT"] ** 4, grown), label(i, name)))
    l2_spec, free_spec = run_specs(cfg)
    data["claims"] += [
        registry.row("norm_recursion", "max relative residual over steps, units, layers, both runs", 0.0, max(resid)),
        registry.worst("sgd_l2_norm_equilibrium", eq_rows,
                       f"median over units of measured/predicted ||w||^4, 2nd half (lr {lr:g}, lam {lam:g})",
                       inputs=["G2 of the same window", f"hyperparameters: lr {lr:g}, lam {lam:g}"],
                       window=window(f"norm_dynamics L2 (lr {lr:g}, lam {lam:g})", l2_spec)),
        registry.worst("sgd_no_l2_growth_norm", grow_rows,
                       f"median over units of measured/predicted final ||w||^4 (lr {lr:g})",
                       inputs=["G2 and ||w0|| of the same run", f"hyperparameters: lr {lr:g}"],
                       window=f"run norm_dynamics no L2 (lr {lr:g}), steps 0-{free_spec['steps']}")]
    return data


def run(cfg=None, runner=None):
    """Experiment 3's data (see the module docstring)."""
    cfg = cfg or config.make_config()
    return analyze(cfg, (runner or Runner()).map(specs(cfg), desc=NAME))
