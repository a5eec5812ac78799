"""Experiment 1, invariance: BN, LN and WN make the loss blind to the scale of the weights they
normalize (identities 1-2 of THEORY.md, ``theory/identities.py``).

Claim: rescaling each unit of a trained BN / WN network's weights by its own factor (LN: the
whole tensor), over eight decades of scale, leaves the loss and every softmax output unchanged,
scales the gradient by exactly ``1/a`` and leaves the other parameters' gradients alone.
Checked: the largest of the four deviations over all scales, in float64 with the
normalization's eps set to 0, against 0. Tolerance 1e-9: the identity is exact, so only
rounding (about 1e-15 per operation, a few hundred operations deep) may remain. With eps = 1e-5
(the default) the identity bends where ``a^2 var`` reaches eps: reported, not claimed.
"""


from refnet.experiments import config
from refnet.experiments import registry
from refnet.experiments.claims import observation
from refnet.experiments.runner import Runner

NAME, FIGURE = "invariance", "fig1_invariance.png"
NORMS = ("bn", "ln", "wn")
TOLERANCE = registry.entry("invariance_bn").tolerance
KEYS = ("loss", "prob", "grad", "others")


def specs(cfg):
    c = cfg[NAME]
    return [{"task": "invariance", "data": cfg["data"], "device": cfg["device"], "seed": cfg["seed"],
             "model": config.model(cfg, norm=norm, dtype="float64"), "train_steps": c["train_steps"],
             "scales": c["scales"]} for norm in NORMS]


def analyze(cfg, results):
    data = {"name": NAME, "figure": FIGURE, "scales": results[0][0]["scales"].tolist(), "norms": {},
            "claims": [], "observations": [], "tolerance": TOLERANCE}
    for norm, (arrays, _) in zip(NORMS, results):
        data["norms"][norm] = {v: {k: arrays[f"{v}/{k}"].tolist() for k in KEYS} for v in ("eps0", "eps")}
        worst = max(max(arrays[f"eps0/{k}"]) for k in KEYS)
        data["claims"].append(registry.row(
            f"invariance_{norm}", "max over a of |dL|/L, max|dp|, ||a g(aw) - g(w)||/||g||, other grads' change "
            "(eps=0)", 0.0, worst))
        if norm != "wn":
            data["observations"].append(observation(
                f"{norm.upper()} with eps=1e-5: invariance bends at small scales", FIGURE,
                "max over a of the same deviations", max(max(arrays[f"eps/{k}"]) for k in KEYS),
                "eps/(a^2 var) is no longer negligible"))
    return data


def run(cfg=None, runner=None):
    """Experiment 1's data (see the module docstring); ``cfg`` from ``config.make_config``."""
    cfg = cfg or config.make_config()
    return analyze(cfg, (runner or Runner()).map(specs(cfg), desc=NAME))
