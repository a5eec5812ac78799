"""``refnet gradcheck``: the built-in cases, one table; ``--power``: the mutation campaign."""

import argparse
import sys
import time

from refnet.cli_checks import UsageError, nonnegative_int, positive_int, writable_file
from refnet.gradcheck.check import RTOL
from refnet.gradcheck.suite import CASES, run_case


def _names(text):
    """argparse type for --op: a name or a comma list, each checked against CASES."""
    chosen = []
    for name in filter(None, (s.strip() for s in text.split(","))):
        match = name if name in CASES else {k.lower(): k for k in CASES}.get(name.lower())
        if match is None:
            raise argparse.ArgumentTypeError(
                f"unknown op {name!r}; expected one of: {', '.join(CASES)} (see --list)")
        chosen.append(match)
    return chosen


def add_arguments(parser):
    parser.add_argument("--op", action="append", type=_names, metavar="NAME",
                        help="check only this op or module (repeatable, or a comma list; see --list)")
    parser.add_argument("--list", action="store_true", help="list the built-in checks and exit")
    parser.add_argument("--seed", type=nonnegative_int, default=0, help="seed of the random inputs (default 0)")
    parser.add_argument("--mode", choices=("auto", "full", "directional", "fast"), default="auto",
                        help="probing mode of the built-in checks (default auto: full up to 2048 entries)")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every full report")
    parser.add_argument("--power", action="store_true",
                        help="measure the checker's power: plant mutants in every op and module and report "
                             "detection, false-alarm and inconclusive rates")
    parser.add_argument("--seeds", type=positive_int, default=3, metavar="N",
                        help="with --power: run the campaign for N seeds from --seed (default 3)")
    parser.add_argument("--json", type=writable_file, metavar="PATH",
                        help="with --power: also write the results as JSON (checked before any work)")


def run(args):
    if args.list:
        for name, (kind, what, _) in CASES.items():
            print(f"{name:24s} {kind:7s} {what}")
        return 0
    names = list(dict.fromkeys(n for group in args.op for n in group)) if args.op else list(CASES)
    if args.json and not args.power:
        raise UsageError("--json needs --power")
    if args.power and args.mode != "auto":
        raise UsageError("--mode applies to the built-in checks; --power runs every mode itself")
    if args.power:
        return _power(names, args)
    return _suite(names, args)


def _suite(names, args):
    rows, failed = [], []
    for name in names:
        kind = CASES[name][0]
        start = time.perf_counter()
        try:
            report = run_case(name, args.seed, mode=args.mode)
        except Exception as err:  # a case that cannot run is a failure, shown with its reason
            rows.append((name, kind, "-", "-", "-", "ERROR", f"{type(err).__name__}: {err}"))
            failed.append(name)
            continue
        rows.append((name, kind, f"{report.resolution:.1e}", f"{report.max_rel_err:.1e}", str(report.n_kinks),
                     report.status, f"{time.perf_counter() - start:.2f}s"))
        if not report.ok:
            failed.append(name)
        if args.verbose or not report.ok:
            print(report, end="\n\n")
    header = ("name", "kind", "resolution", "max rel err", "kinks", "status", "time")
    widths = [max(len(r[k]) for r in rows + [header]) for k in range(6)]
    for r in [header] + rows:
        print("  ".join(s.ljust(w) for s, w in zip(r, widths)) + "  " + r[6])
    print(f"{len(rows) - len(failed)}/{len(rows)} ok (rtol {RTOL:.0e} per entry, float64 central "
          f"differences)" + (f"; NOT OK: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


def _power(names, args):
    from refnet.gradcheck import campaign
    seeds = range(args.seed, args.seed + args.seeds)
    result, wall, cpu = campaign.timed(campaign.power, names, seeds=seeds,
                                       progress=lambda n: print(f"  {n} ...", file=sys.stderr, flush=True))
    result["wall_s"], result["cpu_s"] = round(wall, 1), round(cpu, 1)
    print(campaign.table(result))
    s = result["summary"]
    print(f"{s['mutants']} mutants, {s['correct']} correct backwards and {s['controls']} "
          f"sub-threshold controls (one entry x(1+0.3 rtol): must not fail) in full and directional mode "
          f"({s['fast']['mutants']} more in fast mode); wall {wall:.0f} s, CPU {cpu:.0f} s")
    if args.json:
        campaign.write_json(result, args.json)
        print(f"wrote {args.json}")
    goal = s["detection_rate"] == 1 and s["false_alarms"] == 0 and s["controls_failed"] == 0 and s["inconclusive"] == 0
    return 0 if goal else 1
