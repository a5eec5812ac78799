"""Experiment 5, one knob, not two: the steady angular update of every scale-invariant layer is
set by one combination of the hyperparameters -- ``lr*lam`` for SGD + L2, ``lr^2*lam`` for
Adam + L2, ``lr*wd`` for AdamW (identity 5, ``theory.equilibrium_invariant``).

Runs: grids of (lr, lam) / (lr, wd) on the BN MLP, L2 / weight decay on the scale-invariant
weights only (so that lam acts on nothing but their scale), windows over the second half; SGD
and Adam + L2 also on the fully invariant network (BN without gamma/beta, frozen random head:
every trained parameter scale-invariant, the setting of identity 5).
Claims (median over units of the RMS angle per step, worst run and layer; kinds and
tolerances in ``registry.py``: the SGD and AdamW angles are predictions from the
hyperparameters, the Adam + L2 ones consistency checks, since they use the window's G2):
- SGD + L2: angle = ``arccos(1 - 2 lr lam)`` for every run and layer (``theory.sgd_l2_equilibrium``), 5%;
- Adam + L2, fully invariant network: angle = ``theory.adam_l2_equilibrium(lr, lam, G2, d)``,
  with the unit's measured G2 and size d (10%: the law assumes the gradient spread evenly over
  the d entries and white in time; units whose gradient is exactly 0 over the whole window,
  dead ReLUs, have no equilibrium and are left out of the median). Unlike SGD's, this angle
  depends on G2, which differs between runs that took different paths, so runs sharing
  ``lr^2 lam`` agree through the law, not directly;
- AdamW: angle = ``theory.adamw_equilibrium(lr, wd, d)`` for every run, 5%.
The Adam laws assume evenly fed coordinates and a quasi-static G2 (theory/README.md, section 14),
so narrower claims are held on the layers fed by normalized units, beside the wider ones
(AdamW on every layer, Adam + L2 on the ordinary network), not in their place: raw
pixels have standard deviations from 0.09% to 100% of the largest (Fashion-MNIST), and Adam's
per-coordinate step turns that weight up to 7% slower than AdamW's even law. And Adam + L2 is
held on the fully invariant network: with trained gamma its law feeds back on itself -- the
angle grows as ``G2^(-1/6)``, ``G2`` scales with the unit's gamma^2, and the first layer's
gamma and G2 collapse during the run (G2 by a factor 2 to 10^6 over the window), so G2 is not
quasi-static. Both departures fail the wider claims, which stay in the report with their notes.
- symmetry: on the fully invariant network, the runs ``(c^2 lr, lam/c^2, c w0)`` (SGD) and
  ``(c lr, lam/c^2, c w0, eps/c)`` (Adam + L2) give the same test predictions as
  ``(lr, lam, w0)`` (``theory.symmetry_map``; float64, BN eps = 0): largest change of a softmax
  output, tolerance 1e-9 (rounding, amplified by training). In eval mode this needs BN's running
  averages to have forgotten their initial values (weight ``0.9^steps``).
Observations: the SGD map applied to the ordinary network (trained gamma, beta and head,
whose step is not rescaled) changes its predictions; the accuracy of the grids against
``lr*lam``, on both networks; the Adam laws outside their domain.
"""

import itertools

import numpy as np

import theory
from refnet.experiments import config
from refnet.experiments import registry
from refnet.experiments.claims import observation
from refnet.experiments.measure import final_accuracy, label, layers, median_ratio
from refnet.experiments.runner import Runner

NAME, FIGURE = "one_knob", "fig5_one_knob.png"
GRIDS = ("sgd", "sgd_invariant", "adam", "adam_invariant", "adamw")


def grid(cfg, kind, **model_over):
    """``[(hyper, spec)]`` for one grid: kind "sgd" (lr x lam), "adam" (lr x lam), "adamw" (lr x wd)."""
    c = cfg[NAME]
    base = "sgd" if kind.startswith("sgd") else kind
    second = {"sgd": "sgd_lam", "adam": "adam_lam", "adamw": "adamw_wd"}[base]
    out = []
    for lr, k in itertools.product(c[f"{base}_lr"], c[second]):
        if base == "sgd":
            opt, knob = config.sgd(lr, k, l2_scope="invariant"), lr * k
        elif base == "adam":
            opt, knob = config.adam(cfg, lr, l2=k, l2_scope="invariant"), lr * lr * k
        else:
            opt, knob = config.adam(cfg, lr, weight_decay=k, l2_scope="invariant"), lr * k
        hyper = {"lr": lr, ("wd" if base == "adamw" else "lam"): k, "knob": knob}
        # SGD keeps its test logits: experiment 6 compares its accuracies image by image
        out.append((hyper, config.train(cfg, config.model(cfg, **model_over), opt, c["steps"],
                                        **({"keep_logits": True} if base == "sgd" else {}))))
    return out


def grids(cfg):
    invariant = {"affine": False, "train_head": False}
    return {"sgd": grid(cfg, "sgd"), "sgd_invariant": grid(cfg, "sgd", **invariant),
            "adam": grid(cfg, "adam"), "adam_invariant": grid(cfg, "adam", **invariant), "adamw": grid(cfg, "adamw")}


SYMMETRY_RUNS = (("sgd", "invariant"), ("sgd", "ordinary"), ("adam", "invariant"))


def symmetry_specs(cfg):
    """Base and mapped runs (``theory.symmetry_map``), float64 with BN eps = 0: SGD on the fully
    invariant and on the ordinary network, Adam + L2 on the fully invariant one."""
    c = cfg[NAME]
    out = []
    for opt, net in SYMMETRY_RUNS:
        over = {"affine": False, "train_head": False} if net == "invariant" else {}
        lr, lam = c[f"{opt}_lr"][0], c[f"{opt}_lam"][0]
        for s in [1.0] + list(c["sym_c"]):
            m = theory.symmetry_map(opt, s, lr=lr, lam=lam, eps=1e-8)
            o = (config.sgd(m["lr"], m["lam"], l2_scope="invariant") if opt == "sgd" else
                 config.adam(cfg, m["lr"], l2=m["lam"], eps=m["eps"], l2_scope="invariant"))
            out.append(config.train(cfg, config.model(cfg, dtype="float64", eps=0.0, w0_scale=s, **over), o,
                                    c["sym_steps"], keep_logits=True))
    return out


def specs(cfg):
    return [s for g in grids(cfg).values() for _, s in g] + symmetry_specs(cfg)


def _probs(z):
    p = np.exp(z - z.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)


def _steady(kind, hyper, arrays, meta, betas):
    """Per layer: measured median angle, predicted per-unit angles' median, measured/predicted."""
    out = {}
    for name in layers(meta):
        G2, d = arrays[f"{name}/win/G2"], meta["params"][name]["d"]
        if kind.startswith("sgd"):
            pred = np.full(len(G2), theory.sgd_l2_equilibrium(hyper["lr"], hyper["lam"], 1.0).angle)
        elif kind == "adam":  # a unit without gradient (G2 = 0, dead) has no equilibrium: left out
            pred = np.array([theory.adam_l2_equilibrium(hyper["lr"], hyper["lam"], g, d, betas).angle
                             if g > 0 else np.nan for g in G2])
        else:
            pred = np.full(len(G2), theory.adamw_equilibrium(hyper["lr"], hyper["wd"], d, betas).angle)
        ang, live = arrays[f"{name}/win/angle"], np.isfinite(pred)
        g = arrays[f"{name}/trace/G2"][:, 1]  # the median unit's G2, per block of steps
        win = g[len(g) // 2:]
        q = max(1, len(win) // 4)
        out[name] = {"angle": float(np.median(ang)), "pred": float(np.median(pred[live])) if live.any() else np.nan,
                     "ratio": median_ratio(ang[live], pred[live]) if live.any() else np.nan,
                     "dead": float(arrays[f"{name}/run/dead"]),
                     "drift": float(win[:q].mean() / win[-q:].mean()) if win[-q:].mean() > 0 else np.inf}
    return out


def analyze(cfg, results):
    betas = tuple(cfg["adam_betas"])
    gs = grids(cfg)
    data = {"name": NAME, "figure": FIGURE, "grids": {}, "claims": [], "observations": []}
    it = iter(results)
    for kind in GRIDS:
        runs = []
        for hyper, _ in gs[kind]:
            arrays, meta = next(it)
            gammas = sorted((k for k in arrays if k.startswith("gamma/")),  # in the network's order
                            key=lambda k: int(k.split("/")[1].split(".")[0]))
            runs.append({**hyper, "accuracy": final_accuracy(meta),
                         "layers": _steady(kind.split("_")[0], hyper, arrays, meta, betas),
                         "gamma1": float(np.median(arrays[gammas[0]])) if gammas else np.nan})
        data["grids"][kind] = runs
    names = list(data["grids"]["sgd"][0]["layers"])

    def rows(kind, first=True):  # (predicted, measured, where) per run and layer
        return [(1.0, r["layers"][n]["ratio"], f"{label(i, n)}, lr {r['lr']:g}, knob {r['knob']:.3g}")
                for r in data["grids"][kind] for i, n in enumerate(names) if i > 0 or first]
    quantity = "median over units of measured/predicted angle"
    c = cfg[NAME]
    start = int(round(c["steps"] / 2))

    def win(grid_name):
        return f"each run of the {grid_name} grid, steps {start}-{c['steps']}"
    sgd_in = [f"hyperparameters: each run's lr and lam (lr {c['sgd_lr']}, lam {c['sgd_lam']})"]
    adamw_in = [f"hyperparameters: each run's lr and wd (lr {c['adamw_lr']}, wd {c['adamw_wd']}), betas {list(betas)}"]
    adam_in = ["G2 of the same window", f"hyperparameters: each run's lr and lam (lr {c['adam_lr']}, lam "
               f"{c['adam_lam']}), betas {list(betas)}", "each layer's size d"]
    data["claims"] += [
        registry.worst("sgd_l2_angle_grid", rows("sgd"), quantity, inputs=sgd_in, window=win("SGD + L2")),
        registry.worst("adam_l2_angle_ordinary", rows("adam"), quantity, inputs=adam_in, window=win("Adam + L2")),
        registry.worst("adam_l2_angle_invariant", rows("adam_invariant", first=False), quantity, inputs=adam_in,
                       window=win("Adam + L2 (fully invariant)")),
        registry.worst("adamw_angle_every_layer", rows("adamw"), quantity, inputs=adamw_in, window=win("AdamW")),
        registry.worst("adamw_angle_normalized_layers", rows("adamw", first=False), quantity, inputs=adamw_in,
                       window=win("AdamW"))]
    data.update(_symmetry(cfg, list(it)))
    data["claims"] += data.pop("symmetry_claims")
    data["observations"] += data.pop("symmetry_observations") + _outside_domain(data["grids"], names) + [
        observation(f"test accuracy spread among runs sharing lr*lam ({net} network)", FIGURE,
                    "max over lr*lam groups of (max - min) accuracy",
                    max([0.0] + [np.ptp([r["accuracy"] for r in g]) for g in _groups(data["grids"][k])]))
        for k, net in (("sgd_invariant", "fully invariant"), ("sgd", "ordinary"))] + [
        observation(f"{title}: units with an exactly zero gradient at the end (dead, no steady state)", FIGURE,
                    f"largest fraction over runs, {label(i, n)}", max(r["layers"][n]["dead"] for r in data["grids"][k]),
                    "a dead unit's G2 is 0: the equilibrium laws assume G2 > 0 and stationary")
        for k, title in (("sgd", "SGD + L2"), ("adam", "Adam + L2, ordinary network"), ("adamw", "AdamW"))
        for i, n in enumerate(names)]
    return data


def _outside_domain(grids_, names):
    """Observations: the Adam laws where their assumptions fail (module docstring): on the first
    layer (raw pixels), and Adam + L2 on the ordinary network, where G2 is not quasi-static."""
    def farthest(runs, i):
        r = max(runs, key=lambda r: abs(np.log(r["layers"][names[i]]["ratio"])))
        return r["layers"][names[i]]["ratio"], f"{label(i, names[i])}, lr {r['lr']:g}, knob {r['knob']:.3g}"
    out = []
    for kind, title in (("adam_invariant", "Adam + L2, fully invariant network"), ("adamw", "AdamW")):
        value, where = farthest(grids_[kind], 0)
        out.append(observation(f"{title}: first layer, fed by raw pixels of uneven scale", FIGURE,
                               f"measured/predicted angle farthest from 1 over the grid [{where}]", value,
                               "outside the law's assumption of evenly fed coordinates"))
    for kind, title in (("sgd", "SGD + L2"), ("adam", "Adam + L2"), ("adamw", "AdamW")):
        r = min(grids_[kind], key=lambda r: r["gamma1"])
        out.append(observation(f"{title}, ordinary network: the first BN's gamma at the end", FIGURE,
                               f"median |gamma| over its units, smallest over the grid [lr {r['lr']:g}, "
                               f"knob {r['knob']:.3g}]", r["gamma1"], "initialized at 1; G2 of a unit scales "
                               "with its gamma^2"))
    for i, n in enumerate(names):
        value, where = farthest(grids_["adam"], i)
        drift = max(r["layers"][n]["drift"] for r in grids_["adam"])
        out.append(observation("Adam + L2, ordinary network (trained gamma feeds back into G2)", FIGURE,
                               f"measured/predicted angle farthest from 1 over the grid [{where}]", value,
                               f"the median unit's G2 fell by up to {drift:.3g}x over the window"))
    return out


def _groups(runs):
    """Runs sharing the knob (to 1e-9 relative), groups of two or more."""
    groups = {}
    for r in runs:
        groups.setdefault(round(np.log(r["knob"]), 9), []).append(r)
    return [g for g in groups.values() if len(g) > 1]


def _symmetry(cfg, results):
    cs = [1.0] + list(cfg[NAME]["sym_c"])
    sym, claims, obs = {"c": cs[1:]}, [], []
    for k, (opt, net) in enumerate(SYMMETRY_RUNS):
        res = results[k * len(cs):(k + 1) * len(cs)]
        p0 = _probs(res[0][0]["test_logits"])
        dp = [float(np.abs(_probs(a["test_logits"]) - p0).max()) for a, _ in res[1:]]
        agree = [float((_probs(a["test_logits"]).argmax(1) == p0.argmax(1)).mean()) for a, _ in res[1:]]
        sym[f"{opt}/{net}"] = {"max_dprob": dp, "agree": agree, "accuracy": [final_accuracy(m) for _, m in res]}
        rule = "(c^2 lr, lam/c^2, c w0)" if opt == "sgd" else "(c lr, lam/c^2, c w0, eps/c)"
        if net == "invariant":
            claims.append(registry.worst(f"symmetry_{opt}", [(0.0, v, f"c = {c:g}") for c, v in zip(cs[1:], dp)],
                                         "max change of a test softmax output"))
        else:
            obs += [observation(f"ordinary network under {rule}: predictions change", FIGURE,
                                f"fraction of test predictions unchanged, c = {c:g}", a,
                                f"max softmax change {v:.3g}") for c, a, v in zip(cs[1:], agree, dp)]
    return {"symmetry": sym, "symmetry_claims": claims, "symmetry_observations": obs}


def run(cfg=None, runner=None):
    """Experiment 5's data (see the module docstring)."""
    cfg = cfg or config.make_config()
    return analyze(cfg, (runner or Runner()).map(specs(cfg), desc=NAME))
