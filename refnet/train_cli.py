"""``refnet train``: build a model, an optimizer and a data set from flags, train, and write
``history.json``, ``history.npz`` and ``checkpoint.npz`` into ``--out``.

    refnet train --data fashion-mnist --model cnn --norm bn --opt sgd --lr 0.01 \\
        --momentum 0.9 --l2 5e-4 --epochs 2 --seed 0 --out runs/bn-sgd

``--seed`` seeds the weight initialization and the batch order. ``--resume`` continues
from ``--out``'s checkpoint bit-identically (the flags that shape the run must be the
same; ``--epochs``/``--steps`` may grow). ``--unit-norm`` also projects the
scale-invariant weights onto the unit sphere once before the first step.
"""

import argparse
import os
import sys

import numpy as np

from refnet import backend

SCHEDULES = ("constant", "step", "cosine", "warmup", "warmup-cosine", "warmup-step")
# Each optimizer's defaults for the flags left unset (PyTorch's; Lion's from its paper).
OPT_DEFAULTS = {
    "sgd": {"lr": 0.01, "momentum": 0.0, "nesterov": False, "weight_decay": 0.0},
    "adam": {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0},
    "lion": {"lr": 1e-4, "betas": (0.9, 0.99), "weight_decay": 0.0},
    "muon": {"lr": 1e-3, "momentum": 0.95, "nesterov": True, "eps": 1e-7, "weight_decay": 0.1},
}
WRAPPERS = ("none", "rotational", "hyperball")
# Flags that may differ between a run and its --resume.
_FREE_ON_RESUME = {"epochs", "steps", "resume", "out", "device", "progress", "checkpoint_every"}


def add_arguments(parser):
    d = parser.add_argument_group("data")
    d.add_argument("--data", default="fashion-mnist",
                   help="fashion-mnist (default), mnist, cifar10 or synthetic")
    d.add_argument("--data-dir", default=None, help="directory of the data files")
    d.add_argument("--subset", type=int, default=None, help="train on a class-balanced subset of N")
    m = parser.add_argument_group("model")
    m.add_argument("--model", choices=("cnn", "mlp"), default="cnn")
    m.add_argument("--norm", choices=("bn", "ln", "wn", "none"), default="bn")
    m.add_argument("--width", type=int, default=None,
                   help="hidden width (mlp, default 256) or first conv width (cnn, default 32, "
                        "doubling per block)")
    m.add_argument("--depth", type=int, default=None, help="hidden layers (mlp) or conv blocks (cnn), default 2")
    m.add_argument("--no-affine", dest="affine", action="store_false",
                   help="normalization without gamma/beta (WN: g frozen)")
    m.add_argument("--freeze-head", action="store_true", help="keep the linear head at its initialization")
    m.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    o = parser.add_argument_group("optimizer")
    o.add_argument("--opt", choices=tuple(OPT_DEFAULTS), default="sgd")
    o.add_argument("--wrapper", choices=WRAPPERS, default="none",
                   help="rotational: every scale group turns by a fixed angle per step (Kosson et al.); "
                        "hyperball: fixed weight and step norms, lr sets the angle (Wen et al.)")
    o.add_argument("--lr", type=float, default=None,
                   help="learning rate (default 0.01 sgd, 0.001 adam, 1e-4 lion, 0.001 muon)")
    o.add_argument("--momentum", type=float, default=None, help="sgd (default 0), muon (default 0.95)")
    o.add_argument("--nesterov", action=argparse.BooleanOptionalAction, default=None,
                   help="sgd (default off), muon (default on)")
    o.add_argument("--betas", type=float, nargs=2, default=None, metavar=("B1", "B2"),
                   help="adam (default 0.9 0.999), lion (default 0.9 0.99)")
    o.add_argument("--eps", type=float, default=None,
                   help="adam's epsilon (default 1e-8); muon's Newton-Schulz floor (default 1e-7)")
    o.add_argument("--l2", type=float, default=0.0, help="coupled L2: the loss gains l2*||w||^2")
    o.add_argument("--weight-decay", type=float, default=None,
                   help="decoupled: w -= lr*wd*w (default 0; muon 0.1)")
    o.add_argument("--ns-steps", type=int, default=5, help="muon: Newton-Schulz iterations")
    o.add_argument("--adjust-lr", choices=("original", "match_rms_adamw"), default="original",
                   help="muon: PyTorch's learning-rate adjustment for the matrix shape")
    o.add_argument("--eta-r", type=float, default=None,
                   help="rotational: angle per step (default: the inner optimizer's equilibrium angle)")
    o.add_argument("--zero-mean", action="store_true", help="rotational: centre weights and updates")
    o.add_argument("--unit-norm", action="store_true", help="project scale-invariant weights to norm 1")
    o.add_argument("--schedule", default="constant", choices=SCHEDULES,
                   help="lr factor per step (refnet.optim.schedules); default constant")
    o.add_argument("--warmup-steps", type=int, default=None)
    o.add_argument("--step-size", type=int, default=None, help="steps between decays (schedule step)")
    o.add_argument("--gamma", type=float, default=0.1, help="decay factor (schedule step)")
    t = parser.add_argument_group("training")
    t.add_argument("--epochs", type=int, default=2)
    t.add_argument("--steps", type=int, default=None, help="total steps (overrides --epochs)")
    t.add_argument("--batch-size", type=int, default=128)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--log-every", type=int, default=1, help="record per-step quantities every N steps")
    t.add_argument("--checkpoint-every", type=int, default=None, help="also checkpoint every N steps")
    t.add_argument("--out", required=True, help="output directory")
    t.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    t.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.npz")
    t.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")


def _fail(message, code=2):
    print(f"refnet train: {message}", file=sys.stderr)
    return code


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
    from refnet.optim import SGD, Adam, Hyperball, Lion, Muon, Rotational
    o = {k: (OPT_DEFAULTS[args.opt].get(k) if getattr(args, k) is None else getattr(args, k))
         for k in ("lr", "momentum", "nesterov", "betas", "eps", "weight_decay")}
    if args.opt in ("lion", "muon") and (args.l2 or args.unit_norm):
        flag = "--l2" if args.l2 else "--unit-norm"
        raise ValueError(f"{flag}: --opt {args.opt} has no coupled L2 or unit-norm projection; use "
                         f"--weight-decay, or --wrapper hyperball for a fixed norm")
    if args.opt == "adam":
        opt = Adam(params, lr=o["lr"], betas=tuple(o["betas"]), eps=o["eps"], l2=args.l2,
                   weight_decay=o["weight_decay"], unit_norm=args.unit_norm)
    elif args.opt == "lion":
        opt = Lion(params, lr=o["lr"], betas=tuple(o["betas"]), weight_decay=o["weight_decay"])
    elif args.opt == "muon":
        opt = Muon(params, lr=o["lr"], weight_decay=o["weight_decay"], momentum=o["momentum"],
                   nesterov=o["nesterov"], eps=o["eps"], ns_steps=args.ns_steps, adjust_lr_fn=args.adjust_lr)
    else:
        opt = SGD(params, lr=o["lr"], momentum=o["momentum"], nesterov=o["nesterov"], l2=args.l2,
                  weight_decay=o["weight_decay"], unit_norm=args.unit_norm)
    if args.wrapper == "rotational":
        return Rotational(opt, eta_r=args.eta_r, zero_mean=args.zero_mean)
    if args.wrapper == "hyperball":
        return Hyperball(opt)
    return opt


def build_schedule(args, total_steps):
    from refnet.optim import get_schedule
    name = args.schedule
    if name == "constant":
        return None
    options = {}
    if name.startswith("warmup"):
        options["warmup_steps"] = args.warmup_steps
    if name.endswith("cosine"):
        options["total_steps"] = total_steps
    if name.endswith("step"):
        options.update(step_size=args.step_size, gamma=args.gamma)
    missing = [k for k, v in options.items() if v is None]
    if missing:
        raise ValueError(f"--schedule {name}: needs --{missing[0].replace('_', '-')}")
    return get_schedule(name, **options)


def _check_resume(args, path):
    from refnet.checkpoint import read_npz
    if not os.path.exists(path):
        raise FileNotFoundError(f"--resume: no checkpoint at {path}; run without --resume first")
    _, meta = read_npz(path)
    saved = (meta or {}).get("history", {}).get("config", {}).get("args", {})
    now = {k: v for k, v in _args_dict(args).items() if k not in _FREE_ON_RESUME}
    diff = {k: (saved.get(k), v) for k, v in now.items() if saved.get(k) != v}
    if diff:
        listed = ", ".join(f"--{k.replace('_', '-')} was {a!r}, now {b!r}" for k, (a, b) in diff.items())
        raise ValueError(f"--resume: the flags differ from the checkpoint's run: {listed}")


def _args_dict(args):
    from refnet.checkpoint import json_safe
    return json_safe({k: v for k, v in vars(args).items() if not k.startswith("_") and k != "command"})


def run(args):
    from refnet.data import load_dataset
    from refnet.nn.models import trainable_parameters
    from refnet.train import NonFiniteLossError, Trainer
    if args.device == "gpu":
        try:
            backend.use("gpu")
        except RuntimeError as err:
            return _fail(f"--device gpu: {err}")
    ckpt = os.path.join(args.out, "checkpoint.npz")
    try:
        if args.resume:
            _check_resume(args, ckpt)
        data = load_dataset(args.data, data_dir=args.data_dir, subset=args.subset, seed=args.seed)
        model = build_model(args, data)
        optimizer = build_optimizer(args, trainable_parameters(model))
    except (OSError, ValueError, TypeError) as err:
        return _fail(str(err))
    trainer = Trainer(model, optimizer, data, batch_size=args.batch_size, epochs=args.epochs,
                      steps=args.steps, seed=args.seed, log_every=args.log_every, out_dir=args.out,
                      progress=args.progress, checkpoint_every=args.checkpoint_every,
                      config={"args": _args_dict(args)})
    try:
        trainer.schedule = build_schedule(args, trainer.total_steps)
    except (ValueError, TypeError) as err:
        return _fail(str(err))
    if args.resume:
        trainer.load_checkpoint(ckpt)
        print(f"resuming {ckpt} at step {trainer.step} (epoch {trainer.epoch})")
    elif args.unit_norm:
        optimizer.project()
    print(f"{data!r}\ntraining {args.model}/{args.norm} ({sum(p.data.size for p in model.parameters())} "
          f"parameters) for {trainer.total_steps} steps on {backend.default_name()}")
    try:
        history = trainer.fit()
    except NonFiniteLossError as err:
        return _fail(str(err), code=1)
    for i, e in enumerate(history.epochs["epoch"]):
        print(f"epoch {e}: train loss {history['train_loss'][i]:.4f} acc {history['train_accuracy'][i]:.4f}"
              f" | test loss {_fmt(history['test_loss'][i])} acc {_fmt(history['test_accuracy'][i])}"
              f" | {history['epoch_time'][i]:.1f} s")
    out = os.path.abspath(args.out)
    names = ", ".join(os.path.join(out, f) for f in ("history.json", "history.npz", "checkpoint.npz"))
    print(f"wrote {names}")
    return 0


def _fmt(x):
    return "-" if x is None else f"{x:.4f}"
