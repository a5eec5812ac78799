"""Model builders: a normalized MLP and a small VGG-style CNN, marked for scale invariance.

    model = mlp(784, norm="bn", rng=0)      # Flatten, [Linear-BN-ReLU] x depth, Linear head
    model = cnn(1, image_size=28, norm="bn") # [Conv3x3-BN-ReLU-MaxPool2] per width, Linear head

``norm`` is one of:
  "bn"   BatchNorm after each hidden linear/conv: its weight is scale-invariant per unit.
  "ln"   LayerNorm over every axis but the batch: the weight is scale-invariant as a tensor.
  "wn"   WeightNorm(layer): v is scale-invariant per unit, g carries the scale.
  "none" plain layers, nothing scale-invariant.

Bias before a normalization: BN and LN subtract the mean, so a bias right before them has
zero gradient (and, before LN, breaks the invariance of the weight alone). PyTorch's VGG-BN
keeps it; here ``bias=None`` means "no bias before BN/LN, a bias otherwise".

The fully scale-invariant variant, ``affine=False, train_head=False``: BN/LN without gamma
and beta, and a head that keeps its random initialization. The head's parameters get
``requires_grad = False`` and ``trainable_parameters(model)`` skips them, so an optimizer
built on ``trainable_parameters(model)`` never moves them; then every trained parameter
has a ``scale_group``. With "wn", ``affine=False`` likewise freezes each ``weight_g`` (and
the default drops the bias).
"""

import numpy as np

from refnet.invariance import mark_scale_invariant
from refnet.nn.layers import Conv2d, Flatten, Linear, MaxPool2d, ReLU
from refnet.nn.module import Sequential
from refnet.nn.norm import BatchNorm1d, BatchNorm2d, LayerNorm, WeightNorm

NORMS = ("bn", "ln", "wn", "none")


def trainable_parameters(model):
    """The parameters an optimizer should update: all but those with ``requires_grad = False``."""
    return [p for p in model.parameters() if p.requires_grad]


def freeze(module):
    """Exclude every parameter of ``module`` from training (``requires_grad = False``)."""
    for p in module.parameters():
        p.requires_grad = False
    return module


def _check_common(norm, dtype, fn):
    if norm not in NORMS:
        raise ValueError(f"{fn}(norm): got {norm!r}, expected one of {NORMS}")
    if np.dtype(dtype).kind != "f":
        raise TypeError(f"{fn}(dtype): got {np.dtype(dtype)}, expected float32 or float64")


def _check_positive(fn, name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{fn}({name}): got {value!r}, expected a positive integer")
    return int(value)


def _bias(norm, bias, affine):
    if bias is not None:
        return bool(bias)
    return norm == "none" or (norm == "wn" and affine)


def _block(make_layer, features, norm, affine, bias, conv, shape, dtype):
    """[layer, norm?, ReLU] for one hidden layer; ``shape`` is LN's normalized shape."""
    layer = make_layer(_bias(norm, bias, affine))
    if norm == "bn":
        bn = BatchNorm2d if conv else BatchNorm1d
        return [layer, bn(features, affine=affine, dtype=dtype), ReLU()]
    if norm == "ln":
        return [layer, LayerNorm(shape, elementwise_affine=affine, dtype=dtype), ReLU()]
    if norm == "wn":
        wn = WeightNorm(layer)
        if not affine:
            wn.weight_g.requires_grad = False
        return [wn, ReLU()]
    return [layer, ReLU()]


def _head(in_features, num_classes, rng, dtype, train_head):
    head = Linear(in_features, num_classes, bias=True, rng=rng, dtype=dtype)
    return head if train_head else freeze(head)


def mlp(in_features, num_classes=10, width=256, depth=None, norm="bn", rng=None,
        dtype=np.float32, affine=True, bias=None, train_head=True):
    """Flatten, then ``depth`` hidden blocks Linear(width)-norm-ReLU, then a Linear head.

    in_features: size of one flattened input (784 for 28x28x1).
    width: the hidden width, or a list of widths, one per hidden block.
    depth: the number of hidden blocks (default 2; with a list of widths, its length, and
        passing a different one is an error).
    rng: a numpy Generator or an int seed (None: fresh entropy).
    affine: BN/LN with gamma and beta (WN: a trained g). bias: see the module docstring.
    train_head: False freezes the head (``requires_grad = False``).
    Scale groups are marked with ``mark_scale_invariant``.
    """
    _check_common(norm, dtype, "mlp")
    in_features = _check_positive("mlp", "in_features", in_features)
    num_classes = _check_positive("mlp", "num_classes", num_classes)
    if isinstance(width, (list, tuple)):
        if not width:
            raise ValueError("mlp(width): got an empty list, expected at least one hidden width")
        if depth is not None and depth != len(width):
            raise ValueError(f"mlp(depth): got {depth!r}, but width lists {len(width)} hidden widths")
        widths = [_check_positive("mlp", "width", w) for w in width]
    else:
        widths = [_check_positive("mlp", "width", width)] * _check_positive("mlp", "depth", 2 if depth is None else depth)
    rng = np.random.default_rng(rng)
    layers = [Flatten()]
    features = in_features
    for width in widths:
        def make(b, n_in=features, n_out=width):
            return Linear(n_in, n_out, bias=b, rng=rng, dtype=dtype)
        layers += _block(make, width, norm, affine, bias, False, width, dtype)
        features = width
    layers.append(_head(features, num_classes, rng, dtype, train_head))
    model = Sequential(*layers)
    mark_scale_invariant(model)
    return model


def cnn(in_channels=1, num_classes=10, image_size=28, widths=(32, 64), norm="bn", rng=None,
        dtype=np.float32, affine=True, bias=None, train_head=True, convs_per_block=1):
    """A small VGG-style net: per entry of ``widths`` a block of ``convs_per_block``
    Conv3x3(padding 1)-norm-ReLU then MaxPool2d(2); then Flatten and a Linear head.

    The default, conv(1->32)-BN-ReLU-pool, conv(32->64)-BN-ReLU-pool, Linear(64*7*7 -> 10),
    suits 28x28 (Fashion-MNIST); ``in_channels=3, image_size=32`` gives 64*8*8 features for
    CIFAR-10. Other arguments as in ``mlp``.
    """
    _check_common(norm, dtype, "cnn")
    in_channels = _check_positive("cnn", "in_channels", in_channels)
    num_classes = _check_positive("cnn", "num_classes", num_classes)
    size = _check_positive("cnn", "image_size", image_size)
    convs_per_block = _check_positive("cnn", "convs_per_block", convs_per_block)
    widths = tuple(_check_positive("cnn", "widths", w) for w in widths)
    if not widths:
        raise ValueError("cnn(widths): got an empty sequence, expected at least one width")
    if size < 2 ** len(widths):
        raise ValueError(f"cnn(image_size): got {size}, too small for {len(widths)} poolings "
                         f"(expected >= {2 ** len(widths)})")
    rng = np.random.default_rng(rng)
    layers = []
    channels = in_channels
    for width in widths:
        for _ in range(convs_per_block):
            def make(b, c_in=channels):
                return Conv2d(c_in, width, 3, padding=1, bias=b, rng=rng, dtype=dtype)
            layers += _block(make, width, norm, affine, bias, True, (width, size, size), dtype)
            channels = width
        layers.append(MaxPool2d(2))
        size //= 2
    layers += [Flatten(), _head(channels * size * size, num_classes, rng, dtype, train_head)]
    model = Sequential(*layers)
    mark_scale_invariant(model)
    return model
