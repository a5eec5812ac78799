"""The figure of experiment 10 (``refnet.experiments.sharpness``)."""

import numpy as np

from refnet.plots.common import COLORS, L2_NOTE, _figure, _save

_FLOOR = 1e-17  # residuals of exactly 0 drawn at the floor of the log axis


def sharpness(data, path):
    tracks = data["tracks"]
    names = list(tracks["mlp/no L2"]["layers"])
    fig, axes = _figure(1, 3, f"Exp. 10 — Sharpness: L2 moves the weights to where the curvature is larger "
                        f"(BN MLP, SGD lr {data['lr']:g})")
    ax_hat, ax_eff, ax_res = axes[0]
    for i, name in enumerate(names):
        for run, ls in (("mlp/no L2", "--"), ("mlp/L2", "-")):
            t = tracks[run]
            layer = t["layers"][name]
            reg = "no L2" if run.endswith("no L2") else f"L2 lam {data['lam']:g}"
            ax_hat.plot(t["step"], layer["lam_hat"], ls, marker="o", color=COLORS[i], label=f"{name}, {reg}")
            ax_hat.plot(t["identity_step"], layer["lam_hat_measured"], "x", color="k", ms=8)
            ax_eff.plot(t["step"], layer["sharpness"], ls, marker="o", color=COLORS[i], label=f"{name}, {reg}")
    cnn = tracks["cnn/L2"]
    for name, layer in cnn["layers"].items():
        ax_eff.plot(cnn["step"], layer["sharpness"], "-", marker="s", color=COLORS[len(names)],
                    label=f"CNN {name}, L2 lam {data['lam']:g}")
    ax_eff.axhline(2.0, color="0.6", lw=1, ls=":")
    ax_hat.set(yscale="log", xlabel="step", ylabel="λmax(H(ŵ)), ŵ = w/||w|| (layer as one group)",
               title="curvature of the direction (x: Lanczos at ŵ)")
    ax_eff.set(yscale="log", xlabel="step", ylabel="lr λmax(H(w))", title="step size × curvature (dotted: 2, the GD stability edge)")
    ax_hat.legend(fontsize=7)
    ax_eff.legend(fontsize=7)
    labels, values, colors, orders = [], [], [], []
    for net, ident in data["identities"].items():
        for kind, color in (("euler", COLORS[0]), ("scaling", COLORS[1])):
            labels.append(f"{net} {'H w = -g' if kind == 'euler' else 'H(cw) = H/c²'}")
            values.append(max(ident[kind].values()))
            colors.append(color)
            orders.append(np.nan)
        for c, b, o in zip(ident["bend_c"], ident["bend"], ident["bend_order"]):
            labels.append(f"{net} eps 1e-5, w × {c:g}")
            values.append(b)
            colors.append("0.6")
            orders.append(o)
    labels.append("Lanczos λ(w) vs λ(ŵ)/||w||²")
    values.append(max(data["lanczos_residuals"].values()))
    colors.append(COLORS[2])
    orders.append(np.nan)
    y = np.arange(len(labels))
    ax_res.barh(y, np.maximum(values, _FLOOR), color=colors, left=_FLOOR)
    ax_res.plot(orders, y, "k|", ms=12, mew=2, label="eps/(var+eps), max over units")
    ax_res.legend(fontsize=7, loc="lower right")
    ax_res.set_yticks(y, labels, fontsize=7)
    ax_res.invert_yaxis()
    ax_res.axvline(1e-9, color="k", lw=1, ls=":")
    ax_res.set(xscale="log", xlabel="relative residual (dotted: 1e-9; Lanczos row held to 1e-8)",
               title="identities (eps = 0) and the eps bend (grey)")
    return _save(fig, path, "Solid: with L2; dashed: without. Curvature of the training loss on a fixed batch, "
                 "float64, BN eps = 0, training mode. " + L2_NOTE)


PLOTTERS = {"sharpness": sharpness}
