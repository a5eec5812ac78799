"""The figure of experiment 9 (``refnet.experiments.optimizer_angles``): per optimizer, the
distribution over units of the steady angle per step, against the predicted angle, and each
optimizer's test accuracy; one row per network (the BN MLP, and in the ``full`` preset the BN CNN).
"""

import numpy as np

from refnet.plots.common import COLORS, _figure, _save


HYPER_ONLY = ("sgdm", "adamw")  # besides Lion and Muon, whose layers carry "predicted_hyper"


def optimizer_angles(data, path):
    nets = [("BN MLP", data)] + ([("BN CNN", data["cnn"])] if "cnn" in data else [])
    cols = max(len(next(iter(d["optimizers"].values()))["layers"]) for _, d in nets) + 1
    fig, axes = _figure(len(nets), cols, "Exp. 9 — Rotational equilibrium across optimizers: decays set for "
                        + ", ".join(f"{d['theta']:g} rad per step ({net})" for net, d in nets), width=5.6, height=5.2)
    for row, (net, d) in zip(axes, nets):
        _angles_and_accuracy(row, d, net)
    return _save(fig, path, "Violins: per-unit angles; black: predicted from hyperparameters alone (SGD + "
                 "momentum + L2, AdamW; Lion, Muon with white-gradient R); dashed grey: Lion, Muon with R "
                 "measured in the middle third (a consistency check); solid grey: the wrappers' set angle "
                 "(identity); dotted black: Adam + L2 from each unit's G2 of the middle third (its l2 set from a "
                 "pilot run's G2). Adam + L2 spreads with each unit's gradient scale. "
                 "L2: lam·||w||² in the loss; wd decoupled.")


def _angles_and_accuracy(row, data, net):
    opts = list(data["optimizers"])
    names = list(next(iter(data["optimizers"].values()))["layers"])
    x = np.arange(len(opts))
    for ax, name in zip(row, names):
        for j, kind in enumerate(opts):
            layer = data["optimizers"][kind]["layers"][name]
            angles = np.asarray(layer["angles"])
            parts = ax.violinplot([angles], positions=[j], widths=0.8, showmedians=True, showextrema=False)
            for body in parts["bodies"]:
                body.set(facecolor=COLORS[j % len(COLORS)], alpha=0.45)
            hyper = layer.get("predicted_hyper", layer["predicted"] if kind in HYPER_ONLY else None)
            if hyper is not None:
                ax.plot([j - 0.4, j + 0.4], [hyper] * 2, "k-", lw=2,
                        label="predicted from hyperparameters" if kind == "sgdm" else None)
            if kind == "adam_l2":
                ax.plot([j - 0.4, j + 0.4], [layer["predicted"]] * 2, "k:", lw=2,
                        label="from G2 of the middle third")
            elif "predicted" in layer and hyper is None or "predicted_hyper" in layer:
                ax.plot([j - 0.4, j + 0.4], [layer["predicted"]] * 2, color="0.45", lw=1.5,
                        ls="--" if "predicted_hyper" in layer else "-",
                        label="with measured R (middle third)" if kind == "lion" else
                        "set angle (identity)" if kind == "rot_sgdm" else None)
        ax.axhline(data["theta"], color="0.5", ls=":", lw=1, label=f"target {data['theta']:g}")
        ax.set_xticks(x, [data["optimizers"][k]["title"] for k in opts], rotation=60, ha="right", fontsize=7)
        ax.set(title=f"{net}: {name}", ylabel="per-unit RMS angle per step, last third [rad]", yscale="log")
        ax.legend(fontsize=7)
    for ax in row[len(names):-1]:
        ax.axis("off")
    acc = row[-1]
    acc.bar(x, [data["optimizers"][k]["test_accuracy"] for k in opts],
            color=[COLORS[j % len(COLORS)] for j in range(len(opts))], alpha=0.7)
    acc.set_xticks(x, [data["optimizers"][k]["title"] for k in opts], rotation=60, ha="right", fontsize=7)
    low = min(data["optimizers"][k]["test_accuracy"] for k in opts)
    acc.set(title=f"{net}: test accuracy at the end", ylabel="accuracy", ylim=(max(0.0, low - 0.05), 1.0))


PLOTTERS = {"optimizer_angles": optimizer_angles}
