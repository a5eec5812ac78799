"""Edge cases shared by the norm-fixing wrappers (Rotational, Hyperball): float32 proposals,
degenerate weights, and what their state dicts keep."""

import numpy as np
import pytest

from refnet.nn import Parameter
from refnet.optim import SGD, Hyperball, Rotational

WRAPPERS = {
    "hyperball": lambda ps: Hyperball(SGD(ps, lr=0.02)),
    "rotational": lambda ps: Rotational(SGD(ps, lr=0.02), eta_r=0.01, update_norm_decay=0.0),
}


def _step(make, w0, g, dtype):
    p = Parameter(w0.astype(dtype), scale_group="unit")
    opt = make([p])
    p.grad[...] = g.astype(dtype)
    opt.step()
    return p.data.astype(np.float64) - w0.astype(dtype).astype(np.float64)


@pytest.mark.parametrize("name", sorted(WRAPPERS))
def test_float32_step_direction_agrees_with_float64_for_tiny_gradients(name):
    # gradient entries ~1e-7 of weights ~1: w - lr*u rounds u away in float32, so the
    # proposal must not be read back from the difference of the weights
    rng = np.random.default_rng(0)
    w0 = rng.standard_normal((4, 64))
    g = rng.standard_normal((4, 64))
    g -= w0 * ((g * w0).sum(1, keepdims=True) / (w0 * w0).sum(1, keepdims=True))
    a = _step(WRAPPERS[name], w0, 1e-7 * g, np.float64)
    b = _step(WRAPPERS[name], w0, 1e-7 * g, np.float32)
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.min() > 0.999, cos


@pytest.mark.parametrize("name", sorted(WRAPPERS))
@pytest.mark.parametrize("bad", [0.0, np.nan])
def test_a_unit_of_zero_or_nan_norm_raises_and_leaves_the_weights(name, bad):
    rng = np.random.default_rng(1)
    w = rng.standard_normal((3, 4))
    w[1] = bad
    p = Parameter(w.copy(), scale_group="unit")
    opt = WRAPPERS[name]([p])
    p.grad[...] = rng.standard_normal((3, 4))
    with pytest.raises(FloatingPointError, match=r"\.step\(\): cannot rescale .*a scale group has norm "
                                                 r"(0\.0|nan), expected a finite norm > 0"):
        opt.step()
    np.testing.assert_array_equal(p.data, w)
