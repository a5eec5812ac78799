"""Sizes of every experiment, per preset, and the spec builders they share.

Presets: ``"default"`` (full Fashion-MNIST, a BN MLP 784-256-256-10, 8-15 minutes on two
cores), ``"quick"`` (a 10k/2k subset, width 128, shorter runs and smaller grids: under two
minutes, still real data) and ``"tiny"`` (a small synthetic problem, for the tests).

Why these numbers: a steady state is only measured after the norm has relaxed, i.e. after
several times ``1/(8 lr lam)`` steps for SGD (``1/(2 lr wd)`` for AdamW), so the grids use
``lr*lam >= 1e-3`` (``>= 2e-3`` in quick) and windows over the second half of each run. Adam
uses ``betas = (0.9, 0.99)``: its transients lag by about ``1/(1-b2)`` steps (THEORY.md), which
with 0.999 would outlast the runs. Training runs are float32 unless an exact identity is
checked on them (float64, BN eps = 0).
"""

import copy

PRESETS = ("default", "quick", "tiny")

_DATA = {
    "default": {"subset": None, "test_subset": None},
    "quick": {"subset": 10000, "test_subset": 2000},
}
_SYNTHETIC = {
    "default": {"n_train": 20000, "n_test": 5000, "shape": [1, 28, 28]},
    "quick": {"n_train": 5000, "n_test": 2000, "shape": [1, 28, 28]},
    "tiny": {"n_train": 512, "n_test": 256, "shape": [1, 8, 8]},
}

_SIZES = {
    "default": {
        "width": 256,
        "invariance": {"train_steps": 300, "scales": [10.0 ** k for k in range(-4, 5)]},
        "effective_lr": {"train_steps": 300, "c": [10 ** (k / 4) for k in range(-4, 5)]},
        "norm_dynamics": {"steps": 6000, "lr": 0.1, "lam": 5e-3, "momentum_lr": 0.01},
        "one_knob": {"steps": 2000, "sgd_lr": [0.1, 0.2, 0.4], "sgd_lam": [1e-2, 2e-2, 4e-2],
                     "adam_lr": [1e-3, 2e-3, 4e-3], "adam_lam": [1e-3, 4e-3, 1.6e-2],
                     "adamw_lr": [1e-3, 2e-3, 4e-3], "adamw_wd": [2.0, 4.0, 8.0],
                     "sym_steps": 1500, "sym_c": [0.5, 2.0, 3.0]},
        "no_l2": {"steps": 3000, "lr": 0.1, "lam": 2e-2, "w0_scales": [0.25, 1.0, 4.0]},
        "cross_run": {"width": 128, "steps": 2000, "pairs": [[0.1, 2e-2], [0.05, 4e-2], [0.2, 1e-2]]},
        "init_forgetting": {"width": 128, "steps": 2000, "scales": [0.25, 1.0, 4.0], "sgd_lr": 0.1, "sgd_lam": 2e-2,
                            "adamw_lr": 2e-3, "adamw_wd": 4.0},
        "schedule": {"width": 128, "identity_steps": 150, "steps": 2000, "sgd": [0.1, 1e-2], "momentum": [0.01, 1e-2]},
        "adam_growth": {"width": 128, "steps": 3000, "lr": 2e-3},
        "momentum_S": {"width": 128, "steps": 3000, "lr": 0.01, "lam": 1e-2},
    },
    "quick": {
        "width": 128,
        "invariance": {"train_steps": 100, "scales": [10.0 ** k for k in range(-4, 5, 2)]},
        "effective_lr": {"train_steps": 100, "c": [10 ** (k / 2) for k in range(-2, 3)]},
        "norm_dynamics": {"steps": 1500, "lr": 0.1, "lam": 2e-2, "momentum_lr": None},
        "one_knob": {"steps": 1000, "sgd_lr": [0.1, 0.2], "sgd_lam": [2e-2, 4e-2],
                     "adam_lr": [2e-3, 4e-3], "adam_lam": [4e-3, 1.6e-2],
                     "adamw_lr": [2e-3, 4e-3], "adamw_wd": [4.0, 8.0],
                     "sym_steps": 400, "sym_c": [2.0, 3.0]},
        "no_l2": {"steps": 1500, "lr": 0.1, "lam": 4e-2, "w0_scales": [0.25, 4.0]},
        "cross_run": {"width": 128, "steps": 1000, "pairs": [[0.1, 2e-2], [0.05, 4e-2], [0.2, 1e-2]]},
        "init_forgetting": {"width": 128, "steps": 1500, "scales": [0.25, 1.0, 4.0], "sgd_lr": 0.1, "sgd_lam": 2e-2,
                            "adamw_lr": 2e-3, "adamw_wd": 4.0},
        "schedule": {"width": 128, "identity_steps": 150, "steps": 1000, "sgd": [0.1, 1e-2], "momentum": [0.01, 1e-2]},
        "adam_growth": {"width": 128, "steps": 1500, "lr": 2e-3},
        "momentum_S": {"width": 128, "steps": 1500, "lr": 0.01, "lam": 1e-2},
    },
    "tiny": {
        "width": 16,
        "invariance": {"train_steps": 20, "scales": [1e-3, 1.0, 1e3]},
        "effective_lr": {"train_steps": 20, "c": [0.1, 1.0, 10.0]},
        "norm_dynamics": {"steps": 200, "lr": 0.1, "lam": 4e-2, "momentum_lr": 0.02},
        "one_knob": {"steps": 150, "sgd_lr": [0.1, 0.2], "sgd_lam": [2e-2, 4e-2],
                     "adam_lr": [2e-3, 4e-3], "adam_lam": [4e-3, 1.6e-2],
                     "adamw_lr": [2e-3, 4e-3], "adamw_wd": [4.0, 8.0],
                     "sym_steps": 300, "sym_c": [2.0, 3.0]},
        "no_l2": {"steps": 200, "lr": 0.1, "lam": 4e-2, "w0_scales": [0.25, 4.0]},
        "cross_run": {"width": 16, "steps": 150, "pairs": [[0.1, 2e-2], [0.05, 4e-2], [0.2, 1e-2]]},
        "init_forgetting": {"width": 16, "steps": 200, "scales": [0.25, 1.0, 4.0], "sgd_lr": 0.1, "sgd_lam": 2e-2,
                            "adamw_lr": 2e-3, "adamw_wd": 4.0},
        "schedule": {"width": 16, "identity_steps": 40, "steps": 150, "sgd": [0.1, 1e-2], "momentum": [0.01, 1e-2]},
        "adam_growth": {"width": 16, "steps": 200, "lr": 2e-3},
        "momentum_S": {"width": 16, "steps": 200, "lr": 0.01, "lam": 1e-2},
    },
}
ADAM_BETAS = [0.9, 0.99]


def make_config(preset="default", data="fashion-mnist", data_dir=None, device="cpu", seed=0):
    """The configuration dict every experiment reads (JSON-able; written into report.json)."""
    if preset not in PRESETS:
        raise ValueError(f"make_config(preset): got {preset!r}, expected one of {PRESETS}")
    if preset == "tiny" and data != "synthetic":
        raise ValueError("make_config: the 'tiny' preset runs on data='synthetic' only")
    spec = {"name": data, "data_dir": data_dir, "seed": seed}
    if data == "synthetic":
        spec.update(subset=None, test_subset=None, synthetic=dict(_SYNTHETIC[preset]))
    else:
        spec.update(_DATA[preset])
    cfg = copy.deepcopy(_SIZES[preset])
    cfg.update(preset=preset, data=spec, device=device, seed=seed, adam_betas=list(ADAM_BETAS),
               batch_size=128)
    return cfg


def model(cfg, **over):
    """The experiments' MLP: 2 hidden layers of ``cfg['width']``, BN, float32 unless overridden."""
    return {"arch": "mlp", "width": cfg["width"], "depth": 2, "norm": "bn", "dtype": "float32",
            "seed": cfg["seed"], **over}


def sgd(lr, l2=0.0, **over):
    return {"name": "sgd", "lr": lr, "l2": l2, "momentum": 0.0, "weight_decay": 0.0,
            "unit_norm": False, "l2_scope": "all", **over}


def adam(cfg, lr, l2=0.0, weight_decay=0.0, **over):
    return {"name": "adam", "lr": lr, "l2": l2, "weight_decay": weight_decay,
            "betas": list(cfg["adam_betas"]), "eps": 1e-8, "unit_norm": False, "l2_scope": "all", **over}


def train(cfg, model_spec, optim_spec, steps, **over):
    """A ``train`` task spec (see ``refnet.experiments.tasks``)."""
    return {"task": "train", "data": cfg["data"], "device": cfg["device"], "model": model_spec,
            "optim": optim_spec, "steps": int(steps), "batch_size": cfg["batch_size"],
            "seed": cfg["seed"], "window": 0.5, "trace_every": max(1, int(steps) // 200), **over}
