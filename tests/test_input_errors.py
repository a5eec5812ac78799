"""Bad input to an op gets ONE clear exception that names the op and the argument, what it
got and what was expected; nothing is silently broadcast."""

import re

import numpy as np
import pytest

from refnet import nn
from refnet.ops import (avgpool2d_backward, avgpool2d_forward, batchnorm_backward, batchnorm_eval_backward,
                        batchnorm_eval_forward, batchnorm_forward, conv2d_backward, conv2d_forward,
                        layernorm_backward, layernorm_forward, linear_backward, linear_forward,
                        maxpool2d_backward, maxpool2d_forward, relu_backward, relu_forward,
                        softmax_cross_entropy, weightnorm_backward, weightnorm_forward)

X4 = np.zeros((2, 3, 6, 6))
W4 = np.zeros((4, 3, 3, 3))


def _raises(exc, call, *fragments):
    """call() raises exc, and its message contains every fragment (verbatim)."""
    with pytest.raises(exc) as err:
        call()
    for fragment in fragments:
        assert fragment in str(err.value), f"{fragment!r} not in {str(err.value)!r}"


# --- wrong rank ------------------------------------------------------------------------------
@pytest.mark.parametrize("call, fragments", [
    (lambda: conv2d_forward(np.zeros((3, 6, 6)), W4), ["conv2d_forward(x)", "rank 3", "(3, 6, 6)",
                                                        "expected rank 4"]),
    (lambda: conv2d_forward(X4, np.zeros((4, 3, 3))), ["conv2d_forward(w)", "rank 3",
                                                        "expected rank 4"]),
    (lambda: linear_forward(np.zeros((2, 3, 4)), np.zeros((5, 4))), ["linear_forward(x)", "rank 3",
                                                                      "expected rank 2"]),
    (lambda: maxpool2d_forward(np.zeros((6, 6)), 2), ["maxpool2d_forward(x)", "rank 2",
                                                       "expected rank 4"]),
    (lambda: avgpool2d_forward(np.zeros((1, 6, 6)), 2), ["avgpool2d_forward(x)", "rank 3",
                                                          "expected rank 4"]),
    (lambda: softmax_cross_entropy(np.zeros(3), np.zeros(3, int)), ["softmax_cross_entropy(logits)",
                                                                    "rank 1", "expected rank 2"]),
], ids=["conv-x", "conv-w", "linear-x", "maxpool-x", "avgpool-x", "logits"])
def test_wrong_rank(call, fragments):
    _raises(ValueError, call, *fragments)


# --- channel / feature mismatch --------------------------------------------------------------
def test_conv_channel_mismatch_between_x_and_w():
    _raises(ValueError, lambda: conv2d_forward(np.zeros((2, 4, 6, 6)), W4),
            "conv2d_forward(w)", "3 input channels", "x has 4 channels")


def test_linear_feature_mismatch_between_x_and_w():
    _raises(ValueError, lambda: linear_forward(np.zeros((2, 3)), np.zeros((5, 4))),
            "linear_forward(x)", "3 features", "expecting 4 features")


# --- kernel larger than the (padded) input ---------------------------------------------------
def test_conv_kernel_larger_than_padded_input():
    _raises(ValueError, lambda: conv2d_forward(np.zeros((1, 3, 4, 6)), np.zeros((2, 3, 7, 3)),
                                               padding=1),
            "conv2d_forward(w)", "kernel 7x3", "larger than the padded input 6x8")


@pytest.mark.parametrize("op", [maxpool2d_forward, avgpool2d_forward])
def test_pool_kernel_larger_than_input(op):
    _raises(ValueError, lambda: op(np.zeros((1, 1, 4, 5)), (2, 6)),
            f"{op.__name__}(kernel_size)", "kernel 2x6", "larger than the input 4x5")


# --- stride and padding ----------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, fragments", [
    (dict(stride=0), ["conv2d_forward(stride)", "got 0", "expected an integer >= 1"]),
    (dict(stride=(1, -2)), ["conv2d_forward(stride)", "got -2", "expected an integer >= 1"]),
    (dict(padding=-1), ["conv2d_forward(padding)", "got -1", "expected an integer >= 0"]),
], ids=["stride-0", "stride-negative", "padding-negative"])
def test_conv_stride_at_least_one_and_padding_not_negative(kwargs, fragments):
    _raises(ValueError, lambda: conv2d_forward(X4, W4, **kwargs), *fragments)


def test_conv_non_integer_stride():
    _raises(TypeError, lambda: conv2d_forward(X4, W4, stride=1.5), "conv2d_forward(stride)",
            "got 1.5", "expected an integer")


@pytest.mark.parametrize("op", [maxpool2d_forward, avgpool2d_forward])
def test_pool_stride_at_least_one(op):
    _raises(ValueError, lambda: op(X4, 2, stride=0), f"{op.__name__}(stride)", "got 0",
            "expected an integer >= 1")


# --- bias ------------------------------------------------------------------------------------
def test_conv_bias_of_wrong_shape():
    _raises(ValueError, lambda: conv2d_forward(X4, W4, np.zeros(3)), "conv2d_forward(b)",
            "got shape (3,)", "expected (4,)")


def test_linear_bias_of_wrong_shape_is_not_broadcast():
    x, w = np.zeros((2, 4)), np.zeros((5, 4))
    _raises(ValueError, lambda: linear_forward(x, w, np.zeros((1, 5))),
            "linear_forward(b)", "got shape (1, 5)", "expected (5,)")


# --- dtypes ----------------------------------------------------------------------------------
def test_mixed_dtypes_are_not_silently_upcast():
    _raises(TypeError, lambda: conv2d_forward(X4.astype(np.float32), W4),
            "conv2d_forward(w)", "float64", "expected float32")


F32, F64 = np.float32, np.float64
X32 = np.arange(12, dtype=F32).reshape(4, 3)


@pytest.mark.parametrize("call, fragments", [
    (lambda: batchnorm_forward(X32, np.ones(3), None), ["batchnorm_forward(gamma)"]),
    (lambda: batchnorm_forward(X32, None, np.zeros(3)), ["batchnorm_forward(beta)"]),
    (lambda: batchnorm_eval_forward(X32, None, None, np.zeros(3), np.ones(3, F32)),
     ["batchnorm_eval_forward(mean)"]),
    (lambda: batchnorm_eval_forward(X32, None, None, np.zeros(3, F32), np.ones(3)),
     ["batchnorm_eval_forward(var)"]),
    (lambda: layernorm_forward(X32, np.ones(3), None), ["layernorm_forward(gamma)"]),
    (lambda: layernorm_forward(X32, None, np.zeros(3)), ["layernorm_forward(beta)"]),
    (lambda: weightnorm_forward(X32, np.ones(4)), ["weightnorm_forward(g)", "the dtype of v"]),
    (lambda: linear_forward(X32, np.ones((2, 3), F32), np.zeros(2)), ["linear_forward(b)"]),
    (lambda: conv2d_forward(X4.astype(F32), W4.astype(F32), np.zeros(4)), ["conv2d_forward(b)"]),
], ids=["bn-gamma", "bn-beta", "bn-eval-mean", "bn-eval-var", "ln-gamma", "ln-beta", "wn-g",
        "linear-b", "conv-b"])
def test_norm_ops_refuse_mixed_float_dtypes_like_conv_and_linear(call, fragments):
    """float32 data with a float64 parameter: no silent float64 result."""
    _raises(TypeError, call, *fragments, "got dtype float64", "expected float32", ".astype('float32')")


def _backward_cases():
    rng = np.random.default_rng(0)
    x4, x2 = rng.standard_normal((2, 3, 6, 6)), rng.standard_normal((4, 3))
    return {
        "conv": (lambda d: conv2d_forward(x4.astype(d), W4.astype(d), np.zeros(4, d)), conv2d_backward, "dy"),
        "linear": (lambda d: linear_forward(x2.astype(d), np.ones((5, 3), d)), linear_backward, "dy"),
        "maxpool": (lambda d: maxpool2d_forward(x4.astype(d), 2), maxpool2d_backward, "dy"),
        "avgpool": (lambda d: avgpool2d_forward(x4.astype(d), 2), avgpool2d_backward, "dy"),
        "relu": (lambda d: relu_forward(x4.astype(d)), relu_backward, "dy"),
        "batchnorm": (lambda d: batchnorm_forward(x4.astype(d), np.ones(3, d), np.zeros(3, d)),
                      batchnorm_backward, "dy"),
        "batchnorm-eval": (lambda d: batchnorm_eval_forward(x4.astype(d), None, None, np.zeros(3, d),
                                                            np.ones(3, d)), batchnorm_eval_backward, "dy"),
        "layernorm": (lambda d: layernorm_forward(x2.astype(d), np.ones(3, d), None), layernorm_backward, "dy"),
        "weightnorm": (lambda d: weightnorm_forward(x2.astype(d), np.ones(4, d)), weightnorm_backward, "dw"),
    }


@pytest.mark.parametrize("forward_dtype, dy_dtype", [(F64, F32), (F32, F64)], ids=["f64-f32", "f32-f64"])
@pytest.mark.parametrize("name", list(_backward_cases()))
def test_every_backward_refuses_an_upstream_gradient_of_another_float_dtype(name, forward_dtype, dy_dtype):
    forward, backward, arg = _backward_cases()[name]
    y, cache = forward(forward_dtype)
    dy = np.ones(y.shape, dy_dtype)
    _raises(TypeError, lambda: backward(dy, cache), f"{backward.__name__}({arg})",
            f"got dtype {np.dtype(dy_dtype)}", f"expected {np.dtype(forward_dtype)}")


MODULES = {
    "Linear": (lambda: nn.Linear(3, 4, rng=np.random.default_rng(0)), (2, 3)),
    "Conv2d": (lambda: nn.Conv2d(3, 4, 3, rng=np.random.default_rng(0)), (2, 3, 5, 5)),
    "BatchNorm1d": (lambda: nn.BatchNorm1d(3), (4, 3)),
    "BatchNorm2d-no-affine": (lambda: nn.BatchNorm2d(3, affine=False), (2, 3, 4, 4)),
    "LayerNorm": (lambda: nn.LayerNorm(3), (4, 3)),
    "WeightNorm": (lambda: nn.WeightNorm(nn.Linear(3, 4, rng=np.random.default_rng(0))), (2, 3)),
}


@pytest.mark.parametrize("module_dtype, x_dtype, fix", [(F32, F64, ".double()"), (F64, F32, ".float()")],
                         ids=["f32-module-f64-input", "f64-module-f32-input"])
@pytest.mark.parametrize("name", list(MODULES))
def test_a_module_fed_another_float_dtype_names_itself_and_the_conversion(name, module_dtype, x_dtype, fix):
    make, shape = MODULES[name]
    module = make().to(dtype=module_dtype)
    x = np.ones(shape, x_dtype)
    x[0] = 2  # batch statistics with a nonzero variance
    _raises(TypeError, lambda: module(x), repr(module).splitlines()[0][:20], f"input has dtype {np.dtype(x_dtype)}",
            f"parameters are {np.dtype(module_dtype)}", f"convert the module with {fix}")
    assert module(x.astype(module_dtype)).dtype == module_dtype


def test_integer_input_is_rejected():
    _raises(TypeError, lambda: relu_forward(np.arange(4)), "relu_forward(x)", "int",
            "expected float32 or float64")


# --- labels ----------------------------------------------------------------------------------
LOGITS = np.zeros((3, 4))


def test_non_integer_labels():
    _raises(TypeError, lambda: softmax_cross_entropy(LOGITS, np.array([0.0, 1.0, 2.0])),
            "softmax_cross_entropy(labels)", "float64", "expected an integer array")


@pytest.mark.parametrize("labels, bad", [([0, 4, 1], "4"), ([0, -1, 1], "-1")])
def test_out_of_range_labels(labels, bad):
    _raises(ValueError, lambda: softmax_cross_entropy(LOGITS, np.array(labels)),
            "softmax_cross_entropy(labels)", f"got label {bad}", "expected labels in [0, 4)")


def test_labels_of_the_wrong_length():
    _raises(ValueError, lambda: softmax_cross_entropy(LOGITS, np.array([0, 1])),
            "softmax_cross_entropy(labels)", "got 2 labels", "expected 3")


def test_labels_of_the_wrong_rank():
    _raises(ValueError, lambda: softmax_cross_entropy(LOGITS, np.zeros((3, 1), int)),
            "softmax_cross_entropy(labels)", "rank 2", "expected rank 1")


# --- upstream gradients ----------------------------------------------------------------------
@pytest.mark.parametrize("forward, backward, args", [
    (conv2d_forward, conv2d_backward, (X4, W4)),
    (linear_forward, linear_backward, (np.zeros((2, 4)), np.zeros((5, 4)))),
    (lambda x: maxpool2d_forward(x, 2), maxpool2d_backward, (X4,)),
    (lambda x: avgpool2d_forward(x, 2), avgpool2d_backward, (X4,)),
    (relu_forward, relu_backward, (X4,)),
], ids=["conv", "linear", "maxpool", "avgpool", "relu"])
def test_backward_rejects_dout_of_the_wrong_shape(forward, backward, args):
    y, cache = forward(*args)
    wrong = np.zeros(y.shape[:-1] + (y.shape[-1] + 1,))
    _raises(ValueError, lambda: backward(wrong, cache), "backward(dy)",
            f"got shape {wrong.shape}", f"expected {y.shape}")


def test_messages_quote_shapes_like_python_tuples():
    with pytest.raises(ValueError, match=re.escape("(2, 4, 6, 6)")):
        conv2d_forward(np.zeros((2, 4, 6, 6)), W4)
