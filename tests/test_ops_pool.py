"""maxpool2d / avgpool2d: equal to the naive loop twins (overlapping, gapped and non-square
windows), max-pool gradients routed to the first maximum (PyTorch's choice), inputs untouched."""

import numpy as np
import pytest
from naive import (avgpool2d_backward_naive, avgpool2d_forward_naive, maxpool2d_backward_naive,
                   maxpool2d_forward_naive)
from oracle import require_torch

from refnet.ops import avgpool2d_backward, avgpool2d_forward, maxpool2d_backward, maxpool2d_forward

OPS = {
    "max": (maxpool2d_forward, maxpool2d_backward, maxpool2d_forward_naive,
            maxpool2d_backward_naive),
    "avg": (avgpool2d_forward, avgpool2d_backward, avgpool2d_forward_naive,
            avgpool2d_backward_naive),
}
# (N, C, H, W), kernel, stride: default stride, overlapping (stride < kernel), gaps
# (stride > kernel), non-square kernels and inputs, floor mode (leftover rows), batch 1.
CASES = [
    ((2, 3, 8, 8), 2, None),
    ((1, 2, 7, 9), 3, None),
    ((2, 2, 7, 7), 3, 1),
    ((2, 2, 9, 8), 3, 2),
    ((1, 3, 8, 7), 2, 3),
    ((2, 1, 6, 9), (2, 3), (1, 2)),
    ((1, 2, 5, 5), 5, None),
    ((2, 2, 5, 6), 1, 2),
]
IDS = [f"x{c[0]}-k{c[1]}-s{c[2]}" for c in CASES]


@pytest.mark.parametrize("kind", OPS)
@pytest.mark.parametrize("x_shape, kernel, stride", CASES, ids=IDS)
@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "ties"])
def test_forward_and_backward_match_naive_float64(rng, kind, x_shape, kernel, stride, ties):
    fwd, bwd, fwd_naive, bwd_naive = OPS[kind]
    x = rng.standard_normal(x_shape)
    if ties:
        x = np.round(x)                  # many equal values per window
    y, cache = fwd(x, kernel, stride)
    dy = rng.standard_normal(y.shape)
    np.testing.assert_allclose(y, fwd_naive(x, kernel, stride), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(bwd(dy, cache), bwd_naive(dy, x, kernel, stride), rtol=1e-12,
                               atol=1e-12)


def test_maxpool_routes_tie_to_first_maximum_in_row_major_order():
    x = np.array([[0., 5.],
                  [5., 5.]]).reshape(1, 1, 2, 2)
    y, cache = maxpool2d_forward(x, 2)
    dx = maxpool2d_backward(np.array([[[[3.0]]]]), cache)
    np.testing.assert_array_equal(dx[0, 0], [[0., 3.], [0., 0.]])


def test_maxpool_constant_input_sends_each_window_gradient_to_its_top_left():
    x = np.ones((1, 1, 4, 4))
    y, cache = maxpool2d_forward(x, 2)
    dy = np.array([[1., 2.], [3., 4.]]).reshape(1, 1, 2, 2)
    dx = maxpool2d_backward(dy, cache)
    expected = np.zeros((4, 4))
    expected[::2, ::2] = [[1., 2.], [3., 4.]]
    np.testing.assert_array_equal(dx[0, 0], expected)


def test_maxpool_overlapping_windows_accumulate_on_a_shared_maximum():
    x = np.zeros((1, 1, 3, 3))
    x[0, 0, 1, 1] = 1.0                  # the max of all four 2x2 windows (stride 1)
    y, cache = maxpool2d_forward(x, 2, stride=1)
    dx = maxpool2d_backward(np.full((1, 1, 2, 2), 0.5), cache)
    assert dx[0, 0, 1, 1] == 2.0
    assert np.count_nonzero(dx) == 1


def test_avgpool_spreads_gradient_evenly():
    y, cache = avgpool2d_forward(np.zeros((1, 1, 4, 4)), 2)
    dx = avgpool2d_backward(np.full((1, 1, 2, 2), 4.0), cache)
    np.testing.assert_array_equal(dx, np.ones((1, 1, 4, 4)))


@pytest.mark.parametrize("kind", OPS)
def test_stride_defaults_to_kernel_size(rng, kind):
    fwd = OPS[kind][0]
    x = rng.standard_normal((2, 3, 9, 6))
    np.testing.assert_array_equal(fwd(x, (3, 2))[0], fwd(x, (3, 2), stride=(3, 2))[0])
    assert fwd(x, (3, 2))[0].shape == (2, 3, 3, 3)


@pytest.mark.parametrize("kind", OPS)
def test_float32_stays_float32_and_agrees_with_float64(rng, kind):
    fwd, bwd = OPS[kind][:2]
    x = rng.standard_normal((2, 3, 7, 7))
    dy = rng.standard_normal((2, 3, 3, 3))
    y64, c64 = fwd(x, 3, 2)
    y32, c32 = fwd(x.astype(np.float32), 3, 2)
    dx32 = bwd(dy.astype(np.float32), c32)
    assert y32.dtype == dx32.dtype == np.float32
    np.testing.assert_allclose(y32, y64, rtol=0, atol=1e-5 * np.abs(y64).max())
    np.testing.assert_allclose(dx32, bwd(dy, c64), rtol=0, atol=1e-5 * np.abs(dy).max())


@pytest.mark.parametrize("kind", OPS)
def test_backward_does_not_mutate_dout_or_cache(rng, kind):
    fwd, bwd = OPS[kind][:2]
    x = rng.standard_normal((2, 2, 6, 6))
    y, cache = fwd(x, 3, 1)
    dy = rng.standard_normal(y.shape)
    kept = [dy.copy(), x.copy(), y.copy()]
    first = bwd(dy, cache)
    np.testing.assert_array_equal(bwd(dy, cache), first)
    for a, k in zip([dy, x, y], kept):
        np.testing.assert_array_equal(a, k)


@pytest.mark.parametrize("kind", OPS)
def test_matches_torch_autograd_with_ties_and_overlap(rng, kind):
    torch = require_torch()
    fwd, bwd = OPS[kind][:2]
    x = np.round(rng.standard_normal((2, 3, 8, 7)))
    y, cache = fwd(x, (3, 2), (1, 2))
    dy = rng.standard_normal(y.shape)
    tx = torch.tensor(x, requires_grad=True)
    tf = torch.nn.functional.max_pool2d if kind == "max" else torch.nn.functional.avg_pool2d
    ty = tf(tx, (3, 2), (1, 2))
    ty.backward(torch.tensor(dy))
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-12, atol=0)
    np.testing.assert_allclose(bwd(dy, cache), tx.grad.numpy(), rtol=1e-12, atol=1e-15)


# --- NaN: routed as PyTorch routes it -------------------------------------------------------
def _pytorch_scan_backward(dy, x, kernel, stride):
    """dx by the scan in PyTorch's max-pool kernels: over a window in row-major order the
    index moves on ``val > maxval or isnan(val)``, so a window holding NaNs sends its
    gradient to its LAST NaN (and otherwise to its first maximum)."""
    dx = np.zeros_like(x)
    (kh, kw), (sh, sw) = kernel, stride
    for n, c, i, j in np.ndindex(dy.shape):
        best, best_val = (0, 0), -np.inf
        for p in range(kh):
            for q in range(kw):
                v = x[n, c, i * sh + p, j * sw + q]
                if v > best_val or np.isnan(v):
                    best, best_val = (p, q), v
        dx[n, c, i * sh + best[0], j * sw + best[1]] += dy[n, c, i, j]
    return dx


@pytest.mark.parametrize("kernel, stride", [((2, 2), (2, 2)), ((3, 2), (1, 2)), ((3, 3), (1, 1))],
                         ids=["disjoint", "overlap-rows", "overlap"])
def test_a_window_holding_nan_sends_its_gradient_to_its_last_nan(rng, kernel, stride):
    x = np.round(rng.standard_normal((2, 2, 7, 6)))
    x[rng.random(x.shape) < 0.15] = np.nan       # windows with none, one and several NaNs
    y, cache = maxpool2d_forward(x, kernel, stride)
    assert np.isnan(y).any() and not np.isnan(y).all()
    dy = rng.standard_normal(y.shape)
    np.testing.assert_array_equal(maxpool2d_backward(dy, cache), _pytorch_scan_backward(dy, x, kernel, stride))


def test_nan_routing_matches_torch_autograd(rng):
    torch = require_torch()
    x = np.round(rng.standard_normal((2, 3, 8, 7)))
    x[rng.random(x.shape) < 0.1] = np.nan
    y, cache = maxpool2d_forward(x, (3, 2), (1, 2))
    dy = rng.standard_normal(y.shape)
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.nn.functional.max_pool2d(tx, (3, 2), (1, 2))
    ty.backward(torch.tensor(dy))
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ty.detach().numpy()))
    np.testing.assert_allclose(maxpool2d_backward(dy, cache), tx.grad.numpy(), rtol=1e-12, atol=1e-15)
