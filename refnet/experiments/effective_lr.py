"""Experiment 2, effective learning rate: one step after rescaling a layer by ``c`` turns its
units by an angle whose tangent scales exactly as ``c^-2`` for SGD and as ``c^-1`` for Adam
(identity 3, ``theory.one_step_angle_scaling``): Adam removes only one of the two factors.

Measured on a trained BN MLP (float64, BN eps = 0, one batch of 512 test images): for each
hidden layer and each ``c``, one step from a fresh optimizer state, the RMS over units of
``tan(angle)``; the claim is the least-squares slope of ``log tan(angle)`` against ``log c``.
Tolerances: SGD 1e-9 (exact: ``tan = lr ||g|| / (c^2 ||w||)`` since ``<w, g> = 0``, so only
rounding); Adam 1e-2 (its first step ``lr g/(|g| + eps)`` is scale-free up to eps, but not
orthogonal to ``w``: its radial part shifts the angle by a relative amount of the order of the
angle itself, kept below 1e-2 by the small lr).
"""

from refnet.experiments import config
from refnet.experiments import registry
from refnet.experiments.measure import slope
from refnet.experiments.runner import Runner
import theory

NAME, FIGURE = "effective_lr", "fig2_effective_lr.png"
LR = {"sgd": 0.1, "adam": 1e-4}


def specs(cfg):
    c = cfg[NAME]
    return [{"task": "one_step", "data": cfg["data"], "device": cfg["device"], "seed": cfg["seed"],
             "model": config.model(cfg, dtype="float64"), "train_steps": c["train_steps"],
             "c": c["c"], "sgd_lr": LR["sgd"], "adam_lr": LR["adam"], "adam_eps": 1e-8}]


def analyze(cfg, results):
    arrays, meta = results[0]
    names = list(meta["d"])
    data = {"name": NAME, "figure": FIGURE, "c": arrays["c"].tolist(), "layers": names, "lr": LR,
            "curves": {}, "slopes": {}, "claims": [], "observations": []}
    for opt in ("sgd", "adam"):
        rows = []
        for name in names:
            tan = arrays[f"{opt}/{name}/tan"]
            data["curves"][f"{opt}/{name}"] = {"tan": tan.tolist(),
                                               "angle": arrays[f"{opt}/{name}/angle"].tolist()}
            s = slope(arrays["c"], tan)
            data["slopes"][f"{opt}/{name}"] = s
            rows.append((theory.one_step_angle_scaling(opt), s, name))
        data["claims"].append(registry.worst(f"one_step_{opt}", rows, "slope of log tan(angle) vs log c, worst layer"))
    return data


def run(cfg=None, runner=None):
    """Experiment 2's data (see the module docstring)."""
    cfg = cfg or config.make_config()
    return analyze(cfg, (runner or Runner()).map(specs(cfg), desc=NAME))
