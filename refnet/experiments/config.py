"""Sizes of every experiment, per preset, and the spec builders they share.

Presets: ``"default"`` (full Fashion-MNIST, a BN MLP 784-256-256-10, within the project's
budget of 10 minutes on two cores for every experiment together), ``"full"`` (the same data and
network with the longer runs and larger grids that do not fit that budget; today the
symmetry and no-L2 runs of the earlier default, a few percent longer), ``"quick"`` (a 10k/2k subset, width 128, shorter runs and smaller grids: under two
minutes, still real data) and ``"tiny"`` (a small synthetic problem, for the tests).

Budgets (issue 18): ``--quick`` under 2 minutes and the default under 10 minutes on two idle
cores, i.e. at most about 200 and 1000 CPU-seconds (every thread of every task, BLAS's included,
plus the main process); what does not fit goes to ``full``. CPU-seconds per experiment, summed
over its tasks (``meta["cpu_seconds"]``; a task shared with an earlier experiment counted there):

    experiment         quick      default      default: how it was obtained
    invariance            1.2         7        estimate: quick x the steps x width ratio (6.0)
    effective_lr          0.5         3        estimate (x6.0)
    norm_dynamics         8.8        71        estimate (x8.0)
    lr_dynamics        (shared)      36        estimate: its momentum run, half norm_dynamics' cost
    one_knob             47.0       378        estimate (x8.0)
    fix                  14.0       145        measured (--only fix; its runs no longer shared with one_knob)
    balance              18.8        75        estimate (x4.0)
    no_l2                 9.3        47        estimate (x5.0)
    optimizer_angles     27.2       ~60        estimate (x2.0 steps x width, x2.3 real width cost)
    sharpness            12.3       ~65        estimate (batch x2, width x2, more checkpoints)
    cross_run            10.6        21        estimate (x2.0)
    init_forgetting      19.8        28        measured 2026-12-07 (load 4-5): 13.2 / 20.2 from init, plus the
                                             three rescale tasks (T steps, then K per factor) 6.6 / 7.9
    schedule              9.9        17        estimate (x1.7)
    adam_growth           2.7         5        estimate (x2.0)
    momentum_S            5.6        11        estimate (x2.0)
    tasks               177.8      ~950
    whole command       188.6      ~970        quick: /usr/bin/time user + sys, children included

Quick measured 2026-12-07 with ``nice -n 10 refnet reproduce --quick`` on the shared 2-core
machine under load (load average 9: CPU-seconds there run somewhat slower than idle), 7.5
minutes wall there, so about 95 s on two idle cores. The default estimates scale the quick
CPU-seconds by ``runner._cost`` (steps x width), which matched the eight original experiments'
measured 760 CPU-seconds; the lead's default run replaces them. Muon's decay (a Monte Carlo of
about 20 CPU-seconds at width 128) is solved inside its training task and cached with it, and
so is Adam + L2's ``l2`` (a pilot run of ``pilot_steps``; measured on the loaded machine: its
task 1.7 -> 2.5 CPU-seconds on quick).
``full`` differs from the default in one_knob (symmetry runs 1500 steps: about 436 CPU-seconds),
no_l2 (3000 steps: about 56), about 1040 in all (same estimate), and in optimizer_angles' BN CNN
runs (measured: 540 CPU-seconds for its nine tasks, loaded machine). Every preset keeps every
claim but the BN CNN's (``full`` only): the presets change sizes only.

Why these numbers: a steady state is only measured after the norm has relaxed, i.e. after
several times ``1/(8 lr lam)`` steps for SGD (``1/(2 lr wd)`` for AdamW), so the grids use
``lr*lam >= 1e-3`` (``>= 2e-3`` in quick) and windows over the second half of each run. Adam
uses ``betas = (0.9, 0.99)``: its transients lag by about ``1/(1-b2)`` steps (THEORY.md), which
with 0.999 would outlast the runs. Training runs are float32 unless an exact identity is
checked on them (float64, BN eps = 0).
"""

import copy

PRESETS = ("default", "full", "quick", "tiny")

_DATA = {
    "default": {"subset": None, "test_subset": None},
    "full": {"subset": None, "test_subset": None},
    "quick": {"subset": 10000, "test_subset": 2000},
}
_SYNTHETIC = {
    "default": {"n_train": 20000, "n_test": 5000, "shape": [1, 28, 28]},
    "full": {"n_train": 20000, "n_test": 5000, "shape": [1, 28, 28]},
    "quick": {"n_train": 5000, "n_test": 2000, "shape": [1, 28, 28]},
    "tiny": {"n_train": 512, "n_test": 256, "shape": [1, 8, 8]},
}

_SIZES = {
    # the default fits the budget: symmetry runs 800 steps (BN running averages forgotten:
    # 0.9^800), no-L2 runs 2500; "full" keeps the longer ones. The norm runs stay at 6000: at 4000
    # their window (steps 2000-4000) still sees G2 drift, and the SGD + L2 norm law missed by 7%
    "default": {
        "width": 256,
        "invariance": {"train_steps": 300, "scales": [10.0 ** k for k in range(-4, 5)]},
        "effective_lr": {"train_steps": 300, "c": [10 ** (k / 4) for k in range(-4, 5)]},
        "norm_dynamics": {"steps": 6000, "lr": 0.1, "lam": 5e-3, "momentum_lr": 0.01},
        "one_knob": {"steps": 2000, "sgd_lr": [0.1, 0.2, 0.4], "sgd_lam": [1e-2, 2e-2, 4e-2],
                     "adam_lr": [1e-3, 2e-3, 4e-3], "adam_lam": [1e-3, 4e-3, 1.6e-2],
                     "adamw_lr": [1e-3, 2e-3, 4e-3], "adamw_wd": [2.0, 4.0, 8.0],
                     "sym_steps": 800, "sym_c": [0.5, 2.0, 3.0]},
        "fix": {"lr": 0.025, "lam": [4e-2, 1.6e-1, 6.4e-1], "seeds": 6, "steps": 1000, "identity_steps": 100,
                "lr_factor": 4, "dtype": "float32"},
        "no_l2": {"steps": 2500, "lr": 0.1, "lam": 2e-2, "w0_scales": [0.25, 1.0, 4.0]},
        "sharpness": {"checkpoints": [0, 100, 200, 400, 800], "identity_at": [800],
                      "lr": 0.1, "lam": 4e-2, "curvature_batch": 512, "lanczos_tol": 1e-6,
                      "identity_train_steps": 100, "identity_batch": 256, "units": 2, "c": [0.01, 0.1, 10.0, 100.0],
                      "bend_c": [1.0, 0.1, 0.01], "cnn_widths": [8, 16], "cnn_checkpoints": [0, 100, 200],
                      "cnn_batch": 128},
        "optimizer_angles": {"steps": 1200, "theta": 0.02, "pilot_steps": 400},
        "cross_run": {"width": 128, "steps": 2000, "pairs": [[0.1, 2e-2], [0.05, 4e-2], [0.2, 1e-2]]},
        "init_forgetting": {"width": 128, "steps": 2000, "scales": [0.25, 1.0, 4.0], "sgd_lr": 0.1, "sgd_lam": 2e-2,
                            "adamw_lr": 2e-3, "adamw_wd": 4.0,
                            "momentum_lr": 0.01, "momentum": 0.9,
                            "rescale": [2.0, 0.5], "rescale_at": 1000, "rescale_steps": 400},
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
        "fix": {"lr": 0.025, "lam": [4e-2, 1.6e-1, 6.4e-1], "seeds": 4, "steps": 300, "identity_steps": 100,
                "lr_factor": 4, "dtype": "float32"},
        "no_l2": {"steps": 1500, "lr": 0.1, "lam": 4e-2, "w0_scales": [0.25, 4.0]},
        "sharpness": {"checkpoints": [0, 100, 200, 400], "identity_at": [0, 400],
                      "lr": 0.1, "lam": 4e-2, "curvature_batch": 256, "lanczos_tol": 1e-6,
                      "identity_train_steps": 30, "identity_batch": 128, "units": 1, "c": [0.1, 10.0],
                      "bend_c": [1.0, 0.1, 0.01], "cnn_widths": [8, 16], "cnn_checkpoints": [0, 50],
                      "cnn_batch": 64},
        "optimizer_angles": {"steps": 1200, "theta": 0.02, "pilot_steps": 400},
        "cross_run": {"width": 128, "steps": 1000, "pairs": [[0.1, 2e-2], [0.05, 4e-2], [0.2, 1e-2]]},
        "init_forgetting": {"width": 128, "steps": 1500, "scales": [0.25, 1.0, 4.0], "sgd_lr": 0.1, "sgd_lam": 2e-2,
                            "adamw_lr": 2e-3, "adamw_wd": 4.0,
                            "momentum_lr": 0.01, "momentum": 0.9,
                            "rescale": [2.0, 0.5], "rescale_at": 1000, "rescale_steps": 300},
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
        "fix": {"lr": 0.025, "lam": [4e-2, 1.6e-1, 6.4e-1], "seeds": 2, "steps": 100, "identity_steps": 20,
                "lr_factor": 4, "dtype": "float32"},
        "no_l2": {"steps": 200, "lr": 0.1, "lam": 4e-2, "w0_scales": [0.25, 4.0]},
        "sharpness": {"checkpoints": [0, 30, 60], "identity_at": [0, 60],
                      "lr": 0.1, "lam": 4e-2, "curvature_batch": 128, "lanczos_tol": 1e-8,
                      "identity_train_steps": 10, "identity_batch": 64, "units": 2, "c": [0.1, 10.0],
                      "bend_c": [1.0, 0.01], "cnn_widths": [4, 8], "cnn_checkpoints": [0, 30],
                      "cnn_batch": 32},
        "optimizer_angles": {"steps": 900, "theta": 0.02, "pilot_steps": 300},
        "cross_run": {"width": 16, "steps": 150, "pairs": [[0.1, 2e-2], [0.05, 4e-2], [0.2, 1e-2]]},
        "init_forgetting": {"width": 16, "steps": 200, "scales": [0.25, 1.0, 4.0], "sgd_lr": 0.1, "sgd_lam": 2e-2,
                            "adamw_lr": 2e-3, "adamw_wd": 4.0,
                            "momentum_lr": 0.01, "momentum": 0.9,
                            "rescale": [2.0, 0.5], "rescale_at": 100, "rescale_steps": 300},
        "schedule": {"width": 16, "identity_steps": 40, "steps": 150, "sgd": [0.1, 1e-2], "momentum": [0.01, 1e-2]},
        "adam_growth": {"width": 16, "steps": 200, "lr": 2e-3},
        "momentum_S": {"width": 16, "steps": 200, "lr": 0.01, "lam": 1e-2},
    },
}

# "full": the default plus the longer runs and larger grids that do not fit its budget
_FULL = {"one_knob": {"sym_steps": 1500}, "no_l2": {"steps": 3000},
         # the BN CNN (full only): a CNN step costs ~10x an MLP step here
         "optimizer_angles": {"cnn": {"widths": [32, 64], "steps": 600, "theta": 0.04, "pilot_steps": 200}}}


def _merged(base, over):
    """``base`` with ``over``'s entries put in, nested dicts merged key by key (a new dict)."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _merged(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


_SIZES["full"] = _merged(_SIZES["default"], _FULL)
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
