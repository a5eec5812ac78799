"""Figures of the held-out predictions (``cross_run``, ``init_forgetting``, ``schedule``,
``adam_growth``, ``momentum_S``): each marks the predicted value (black, drawn first) before
the measured one, on linear axes where heights are compared.

Conventions as in ``refnet.plots``: L2 is the paper's ``lam ||w||^2`` (gradient ``2 lam w``),
``wd`` AdamW's decoupled decay, angles in radians per step.
"""

import numpy as np

from refnet.plots import COLORS, L2_NOTE, _figure, _save


def _ratio_panel(ax, rows, keys, title):
    """Predicted (black bar, first) and measured (colored point) ratios, one column per row."""
    for j, key in enumerate(keys):
        for i, r in enumerate(rows):
            x = i + (j - (len(keys) - 1) / 2) * 0.25
            pred, meas = r[key]
            ax.plot([x - 0.1, x + 0.1], [pred, pred], "k-", lw=2.2, zorder=1,
                    label="predicted (hyperparameters only)" if (i, j) == (0, 0) else None)
            ax.plot(x, meas, "osD"[j], color=COLORS[j], ms=6, zorder=2, label=f"measured: {key}" if i == 0 else None)
    ax.set_xticks(range(len(rows)), [f"lr {r['lr']:g}\nlam {r['lam']:g}\n{r['layer'].split(' (')[0]}" for r in rows],
                  fontsize=7)
    ax.set(title=title, ylabel="ratio to the first run (linear)")
    ax.legend(fontsize=7)


def cross_run(data, path):
    fig, axes = _figure(2, 2, "Prediction — L2 only sets the scale: runs sharing lr·lam reach the same "
                        "effective lr and angle, ||w||² ∝ √(lr/lam)")
    for k, net in enumerate(("invariant", "ordinary")):
        ax = axes[k][0]
        for i, t in enumerate(data["traces"][net]):
            ax.plot(t["step"], t["efflr"], color=COLORS[i], lw=1.4, label=f"lr {t['lr']:g}, lam {t['lam']:g}")
        ax.set(yscale="log", xlabel="step", ylabel=f"lr/||w||², median unit, {data['traces'][net][0]['layer']}",
               title=f"{net} net: effective lr over training")
        ax.legend(fontsize=7)
        _ratio_panel(axes[k][1], data["ratios"][net], ("norm2", "efflr", "angle"),
                     f"{net} net: steady ratios (last third)")
    return _save(fig, path, "Look at: the coloured points on the black bars (||w||² ratio √((lr/lam)/(lr0/lam0)), "
                 "effective lr and angle ratio 1). SGD + L2 on the scale-invariant weights, same init and batches. "
                 + L2_NOTE)


def init_forgetting(data, path):
    fig, axes = _figure(2, 2, "Prediction — the equilibrium forgets the initial scale, at the predicted "
                        "relaxation rate")
    for k, (opt, ylab) in enumerate((("sgd", "||w||⁴"), ("adamw", "||w||²"))):
        rate = data["rate"][opt]
        name = list(data["runs"][opt][0]["layers"])[-1]
        ax = axes[k][0]
        for i, r in enumerate(data["runs"][opt]):
            L = r["layers"][name]
            step = np.asarray(r["step"], dtype=float)
            dev = np.abs(np.asarray(L["y"]) - L["late"])
            sel = (step >= data["fit"][0] / rate) & (step <= data["fit"][1] / rate)
            if r["scale"] != 1.0 and sel.any():
                t0 = step[sel][0]
                ax.plot(step[sel], dev[sel][0] * np.exp(-rate * (step[sel] - t0)), "k--", lw=2, zorder=1,
                        label=f"predicted rate {rate:.3g}/step" if i == 0 else None)
            ax.plot(step, np.maximum(dev, 1e-12), color=COLORS[i], lw=1.2, zorder=2,
                    label=f"w0 × {r['scale']:g}" + (f": fitted {L['fitted_rate']:.3g}" if r["scale"] != 1 else ""))
        ax.set(yscale="log", xlabel="step", ylabel=f"|{ylab} − late mean|, median unit, {name}",
               title=("SGD + L2" if opt == "sgd" else "AdamW") + ": distance to the equilibrium")
        ax.legend(fontsize=7)
        ax = axes[k][1]
        for i, r in enumerate(data["runs"][opt]):
            ax.plot(r["step"], r["layers"][name]["efflr"], color=COLORS[i], lw=1.2, label=f"w0 × {r['scale']:g}")
        ax.set(yscale="log", xlabel="step", ylabel="effective lr, median unit",
               title="effective lr (SGD lr/||w||², AdamW lr/||w||)")
        ax.legend(fontsize=7)
    return _save(fig, path, "Look at: the dashed slopes (predicted from lr·lam, lr·wd) against the curves over "
                 "the fit window, and the effective lr curves merging. Fully invariant BN MLP. " + L2_NOTE)


def schedule(data, path):
    fig, axes = _figure(1, 3, "L2 is a learning-rate schedule (Li & Arora): SGD + L2 = SGD on lr·r^(−2t−1)")
    ax = axes[0][0]
    for i, r in enumerate(data["identity"]):
        lab = f"momentum {r['momentum']:g}" + (", zero buffer" if r["run"] == "zero_buffer" else
                                               ", buffer of §21" if r["momentum"] else "")
        ax.plot(i, max(r["max_dprob"], 1e-18), "o", color=COLORS[i], ms=8, label=lab)
    ax.axhline(1e-9, color="k", ls=":", lw=1, label="tolerance 1e-9 (identity)")
    ax.set(yscale="log", ylim=(1e-18, 10), xticks=[], ylabel="max |Δ softmax| on the test set (floor 1e-18)",
           title="Identity: fully invariant net, float64, BN eps 0")
    ax.legend(fontsize=7)
    ax = axes[0][1]
    for i, r in enumerate(data["prediction"]):
        ax.plot(r["step"], r["efflr_l2"], color=COLORS[i], lw=2.5, alpha=0.5, label=f"L2, momentum {r['momentum']:g}")
        ax.plot(r["step"], r["efflr_schedule"], "--", color=COLORS[i], lw=1.2, label="schedule (no L2)")
        ax.plot(r["step"], r["lr_t"], ":", color=COLORS[i], lw=1, label="lr_t of the schedule")
    ax.set(yscale="log", xlabel="step", ylabel=f"lr/||w||² (median unit, {data['prediction'][0]['layer']}) and lr_t",
           title="Ordinary net, float32, eps 1e-5: effective lr")
    ax.legend(fontsize=7)
    ax = axes[0][2]
    for i, r in enumerate(data["prediction"]):
        ax.plot([i - 0.25, i + 0.25], [0, 0], "k-", lw=2.2, zorder=1, label="predicted: 0" if i == 0 else None)
        lo, hi = r["diff_ci"]
        ax.errorbar(i, r["diff"], yerr=[[r["diff"] - lo], [hi - r["diff"]]], fmt="o", color=COLORS[i], capsize=5,
                    zorder=2, label=f"momentum {r['momentum']:g}: {r['acc_l2']:.3f} vs {r['acc_schedule']:.3f}")
    ax.set(xticks=[], ylabel="test accuracy, L2 run − schedule run", xlim=(-0.8, len(data["prediction"]) - 0.2),
           title="Prediction: paired (McNemar) 95% interval")
    ax.legend(fontsize=7)
    return _save(fig, path, "Look at: the identity points below the tolerance (and the zero-buffer point far above "
                 "it), the solid and dashed effective-lr curves on top of each other, and 0 inside each interval. "
                 "Schedule and L2 on the scale-invariant weights only. " + L2_NOTE)


PLOTTERS = {"cross_run": cross_run, "init_forgetting": init_forgetting, "schedule": schedule}
