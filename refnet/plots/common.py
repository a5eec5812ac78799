"""What every figure of ``refnet.plots`` shares: the Agg backend, the colours, the L2 label, a
figure with a title, and an atomic save with a wrapped note under the axes."""

import textwrap

import matplotlib

matplotlib.use("Agg")  # no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from refnet.checkpoint import save_figure  # noqa: E402

COLORS = plt.rcParams["axes.prop_cycle"].by_key()["color"]
L2_NOTE = "L2: lam·||w||² in the loss (paper; PyTorch weight_decay = 2·lam)"


def _figure(nrows, ncols, title, width=5.0, height=3.9):
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False)
    fig.suptitle(title, fontsize=12)
    return fig, axes


def _save(fig, path, note=None):
    lines = textwrap.wrap(note, width=int(17 * fig.get_figwidth())) if note else []
    if lines:
        fig.text(0.5, 0.005, "\n".join(lines), ha="center", va="bottom", fontsize=8, color="0.35")
    fig.tight_layout(rect=(0, 0.012 + 0.018 * len(lines) * 3.9 / fig.get_figheight() if lines else 0, 1, 0.95))
    save_figure(fig, path, dpi=110)  # atomic: a stopped run leaves no half-written figure
    plt.close(fig)
    return path


def _band(ax, x, q, color, label, ls="-"):
    q = np.asarray(q)
    ax.fill_between(x, q[:, 0], q[:, 2], color=color, alpha=0.18, lw=0)
    ax.plot(x, q[:, 1], color=color, ls=ls, lw=1.6, label=label)


def _floor(v, lo=1e-18):
    return np.maximum(np.asarray(v, dtype=float), lo)
