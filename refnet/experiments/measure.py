"""Small helpers the experiments share to read task results."""

import numpy as np


def layers(meta):
    """Names of the scale-invariant weights of a train result, in the order of the network."""
    return list(meta["params"])


def label(i, name):
    return f"layer {i + 1} ({name})"


def smooth(x, k):
    """Moving average over ``k`` samples (shrinking at the ends), along axis 0."""
    k = max(1, int(k))
    if k == 1:
        return np.asarray(x, dtype=float)
    x = np.asarray(x, dtype=float)
    kernel = np.ones(k)
    num = np.convolve(x, kernel, mode="same")
    den = np.convolve(np.ones_like(x), kernel, mode="same")
    return num / den


def median_ratio(measured, predicted):
    """Median over scale groups of measured / predicted."""
    return float(np.median(np.asarray(measured) / np.asarray(predicted)))


def final_accuracy(meta):
    return float(meta["final"]["test_accuracy"])


def slope(x, y):
    """Least-squares slope of log y against log x."""
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def window(label, spec):
    """The name of the window a train spec's ``win/`` numbers come from: the run and its steps."""
    start = int(round(spec["steps"] * (1 - spec.get("window", 0.5))))
    return f"run {label}, steps {start}-{spec['steps']}"


def hyper(**values):
    """An ``inputs`` entry naming the hyperparameters a prediction was computed from."""
    return "hyperparameters: " + ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}"
                                           for k, v in values.items())
