"""The built-in cases of ``refnet gradcheck``: every op and module against numerical gradients.

Each case builds float64 inputs from its own seeded generator, small (what ``refnet
gradcheck`` checks: every tensor within ``max_full``, so entry by entry) or large (what the
power campaign also checks in directional mode), and returns a ``Setup``: what to call, on
what, and where its kinks are. Inputs exercise what tends to break: strides and padding,
non-square shapes, overlapping pooling windows, a missing bias, batch statistics, output
offsets (a bias of 1e4: the derivative does not change, the rounding noise does) and kinks
as they occur in real networks (exact zeros after a ReLU, tied maxima in an all-zero window).
"""

import zlib

import numpy as np

from refnet.gradcheck.check import check_loss, check_module, check_op
from refnet.gradcheck.inputs import arg_names

CASES = {}  # name -> (kind, what it checks, make(rng, large) -> Setup)


class Setup:
    """One check, ready to run: ``kind`` "op" (``fn`` = (forward, backward)), "loss"
    (``fn`` = loss_fn) or "module" (``fn`` = the module, ``args`` = (x,)); ``kinks``:
    {argument name: bool mask of the entries at a kink}, known from how the inputs were made."""

    def __init__(self, kind, fn, args, kwargs=None, kinks=None):
        self.kind, self.fn, self.args, self.kwargs = kind, fn, tuple(args), dict(kwargs or {})
        self.kinks = dict(kinks or {})

    def names(self):
        """The checked arguments, in the report's order."""
        if self.kind == "module":
            return ["x"] + [n for n, _ in self.fn.named_parameters()]
        if self.kind == "loss":
            return ["logits"]
        return [n for n, a in zip(arg_names(self.fn[0], len(self.args)), self.args) if a is not None]

    def check(self, **opts):
        if self.kind == "module":
            return check_module(self.fn, self.args[0], **opts)
        if self.kind == "loss":
            return check_loss(self.fn, *self.args, **opts)
        return check_op(*self.fn, self.args, self.kwargs, **opts)


def _case(name, what, kind="op"):
    def register(fn):
        CASES[name] = (kind, what, fn)
        return fn
    return register


def make_case(name, seed=0, large=False):
    """The Setup of one built-in case; its inputs depend only on ``name``, ``seed`` and size."""
    return CASES[name][2](np.random.default_rng([seed, zlib.crc32(name.encode()), int(large)]), large)


def run_case(name, seed=0, **opts):
    """The report of one built-in case at its small size."""
    return make_case(name, seed).check(**opts)


def _randn(rng, *shape):
    return rng.standard_normal(shape)


def _with_zeros(rng, x, fraction=0.1):
    """Exact zeros in a tenth of the entries: ReLU's kinks, as its inputs have after a ReLU."""
    x[rng.random(x.shape) < fraction] = 0.0
    return x


def _post_relu(rng, *shape):
    """Non-negative with exact zeros and whole zero 2x2 windows, as after a ReLU."""
    x = np.maximum(_randn(rng, *shape), 0)
    x[:, :, :2, :2] = 0.0
    return x


def _pool_ties(x, kernel, stride):
    """Entries that tie for the maximum of a pooling window (kinks of max-pooling)."""
    from numpy.lib.stride_tricks import sliding_window_view
    windows = sliding_window_view(x, kernel, axis=(2, 3))[:, :, ::stride[0], ::stride[1]]
    tied = (windows == windows.max(axis=(-2, -1), keepdims=True)).sum(axis=(-2, -1)) > 1
    mask = np.zeros(x.shape, dtype=bool)
    for i, j in zip(*np.nonzero(tied.any(axis=(0, 1)))):
        top = windows[:, :, i, j] == windows[:, :, i, j].max(axis=(-2, -1), keepdims=True)
        top &= tied[:, :, i, j][..., None, None]
        r, c = i * stride[0], j * stride[1]
        mask[:, :, r:r + kernel[0], c:c + kernel[1]] |= top
    return mask


def _op(forward_name, args, kwargs=None, kinks=None):
    from refnet import ops
    forward = getattr(ops, forward_name)
    backward = getattr(ops, forward_name.replace("_forward", "_backward"))
    return Setup("op", (forward, backward), args, kwargs, kinks)


# --- ops ---------------------------------------------------------------------------------
@_case("linear", "x (3,5), w (4,5), b (4,) + 1e4 (an output offset); large: x (16,64), w (48,64)")
def _linear(rng, large):
    n, d, o = (16, 64, 48) if large else (3, 5, 4)
    return _op("linear_forward", (_randn(rng, n, d), _randn(rng, o, d), 1e4 + _randn(rng, o)))


@_case("linear_nobias", "x (2,6), w (3,6), b None; large: x (8,60), w (50,60)")
def _linear_nobias(rng, large):
    n, d, o = (8, 60, 50) if large else (2, 6, 3)
    return _op("linear_forward", (_randn(rng, n, d), _randn(rng, o, d), None))


@_case("conv2d", "x (2,3,7,6), w (3,3,3,2), stride (2,1), padding 1; large: x (4,8,12,12), w (8,8,3,3)")
def _conv2d(rng, large):
    n, c, h, w, k = (4, 8, 12, 12, (3, 3)) if large else (2, 3, 7, 6, (3, 2))
    args = (_randn(rng, n, c, h, w), _randn(rng, c, c, *k), 1e3 + _randn(rng, c))
    return _op("conv2d_forward", args, {"stride": (2, 1), "padding": 1})


@_case("conv2d_nobias", "x (1,2,5,5), w (3,2,3,3), b None, stride 3, padding 2; large: x (4,6,10,10)")
def _conv2d_nobias(rng, large):
    n, c, s = (4, 6, 10) if large else (1, 2, 5)
    args = (_randn(rng, n, c, s, s), _randn(rng, c + 1, c, 3, 3), None)
    return _op("conv2d_forward", args, {"stride": 3, "padding": 2})


@_case("maxpool2d", "post-ReLU x (2,2,6,5), kernel 2: zeros and tied windows; large: (4,8,24,24)")
def _maxpool2d(rng, large):
    # large: 18432 entries, nearly every directional block holds a tie (the pooled noise must not see them)
    x = _post_relu(rng, *((4, 8, 24, 24) if large else (2, 2, 6, 5)))
    return _op("maxpool2d_forward", (x,), {"kernel_size": 2}, {"x": _pool_ties(x, (2, 2), (2, 2))})


@_case("maxpool2d_overlap", "x (2,2,7,6), kernel 3, stride (2,1): overlapping windows; large: (3,4,15,14)")
def _maxpool2d_overlap(rng, large):
    x = _randn(rng, *((3, 4, 15, 14) if large else (2, 2, 7, 6)))
    return _op("maxpool2d_forward", (x,), {"kernel_size": 3, "stride": (2, 1)},
               {"x": _pool_ties(x, (3, 3), (2, 1))})


@_case("avgpool2d", "x (2,2,7,6) + 1e3, kernel (3,2), stride (2,1); large: (4,4,16,15)")
def _avgpool2d(rng, large):
    x = 1e3 + _randn(rng, *((4, 4, 16, 15) if large else (2, 2, 7, 6)))
    return _op("avgpool2d_forward", (x,), {"kernel_size": (3, 2), "stride": (2, 1)})


@_case("relu", "x (6,8) with 10% exact zeros; large: (128,128)")
def _relu(rng, large):
    # large: blocks of 64 entries, nearly every one holding a zero (the pooled noise must not see them)
    x = _with_zeros(rng, _randn(rng, *((128, 128) if large else (6, 8))))
    return _op("relu_forward", (x,), kinks={"x": x == 0})


@_case("softmax_cross_entropy", "logits (5,4) of scale 3, integer labels; large: (64,40) + 100")
def _softmax_ce(rng, large):
    from refnet.ops import softmax_cross_entropy
    n, c = (64, 40) if large else (5, 4)
    return Setup("loss", softmax_cross_entropy, (100 * large + 3 * _randn(rng, n, c), rng.integers(0, c, n)))


@_case("batchnorm", "training mode, x (3,2,3,2), random gamma, beta + 1e3; large: x (8,4,9,9)")
def _batchnorm(rng, large):
    shape = (8, 4, 9, 9) if large else (3, 2, 3, 2)
    c = shape[1]
    return _op("batchnorm_forward", (_randn(rng, *shape), _randn(rng, c), 1e3 + _randn(rng, c)))


@_case("batchnorm_1d", "training mode, x (5,3); large: x (300,8)")
def _batchnorm_1d(rng, large):
    n, c = (300, 8) if large else (5, 3)
    return _op("batchnorm_forward", (_randn(rng, n, c), _randn(rng, c), _randn(rng, c)))


@_case("batchnorm_eval", "eval mode: x, gamma, beta, running mean and var (all differentiated); "
                         "large: x (8,4,9,9)")
def _batchnorm_eval(rng, large):
    shape = (8, 4, 9, 9) if large else (3, 2, 3, 2)
    c = shape[1]
    args = (_randn(rng, *shape), _randn(rng, c), _randn(rng, c), _randn(rng, c), rng.uniform(0.5, 2.0, c))
    return _op("batchnorm_eval_forward", args)


@_case("layernorm", "x (3,2,3,2), gamma and beta (2,3,2), beta + 1e3; large: x (6,4,10,10)")
def _layernorm(rng, large):
    shape = (6, 4, 10, 10) if large else (3, 2, 3, 2)
    args = (_randn(rng, *shape), _randn(rng, *shape[1:]), 1e3 + _randn(rng, *shape[1:]))
    return _op("layernorm_forward", args)


@_case("weightnorm", "v (3,2,2,2), g (3,); large: v (64,48)")
def _weightnorm(rng, large):
    v_shape = (64, 48) if large else (3, 2, 2, 2)
    return _op("weightnorm_forward", (_randn(rng, *v_shape), _randn(rng, v_shape[0])))


# --- modules -----------------------------------------------------------------------------
def _layers():
    from refnet.nn import layers, norm
    return layers, norm


def _module(module, x, kinks=None):
    return Setup("module", module, (x,), kinks=kinks)


def _randomize_affine(layer, rng):
    layer.weight.data[...] = rng.uniform(0.5, 1.5, layer.weight.shape)
    layer.bias.data[...] = _randn(rng, *layer.bias.shape)
    return layer


@_case("nn.Linear", "Linear(5, 4); large: Linear(64, 48) on (32,64)", "module")
def _nn_linear(rng, large):
    L, _ = _layers()
    d, o, n = (64, 48, 32) if large else (5, 4, 3)
    return _module(L.Linear(d, o, rng=rng, dtype=np.float64), _randn(rng, n, d))


@_case("nn.Conv2d", "Conv2d(2, 3, (2,3), stride 2, padding (1,0)); large: Conv2d(8, 8, 3) on (4,8,10,10)",
       "module")
def _nn_conv2d(rng, large):
    L, _ = _layers()
    if large:
        return _module(L.Conv2d(8, 8, 3, padding=1, rng=rng, dtype=np.float64), _randn(rng, 4, 8, 10, 10))
    m = L.Conv2d(2, 3, (2, 3), stride=2, padding=(1, 0), rng=rng, dtype=np.float64)
    return _module(m, _randn(rng, 2, 2, 5, 6))


@_case("nn.ReLU", "ReLU() on (6,8) with 10% exact zeros; large: (48,64)", "module")
def _nn_relu(rng, large):
    L, _ = _layers()
    x = _with_zeros(rng, _randn(rng, *((48, 64) if large else (6, 8))))
    return _module(L.ReLU(), x, {"x": x == 0})


@_case("nn.MaxPool2d", "MaxPool2d(2) on a post-ReLU input (1,2,4,4); large: (2,8,16,16)", "module")
def _nn_maxpool(rng, large):
    L, _ = _layers()
    x = _post_relu(rng, *((2, 8, 16, 16) if large else (1, 2, 4, 4)))
    return _module(L.MaxPool2d(2), x, {"x": _pool_ties(x, (2, 2), (2, 2))})


@_case("nn.AvgPool2d", "AvgPool2d(2, stride=1); large: on (3,4,16,16)", "module")
def _nn_avgpool(rng, large):
    L, _ = _layers()
    return _module(L.AvgPool2d(2, stride=1), _randn(rng, *((3, 4, 16, 16) if large else (1, 2, 3, 4))))


@_case("nn.Flatten", "Flatten(); large: on (4,8,9,9)", "module")
def _nn_flatten(rng, large):
    L, _ = _layers()
    return _module(L.Flatten(), _randn(rng, *((4, 8, 9, 9) if large else (2, 2, 3))))


@_case("nn.BatchNorm1d", "BatchNorm1d(3), training mode; large: BatchNorm1d(10) on (256,10)", "module")
def _nn_bn1d(rng, large):
    _, N = _layers()
    c, n = (10, 256) if large else (3, 4)
    return _module(_randomize_affine(N.BatchNorm1d(c, dtype=np.float64), rng), _randn(rng, n, c))


@_case("nn.BatchNorm2d", "BatchNorm2d(2), training mode; large: BatchNorm2d(8) on (4,8,9,9)", "module")
def _nn_bn2d(rng, large):
    _, N = _layers()
    shape = (4, 8, 9, 9) if large else (2, 2, 3, 3)
    return _module(_randomize_affine(N.BatchNorm2d(shape[1], dtype=np.float64), rng), _randn(rng, *shape))


@_case("nn.BatchNorm2d.eval", "BatchNorm2d(2), eval mode with trained running statistics; large: 8 channels",
       "module")
def _nn_bn2d_eval(rng, large):
    _, N = _layers()
    shape = (4, 8, 9, 9) if large else (2, 2, 3, 3)
    m = _randomize_affine(N.BatchNorm2d(shape[1], dtype=np.float64), rng)
    for _ in range(3):  # give the running statistics values other than (0, 1)
        m(2 + 3 * _randn(rng, 4, *shape[1:]))
    return _module(m.eval(), _randn(rng, *shape))


@_case("nn.LayerNorm", "LayerNorm((2,3)); large: LayerNorm((16,20)) on (8,16,20)", "module")
def _nn_layernorm(rng, large):
    _, N = _layers()
    shape = (8, 16, 20) if large else (3, 2, 3)
    return _module(_randomize_affine(N.LayerNorm(shape[1:], dtype=np.float64), rng), _randn(rng, *shape))


@_case("nn.WeightNorm(Linear)", "WeightNorm(Linear(4, 3)); large: WeightNorm(Linear(64, 48))", "module")
def _nn_wn_linear(rng, large):
    L, N = _layers()
    d, o, n = (64, 48, 16) if large else (4, 3, 2)
    m = N.WeightNorm(L.Linear(d, o, rng=rng, dtype=np.float64))
    m.weight_g.data[...] = rng.uniform(0.5, 2.0, o)
    return _module(m, _randn(rng, n, d))


@_case("nn.WeightNorm(Conv2d)", "WeightNorm(Conv2d(2, 3, 2, padding=1)); large: Conv2d(8, 8, 3) on (4,8,9,9)",
       "module")
def _nn_wn_conv(rng, large):
    L, N = _layers()
    c, f, k, x_shape = (8, 8, 3, (4, 8, 9, 9)) if large else (2, 3, 2, (2, 2, 3, 3))
    m = N.WeightNorm(L.Conv2d(c, f, k, padding=1, rng=rng, dtype=np.float64))
    m.weight_g.data[...] = rng.uniform(0.5, 2.0, f)
    return _module(m, _randn(rng, *x_shape))


@_case("nn.Linear(bias=False)", "Linear(5, 4, bias=False); large: Linear(64, 48) on (32,64)", "module")
def _nn_linear_nobias(rng, large):
    L, _ = _layers()
    d, o, n = (64, 48, 32) if large else (5, 4, 3)
    return _module(L.Linear(d, o, bias=False, rng=rng, dtype=np.float64), _randn(rng, n, d))


@_case("nn.Linear+1e4", "Linear(5, 4) with its bias + 1e4 (an output offset); large: Linear(64, 48) on (32,64)",
       "module")
def _nn_linear_offset(rng, large):
    L, _ = _layers()
    d, o, n = (64, 48, 32) if large else (5, 4, 3)
    m = L.Linear(d, o, rng=rng, dtype=np.float64)
    m.bias.data += 1e4
    return _module(m, _randn(rng, n, d))


@_case("nn.Conv2d(bias=False)", "Conv2d(2, 3, 3, padding=1, bias=False) on (2,2,4,5); large: Conv2d(8, 8, 3) on "
       "(4,8,10,10)", "module")
def _nn_conv2d_nobias(rng, large):
    L, _ = _layers()
    c, f, x_shape = (8, 8, (4, 8, 10, 10)) if large else (2, 3, (2, 2, 4, 5))
    return _module(L.Conv2d(c, f, 3, padding=1, bias=False, rng=rng, dtype=np.float64), _randn(rng, *x_shape))


@_case("nn.Conv2d+1e3", "Conv2d(2, 3, 3, stride 2) with its bias + 1e3 on (2,2,5,5); large: Conv2d(8, 8, 3) on "
       "(4,8,10,10)", "module")
def _nn_conv2d_offset(rng, large):
    L, _ = _layers()
    c, f, stride, x_shape = (8, 8, 1, (4, 8, 10, 10)) if large else (2, 3, 2, (2, 2, 5, 5))
    m = L.Conv2d(c, f, 3, stride=stride, rng=rng, dtype=np.float64)
    m.bias.data += 1e3
    return _module(m, _randn(rng, *x_shape))


@_case("nn.BatchNorm1d.eval", "BatchNorm1d(3), eval mode with trained running statistics; large: BatchNorm1d(10) "
       "on (256,10)", "module")
def _nn_bn1d_eval(rng, large):
    _, N = _layers()
    c, n = (10, 256) if large else (3, 4)
    m = _randomize_affine(N.BatchNorm1d(c, dtype=np.float64), rng)
    for _ in range(3):  # give the running statistics values other than (0, 1)
        m(2 + 3 * _randn(rng, 8, c))
    return _module(m.eval(), _randn(rng, n, c))


@_case("nn.BatchNorm2d(affine=False)", "BatchNorm2d(2, affine=False), training mode: x only; large: 8 channels on "
       "(4,8,9,9)", "module")
def _nn_bn2d_plain(rng, large):
    _, N = _layers()
    shape = (4, 8, 9, 9) if large else (2, 2, 3, 3)
    return _module(N.BatchNorm2d(shape[1], affine=False, dtype=np.float64), _randn(rng, *shape))


@_case("nn.BatchNorm1d(track_running_stats=False).eval", "BatchNorm1d(3, track_running_stats=False) in eval mode: "
       "batch statistics still; large: BatchNorm1d(10) on (256,10)", "module")
def _nn_bn1d_untracked(rng, large):
    _, N = _layers()
    c, n = (10, 256) if large else (3, 5)
    m = _randomize_affine(N.BatchNorm1d(c, track_running_stats=False, dtype=np.float64), rng)
    return _module(m.eval(), _randn(rng, n, c))


@_case("nn.LayerNorm(elementwise_affine=False)", "LayerNorm((2,3), elementwise_affine=False): x only; large: "
       "LayerNorm((16,20)) on (8,16,20)", "module")
def _nn_layernorm_plain(rng, large):
    _, N = _layers()
    shape = (8, 16, 20) if large else (3, 2, 3)
    return _module(N.LayerNorm(shape[1:], elementwise_affine=False, dtype=np.float64), _randn(rng, *shape))


@_case("nn.Sequential", "conv-BN-ReLU-pool-flatten-linear-LN-ReLU-linear; large: 3->8 channels on (8,3,8,8)",
       "module")
def _nn_stack(rng, large):
    from refnet.nn.module import Sequential
    L, N = _layers()
    c, f, hidden, side, n = (3, 8, 32, 8, 8) if large else (2, 3, 5, 4, 2)
    f64 = dict(rng=rng, dtype=np.float64)
    bn = _randomize_affine(N.BatchNorm2d(f, dtype=np.float64), rng)
    ln = _randomize_affine(N.LayerNorm(hidden, dtype=np.float64), rng)
    m = Sequential(L.Conv2d(c, f, 3, padding=1, **f64), bn, L.ReLU(), L.MaxPool2d(2), L.Flatten(),
                   L.Linear(f * (side // 2) ** 2, hidden, **f64), ln, L.ReLU(), L.Linear(hidden, 3, **f64))
    return _module(m, _randn(rng, n, c, side, side))


# --- models: whole networks, as a user checks them --------------------------------------------
@_case("models.mlp", "mlp(20, 5, width 16): Linear-BN-ReLU twice, a Linear head, training mode, on (8,20); "
                     "large: mlp(100, 10, width 64) on (16,100)", "module")
def _model_mlp(rng, large):
    from refnet.nn import models
    d, k, w, n = (100, 10, 64, 16) if large else (20, 5, 16, 8)
    return _module(models.mlp(d, num_classes=k, width=w, rng=rng, dtype=np.float64), _randn(rng, n, d))


@_case("models.cnn", "cnn(1, 3, image 8, widths (3,4)): conv-BN-ReLU-pool twice, a Linear head, on (4,1,8,8); "
                     "large: widths (4,8) on (16,1,12,12)", "module")
def _model_cnn(rng, large):
    from refnet.nn import models
    widths, side, n = ((4, 8), 12, 16) if large else ((3, 4), 8, 4)
    m = models.cnn(1, num_classes=3, image_size=side, widths=widths, rng=rng, dtype=np.float64)
    return _module(m, _randn(rng, n, 1, side, side))
