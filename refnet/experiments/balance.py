"""Experiment 7, balance across layers: the steady angle per step of each layer.

With SGD + L2 it is ``arccos(1 - 2 lr lam)`` in every layer (balanced); with Adam + L2 it grows
with the layer's size d and shrinks with its gradient scale, ``~ d^(1/3) G^(-1/3)``
(``d^(1/6)`` at a fixed gradient per entry), so layers turn at different rates; with AdamW it is
balanced again (``theory.balance``).

Runs: the middle (lr, lam) of each grid of experiment 5, on a fully invariant MLP (BN without
gamma/beta, frozen head; where Adam + L2's law applies, see experiment 5) whose hidden layers
differ in width, ``[4w, w, w]`` (784-1024-256-256-10 by default), so that two layers of
different d are both fed by normalized units: the second layer (d = 4w) and the third (d = w).
Claims: the ratio of their steady angles (medians over units) against ``theory.steady_angle``
with each layer's measured median G2 and d: 1 for SGD and AdamW (tolerance 5%),
``(d2/d3)^(1/3) (G2_3/G2_2)^(1/6)`` for Adam + L2 (10%: its small-lr*lam form). The first
layer, fed by raw pixels of uneven scale, is outside the Adam laws' domain (experiment 5's
docstring); its ratio to the last layer is reported as an observation.
"""

import numpy as np

import theory
from refnet.experiments import config, one_knob
from refnet.experiments.claims import claim, observation
from refnet.experiments.measure import layers
from refnet.experiments.runner import Runner

NAME, FIGURE = "balance", "fig7_balance.png"
TOL = {"sgd": 0.05, "adam": 0.10, "adamw": 0.05}
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


def _ratio_claim(kind, hyper, rows, a, b):
    return claim(f"{TITLES[kind]}: {'balanced' if kind != 'adam' else 'unbalanced'} steady angles across layers "
                 f"({', '.join(f'{k} {v:g}' for k, v in hyper.items() if k != 'knob')})", FIGURE,
                 f"angle ratio {a} / {b} (d {rows[a]['d']} / {rows[b]['d']})", rows[a]["pred"] / rows[b]["pred"],
                 rows[a]["angle"] / rows[b]["angle"], TOL[kind], "theory.steady_angle")


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
            rows[name] = {"d": d, "G2": G2, "angle": float(np.median(arrays[f"{name}/win/angle"])), "pred": pred,
                          "dead": float(arrays[f"{name}/run/dead"])}
        data["optimizers"][kind] = {"hyper": hyper, "layers": rows}
        data["claims"].append(_ratio_claim(kind, hyper, rows, names[1], names[-1]))
        first = _ratio_claim(kind, hyper, rows, names[0], names[-1])
        data["observations"].append(observation(
            f"{TITLES[kind]}: first layer (raw pixels) against the last", FIGURE, first["quantity"],
            first["measured"], f"theory {first['predicted']:.4g}" + ("; outside the Adam laws' domain" if kind != "sgd" else "")))
    return data


def run(cfg=None, runner=None):
    """Experiment 7's data (see the module docstring)."""
    cfg = cfg or config.make_config()
    return analyze(cfg, (runner or Runner()).map(specs(cfg), desc=NAME))
