"""The ``refnet bench`` command: arguments, the run, the printed report (package docstring)."""

from refnet import backend
from refnet import bench as package
from refnet.bench import report
from refnet.bench.cases import NETS, make_cases
from refnet.bench.timing import CLOCKS
from refnet.cli_checks import UsageError, int_at_least, positive_int, writable_file
from refnet.ops import _chunks, conv


def add_arguments(parser):
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu",
                        help="cpu: NumPy; gpu: CuPy (and PyTorch on CUDA when it has it)")
    parser.add_argument("--quick", action="store_true", help="fewer repeats, for a fast look")
    parser.add_argument("--repeats", type=positive_int, default=None,
                        help="timed calls per case and side (default 25, --quick 5)")
    parser.add_argument("--batch", type=int_at_least(2), default=128, help="batch size (default 128)")
    parser.add_argument("--only", default=None, help="run only cases whose name contains this; default: all")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch side")
    parser.add_argument("--clock", choices=tuple(CLOCKS), default="wall",
                        help="wall: elapsed time (default); cpu: process CPU time, steadier "
                             "on a busy machine when both sides run one thread")
    parser.add_argument("--json", type=writable_file, metavar="FILE", default=None,
                        help="also write results here, with the machine, threads and versions "
                             "(checked writable before anything runs); default: none, the table only")
    parser.add_argument("--compare", metavar="OLD.json", default=None,
                        help="after the table, print new/old per case against a saved --json result "
                             "(read before anything runs); default: none")


def run(args):
    previous = backend.default_name()
    if args.device == "gpu":
        try:
            backend.use("cupy")
        except RuntimeError as err:     # says why: no cupy, no device, broken CUDA
            raise UsageError(f"--device gpu: {err}") from None
    try:
        return _run(args)
    finally:
        backend.use(previous)


def _run(args):
    repeats = args.repeats or (5 if args.quick else 25)
    if args.only is not None and not make_cases(args.batch, None, args.only):
        names = ", ".join(repr(c.name) for c in make_cases(args.batch))
        raise UsageError(f"--only: got {args.only!r}, which is in no case's name; the cases are {names}")
    if args.device == "gpu" and args.clock == "cpu":
        raise UsageError("--clock cpu does not measure GPU work; use --clock wall")
    old = None
    if args.compare is not None:
        try:
            old = report.load(args.compare)
        except ValueError as err:
            raise UsageError(f"--compare: {err}") from None
    torch_side = None
    if not args.no_torch:
        from refnet.bench.torch_side import TorchSide  # torch only here, and only when asked for
        torch_side = TorchSide.create(args.device)
    # looked up on the package, so that a test replacing refnet.bench.gemm_peak/run_cases reaches here
    peak = package.gemm_peak(512 if args.quick else 1024, clock=args.clock)
    print(f"refnet bench: device {args.device}, float32, batch {args.batch}, median of {repeats} "
          f"interleaved repeats ({args.clock} clock); float32 GEMM peak {peak:.0f} GFLOP/s; "
          f"refnet's blocked ops (layer norm, max pooling) on up to {_chunks.threads()} threads; "
          f"{torch_side.describe() if torch_side else 'PyTorch: not compared'}", flush=True)
    note = thread_note(torch_side.threads() if torch_side else None, _chunks.threads())
    if note:
        print(note, flush=True)
    rows = package.run_cases(make_cases(args.batch, torch_side, args.only), repeats, torch_side, peak,
                             args.clock)
    print(report.format_table(rows))
    machine = report.cpu_info()
    print(f"machine: {machine['model']}, {machine['cores']} cores, {' '.join(machine['flags']) or 'no flags known'}")
    workspace_mb = conv.workspace_nbytes() / 2 ** 20
    print(f"conv2d's reused buffers, columns and products (not in 'peak MB'): {workspace_mb:.1f} MB")
    from refnet.bench.torch_side import activation_report  # imports no torch itself
    memory = activation_report(NETS, args.batch, torch_side)
    for m in memory:
        torch_mb = "-" if m["torch_mb"] is None else f"{m['torch_mb']:.1f} MB"
        ratio = "" if m["ratio"] is None else f" (ratio {m['ratio']:.2f})"
        print(f"activation memory kept for backward, {m['name']}: refnet {m['refnet_mb']:.1f} MB, "
              f"PyTorch {torch_mb}{ratio}")
    record = report.result(args, repeats, peak, rows, memory, torch_side, workspace_mb)
    if old is not None:
        print(report.format_compare(report.compare(record, old), record, old, args.compare))
    if args.json:
        report.save(args.json, record)
    return 0


def thread_note(torch_threads, refnet_threads):
    """A line saying the two sides run on different thread counts, or None when they match
    (or PyTorch is not compared on the CPU)."""
    if torch_threads is None or torch_threads == refnet_threads:
        return None
    return (f"note: PyTorch runs on {torch_threads} threads and refnet's blocked ops on {refnet_threads} "
            f"(set OMP_NUM_THREADS to give both the same): the ratios of layer norm and max pooling "
            f"compare unequal shares of the machine")
