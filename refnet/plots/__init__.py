"""Figures for the experiments in ``refnet.experiments``: one function per experiment, each taking
that experiment's data and a path; ``plot`` picks it by the data's ``name``. Matplotlib with the
Agg backend (no display needed).

Conventions in every label: L2 is the paper's, ``lam ||w||^2`` in the loss (gradient
``2 lam w``; PyTorch's ``weight_decay = 2 lam``); ``wd`` is AdamW's decoupled decay; angles are
in radians per step; ``G~`` is the gradient norm at the unit point, ``||g|| ||w||``.

- ``paper``: experiments 1-8, the paper's claims;
- ``optimizers``: experiment 9, rotational equilibrium across optimizers;
- ``sharpness``: experiment 10, curvature and the effective learning rate;
- ``predictions``: experiments 11-15, the held-out predictions;
- ``common``: the colours, figure and atomic save they share.
"""

from refnet.plots import optimizers, paper, predictions, sharpness
from refnet.plots.common import _save  # noqa: F401 (tests draw a bare figure through it)

PLOTTERS = {**paper.PLOTTERS, **optimizers.PLOTTERS, **sharpness.PLOTTERS, **predictions.PLOTTERS}


def plot(data, path):
    """Draw the figure of the experiment that produced ``data`` into ``path`` (a .png)."""
    return PLOTTERS[data["name"]](data, path)
