"""linear_forward / linear_backward: y = x w^T + b against the naive loop twin."""

import numpy as np
import pytest
from naive import linear_backward_naive, linear_forward_naive
from oracle import require_torch

from refnet.ops import linear_backward, linear_forward
from refnet.ops.linear import linear_backward_params

CASES = [(1, 1, 1), (1, 5, 3), (4, 7, 2), (16, 10, 33)]   # (N, in, out), batch 1 included


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("n, fin, fout", CASES)
def test_forward_and_backward_match_naive_float64(rng, n, fin, fout, bias):
    x, w = rng.standard_normal((n, fin)), rng.standard_normal((fout, fin))
    b = rng.standard_normal(fout) if bias else None
    y, cache = linear_forward(x, w, b)
    np.testing.assert_allclose(y, linear_forward_naive(x, w, b), rtol=1e-12, atol=1e-12)
    dy = rng.standard_normal(y.shape)
    dx, dw, db = linear_backward(dy, cache)
    ndx, ndw, ndb = linear_backward_naive(dy, x, w, has_bias=bias)
    np.testing.assert_allclose(dx, ndx, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dw, ndw, rtol=1e-12, atol=1e-12)
    if bias:
        np.testing.assert_allclose(db, ndb, rtol=1e-12, atol=1e-12)
    else:
        assert db is None


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
def test_backward_params_is_the_backwards_dw_and_db(rng, bias):
    x, w = rng.standard_normal((4, 7)), rng.standard_normal((2, 7))
    y, cache = linear_forward(x, w, rng.standard_normal(2) if bias else None)
    dy = rng.standard_normal(y.shape)
    _, dw, db = linear_backward(dy, cache)
    got_dw, got_db = linear_backward_params(dy, cache)
    np.testing.assert_array_equal(got_dw, dw)
    assert (got_db is None and db is None) or np.array_equal(got_db, db)


def test_float32_stays_float32_and_agrees_with_float64(rng):
    x, w, b = rng.standard_normal((8, 20)), rng.standard_normal((5, 20)), rng.standard_normal(5)
    dy = rng.standard_normal((8, 5))
    y64, c64 = linear_forward(x, w, b)
    y32, c32 = linear_forward(x.astype(np.float32), w.astype(np.float32), b.astype(np.float32))
    g32, g64 = linear_backward(dy.astype(np.float32), c32), linear_backward(dy, c64)
    for o32, o64 in zip((y32,) + g32, (y64,) + g64):
        assert o32.dtype == np.float32
        np.testing.assert_allclose(o32, o64, rtol=0, atol=1e-5 * np.abs(o64).max())


def test_backward_does_not_mutate_dout_or_cache(rng):
    x, w, b = rng.standard_normal((3, 4)), rng.standard_normal((2, 4)), rng.standard_normal(2)
    y, cache = linear_forward(x, w, b)
    dy = rng.standard_normal(y.shape)
    kept = [dy.copy(), x.copy(), w.copy(), b.copy()]
    first = linear_backward(dy, cache)
    for a, c in zip(linear_backward(dy, cache), first):
        np.testing.assert_array_equal(a, c)
    for a, k in zip([dy, x, w, b], kept):
        np.testing.assert_array_equal(a, k)


def test_forward_does_not_mutate_bias(rng):
    x, w, b = rng.standard_normal((3, 4)), rng.standard_normal((2, 4)), rng.standard_normal(2)
    kept = b.copy()
    linear_forward(x, w, b)
    np.testing.assert_array_equal(b, kept)


def test_matches_torch_autograd_float64(rng):
    torch = require_torch()
    x, w, b = rng.standard_normal((6, 5)), rng.standard_normal((3, 5)), rng.standard_normal(3)
    y, cache = linear_forward(x, w, b)
    dy = rng.standard_normal(y.shape)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    ty = torch.nn.functional.linear(tx, tw, tb)
    ty.backward(torch.tensor(dy))
    for ours, theirs in zip((y,) + linear_backward(dy, cache), (ty, tx.grad, tw.grad, tb.grad)):
        np.testing.assert_allclose(ours, theirs.detach().numpy(), rtol=1e-12, atol=1e-14)
