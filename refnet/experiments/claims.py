"""Claims (a measured number against a prediction from theory/, with a tolerance fixed in
advance) and the report that lists them.

A claim's error is relative, ``|measured - predicted| / |predicted|``, unless the prediction is
0 (then absolute; ``error_kind`` says which). A claim passes when the error is at most the
tolerance. Observations are numbers reported without a prediction to hold them to.
"""

import json
import math
import os

import numpy as np

from refnet import checkpoint

CLAIM_KEYS = ("claim", "figure", "quantity", "predicted", "measured", "rel_error", "tolerance", "pass")


KINDS = ("identity", "consistency", "prediction")


def _row_kind(kind, inputs):
    if kind not in KINDS:
        raise ValueError(f"claim(kind): got {kind!r}, expected one of {KINDS}")
    inputs = list(inputs or [])
    if kind == "prediction" and not inputs:
        raise ValueError("claim(inputs): a prediction must list its inputs (hyperparameters, other runs, "
                         "earlier windows); got none")
    return inputs


def claim(text, figure, quantity, predicted, measured, tolerance, theory, error_kind=None, *, kind="identity",
          inputs=None, note="", tolerance_source=""):
    """One claim row (``error_kind``: "relative" by default, "absolute" when predicted == 0);
    ``kind`` is "identity", "consistency" or "prediction" (which must list its ``inputs``)."""
    inputs = _row_kind(kind, inputs)
    predicted, measured = float(predicted), float(measured)
    row_kind, kind = kind, error_kind or ("absolute" if predicted == 0 else "relative")
    err = abs(measured - predicted) / (abs(predicted) if kind == "relative" else 1.0)
    ok = bool(math.isfinite(err) and err <= tolerance)
    return {"claim": text, "figure": figure, "quantity": quantity, "predicted": predicted,
            "measured": measured, "rel_error": err, "tolerance": float(tolerance), "pass": ok,
            "error_kind": kind, "theory": theory, "kind": row_kind, "inputs": inputs, "note": note,
            "tolerance_source": tolerance_source}


def worst(rows, text, figure, quantity, tolerance, theory, *, kind="identity", inputs=None, note="",
          tolerance_source=""):
    """One claim from many ``(predicted, measured, label)`` comparisons: the one with the largest
    error, named in ``quantity``, so a claim over a grid fails if any of its runs does."""
    extra = dict(kind=kind, inputs=inputs, note=note, tolerance_source=tolerance_source)
    if not rows:  # nothing to compare is a failure, not a pass
        return dict(claim(text, figure, f"{quantity} [no run to compare]", 1.0, float("nan"), tolerance, theory,
                          **extra), n_compared=0)
    made = [(claim(text, figure, f"{quantity} [{label}]", p, m, tolerance, theory, **extra), label)
            for p, m, label in rows]
    row = max(made, key=lambda c: c[0]["rel_error"] if math.isfinite(c[0]["rel_error"]) else np.inf)[0]
    row["n_compared"] = len(made)
    return row


def observation(text, figure, quantity, value, note=""):
    return {"observation": text, "figure": figure, "quantity": quantity, "value": float(value),
            "note": note}


def _fmt(x):
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "**NO**"
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x).replace("|", "\\|")


def write_report(out_dir, claims, observations, config, versions, wall_time_s):
    """Write ``report.json`` and ``report.md`` atomically into ``out_dir``; returns the dict."""
    report = checkpoint.json_safe({"claims": claims, "observations": observations, "config": config,
                                   "versions": versions, "wall_time_s": wall_time_s})
    checkpoint.write_json(os.path.join(out_dir, "report.json"), report)
    n_pass = sum(c["pass"] for c in claims)
    lines = ["# refnet reproduce: report", "",
             f"{n_pass} of {len(claims)} claims pass; wall time {wall_time_s:.0f} s for this call "
             f"({config.get('tasks_run', '?')} tasks run, the rest read from the cache; the tasks' run "
             f"times, summed over parallel workers, cached or not: {config.get('task_seconds', 0):.0f} s); preset "
             f"`{config.get('preset')}`, data `{config.get('data', {}).get('name')}`, device "
             f"`{config.get('device')}`.", "",
             "Error: relative, |measured - predicted| / |predicted| (absolute where the prediction "
             "is 0). Each tolerance was fixed before the run; see the experiment's docstring.", "",
             "| claim | figure | quantity | theory | predicted | measured | error | tolerance | pass |",
             "|---|---|---|---|---|---|---|---|---|"]
    for c in claims:
        lines.append("| " + " | ".join(_fmt(c.get(k)) for k in (
            "claim", "figure", "quantity", "theory", "predicted", "measured", "rel_error",
            "tolerance", "pass")) + " |")
    if observations:
        lines += ["", "Observations (reported, not held to a prediction):", "",
                  "| observation | figure | quantity | value | note |", "|---|---|---|---|---|"]
        for o in observations:
            lines.append("| " + " | ".join(_fmt(o.get(k)) for k in (
                "observation", "figure", "quantity", "value", "note")) + " |")
    lines += ["", "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()), ""]
    checkpoint.atomic_write(os.path.join(out_dir, "report.md"),
                            lambda f: f.write("\n".join(lines).encode("utf-8")))
    return report


def read_report(out_dir):
    with open(os.path.join(out_dir, "report.json")) as f:
        return json.load(f)
