"""The paper's claims as experiments: each module states its claims, the theory/ function each
is checked against and its tolerance, and provides ``specs(cfg)`` (its independent tasks),
``analyze(cfg, results)`` (plain data: arrays as lists, claims, observations) and
``run(cfg=None, runner=None)`` (both). ``refnet reproduce`` runs them all, plots them
(``refnet.plots``) and writes a report.

    from refnet.experiments import config, norm_dynamics
    data = norm_dynamics.run(config.make_config("quick"))
"""

import importlib

NAMES = ("invariance", "effective_lr", "norm_dynamics", "lr_dynamics", "one_knob", "fix", "balance",
         "no_l2", "optimizer_angles", "sharpness", "cross_run", "init_forgetting", "schedule",
         "adam_growth", "momentum_S")


def get(name):
    """The experiment module called ``name`` (one of NAMES)."""
    if name not in NAMES:
        raise ValueError(f"unknown experiment {name!r}; expected one of {', '.join(NAMES)}")
    return importlib.import_module(f"refnet.experiments.{name}")
