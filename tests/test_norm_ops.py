"""The normalization ops as specified: gradients against central differences (float64), the
compact batch-norm backward against the staged two-pass oracle, the identities that make
normalized weights scale-invariant, dtype preservation and the errors on bad input."""

import numpy as np
import pytest

from naive_norm import batchnorm_two_pass, layernorm_two_pass
from refnet.gradcheck import check_op
from refnet.ops import layernorm as layernorm_module
from refnet.ops import (batchnorm_backward, batchnorm_eval_backward, batchnorm_eval_forward,
                        batchnorm_forward, layernorm_backward, layernorm_forward,
                        weightnorm_backward, weightnorm_forward)

RTOL = 1e-6  # gradient checks: largest relative error per probe (float64)
BATCHES = range(2, 8)
LAYOUTS = {"NC": (3,), "NCL": (2, 5), "NCHW": (2, 3, 3)}


def shape_of(n, layout):
    return (n,) + LAYOUTS[layout]


def assert_gradcheck(report):
    assert report.ok, str(report)


# --- gradient checks -----------------------------------------------------------------------
@pytest.mark.parametrize("layout", ["NC", "NCHW"])
@pytest.mark.parametrize("n", BATCHES)
def test_batchnorm_train_gradients_match_finite_differences(rng, n, layout):
    x = rng.standard_normal(shape_of(n, layout)) * 2 + 1
    c = x.shape[1]
    gamma, beta = rng.standard_normal(c), rng.standard_normal(c)
    assert_gradcheck(check_op(batchnorm_forward, batchnorm_backward, (x, gamma, beta), rtol=RTOL))


@pytest.mark.parametrize("layout", ["NC", "NCL", "NCHW"])
@pytest.mark.parametrize("n", [1, 4])
def test_batchnorm_eval_gradients_match_finite_differences_for_all_five_arguments(rng, n, layout):
    x = rng.standard_normal(shape_of(n, layout))
    c = x.shape[1]
    args = (x, rng.standard_normal(c), rng.standard_normal(c), rng.standard_normal(c), rng.random(c) + 0.5)
    assert_gradcheck(check_op(batchnorm_eval_forward, batchnorm_eval_backward, args, rtol=RTOL))


@pytest.mark.parametrize("op", ["train", "eval"])
def test_batchnorm_without_affine_returns_none_for_gamma_and_beta(rng, op):
    x = rng.standard_normal((4, 3, 2, 2))
    if op == "train":
        report = check_op(batchnorm_forward, batchnorm_backward, (x, None, None), rtol=RTOL)
    else:
        report = check_op(batchnorm_eval_forward, batchnorm_eval_backward,
                          (x, None, None, rng.standard_normal(3), rng.random(3) + 0.5), rtol=RTOL)
    assert_gradcheck(report)


@pytest.mark.parametrize("layout", ["NC", "NCHW"])
@pytest.mark.parametrize("n", BATCHES)
def test_layernorm_gradients_match_finite_differences(rng, n, layout):
    x = rng.standard_normal(shape_of(n, layout)) * 2 + 1
    s = x.shape[1:]
    gamma, beta = rng.standard_normal(s), rng.standard_normal(s)
    assert_gradcheck(check_op(layernorm_forward, layernorm_backward, (x, gamma, beta), rtol=RTOL))
    assert_gradcheck(check_op(layernorm_forward, layernorm_backward, (x, None, None), rtol=RTOL))


@pytest.mark.parametrize("block", [1, 2, 3])
def test_layernorm_in_row_blocks_gives_the_one_block_results_and_gradients(rng, monkeypatch, block):
    # blocks of 1, 2, 3 rows of 18 values: partial last blocks, and one block whose rows
    # need the two-pass variance (|mean| >> std) next to blocks that do not
    x = rng.standard_normal((7, 2, 3, 3))
    x[3] += 50.0
    s = x.shape[1:]
    gamma, beta, dy = rng.standard_normal(s), rng.standard_normal(s), rng.standard_normal(x.shape)
    y1, c1 = layernorm_forward(x, gamma, beta)
    want = layernorm_backward(dy, c1)
    monkeypatch.setattr(layernorm_module, "_BLOCK", block * 18)
    y, cache = layernorm_forward(x, gamma, beta)
    np.testing.assert_allclose(y, y1, rtol=1e-12, atol=1e-12)
    for g, w in zip(layernorm_backward(dy, cache), want):
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12)
    assert_gradcheck(check_op(layernorm_forward, layernorm_backward, (x, gamma, beta), rtol=RTOL))


# rows of 16384 values (summed by vecdot in pieces of 8192), 9003 (no piece divides it: the
# einsum path) and 192; batch 1 and 3 (one block, and blocks of uneven rows)
@pytest.mark.parametrize("shape", [(3, 64, 16, 16), (1, 64, 16, 16), (3, 9003), (5, 3, 8, 8)])
@pytest.mark.parametrize("offset", [0.0, 3.0])
def test_layernorm_matches_the_staged_two_pass_reference(rng, shape, offset, monkeypatch):
    monkeypatch.setattr(layernorm_module, "_BLOCK", 2 * shape[-1])   # several blocks where n > 2
    x = rng.standard_normal(shape) * 2 + offset
    s = shape[1:]
    gamma, beta, dy = rng.standard_normal(s), rng.standard_normal(s), rng.standard_normal(shape)
    y, cache = layernorm_forward(x, gamma, beta)
    got = (y,) + layernorm_backward(dy, cache)
    for g, w in zip(got, layernorm_two_pass(x, gamma, beta, dy)):
        np.testing.assert_allclose(g, w, rtol=0, atol=1e-11 * np.abs(w).max())


@pytest.mark.parametrize("offset", [0.0, 0.9, 3.0, 100.0])
@pytest.mark.parametrize("shape", [(16, 4, 8, 8), (3, 64, 16, 16), (3, 9003)])
def test_layernorm_float32_stays_within_float32_rounding_of_float64(rng, offset, shape):
    # offset in units of each row's std: 0.9 takes the one-pass statistics and the sums from
    # x at their worst (mean just below std), 3 and 100 the centred rows; the shapes: short
    # rows, rows summed in pieces (16384 values) and by einsum (9003)
    x = rng.standard_normal(shape) * rng.uniform(0.5, 2, (shape[0],) + (1,) * (len(shape) - 1))
    x += offset * x.std(axis=tuple(range(1, x.ndim)), keepdims=True)
    s = x.shape[1:]
    gamma, beta, dy = rng.standard_normal(s), rng.standard_normal(s), rng.standard_normal(x.shape)
    y64, c64 = layernorm_forward(x, gamma, beta)
    y32, c32 = layernorm_forward(*(a.astype(np.float32) for a in (x, gamma, beta)))
    got = (y32,) + layernorm_backward(dy.astype(np.float32), c32)
    want = (y64,) + layernorm_backward(dy, c64)
    for g, w in zip(got, want):
        assert g.dtype == np.float32
        # 2e-5 of the largest value: rows 100 std off zero lose 100 * 6e-8 to rounding x itself
        # to float32 (measured 5e-6); the others stay near 2e-7
        np.testing.assert_allclose(g, w, rtol=0, atol=2e-5 * np.abs(w).max())


@pytest.mark.parametrize("shape", [(2, 3), (5, 4), (7, 1), (3, 2, 3, 3), (6, 1, 2, 2)])
def test_weightnorm_gradients_match_finite_differences(rng, shape):
    v, g = rng.standard_normal(shape), rng.standard_normal(shape[0])
    assert_gradcheck(check_op(weightnorm_forward, weightnorm_backward, (v, g), rtol=RTOL))


# --- batch norm: compact backward == staged backward ---------------------------------------
@pytest.mark.parametrize("shape", [(2, 3), (7, 4), (3, 2, 5), (5, 3, 4, 4), (2, 1, 1, 3)])
@pytest.mark.parametrize("offset", [0.0, 50.0])
def test_batchnorm_compact_backward_equals_two_pass_oracle(rng, shape, offset):
    x = rng.standard_normal(shape) * 3 + offset
    c = shape[1]
    gamma, beta, dy = rng.standard_normal(c), rng.standard_normal(c), rng.standard_normal(shape)
    y, cache = batchnorm_forward(x, gamma, beta)
    dx, dgamma, dbeta = batchnorm_backward(dy, cache)
    y_ref, dx_ref, dgamma_ref, dbeta_ref = batchnorm_two_pass(x, gamma, beta, dy)
    # dx is a difference of O(gamma * dy / std) terms (for N = 2 it is ~eps): judge it on that scale
    dx_scale = np.abs(gamma).max() * np.abs(dy).max() / np.sqrt(cache["var"].min())
    for got, want, scale in ((y, y_ref, np.abs(y_ref).max()), (dx, dx_ref, dx_scale),
                             (dgamma, dgamma_ref, np.abs(dgamma_ref).max()), (dbeta, dbeta_ref, np.abs(dbeta_ref).max())):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-13 * scale)


def test_batchnorm_statistics_are_per_channel_with_biased_variance(rng):
    x = rng.standard_normal((6, 3, 4, 5)) * [[[[1.0]], [[5.0]], [[0.1]]]] + 7
    y, cache = batchnorm_forward(x, None, None, eps=0.0)
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-12)
    np.testing.assert_allclose(y.var(axis=(0, 2, 3)), 1, rtol=1e-12)
    np.testing.assert_allclose(cache["var"], x.var(axis=(0, 2, 3)), rtol=1e-12)


@pytest.mark.parametrize("kind", ["batchnorm", "layernorm"])
def test_normalization_input_gradient_is_orthogonal_to_shifts_and_scales(rng, kind):
    """Why the mean and variance paths matter: sum(dx) = 0 and <dx, x - mu> = 0 per group."""
    x = rng.standard_normal((5, 3, 2, 2)) + 2
    dy = rng.standard_normal(x.shape)
    if kind == "batchnorm":
        dx, _, _ = batchnorm_backward(dy, batchnorm_forward(x, rng.standard_normal(3), None, eps=0.0)[1])
        axes = (0, 2, 3)
    else:
        dx, _, _ = layernorm_backward(dy, layernorm_forward(x, rng.standard_normal(x.shape[1:]), None, eps=0.0)[1])
        axes = (1, 2, 3)
    centered = x - x.mean(axis=axes, keepdims=True)
    scale = np.abs(dx).sum(axis=axes)
    np.testing.assert_array_less(np.abs(dx.sum(axis=axes)), 1e-13 * scale)
    np.testing.assert_array_less(np.abs((dx * centered).sum(axis=axes)), 1e-13 * scale * np.abs(centered).max())


def test_weightnorm_weight_has_norm_g_and_v_gradient_is_orthogonal_to_v(rng):
    v, g, dw = rng.standard_normal((4, 3, 2, 2)), rng.random(4) + 0.5, rng.standard_normal((4, 3, 2, 2))
    w, cache = weightnorm_forward(v, g)
    np.testing.assert_allclose(np.sqrt((w ** 2).sum(axis=(1, 2, 3))), g, rtol=1e-14)
    dv, _ = weightnorm_backward(dw, cache)
    np.testing.assert_allclose((dv * v).sum(axis=(1, 2, 3)), 0, atol=1e-14 * np.abs(dv).max() * np.abs(v).sum())


# --- dtype ------------------------------------------------------------------------------------
def _run(name, rng, dtype):
    x = rng.standard_normal((4, 3, 2, 2)).astype(dtype)
    c = np.ones(3, dtype)
    if name == "batchnorm":
        y, cache = batchnorm_forward(x, c, c)
        return (y,) + batchnorm_backward(y, cache)
    if name == "batchnorm_eval":
        y, cache = batchnorm_eval_forward(x, c, c, c, c)
        return (y,) + batchnorm_eval_backward(y, cache)
    if name == "layernorm":
        s = np.ones(x.shape[1:], dtype)
        y, cache = layernorm_forward(x, s, s)
        return (y,) + layernorm_backward(y, cache)
    y, cache = weightnorm_forward(x, np.ones(4, dtype))
    return (y,) + weightnorm_backward(y, cache)


@pytest.mark.parametrize("name", ["batchnorm", "batchnorm_eval", "layernorm", "weightnorm"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ops_keep_the_input_dtype(rng, name, dtype):
    assert {a.dtype for a in _run(name, rng, dtype)} == {np.dtype(dtype)}


# --- bad input ------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(1, 3), (1, 3, 1), (1, 3, 1, 1)])
def test_batchnorm_training_with_one_value_per_channel_raises(shape):
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        batchnorm_forward(np.ones(shape), None, None)


@pytest.mark.parametrize("call, match", [
    (lambda: batchnorm_forward(np.ones((4, 3)), np.ones(2), None), r"gamma.*\(2,\).*\(3,\)"),
    (lambda: batchnorm_forward(np.ones((4, 3)), None, np.ones((3, 1))), r"beta"),
    (lambda: batchnorm_forward(np.ones(4), None, None), r"x.*rank 1"),
    (lambda: batchnorm_forward(np.ones((4, 3), dtype=np.int64), None, None), r"x.*int64"),
    (lambda: batchnorm_eval_forward(np.ones((4, 3)), None, None, np.ones(3), np.ones(4)), r"var"),
    (lambda: layernorm_forward(np.ones((4, 3, 2)), np.ones((3,)), None), r"gamma.*\(3,\).*\(3, 2\)"),
    (lambda: layernorm_forward(np.ones(4), None, None), r"x.*rank >= 2"),
    (lambda: weightnorm_forward(np.ones((4, 3)), np.ones(3)), r"g.*\(3,\).*\(4,\)"),
    (lambda: weightnorm_forward(np.ones(4), np.ones(4)), r"v.*rank >= 2"),
])
def test_bad_input_raises_naming_the_argument(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


# --- GPU: the same code path on cupy ------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.parametrize("name", ["batchnorm", "batchnorm_eval", "layernorm", "weightnorm"])
def test_ops_on_gpu_match_numpy(name):
    from refnet import backend
    forward, backward, make = {
        "batchnorm": (batchnorm_forward, batchnorm_backward, lambda r: (r.standard_normal((4, 3, 5, 5)),
                                                                        r.standard_normal(3), r.standard_normal(3))),
        "batchnorm_eval": (batchnorm_eval_forward, batchnorm_eval_backward,
                           lambda r: (r.standard_normal((4, 3, 5, 5)), r.standard_normal(3), r.standard_normal(3),
                                      r.standard_normal(3), r.random(3) + 0.5)),
        "layernorm": (layernorm_forward, layernorm_backward, lambda r: (r.standard_normal((4, 3, 5)),
                                                                        r.standard_normal((3, 5)), r.standard_normal((3, 5)))),
        "weightnorm": (weightnorm_forward, weightnorm_backward, lambda r: (r.standard_normal((4, 3, 3, 3)),
                                                                           r.standard_normal(4))),
    }[name]
    args = make(np.random.default_rng(0))
    y, cache = forward(*args)
    dy = np.random.default_rng(1).standard_normal(y.shape)
    want = (y,) + tuple(backward(dy, cache))
    y_gpu, cache_gpu = forward(*(backend.to_device(a, "cupy") for a in args))
    got = (y_gpu,) + tuple(backward(backend.to_device(dy, "cupy"), cache_gpu))
    for g, w in zip(got, want):
        assert backend.is_cupy_array(g)
        np.testing.assert_allclose(backend.asnumpy(g), w, rtol=1e-12, atol=1e-12)
