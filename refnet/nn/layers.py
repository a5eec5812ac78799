"""Layers wrapping the ops: Linear, Conv2d, ReLU, MaxPool2d, AvgPool2d, Flatten.

Names, arguments and initialization follow PyTorch. ``forward`` keeps the op's cache;
``backward(dy)`` returns dL/dx and ADDS dL/dweight, dL/dbias into ``param.grad`` (call
``zero_grad()`` between steps).

Forward mode and second order (``Module.forward_jvp`` / ``backward_jvp``): each layer
passes its cache, its input's tangent and its parameters' tangents to the op's
``forward_jvp`` / ``backward_jvp``, in the op's argument order (``_jvp_params``).

Initialization (PyTorch's ``reset_parameters``): ``kaiming_uniform_(w, a=sqrt(5))`` draws
from U(-bound, bound) with bound = gain * sqrt(3 / fan_in), gain = sqrt(2 / (1 + a^2)) =
sqrt(1/3), i.e. bound = 1 / sqrt(fan_in); the bias uses the same bound. fan_in is
in_features for Linear and C * KH * KW for Conv2d. Values are drawn on the host from the
given ``rng`` (weight first, then bias) and moved to the current backend.
"""

import math

import numpy as np

from refnet import backend
from refnet.nn.module import Module, Parameter, add_into
from refnet.ops import (
    avgpool2d_backward,
    avgpool2d_backward_jvp,
    avgpool2d_forward,
    avgpool2d_forward_jvp,
    conv2d_backward,
    conv2d_backward_jvp,
    conv2d_forward,
    conv2d_forward_jvp,
    linear_backward,
    linear_backward_jvp,
    linear_forward,
    linear_forward_jvp,
    maxpool2d_backward,
    maxpool2d_backward_jvp,
    maxpool2d_forward,
    maxpool2d_forward_jvp,
    relu_backward,
    relu_backward_jvp,
    relu_forward,
    relu_forward_jvp,
)
from refnet.ops._checks import check_int, check_module_dtype, pair
from refnet.ops.conv import conv2d_backward_input, conv2d_backward_params
from refnet.ops.linear import linear_backward_params


def _uniform(rng, bound, shape, dtype, decay=True):
    """A Parameter drawn from U(-bound, bound) on the host, then moved to the current backend."""
    data = rng.uniform(-bound, bound, size=shape).astype(dtype)
    return Parameter(backend.to_device(data), decay=decay)


class _Cached(Module):
    """A module whose backward needs the cache of its last forward."""

    def __init__(self):
        super().__init__()
        self._cache = None

    def _last_cache(self):
        if self._cache is None:
            raise RuntimeError(f"{self!r}.backward: called before forward")
        return self._cache

    def _bad_input(self, what):
        raise ValueError(f"{self!r}: input has {what}")

    # The op's backward and JVPs, and the parameters after x in its argument order;
    # _input_grad(dy, cache): dx alone, where that is cheaper than the whole backward.
    _op_backward = _op_forward_jvp = _op_backward_jvp = _input_grad = None

    def _jvp_params(self):
        return []

    def forward_jvp(self, tx, tangents):
        cache = self._last_cache()
        ts = [None if p is None else tangents.get(p) for p in self._jvp_params()]
        self._jvp = (tx, ts)
        if tx is None and all(t is None for t in ts):
            return None  # a zero tangent: the layers before a model's first tangent cost nothing
        return type(self)._op_forward_jvp(cache, tx, *ts)

    def backward_jvp(self, dy, tdy, hgrads, grads=None):
        cache = self._last_cache()
        if getattr(self, "_jvp", None) is None:
            raise RuntimeError(f"{self!r}.backward_jvp: called before forward_jvp")
        tx, ts = self._jvp
        if grads is None and type(self)._input_grad is not None:
            g = (type(self)._input_grad(dy, cache),)     # an hvp needs dx only, not dw
        else:
            g = _as_tuple(type(self)._op_backward(dy, cache))
        tg = _as_tuple(type(self)._op_backward_jvp(dy, tdy, cache, tx, *ts))
        for k, (p, tgi) in enumerate(zip(self._jvp_params(), tg[1:])):
            if p is not None:
                add_into(hgrads, p, tgi)
                if grads is not None:
                    add_into(grads, p, g[1 + k])
        return g[0], tg[0]


def _accumulate(layer, dw, db):
    """Adds a Linear's or Conv2d's gradients into its .grad (db is None without a bias)."""
    layer.weight.grad += dw
    if layer.bias is not None:
        layer.bias.grad += db


def _as_tuple(grads):
    return tuple(grads) if isinstance(grads, (tuple, list)) else (grads,)


class Linear(_Cached):
    """y = x @ weight.T + bias; weight (out_features, in_features), bias (out_features,)."""

    def __init__(self, in_features, out_features, bias=True, rng=None, dtype=np.float32):
        super().__init__()
        self.in_features = check_int("in_features", in_features, "Linear", minimum=1)
        self.out_features = check_int("out_features", out_features, "Linear", minimum=1)
        rng = np.random.default_rng() if rng is None else rng
        bound = 1.0 / math.sqrt(self.in_features)
        self.weight = _uniform(rng, bound, (self.out_features, self.in_features), dtype)
        self.bias = _uniform(rng, bound, (self.out_features,), dtype, decay=False) if bias else None

    def forward(self, x):
        if getattr(x, "ndim", None) != 2:
            self._bad_input(f"shape {tuple(getattr(x, 'shape', ()))}, expected "
                                 f"(N, {self.in_features})")
        if x.shape[1] != self.in_features:
            self._bad_input(f"{x.shape[1]} features, expected {self.in_features}")
        check_module_dtype(self, x, [self.weight.data])
        b = None if self.bias is None else self.bias.data
        y, self._cache = linear_forward(x, self.weight.data, b)
        return y

    _op_backward = staticmethod(linear_backward)
    _op_forward_jvp = staticmethod(linear_forward_jvp)
    _op_backward_jvp = staticmethod(linear_backward_jvp)
    _input_grad = staticmethod(lambda dy, cache: dy @ cache[1])

    def _jvp_params(self):
        return [self.weight, self.bias]

    def backward(self, dy):
        dx, dw, db = linear_backward(dy, self._last_cache())
        _accumulate(self, dw, db)
        return dx

    def backward_params(self, dy):
        if type(self).backward is not Linear.backward:  # a subclass's own backward sets the gradients
            return super().backward_params(dy)
        _accumulate(self, *linear_backward_params(dy, self._last_cache()))

    def extra_repr(self):
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")


class Conv2d(_Cached):
    """2-D convolution (cross-correlation) of NCHW input; weight (out, in, KH, KW)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True,
                 rng=None, dtype=np.float32):
        super().__init__()
        self.in_channels = check_int("in_channels", in_channels, "Conv2d", minimum=1)
        self.out_channels = check_int("out_channels", out_channels, "Conv2d", minimum=1)
        self.kernel_size = pair("kernel_size", kernel_size, "Conv2d", minimum=1)
        self.stride = pair("stride", stride, "Conv2d", minimum=1)
        self.padding = pair("padding", padding, "Conv2d", minimum=0)
        rng = np.random.default_rng() if rng is None else rng
        fan_in = self.in_channels * self.kernel_size[0] * self.kernel_size[1]
        bound = 1.0 / math.sqrt(fan_in)
        shape = (self.out_channels, self.in_channels) + self.kernel_size
        self.weight = _uniform(rng, bound, shape, dtype)
        self.bias = _uniform(rng, bound, (self.out_channels,), dtype, decay=False) if bias else None

    def forward(self, x):
        if getattr(x, "ndim", None) != 4:
            self._bad_input(f"shape {tuple(getattr(x, 'shape', ()))}, expected "
                                 f"(N, {self.in_channels}, H, W)")
        if x.shape[1] != self.in_channels:
            self._bad_input(f"{x.shape[1]} channels, expected {self.in_channels}")
        check_module_dtype(self, x, [self.weight.data])
        b = None if self.bias is None else self.bias.data
        y, self._cache = conv2d_forward(x, self.weight.data, b, self.stride, self.padding)
        return y

    _op_backward = staticmethod(conv2d_backward)
    _op_forward_jvp = staticmethod(conv2d_forward_jvp)
    _op_backward_jvp = staticmethod(conv2d_backward_jvp)
    _input_grad = staticmethod(conv2d_backward_input)

    def _jvp_params(self):
        return [self.weight, self.bias]

    def backward(self, dy):
        dx, dw, db = conv2d_backward(dy, self._last_cache())
        _accumulate(self, dw, db)
        return dx

    def backward_params(self, dy):
        if type(self).backward is not Conv2d.backward:  # a subclass's own backward sets the gradients
            return super().backward_params(dy)
        _accumulate(self, *conv2d_backward_params(dy, self._last_cache()))

    def extra_repr(self):
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}")
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.bias is None:
            s += ", bias=False"
        return s


class ReLU(_Cached):
    """y = max(x, 0)."""

    def forward(self, x):
        y, self._cache = relu_forward(x)
        return y

    _op_backward = staticmethod(relu_backward)
    _op_forward_jvp = staticmethod(relu_forward_jvp)
    _op_backward_jvp = staticmethod(relu_backward_jvp)

    def backward(self, dy):
        return relu_backward(dy, self._last_cache())


class _Pool2d(_Cached):
    def __init__(self, kernel_size, stride=None):
        super().__init__()
        name = type(self).__name__
        self.kernel_size = pair("kernel_size", kernel_size, name, minimum=1)
        self.stride = (self.kernel_size if stride is None
                       else pair("stride", stride, name, minimum=1))

    def _check_input(self, x):
        if getattr(x, "ndim", None) != 4:
            self._bad_input(f"shape {tuple(getattr(x, 'shape', ()))}, expected (N, C, H, W)")

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}"


class MaxPool2d(_Pool2d):
    """Max over KH x KW windows (stride defaults to the kernel); the gradient goes to the
    first maximum of each window, or to its last NaN when it holds one, as in PyTorch."""

    def forward(self, x):
        self._check_input(x)
        y, self._cache = maxpool2d_forward(x, self.kernel_size, self.stride)
        return y

    _op_backward = staticmethod(maxpool2d_backward)
    _op_forward_jvp = staticmethod(maxpool2d_forward_jvp)
    _op_backward_jvp = staticmethod(maxpool2d_backward_jvp)

    def backward(self, dy):
        return maxpool2d_backward(dy, self._last_cache())


class AvgPool2d(_Pool2d):
    """Mean over KH x KW windows (stride defaults to the kernel)."""

    def forward(self, x):
        self._check_input(x)
        y, self._cache = avgpool2d_forward(x, self.kernel_size, self.stride)
        return y

    _op_backward = staticmethod(avgpool2d_backward)
    _op_forward_jvp = staticmethod(avgpool2d_forward_jvp)
    _op_backward_jvp = staticmethod(avgpool2d_backward_jvp)

    def backward(self, dy):
        return avgpool2d_backward(dy, self._last_cache())


class Flatten(_Cached):
    """Flattens dims start_dim..end_dim into one, e.g. (N, C, H, W) -> (N, C*H*W)."""

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim, self.end_dim = int(start_dim), int(end_dim)

    def forward(self, x):
        shape = tuple(getattr(x, "shape", ()))
        if not shape:
            self._bad_input("no batch dimension (a 0-d array or not an array)")
        start, end = self.start_dim % len(shape), self.end_dim % len(shape)
        if start > end:
            self._bad_input(f"shape {shape}, which has no dims {self.start_dim}..{self.end_dim}")
        self._cache = shape
        return x.reshape(shape[:start] + (-1,) + shape[end + 1:])

    def backward(self, dy):
        return dy.reshape(self._last_cache())

    def forward_jvp(self, tx, tangents):
        shape = self._last_cache()
        start, end = self.start_dim % len(shape), self.end_dim % len(shape)
        return None if tx is None else tx.reshape(shape[:start] + (-1,) + shape[end + 1:])

    def backward_jvp(self, dy, tdy, hgrads, grads=None):
        shape = self._last_cache()
        return dy.reshape(shape), tdy.reshape(shape)

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"
