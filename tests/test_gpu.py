"""The CuPy path computes what the NumPy path computes: every op forward and backward, a
module, an optimizer step, a few Trainer steps and ``refnet bench --device gpu``.

Agreement: max |gpu - cpu| <= tol * max(1, max |cpu|), tol 1e-5 in float32 and 1e-12 in
float64 (summation order differs between BLAS libraries and GPU kernels; nothing else
may). Every test is marked ``gpu`` and skipped without CuPy and a CUDA device."""

import json

import numpy as np
import pytest

from refnet import backend, ops
from refnet.cli import main
from refnet.data import synthetic
from refnet.nn.models import cnn, trainable_parameters
from refnet.ops import conv
from refnet.optim import SGD, Adam
from refnet.train import Trainer

pytestmark = pytest.mark.gpu
TOL = {np.float32: 1e-5, np.float64: 1e-12}
DTYPES = [np.float32, np.float64]


def _gpu(a):
    return None if a is None else backend.to_device(a, "cupy")


def _assert_close(gpu, cpu, dtype, tol=None):
    if cpu is None:
        assert gpu is None
        return
    got, want = backend.asnumpy(gpu), np.asarray(cpu)
    assert got.shape == want.shape and got.dtype == want.dtype
    scale = max(1.0, float(np.max(np.abs(want)))) if want.size else 1.0
    err = float(np.max(np.abs(got - want))) if want.size else 0.0
    tol = TOL[dtype] if tol is None else tol
    assert err <= tol * scale, f"max abs error {err:.3g} at scale {scale:.3g}"


def _conv(stride, padding, c=3):
    def make(rng, dt):
        return (rng.standard_normal((2, c, 9, 9)).astype(dt),
                rng.standard_normal((4, c, 3, 3)).astype(dt), rng.standard_normal(4).astype(dt))
    return (ops.conv2d_forward, ops.conv2d_backward, make, {"stride": stride, "padding": padding})


def _arrays(*shapes):
    return lambda rng, dt: tuple(rng.standard_normal(s).astype(dt) for s in shapes)


def _bn_eval(rng, dt):
    x, g, b, m = (rng.standard_normal(s).astype(dt) for s in ((4, 3, 5, 5), (3,), (3,), (3,)))
    return x, g, b, m, rng.uniform(0.5, 2.0, 3).astype(dt)


# name -> (forward, backward, make_args(rng, dtype), kwargs)
OPS = {
    "linear": (ops.linear_forward, ops.linear_backward, _arrays((5, 7), (3, 7), (3,)), {}),
    "conv 3x3 pad 1 (channel-first)": _conv(1, 1, c=1),
    "conv 3x3 pad 1 (channel-last, flipped-kernel dx)": _conv(1, 1, c=8),
    "conv 3x3 stride 2": _conv(2, 1, c=8),
    "conv 1x1": (ops.conv2d_forward, ops.conv2d_backward, _arrays((2, 8, 5, 5), (6, 8, 1, 1), (6,)),
                 {}),
    "maxpool 2x2": (ops.maxpool2d_forward, ops.maxpool2d_backward, _arrays((2, 3, 8, 8)),
                    {"kernel_size": 2}),
    "maxpool 3x3/2": (ops.maxpool2d_forward, ops.maxpool2d_backward, _arrays((2, 3, 9, 9)),
                      {"kernel_size": 3, "stride": 2}),
    "avgpool 2x2": (ops.avgpool2d_forward, ops.avgpool2d_backward, _arrays((2, 3, 8, 8)),
                    {"kernel_size": 2}),
    "relu": (ops.relu_forward, ops.relu_backward, _arrays((4, 6)), {}),
    "batchnorm 4-D": (ops.batchnorm_forward, ops.batchnorm_backward,
                      _arrays((4, 3, 5, 5), (3,), (3,)), {}),
    "batchnorm 2-D": (ops.batchnorm_forward, ops.batchnorm_backward, _arrays((8, 5), (5,), (5,)),
                      {}),
    "batchnorm, mean >> std (two-pass path)": (
        ops.batchnorm_forward, ops.batchnorm_backward,
        lambda rng, dt: (rng.standard_normal((4, 3, 5, 5)).astype(dt) + 30, *_arrays((3,), (3,))(rng, dt)),
        {}),
    "batchnorm eval": (ops.batchnorm_eval_forward, ops.batchnorm_eval_backward, _bn_eval, {}),
    "layernorm": (ops.layernorm_forward, ops.layernorm_backward,
                  _arrays((4, 3, 5, 5), (3, 5, 5), (3, 5, 5)), {}),
    "weightnorm": (ops.weightnorm_forward, ops.weightnorm_backward, _arrays((4, 3, 3, 3), (4,)),
                   {}),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("name", list(OPS))
def test_op_forward_and_backward_on_cupy_match_numpy(name, dtype, rng):
    forward, backward, make, kwargs = OPS[name]
    args = make(rng, dtype)
    y_cpu, cache_cpu = forward(*args, **kwargs)
    y_gpu, cache_gpu = forward(*[_gpu(a) for a in args], **kwargs)
    _assert_close(y_gpu, y_cpu, dtype)
    dy = rng.standard_normal(y_cpu.shape).astype(dtype)
    g_cpu, g_gpu = backward(dy, cache_cpu), backward(_gpu(dy), cache_gpu)
    g_cpu = g_cpu if isinstance(g_cpu, tuple) else (g_cpu,)
    g_gpu = g_gpu if isinstance(g_gpu, tuple) else (g_gpu,)
    assert len(g_cpu) == len(g_gpu)
    for a, b in zip(g_gpu, g_cpu):
        _assert_close(a, b, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_softmax_cross_entropy_on_cupy_matches_numpy(dtype, rng):
    logits = rng.standard_normal((6, 4)).astype(dtype)
    labels = rng.integers(0, 4, size=6)
    loss_cpu, d_cpu = ops.softmax_cross_entropy(logits, labels)
    loss_gpu, d_gpu = ops.softmax_cross_entropy(_gpu(logits), _gpu(labels))
    _assert_close(loss_gpu, loss_cpu, dtype)
    _assert_close(d_gpu, d_cpu, dtype)


@pytest.mark.parametrize("layout", [True, False], ids=["channel-last", "channel-first"])
def test_each_conv_layout_on_cupy_matches_numpy(monkeypatch, layout, rng):
    monkeypatch.setattr(conv, "_channel_last", lambda *shape: layout)
    forward, backward, make, kwargs = _conv(1, 1, c=4)
    args = make(rng, np.float64)
    y, cache = forward(*args, **kwargs)
    y_g, cache_g = forward(*[_gpu(a) for a in args], **kwargs)
    _assert_close(y_g, y, np.float64)
    dy = rng.standard_normal(y.shape)
    for a, b in zip(backward(_gpu(dy), cache_g), backward(dy, cache)):
        _assert_close(a, b, np.float64)


def _cnn(dtype, device):
    model = cnn(1, image_size=8, widths=(4, 6), norm="bn", rng=0, dtype=dtype)
    return model.to(device) if device == "cupy" else model


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_cnn_module_forward_backward_on_cupy_matches_numpy(dtype, rng):
    x = rng.standard_normal((4, 1, 8, 8)).astype(dtype)
    dy = rng.standard_normal((4, 10)).astype(dtype)
    cpu, gpu = _cnn(dtype, "numpy"), _cnn(dtype, "cupy")
    _assert_close(gpu(_gpu(x)), cpu(x), dtype)
    _assert_close(gpu.backward(_gpu(dy)), cpu.backward(dy), dtype)
    for (name, p_gpu), (_, p_cpu) in zip(gpu.named_parameters(), cpu.named_parameters()):
        _assert_close(p_gpu.grad, p_cpu.grad, dtype)
    for (_, b_gpu), (_, b_cpu) in zip(gpu.named_buffers(), cpu.named_buffers()):
        assert np.allclose(backend.asnumpy(b_gpu), b_cpu, rtol=TOL[dtype], atol=TOL[dtype])


@pytest.mark.parametrize("make_opt", [
    lambda ps: SGD(ps, lr=0.1, momentum=0.9, l2=1e-3, unit_norm=True),
    lambda ps: Adam(ps, lr=1e-2, weight_decay=1e-2),
], ids=["sgd-momentum-l2-unit-norm", "adamw"])
def test_optimizer_steps_on_cupy_match_numpy(make_opt, rng):
    dtype = np.float64
    cpu, gpu = _cnn(dtype, "numpy"), _cnn(dtype, "cupy")
    opt_cpu = make_opt(trainable_parameters(cpu))
    opt_gpu = make_opt(trainable_parameters(gpu))
    for _ in range(3):
        for p_cpu, p_gpu in zip(cpu.parameters(), gpu.parameters()):
            g = rng.standard_normal(p_cpu.shape)
            p_cpu.grad[...] = g
            p_gpu.grad[...] = _gpu(g)
        opt_cpu.step()
        opt_gpu.step()
    for p_gpu, p_cpu in zip(gpu.parameters(), cpu.parameters()):
        _assert_close(p_gpu.data, p_cpu.data, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_trainer_steps_on_cupy_match_numpy(dtype):
    # Three steps feed each step's rounding into the next: float32 gets 10x the op tolerance.
    tol = {np.float32: 1e-4, np.float64: 1e-12}[dtype]
    data = synthetic(n_train=48, n_test=16, shape=(1, 8, 8), seed=0)

    def train(device):
        backend.use(device)
        try:
            model = cnn(1, image_size=8, widths=(4,), norm="bn", rng=0, dtype=dtype)
            opt = SGD(trainable_parameters(model), lr=0.05, momentum=0.9, l2=5e-4)
            history = Trainer(model, opt, data, batch_size=16, steps=3, progress=False,
                              eval_every_epoch=False).fit()
            return history.steps, [backend.asnumpy(p.data) for p in model.parameters()]
        finally:
            backend.use("numpy")

    (steps_cpu, params_cpu), (steps_gpu, params_gpu) = train("numpy"), train("cupy")
    _assert_close(steps_gpu["loss"].astype(dtype), steps_cpu["loss"].astype(dtype), dtype, tol)
    assert set(steps_gpu) == set(steps_cpu)
    for key in steps_cpu:
        assert steps_gpu[key].shape == steps_cpu[key].shape
    for a, b in zip(params_gpu, params_cpu):
        _assert_close(a, b, dtype, tol)


def test_bench_runs_on_the_gpu_and_restores_the_numpy_backend(tmp_path):
    out = tmp_path / "bench.json"
    assert main(["bench", "--device", "gpu", "--quick", "--repeats", "1", "--batch", "2",
                 "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["device"] == "gpu"
    assert all(c["refnet_ms"] > 0 and c["peak_mem_mb"] >= 0 for c in result["cases"])
    assert backend.default_name() == "numpy"
