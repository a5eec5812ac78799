"""relu_forward / relu_backward and softmax_cross_entropy: naive twins, the derivative at 0,
stability at |logits| ~ 1e3, dlogits = (softmax - onehot) / N."""

import numpy as np
import pytest
from naive import relu_backward_naive, relu_forward_naive, softmax_cross_entropy_naive
from oracle import require_torch

from refnet.ops import relu_backward, relu_forward, softmax_cross_entropy


# --- relu ---------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(1,), (3, 4), (2, 3, 4, 5)])
def test_relu_matches_naive(rng, shape):
    x = rng.standard_normal(shape)
    y, cache = relu_forward(x)
    dy = rng.standard_normal(shape)
    np.testing.assert_array_equal(y, relu_forward_naive(x))
    np.testing.assert_array_equal(relu_backward(dy, cache), relu_backward_naive(dy, x))


def test_relu_derivative_at_zero_is_zero():
    y, cache = relu_forward(np.array([-1.0, 0.0, 2.0]))
    np.testing.assert_array_equal(relu_backward(np.array([5.0, 5.0, 5.0]), cache), [0, 0, 5])


def test_relu_maps_minus_infinity_to_zero_and_keeps_nan():
    y, _ = relu_forward(np.array([-np.inf, np.nan, np.inf]))
    np.testing.assert_array_equal(y, [0.0, np.nan, np.inf])


def test_relu_keeps_float32_and_leaves_inputs_alone(rng):
    x = rng.standard_normal((4, 5)).astype(np.float32)
    dy = rng.standard_normal((4, 5)).astype(np.float32)
    kept = [x.copy(), dy.copy()]
    y, cache = relu_forward(x)
    dx = relu_backward(dy, cache)
    assert y.dtype == dx.dtype == np.float32
    np.testing.assert_array_equal(x, kept[0])
    np.testing.assert_array_equal(dy, kept[1])


# --- softmax cross-entropy ----------------------------------------------------------------
@pytest.mark.parametrize("scale", [1.0, 30.0, 1e3], ids=["1", "30", "1e3"])
@pytest.mark.parametrize("n, c", [(1, 2), (5, 3), (16, 10)])
def test_cross_entropy_matches_naive(rng, n, c, scale):
    logits = rng.standard_normal((n, c)) * scale
    labels = rng.integers(0, c, size=n)
    loss, dlogits = softmax_cross_entropy(logits, labels)
    nloss, ndlogits = softmax_cross_entropy_naive(logits, labels)
    assert abs(float(loss) - nloss) <= 1e-12 * max(1.0, abs(nloss))
    np.testing.assert_allclose(dlogits, ndlogits, rtol=1e-12, atol=1e-14)


def test_cross_entropy_is_stable_at_logits_1e3():
    logits = np.array([[1000.0, 0.0, -1000.0], [1000.0, 0.0, -1000.0]])
    loss, dlogits = softmax_cross_entropy(logits, np.array([2, 0]))
    # row 0: log(1 + e^-1000 + e^-2000) + 2000 = 2000; row 1: ~0. Mean: 1000.
    assert float(loss) == pytest.approx(1000.0, rel=1e-15)
    np.testing.assert_allclose(dlogits, [[0.5, 0, -0.5], [0, 0, 0]], atol=1e-300)


def test_cross_entropy_stable_in_float32():
    logits = np.array([[1000.0, -1000.0, 999.0]], dtype=np.float32)
    loss, dlogits = softmax_cross_entropy(logits, np.array([1]))
    assert np.isfinite(loss) and np.all(np.isfinite(dlogits))
    assert loss.dtype == dlogits.dtype == np.float32
    assert float(loss) == pytest.approx(2000 + np.log1p(np.exp(-1.0)), rel=1e-6)


def test_dlogits_equal_softmax_minus_onehot_over_n(rng):
    logits, labels = rng.standard_normal((7, 4)), rng.integers(0, 4, size=7)
    _, dlogits = softmax_cross_entropy(logits, labels)
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(dlogits, (p - np.eye(4)[labels]) / 7, rtol=1e-12, atol=1e-15)


def test_cross_entropy_is_a_batch_mean(rng):
    logits, labels = rng.standard_normal((3, 5)), np.array([0, 4, 2])
    loss, _ = softmax_cross_entropy(logits, labels)
    twice, _ = softmax_cross_entropy(np.concatenate([logits, logits]), np.tile(labels, 2))
    assert float(twice) == pytest.approx(float(loss), rel=1e-14)


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int32, np.int64])
def test_cross_entropy_accepts_any_integer_label_dtype(rng, dtype):
    logits = rng.standard_normal((4, 3))
    loss, _ = softmax_cross_entropy(logits, np.array([0, 1, 2, 1], dtype=dtype))
    ref, _ = softmax_cross_entropy(logits, np.array([0, 1, 2, 1]))
    assert float(loss) == float(ref)


def test_cross_entropy_leaves_logits_and_labels_alone(rng):
    logits, labels = rng.standard_normal((4, 3)), np.array([0, 1, 2, 1])
    kept = [logits.copy(), labels.copy()]
    softmax_cross_entropy(logits, labels)
    np.testing.assert_array_equal(logits, kept[0])
    np.testing.assert_array_equal(labels, kept[1])


def test_cross_entropy_matches_torch_float64(rng):
    torch = require_torch()
    logits, labels = rng.standard_normal((6, 5)) * 50, rng.integers(0, 5, size=6)
    loss, dlogits = softmax_cross_entropy(logits, labels)
    t = torch.tensor(logits, requires_grad=True)
    tl = torch.nn.functional.cross_entropy(t, torch.tensor(labels))
    tl.backward()
    assert float(loss) == pytest.approx(tl.item(), rel=1e-12)
    np.testing.assert_allclose(dlogits, t.grad.numpy(), rtol=1e-10, atol=1e-15)
