"""conv2d_forward / conv2d_backward: equal to the naive loop twin and to scipy's correlate
over shapes, strides, paddings and kernels; float32 stays float32; inputs left untouched."""

import numpy as np
import pytest
from naive import conv2d_backward_naive, conv2d_forward_naive
from oracle import require_torch
from scipy import signal

from refnet.ops import conv2d_backward, conv2d_forward
from refnet.ops.conv import conv2d_backward_params

# (N, C, H, W), (F, KH, KW), stride, padding, bias: covers strides 1-3, paddings 0-2, kernels
# 1x1..5x5, non-square inputs and kernels, batch 1, bias None, pairs for stride and padding.
CASES = [
    ((2, 3, 5, 5), (4, 1, 1), 1, 0, True),
    ((1, 2, 6, 7), (3, 1, 1), 2, 1, False),
    ((2, 3, 7, 6), (2, 2, 2), 1, 0, True),
    ((2, 2, 8, 8), (3, 3, 3), 1, 1, True),
    ((1, 3, 9, 7), (2, 3, 3), 2, 1, True),
    ((2, 1, 10, 9), (2, 3, 3), 3, 2, False),
    ((3, 2, 7, 7), (3, 4, 4), 1, 2, True),
    ((1, 2, 9, 11), (2, 5, 5), 2, 2, True),
    ((2, 2, 6, 8), (3, 5, 5), 1, 0, False),
    ((2, 3, 8, 6), (2, 3, 2), 1, (1, 0), True),
    ((2, 3, 5, 7), (4, 2, 5), 1, (1, 2), True),   # stride 1, KH < KW, uneven padding
    ((1, 1, 6, 5), (2, 3, 1), 1, (2, 0), False),
    ((1, 2, 7, 9), (2, 2, 5), (2, 1), (0, 2), True),
    ((2, 2, 6, 6), (2, 5, 3), (3, 2), 1, True),
    ((1, 1, 4, 4), (1, 4, 4), 1, 0, True),      # kernel == input: one output pixel
    ((2, 2, 3, 3), (2, 5, 5), 1, 1, True),      # kernel == padded input
]
IDS = [f"x{c[0]}-k{c[1]}-s{c[2]}-p{c[3]}-b{int(c[4])}" for c in CASES]


def _draw(rng, x_shape, k_shape, bias, dtype=np.float64):
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal((k_shape[0], x_shape[1]) + k_shape[1:]).astype(dtype)
    b = rng.standard_normal(k_shape[0]).astype(dtype) if bias else None
    return x, w, b


@pytest.mark.parametrize("x_shape, k_shape, stride, padding, bias", CASES, ids=IDS)
def test_forward_matches_naive_float64(rng, x_shape, k_shape, stride, padding, bias):
    x, w, b = _draw(rng, x_shape, k_shape, bias)
    y, _ = conv2d_forward(x, w, b, stride, padding)
    np.testing.assert_allclose(y, conv2d_forward_naive(x, w, b, stride, padding), rtol=1e-12,
                               atol=1e-12)


@pytest.mark.parametrize("x_shape, k_shape, stride, padding, bias", CASES, ids=IDS)
def test_backward_matches_naive_float64(rng, x_shape, k_shape, stride, padding, bias):
    x, w, b = _draw(rng, x_shape, k_shape, bias)
    y, cache = conv2d_forward(x, w, b, stride, padding)
    dy = rng.standard_normal(y.shape)
    dx, dw, db = conv2d_backward(dy, cache)
    ndx, ndw, ndb = conv2d_backward_naive(dy, x, w, stride, padding, has_bias=bias)
    np.testing.assert_allclose(dx, ndx, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dw, ndw, rtol=1e-12, atol=1e-12)
    if bias:
        np.testing.assert_allclose(db, ndb, rtol=1e-12, atol=1e-12)
    else:
        assert db is None


@pytest.mark.parametrize("x_shape, k_shape, stride, padding, bias", CASES, ids=IDS)
def test_backward_params_is_the_backwards_dw_and_db(rng, x_shape, k_shape, stride, padding, bias):
    x, w, b = _draw(rng, x_shape, k_shape, bias)
    y, cache = conv2d_forward(x, w, b, stride, padding)
    dy = rng.standard_normal(y.shape)
    _, dw, db = conv2d_backward(dy, cache)
    got_dw, got_db = conv2d_backward_params(dy, cache)
    np.testing.assert_array_equal(got_dw, dw)
    assert (got_db is None and db is None) or np.array_equal(got_db, db)


@pytest.mark.parametrize("x_shape, k_shape, stride, padding, bias", CASES[::2], ids=IDS[::2])
def test_forward_matches_scipy_correlate(rng, x_shape, k_shape, stride, padding, bias):
    x, w, b = _draw(rng, x_shape, k_shape, bias)
    (sh, sw) = stride if isinstance(stride, tuple) else (stride, stride)
    (ph, pw) = padding if isinstance(padding, tuple) else (padding, padding)
    xpad = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    expected = np.stack([
        np.stack([signal.correlate(xpad[n], w[f], mode="valid")[0, ::sh, ::sw]
                  + (0 if b is None else b[f]) for f in range(w.shape[0])])
        for n in range(x.shape[0])])
    y, _ = conv2d_forward(x, w, b, stride, padding)
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("x_shape, k_shape, stride, padding, bias", CASES[1::3], ids=IDS[1::3])
def test_float32_stays_float32_and_agrees_with_float64(rng, x_shape, k_shape, stride, padding,
                                                       bias):
    x, w, b = _draw(rng, x_shape, k_shape, bias)
    y64, c64 = conv2d_forward(x, w, b, stride, padding)
    f32 = [None if a is None else a.astype(np.float32) for a in (x, w, b)]
    y32, c32 = conv2d_forward(*f32, stride, padding)
    dy = rng.standard_normal(y64.shape)
    grads64 = conv2d_backward(dy, c64)
    grads32 = conv2d_backward(dy.astype(np.float32), c32)
    for out32, out64 in zip((y32,) + grads32, (y64,) + grads64):
        if out64 is None:
            assert out32 is None
            continue
        assert out32.dtype == np.float32
        scale = np.abs(out64).max()
        np.testing.assert_allclose(out32, out64, rtol=0, atol=1e-5 * scale)


def test_output_is_c_contiguous_nchw(rng):
    x, w, b = _draw(rng, (2, 3, 6, 5), (4, 3, 3), True)
    y, cache = conv2d_forward(x, w, b, 1, 1)
    dx, _, _ = conv2d_backward(np.ones_like(y), cache)
    assert y.shape == (2, 4, 6, 5) and y.flags.c_contiguous
    assert dx.shape == x.shape and dx.flags.c_contiguous


def test_backward_does_not_mutate_dout_or_cache(rng):
    x, w, b = _draw(rng, (2, 3, 7, 6), (4, 3, 3), True)
    y, cache = conv2d_forward(x, w, b, stride=2, padding=1)
    dy = rng.standard_normal(y.shape)
    before = [dy.copy(), x.copy(), w.copy()]
    conv2d_backward(dy, cache)
    conv2d_backward(dy, cache)
    for a, kept in zip([dy, cache[0], cache[1]], before):
        np.testing.assert_array_equal(a, kept)


def test_backward_is_repeatable(rng):
    x, w, b = _draw(rng, (2, 2, 5, 5), (3, 3, 3), True)
    y, cache = conv2d_forward(x, w, b, padding=1)
    dy = rng.standard_normal(y.shape)
    first, second = conv2d_backward(dy, cache), conv2d_backward(dy, cache)
    for a, c in zip(first, second):
        np.testing.assert_array_equal(a, c)


def test_matches_torch_autograd_float64(rng):
    torch = require_torch()
    x, w, b = _draw(rng, (2, 3, 9, 8), (4, 3, 2), True)
    y, cache = conv2d_forward(x, w, b, stride=(2, 1), padding=(1, 2))
    dy = rng.standard_normal(y.shape)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    ty = torch.nn.functional.conv2d(tx, tw, tb, stride=(2, 1), padding=(1, 2))
    ty.backward(torch.tensor(dy))
    for ours, theirs in zip((y,) + conv2d_backward(dy, cache), (ty, tx.grad, tw.grad, tb.grad)):
        np.testing.assert_allclose(ours, theirs.detach().numpy(), rtol=1e-10, atol=1e-12)
