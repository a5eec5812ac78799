"""Model builders: structure per norm, scale-group marking, the fully scale-invariant variant."""

import numpy as np
import pytest

from refnet.nn import layers, norm as norms
from refnet.nn.models import cnn, mlp, trainable_parameters

HIDDEN_GROUP = {"bn": "unit", "wn": "unit", "ln": "tensor", "none": None}


def _types(model):
    return [type(m).__name__ for m in model]


@pytest.mark.parametrize("norm, block", [
    ("bn", ["Linear", "BatchNorm1d", "ReLU"]),
    ("ln", ["Linear", "LayerNorm", "ReLU"]),
    ("wn", ["WeightNorm", "ReLU"]),
    ("none", ["Linear", "ReLU"]),
])
def test_mlp_is_flatten_then_blocks_then_a_linear_head(norm, block):
    model = mlp(12, num_classes=3, width=8, depth=2, norm=norm, rng=0)
    assert _types(model) == ["Flatten"] + block * 2 + ["Linear"]


@pytest.mark.parametrize("norm, block", [
    ("bn", ["Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d"]),
    ("ln", ["Conv2d", "LayerNorm", "ReLU", "MaxPool2d"]),
    ("wn", ["WeightNorm", "ReLU", "MaxPool2d"]),
    ("none", ["Conv2d", "ReLU", "MaxPool2d"]),
])
def test_cnn_is_conv_blocks_with_pooling_then_a_linear_head(norm, block):
    model = cnn(1, image_size=8, widths=(4, 6), norm=norm, rng=0)
    assert _types(model) == block * 2 + ["Flatten", "Linear"]


def test_cnn_default_has_the_pytorch_twins_parameter_shapes():
    shapes = [tuple(p.shape) for p in cnn(rng=0).parameters()]
    assert shapes == [(32, 1, 3, 3), (32,), (32,), (64, 32, 3, 3), (64,), (64,),
                      (10, 64 * 7 * 7), (10,)]


@pytest.mark.parametrize("channels, size, features", [(1, 28, 64 * 7 * 7), (3, 32, 64 * 8 * 8)])
def test_cnn_fits_28_and_32_pixel_images(channels, size, features, rng):
    model = cnn(channels, image_size=size, rng=0)
    assert model[-1].weight.shape == (10, features)
    x = rng.standard_normal((2, channels, size, size)).astype(np.float32)
    assert model(x).shape == (2, 10)


def _hidden_weights(model):
    """The weight of every hidden Linear/Conv2d (WN: its v), the head excluded."""
    hidden = [m for m in list(model)[:-1] if type(m).__name__ in ("Linear", "Conv2d", "WeightNorm")]
    return [m.weight_v if isinstance(m, norms.WeightNorm) else m.weight for m in hidden]


@pytest.mark.parametrize("build", ["mlp", "cnn"])
@pytest.mark.parametrize("norm", ["bn", "ln", "wn", "none"])
def test_hidden_weights_and_nothing_else_carry_their_norms_scale_group(build, norm):
    model = mlp(12, width=8, norm=norm, rng=0) if build == "mlp" else \
        cnn(1, image_size=8, widths=(4, 6), norm=norm, rng=0)
    hidden = _hidden_weights(model)
    assert len(hidden) == 2
    assert [p.scale_group for p in hidden] == [HIDDEN_GROUP[norm]] * 2
    others = [p for p in model.parameters() if not any(p is h for h in hidden)]
    assert all(p.scale_group is None for p in others)


@pytest.mark.parametrize("norm, has_bias", [("bn", False), ("ln", False), ("wn", True), ("none", True)])
def test_no_bias_right_before_bn_or_ln(norm, has_bias):
    model = mlp(12, width=8, depth=1, norm=norm, rng=0)
    linear = model[1].module if norm == "wn" else model[1]
    assert (linear.bias is not None) == has_bias


def test_mlp_takes_one_width_per_hidden_layer():
    model = mlp(12, num_classes=3, width=[10, 6, 4], norm="bn", rng=0)
    shapes = [p.shape for n, p in model.named_parameters() if n.endswith("weight") and p.scale_group]
    assert shapes == [(10, 12), (6, 10), (4, 6)]
    assert model[-1].weight.shape == (3, 4)


@pytest.mark.parametrize("width, depth, match", [([8, 4], 3, "depth"), ([], None, "width"), ([8, 0], None, "width")])
def test_mlp_refuses_inconsistent_widths(width, depth, match):
    with pytest.raises(ValueError, match=f"mlp\\({match}\\)"):
        mlp(12, width=width, depth=depth)


@pytest.mark.parametrize("norm", ["bn", "ln"])
def test_affine_false_drops_gamma_and_beta(norm):
    model = mlp(12, width=8, depth=2, norm=norm, affine=False, rng=0)
    assert [n for n, _ in model.named_parameters()] == ["1.weight", "4.weight", "7.weight", "7.bias"]


@pytest.mark.parametrize("build", ["mlp", "cnn"])
def test_fully_scale_invariant_variant_trains_only_scale_invariant_weights(build):
    kw = dict(norm="bn", affine=False, train_head=False, rng=0)
    model = mlp(12, width=8, **kw) if build == "mlp" else cnn(1, image_size=8, widths=(4, 6), **kw)
    trained = trainable_parameters(model)
    assert len(trained) == 2
    assert all(p.scale_group == "unit" for p in trained)
    head = model[-1]
    assert all(p.requires_grad is False for p in head.parameters())
    assert not any(p is q for p in head.parameters() for q in trained)


def test_trainable_parameters_is_every_parameter_by_default():
    model = mlp(12, width=8, rng=0)
    assert trainable_parameters(model) == model.parameters()


@pytest.mark.parametrize("norm", ["bn", "ln", "wn"])
def test_output_ignores_the_scale_of_each_scale_group(norm, rng):
    model = mlp(6, num_classes=3, width=5, depth=2, norm=norm, rng=0, dtype=np.float64)
    for m in model.modules():
        if hasattr(m, "eps"):
            m.eps = 0.0  # eps is the one thing that breaks the invariance
    x = rng.standard_normal((8, 6))
    before = model(x)
    for p in model.parameters():
        if p.scale_group == "unit":
            p.data *= rng.uniform(0.1, 10, size=(p.shape[0],) + (1,) * (p.data.ndim - 1))
        elif p.scale_group == "tensor":
            p.data *= 7.5
    np.testing.assert_allclose(model(x), before, rtol=1e-10, atol=1e-12)


def test_same_seed_same_weights_other_seed_other_weights():
    a, b, c = (mlp(12, width=8, rng=s).parameters()[0].data for s in (3, 3, 4))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_parameters_have_the_requested_dtype(dtype):
    assert {p.dtype for p in cnn(1, image_size=8, widths=(4,), dtype=dtype, rng=0).parameters()} == \
        {np.dtype(dtype)}


@pytest.mark.parametrize("call, match", [
    (lambda: mlp(12, norm="batch"), "norm"),
    (lambda: mlp(0), "in_features"),
    (lambda: mlp(12, width=0), "width"),
    (lambda: cnn(widths=()), "widths"),
    (lambda: cnn(image_size=3, widths=(4, 4)), "image_size"),
    (lambda: mlp(12, dtype=np.int32), "dtype"),
])
def test_bad_arguments_are_named(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


def test_layers_used_are_the_public_ones():
    model = cnn(1, image_size=8, widths=(4,), norm="bn", rng=0)
    assert isinstance(model[0], layers.Conv2d) and isinstance(model[1], norms.BatchNorm2d)


def test_convs_per_block_repeats_the_conv_norm_relu_unit_before_each_pool():
    model = cnn(1, image_size=8, widths=(4,), convs_per_block=2, rng=0)
    assert _types(model) == ["Conv2d", "BatchNorm2d", "ReLU"] * 2 + ["MaxPool2d", "Flatten", "Linear"]
    assert model[3].weight.shape == (4, 4, 3, 3) and model[3].weight.scale_group == "unit"
