"""``refnet gradcheck``: every built-in op and module against numerical gradients.

Each case builds small float64 inputs from its own seeded generator, runs
``refnet.gradcheck.check_op``/``check_loss``/``check_module`` and returns the report.
Inputs are chosen to exercise what tends to break: strides and padding, non-square
shapes, overlapping pooling windows, a missing bias, batch statistics, and kinks as they
occur in real networks (exact zeros after a ReLU, tied maxima in an all-zero window).
"""

import argparse
import time
import zlib

import numpy as np

from refnet.cli_checks import nonnegative_int
from refnet.gradcheck import RTOL, check_loss, check_module, check_op

CASES = {}  # name -> (kind, what it checks, function(rng) -> GradcheckReport)


def _case(name, what, kind="op"):
    def register(fn):
        CASES[name] = (kind, what, fn)
        return fn
    return register


def run_case(name, seed=0):
    """The report of one built-in case; its inputs depend only on ``name`` and ``seed``."""
    return CASES[name][2](np.random.default_rng([seed, zlib.crc32(name.encode())]))


def _randn(rng, *shape):
    return rng.standard_normal(shape)


def _post_relu(rng, *shape):
    """Non-negative with exact zeros and whole zero 2x2 windows, as after a ReLU."""
    x = np.maximum(_randn(rng, *shape), 0)
    x[:, :, :2, :2] = 0.0
    return x


# --- ops ---------------------------------------------------------------------------------
@_case("linear", "x (3,5), w (4,5), b (4,)")
def _linear(rng):
    from refnet.ops import linear_backward, linear_forward
    return check_op(linear_forward, linear_backward, (_randn(rng, 3, 5), _randn(rng, 4, 5), _randn(rng, 4)))


@_case("linear_nobias", "x (2,6), w (3,6), b None")
def _linear_nobias(rng):
    from refnet.ops import linear_backward, linear_forward
    return check_op(linear_forward, linear_backward, (_randn(rng, 2, 6), _randn(rng, 3, 6), None))


@_case("conv2d", "x (2,3,7,6), w (4,3,3,2), stride (2,1), padding 1")
def _conv2d(rng):
    from refnet.ops import conv2d_backward, conv2d_forward
    args = (_randn(rng, 2, 3, 7, 6), _randn(rng, 4, 3, 3, 2), _randn(rng, 4))
    return check_op(conv2d_forward, conv2d_backward, args, {"stride": (2, 1), "padding": 1})


@_case("conv2d_nobias", "x (1,2,5,5), w (3,2,3,3), b None, stride 3, padding 2")
def _conv2d_nobias(rng):
    from refnet.ops import conv2d_backward, conv2d_forward
    args = (_randn(rng, 1, 2, 5, 5), _randn(rng, 3, 2, 3, 3), None)
    return check_op(conv2d_forward, conv2d_backward, args, {"stride": 3, "padding": 2})


@_case("maxpool2d", "post-ReLU x (2,2,6,5), kernel 2: zeros and tied windows")
def _maxpool2d(rng):
    from refnet.ops import maxpool2d_backward, maxpool2d_forward
    return check_op(maxpool2d_forward, maxpool2d_backward, (_post_relu(rng, 2, 2, 6, 5),),
                    {"kernel_size": 2})


@_case("maxpool2d_overlap", "x (2,2,7,6), kernel 3, stride (2,1): overlapping windows")
def _maxpool2d_overlap(rng):
    from refnet.ops import maxpool2d_backward, maxpool2d_forward
    return check_op(maxpool2d_forward, maxpool2d_backward, (_randn(rng, 2, 2, 7, 6),),
                    {"kernel_size": 3, "stride": (2, 1)})


@_case("avgpool2d", "x (2,2,7,6), kernel (3,2), stride (2,1)")
def _avgpool2d(rng):
    from refnet.ops import avgpool2d_backward, avgpool2d_forward
    return check_op(avgpool2d_forward, avgpool2d_backward, (_randn(rng, 2, 2, 7, 6),),
                    {"kernel_size": (3, 2), "stride": (2, 1)})


@_case("relu", "x (4,6) with three exact zeros")
def _relu(rng):
    from refnet.ops import relu_backward, relu_forward
    x = _randn(rng, 4, 6)
    x[0, :3] = 0.0  # exact zeros: kinks, excluded and counted
    return check_op(relu_forward, relu_backward, (x,))


@_case("softmax_cross_entropy", "logits (5,4) of scale 3, integer labels")
def _softmax_ce(rng):
    from refnet.ops import softmax_cross_entropy
    return check_loss(softmax_cross_entropy, 3 * _randn(rng, 5, 4), rng.integers(0, 4, 5))


@_case("batchnorm", "training mode, x (3,2,3,2), random gamma and beta")
def _batchnorm(rng):
    from refnet.ops import batchnorm_backward, batchnorm_forward
    return check_op(batchnorm_forward, batchnorm_backward,
                    (_randn(rng, 3, 2, 3, 2), _randn(rng, 2), _randn(rng, 2)))


@_case("batchnorm_1d", "training mode, x (5,3)")
def _batchnorm_1d(rng):
    from refnet.ops import batchnorm_backward, batchnorm_forward
    args = (_randn(rng, 5, 3), _randn(rng, 3), _randn(rng, 3))
    return check_op(batchnorm_forward, batchnorm_backward, args)


@_case("batchnorm_eval", "eval mode: x, gamma, beta, running mean and var (all differentiated)")
def _batchnorm_eval(rng):
    from refnet.ops import batchnorm_eval_backward, batchnorm_eval_forward
    args = (_randn(rng, 3, 2, 3, 2), _randn(rng, 2), _randn(rng, 2), _randn(rng, 2),
            rng.uniform(0.5, 2.0, 2))
    return check_op(batchnorm_eval_forward, batchnorm_eval_backward, args)


@_case("layernorm", "x (3,2,3,2), gamma and beta (2,3,2)")
def _layernorm(rng):
    from refnet.ops import layernorm_backward, layernorm_forward
    return check_op(layernorm_forward, layernorm_backward,
                    (_randn(rng, 3, 2, 3, 2), _randn(rng, 2, 3, 2), _randn(rng, 2, 3, 2)))


@_case("weightnorm", "v (3,2,2,2), g (3,)")
def _weightnorm(rng):
    from refnet.ops import weightnorm_backward, weightnorm_forward
    return check_op(weightnorm_forward, weightnorm_backward, (_randn(rng, 3, 2, 2, 2), _randn(rng, 3)))


# --- modules -----------------------------------------------------------------------------
def _layers():
    from refnet.nn import layers, norm
    return layers, norm


def _randomize_affine(layer, rng):
    layer.weight.data[...] = rng.uniform(0.5, 1.5, layer.weight.shape)
    layer.bias.data[...] = _randn(rng, *layer.bias.shape)
    return layer


@_case("nn.Linear", "Linear(5, 4)", "module")
def _nn_linear(rng):
    L, _ = _layers()
    return check_module(L.Linear(5, 4, rng=rng, dtype=np.float64), _randn(rng, 3, 5))


@_case("nn.Conv2d", "Conv2d(2, 3, (2,3), stride 2, padding (1,0))", "module")
def _nn_conv2d(rng):
    L, _ = _layers()
    m = L.Conv2d(2, 3, (2, 3), stride=2, padding=(1, 0), rng=rng, dtype=np.float64)
    return check_module(m, _randn(rng, 2, 2, 5, 6))


@_case("nn.ReLU", "ReLU()", "module")
def _nn_relu(rng):
    L, _ = _layers()
    return check_module(L.ReLU(), _randn(rng, 3, 4))


@_case("nn.MaxPool2d", "MaxPool2d(2) on a post-ReLU input", "module")
def _nn_maxpool(rng):
    L, _ = _layers()
    return check_module(L.MaxPool2d(2), _post_relu(rng, 1, 2, 4, 4))


@_case("nn.AvgPool2d", "AvgPool2d(2, stride=1)", "module")
def _nn_avgpool(rng):
    L, _ = _layers()
    return check_module(L.AvgPool2d(2, stride=1), _randn(rng, 1, 2, 3, 4))


@_case("nn.Flatten", "Flatten()", "module")
def _nn_flatten(rng):
    L, _ = _layers()
    return check_module(L.Flatten(), _randn(rng, 2, 2, 3))


@_case("nn.BatchNorm1d", "BatchNorm1d(3), training mode", "module")
def _nn_bn1d(rng):
    _, N = _layers()
    return check_module(_randomize_affine(N.BatchNorm1d(3, dtype=np.float64), rng), _randn(rng, 4, 3))


@_case("nn.BatchNorm2d", "BatchNorm2d(2), training mode", "module")
def _nn_bn2d(rng):
    _, N = _layers()
    return check_module(_randomize_affine(N.BatchNorm2d(2, dtype=np.float64), rng), _randn(rng, 2, 2, 3, 3))


@_case("nn.BatchNorm2d.eval", "BatchNorm2d(2), eval mode with trained running statistics", "module")
def _nn_bn2d_eval(rng):
    _, N = _layers()
    m = _randomize_affine(N.BatchNorm2d(2, dtype=np.float64), rng)
    for _ in range(3):  # give the running statistics values other than (0, 1)
        m(2 + 3 * _randn(rng, 4, 2, 3, 3))
    return check_module(m.eval(), _randn(rng, 2, 2, 3, 3))


@_case("nn.LayerNorm", "LayerNorm((2,3))", "module")
def _nn_layernorm(rng):
    _, N = _layers()
    return check_module(_randomize_affine(N.LayerNorm((2, 3), dtype=np.float64), rng), _randn(rng, 3, 2, 3))


@_case("nn.WeightNorm(Linear)", "WeightNorm(Linear(4, 3))", "module")
def _nn_wn_linear(rng):
    L, N = _layers()
    m = N.WeightNorm(L.Linear(4, 3, rng=rng, dtype=np.float64))
    m.weight_g.data[...] = rng.uniform(0.5, 2.0, 3)
    return check_module(m, _randn(rng, 2, 4))


@_case("nn.WeightNorm(Conv2d)", "WeightNorm(Conv2d(2, 3, 2, padding=1))", "module")
def _nn_wn_conv(rng):
    L, N = _layers()
    m = N.WeightNorm(L.Conv2d(2, 3, 2, padding=1, rng=rng, dtype=np.float64))
    m.weight_g.data[...] = rng.uniform(0.5, 2.0, 3)
    return check_module(m, _randn(rng, 2, 2, 3, 3))


@_case("nn.Sequential", "conv-BN-ReLU-pool-flatten-linear-LN-ReLU-linear", "module")
def _nn_stack(rng):
    from refnet.nn.module import Sequential
    L, N = _layers()
    f64 = dict(rng=rng, dtype=np.float64)
    bn = _randomize_affine(N.BatchNorm2d(3, dtype=np.float64), rng)
    ln = _randomize_affine(N.LayerNorm(5, dtype=np.float64), rng)
    m = Sequential(L.Conv2d(2, 3, 3, padding=1, **f64), bn, L.ReLU(), L.MaxPool2d(2), L.Flatten(),
                   L.Linear(12, 5, **f64), ln, L.ReLU(), L.Linear(5, 3, **f64))
    return check_module(m, _randn(rng, 2, 2, 4, 4))


# --- the subcommand ----------------------------------------------------------------------
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
    parser.add_argument("-v", "--verbose", action="store_true", help="print every full report")


def run(args):
    if args.list:
        for name, (kind, what, _) in CASES.items():
            print(f"{name:24s} {kind:7s} {what}")
        return 0
    names = [n for group in args.op for n in group] if args.op else list(CASES)
    names = list(dict.fromkeys(names))
    rows, failed = [], []
    for name in names:
        kind = CASES[name][0]
        start = time.perf_counter()
        try:
            report = run_case(name, args.seed)
        except Exception as err:  # a case that cannot run is a failure, shown with its reason
            rows.append((name, kind, "-", "-", "ERROR", f"{type(err).__name__}: {err}"))
            failed.append(name)
            continue
        rows.append((name, kind, f"{report.max_rel_err:.1e}", str(report.n_excluded),
                     "ok" if report.ok else "FAIL", f"{time.perf_counter() - start:.2f}s"))
        if not report.ok:
            failed.append(name)
        if args.verbose or not report.ok:
            print(report, end="\n\n")
    header = ("name", "kind", "max rel err", "kinks excluded", "ok", "time")
    widths = [max(len(r[k]) for r in rows + [header]) for k in range(5)]
    for r in [header] + rows:
        print("  ".join(s.ljust(w) for s, w in zip(r, widths)) + "  " + r[5])
    print(f"{len(rows) - len(failed)}/{len(rows)} passed (rtol {RTOL:.0e} per entry, float64 central "
          f"differences)" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0
