"""Figures of the held-out predictions (``cross_run``, ``init_forgetting``, ``schedule``,
``adam_growth``, ``momentum_S``): each marks the predicted value (black, drawn first) before
the measured one, on linear axes where heights are compared.

Conventions as in ``refnet.plots``: L2 is the paper's ``lam ||w||^2`` (gradient ``2 lam w``),
``wd`` AdamW's decoupled decay, angles in radians per step.
"""

import numpy as np

from refnet.plots.common import COLORS, L2_NOTE, _figure, _save


def _ratio_panel(ax, rows, keys, title, tol):
    """Measured over predicted, one column per row: the prediction (1, black, drawn first) and each
    quantity's tolerance band, then the measured points."""
    ax.axhline(1.0, color="k", lw=2, zorder=1, label="predicted (hyperparameters only)")
    for j, key in enumerate(keys):
        ax.axhspan(1 - tol[key], 1 + tol[key], color=COLORS[j], alpha=0.08, zorder=0)
        for i, r in enumerate(rows):
            x = i + (j - (len(keys) - 1) / 2) * 0.25
            pred, meas = r[key]
            ax.plot(x, meas / pred, "osD"[j], color=COLORS[j], ms=6, zorder=2,
                    label=f"{key} (tolerance ±{tol[key]:.3g}, band)" if i == 0 else None)
    ax.set_xticks(range(len(rows)), [f"lr {r['lr']:g}\nlam {r['lam']:g}\n{r['layer'].split(' (')[0]}" for r in rows],
                  fontsize=7)
    ax.set(title=title, ylabel="measured / predicted ratio to the first run (linear)")
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
                     f"{net} net: steady ratios (last third)", data["tol"][net])
    return _save(fig, path, "Look at: the coloured points on the black line at 1 (predicted ratios: ||w||² "
                 "√((lr/lam)/(lr0/lam0)), effective lr and angle 1), inside their bands. SGD + L2 on the "
                 "scale-invariant weights, same init and batches. "
                 + L2_NOTE)


def _return_panel(ax, runs, opt, ylab, at):
    """The return after the rescale: predicted y/y* (black, drawn first; the one-variable law
    dotted), then the measured curves per layer, with the half-way times marked."""
    for j, r in enumerate(r for r in runs if r["opt"] == opt):
        k = np.arange(len(r["predicted"]))
        ax.plot(k, r["predicted"], "k-", lw=2.2, zorder=1,
                label="predicted (hyperparameters; half-way: |)" if j == 0 else None)
        ax.plot(k, r["linear"], ":", color="0.4", lw=1.4, zorder=1,
                label=("one-variable law, rate " + {"sgd": "8 lr lam", "momentum": "8 lr lam/(1−μ)",
                                                     "adamw": "2 lr wd (no v lag)"}[opt])
                if j == 0 else None)
        t = r["layers"][0]["t_pred"]
        if np.isfinite(t):
            ax.plot([t, t], [np.interp(t, k, r["predicted"]) * 0.8, np.interp(t, k, r["predicted"]) * 1.25],
                    "k-", lw=2, zorder=1)
        for i, L in enumerate(r["layers"]):
            m = np.asarray(L["measured"])
            ax.plot(np.arange(1, m.size + 1), m, color=COLORS[2 * i + j], lw=1.2, zorder=2,
                    label=f"x{r['factor']:g}, {L['layer'].split(' (')[0]}: half-way {L['t_meas']:.0f} "
                          f"(pred. {L['t_pred']:.0f})")
            if np.isfinite(L["t_meas"]):
                ax.plot(L["t_meas"], np.interp(L["t_meas"], np.arange(1, m.size + 1), m), "o", color=COLORS[2 * i + j],
                        ms=5, zorder=3)
    ax.axhline(1.0, color="0.6", lw=0.8, zorder=0)
    ax.set(yscale="log", xlabel=f"steps after the rescale at step {at}",
           ylabel=f"{ylab} / y* (median unit; y*: before the rescale)",
           title={"sgd": "SGD + L2", "adamw": "AdamW", "momentum": "SGD + momentum + L2"}[opt]
           + ": return after rescaling a settled run")
    ax.legend(fontsize=6.5, loc="upper right")


def init_forgetting(data, path):
    rescale = data.get("rescale")
    momentum = bool(rescale) and any(r["opt"] == "momentum" for r in rescale["runs"])
    fig, axes = _figure(2 + bool(rescale) + momentum, 2, "Prediction — the equilibrium forgets the initial scale, "
                        "at the predicted relaxation rate")
    for k, (opt, ylab) in enumerate((("sgd", "||w||⁴"), ("adamw", "||w||²"))):
        rate = data["rate"][opt]
        name = list(data["runs"][opt][0]["layers"])[-1]
        ax = axes[k][0]
        for i, r in enumerate(data["runs"][opt]):
            L = r["layers"][name]
            step = np.asarray(r["step"], dtype=float)
            dev = np.abs(np.asarray(L["y"]) - L["late"])
            sel = (step >= data["fit"][0] / rate) & (step <= data["fit"][1] / rate)
            if r["scale"] != 1.0 and sel.any():  # anchored at the fit window's start, drawn on to 6 relaxation times
                t0, span = step[sel][0], step[(step >= data["fit"][0] / rate) & (step <= 6 / rate)]
                ax.plot(span, dev[sel][0] * np.exp(-rate * (span - t0)), "k--", lw=2, zorder=1,
                        label=f"predicted rate {rate:.3g}/step (fit window shaded)" if i == 0 else None)
            ax.plot(step, np.maximum(dev, 1e-12), color=COLORS[i], lw=1.2, zorder=2,
                    label=f"w0 × {r['scale']:g}" + (f": fitted {L['fitted_rate']:.3g}" if r["scale"] != 1 else ""))
        ax.axvspan(data["fit"][0] / rate, data["fit"][1] / rate, color="0.92", zorder=0)
        ax.set(yscale="log", xlabel="step", ylabel=f"|{ylab} − late mean|, median unit, {name}",
               title=("SGD + L2" if opt == "sgd" else "AdamW") + ": distance to the equilibrium")
        ax.legend(fontsize=7)
        ax = axes[k][1]
        for i, r in enumerate(data["runs"][opt]):
            ax.plot(r["step"], r["layers"][name]["efflr"], color=COLORS[i], lw=1.2, label=f"w0 × {r['scale']:g}")
        ax.set(yscale="log", xlabel="step", ylabel="effective lr, median unit",
               title="effective lr (SGD lr/||w||², AdamW lr/||w||)")
        ax.legend(fontsize=7)
    if rescale:
        for k, (opt, ylab) in enumerate((("sgd", "||w||⁴"), ("adamw", "||w||²"))):
            _return_panel(axes[2][k], rescale["runs"], opt, ylab, rescale["at"])
        if momentum:
            _return_panel(axes[3][0], rescale["runs"], "momentum", "||w||⁴", rescale["at"])
            axes[3][1].axis("off")
    return _save(fig, path, "Look at: the x4 curves on the dashed slopes (predicted from lr·lam, lr·wd) over the "
                 "shaded fit window; the x0.25 runs start near (SGD) or at (AdamW) their equilibrium and do not follow "
                 "them (that claim fails); the effective lr curves merge. Bottom rows: a settled run rescaled x2 and x1/2 "
                 "(weights and optimizer state) at step T; the coloured curves should lie on the black predicted ones "
                 "(AdamW's includes v's 1/(1−β2) lag; the dotted one-variable law leaves it out), the dots on the "
                 "| marks. Fully invariant BN MLP. " + L2_NOTE)


def schedule(data, path):
    fig, axes = _figure(1, 3, "L2 is a learning-rate schedule (Li & Arora): SGD + L2 = SGD on lr·r^(−2t−1)")
    ax = axes[0][0]
    for i, r in enumerate(data["identity"]):
        lab = f"momentum {r['momentum']:g}" + (", zero buffer" if r["run"] == "zero_buffer" else
                                               ", buffer of §24" if r["momentum"] else "")
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
        lo, hi = r["diff_ci_batch"]
        ax.errorbar(i + 0.2, r["diff_batch"], yerr=[[r["diff_batch"] - lo], [hi - r["diff_batch"]]], fmt="o", mfc="none",
                    color=COLORS[i], capsize=4, alpha=0.7, zorder=2,
                    label="same, BN batch statistics (diagnosis)" if i == 0 else None)
    ax.set(xticks=[], ylabel="test accuracy, L2 run − schedule run", xlim=(-0.8, len(data["prediction"]) - 0.2),
           title="Prediction: paired (McNemar) 95% interval")
    ax.legend(fontsize=7)
    return _save(fig, path, "Look at: the identity points below the tolerance (and the zero-buffer point far above "
                 "it), the solid and dashed effective-lr curves on top of each other, and 0 inside each filled interval "
                 "(eval mode: the claim; hollow: batch statistics, where BN's running averages cannot lag). "
                 "Schedule and L2 on the scale-invariant weights only. " + L2_NOTE)


def adam_growth(data, path):
    names = list(data["layers"])
    fig, axes = _figure(2, len(names), f"Prediction — Adam without L2 (lr {data['lr']:g}): ||w||² grows linearly, "
                        "the angle per step falls as 1/||w||")
    step = np.asarray(data["step"])
    T = step[-1]
    for j, name in enumerate(names):
        L = data["layers"][name]
        ax = axes[0][j]
        ax.plot(step, L["law_x"], "k-", lw=2.2, zorder=1, label="predicted: theory.adam_growth (lr, betas, d, ||w0||)")
        s, c = L["early_fit"]
        ax.plot(step[step >= 0.2 * T], c + s * step[step >= 0.2 * T], "k:", lw=1.4, zorder=1,
                label=f"predicted from steps 0.2T–0.4T: E||u||² = {L['u2_early']:.0f} (law F·d = {L['u2_law']:.0f})")
        ax.plot(step, L["x"], color=COLORS[0], lw=1.4, zorder=2, label="measured, median unit")
        ax.axvspan(0.2 * T, 0.4 * T, color="0.9", zorder=0)
        ax.set(title=f"{name} (d = {L['d']})", xlabel="step", ylabel="||w||² (linear)")
        ax.legend(fontsize=7)
        ax = axes[1][j]
        ax.plot(step[1:], L["law_angle"][1:], "k-", lw=2.2, zorder=1, label="predicted √(k F lr² d)/||w_t|| (with v's lag)")
        ax.plot(step[1:], L["angle"][1:], color=COLORS[1], lw=1.2, zorder=2, label="measured, median unit (block RMS)")
        ax.set(xscale="log", yscale="log", xlabel="step", ylabel="angle per step [rad]")
        ax.legend(fontsize=7)
    return _save(fig, path, "Look at: the measured curves on the black lines; the shaded early window alone sets the "
                 "dotted line. Ordinary BN MLP, Adam betas " + ", ".join(f"{b:g}" for b in data["betas"]) + ", no L2.")


def momentum_S(data, path):
    names = list(data["layers"])
    fig, axes = _figure(1, 2, f"Prediction — the momentum norm factor S from another run (SGD + momentum {data['mu']:g}, "
                        f"lr {data['lr']:g}, lam {data['lam']:g})")
    ax = axes[0][0]
    for i, name in enumerate(names):
        L = data["layers"][name]
        ax.plot(range(len(L["c_reference"])), L["c_reference"], "o-", color=COLORS[i], ms=3, label=f"{name}: reference run")
        ax.plot(range(len(L["c_judged"])), L["c_judged"], "x--", color=COLORS[i], ms=4, alpha=0.6,
                label=f"{name}: judged run (not used)")
    ax.axhline(0, color="k", lw=0.6)
    ax.set(ylim=(-0.3, 0.3), xlabel="lag m", ylabel="gradient correlation c_m (median unit)",
           title="Lag correlations of the minibatch gradients")
    ax.legend(fontsize=7)
    ax = axes[0][1]
    for i, name in enumerate(names):
        L = data["layers"][name]
        ax.plot([i - 0.2, i + 0.2], [L["S_reference"]] * 2, "k-", lw=2.2, zorder=1,
                label="predicted S (reference run)" if i == 0 else None)
        ax.fill_between([i - 0.2, i + 0.2], [L["S_reference"] * (1 - data["tol"])] * 2,
                        [L["S_reference"] * (1 + data["tol"])] * 2, color="0.85", zorder=0,
                        label=f"tolerance ±{data['tol']:g}" if i == 0 else None)
        ax.plot(i, L["S_measured"], "o", color=COLORS[i], ms=8, zorder=2, label=f"{name}: measured S")
        ax.plot(i + 0.3, L["S_own_window"], "x", color="0.4", ms=7, zorder=2,
                label="S from the judged window (consistency)" if i == 0 else None)
    ax.axhline(1, color="0.6", ls=":", lw=1, label="S = 1 (uncorrelated law)")
    ax.set(xticks=range(len(names)), xticklabels=names, ylabel="S = ||w||⁴ / uncorrelated law (linear)",
           title="Norm factor: predicted vs measured")
    ax.legend(fontsize=7)
    return _save(fig, path, "Look at: the coloured points on the black bars. S = 1 + 2 Σ μ^m c_m; reference run = "
                 "another seed (initial weights and batch order). Ordinary BN MLP, L2 on the scale-invariant weights. "
                 + L2_NOTE)


PLOTTERS = {"cross_run": cross_run, "init_forgetting": init_forgetting, "schedule": schedule,
            "adam_growth": adam_growth, "momentum_S": momentum_S}
