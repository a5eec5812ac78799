"""Experiment 7, balance across layers: the steady angle per step of each layer.

With SGD + L2 it is ``arccos(1 - 2 lr lam)`` in every layer (balanced); with Adam + L2 it grows
with the layer's size d and shrinks with its gradient scale, ``~ d^(1/3) G^(-1/3)``
(``d^(1/6)`` at a fixed gradient per entry), so layers turn at different rates; with AdamW it is
balanced again (``theory.balance``).

Runs: the middle (lr, lam) of each grid of experiment 5, on a fully invariant MLP (BN without
gamma/beta, frozen head; where Adam + L2's law applies, see experiment 5) whose hidden layers
differ in width, ``[4w, w, w]`` (784-1024-256-256-10 by default), so that two layers of
different d are both fed by normalized units: the second layer (d = 4w) and the third (d = w).
Claims: the ratio of their steady angles (medians over units) against ``theory.steady_angle``:
1 for AdamW (``balance_adamw``, a prediction from nothing measured, 5%) and
``(d2/d3)^(1/3) (G2_3/G2_2)^(1/6)`` for Adam + L2 (``balance_adam``, a consistency check: each
layer's G2 comes from the window judged; 10%, its small-lr*lam form). SGD's run is drawn but
not claimed: its balance restates experiment 5's every-layer angle claim. The first
layer, fed by raw pixels of uneven scale, is outside the Adam laws' domain (experiment 5's
docstring); its ratio to the last layer is reported as an observation.
"""

import numpy as np

import theory
from refnet.experiments import config, one_knob
from refnet.experiments import registry
from refnet.experiments.claims import observation
from refnet.experiments.measure import layers
from refnet.experiments.runner import Runner

NAME, FIGURE = "balance", "fig7_balance.png"
TITLES = {"sgd": "SGD + L2", "adam": "Adam + L2", "adamw": "AdamW"}


def widths(cfg):
    return [4 * cfg["width"], cfg["width"], cfg["width"]]


def picks(cfg):
    """One run per optimizer: the middle (lr, lam) of its grid in experiment 5, on the fully
    invariant [4w, w, w] MLP."""
    out = {}
    for kind in ("sgd", "adam", "adamw"):
        g = one_knob.grid(cfg, kind)
        hyper, spec = g[len(g) // 2]
        out[kind] = (hyper, dict(spec, model=config.model(cfg, width=widths(cfg), depth=None,
                                                       affine=False, train_head=False)))
    return out


def specs(cfg):
    return [s for _, s in picks(cfg).values()]


def _hyper(hyper):
    return ", ".join(f"{k} {v:g}" for k, v in hyper.items() if k != "knob")


def _quantity(hyper, rows, a, b):
    return f"angle ratio {a} / {b} (d {rows[a]['d']} / {rows[b]['d']}; {_hyper(hyper)})"


def _ratio_claim(cfg, kind, hyper, spec, rows, a, b):
    """SGD's balance is not claimed here: it restates experiment 5's every-layer angle claim."""
    steps = spec["steps"]
    inputs = [f"hyperparameters: {_hyper(hyper)}, betas {cfg['adam_betas']}",
              f"layer sizes d {rows[a]['d']}, {rows[b]['d']}"]
    if kind == "adam":
        inputs.append("each layer's G2 from the same window")
    return registry.row(f"balance_{kind}", _quantity(hyper, rows, a, b), rows[a]["pred"] / rows[b]["pred"],
                        rows[a]["angle"] / rows[b]["angle"], inputs=inputs,
                        window=f"run balance {TITLES[kind]} ({_hyper(hyper)}), steps {steps // 2}-{steps}")


def analyze(cfg, results):
    betas = tuple(cfg["adam_betas"])
    data = {"name": NAME, "figure": FIGURE, "optimizers": {}, "claims": [], "observations": []}
    for (kind, (hyper, spec)), (arrays, meta) in zip(picks(cfg).items(), results):
        names = layers(meta)
        rows = {}
        for name in names:
            d, G2 = meta["params"][name]["d"], float(np.median(arrays[f"{name}/win/G2"]))
            pred = float(theory.steady_angle(kind, d, G2, lr=hyper["lr"], lam=hyper.get("lam", 0.0),
                                             wd=hyper.get("wd", 0.0), betas=betas))
            rows[name] = {"d": d, "G2": G2, "angle": float(np.median(arrays[f"{name}/win/angle"])), "pred": pred,
                          "dead": float(arrays[f"{name}/run/dead"])}
        data["optimizers"][kind] = {"hyper": hyper, "layers": rows}
        if kind != "sgd":
            data["claims"].append(_ratio_claim(cfg, kind, hyper, spec, rows, names[1], names[-1]))
        a, b = names[0], names[-1]
        data["observations"].append(observation(
            f"{TITLES[kind]}: first layer (raw pixels) against the last", FIGURE, _quantity(hyper, rows, a, b),
            rows[a]["angle"] / rows[b]["angle"], f"theory {rows[a]['pred'] / rows[b]['pred']:.4g}"
            + ("; outside the Adam laws' domain" if kind != "sgd" else "")))
    return data


def run(cfg=None, runner=None):
    """Experiment 7's data (see the module docstring)."""
    cfg = cfg or config.make_config()
    return analyze(cfg, (runner or Runner()).map(specs(cfg), desc=NAME))
