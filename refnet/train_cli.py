"""``refnet train``: build a model, an optimizer and a data set from flags, train, and write
``history.json``, ``history.npz`` and ``checkpoint.npz`` into ``--out``.

    refnet train --data fashion-mnist --model cnn --norm bn --opt sgd --lr 0.01 \\
        --momentum 0.9 --l2 5e-4 --epochs 2 --seed 0 --out runs/bn-sgd

``--seed`` seeds the weight initialization and the batch order. ``--resume`` continues
from ``--out``'s checkpoint bit-identically (the flags that shape the run must be the
same; ``--epochs``/``--steps`` may grow). ``--unit-norm`` also projects the
scale-invariant weights onto the unit sphere once before the first step.

Nothing is lost and nothing runs on a mistake. Before any data is loaded: numbers and
paths are checked as they are parsed (``refnet.cli_checks``); an option given for an
optimizer, normalization or schedule it does not apply to (``--opt adam --momentum 0.9``)
is refused, by the tables ``OPTIMIZERS`` and ``APPLIES``; ``--wrapper`` puts the optimizer in
``refnet.optim.Rotational`` or ``Hyperball``; an ``--out`` that holds a run
needs ``--resume`` or ``--overwrite``; ``--resume`` needs a readable checkpoint of the same
run, given the same flags (an omitted one counts as given differently). Ctrl-C or SIGTERM
says so at once, lets the step in flight finish, saves a checkpoint at it, prints the
command that resumes and exits with status 130; a second Ctrl-C stops sooner (mid-step or
mid-test-pass) and still saves every finished step.
"""

import argparse
import inspect
import os
import shlex
import sys
import time

import numpy as np

from refnet import backend, signals
from refnet.cli_checks import (UsageError, existing_dir, nonnegative, nonnegative_int, number_in,
                               positive_int, writable_dir)

SCHEDULES = ("constant", "step", "cosine", "warmup", "warmup-cosine", "warmup-step")
# --opt NAME -> (its class in refnet.optim, the options it takes, this command's defaults
# where they differ from the class's). Adding an optimizer to the command is one entry here
# (plus an add_argument for an option no optimizer had before).
OPTIMIZERS = {
    "sgd": ("SGD", ("lr", "momentum", "nesterov", "l2", "weight_decay", "unit_norm"), {"lr": 0.01}),
    "adam": ("Adam", ("lr", "betas", "eps", "l2", "weight_decay", "unit_norm"), {}),
    "lion": ("Lion", ("lr", "betas", "weight_decay"), {}),
    "muon": ("Muon", ("lr", "weight_decay", "momentum", "nesterov", "eps", "ns_steps", "adjust_lr_fn"), {}),
}
# --wrapper NAME -> its class in refnet.optim, around the --opt optimizer ("none": no wrapper).
WRAPPERS = {"none": None, "rotational": "Rotational", "hyperball": "Hyperball"}
# option -> (the option that decides, the values it applies to); given for another value,
# it is an error rather than silently ignored.
APPLIES = {
    "affine": ("norm", ("bn", "ln", "wn")),
    "unit_norm": ("norm", ("bn", "ln", "wn")),      # nothing is scale-invariant without one
    "data_dir": ("data", ("fashion-mnist", "mnist", "cifar10")),
    "warmup_steps": ("schedule", ("warmup", "warmup-cosine", "warmup-step")),
    "step_size": ("schedule", ("step", "warmup-step")),
    "gamma": ("schedule", ("step", "warmup-step")),
    "eta_r": ("wrapper", ("rotational",)),
    "zero_mean": ("wrapper", ("rotational",)),
}
REQUIRED = object()
# what an option of APPLIES means when not given (REQUIRED: must be given where it applies)
DEFAULTS = {"affine": True, "data_dir": None, "warmup_steps": REQUIRED, "step_size": REQUIRED,
            "gamma": 0.1, "eta_r": None, "zero_mean": False}
CHECKPOINT = "checkpoint.npz"
RUN_FILES = (CHECKPOINT, "history.json", "history.npz")
# Flags that may differ between a run and its --resume.
_FREE_ON_RESUME = {"epochs", "steps", "resume", "overwrite", "out", "device", "progress", "checkpoint_every"}


def add_arguments(parser):
    d = parser.add_argument_group("data")
    d.add_argument("--data", type=_dataset_name, default="fashion-mnist",
                   help="fashion-mnist, mnist, cifar10 or synthetic")
    d.add_argument("--data-dir", type=existing_dir, default=None, metavar="DIR",
                   help="the directory holding the data files, the only place searched when given "
                        "(default: $REFNET_DATA, then the system copy)")
    d.add_argument("--subset", type=positive_int, default=None, metavar="N",
                   help="train on a class-balanced subset of N (default: the whole training split)")
    m = parser.add_argument_group("model")
    m.add_argument("--model", choices=("cnn", "mlp"), default="cnn", help="the network")
    m.add_argument("--norm", choices=("bn", "ln", "wn", "none"), default="bn",
                   help="batch, layer, weight or no normalization")
    m.add_argument("--width", type=positive_int, default=None,
                   help="hidden width (mlp, default 256) or first conv width (cnn, default 32, "
                        "doubling per block)")
    m.add_argument("--depth", type=positive_int, default=None,
                   help="hidden layers (mlp) or conv blocks (cnn); default 2")
    m.add_argument("--no-affine", dest="affine", action="store_false", default=None,
                   help="normalization without gamma/beta (WN: g frozen); --norm bn, ln or wn; "
                        "default: with them")
    m.add_argument("--freeze-head", action="store_true", help="keep the linear head at its initialization")
    m.add_argument("--dtype", choices=("float32", "float64"), default="float32", help="of weights and data")
    o = parser.add_argument_group("optimizer")
    o.add_argument("--opt", choices=tuple(OPTIMIZERS), default="sgd", help="the optimizer")
    unit = number_in(0.0, 1.0, high_open=True)
    for flag, kw, text in (
            ("--lr", dict(type=nonnegative), "learning rate"),
            ("--momentum", dict(type=unit), "momentum"),
            ("--nesterov", dict(action=argparse.BooleanOptionalAction), "Nesterov momentum"),
            ("--betas", dict(type=unit, nargs=2, metavar=("B1", "B2")), "moment decay rates"),
            ("--eps", dict(type=number_in(0.0, low_open=True)),
             "epsilon (Adam's denominator; Muon's Newton-Schulz floor)"),
            ("--l2", dict(type=nonnegative), "coupled L2: the loss gains l2*||w||^2"),
            ("--weight-decay", dict(type=nonnegative), "decoupled: w -= lr*wd*w"),
            ("--unit-norm", dict(action="store_true"), "project scale-invariant weights to norm 1"),
            ("--ns-steps", dict(type=positive_int), "Newton-Schulz iterations"),
            ("--adjust-lr-fn", dict(choices=("original", "match_rms_adamw")),
             "PyTorch's lr adjustment for a matrix's shape (None: original)")):
        o.add_argument(flag, default=None, help=f"{text}; {_optimizer_help(flag[2:].replace('-', '_'))}", **kw)
    o.add_argument("--wrapper", choices=tuple(WRAPPERS), default="none",
                   help="rotational: each scale group turns by a fixed angle per step (Kosson et al.); "
                        "hyperball: fixed weight and step norms, lr sets the angle (Wen et al.); default none")
    o.add_argument("--eta-r", type=nonnegative, default=None,
                   help="--wrapper rotational: the angle per step (default: the inner optimizer's "
                        "equilibrium angle)")
    o.add_argument("--zero-mean", action="store_true", default=None,
                   help="--wrapper rotational: centre the weights and the updates; default off")
    o.add_argument("--schedule", default="constant", choices=SCHEDULES,
                   help="lr factor per step (refnet.optim.schedules)")
    o.add_argument("--warmup-steps", type=positive_int, default=None,
                   help="steps of linear warmup; needed by the warmup schedules (no default)")
    o.add_argument("--step-size", type=positive_int, default=None,
                   help="steps between decays; needed by the step schedules (no default)")
    o.add_argument("--gamma", type=number_in(0.0, 1.0, low_open=True), default=None,
                   help="decay factor of the step schedules; default 0.1")
    t = parser.add_argument_group("training")
    t.add_argument("--epochs", type=positive_int, default=None, help="passes over the data; default 2")
    t.add_argument("--steps", type=positive_int, default=None,
                   help="total steps, instead of --epochs (default: --epochs' worth)")
    t.add_argument("--batch-size", type=positive_int, default=128, help="examples per step")
    t.add_argument("--seed", type=nonnegative_int, default=0, help="seeds the initialization and the batch order")
    t.add_argument("--log-every", type=positive_int, default=1, help="record per-step quantities every N steps")
    t.add_argument("--checkpoint-every", type=positive_int, default=None,
                   help="also checkpoint every N steps (default: at each epoch's end only)")
    t.add_argument("--out", type=writable_dir, required=True, metavar="DIR", help="output directory (required)")
    t.add_argument("--resume", action="store_true", help=f"continue the run in DIR from DIR/{CHECKPOINT}")
    t.add_argument("--overwrite", action="store_true", help="replace a run already in DIR")
    t.add_argument("--device", choices=("cpu", "gpu"), default="cpu", help="cpu (NumPy) or gpu (CuPy)")
    t.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bars (they only show on a terminal anyway)")


def _dataset_name(text):
    import argparse
    from refnet.data import DATASETS, canonical_name
    try:
        return canonical_name(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"got {text!r}, expected one of {', '.join(DATASETS)}") from None


def _optimizer_default(opt, option):
    import refnet.optim
    cls_name, _, ours = OPTIMIZERS[opt]
    if option in ours:
        return ours[option]
    default = inspect.signature(getattr(refnet.optim, cls_name)).parameters[option].default
    return tuple(default) if isinstance(default, list) else default


def _optimizer_help(option):
    """Which --opt an optimizer option applies to, and its default for each of them."""
    users = [name for name, (_, takes, _) in OPTIMIZERS.items() if option in takes]
    defaults = {name: _optimizer_default(name, option) for name in users}
    shown = {repr(v) if isinstance(v, tuple) else str(v) for v in defaults.values()}
    said = (f"default {shown.pop()}" if len(shown) == 1 else
            "default " + ", ".join(f"{v} ({n})" for n, v in defaults.items()))
    return f"--opt {'/'.join(users)}; {said}"


def _flag(option):
    return "--" + {"affine": "no-affine"}.get(option, option.replace("_", "-"))


def _as_given(option, value):
    """How the command line said ``value`` of ``option`` (a switch: given or not)."""
    if option == "affine":
        return "given" if value is False else "not given"
    return ("given" if value else "not given") if value is None or isinstance(value, bool) else repr(value)


def _num_classes(data):
    from refnet.data import CLASSES, synthetic
    return len(CLASSES[data]) if data in CLASSES else inspect.signature(synthetic).parameters["num_classes"].default


def _check_warmup(args, total_steps, said):
    if args.schedule == "warmup-cosine" and args.warmup_steps >= total_steps:
        raise UsageError(f"--warmup-steps {args.warmup_steps} with {said}: --schedule warmup-cosine "
                         f"needs fewer warmup steps than steps")


def resolve(args):
    """Refuse options given for an optimizer, normalization or schedule they do not apply
    to, and fill in the defaults of those not given; raises UsageError."""
    _, takes, _ = OPTIMIZERS[args.opt]
    optimizer_options = {k for _, ks, _ in OPTIMIZERS.values() for k in ks}
    for option in sorted(optimizer_options | set(APPLIES)):
        if getattr(args, option) is None:
            continue
        if option in optimizer_options and option not in takes:
            users = [n for n, (_, ks, _) in OPTIMIZERS.items() if option in ks]
            raise UsageError(f"{_flag(option)} does not apply to --opt {args.opt} "
                             f"(it is an option of --opt {', '.join(users)})")
        if option in APPLIES:
            decider, values = APPLIES[option]
            if getattr(args, decider) not in values:
                raise UsageError(f"{_flag(option)} does not apply to --{decider} {getattr(args, decider)} "
                                 f"(only to --{decider} {', '.join(values)})")
    for option in takes:
        if getattr(args, option) is None:
            setattr(args, option, _optimizer_default(args.opt, option))
    for option, default in DEFAULTS.items():
        decider, values = APPLIES[option]
        if getattr(args, option) is None and default is REQUIRED and getattr(args, decider) in values:
            raise UsageError(f"--{decider} {getattr(args, decider)} needs {_flag(option)}")
        if getattr(args, option) is None and default is not REQUIRED:
            setattr(args, option, default)
    if args.epochs is not None and args.steps is not None:
        raise UsageError(f"--epochs {args.epochs} and --steps {args.steps}: give one of them")
    if args.resume and args.overwrite:
        raise UsageError("--resume and --overwrite: give one (--resume continues the run in --out, "
                         "--overwrite replaces it)")
    if args.steps is None and args.epochs is None:
        args.epochs = 2
    if args.nesterov and not args.momentum and args.opt == "sgd":  # Muon's Nesterov blends the gradient in anyway
        raise UsageError(f"--nesterov needs --momentum > 0 (got momentum {args.momentum})")
    if args.steps is not None:
        _check_warmup(args, args.steps, f"--steps {args.steps}")
    if args.subset is not None and args.subset < _num_classes(args.data):
        raise UsageError(f"--subset: got {args.subset}, expected at least one example per class "
                         f"(>= {_num_classes(args.data)} for --data {args.data})")


def build_model(args, data):
    from refnet.nn.models import cnn, mlp
    dtype = np.dtype(args.dtype)
    common = dict(num_classes=data.num_classes, norm=args.norm, rng=np.random.default_rng(args.seed),
                  dtype=dtype, affine=args.affine, train_head=not args.freeze_head)
    if args.model == "mlp":
        return mlp(int(np.prod(data.input_shape)), width=args.width or 256, depth=args.depth or 2,
                   **common)
    if len(data.input_shape) != 3 or data.input_shape[1] != data.input_shape[2]:
        raise ValueError(f"--model cnn: needs square images (C, H, H), got inputs of shape "
                         f"{data.input_shape}; use --model mlp")
    width, depth = args.width or 32, args.depth or 2
    return cnn(data.input_shape[0], image_size=data.input_shape[1],
               widths=tuple(width * 2 ** i for i in range(depth)), **common)


def build_optimizer(args, params):
    """The ``--opt`` optimizer with the options ``resolve`` filled in, in its ``--wrapper``."""
    import refnet.optim
    cls_name, takes, _ = OPTIMIZERS[args.opt]
    options = {k: tuple(v) if isinstance(v, list) else v for k, v in vars(args).items() if k in takes}
    optimizer = getattr(refnet.optim, cls_name)(params, **options)
    if args.wrapper == "rotational":
        return refnet.optim.Rotational(optimizer, eta_r=args.eta_r, zero_mean=args.zero_mean)
    if args.wrapper == "hyperball":
        return refnet.optim.Hyperball(optimizer)
    return optimizer


def build_schedule(args, total_steps):
    from refnet.optim import get_schedule
    name = args.schedule
    if name == "constant":
        return None
    options = {}
    if name.startswith("warmup"):
        options["warmup_steps"] = args.warmup_steps
    if name.endswith("cosine"):
        _check_warmup(args, total_steps, f"--epochs {args.epochs} ({total_steps} steps)")
        options["total_steps"] = total_steps
    if name.endswith("step"):
        options.update(step_size=args.step_size, gamma=args.gamma)
    return get_schedule(name, **options)


def check_out(args):
    """Refuse to replace a run in ``--out`` without --resume or --overwrite, and to resume
    from a checkpoint that is missing, unreadable or from another run (UsageError)."""
    from refnet.checkpoint import CheckpointError, check_format, read_npz
    path = os.path.join(args.out, CHECKPOINT)
    present = [f for f in RUN_FILES if os.path.lexists(os.path.join(args.out, f))]
    for name in present:
        if not os.path.isfile(os.path.join(args.out, name)):
            raise UsageError(f"--out: {os.path.join(args.out, name)} is not a file (refnet train writes "
                             f"its {name} there); move it away or train into another --out")
    if not args.resume:
        if present and not args.overwrite:
            raise UsageError(f"--out {args.out} already holds {_describe_run(path, present)}; add "
                             f"--resume to continue it or --overwrite to replace it")
        return
    if not os.path.exists(path):
        raise UsageError(f"--resume: no checkpoint at {path}; run without --resume first")
    try:
        meta = read_npz(path, meta_only=True)[1]
        check_format(path, meta)
    except CheckpointError as err:
        raise UsageError(f"--resume: {err}; start the run again with --overwrite, or put back a "
                         f"good copy of the file") from None
    saved = meta
    for key in ("history", "config", "args"):
        saved = saved.get(key) if isinstance(saved, dict) else None
    if not isinstance(saved, dict):
        raise UsageError(f"--resume: {path} does not record the flags of its run (not written by "
                         f"refnet train); train into another --out")
    now = {k: v for k, v in _args_dict(args).items() if k not in _FREE_ON_RESUME}  # filled in by resolve
    diff = {k: (saved.get(k), v) for k, v in now.items() if saved.get(k) != v}
    if diff:
        listed = ", ".join(f"{_flag(k)} was {_as_given(k, a)}, now {_as_given(k, b)}"
                           for k, (a, b) in diff.items())
        raise UsageError(f"--resume: the flags differ from those of the run in {path}: {listed}; "
                         f"resume with that run's flags, or train into another --out")


def _describe_run(path, present):
    from refnet.checkpoint import CheckpointError, read_npz
    try:
        meta = read_npz(path, meta_only=True)[1] or {}
        step, total = meta["step"], meta["history"]["config"]["steps"]
    except (OSError, CheckpointError, KeyError, TypeError):
        return f"the files of a run ({', '.join(present)})"
    return f"a {'finished' if step >= total else 'partial'} run (step {step} of {total})"


def _args_dict(args):
    from refnet.checkpoint import json_safe
    return json_safe({k: v for k, v in vars(args).items() if not k.startswith("_") and k != "command"})


def _resume_command(args):
    words = [w for w in args._argv if w != "--overwrite"]
    return "refnet " + shlex.join(words + ([] if "--resume" in words else ["--resume"]))


def _say(line):
    """Print from a signal handler: straight to the file descriptor, as the handler may run
    while the main code is inside a write to sys.stderr (a reentrant write is a RuntimeError)."""
    try:
        os.write(sys.stderr.fileno(), (line + "\n").encode())
    except (AttributeError, OSError, ValueError):  # no descriptor (a captured stream)
        print(line, file=sys.stderr)


def _fail(message, code=2):
    print(f"refnet train: {message}", file=sys.stderr)
    return code


def run(args):
    from refnet.checkpoint import CheckpointError
    from refnet.data import load_dataset
    from refnet.nn.models import trainable_parameters
    from refnet.train import NonFiniteLossError, Trainer, TrainingInterrupted
    resolve(args)
    check_out(args)
    if args.device == "gpu":
        try:
            backend.use("gpu")
        except RuntimeError as err:
            raise UsageError(f"--device gpu: {err}") from None
    t0 = time.perf_counter()
    try:
        data = load_dataset(args.data, data_dir=args.data_dir, subset=args.subset, seed=args.seed)
        model = build_model(args, data)
        optimizer = build_optimizer(args, trainable_parameters(model))
        trainer = Trainer(model, optimizer, data, batch_size=args.batch_size, epochs=args.epochs or 1,
                          steps=args.steps, seed=args.seed, log_every=args.log_every, out_dir=args.out,
                          progress=args.progress, checkpoint_every=args.checkpoint_every,
                          config={"args": _args_dict(args)})
        trainer.schedule = build_schedule(args, trainer.total_steps)
    except (OSError, ValueError, TypeError) as err:  # the library names its argument; say the option
        return _fail(str(err).replace("load_dataset(subset)", "--subset", 1))
    if args.resume:
        try:
            trainer.load_checkpoint(os.path.join(args.out, CHECKPOINT))
        except CheckpointError as err:
            return _fail(f"--resume: {err}; resume with that run's flags, or train into another --out")
        print(f"resuming {trainer.last_checkpoint} at step {trainer.step} (epoch {trainer.epoch})")
    else:
        for name in RUN_FILES if args.overwrite else ():  # replaced now, not mixed with the new run's
            if os.path.exists(os.path.join(args.out, name)):
                os.remove(os.path.join(args.out, name))
        if args.unit_norm:
            optimizer.project()
    first = trainer.step
    print(f"{data!r}\ntraining {args.model}/{args.norm} ({sum(p.data.size for p in model.parameters())} "
          f"parameters) for {trainer.total_steps} steps on {backend.default_name()}")

    def request_stop(signum):
        is_first = trainer.stops.signum is None
        trainer.request_stop(signum)  # before saying so: a second signal may come while it is said
        if is_first:
            _say(f"refnet train: {signals.signal_name(signum)} at step {trainer.step} of {trainer.total_steps}: "
                 f"finishing the step in flight, then saving a checkpoint; press Ctrl-C again to stop "
                 f"sooner (every finished step is saved all the same)")

    with signals.handled(request_stop):  # still while saying so: once stopping, a Ctrl-C changes nothing
        try:
            history = trainer.fit()
        except TrainingInterrupted as stop:
            print(f"refnet train: {stop}; resume with: {_resume_command(args)}", file=sys.stderr)
            return 130
        except NonFiniteLossError as err:
            return _fail(str(err), code=1)
    for i, e in enumerate(history.epochs["epoch"]):
        print(f"epoch {e}: train loss {history['train_loss'][i]:.4f} acc {history['train_accuracy'][i]:.4f}"
              f" | test loss {_fmt(history['test_loss'][i])} acc {_fmt(history['test_accuracy'][i])}"
              f" | {history['epoch_time'][i]:.1f} s")
    f = history.final
    this_run = f" ({trainer.step - first} in this run)" if first else ""
    print(f"done: {trainer.step} steps{this_run} in {time.perf_counter() - t0:.1f} s; train loss "
          f"{_fmt(f['train_loss'])} acc {_fmt(f['train_accuracy'])}, test loss {_fmt(f['test_loss'])} "
          f"acc {_fmt(f['test_accuracy'])}; files in {os.path.abspath(args.out)}: {', '.join(RUN_FILES)}")
    return 0


def _fmt(x):
    return "-" if x is None else f"{x:.4f}"
