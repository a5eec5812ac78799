"""Experiment 8, no L2: without L2 the norm grows, ``||w_t||^4 ~ ||w_0||^4 + 2 lr^2 G2 t``, so the
effective learning rate ``lr/||w||^2`` decays like ``1/sqrt(2 G2 t)`` and, until the growth
dominates, depends on the initial scale: the early steps set the rest (the paper's point about
reproducibility). With L2 it settles at the equilibrium whatever the initial scale.

Runs: plain SGD on the BN MLP from initial weights scaled by ``w0_scales``, with and without L2.
Claims (median over units of measured / predicted, worst layer and run; tolerance 5%):
- no L2: final effective lr = ``theory.sgd_growth(t, lr, G2, ||w_0||).effective_lr``, G2 the
  unit's mean over the run;
- no L2, smallest initial scale: final effective lr = the asymptote ``1/sqrt(2 G2 t)``
  (``Growth.effective_lr_asymptotic``): independent of lr;
- with L2: effective lr over the second half = ``theory.sgd_l2_equilibrium(...).effective_lr``
  for every initial scale.
Observations: the ratio of final effective lrs between the largest and the smallest initial
scale, without and with L2.
"""

import numpy as np

import theory
from refnet.experiments import config
from refnet.experiments import registry
from refnet.experiments.claims import observation
from refnet.experiments.measure import label, layers, median_ratio
from refnet.experiments.runner import Runner

NAME, FIGURE = "no_l2", "fig8_no_l2.png"


def runs(cfg):
    c = cfg[NAME]
    return [({"w0_scale": s, "lam": lam}, config.train(cfg, config.model(cfg, w0_scale=s),
                                                      config.sgd(c["lr"], lam), c["steps"]))
            for lam in (0.0, c["lam"]) for s in c["w0_scales"]]


def specs(cfg):
    return [s for _, s in runs(cfg)]


def analyze(cfg, results):
    c = cfg[NAME]
    lr, lam = c["lr"], c["lam"]
    data = {"name": NAME, "figure": FIGURE, "lr": lr, "lam": lam, "runs": [], "claims": [], "observations": []}
    grow, asym, eq, final = [], [], [], {}
    small = min(c["w0_scales"])
    for (h, spec), (arrays, meta) in zip(runs(cfg), results):
        names = layers(meta)
        t_end = spec["steps"] - 1
        run = {**h, "step": arrays["trace/step"].tolist(), "layers": {}}
        for i, name in enumerate(names):
            G2, n0 = arrays[f"{name}/run/G2"], arrays[f"{name}/run/norm0"]
            eff_end = lr / arrays[f"{name}/run/normT"] ** 2
            tag = f"{label(i, name)}, w0 x{h['w0_scale']:g}"
            Gm = float(np.median(G2))
            if h["lam"] == 0:
                g = [theory.sgd_growth(t_end, lr, g2, n) for g2, n in zip(G2, n0)]
                grow.append((1.0, median_ratio(eff_end, [x.effective_lr for x in g]), tag))
                if h["w0_scale"] == small:
                    asym.append((1.0, median_ratio(eff_end, [x.effective_lr_asymptotic for x in g]), tag))
                law = theory.sgd_growth(np.asarray(run["step"]), lr, Gm, float(np.median(n0))).effective_lr
            else:
                pred = [theory.sgd_l2_equilibrium(lr, lam, g2).effective_lr for g2 in arrays[f"{name}/win/G2"]]
                eq.append((1.0, median_ratio(arrays[f"{name}/win/efflr"], pred), tag))
                Gm = float(np.median(arrays[f"{name}/win/G2"]))
                law = np.full(len(run["step"]), theory.sgd_l2_equilibrium(lr, lam, Gm).effective_lr)
            run["layers"][name] = {"efflr": arrays[f"{name}/trace/efflr"].tolist(), "law": law.tolist(), "G2": Gm}
            final[(h["lam"], h["w0_scale"], name)] = float(np.median(eff_end))
        data["runs"].append(run)
    steps = c["steps"]
    data["claims"] += [
        registry.worst("no_l2_growth_efflr", grow, f"median over units of measured/predicted final effective lr "
                       f"(lr {lr:g})", inputs=["G2 and ||w0|| of the same run", f"hyperparameters: lr {lr:g}"],
                       window=f"each no-L2 run of experiment 8, steps 0-{steps}"),
        registry.worst("no_l2_asymptote", asym, "median over units of measured/asymptotic final effective lr",
                       inputs=["G2 of the same run"], window=f"the no-L2 run from w0 x{small:g}, steps 0-{steps}"),
        registry.worst("no_l2_l2_equilibrium_efflr", eq, f"median over units of measured/predicted effective lr, "
                       f"2nd half (lr {lr:g}, lam {lam:g})", inputs=["G2 of the same window",
                                                                    f"hyperparameters: lr {lr:g}, lam {lam:g}"],
                       window=f"each L2 run of experiment 8, steps {steps // 2}-{steps}")]
    big = max(c["w0_scales"])
    for l2 in (0.0, lam):
        for name in names:
            data["observations"].append(observation(
                f"final effective lr, initial scale x{big:g} over x{small:g}, {'no L2' if l2 == 0 else 'L2'}",
                FIGURE, name, final[(l2, big, name)] / final[(l2, small, name)]))
    return data


def run(cfg=None, runner=None):
    """Experiment 8's data (see the module docstring)."""
    cfg = cfg or config.make_config()
    return analyze(cfg, (runner or Runner()).map(specs(cfg), desc=NAME))
