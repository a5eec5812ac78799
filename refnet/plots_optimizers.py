"""The figure of experiment 9 (``refnet.experiments.optimizer_angles``): per optimizer, the
distribution over units of the steady angle per step, against the predicted angle, and each
optimizer's test accuracy. Registered in ``refnet.plots.PLOTTERS``."""

import numpy as np

from refnet.plots import COLORS, PLOTTERS, _figure, _save


HYPER_ONLY = ("sgdm", "adamw")  # besides Lion and Muon, whose layers carry "predicted_hyper"


def optimizer_angles(data, path):
    opts = list(data["optimizers"])
    names = list(next(iter(data["optimizers"].values()))["layers"])
    fig, axes = _figure(1, len(names) + 1, f"Exp. 9 — Rotational equilibrium across optimizers: decays set "
                        f"for {data['theta']:g} rad per step", width=5.6, height=5.2)
    x = np.arange(len(opts))
    for ax, name in zip(axes[0], names):
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
            if "predicted" in layer and hyper is None or "predicted_hyper" in layer:
                ax.plot([j - 0.4, j + 0.4], [layer["predicted"]] * 2, color="0.45", lw=1.5,
                        ls="--" if "predicted_hyper" in layer else "-",
                        label="with measured R (middle third)" if kind == "lion" else
                        "set angle (identity)" if kind == "rot_sgdm" else None)
        ax.axhline(data["theta"], color="0.5", ls=":", lw=1, label=f"target {data['theta']:g}")
        ax.set_xticks(x, [data["optimizers"][k]["title"] for k in opts], rotation=60, ha="right", fontsize=7)
        ax.set(title=name, ylabel="per-unit RMS angle per step, last third [rad]", yscale="log")
        ax.legend(fontsize=7)
    acc = axes[0][-1]
    acc.bar(x, [data["optimizers"][k]["test_accuracy"] for k in opts],
            color=[COLORS[j % len(COLORS)] for j in range(len(opts))], alpha=0.7)
    acc.set_xticks(x, [data["optimizers"][k]["title"] for k in opts], rotation=60, ha="right", fontsize=7)
    low = min(data["optimizers"][k]["test_accuracy"] for k in opts)
    acc.set(title="test accuracy at the end", ylabel="accuracy", ylim=(max(0.0, low - 0.05), 1.0))
    return _save(fig, path, "Violins: per-unit angles; black: predicted from hyperparameters alone (SGD + "
                 "momentum + L2, AdamW; Lion, Muon with white-gradient R); dashed grey: Lion, Muon with R "
                 "measured in the middle third (a consistency check); solid grey: the wrappers' set angle "
                 "(identity). "
                 "Adam + L2 (no prediction) spreads with each unit's gradient scale. "
                 "L2: lam·||w||² in the loss; wd decoupled.")


PLOTTERS["optimizer_angles"] = optimizer_angles
