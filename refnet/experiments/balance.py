"""Experiment 7, balance across layers: the steady angle per step of each layer.

With SGD + L2 it is ``arccos(1 - 2 lr lam)`` in every layer (balanced); with Adam + L2 it grows
with the layer's size d and shrinks with its gradient scale, ``~ d^(1/3) G^(-1/3)``
(``d^(1/6)`` at a fixed gradient per entry), so layers turn at different rates; with AdamW it is
balanced again (``theory.balance``). Runs: the middle run of each grid of experiment 5.
Claims: the ratio of the two hidden layers' steady angles (medians over units) against
``theory.steady_angle`` with each layer's measured median G2 and d: 1 for SGD and AdamW
(tolerance 5%), ``(d1/d2)^(1/3) (G2_2/G2_1)^(1/6)`` for Adam + L2 (10%: its small-lr*lam form).
"""

import numpy as np

import theory
from refnet.experiments import config, one_knob
from refnet.experiments.claims import claim
from refnet.experiments.measure import layers
from refnet.experiments.runner import Runner

NAME, FIGURE = "balance", "fig7_balance.png"
TOL = {"sgd": 0.05, "adam": 0.10, "adamw": 0.05}
TITLES = {"sgd": "SGD + L2", "adam": "Adam + L2", "adamw": "AdamW"}


def picks(cfg):
    """One run per optimizer: the middle of its grid in experiment 5."""
    gs = {k: one_knob.grid(cfg, k) for k in ("sgd", "adam", "adamw")}
    return {k: g[len(g) // 2] for k, g in gs.items()}


def specs(cfg):
    return [s for _, s in picks(cfg).values()]


def analyze(cfg, results):
    betas = tuple(cfg["adam_betas"])
    data = {"name": NAME, "figure": FIGURE, "optimizers": {}, "claims": [], "observations": []}
    for (kind, (hyper, _)), (arrays, meta) in zip(picks(cfg).items(), results):
        names = layers(meta)
        rows = {}
        for name in names:
            d, G2 = meta["params"][name]["d"], float(np.median(arrays[f"{name}/win/G2"]))
            pred = float(theory.steady_angle(kind, d, G2, lr=hyper["lr"], lam=hyper.get("lam", 0.0),
                                             wd=hyper.get("wd", 0.0), betas=betas))
            rows[name] = {"d": d, "G2": G2, "angle": float(np.median(arrays[f"{name}/win/angle"])), "pred": pred}
        data["optimizers"][kind] = {"hyper": hyper, "layers": rows}
        a, b = rows[names[0]], rows[names[-1]]
        data["claims"].append(claim(
            f"{TITLES[kind]}: {'balanced' if kind != 'adam' else 'unbalanced'} steady angles across layers "
            f"({', '.join(f'{k} {v:g}' for k, v in hyper.items() if k != 'knob')})", FIGURE,
            f"angle ratio {names[0]} / {names[-1]} (d {a['d']} / {b['d']})", a["pred"] / b["pred"],
            a["angle"] / b["angle"], TOL[kind], "theory.steady_angle"))
    return data


def run(cfg=None, runner=None):
    """Experiment 7's data (see the module docstring)."""
    cfg = cfg or config.make_config()
    return analyze(cfg, (runner or Runner()).map(specs(cfg), desc=NAME))
