"""``refnet calibrate``: the noise behind the tolerances, measured over seeds that are not judged.

    refnet calibrate                              # quick preset, seeds 1-4, every experiment
    refnet calibrate --only fix,init_forgetting   # re-calibrate two experiments, keep the rest
    refnet calibrate --seeds 1,2,3,4 --cache /tmp/c/.cache

``refnet reproduce`` judges seed 0 by default; this runs the same experiments (the same task
specs and task cache: a task's cache key contains its seed) at other seeds, keeps every claim
row, and merges into ``refnet/experiments/calibration.json`` one record per claim id: the preset,
seeds, date, code commit, each seed's judged error, every comparison's signed error per seed,
their spread and, for the record, the largest seed-mean error (the systematic part). The registry
(``refnet.experiments.registry``) turns the spread into the claim's tolerance by its one rule.
``--only`` replaces the records of those experiments' claims and keeps every other record, so an
experiment changed later is re-calibrated alone.

The spread: a claim compares one or more (label, predicted, measured) pairs (a layer, a run of a
grid); each pair's signed error is ``(measured - predicted) / |predicted|`` (``measured -
predicted`` for an absolute claim). The spread is the pooled seed-to-seed standard deviation,
``sqrt(mean over pairs of var over seeds (ddof 1))``: it measures how far a seed moves the error,
and nothing of its mean, so a law's systematic miss is not absorbed into its tolerance.
"""

import datetime
import json
import math
import os
import subprocess
import sys

import numpy as np

from refnet import checkpoint
from refnet.cli_checks import writable_dir, writable_file
from refnet.data import DatasetError, locate_dataset
from refnet.experiments import config, get, registry
from refnet.experiments.reproduce import _only, add_run_arguments, selected
from refnet.experiments.runner import Runner

FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "calibration.json")
DEFAULT_SEEDS = (1, 2, 3, 4)
JUDGED_SEED = 0  # refnet reproduce's default --seed: its noise must not set its own tolerances


def seeds_arg(text):
    """``type=``: ``"1,2,3,4"`` or ``"1-4"``: at least two distinct seeds >= 0."""
    import argparse
    try:
        out = []
        for part in (p.strip() for p in text.split(",") if p.strip()):
            lo, _, hi = part.partition("-")
            out += list(range(int(lo), int(hi) + 1)) if hi else [int(lo)]
    except ValueError:
        out = None
    if not out or len(set(out)) < 2 or min(out) < 0:
        raise argparse.ArgumentTypeError(f"got {text!r}; expected at least two seeds >= 0, e.g. 1,2,3,4 or 1-4")
    return sorted(set(out))


def signed_errors(row):
    """``[(label, signed error), ...]`` of a claim row, one per comparison (``claims.worst`` keeps
    them in ``comparisons``; a single comparison is the row itself)."""
    pairs = row.get("comparisons") or [[row["quantity"], row["predicted"], row["measured"]]]
    how = row.get("error_kind", "relative")
    out = []
    for label, p, m in pairs:
        p, m = float(p), float(m)
        out.append((label, (m - p) / abs(p) if how != "absolute" and p != 0 else m - p))
    return out


def spread(errors):
    """Pooled seed-to-seed standard deviation of ``errors[pair][seed]`` (ddof 1 per pair)."""
    e = np.asarray(errors, dtype=float)
    if e.ndim != 2 or e.shape[1] < 2:
        raise ValueError(f"spread(errors): got shape {e.shape}, expected (pairs, seeds >= 2)")
    return float(np.sqrt(np.mean(np.var(e, axis=1, ddof=1))))


def record(rows_by_seed, preset, commit, date):
    """The calibration record of one claim from ``{seed: row}`` (the same claim at each seed)."""
    seeds = sorted(rows_by_seed)
    per = [signed_errors(rows_by_seed[s]) for s in seeds]
    if len({len(p) for p in per}) != 1:
        raise ValueError(f"record: claim {rows_by_seed[seeds[0]].get('id')!r} compares "
                         f"{[len(p) for p in per]} pairs at seeds {seeds}; expected the same number at each")
    errors = [[per[j][i][1] for j in range(len(seeds))] for i in range(len(per[0]))]
    finite = all(math.isfinite(x) for pair in errors for x in pair)
    return {"preset": preset, "seeds": seeds, "date": date, "commit": commit,
            "error_kind": rows_by_seed[seeds[0]].get("error_kind", "relative"),
            "judged_error": {str(s): rows_by_seed[s]["rel_error"] for s in seeds},
            "labels": [label for label, _ in per[0]], "signed_errors": errors,
            "mean_error": _largest_mean(errors) if finite else None,
            "spread": spread(errors) if finite else None}


def _largest_mean(errors):
    """The systematic part: the seed-mean error of the comparison whose mean is largest in size."""
    means = np.mean(np.asarray(errors, dtype=float), axis=1)
    return float(means[np.argmax(np.abs(means))])


def commit_id():
    """The code's git commit (short), ``+dirty`` when refnet/ has uncommitted changes; "unknown" outside git."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "refnet", "theory"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def collect(names, seeds, runner, preset="quick", data="fashion-mnist", data_dir=None):
    """``{claim id: {seed: row}}``: every non-identity claim of ``names`` at each seed (all the
    seeds' tasks in one ``runner.map``, so they run in parallel)."""
    mods = [get(n) for n in names]
    cfgs = {s: config.make_config(preset, data=data, data_dir=data_dir, seed=s) for s in seeds}
    per = {(s, m.NAME): m.specs(cfgs[s]) for s in seeds for m in mods}
    runner.map([x for ss in per.values() for x in ss], desc="calibration tasks")
    out = {}
    for s in seeds:
        for m in mods:
            for row in m.analyze(cfgs[s], runner.map(per[s, m.NAME], desc=m.NAME))["claims"]:
                row = registry.tag(row)
                if row["kind"] == "identity" or "id" not in row:
                    continue
                if s in out.setdefault(row["id"], {}):
                    raise ValueError(f"collect: claim {row['id']!r} has two rows at seed {s}")
                out[row["id"]][s] = row
    return out


def load(path=FILE):
    """The calibration file's content (an empty one if there is none yet)."""
    if not os.path.exists(path):
        return {"claims": {}}
    with open(path) as f:
        return json.load(f)


def calibrate(names, seeds, runner, path=FILE, preset="quick", data="fashion-mnist", data_dir=None):
    """Measure ``names`` at ``seeds`` and merge their claims' records into ``path``; returns the
    new records ``{id: record}``."""
    commit, date = commit_id(), datetime.date.today().isoformat()  # the code that runs, before it runs
    found = collect(names, seeds, runner, preset, data, data_dir)
    new = {i: record(rows, preset, commit, date) for i, rows in sorted(found.items())}
    doc = load(path)
    doc["about"] = ("per claim: the seed-to-seed noise of its errors (refnet calibrate; "
                    "refnet/experiments/calibrate.py). The tolerance rule is in refnet/experiments/registry.py.")
    doc["claims"] = dict(sorted({**doc.get("claims", {}), **new}.items()))
    checkpoint.write_json(path, checkpoint.json_safe(doc))
    return new


def add_arguments(parser):
    parser.add_argument("--seeds", type=seeds_arg, default=list(DEFAULT_SEEDS), metavar="S,...",
                        help="seeds to measure, not the judged one (reproduce's --seed, 0 by default): "
                             "a list or a range (default: 1-4)")
    parser.add_argument("--preset", default="quick", choices=config.PRESETS, help="sizes of the runs")
    parser.add_argument("--only", type=_only, default=None, metavar="NAME,...",
                        help="calibrate only these experiments' claims (the file keeps every other record); "
                             "default: all")
    add_run_arguments(parser)
    parser.add_argument("--cache", type=writable_dir, default=os.path.join("figures", ".cache"), metavar="DIR",
                        help="task cache, shared with refnet reproduce (keys contain the seed)")
    parser.add_argument("--file", type=writable_file, default=FILE, metavar="PATH",
                        help="the calibration file to merge into (default: refnet/experiments/calibration.json)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args):
    try:
        if JUDGED_SEED in args.seeds:
            raise ValueError(f"--seeds: got {args.seeds}, which include {JUDGED_SEED}, the seed refnet reproduce "
                             "judges; expected other seeds (a tolerance is not measured on the run it judges)")
        if args.preset == "tiny" and args.data != "synthetic":
            raise ValueError("--preset tiny runs on --data synthetic only")
        names = selected(args.only)
        locate_dataset(args.data, args.data_dir)
    except (ValueError, DatasetError) as err:
        print(f"refnet calibrate: {err}", file=sys.stderr)
        return 2
    runner = Runner(jobs=args.jobs, cache_dir=args.cache, progress=not args.no_progress)
    new = calibrate(names, args.seeds, runner, args.file, args.preset, args.data, args.data_dir)
    print(f"{len(new)} claims calibrated over {args.preset} seeds {', '.join(map(str, args.seeds))} "
          f"({runner.executed} tasks run) into {args.file}")
    for i, r in new.items():
        tol = registry.rule(i, r)
        print(f"  {i}: spread {r['spread']:.3g}, largest mean error {r['mean_error']:+.3g}"
              + (f" -> tolerance {tol:.3g}" if tol is not None else " (not calibrated: an exception)")
              if r["spread"] is not None else f"  {i}: not finite")
    return 0
