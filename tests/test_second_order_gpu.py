"""The CuPy path of forward mode and second order computes what the NumPy path computes:
every op's forward_jvp and backward_jvp, and model.hvp / model.gvp on the BN MLP and CNN.

Agreement in float64: max |gpu - cpu| <= 1e-12 * max(1, max |cpu|) (summation order differs
between BLAS and GPU kernels; nothing else may). Marked ``gpu``: skipped without CuPy and a
CUDA device, like tests/test_gpu.py."""

import numpy as np
import pytest

from refnet import backend
from test_second_order_ops import OPS, _make, _tuple

pytestmark = pytest.mark.gpu
TOL = 1e-12


def _gpu(a):
    return None if a is None else backend.to_device(a, "cupy")


def _close(gpu, cpu):
    if cpu is None:
        assert gpu is None
        return
    got, want = backend.asnumpy(gpu), np.asarray(cpu)
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= TOL * max(1.0, float(np.abs(want).max()))


@pytest.mark.parametrize("fwd, bwd, fjvp, bjvp, shapes, kwargs", OPS)
def test_op_jvps_on_the_gpu_match_the_cpu(fwd, bwd, fjvp, bjvp, shapes, kwargs, rng):
    args, tangents = _make(rng, shapes)
    out, cache = fwd(*args, **kwargs)
    dout, tdout = rng.standard_normal(out.shape), rng.standard_normal(out.shape)
    g_args, g_tangents = [_gpu(a) for a in args], [_gpu(t) for t in tangents]
    g_out, g_cache = fwd(*g_args, **kwargs)
    _close(fjvp(g_cache, *g_tangents), fjvp(cache, *tangents))
    for g, c in zip(_tuple(bjvp(_gpu(dout), _gpu(tdout), g_cache, *g_tangents)),
                    _tuple(bjvp(dout, tdout, cache, *tangents))):
        _close(g, c)


@pytest.mark.parametrize("product", ["hvp", "gvp"])
@pytest.mark.parametrize("build, x_shape", [
    ("mlp", (8, 6)), ("cnn", (4, 1, 8, 8))])
def test_model_products_on_the_gpu_match_the_cpu(build, x_shape, product, rng):
    from refnet.nn import cnn, mlp
    make = {"mlp": lambda: mlp(6, num_classes=3, width=5, norm="bn", rng=0, dtype=np.float64),
            "cnn": lambda: cnn(1, num_classes=3, image_size=8, widths=(3,), norm="bn", rng=0,
                               dtype=np.float64)}[build]
    cpu, gpu = make(), make().to("cupy")
    x, y = rng.standard_normal(x_shape), rng.integers(0, 3, x_shape[0])
    v = {n: rng.standard_normal(p.shape) for n, p in cpu.named_parameters()}
    want = getattr(cpu, product)(x, y, v)
    got = getattr(gpu, product)(_gpu(x), _gpu(y), {n: _gpu(a) for n, a in v.items()})
    for n in want:
        _close(got[n], want[n])
