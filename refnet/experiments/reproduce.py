"""``refnet reproduce``: run the experiments, draw their figures, check their claims.

    refnet reproduce                      # default preset into figures/ (under 10 min on 2 cores)
    refnet reproduce --preset full        # the runs that do not fit the default's budget
    refnet reproduce --quick --out /tmp/r # under 2 min, still real data
    refnet reproduce --only invariance,no_l2 --jobs 4
    refnet reproduce --dask-scheduler tcp://10.0.0.5:8786   # runs on a Dask cluster

Writes ``<out>/fig*.png``, ``<out>/report.json`` and ``<out>/report.md``; task results are
cached in ``<out>/.cache`` (keyed by a hash of each task's configuration), so a second call
only redraws. Exit status: 0 when the run completed and every identity holds, whatever the
predictions' verdicts (a failed prediction is a finding, reported with its note); 1 when an
identity fails (a bug in the code); 2 on a usage error or missing data (checked before any task
runs; a ``--seed`` among the calibration seeds is one: the tolerances were measured on it, so a run
judged there would not be held out), 130 when stopped by Ctrl-C or SIGTERM (every finished task
stays in the cache, so running the command again goes on from there).
"""

import os
import platform
import sys
import time

import numpy as np

import refnet
from refnet import backend
from refnet.cli_checks import existing_dir, nonnegative_int, positive_int, writable_dir
from refnet.data import DATASETS, DatasetError, locate_dataset
from refnet.experiments import NAMES, claims, config, get, registry
from refnet.experiments.runner import Runner


def add_run_arguments(parser):
    """--data, --data-dir and --jobs: what ``refnet reproduce`` and ``refnet calibrate`` share."""
    parser.add_argument("--data", default="fashion-mnist", choices=[d for d in DATASETS if d != "mnist"],
                        help="data set (default: fashion-mnist)")
    parser.add_argument("--data-dir", type=existing_dir, default=None, metavar="DIR",
                        help="directory holding the data set's files (default: $REFNET_DATA or the system copy)")
    parser.add_argument("--jobs", type=positive_int, default=min(4, os.cpu_count() or 1), metavar="N",
                        help="training runs in parallel processes (default: min(4, CPUs))")


def add_arguments(parser):
    parser.add_argument("--quick", action="store_true",
                        help="small grids, data subsets and an MLP of width 128 (under 2 minutes on 2 cores)")
    parser.add_argument("--preset", default=None, choices=config.PRESETS,
                        help="sizes: default (under 10 minutes on 2 cores), full (the longer runs and larger "
                             "grids that do not fit that budget), quick (= --quick) or tiny "
                             "(a seconds-long smoke test on --data synthetic, for tests); default: default, or "
                             "quick with --quick")
    parser.add_argument("--out", type=writable_dir, default="figures", metavar="DIR",
                        help="where the figures, report.json, report.md and the cache (.cache/) go "
                             "(default: figures/)")
    add_run_arguments(parser)
    parser.add_argument("--device", default="cpu", choices=("cpu", "gpu"), help="where to train (default: cpu)")
    parser.add_argument("--dask-scheduler", default=None, metavar="ADDRESS",
                        help="run the tasks on this Dask scheduler (needs the 'cluster' extra); "
                             "default: none, local processes (--jobs)")
    parser.add_argument("--only", type=_only, default=None, metavar="NAME,...",
                        help=f"run only these experiments, of: {', '.join(NAMES)}; default: all")
    parser.add_argument("--seed", type=nonnegative_int, default=0,
                        help="seed of data subsets, inits and batch orders; not one of the calibration seeds "
                             f"({', '.join(map(str, calibration_seeds()))}), on which the tolerances were measured "
                             "(default: 0)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


CONNECT_TIMEOUT = 5  # seconds to reach --dask-scheduler (distributed's default is 30)


def _check_scheduler(address):
    """Connect to the Dask scheduler at ``address`` once, or raise ValueError saying why not."""
    try:
        from distributed import Client
    except ImportError:
        raise ValueError("--dask-scheduler needs dask.distributed: pip install 'refnet[cluster]'") from None
    try:
        Client(address, timeout=CONNECT_TIMEOUT).close()
    except (OSError, ValueError) as err:  # a malformed address, no scheduler there (TimeoutError is an OSError)
        raise ValueError(f"--dask-scheduler: got {address!r}: {err}; expected the address of a running "
                         f"scheduler, e.g. tcp://10.0.0.5:8786") from None


def _only(text):
    import argparse
    try:
        selected(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err).removeprefix("--only: ")) from None
    return text


def _cached(cache_dir):
    return sum(name.endswith(".npz") for name in os.listdir(cache_dir)) if os.path.isdir(cache_dir) else 0


def _versions(device):
    import matplotlib
    out = {"refnet": refnet.__version__, "python": platform.python_version(), "numpy": np.__version__,
           "matplotlib": matplotlib.__version__, "platform": platform.platform()}
    if device == "gpu":
        out["cupy"] = backend.cupy_version()  # the GPU was checked usable before this is called
    return out


def calibration_seeds():
    """The seeds the tolerances were measured on: ``refnet calibrate``'s default ones and every
    seed of a record in the committed calibration file. ``--seed`` may not be one of them."""
    from refnet.experiments.calibrate import DEFAULT_SEEDS  # calibrate imports this module
    records = registry.calibration_records().values()
    return sorted(set(DEFAULT_SEEDS) | {int(s) for r in records for s in r.get("seeds", ())})


def selected(only):
    """The experiment names of ``--only`` (all when None), in the canonical order."""
    if not only:
        return list(NAMES)
    wanted = [n.strip() for n in only.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in NAMES]
    if unknown or not wanted:
        raise ValueError(f"--only: got {only!r}; expected a comma-separated list of {', '.join(NAMES)}")
    return [n for n in NAMES if n in wanted]


def reproduce(cfg, names, out, runner):
    """Run ``names`` with ``runner``, draw their figures into ``out`` and return
    ``(claims, observations, figures, task_seconds)``; ``task_seconds`` sums the tasks' own
    compute time, cached or not."""
    from refnet import plots

    os.makedirs(out, exist_ok=True)
    mods = [get(n) for n in names]
    per = [m.specs(cfg) for m in mods]
    done = runner.map([s for ss in per for s in ss], desc="tasks")  # everything, once, in parallel
    all_claims, all_obs, figures = [], [], []
    for mod, ss in zip(mods, per):
        data = mod.analyze(cfg, runner.map(ss, desc=mod.NAME))
        data["claims"] = [registry.judge(registry.tag(c), cfg["preset"]) for c in data["claims"]]
        figures.append(plots.plot(data, os.path.join(out, mod.FIGURE)))
        all_claims += data["claims"]
        all_obs += data["observations"]
    return all_claims, all_obs, figures, sum(m.get("seconds", 0.0) for _, m in done)


def run(args):
    t0 = time.perf_counter()
    try:
        names = selected(args.only)
        if args.jobs < 1:
            raise ValueError(f"--jobs: got {args.jobs}, expected a positive integer")
        held = calibration_seeds()
        if args.seed in held:
            raise ValueError(f"--seed: got {args.seed}, one of the calibration seeds ({', '.join(map(str, held))}): "
                             "the tolerances were measured on it, so judging it would not be held out; expected "
                             f"another seed, e.g. 0 (the default) or {max(held) + 1}")
        if args.quick and args.preset not in (None, "quick"):
            raise ValueError(f"--quick and --preset {args.preset}: give one (--quick is --preset quick)")
        if args.data == "synthetic" and args.data_dir is not None:
            raise ValueError("--data-dir does not apply to --data synthetic (it is generated)")
        if args.dask_scheduler is not None:
            _check_scheduler(args.dask_scheduler)
        if args.device == "gpu":
            backend.use("gpu")
    except (ValueError, RuntimeError) as err:
        print(f"refnet reproduce: {err}", file=sys.stderr)
        return 2
    preset = args.preset or ("quick" if args.quick else "default")
    try:
        cfg = config.make_config(preset, data=args.data, data_dir=args.data_dir, device=args.device,
                                 seed=args.seed)
    except ValueError as err:
        print(f"refnet reproduce: {err}", file=sys.stderr)
        return 2
    try:
        locate_dataset(args.data, args.data_dir)  # the tasks read it; a missing one fails now, not in them
    except DatasetError as err:
        print(f"refnet reproduce: {err}", file=sys.stderr)
        return 2
    cache_dir = os.path.join(args.out, ".cache")
    runner = Runner(jobs=args.jobs, scheduler=args.dask_scheduler, cache_dir=cache_dir,
                    progress=not args.no_progress)
    try:
        found, notes, figures, task_seconds = reproduce(cfg, names, args.out, runner)
    except DatasetError as err:  # raised inside a task (a file that went bad since the check)
        print(f"refnet reproduce: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:
        print(f"refnet reproduce: {err or 'interrupted'}; the {runner.executed} tasks finished in this "
              f"run are kept in {cache_dir} ({_cached(cache_dir)} cached in all): the same command "
              f"goes on from them", file=sys.stderr)
        return 130
    wall = time.perf_counter() - t0
    cfg_out = {**cfg, "experiments": names, "jobs": args.jobs, "dask_scheduler": args.dask_scheduler,
               "tasks_run": runner.executed, "task_seconds": task_seconds}
    claims.write_report(args.out, found, notes, cfg_out, _versions(args.device), wall)
    failed = [c for c in found if not c["pass"] and c["kind"] != "consistency"]
    print(f"{claims.summary(found)}; {len(figures)} figures, report.json and report.md in {args.out} "
          f"({wall:.0f} s, {runner.executed} tasks run)")
    for c in failed:
        print(f"  FAILED {c['kind']}: {c['claim']} -- {c['quantity']}: predicted {c['predicted']:.4g}, "
              f"measured {c['measured']:.4g} (error {c['rel_error']:.3g} > {c['tolerance']:.3g})"
              + (f"\n    note: {c['note']}" if c.get("note") else ""))
    return 1 if any(c["kind"] == "identity" for c in failed) else 0
