"""Claims (a measured number against a prediction from theory/, with a tolerance fixed in
advance) and the report that lists them.

A claim's error is relative, ``|measured - predicted| / |predicted|``, unless the prediction is
0 (then absolute; ``error_kind`` says which), or one-sided (``error_kind="at_least"``: the
relative shortfall ``max(0, predicted - measured) / |predicted|``, for a lower bound). A claim
passes when the error is at most the tolerance. Observations are numbers reported without a
prediction to hold them to.

Every row has a ``kind``, and the report counts the kinds apart:

- ``identity``: exact, code-level (invariance, the norm recursion, symmetry maps), held to
  rounding. It proves the code right, not the paper's dynamics; a failed one is a bug.
- ``consistency``: the predicted value uses quantities measured in the very window it judges
  (G2 of the same window, correlations of the same run): kept, but not counted as reproduction.
- ``prediction``: the predicted value comes from hyperparameters, at most from quantities
  measured in another run or an earlier, disjoint window, listed in ``inputs``; it can fail,
  and a failed one is a finding, explained in its ``note``.
"""

import json
import math
import os

import numpy as np

from refnet import checkpoint

CLAIM_KEYS = ("claim", "figure", "quantity", "predicted", "measured", "rel_error", "tolerance", "pass",
              "kind", "inputs", "note", "tolerance_source", "narrows")
KINDS = ("identity", "consistency", "prediction")
ERROR_KINDS = ("relative", "absolute", "at_least")


def _checked(kind, inputs):
    if kind not in KINDS:
        raise ValueError(f"claim(kind): got {kind!r}, expected one of {', '.join(KINDS)}")
    inputs = [str(i) for i in (inputs or [])]
    if kind == "prediction" and not any(i.strip() for i in inputs):
        raise ValueError("claim(inputs): a 'prediction' must list what its predicted value was computed "
                         "from (e.g. ['hyperparameters: lr, lam']); got none")
    return inputs


def claim(text, figure, quantity, predicted, measured, tolerance, theory, error_kind=None, *, kind,
          inputs=None, note="", tolerance_source="", window=""):
    """One claim row (``error_kind``: "relative" by default, "absolute" when predicted == 0,
    "at_least" for a lower bound: the relative shortfall below ``predicted``).

    kind: "identity" (exact, code-level), "consistency" (the prediction uses quantities measured
    in the window it judges: kept, not counted as reproduction) or "prediction" (computed from
    hyperparameters, at most from another run or an earlier, disjoint window). inputs: what the
    predicted value was computed from, one string each (required for a prediction). window: the
    run and steps the measured value comes from; a prediction's inputs must not contain it.
    """
    inputs = _checked(kind, inputs)
    if kind == "prediction" and window and any(window in i for i in inputs):
        raise ValueError(f"claim(inputs): a prediction may not use its own window {window!r}; got {inputs}")
    predicted, measured = float(predicted), float(measured)
    how = error_kind or ("absolute" if predicted == 0 else "relative")
    if how not in ERROR_KINDS:
        raise ValueError(f"claim(error_kind): got {error_kind!r}, expected one of {', '.join(ERROR_KINDS)}")
    if how == "at_least":
        err = max(0.0, predicted - measured) / abs(predicted) if math.isfinite(measured) else math.inf
    else:
        err = abs(measured - predicted) / (abs(predicted) if how == "relative" else 1.0)
    ok = bool(math.isfinite(err) and err <= tolerance)
    return {"claim": text, "figure": figure, "quantity": quantity, "predicted": predicted,
            "measured": measured, "rel_error": err, "tolerance": float(tolerance), "pass": ok,
            "error_kind": how, "theory": theory, "kind": kind, "inputs": inputs, "window": window,
            "note": note, "tolerance_source": tolerance_source, "narrows": None}


def _badness(c):
    """The largest error is the worst; among equal errors (every passing ``at_least`` row has error
    0) the smallest measured/predicted ratio, the row closest to its bound."""
    err = c["rel_error"] if math.isfinite(c["rel_error"]) else np.inf
    ratio = c["measured"] / c["predicted"] if c["predicted"] else c["measured"]
    return err, -ratio if math.isfinite(ratio) else np.inf


def worst(rows, text, figure, quantity, tolerance, theory, error_kind=None, *, kind, inputs=None, note="",
          tolerance_source="", window=""):
    """One claim from many ``(predicted, measured, label)`` comparisons: the one with the largest
    error, named in ``quantity``, so a claim over a grid fails if any of its runs does; ties go to
    the smallest measured/predicted ratio (``_badness``). ``comparisons`` keeps every
    ``[label, predicted, measured]``."""
    common = dict(error_kind=error_kind, kind=kind, inputs=inputs, note=note, tolerance_source=tolerance_source,
                  window=window)
    if not rows:  # nothing to compare is a failure, not a pass
        return dict(claim(text, figure, f"{quantity} [no run to compare]", 1.0, float("nan"), tolerance,
                          theory, **common), n_compared=0)
    made = [(claim(text, figure, f"{quantity} [{label}]", p, m, tolerance, theory, **common), label)
            for p, m, label in rows]
    row = max(made, key=lambda c: _badness(c[0]))[0]
    row["n_compared"] = len(made)
    # every comparison, not only the worst: the calibration (refnet.experiments.calibrate) takes the
    # seed-to-seed spread of each one's error
    row["comparisons"] = [[label, c["predicted"], c["measured"]] for c, label in made]
    return row


def counts(claims):
    """``{kind: (n_pass, n)}`` over the claim rows, and ``narrowed``: the predictions added beside a
    failed wider one (a row with ``narrows``), counted apart from ``prediction`` so that narrowing
    a claim after it failed cannot raise the headline."""
    def tally(rows):
        return sum(c["pass"] for c in rows), len(rows)
    out = {k: tally([c for c in claims if c["kind"] == k and not (k == "prediction" and c.get("narrows"))])
           for k in KINDS}
    out["narrowed"] = tally([c for c in claims if c["kind"] == "prediction" and c.get("narrows")])
    return out


def summary(claims):
    """The one-line verdict: predictions, identities and consistency checks counted apart, and the
    narrowed predictions after them."""
    n = counts(claims)
    (p_ok, p), (i_ok, i), (c_ok, c), (n_ok, nn) = n["prediction"], n["identity"], n["consistency"], n["narrowed"]
    line = (f"{p_ok} of {p} predictions hold; {i_ok} of {i} identities hold; {c} consistency checks "
            f"({c_ok} within tolerance; not counted as reproduction)")
    if nn:
        line += f"; {n_ok} of {nn} narrowed predictions (added beside failed ones, not counted above) hold"
    return line


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


_COLUMNS = ("claim", "figure", "quantity", "theory", "predicted", "measured", "rel_error", "tolerance", "pass")
_TITLES = {"prediction": "Predictions (from hyperparameters, another run or an earlier window: the reproduction)",
           "identity": "Identities (exact, code-level: a failure is a bug)",
           "consistency": "Consistency checks (use the window they judge; not counted as reproduction)"}


def _table(rows, extra):
    cols = _COLUMNS + extra
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for c in rows:
        lines.append("| " + " | ".join(_fmt("; ".join(c.get(k) or []) if k == "inputs" else c.get(k))
                                       for k in cols) + " |")
    return lines


def write_report(out_dir, claims, observations, config, versions, wall_time_s):
    """Write ``report.json`` and ``report.md`` atomically into ``out_dir``; returns the dict."""
    report = checkpoint.json_safe({"summary": summary(claims), "counts": counts(claims), "claims": claims,
                                   "observations": observations, "config": config, "versions": versions,
                                   "wall_time_s": wall_time_s})
    checkpoint.write_json(os.path.join(out_dir, "report.json"), report)
    lines = ["# refnet reproduce: report", "",
             f"{summary(claims)}; wall time {wall_time_s:.0f} s for this call "
             f"({config.get('tasks_run', '?')} tasks run, the rest read from the cache; the tasks' run "
             f"times, summed over parallel workers, cached or not: {config.get('task_seconds', 0):.0f} s); preset "
             f"`{config.get('preset')}`, data `{config.get('data', {}).get('name')}`, device "
             f"`{config.get('device')}`.", "",
             "Error: relative, |measured - predicted| / |predicted| (absolute where the prediction "
             "is 0; for a lower bound, `at_least`, the relative shortfall below it). Each claim's text, kind and tolerance are fixed in the registry "
             "(`refnet/experiments/registry.py`) before any run; `tolerance source` says where the "
             "tolerance comes from.", ""]
    failed = [c for c in claims if c["kind"] == "prediction" and not c["pass"]]
    if failed:
        lines += ["Failed predictions (findings, not crashes):", ""]
        lines += [f"- **{c['claim']}** ({c['quantity']}): predicted {_fmt(c['predicted'])}, measured "
                  f"{_fmt(c['measured'])}, error {_fmt(c['rel_error'])} > {_fmt(c['tolerance'])}. "
                  f"{c.get('note') or 'No diagnosis recorded.'}" for c in failed]
        lines.append("")
    for kind, extra in (("prediction", ("inputs", "window", "tolerance_source", "note")),
                        ("identity", ("tolerance_source", "note")),
                        ("consistency", ("inputs", "window", "tolerance_source", "note"))):
        rows = [c for c in claims if c["kind"] == kind]
        if rows:
            lines += [f"## {_TITLES[kind]}", ""] + _table(rows, extra) + [""]
    if observations:
        lines += ["## Observations (reported, not held to a prediction)", "",
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
