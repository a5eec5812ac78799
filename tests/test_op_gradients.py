"""Every op and module against numerical gradients, in float64, over the shapes that
break backwards: strides 1-3, paddings 0-2, kernels 1x1 to 5x5, non-square inputs and
kernels, batch 1, no bias, overlapping pooling windows, (N, C) and (N, C, H, W) norms
with N = 2..7, batch norm in training and eval mode.

Tolerance: refnet.gradcheck's default, rtol = 1e-5 per entry (a correct backward reads
~1e-7 or less; one entry off by 0.1% reads 1e-3)."""

import itertools

import numpy as np
import pytest

from refnet import ops
from refnet.gradcheck import check_loss, check_module, check_op
from refnet.nn.layers import AvgPool2d, Conv2d, Flatten, Linear, MaxPool2d, ReLU
from refnet.nn.module import Sequential
from refnet.nn.norm import BatchNorm1d, BatchNorm2d, LayerNorm, WeightNorm


def _assert_ok(report):
    assert report.ok, "\n" + str(report)


def _randn(rng, *shape):
    return rng.standard_normal(shape)


# --- dense and convolution ------------------------------------------------------------
@pytest.mark.parametrize("n, d_in, d_out, bias", [
    (1, 1, 1, True), (1, 3, 2, False), (4, 5, 3, True), (7, 2, 6, False), (3, 8, 8, True)])
def test_linear(n, d_in, d_out, bias, rng):
    args = (_randn(rng, n, d_in), _randn(rng, d_out, d_in), _randn(rng, d_out) if bias else None)
    _assert_ok(check_op(ops.linear_forward, ops.linear_backward, args))


# every kernel 1..5 with every stride 1..3 and padding 0..2; the batch, the input's
# aspect, the kernel's aspect and the bias vary along with them
CONV = [(k, s, p) for k, s, p in itertools.product(range(1, 6), range(1, 4), range(3))]


@pytest.mark.parametrize("k, stride, padding", CONV)
def test_conv2d(k, stride, padding, rng):
    i = k + stride + padding
    n, h, w = 1 + i % 2, 6 + i % 3, 5 + i % 2           # batch 1 or 2, non-square inputs
    kw = k if i % 3 else max(1, k - 1)                  # some non-square kernels
    x, wt = _randn(rng, n, 2, h, w), _randn(rng, 3, 2, k, kw)
    b = _randn(rng, 3) if i % 2 else None
    _assert_ok(check_op(ops.conv2d_forward, ops.conv2d_backward, (x, wt, b),
                        {"stride": stride, "padding": padding}))


@pytest.mark.parametrize("stride, padding", [((1, 2), (2, 0)), ((3, 1), (0, 1)), ((2, 3), (1, 2))])
def test_conv2d_with_per_axis_stride_and_padding(stride, padding, rng):
    args = (_randn(rng, 2, 3, 7, 8), _randn(rng, 2, 3, 3, 2), _randn(rng, 2))
    _assert_ok(check_op(ops.conv2d_forward, ops.conv2d_backward, args,
                        {"stride": stride, "padding": padding}))


def test_conv2d_kernel_as_large_as_the_padded_input(rng):
    args = (_randn(rng, 1, 2, 3, 4), _randn(rng, 2, 2, 5, 6), None)
    _assert_ok(check_op(ops.conv2d_forward, ops.conv2d_backward, args, {"padding": 1}))


# --- pooling and relu -----------------------------------------------------------------
POOL = [((2, 2), None), ((3, 3), 2), ((2, 3), (1, 2)), ((1, 1), None), ((4, 4), 3), ((3, 2), 1)]


@pytest.mark.parametrize("kernel, stride", POOL)
@pytest.mark.parametrize("which", ["max", "avg"])
def test_pool2d(which, kernel, stride, rng):
    forward, backward = ((ops.maxpool2d_forward, ops.maxpool2d_backward) if which == "max"
                         else (ops.avgpool2d_forward, ops.avgpool2d_backward))
    x = _randn(rng, 1 + len(str(stride)) % 2, 2, 7, 6)  # non-square, batch 1 or 2
    _assert_ok(check_op(forward, backward, (x,), {"kernel_size": kernel, "stride": stride}))


@pytest.mark.parametrize("shape", [(1, 1), (3, 7), (2, 3, 4, 5)])
def test_relu(shape, rng):
    _assert_ok(check_op(ops.relu_forward, ops.relu_backward, (_randn(rng, *shape),)))


# --- loss -----------------------------------------------------------------------------
@pytest.mark.parametrize("n, c, scale", [(1, 2, 1.0), (5, 4, 1.0), (8, 10, 5.0), (3, 3, 1e3)])
def test_softmax_cross_entropy(n, c, scale, rng):
    logits, labels = scale * _randn(rng, n, c), rng.integers(0, c, n)
    _assert_ok(check_loss(ops.softmax_cross_entropy, logits, labels))


# --- normalization ops ----------------------------------------------------------------
NORM_SHAPES = [(2, 3), (5, 4), (7, 2), (2, 3, 2, 2), (4, 2, 3, 1), (7, 1, 2, 3)]


@pytest.mark.parametrize("shape", NORM_SHAPES)
def test_batchnorm_training(shape, rng):
    c = shape[1]
    args = (_randn(rng, *shape), rng.uniform(0.5, 2, c), _randn(rng, c))
    _assert_ok(check_op(ops.batchnorm_forward, ops.batchnorm_backward, args))


@pytest.mark.parametrize("shape", NORM_SHAPES)
def test_batchnorm_eval(shape, rng):
    c = shape[1]
    args = (_randn(rng, *shape), rng.uniform(0.5, 2, c), _randn(rng, c), _randn(rng, c),
            rng.uniform(0.5, 2, c))
    _assert_ok(check_op(ops.batchnorm_eval_forward, ops.batchnorm_eval_backward, args))


def test_batchnorm_without_affine(rng):
    _assert_ok(check_op(ops.batchnorm_forward, ops.batchnorm_backward, (_randn(rng, 4, 3, 2, 2), None, None)))


@pytest.mark.parametrize("shape", NORM_SHAPES + [(1, 5)])
def test_layernorm(shape, rng):
    args = (_randn(rng, *shape), rng.uniform(0.5, 2, shape[1:]), _randn(rng, *shape[1:]))
    _assert_ok(check_op(ops.layernorm_forward, ops.layernorm_backward, args))


@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (4, 2, 3, 3), (2, 3, 1, 2)])
def test_weightnorm(shape, rng):
    args = (_randn(rng, *shape), rng.uniform(0.5, 2, shape[0]))
    _assert_ok(check_op(ops.weightnorm_forward, ops.weightnorm_backward, args))


# --- modules --------------------------------------------------------------------------
def _affine(layer, rng):
    """Random gamma and beta: with gamma = 1, beta = 0 a wrong dgamma/dbeta path can hide."""
    layer.weight.data[...] = rng.uniform(0.5, 2, layer.weight.shape)
    layer.bias.data[...] = _randn(rng, *layer.bias.shape)
    return layer


F64 = {"dtype": np.float64}


@pytest.mark.parametrize("make, x_shape", [
    (lambda rng: Linear(4, 3, bias=False, rng=rng, **F64), (1, 4)),
    (lambda rng: Conv2d(2, 3, (3, 2), stride=(2, 1), padding=(0, 2), rng=rng, **F64), (2, 2, 5, 4)),
    (lambda rng: Conv2d(1, 2, 5, padding=2, bias=False, rng=rng, **F64), (1, 1, 4, 3)),
    (lambda rng: MaxPool2d((2, 3), stride=1), (2, 1, 4, 5)),
    (lambda rng: AvgPool2d(3, stride=2), (1, 2, 7, 5)),
    (lambda rng: Sequential(ReLU(), Flatten()), (2, 2, 2, 3)),
], ids=["Linear-nobias", "Conv2d", "Conv2d-5x5-nobias", "MaxPool2d", "AvgPool2d", "ReLU-Flatten"])
def test_module(make, x_shape, rng):
    _assert_ok(check_module(make(rng), _randn(rng, *x_shape)))


@pytest.mark.parametrize("shape", NORM_SHAPES)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_batchnorm_module(shape, training, rng):
    bn = _affine((BatchNorm1d if len(shape) == 2 else BatchNorm2d)(shape[1], **F64), rng)
    for _ in range(2):  # running statistics away from (0, 1)
        bn(1 + 2 * _randn(rng, *shape))
    _assert_ok(check_module(bn.train(training), _randn(rng, *shape)))


@pytest.mark.parametrize("shape", [(3, 4), (2, 2, 3), (5, 2, 2, 2)])
def test_layernorm_module(shape, rng):
    _assert_ok(check_module(_affine(LayerNorm(shape[1:], **F64), rng), _randn(rng, *shape)))


@pytest.mark.parametrize("make, x_shape", [
    (lambda rng: Linear(4, 3, rng=rng, **F64), (2, 4)),
    (lambda rng: Linear(3, 5, bias=False, rng=rng, **F64), (1, 3)),
    (lambda rng: Conv2d(2, 3, 3, padding=1, rng=rng, **F64), (2, 2, 3, 4)),
], ids=["Linear", "Linear-nobias", "Conv2d"])
def test_weightnorm_module(make, x_shape, rng):
    wn = WeightNorm(make(rng))
    wn.weight_g.data[...] = rng.uniform(0.5, 2, wn.weight_g.shape)
    _assert_ok(check_module(wn, _randn(rng, *x_shape)))


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_conv_bn_relu_pool_linear_ln_relu_linear_stack(training, rng):
    kw = {"rng": rng, **F64}
    model = Sequential(
        Conv2d(2, 4, 3, padding=1, **kw), _affine(BatchNorm2d(4, **F64), rng), ReLU(), MaxPool2d(2),
        Flatten(), Linear(16, 6, **kw), _affine(LayerNorm(6, **F64), rng), ReLU(), Linear(6, 3, **kw))
    model(_randn(rng, 3, 2, 4, 4))  # one training forward: running statistics move
    report = check_module(model.train(training), _randn(rng, 3, 2, 4, 4))
    _assert_ok(report)
    assert len(report.errors) == 1 + len(model.parameters())
