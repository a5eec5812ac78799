"""BatchNorm1d/2d, LayerNorm and WeightNorm as specified: gradients of every parameter and of
the input in train and eval mode, PyTorch's names, defaults and running-statistics rule
(checked against an independent numpy computation), the full conv-BN-ReLU-pool-linear-LN-
ReLU-linear stack, and the errors on bad input."""

import numpy as np
import pytest

from naive_norm import running_stats_reference
from refnet.gradcheck import check_module
from refnet.nn import (BatchNorm1d, BatchNorm2d, Conv2d, Flatten, LayerNorm, Linear, MaxPool2d,
                       ReLU, Sequential, WeightNorm)

RTOL = 1e-6
F64 = np.float64


def randomize(module, rng):
    """Random gamma/beta (and running statistics) so no term of the gradient hides behind 1 or 0."""
    for p in module.parameters():
        p.data[...] = rng.standard_normal(p.shape)
    for name in ("running_mean", "running_var"):
        if hasattr(module, name):
            getattr(module, name)[...] = rng.random(module.num_features) + 0.5
    return module


def assert_gradcheck(module, x):
    report = check_module(module, x, rtol=RTOL)
    assert report.ok, str(report)


# --- gradients ------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("cls, tail", [(BatchNorm1d, ()), (BatchNorm1d, (4,)), (BatchNorm2d, (3, 3))])
@pytest.mark.parametrize("n", [2, 3, 7])
def test_batchnorm_gradients_match_finite_differences(rng, cls, tail, n, affine, mode):
    bn = randomize(cls(3, affine=affine, dtype=F64), rng).train(mode == "train")
    assert_gradcheck(bn, rng.standard_normal((n, 3) + tail) * 2 + 1)


@pytest.mark.parametrize("shape, normalized_shape", [
    ((2, 5), 5), ((7, 5), (5,)), ((3, 2, 3, 3), (2, 3, 3)), ((2, 4, 5), (5,)), ((6,), (6,))])
@pytest.mark.parametrize("affine", [True, False])
def test_layernorm_gradients_match_finite_differences(rng, shape, normalized_shape, affine):
    ln = randomize(LayerNorm(normalized_shape, elementwise_affine=affine, dtype=F64), rng)
    assert_gradcheck(ln, rng.standard_normal(shape) * 2 + 1)


@pytest.mark.parametrize("make, x_shape", [
    (lambda rng: Linear(4, 3, rng=rng, dtype=F64), (5, 4)),
    (lambda rng: Linear(4, 3, bias=False, rng=rng, dtype=F64), (2, 4)),
    (lambda rng: Conv2d(2, 3, 3, padding=1, rng=rng, dtype=F64), (2, 2, 4, 4))])
def test_weightnorm_gradients_match_finite_differences(rng, make, x_shape):
    wn = WeightNorm(make(rng))
    wn.weight_g.data[...] = rng.standard_normal(wn.weight_g.shape)
    assert_gradcheck(wn, rng.standard_normal(x_shape))


def stack(rng, dtype=F64):
    """conv-BN-ReLU-pool-linear-LN-ReLU-linear, biases only where they do something."""
    return Sequential(
        Conv2d(2, 4, 3, padding=1, bias=False, rng=rng, dtype=dtype), BatchNorm2d(4, dtype=dtype), ReLU(),
        MaxPool2d(2), Flatten(), Linear(4 * 3 * 3, 6, bias=False, rng=rng, dtype=dtype),
        LayerNorm(6, dtype=dtype), ReLU(), Linear(6, 3, rng=rng, dtype=dtype))


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_full_stack_gradients_match_finite_differences(rng, mode):
    model = stack(rng)
    for i in (1, 6):
        randomize(model[i], rng)
    assert_gradcheck(model.train(mode == "train"), rng.standard_normal((5, 2, 6, 6)))


# --- PyTorch's conventions ------------------------------------------------------------------
def test_batchnorm_parameters_and_buffers_have_pytorch_names_and_no_decay():
    bn = BatchNorm2d(5)
    assert [(n, p.shape, p.decay) for n, p in bn.named_parameters()] == [
        ("weight", (5,), False), ("bias", (5,), False)]
    state = bn.state_dict()
    assert list(state) == ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    np.testing.assert_array_equal(state["weight"], 1)
    np.testing.assert_array_equal(state["running_var"], 1)
    assert state["weight"].dtype == state["running_mean"].dtype == np.float32


def test_batchnorm_without_affine_has_no_parameters_but_keeps_buffers():
    bn = BatchNorm1d(4, affine=False)
    assert bn.parameters() == []
    assert list(bn.state_dict()) == ["running_mean", "running_var", "num_batches_tracked"]


def test_layernorm_parameters_have_pytorch_names_shapes_and_no_decay():
    ln = LayerNorm((3, 4))
    assert [(n, p.shape, p.decay) for n, p in ln.named_parameters()] == [
        ("weight", (3, 4), False), ("bias", (3, 4), False)]


@pytest.mark.parametrize("momentum", [0.1, 0.5, None])
@pytest.mark.parametrize("cls, tail", [(BatchNorm1d, ()), (BatchNorm2d, (3, 2))])
def test_running_statistics_follow_pytorchs_update(rng, cls, tail, momentum):
    bn = cls(3, momentum=momentum, dtype=F64)
    batches = [rng.standard_normal((4, 3) + tail) * (t + 1) + t for t in range(5)]
    for x in batches:
        bn(x)
    mean, var = running_stats_reference(batches, momentum)
    np.testing.assert_allclose(bn.running_mean, mean, rtol=1e-13)
    np.testing.assert_allclose(bn.running_var, var, rtol=1e-13)
    assert int(bn.num_batches_tracked) == len(batches)


def test_eval_mode_normalizes_with_running_statistics_and_leaves_them_alone(rng):
    bn = randomize(BatchNorm2d(3, eps=1e-3, dtype=F64), rng).eval()
    before = bn.state_dict()
    x = rng.standard_normal((1, 3, 2, 2))
    per_channel = {k: before[k].reshape(1, 3, 1, 1) for k in ("weight", "bias", "running_mean", "running_var")}
    want = ((x - per_channel["running_mean"]) / np.sqrt(per_channel["running_var"] + 1e-3)
            * per_channel["weight"] + per_channel["bias"])
    np.testing.assert_allclose(bn(x), want, rtol=1e-14)
    for k, v in bn.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


def test_batchnorm_without_running_statistics_uses_batch_statistics_in_eval(rng):
    bn = BatchNorm1d(3, track_running_stats=False, dtype=F64).eval()
    y = bn(rng.standard_normal((6, 3)) + 4)
    np.testing.assert_allclose(y.mean(axis=0), 0, atol=1e-12)
    assert list(bn.state_dict()) == ["weight", "bias"]


def test_weightnorm_registers_pytorch_names_and_starts_as_the_wrapped_layer(rng):
    conv = Conv2d(2, 3, 3, rng=rng, dtype=F64)
    x = rng.standard_normal((2, 2, 5, 5))
    y_before = conv(x)
    wn = WeightNorm(conv)
    assert [(n, p.decay) for n, p in Sequential(wn).named_parameters()] == [
        ("0.bias", False), ("0.weight_g", False), ("0.weight_v", True)]
    assert wn.bias is conv.bias
    np.testing.assert_allclose(wn(x), y_before, rtol=1e-13)


def test_weightnorm_output_ignores_the_scale_of_each_unit_of_v(rng):
    wn = WeightNorm(Linear(4, 3, rng=rng, dtype=F64))
    x = rng.standard_normal((5, 4))
    y = wn(x)
    wn.weight_v.data *= np.array([[0.1], [3.0], [7.0]])
    np.testing.assert_allclose(wn(x), y, rtol=1e-14)


def test_weightnorm_follows_dtype_conversion_and_eval(rng):
    wn = WeightNorm(Linear(4, 3, rng=rng)).double().eval()
    assert wn(rng.standard_normal((2, 4))).dtype == F64
    assert not wn.module.training


# --- bad input ------------------------------------------------------------------------------
@pytest.mark.parametrize("cls, shape", [(BatchNorm1d, (1, 3)), (BatchNorm1d, (1, 3, 1)), (BatchNorm2d, (1, 3, 1, 1))])
def test_batchnorm_training_on_one_value_per_channel_raises_like_pytorch(cls, shape):
    with pytest.raises(ValueError, match=rf"{cls.__name__}\(3.*Expected more than 1 value per channel when training"):
        cls(3)(np.ones(shape, np.float32))


@pytest.mark.parametrize("shape, training", [((1, 3), False), ((1, 3, 2), True), ((1, 3, 1), False)])
def test_batchnorm_accepts_a_batch_of_one_in_eval_or_with_several_values_per_channel(shape, training):
    y = BatchNorm1d(3).train(training)(np.ones(shape, np.float32))
    assert y.shape == shape and np.isfinite(y).all()


@pytest.mark.parametrize("layer, shape, match", [
    (BatchNorm2d(4), (2, 3, 5, 5), r"BatchNorm2d\(4.*3 channels.*num_features=4"),
    (BatchNorm1d(4), (2, 5), r"BatchNorm1d\(4.*5 channels"),
    (BatchNorm2d(4), (2, 4), r"BatchNorm2d\(4.*4-D"),
    (BatchNorm1d(4), (2, 4, 3, 3), r"BatchNorm1d\(4.*2-D"),
    (LayerNorm(5), (2, 4), r"LayerNorm\(\(5,\).*\(2, 4\).*normalized_shape \(5,\)"),
    (LayerNorm((3, 4)), (2, 4, 3), r"LayerNorm\(\(3, 4\).*\(2, 4, 3\)"),
])
def test_shape_mismatch_raises_naming_the_layer(layer, shape, match):
    with pytest.raises(ValueError, match=match):
        layer(np.ones(shape, np.float32))


@pytest.mark.parametrize("make, match", [
    (lambda: BatchNorm2d(0), "num_features"), (lambda: BatchNorm1d(3, momentum=2), "momentum"),
    (lambda: BatchNorm1d(3, eps=-1), "eps"), (lambda: LayerNorm(()), "normalized_shape"),
    (lambda: LayerNorm("a"), "normalized_shape"), (lambda: WeightNorm(ReLU()), "WeightNorm"),
    (lambda: WeightNorm(WeightNorm(Linear(2, 2))), "WeightNorm")])
def test_bad_constructor_arguments_raise(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


@pytest.mark.parametrize("layer", [BatchNorm1d(2), LayerNorm(2), WeightNorm(Linear(2, 2))])
def test_backward_before_forward_raises(layer):
    with pytest.raises(RuntimeError, match="before forward"):
        layer.backward(np.ones((2, 2), np.float32))


# --- load_state_dict keeps every array on its device ------------------------------------------
class _DeviceArray(np.ndarray):
    """Stands in for a cupy.ndarray: refnet.backend tells the two apart by the type's module."""

    def get(self):
        return np.asarray(self)


_DeviceArray.__module__ = "cupy.stand_in"


def _stand_in_cupy():
    import types
    return types.SimpleNamespace(is_available=lambda: True,
                                 asarray=lambda a, dtype=None: np.asarray(a, dtype).view(_DeviceArray),
                                 zeros_like=lambda a: np.zeros_like(np.asarray(a)).view(_DeviceArray))


@pytest.mark.parametrize("make", [lambda: BatchNorm1d(3, affine=False), lambda: BatchNorm1d(3)],
                         ids=["buffers-only", "buffers-and-parameters"])
def test_load_state_dict_keeps_buffers_on_the_modules_device(monkeypatch, make):
    """A state read from a file is NumPy; a BN without parameters on the GPU must not end up
    with NumPy running statistics (its device cannot be read off parameters it lacks)."""
    from refnet import backend
    monkeypatch.setattr(backend, "_cupy", _stand_in_cupy)
    source = make()
    source.running_mean += 1.5
    state = {k: backend.asnumpy(v) for k, v in source.state_dict().items()}
    layer = make().to("cupy")
    layer.load_state_dict(state)
    arrays = dict(layer.named_buffers(), **{k: p.data for k, p in layer.named_parameters()})
    assert all(backend.is_cupy_array(a) for a in arrays.values()), {k: type(a) for k, a in arrays.items()}
    np.testing.assert_array_equal(backend.asnumpy(layer.running_mean), state["running_mean"])
    assert layer.num_batches_tracked.dtype == np.int64


@pytest.mark.gpu
def test_load_state_dict_of_a_parameter_free_batchnorm_on_the_gpu():
    from refnet import backend
    layer = BatchNorm2d(3, affine=False).to("cupy")
    state = {k: np.full(v.shape, 2, v.dtype) for k, v in BatchNorm2d(3, affine=False).state_dict().items()}
    layer.load_state_dict(state)
    assert all(backend.is_cupy_array(b) for _, b in layer.named_buffers())
