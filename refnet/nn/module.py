"""Parameter, Module and Sequential: the few lines of bookkeeping every layer shares.

A module is a forward and a backward written by hand:

    y = layer(x)          # forward: computes y, keeps what backward needs in self._cache
    dx = layer.backward(dy)  # backward: returns dL/dx and ADDS dL/dparam into param.grad
    layer.backward_params(dy)  # the same without dL/dx, for a layer whose input is data

Parameters, buffers and submodules are registered by plain attribute assignment, as in
PyTorch, so that ``named_parameters()`` yields PyTorch's dotted names ("0.weight").
"""

from collections import OrderedDict

import numpy as np

from refnet import backend


class Parameter:
    """A trainable array with its gradient.

    data: the array (numpy or cupy).
    grad: dL/data, same shape and dtype, accumulated by ``Module.backward``.
    decay: whether L2 / weight decay applies (weights yes; biases, gamma, beta, WN's g no,
        as in the paper).
    scale_group: ``None``; ``"unit"`` if the loss is invariant to scaling each output unit
        (index along axis 0) on its own (a weight before BatchNorm, WeightNorm's v);
        ``"tensor"`` if only the whole tensor's scale is irrelevant (a weight before LayerNorm).
        Set by ``refnet.invariance.mark_scale_invariant``.
    requires_grad: False excludes it from ``refnet.nn.models.trainable_parameters`` (a frozen
        head); its gradient is still computed, as the backward pass needs it anyway.
    """

    def __init__(self, data, decay=True, scale_group=None, requires_grad=True):
        if scale_group not in (None, "unit", "tensor"):
            raise ValueError(
                f"Parameter(scale_group): got {scale_group!r}, expected None, 'unit' or 'tensor'")
        xp = backend.array_module(data)
        self.data = data if backend.is_cupy_array(data) else np.asarray(data)
        self.grad = xp.zeros_like(self.data)
        self.decay = bool(decay)
        self.scale_group = scale_group
        self.requires_grad = bool(requires_grad)

    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    def zero_grad(self):
        self.grad[...] = 0

    def __repr__(self):
        return (f"Parameter(shape={tuple(self.shape)}, dtype={self.dtype}, decay={self.decay}, "
                f"scale_group={self.scale_group!r}, requires_grad={self.requires_grad})")


class Module:
    """Base class: registers parameters, buffers and submodules; train/eval; state dicts.

    Subclasses implement ``forward(x)`` and ``backward(dy) -> dx``. Backward must be
    called after the forward it differentiates; it accumulates into ``param.grad``.
    """

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise RuntimeError(f"{type(self).__name__}: call Module.__init__() before assigning {name!r}")
        if name in self._buffers:  # re-assigning a buffer keeps it a buffer
            object.__setattr__(self, name, value)
            return
        for table in (self._parameters, self._modules):
            table.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def register_buffer(self, name, array):
        """A non-trainable array saved in ``state_dict`` (e.g. BatchNorm's running mean)."""
        object.__setattr__(self, name, array)
        self._buffers[name] = None  # the value lives in the attribute; this keeps the order

    # --- computing ---------------------------------------------------------------
    def forward(self, x):
        raise NotImplementedError(f"{type(self).__name__}.forward")

    def backward(self, dy):
        raise NotImplementedError(f"{type(self).__name__}.backward")

    def backward_params(self, dy):
        """``backward(dy)`` for a module whose input needs no gradient (data): only ADDS
        dL/dparam into param.grad; returns None. A module may skip computing dL/dx here
        (Linear and Conv2d do; PyTorch also skips it for an input without requires_grad),
        but never where a subclass overrides ``backward``: that one then runs, so the Trainer
        trains on the gradients a gradient check of ``backward`` saw."""
        self.backward(dy)

    def __call__(self, x):
        return self.forward(x)

    # --- forward mode and second order (refnet.nn.curvature) -------------------------
    def forward_jvp(self, tx, tangents):
        """After ``forward(x)``: the tangent of the output along ``tx`` (the input's tangent,
        None for zero) and ``tangents``, a dict {Parameter: tangent array} (a parameter not in
        it has a zero tangent). Keeps what ``backward_jvp`` needs. Returns None for a zero
        tangent (tx None and no parameter in ``tangents``), computing nothing."""
        raise NotImplementedError(f"{type(self).__name__}.forward_jvp")

    def backward_jvp(self, dy, tdy, hgrads, grads=None):
        """After ``forward_jvp``: returns ``(dx, tdx)``, the input's gradient and its tangent,
        and ADDS the tangent of each parameter's gradient into ``hgrads[param]`` (and, when
        ``grads`` is a dict, the gradient itself into ``grads[param]``). ``.grad`` is not touched."""
        raise NotImplementedError(f"{type(self).__name__}.backward_jvp")

    def hvp(self, x, y, v):
        """H v for the mean softmax cross-entropy of ``self(x)`` against labels ``y``:
        ``v`` a dict {parameter name: array} (a missing name is a zero component); returns
        {name: (H v)[name]} for every parameter name (``refnet.nn.curvature.hvp``). Buffers
        and ``.grad`` are left as found."""
        from refnet.nn.curvature import hvp
        return hvp(self, x, y, v)

    def gvp(self, x, y, v):
        """The Gauss-Newton product G v = J^T H_L J v beside ``hvp`` (``refnet.nn.curvature.gvp``)."""
        from refnet.nn.curvature import gvp
        return gvp(self, x, y, v)

    # --- walking the tree ----------------------------------------------------------
    def named_modules(self, prefix=""):
        yield prefix, self
        for name, child in self._modules.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self):
        return [m for _, m in self.named_modules()]

    def children(self):
        return list(self._modules.values())

    def named_parameters(self, prefix=""):
        for mod_name, mod in self.named_modules(prefix):
            for name, p in mod._parameters.items():
                yield (f"{mod_name}.{name}" if mod_name else name), p

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def named_buffers(self, prefix=""):
        for mod_name, mod in self.named_modules(prefix):
            for name in mod._buffers:
                yield (f"{mod_name}.{name}" if mod_name else name), getattr(mod, name)

    def zero_grad(self):
        for p in self.parameters():
            p.zero_grad()

    def train(self, mode=True):
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self):
        return self.train(False)

    # --- state ---------------------------------------------------------------------
    def state_dict(self):
        """Ordered ``{dotted name: array}`` of parameters then buffers (arrays are copies)."""
        state = OrderedDict()
        for name, p in self.named_parameters():
            state[name] = p.data.copy()
        for name, b in self.named_buffers():
            state[name] = b.copy()
        return state

    def load_state_dict(self, state):
        """Copy arrays from ``state`` into this module; keys and shapes must match exactly.
        Every array stays where it is (NumPy or CuPy) with its dtype: a state read from a
        file (NumPy) loads into a module on the GPU, buffers included."""
        own = self.state_dict()
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        if missing or unexpected:
            raise KeyError(f"load_state_dict(state): missing keys {missing}, unexpected keys {unexpected}")
        for k, v in state.items():
            if tuple(v.shape) != tuple(own[k].shape):
                raise ValueError(f"load_state_dict(state): {k!r} has shape {tuple(v.shape)}, "
                                 f"expected {tuple(own[k].shape)}")
        params = dict(self.named_parameters())
        for mod_name, mod in self.named_modules():
            for name in mod._buffers:
                key = f"{mod_name}.{name}" if mod_name else name
                old = getattr(mod, name)  # its own device: a module may have no parameters to ask
                object.__setattr__(mod, name, _like(state[key], old).astype(old.dtype, copy=True))
        for k, p in params.items():
            p.data[...] = _like(state[k], p.data).astype(p.data.dtype, copy=False)
        return self

    def to(self, device=None, dtype=None):
        """Move every parameter and buffer to ``device`` ("numpy"/"cupy") and/or cast to ``dtype``."""
        for mod in self.modules():
            for p in mod._parameters.values():
                p.data = _convert(p.data, device, dtype)
                p.grad = backend.array_module(p.data).zeros_like(p.data)
            for name in mod._buffers:
                object.__setattr__(mod, name, _convert(getattr(mod, name), device, dtype))
        return self

    def double(self):
        return self.to(dtype=np.float64)

    def float(self):
        return self.to(dtype=np.float32)

    def extra_repr(self):
        return ""

    def __repr__(self):
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        if self._modules:
            for name, m in self._modules.items():
                child = repr(m).replace("\n", "\n  ")
                lines.append(f"  ({name}): {child}")
            return "\n".join(lines) + "\n)"
        return lines[0] + ")"


def _like(value, array):
    """``value`` on the device of ``array`` (NumPy or CuPy)."""
    return backend.to_device(value, "cupy" if backend.is_cupy_array(array) else "numpy")


def _convert(a, device, dtype):
    if device is not None:
        a = backend.to_device(a, device)
    if dtype is not None and a.dtype.kind == "f":  # counters (BN's num_batches_tracked) stay ints
        a = a.astype(dtype)
    return a


class Sequential(Module):
    """Modules applied in order; backward runs them in reverse. Children are named "0", "1", ..."""

    def __init__(self, *layers):
        super().__init__()
        for i, layer in enumerate(layers):
            if not isinstance(layer, Module):
                raise TypeError(f"Sequential(layers[{i}]): got {type(layer).__name__}, expected a Module")
            setattr(self, str(i), layer)

    def __len__(self):
        return len(self._modules)

    def __getitem__(self, i):
        return list(self._modules.values())[i]

    def __iter__(self):
        return iter(self._modules.values())

    def forward(self, x):
        for layer in self._modules.values():
            x = layer(x)
        return x

    def backward(self, dy):
        for layer in reversed(self._modules.values()):
            dy = layer.backward(dy)
        return dy

    def backward_params(self, dy):
        # The layers before the first one with parameters need no backward at all (nothing to
        # accumulate, and their input is data: an MLP's Flatten), and that one no dL/dx.
        if type(self).backward is not Sequential.backward:  # a subclass's own backward rules
            self.backward(dy)
            return
        layers = list(self._modules.values())
        first = next((i for i, layer in enumerate(layers) if list(layer.parameters())), None)
        if first is None:
            return
        for layer in reversed(layers[first + 1:]):
            dy = layer.backward(dy)
        layers[first].backward_params(dy)

    def forward_jvp(self, tx, tangents):
        for layer in self._modules.values():
            tx = layer.forward_jvp(tx, tangents)
        return tx

    def backward_jvp(self, dy, tdy, hgrads, grads=None):
        for layer in reversed(self._modules.values()):
            dy, tdy = layer.backward_jvp(dy, tdy, hgrads, grads)
        return dy, tdy


def add_into(table, param, value):
    """``table[param] += value`` for a dict keyed by Parameter (a new entry when absent)."""
    table[param] = value if param not in table else table[param] + value
