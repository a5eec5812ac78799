"""Experiment 4, effective learning rate over training: with SGD + L2 the measured per-layer
``lr/||w||^2`` and angular update approach the equilibrium predicted from the measured G2.

Claims (registry ids; median over units of measured / predicted, over the second half of the
run, worst layer; tolerance 5%, the quasi-static laws on real data):
- ``sgd_l2_angle`` (prediction), on the L2 run of experiment 3: angle per step
  ``arccos(1 - 2 lr lam)`` (RMS over steps; ``theory.sgd_l2_equilibrium``), from lr and lam alone;
- with heavy-ball momentum 0.9: ``sgd_momentum_angle`` (prediction), angle
  ``arccos(1 - 2 lr lam/(1+mu))`` (``theory.sgd_momentum_l2_equilibrium``); and
  ``sgd_momentum_norm_same_window`` (consistency): the norm law with the correlation of
  successive minibatch gradients (``theory.momentum_correlation_factor``) measured in the very
  window it judges; without them it is an observation.
The effective lr ``lr/||w||^2`` against ``2 sqrt(lr lam (1 - lr lam) / G2)`` is drawn, not
claimed: it restates experiment 3's ``||w||^4`` law.
"""

import numpy as np

import theory
from refnet.experiments import config, norm_dynamics
from refnet.experiments import registry
from refnet.experiments.claims import observation
from refnet.experiments.measure import hyper, label, layers, median_ratio, smooth, window
from refnet.experiments.runner import Runner

NAME, FIGURE = "lr_dynamics", "fig4_lr_dynamics.png"
MOMENTUM, LAGS = 0.9, 30


def specs(cfg):
    out = norm_dynamics.run_specs(cfg)[:1]
    c = cfg[norm_dynamics.NAME]
    if c.get("momentum_lr"):
        out.append(config.train(cfg, config.model(cfg), config.sgd(c["momentum_lr"], c["lam"], momentum=MOMENTUM),
                                c["steps"], autocorr_lags=LAGS))
    return out


def _panels(arrays, names, lr, lam, mu):
    steps = arrays["trace/step"]
    block = int(steps[1] - steps[0]) if len(steps) > 1 else 1
    eq = (lambda g: theory.sgd_momentum_l2_equilibrium(lr, lam, g, mu)) if mu else \
        (lambda g: theory.sgd_l2_equilibrium(lr, lam, g))
    relax = 1 / eq(1.0).relaxation_rate
    out = {}
    for name in names:
        G2 = smooth(arrays[f"{name}/trace/G2"][:, 1], relax / block)
        out[name] = {"step": steps.tolist(), "efflr": arrays[f"{name}/trace/efflr"].tolist(),
                     "angle": arrays[f"{name}/trace/angle"].tolist(),
                     "efflr_pred": [eq(g).effective_lr * (1 - mu) for g in G2],
                     "angle_pred": eq(1.0).angle}
    return out


def analyze(cfg, results):
    c = cfg[norm_dynamics.NAME]
    lr, lam = c["lr"], c["lam"]
    arrays, meta = results[0]
    names = layers(meta)
    data = {"name": NAME, "figure": FIGURE, "lr": lr, "lam": lam, "layers": names,
            "run_lr": {"sgd": lr, "momentum": c.get("momentum_lr")},
            "runs": {"sgd": _panels(arrays, names, lr, lam, 0.0)}, "claims": [], "observations": []}
    # the effective lr lr/||w||^2 against 2 sqrt(lr lam (1 - lr lam)/G2) is not claimed: it restates
    # experiment 3's ||w||^4 law (the same window's G2); the figure still draws it
    ang = [(1.0, median_ratio(arrays[f"{name}/win/angle"], theory.sgd_l2_equilibrium(lr, lam, 1.0).angle),
            label(i, name)) for i, name in enumerate(names)]
    data["claims"].append(registry.worst(
        "sgd_l2_angle", ang, f"median over units of measured/predicted RMS angle, 2nd half (lr {lr:g}, lam {lam:g})",
        inputs=[hyper(lr=lr, lam=lam)], window=window(f"norm_dynamics L2 (lr {lr:g}, lam {lam:g})", specs(cfg)[0])))
    if len(results) > 1:
        with np.errstate(invalid="ignore"):  # strongly anti-correlated gradients: no real root, NaN
            data.update(_momentum(cfg, results[1], data))
    return data


def _momentum(cfg, result, data):
    c = cfg[norm_dynamics.NAME]
    lr, lam, mu = c["momentum_lr"], c["lam"], MOMENTUM
    arrays, meta = result
    names = layers(meta)
    data["runs"]["momentum"] = _panels(arrays, names, lr, lam, mu)
    ang, norm_s, norm_1, corr = [], [], [], {}
    for i, name in enumerate(names):
        G2, lab = arrays[f"{name}/win/G2"], label(i, name)
        ang.append((1.0, median_ratio(arrays[f"{name}/win/angle"],
                                      theory.sgd_momentum_l2_equilibrium(lr, lam, 1.0, mu).angle), lab))
        ac = arrays[f"{name}/autocorr"]
        corr[name] = np.median(ac, axis=1).tolist()
        with_s = [theory.sgd_momentum_l2_equilibrium(lr, lam, g, mu, autocorr=a[1:]).norm ** 4
                  for g, a in zip(G2, ac.T)]
        without = [theory.sgd_momentum_l2_equilibrium(lr, lam, g, mu).norm ** 4 for g in G2]
        norm_s.append((1.0, median_ratio(arrays[f"{name}/win/norm4"], with_s), lab))
        norm_1.append(median_ratio(arrays[f"{name}/win/norm4"], without))
    data["autocorr"] = corr
    win = window(f"momentum (lr {lr:g}, lam {lam:g}, mu {mu:g})", specs(cfg)[1])
    claims = data["claims"] + [
        registry.worst("sgd_momentum_angle", ang, f"median over units of measured/predicted RMS angle, 2nd half "
                       f"(lr {lr:g}, lam {lam:g}, mu {mu:g})", inputs=[hyper(lr=lr, lam=lam, mu=mu)], window=win),
        registry.worst("sgd_momentum_norm_same_window", norm_s, "median over units of measured/predicted ||w||^4, "
                       "2nd half", inputs=["G2 and gradient correlations of the same window",
                                           hyper(lr=lr, lam=lam, mu=mu)], window=win)]
    obs = data["observations"] + [observation(
        f"SGD + momentum {mu} + L2: ||w||^4 against the uncorrelated random-walk law", FIGURE,
        f"median over units of measured/predicted ||w||^4, {label(i, n)}", r,
        f"lag-1 gradient correlation {corr[n][1]:+.3f}") for i, (n, r) in enumerate(zip(names, norm_1))]
    return {"claims": claims, "observations": obs}


def run(cfg=None, runner=None):
    """Experiment 4's data (see the module docstring)."""
    cfg = cfg or config.make_config()
    return analyze(cfg, (runner or Runner()).map(specs(cfg), desc=NAME))
