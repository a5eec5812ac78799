"""Linear, Conv2d, ReLU, MaxPool2d, AvgPool2d, Flatten: PyTorch's init and names, forward and
backward equal to the ops, gradients accumulated, seeded reproducibility, clear input errors."""

import numpy as np
import pytest
from oracle import require_torch

from refnet import ops
from refnet.nn import AvgPool2d, Conv2d, Flatten, Linear, MaxPool2d, ReLU, Sequential


def _seeded(seed=0):
    return np.random.default_rng(seed)


# --- initialization --------------------------------------------------------------------
@pytest.mark.parametrize("make, fan_in", [
    (lambda rng: Linear(400, 300, rng=rng), 400),
    (lambda rng: Conv2d(16, 300, (5, 3), rng=rng), 16 * 5 * 3),
])
def test_init_is_uniform_within_one_over_sqrt_fan_in(make, fan_in):
    layer = make(_seeded())
    bound = 1 / np.sqrt(fan_in)
    for p in (layer.weight, layer.bias):
        assert np.abs(p.data).max() <= bound
        # U(-a, a) has std a / sqrt(3); 300+ draws (bias) put this within ~10%.
        assert np.std(p.data) == pytest.approx(bound / np.sqrt(3), rel=0.1)
        assert abs(np.mean(p.data)) < 0.2 * bound


@pytest.mark.parametrize("make", [lambda rng: Linear(5, 4, rng=rng),
                                  lambda rng: Conv2d(3, 4, 3, rng=rng)])
def test_same_seed_same_parameters_other_seed_other_parameters(make):
    a, b, c = make(_seeded(7)), make(_seeded(7)), make(_seeded(8))
    np.testing.assert_array_equal(a.weight.data, b.weight.data)
    np.testing.assert_array_equal(a.bias.data, b.bias.data)
    assert not np.array_equal(a.weight.data, c.weight.data)


def test_init_does_not_touch_the_global_rng():
    np.random.seed(3)
    expected = np.random.random_sample()
    np.random.seed(3)
    Linear(4, 3, rng=None)
    Conv2d(2, 3, 3)
    assert np.random.random_sample() == expected


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_parameters_have_the_requested_dtype(dtype):
    for layer in (Linear(3, 2, rng=_seeded(), dtype=dtype),
                  Conv2d(2, 3, 2, rng=_seeded(), dtype=dtype)):
        assert layer.weight.dtype == layer.bias.dtype == dtype
        assert layer.weight.grad.dtype == dtype


def test_default_dtype_is_float32():
    assert Linear(3, 2, rng=_seeded()).weight.dtype == np.float32
    assert Conv2d(3, 2, 1, rng=_seeded()).weight.dtype == np.float32


# --- names, shapes, decay ------------------------------------------------------------------
def test_names_shapes_and_decay_flags():
    model = Sequential(Conv2d(3, 8, (3, 2), rng=_seeded()), ReLU(), Flatten(),
                       Linear(8, 2, bias=False, rng=_seeded()))
    params = dict(model.named_parameters())
    assert list(params) == ["0.weight", "0.bias", "3.weight"]
    assert params["0.weight"].shape == (8, 3, 3, 2) and params["0.bias"].shape == (8,)
    assert params["3.weight"].shape == (2, 8)
    assert params["0.weight"].decay and params["3.weight"].decay and not params["0.bias"].decay


@pytest.mark.parametrize("layer, text", [
    (Conv2d(3, 16, 3, stride=2, padding=1, bias=False, rng=_seeded()),
     "Conv2d(3, 16, kernel_size=(3, 3), stride=(2, 2), padding=(1, 1), bias=False)"),
    (Linear(4, 5, rng=_seeded()), "Linear(in_features=4, out_features=5, bias=True)"),
    (MaxPool2d(2), "MaxPool2d(kernel_size=(2, 2), stride=(2, 2))"),
    (AvgPool2d(3, 1), "AvgPool2d(kernel_size=(3, 3), stride=(1, 1))"),
])
def test_repr_reads_like_pytorch(layer, text):
    assert repr(layer) == text


# --- forward / backward ----------------------------------------------------------------------
def test_conv_layer_forward_backward_equal_the_op(rng):
    layer = Conv2d(2, 3, (3, 2), stride=(2, 1), padding=1, rng=_seeded(), dtype=np.float64)
    x = rng.standard_normal((2, 2, 7, 6))
    y = layer(x)
    ref, cache = ops.conv2d_forward(x, layer.weight.data, layer.bias.data, (2, 1), 1)
    np.testing.assert_array_equal(y, ref)
    dy = rng.standard_normal(y.shape)
    dx = layer.backward(dy)
    rdx, rdw, rdb = ops.conv2d_backward(dy, cache)
    np.testing.assert_array_equal(dx, rdx)
    np.testing.assert_array_equal(layer.weight.grad, rdw)
    np.testing.assert_array_equal(layer.bias.grad, rdb)


@pytest.mark.parametrize("make, x_shape", [
    (lambda: Linear(5, 3, rng=_seeded(), dtype=np.float64), (4, 5)),
    (lambda: Conv2d(2, 3, 3, padding=1, rng=_seeded(), dtype=np.float64), (2, 2, 5, 5)),
])
def test_backward_accumulates_parameter_gradients(rng, make, x_shape):
    layer = make()
    x = rng.standard_normal(x_shape)
    dy = rng.standard_normal(layer(x).shape)
    layer.backward(dy)
    once = [p.grad.copy() for p in layer.parameters()]
    layer.backward(dy)
    for p, g in zip(layer.parameters(), once):
        np.testing.assert_allclose(p.grad, 2 * g, rtol=1e-15)
    layer.zero_grad()
    assert all(not p.grad.any() for p in layer.parameters())


def test_layer_without_bias_has_no_bias_gradient(rng):
    layer = Linear(4, 2, bias=False, rng=_seeded(), dtype=np.float64)
    layer.backward(np.ones_like(layer(rng.standard_normal((3, 4)))))
    assert layer.bias is None and [n for n, _ in layer.named_parameters()] == ["weight"]


@pytest.mark.parametrize("layer, op_fwd, op_bwd, args", [
    (ReLU(), ops.relu_forward, ops.relu_backward, ()),
    (MaxPool2d(3, 2), ops.maxpool2d_forward, ops.maxpool2d_backward, ((3, 3), (2, 2))),
    (AvgPool2d((2, 3)), ops.avgpool2d_forward, ops.avgpool2d_backward, ((2, 3), (2, 3))),
])
def test_parameterless_layers_equal_their_op(rng, layer, op_fwd, op_bwd, args):
    x = rng.standard_normal((2, 3, 7, 8))
    y = layer(x)
    ref, cache = op_fwd(x, *args)
    np.testing.assert_array_equal(y, ref)
    dy = rng.standard_normal(y.shape)
    np.testing.assert_array_equal(layer.backward(dy), op_bwd(dy, cache))


@pytest.mark.parametrize("start, end, out_shape", [(1, -1, (2, 60)), (2, 3, (2, 3, 20)),
                                                   (0, 1, (6, 4, 5))])
def test_flatten_reshapes_and_backward_restores_the_shape(rng, start, end, out_shape):
    x = rng.standard_normal((2, 3, 4, 5))
    layer = Flatten(start, end)
    y = layer(x)
    assert y.shape == out_shape
    np.testing.assert_array_equal(layer.backward(y), x)


def test_sequential_backward_chains_the_layers(rng):
    conv = Conv2d(1, 2, 3, padding=1, rng=_seeded(), dtype=np.float64)
    fc = Linear(2 * 2 * 2, 3, rng=_seeded(1), dtype=np.float64)
    model = Sequential(conv, ReLU(), MaxPool2d(2), Flatten(), fc)
    x = rng.standard_normal((2, 1, 4, 4))
    dy = rng.standard_normal(model(x).shape)
    dx = model.backward(dy)
    # the same chain by hand
    h, c1 = ops.conv2d_forward(x, conv.weight.data, conv.bias.data, 1, 1)
    r, c2 = ops.relu_forward(h)
    m, c3 = ops.maxpool2d_forward(r, 2)
    _, c4 = ops.linear_forward(m.reshape(2, -1), fc.weight.data, fc.bias.data)
    g, dw_fc, _ = ops.linear_backward(dy, c4)
    g = ops.relu_backward(ops.maxpool2d_backward(g.reshape(m.shape), c3), c2)
    ref_dx, dw_conv, _ = ops.conv2d_backward(g, c1)
    np.testing.assert_array_equal(dx, ref_dx)
    np.testing.assert_array_equal(fc.weight.grad, dw_fc)
    np.testing.assert_array_equal(conv.weight.grad, dw_conv)


@pytest.mark.parametrize("first", ["conv", "flatten"])
def test_sequential_backward_params_accumulates_what_backward_does_and_returns_none(rng, first):
    def model():   # a network's first layer with parameters is its first, or after a Flatten
        head = [Conv2d(1, 2, 3, padding=1, rng=_seeded(), dtype=np.float64), ReLU(), Flatten()]
        if first == "flatten":
            head = [Flatten(), Linear(16, 2 * 4 * 4, rng=_seeded(2), dtype=np.float64), ReLU()]
        return Sequential(*head, Linear(2 * 4 * 4, 3, rng=_seeded(1), dtype=np.float64))
    full, params_only = model(), model()
    x = rng.standard_normal((2, 1, 4, 4))
    dy = rng.standard_normal(full(x).shape)
    params_only(x)
    full.backward(dy)
    assert params_only.backward_params(dy) is None
    for (name, p), (_, q) in zip(full.named_parameters(), params_only.named_parameters()):
        np.testing.assert_array_equal(q.grad, p.grad, err_msg=name)


class _ClippedLinear(Linear):
    """A user's layer that changes its gradients in ``backward`` (as tutorial 01's do)."""
    def backward(self, dy):
        return super().backward(np.clip(dy, -0.1, 0.1))


class _ClippedConv2d(Conv2d):
    def backward(self, dy):
        return super().backward(np.clip(dy, -0.1, 0.1))


class _ScaledSequential(Sequential):
    def backward(self, dy):
        return super().backward(2 * dy)


@pytest.mark.parametrize("kind", ["linear", "conv", "sequential"])
def test_backward_params_runs_a_subclass_s_own_backward(rng, kind):
    """The Trainer calls backward_params: where a subclass overrides backward, the gradients
    must be that backward's (the ones a gradient check of it saw), not the base class's."""
    def model():
        if kind == "linear":
            return Sequential(Flatten(), _ClippedLinear(16, 3, rng=_seeded(), dtype=np.float64))
        if kind == "conv":
            return Sequential(_ClippedConv2d(1, 2, 3, padding=1, rng=_seeded(), dtype=np.float64), Flatten())
        return _ScaledSequential(Flatten(), Linear(16, 3, rng=_seeded(), dtype=np.float64))
    full, params_only = model(), model()
    x = rng.standard_normal((2, 1, 4, 4))
    dy = rng.standard_normal(full(x).shape)
    params_only(x)
    full.backward(dy)
    params_only.backward_params(dy)
    for (name, p), (_, q) in zip(full.named_parameters(), params_only.named_parameters()):
        np.testing.assert_array_equal(q.grad, p.grad, err_msg=name)


def test_float32_layer_keeps_float32(rng):
    model = Sequential(Conv2d(3, 4, 3, rng=_seeded()), ReLU(), AvgPool2d(2), Flatten(),
                       Linear(4 * 2 * 2, 2, rng=_seeded()))
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    y = model(x)
    dx = model.backward(np.ones_like(y))
    assert y.dtype == dx.dtype == np.float32
    assert all(p.grad.dtype == np.float32 for p in model.parameters())


def test_matches_torch_modules_float64(rng):
    torch = require_torch()
    model = Sequential(Conv2d(2, 3, 3, padding=1, rng=_seeded(), dtype=np.float64), ReLU(),
                       MaxPool2d(2), Flatten(), Linear(12, 4, rng=_seeded(), dtype=np.float64))
    tmodel = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3, padding=1), torch.nn.ReLU(),
                                 torch.nn.MaxPool2d(2), torch.nn.Flatten(),
                                 torch.nn.Linear(12, 4)).double()
    tmodel.load_state_dict({k: torch.tensor(v) for k, v in model.state_dict().items()})
    x = rng.standard_normal((3, 2, 4, 4))
    dy = rng.standard_normal((3, 4))
    tx = torch.tensor(x, requires_grad=True)
    ty = tmodel(tx)
    ty.backward(torch.tensor(dy))
    np.testing.assert_allclose(model(x), ty.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(model.backward(dy), tx.grad.numpy(), rtol=1e-12, atol=1e-14)
    for (name, p), tp in zip(model.named_parameters(), tmodel.parameters()):
        np.testing.assert_allclose(p.grad, tp.grad.numpy(), rtol=1e-12, atol=1e-14, err_msg=name)


# --- errors ------------------------------------------------------------------------------
def test_conv_channel_mismatch_names_the_layer():
    layer = Conv2d(3, 16, 3, rng=_seeded())
    with pytest.raises(ValueError, match=r"Conv2d\(3, 16, kernel_size=\(3, 3\).*\): input has "
                                         r"4 channels, expected 3"):
        layer(np.zeros((2, 4, 8, 8), np.float32))


def test_linear_feature_mismatch_names_the_layer():
    with pytest.raises(ValueError, match=r"Linear\(in_features=10, .*\): input has 7 features, "
                                         r"expected 10"):
        Linear(10, 5, rng=_seeded())(np.zeros((2, 7), np.float32))


@pytest.mark.parametrize("layer, x", [
    (Conv2d(3, 4, 3, rng=_seeded()), np.zeros((3, 8, 8), np.float32)),
    (Linear(4, 2, rng=_seeded()), np.zeros((2, 2, 4), np.float32)),
    (MaxPool2d(2), np.zeros((4, 4), np.float32)),
    (AvgPool2d(2), np.zeros((1, 4, 4), np.float32)),
])
def test_wrong_rank_names_the_layer_and_the_expected_shape(layer, x):
    with pytest.raises(ValueError) as err:
        layer(x)
    message = str(err.value)
    assert message.startswith(repr(layer) + ": input has shape " + str(tuple(x.shape)))
    assert "expected (N, " in message


@pytest.mark.parametrize("layer", [Linear(2, 2, rng=_seeded()), Conv2d(1, 1, 1, rng=_seeded()),
                                   ReLU(), MaxPool2d(2), AvgPool2d(2), Flatten()])
def test_backward_before_forward_is_an_error(layer):
    with pytest.raises(RuntimeError, match="before forward"):
        layer.backward(np.zeros((1, 1, 1, 1), np.float32))
