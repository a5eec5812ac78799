"""The figures of the paper's claims, experiments 1-8 (``refnet.experiments``): one function per
experiment, each taking that experiment's data and a path."""

from matplotlib.ticker import NullFormatter
import numpy as np

from refnet.plots.common import COLORS, L2_NOTE, _band, _figure, _floor, _save


def invariance(data, path):
    fig, axes = _figure(1, 3, "Exp. 1 — Invariance: rescaling normalized weights changes nothing (float64)")
    a = data["scales"]
    names = {"loss": "|ΔL| / L", "prob": "max |Δ softmax|", "grad": "||a·g(aw) − g(w)|| / ||g||",
             "others": "other params' grads"}
    for ax, (norm, d) in zip(axes[0], data["norms"].items()):
        for i, (k, text) in enumerate(names.items()):
            ax.loglog(a, _floor(d["eps0"][k]), "o-", color=COLORS[i], ms=4, label=f"{text}, eps = 0")
            if norm != "wn":
                ax.loglog(a, _floor(d["eps"][k]), "x--", color=COLORS[i], ms=4, alpha=0.7)
        ax.axhline(data["tolerance"], color="k", ls=":", lw=1, label="tolerance")
        group = "whole tensor × a" if norm == "ln" else "each unit × a·u, u ∈ [½, 2]"
        ax.set(title=f"{norm.upper()} ({group})", xlabel="scale factor a", ylabel="deviation", ylim=(1e-18, 1e2))
    axes[0][-1].plot([], [], "kx--", label="same, eps = 1e-5 (BN, LN)")
    axes[0][-1].legend(fontsize=7, loc="upper right")
    return _save(fig, path, "solid: normalization eps = 0 (exact); dashed: eps = 1e-5 (default) — breaks where a²·var ~ eps."
                 " Training mode (batch statistics), one batch of test images. Floor at 1e-18 = exactly 0.")


def effective_lr(data, path):
    fig, axes = _figure(1, 2, "Exp. 2 — One step after w → c·w: SGD turns by c⁻², Adam by c⁻¹")
    c = np.asarray(data["c"])
    for ax, opt in zip(axes[0], ("sgd", "adam")):
        for i, name in enumerate(data["layers"]):
            tan = np.asarray(data["curves"][f"{opt}/{name}"]["tan"])
            s = data["slopes"][f"{opt}/{name}"]
            ax.loglog(c, tan, "o", color=COLORS[i], label=f"{name}: fitted slope {s:.4f}")
            ax.loglog(c, tan[len(c) // 2] * c ** round(s), "-", color=COLORS[i], lw=0.8)
        ax.set(title=f"{opt.upper()} (lr {data['lr'][opt]:g}, fresh state)", xlabel="rescaling c of the layer's weight",
               ylabel="RMS over units of tan(angle of one step) [rad]")
        ax.legend(fontsize=8)
    return _save(fig, path, "Lines: exact powers c⁻² (SGD) and c⁻¹ (Adam). BN MLP, float64, BN eps = 0. "
                 "Effective lr: SGD lr/||w||², Adam lr/||w||.")


def norm_dynamics(data, path):
    names = data["layers"]
    fig, axes = _figure(1, len(names), f"Exp. 3 — Weight norm under SGD (lr {data['lr']:g}): "
                        f"L2 (lam {data['lam']:g}) settles, no L2 grows")
    step = np.asarray(data["step"])
    for ax, name in zip(axes[0], names):
        p = data["panels"][name]
        _band(ax, step, p["l2_norm"], COLORS[0], "L2: ||w|| (median, 10–90% of units)")
        ax.plot(step, p["l2_equilibrium"], "--", color="k", lw=1.2,
                label="L2 equilibrium from the measured G2 (lr G2/(4 lam(1−lr lam)))^¼")
        _band(ax, step, p["free_norm"], COLORS[1], "no L2: ||w||")
        ax.plot(step, p["free_law"], ":", color="k", lw=1.4, label="integrated measured G2: (||w0||⁴ + 2 lr² Σ G2)^¼")
        t = np.arange(len(p["unit_norm"]))
        ax.plot(t, p["unit_norm"], color=COLORS[2], lw=0.8, label="one unit (L2), measured")
        ax.plot(t[::max(1, len(t) // 60)], np.asarray(p["unit_recursion"])[::max(1, len(t) // 60)], "o",
                color=COLORS[3], ms=3, mfc="none", label="identity 4 iterated from measured G~²")
        ax.set(title=name, xlabel="step", ylabel="||w|| per unit (log)", yscale="log")
    axes[0][0].legend(fontsize=7)
    return _save(fig, path, "BN MLP on real data, float64, BN eps = 0, batch 128. The dashed and dotted lines use the "
                 "run's own measured G2: consistency checks of the norm recursion, not predictions. " + L2_NOTE)


def lr_dynamics(data, path):
    names = data["layers"]
    fig, axes = _figure(2, len(names), f"Exp. 4 — Effective lr and angle per step vs equilibrium (lam {data['lam']:g})")
    run_lr = data.get("run_lr", {"sgd": data["lr"]})
    for j, name in enumerate(names):
        for k, (run, p) in enumerate((r, v[name]) for r, v in data["runs"].items()):
            lab = f"SGD lr {run_lr[run]:g}" if run == "sgd" else f"SGD + momentum 0.9, lr {run_lr[run]:g}"
            step = np.asarray(p["step"])
            axes[1][j].axhline(p["angle_pred"], ls="--", color="k" if k == 0 else COLORS[3], lw=1.2,
                               label=f"{lab}: predicted arccos(1 − 2 lr lam/(1+mu))")
            _band(axes[0][j], step, p["efflr"], COLORS[k], f"{lab}: measured")
            axes[0][j].plot(step, p["efflr_pred"], "--", color="k" if k == 0 else COLORS[3], lw=1.2,
                            label=f"{lab}: equilibrium from the measured G2 (consistency)")
            _band(axes[1][j], step, p["angle"], COLORS[k], f"{lab}: measured (RMS per block)")
        runs = "; ".join(("SGD" if r == "sgd" else "momentum 0.9") + f" lr {run_lr[r]:g}" for r in data["runs"])
        axes[0][j].set(title=f"{name} ({runs})", xlabel="step", ylabel="effective lr lr/||w||² (log)", yscale="log")
        axes[1][j].set_title(f"{name} ({runs})", fontsize=10)
        axes[1][j].set(xlabel="step", ylabel="angle per step [rad] (log)", yscale="log")
    axes[0][0].legend(fontsize=7)
    axes[1][0].legend(fontsize=7)
    return _save(fig, path, "Bands: 10–90% of units. " + L2_NOTE)


def _scatter(ax, runs, key, pred_fn=None):
    lrs = sorted({r["lr"] for r in runs})
    for r in runs:
        j = lrs.index(r["lr"])
        color, x = COLORS[j % len(COLORS)], r["knob"] * 1.07 ** (j - (len(lrs) - 1) / 2)  # runs side by side
        for i, (name, v) in enumerate(r["layers"].items()):
            ax.plot(x, v[key], "os"[i % 2], color=color, ms=6, mfc="none" if i else color)
            if pred_fn:
                ax.plot(x, v["pred"], "_", color="k", ms=10)
    for i, lr in enumerate(lrs):
        ax.plot([], [], "o", color=COLORS[i], label=f"lr {lr:g}")
    ax.plot([], [], "ko", label="layer 1 (filled)")
    ax.plot([], [], "ks", mfc="none", label="layer 2 (open)")
    if pred_fn:
        ax.plot([], [], "_", color="k", ms=12, label="theory (per run)")
    ax.set(xscale="log", yscale="log")


def one_knob(data, path):
    g = data["grids"]
    fig, axes = _figure(2, 3, "Exp. 5 — One knob: the steady angle depends on lr·lam (SGD), lr²·lam (Adam+L2), lr·wd (AdamW)")
    _scatter(axes[0][0], g["sgd"], "angle", True)
    x = np.logspace(np.log10(min(r["knob"] for r in g["sgd"])) - 0.2, np.log10(max(r["knob"] for r in g["sgd"])) + 0.2)
    axes[0][0].plot(x, np.arccos(1 - 2 * x), "k-", lw=0.8, label="arccos(1 − 2 lr lam)")
    axes[0][0].set(title="SGD + L2", xlabel="lr · lam", ylabel="steady angle per step [rad]")
    _scatter(axes[0][1], g["adam_invariant"], "angle", True)
    axes[0][1].set(title="Adam + L2, fully invariant net (β = 0.9, 0.99)", xlabel="lr² · lam",
                   ylabel="steady angle per step [rad]")
    _scatter(axes[1][2], g["adam"], "ratio")
    axes[1][2].axhline(1.0, color="k", lw=0.8)
    axes[1][2].set_yscale("linear")
    axes[1][2].set(title="Adam + L2, ordinary net (trained γ, β, head)", xlabel="lr² · lam",
                   ylabel="measured / theory, steady angle")
    axes[1][2].legend(fontsize=7)
    _scatter(axes[0][2], g["adamw"], "angle", True)
    axes[0][2].set(title="AdamW (β = 0.9, 0.99)", xlabel="lr · wd", ylabel="steady angle per step [rad]")
    for r in g["sgd_invariant"]:
        axes[1][0].plot(r["knob"], r["accuracy"], "o", color=COLORS[0])
    for r in g["sgd"]:
        axes[1][0].plot(r["knob"], r["accuracy"], "s", color=COLORS[1], mfc="none")
    axes[1][0].plot([], [], "o", color=COLORS[0], label="fully invariant net (no γ/β, frozen head)")
    axes[1][0].plot([], [], "s", color=COLORS[1], mfc="none", label="ordinary net (trained γ, β, head)")
    axes[1][0].set(title="SGD + L2: test accuracy", xscale="log", xlabel="lr · lam", ylabel="test accuracy")
    s = data["symmetry"]
    for i, key in enumerate(k for k in s if k != "c"):
        opt, net = key.split("/")
        axes[1][1].semilogy(s["c"], _floor(s[key]["max_dprob"]), "osD"[i] + "-", color=COLORS[i],
                            label=f"{'SGD (c² lr, lam/c²' if opt == 'sgd' else 'Adam (c lr, lam/c², eps/c'}, c·w0), {net} net")
    axes[1][1].axhline(1e-9, color="k", ls=":", lw=1, label="tolerance")
    axes[1][1].set(title="Symmetry map vs the base run (float64, BN eps 0)", xlabel="c",
                   ylabel="max |Δ softmax| on the test set (floor 1e-18)", ylim=(1e-19, 10))
    for ax in (axes[0][0], axes[0][1], axes[1][0], axes[1][1]):
        ax.legend(fontsize=7)
    for ax, kind in ((axes[0][0], "sgd"), (axes[0][1], "adam"), (axes[0][2], "adamw"), (axes[1][0], "sgd"),
                     (axes[1][2], "adam")):
        knobs = sorted({r["knob"] for r in g[kind]})
        ax.set_xticks(knobs, [f"{k:.2g}" for k in knobs], rotation=30, fontsize=8)
        ax.xaxis.set_minor_formatter(NullFormatter())
    return _save(fig, path, "Steady angle: median over units of the RMS angle over the second half of each run. "
                 "L2 / wd on the scale-invariant weights only. Adam's laws are claimed for layer 2 (layer 1 is fed "
                 "by raw pixels of uneven scale); on the ordinary net, Adam + L2 shrinks layer 1's γ and with it G2, "
                 "which the law takes as steady. " + L2_NOTE)


def _fix_arm(ax, data, arm, name, mk, color, shift=1.0):
    """One arm of fig 6: every seed's accuracy, and the mean with half the Tukey half-width either
    side, so that two lam values differ where their bars do not overlap."""
    t, S = data["tests"][arm], len(data["seeds"])
    acc = np.asarray(t["accuracy"])  # (lam, seed)
    x = np.asarray(data["lam"]) * shift
    for s in range(S):
        ax.plot(x, acc[:, s], mk, color=color, mfc="none", ms=4, alpha=0.7)
    ax.errorbar(x, acc.mean(1), yerr=t["half_width"] / 2, fmt=mk + "-", color=color, ms=7, capsize=4, lw=1.6,
                label=f"{name}: mean ± half the interval; {t['verdict']} (ratio {t['ratio']:.2g})")


def _lam_axis(ax, lams):
    ax.set_xscale("log")
    ax.set_xticks(lams, [f"{v:g}" for v in lams])
    ax.xaxis.set_minor_formatter(NullFormatter())


def fix(data, path):
    lams, S, lr = data["lam"], len(data["seeds"]), data["lr"]
    seeds = f"seeds {data['seeds'][0]}-{data['seeds'][-1]}" if S > 1 else f"seed {data['seeds'][0]}"
    fig, axes = _figure(1, 3, f"Exp. 6 — The fix: SGD lr {lr:g}, {data['steps']} steps, {data['dtype']} (both arms), "
                        f"{seeds} at each lam; projected (||w|| = 1) vs L2 only", width=4.8)
    proj = ("projected", "projected", "o", COLORS[0])
    ax = axes[0][0]
    _fix_arm(ax, data, *proj, shift=1 / 1.06)
    _fix_arm(ax, data, "l2", "L2 only", "s", COLORS[1], shift=1.06)
    ax.plot([], [], "o", color="0.4", mfc="none", ms=4, label="one seed")
    ax.set(xlabel="lam", ylabel="test accuracy", title=f"Both arms ({data['n_test']} test images)")
    _lam_axis(ax, lams)
    lo, hi = ax.get_ylim()
    ax.set_ylim(lo - 0.3 * (hi - lo), hi)  # room for the legend below the points
    ax.legend(fontsize=7, loc="lower left")
    ax = axes[0][1]  # the projected arm alone, on a scale where its interval shows
    _fix_arm(ax, data, *proj)
    chk = data["lr_check"]  # the same runs at a larger lr: does the accuracy depend on lr here at all?
    ax.plot([chk["lam"] * 1.1] * len(chk["accuracy"]), chk["accuracy"], "D", color=COLORS[2], mfc="none", ms=4)
    ax.plot([chk["lam"] * 1.1], [np.mean(chk["accuracy"])], "D", color=COLORS[2], ms=7,
            label=f"projected at lr {chk['lr']:g} (a check, not a claim): {chk['verdict']} with lr {lr:g} "
                  f"(ratio {chk['ratio']:.2g})")
    ax.set(xlabel="lam", ylabel="test accuracy", title="The prediction: projected, flat in lam")
    _lam_axis(ax, lams)
    lo, hi = ax.get_ylim()
    ax.set_ylim(lo - 0.5 * (hi - lo), hi)
    ax.legend(fontsize=7, loc="lower left")
    ax = axes[0][2]
    grid = np.geomspace(min(lams), max(lams), 50)
    ax.plot(grid, np.arccos(1 - 2 * lr * grid), "k--", lw=1, label="L2 only, predicted arccos(1 − 2 lr lam)")
    for arm, name, mk, color in (proj, ("l2", "L2 only", "s", COLORS[1])):
        runs = data["runs"][arm]
        layer = list(runs[0]["angle"])[min(1, len(runs[0]["angle"]) - 1)]  # layer 2: fed by normalized units
        ang = np.array([[r["angle"][layer] for r in runs if r["lam"] == lam] for lam in lams])
        ax.plot(lams, ang.mean(1), mk + "-", color=color, label=f"{name}, measured ({layer}, mean over seeds)")
    ax.set(yscale="log", xlabel="lam", ylabel="steady angle per step [rad] (median unit)",
           title="Steady angle, second half of each run")
    _lam_axis(ax, lams)
    ax.legend(fontsize=7)
    r = data["predicted_efflr_ratio"]
    return _save(fig, path, f"L2 on the scale-invariant weights only. Across the lam grid theory moves the effective "
                 f"lr {r['l2']:.1f}x under L2 (at equilibrium, equal G2) and {r['projected']:.3f}x projected "
                 f"(1/(1 − 2 lr lam)); at the smallest lam the L2 runs are still shrinking from their initial norm "
                 f"(below the dashed line). Interval: Tukey HSD over the lam values, seeds as blocks, simultaneous "
                 f"{1 - data['alpha']:.0%}, its width from how much the lam differences vary between seeds; ratio: "
                 "largest difference of means over the half-width (> 1: differ). " + L2_NOTE)


def balance(data, path):
    fig, axes = _figure(1, 1, "Exp. 7 — Balance: steady angle per layer (fully invariant MLP)", width=7.5)
    ax = axes[0][0]
    opts = list(data["optimizers"])
    for j, kind in enumerate(opts):
        rows = data["optimizers"][kind]["layers"]
        w = 0.8 / len(rows)
        for i, (name, v) in enumerate(rows.items()):
            x = j + (i - (len(rows) - 1) / 2) * w
            ax.plot([x - 0.47 * w, x + 0.47 * w], [v["pred"]] * 2, "k-", lw=2, zorder=3,
                    label="theory (Adam + L2: from the measured G2)" if (i, j) == (0, 0) else None)
            ax.bar(x, v["angle"], width=0.94 * w, color=COLORS[i], alpha=0.85,
                   label=f"{name} (d = {v['d']})" if j == 0 else None)
    names = {"sgd": "SGD + L2", "adam": "Adam + L2", "adamw": "AdamW"}
    ax.set_xticks(range(len(opts)), [names[k] + "\n" + ", ".join(f"{p} {v:g}" for p, v in data["optimizers"][k]["hyper"].items()
                                                           if p != "knob") for k in opts])
    ax.set(ylabel="steady angle per step [rad]", ylim=(0, None))  # linear: bar heights proportional
    ax.legend(fontsize=8)
    return _save(fig, path, "Median over units, second half. Theory: SGD arccos(1 − 2 lr lam), "
                 "Adam + L2 ∝ (d/G~)^⅓, AdamW independent of d and G~. Claims compare layers 2 and 3, fed by "
                 "normalized units; layer 1 is fed by raw pixels of uneven scale.")


def no_l2(data, path):
    names = list(data["runs"][0]["layers"])
    fig, axes = _figure(1, len(names), f"Exp. 8 — Without L2 the effective lr keeps falling and remembers the "
                        f"initial scale; with L2 every scale settles (SGD lr {data['lr']:g})")
    scales = sorted({r["w0_scale"] for r in data["runs"]})
    for ax, name in zip(axes[0], names):
        for r in data["runs"]:
            color, ls = COLORS[scales.index(r["w0_scale"])], "-" if r["lam"] == 0 else "--"
            step = np.asarray(r["step"])[1:]
            q = np.asarray(r["layers"][name]["efflr"])[1:]
            reg = "no L2" if r["lam"] == 0 else f"L2 lam {r['lam']:g}"
            ax.plot(step, q[:, 1], ls, color=color, lw=2, label=f"w0 × {r['w0_scale']:g}, {reg}", zorder=2)
            ax.plot(step, np.asarray(r["layers"][name]["law"])[1:], ":", color="k", lw=1, zorder=1)
        G2 = data["runs"][0]["layers"][name]["G2"]
        ax.plot(step, 1 / np.sqrt(2 * G2 * step), color="0.6", lw=3, alpha=0.5,
                label="1/√(2 G2 t): the asymptote, reached within the run only from a small initial scale")
        ax.set(xscale="log", yscale="log", title=name, xlabel="step", ylabel="effective lr lr/||w||² (median unit)")
    axes[0][0].legend(fontsize=7)
    return _save(fig, path, "Dotted: the growth law and the L2 equilibrium with the run's own measured G2 "
                 "(consistency checks). Only the curve from the smallest initial scale reaches the 1/√t asymptote "
                 "within the run; the larger ones are still flat. " + L2_NOTE)


PLOTTERS = {"invariance": invariance, "effective_lr": effective_lr, "norm_dynamics": norm_dynamics,
            "lr_dynamics": lr_dynamics, "one_knob": one_knob, "fix": fix, "balance": balance, "no_l2": no_l2}

