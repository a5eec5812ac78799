"""Normalization layers with PyTorch's names and defaults: BatchNorm1d, BatchNorm2d,
LayerNorm, and WeightNorm(module).

gamma/beta are ``weight``/``bias`` and, like WeightNorm's ``weight_g``, get ``decay=False``
(no L2 / weight decay, as in the paper). BatchNorm's running statistics are buffers
(``running_mean``, ``running_var``, ``num_batches_tracked``), saved in ``state_dict()``.

``forward_jvp`` / ``backward_jvp`` (the Module contract) differentiate the mode the last
forward ran in: batch statistics (their dependence on x included) or the running ones
(constants: they are buffers, not parameters).
"""

import numpy as np

from refnet import backend
from refnet.nn.module import Module, Parameter, add_into
from refnet.ops._checks import check_module_dtype
from refnet.ops.batchnorm import (batchnorm_backward, batchnorm_backward_jvp, batchnorm_eval_backward,
                                  batchnorm_eval_backward_jvp, batchnorm_eval_forward,
                                  batchnorm_eval_forward_jvp, batchnorm_forward, batchnorm_forward_jvp)
from refnet.ops.layernorm import (layernorm_backward, layernorm_backward_jvp, layernorm_forward,
                                  layernorm_forward_jvp)
from refnet.ops.weightnorm import (weightnorm_backward, weightnorm_backward_jvp, weightnorm_forward,
                                   weightnorm_forward_jvp)

# The JVPs of each backward a BatchNorm may have cached (training or eval statistics).
_BN_JVPS = {batchnorm_backward: (batchnorm_forward_jvp, batchnorm_backward_jvp),
            batchnorm_eval_backward: (batchnorm_eval_forward_jvp, batchnorm_eval_backward_jvp)}


def _positive_int(where, name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{where}({name}): got {value!r}, expected a positive integer")
    return int(value)


def _nonneg_float(where, name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not value >= 0:
        raise ValueError(f"{where}({name}): got {value!r}, expected a number >= 0")
    return float(value)


def _array(a, dtype):
    return backend.to_device(np.asarray(a, dtype=dtype))


def _no_cache(layer):
    return RuntimeError(f"{layer!r}.backward: called before forward")


def _collect(params, grads, tgrads, hgrads, grads_out):
    for p, g, tg in zip(params, grads, tgrads):
        if p is not None:
            add_into(hgrads, p, tg)
            if grads_out is not None:
                add_into(grads_out, p, g)


class _BatchNorm(Module):
    """Batch normalization over every axis but the channel axis 1 (see ``refnet.ops.batchnorm``).

    Training mode normalizes with the batch mean and the *biased* batch variance, and
    updates ``running_mean``/``running_var`` with ``(1 - momentum) * running + momentum * batch``,
    using the *unbiased* batch variance (times m/(m-1), m values per channel), as PyTorch
    documents. ``momentum=None`` gives the cumulative average (factor 1/num_batches_tracked).
    Eval mode normalizes with the running statistics (an affine map, with its own backward);
    with ``track_running_stats=False`` batch statistics are used in both modes.
    ``affine=False``: no gamma/beta parameters (a fully scale-invariant layer).
    ``rng`` is accepted for a uniform constructor signature; initialization is deterministic
    (gamma = 1, beta = 0).
    """

    _ranks = ()
    _layout = ""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True,
                 dtype=np.float32, rng=None):
        super().__init__()
        where = type(self).__name__
        self.num_features = _positive_int(where, "num_features", num_features)
        self.eps = _nonneg_float(where, "eps", eps)
        if momentum is not None and not 0 <= _nonneg_float(where, "momentum", momentum) <= 1:
            raise ValueError(f"{where}(momentum): got {momentum!r}, expected None or a number in [0, 1]")
        self.momentum = None if momentum is None else float(momentum)
        self.affine = bool(affine)
        self.track_running_stats = bool(track_running_stats)
        c = self.num_features
        self.weight = Parameter(_array(np.ones(c), dtype), decay=False) if self.affine else None
        self.bias = Parameter(_array(np.zeros(c), dtype), decay=False) if self.affine else None
        if self.track_running_stats:
            self.register_buffer("running_mean", _array(np.zeros(c), dtype))
            self.register_buffer("running_var", _array(np.ones(c), dtype))
            self.register_buffer("num_batches_tracked", _array(0, np.int64))
        self._cache = None

    def _check_input(self, x):
        if not hasattr(x, "ndim") or x.ndim not in self._ranks:
            raise ValueError(f"{self!r}: expected a {self._layout} input, got "
                             f"{'shape ' + str(tuple(x.shape)) if hasattr(x, 'shape') else type(x).__name__}")
        if x.shape[1] != self.num_features:
            raise ValueError(f"{self!r}: input has {x.shape[1]} channels (shape {tuple(x.shape)}), "
                             f"expected num_features={self.num_features} along axis 1")

    def forward(self, x):
        self._check_input(x)
        check_module_dtype(self, x, [getattr(self, "running_mean", None)] + [p.data for p in self.parameters()])
        gamma, beta = (self.weight.data, self.bias.data) if self.affine else (None, None)
        if self.training or not self.track_running_stats:
            m = x.size // x.shape[1]
            if m < 2:
                raise ValueError(f"{self!r}: Expected more than 1 value per channel when training, "
                                 f"got input of shape {tuple(x.shape)}")
            y, cache = batchnorm_forward(x, gamma, beta, self.eps)
            if self.training and self.track_running_stats:
                self._update_running_stats(cache["mean"], cache["var"], m)
            self._cache = (batchnorm_backward, cache)
        else:
            y, cache = batchnorm_eval_forward(x, gamma, beta, self.running_mean, self.running_var, self.eps)
            self._cache = (batchnorm_eval_backward, cache)
        return y

    def _update_running_stats(self, mean, biased_var, m):
        self.num_batches_tracked += 1
        f = self.momentum
        if f is None:
            f = 1.0 / backend.scalar(self.num_batches_tracked)
        self.running_mean *= 1 - f
        self.running_mean += f * mean
        self.running_var *= 1 - f
        self.running_var += (f * m / (m - 1)) * biased_var

    def backward(self, dy):
        if self._cache is None:
            raise _no_cache(self)
        backward, cache = self._cache
        dx, dgamma, dbeta = backward(dy, cache)[:3]
        if self.affine:
            self.weight.grad += dgamma
            self.bias.grad += dbeta
        return dx

    def _affine_params(self):
        return (self.weight, self.bias) if self.affine else (None, None)

    def forward_jvp(self, tx, tangents):
        if self._cache is None:
            raise _no_cache(self)
        backward, cache = self._cache
        ts = [None if p is None else tangents.get(p) for p in self._affine_params()]
        self._jvp = (tx, ts)
        return _BN_JVPS[backward][0](cache, tx, *ts)

    def backward_jvp(self, dy, tdy, hgrads, grads=None):
        if getattr(self, "_jvp", None) is None:
            raise RuntimeError(f"{self!r}.backward_jvp: called before forward_jvp")
        backward, cache = self._cache
        tx, ts = self._jvp
        g = backward(dy, cache)
        tg = _BN_JVPS[backward][1](dy, tdy, cache, tx, *ts)
        _collect(self._affine_params(), g[1:3], tg[1:3], hgrads, grads)
        return g[0], tg[0]

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """BatchNorm over (N, C) or (N, C, L) inputs, statistics per channel C."""
    _ranks = (2, 3)
    _layout = "2-D (N, C) or 3-D (N, C, L)"


class BatchNorm2d(_BatchNorm):
    """BatchNorm over (N, C, H, W) inputs, statistics per channel C over N, H and W."""
    _ranks = (4,)
    _layout = "4-D (N, C, H, W)"


class LayerNorm(Module):
    """Layer normalization over the trailing ``normalized_shape`` axes, as in PyTorch.

    An input (*B, *normalized_shape) is normalized per leading index over the trailing
    axes (``refnet.ops.layernorm`` with the leading axes flattened into one batch axis).
    ``weight``/``bias`` have shape ``normalized_shape``; ``elementwise_affine=False`` drops
    both, ``bias=False`` only beta.
    """

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True,
                 dtype=np.float32, rng=None):
        super().__init__()
        shape = (normalized_shape,) if isinstance(normalized_shape, (int, np.integer)) else normalized_shape
        try:
            shape = tuple(shape)
        except TypeError:
            raise ValueError(f"LayerNorm(normalized_shape): got {normalized_shape!r}, "
                             f"expected a positive int or a tuple of them") from None
        self.normalized_shape = tuple(_positive_int("LayerNorm", "normalized_shape", s) for s in shape)
        if not self.normalized_shape:
            raise ValueError("LayerNorm(normalized_shape): got (), expected at least one axis")
        self.eps = _nonneg_float("LayerNorm", "eps", eps)
        self.elementwise_affine = bool(elementwise_affine)
        has_bias = self.elementwise_affine and bool(bias)
        ns = self.normalized_shape
        self.weight = Parameter(_array(np.ones(ns), dtype), decay=False) if self.elementwise_affine else None
        self.bias = Parameter(_array(np.zeros(ns), dtype), decay=False) if has_bias else None
        self._cache = None

    def forward(self, x):
        ns = self.normalized_shape
        k = len(ns)
        if not hasattr(x, "shape") or x.ndim < k or tuple(x.shape[x.ndim - k:]) != ns:
            raise ValueError(f"{self!r}: input of shape {tuple(getattr(x, 'shape', ()))} does not end "
                             f"with normalized_shape {ns}")
        check_module_dtype(self, x, [p.data for p in self.parameters()])
        gamma = None if self.weight is None else self.weight.data
        beta = None if self.bias is None else self.bias.data
        y, cache = layernorm_forward(x.reshape((-1,) + ns), gamma, beta, self.eps)
        self._cache = (cache, x.shape)
        return y.reshape(x.shape)

    def backward(self, dy):
        if self._cache is None:
            raise _no_cache(self)
        cache, shape = self._cache
        if tuple(dy.shape) != tuple(shape):
            raise ValueError(f"{self!r}.backward(dy): got shape {tuple(dy.shape)}, expected {tuple(shape)}")
        dx, dgamma, dbeta = layernorm_backward(dy.reshape((-1,) + self.normalized_shape), cache)
        if self.weight is not None:
            self.weight.grad += dgamma
        if self.bias is not None:
            self.bias.grad += dbeta
        return dx.reshape(shape)

    def forward_jvp(self, tx, tangents):
        if self._cache is None:
            raise _no_cache(self)
        cache, shape = self._cache
        ts = [None if p is None else tangents.get(p) for p in (self.weight, self.bias)]
        self._jvp = (tx, ts)
        flat = None if tx is None else tx.reshape((-1,) + self.normalized_shape)
        return layernorm_forward_jvp(cache, flat, *ts).reshape(shape)

    def backward_jvp(self, dy, tdy, hgrads, grads=None):
        if getattr(self, "_jvp", None) is None:
            raise RuntimeError(f"{self!r}.backward_jvp: called before forward_jvp")
        cache, shape = self._cache
        tx, ts = self._jvp
        flat = (-1,) + self.normalized_shape
        g = layernorm_backward(dy.reshape(flat), cache)
        tg = layernorm_backward_jvp(dy.reshape(flat), tdy.reshape(flat), cache,
                                    None if tx is None else tx.reshape(flat), *ts)
        _collect((self.weight, self.bias), g[1:], tg[1:], hgrads, grads)
        return g[0].reshape(shape), tg[0].reshape(shape)

    def extra_repr(self):
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"


class WeightNorm(Module):
    """``WeightNorm(layer)``: ``layer``'s weight becomes ``g * v / ||v||`` (norm per output unit).

    Works for any module with a ``weight`` Parameter of rank >= 2 along whose axis 0 the
    output units lie (Linear (out, in), Conv2d (F, C, KH, KW)). Registration, chosen so that
    ``named_parameters()`` gives the names ``torch.nn.utils.weight_norm`` gives, in its order:

        bias       the wrapped layer's bias (the same Parameter object), if it has one
        weight_g   g, shape (out,) (PyTorch keeps (out, 1, ...)), decay=False, initialized
                   to ||weight|| per unit so that the wrapped layer computes the same function
        weight_v   v, the weight's shape, initialized to the weight, decay as the weight's

    Inside a Sequential they read "0.bias", "0.weight_g", "0.weight_v". The wrapped layer is
    kept as ``self.module`` but not registered as a submodule (that would list its
    ``weight`` and ``bias`` a second time); its ``weight.data`` is overwritten with ``w``
    at every forward. ``weight_v`` is scale-invariant per unit: ``scale_group = "unit"``
    (set by ``mark_scale_invariant``).
    """

    def __init__(self, module):
        super().__init__()
        weight = getattr(module, "weight", None)
        if isinstance(module, WeightNorm) or not isinstance(module, Module) or \
                not isinstance(weight, Parameter) or weight.data.ndim < 2:
            raise TypeError(f"WeightNorm(module): got {type(module).__name__}, expected a module with a "
                            f"weight of rank >= 2 (out, ...), such as Linear or Conv2d")
        object.__setattr__(self, "module", module)
        v = weight.data.copy()
        xp = backend.array_module(v)
        g = xp.sqrt((v.reshape(v.shape[0], -1) ** 2).sum(axis=1))
        bias = getattr(module, "bias", None)
        if isinstance(bias, Parameter):
            self.bias = bias
        self.weight_g = Parameter(g, decay=False)
        self.weight_v = Parameter(v, decay=weight.decay)
        self._cache = None

    def forward(self, x):
        check_module_dtype(self, x, [self.weight_v.data])
        w, self._cache = weightnorm_forward(self.weight_v.data, self.weight_g.data)
        self.module.weight.data = w
        return self.module(x)

    def backward(self, dy):
        if self._cache is None:
            raise _no_cache(self)
        inner = self.module.weight
        inner.grad = backend.array_module(inner.data).zeros_like(inner.data)
        dx = self.module.backward(dy)  # dL/dw into inner.grad, dL/dbias into the shared bias
        dv, dg = weightnorm_backward(inner.grad, self._cache)
        self.weight_v.grad += dv
        self.weight_g.grad += dg
        return dx

    def forward_jvp(self, tx, tangents):
        if self._cache is None:
            raise _no_cache(self)
        tv, tg = tangents.get(self.weight_v), tangents.get(self.weight_g)
        self._jvp = (tv, tg)
        inner = dict(tangents)
        inner[self.module.weight] = weightnorm_forward_jvp(self._cache, tv, tg)
        return self.module.forward_jvp(tx, inner)

    def backward_jvp(self, dy, tdy, hgrads, grads=None):
        if getattr(self, "_jvp", None) is None:
            raise RuntimeError(f"{self!r}.backward_jvp: called before forward_jvp")
        tv, tg = self._jvp
        inner_h, inner_g = {}, {}
        dx, tdx = self.module.backward_jvp(dy, tdy, inner_h, inner_g)
        weight = self.module.weight
        dw, tdw = inner_g.pop(weight), inner_h.pop(weight)
        for p, t in inner_h.items():          # the shared bias
            add_into(hgrads, p, t)
            if grads is not None:
                add_into(grads, p, inner_g[p])
        _collect((self.weight_v, self.weight_g), weightnorm_backward(dw, self._cache),
                 weightnorm_backward_jvp(dw, tdw, self._cache, tv, tg), hgrads, grads)
        return dx, tdx

    def train(self, mode=True):
        super().train(mode)
        self.module.train(mode)
        return self

    def __repr__(self):
        return f"WeightNorm({self.module!r})"
