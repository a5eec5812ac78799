"""Forward mode and second order of every op: ``forward_jvp`` against central differences of
``forward``, ``backward_jvp`` against central differences of ``backward``, and both against
PyTorch (``torch.func.jvp`` of the forward and of its vjp: double backward), in float64.

Tolerances: central differences with one Richardson step (error O(h^4), h = 1e-3) agree to
1e-8 relative to the largest tangent; PyTorch agrees to 1e-9. PyTorch refuses BatchNorm
eps = 0 in training mode, so its parity runs at eps = 1e-5; the differences also run at eps = 0.
"""

import numpy as np
import pytest

from oracle import require_torch
from refnet import ops

FD_TOL = 1e-8
TORCH_TOL = 1e-9


def _spec(name, fwd, bwd, fjvp, bjvp, shapes, kwargs=None, eps_torch=None):
    return pytest.param(fwd, bwd, fjvp, bjvp, shapes, kwargs or {}, id=name)


# (name, forward, backward, forward_jvp, backward_jvp, argument shapes (None: absent), kwargs)
OPS = [
    _spec("linear", ops.linear_forward, ops.linear_backward, ops.linear_forward_jvp,
          ops.linear_backward_jvp, [(4, 5), (3, 5), (3,)]),
    _spec("linear-nobias-batch1", ops.linear_forward, ops.linear_backward, ops.linear_forward_jvp,
          ops.linear_backward_jvp, [(1, 3), (2, 3), None]),
    _spec("conv", ops.conv2d_forward, ops.conv2d_backward, ops.conv2d_forward_jvp,
          ops.conv2d_backward_jvp, [(2, 3, 6, 5), (4, 3, 3, 3), (4,)], {"stride": 1, "padding": 1}),
    _spec("conv-stride2-nobias", ops.conv2d_forward, ops.conv2d_backward, ops.conv2d_forward_jvp,
          ops.conv2d_backward_jvp, [(1, 2, 7, 6), (3, 2, 3, 2), None], {"stride": 2, "padding": (0, 1)}),
    _spec("maxpool", ops.maxpool2d_forward, ops.maxpool2d_backward, ops.maxpool2d_forward_jvp,
          ops.maxpool2d_backward_jvp, [("spaced", 2, 3, 6, 6)], {"kernel_size": 2}),
    _spec("maxpool-overlapping", ops.maxpool2d_forward, ops.maxpool2d_backward,
          ops.maxpool2d_forward_jvp, ops.maxpool2d_backward_jvp, [("spaced", 2, 2, 7, 6)],
          {"kernel_size": 3, "stride": 2}),
    _spec("avgpool", ops.avgpool2d_forward, ops.avgpool2d_backward, ops.avgpool2d_forward_jvp,
          ops.avgpool2d_backward_jvp, [(2, 3, 6, 6)], {"kernel_size": 2}),
    _spec("avgpool-overlapping", ops.avgpool2d_forward, ops.avgpool2d_backward,
          ops.avgpool2d_forward_jvp, ops.avgpool2d_backward_jvp, [(1, 2, 7, 6)],
          {"kernel_size": (3, 2), "stride": 1}),
    _spec("relu", ops.relu_forward, ops.relu_backward, ops.relu_forward_jvp, ops.relu_backward_jvp,
          [("spaced", 4, 7)]),
    _spec("relu-4d", ops.relu_forward, ops.relu_backward, ops.relu_forward_jvp, ops.relu_backward_jvp,
          [("spaced", 2, 3, 4, 4)]),
    _spec("batchnorm1d", ops.batchnorm_forward, ops.batchnorm_backward, ops.batchnorm_forward_jvp,
          ops.batchnorm_backward_jvp, [(6, 4), (4,), (4,)], {"eps": 1e-5}),
    _spec("batchnorm1d-eps0", ops.batchnorm_forward, ops.batchnorm_backward, ops.batchnorm_forward_jvp,
          ops.batchnorm_backward_jvp, [(5, 3), (3,), (3,)], {"eps": 0.0}),
    _spec("batchnorm1d-offset", ops.batchnorm_forward, ops.batchnorm_backward, ops.batchnorm_forward_jvp,
          ops.batchnorm_backward_jvp, [("offset", 6, 4), (4,), (4,)], {"eps": 1e-5}),
    _spec("batchnorm2d", ops.batchnorm_forward, ops.batchnorm_backward, ops.batchnorm_forward_jvp,
          ops.batchnorm_backward_jvp, [(3, 2, 4, 3), (2,), (2,)], {"eps": 1e-5}),
    _spec("batchnorm2d-noaffine", ops.batchnorm_forward, ops.batchnorm_backward,
          ops.batchnorm_forward_jvp, ops.batchnorm_backward_jvp, [(2, 3, 3, 3), None, None], {"eps": 1e-5}),
    _spec("batchnorm-eval", ops.batchnorm_eval_forward, ops.batchnorm_eval_backward,
          ops.batchnorm_eval_forward_jvp, ops.batchnorm_eval_backward_jvp,
          [(5, 3), (3,), (3,), (3,), "var3"], {"eps": 1e-5}),
    _spec("batchnorm2d-eval", ops.batchnorm_eval_forward, ops.batchnorm_eval_backward,
          ops.batchnorm_eval_forward_jvp, ops.batchnorm_eval_backward_jvp,
          [(2, 2, 3, 3), (2,), (2,), (2,), "var2"], {"eps": 1e-5}),
    _spec("layernorm", ops.layernorm_forward, ops.layernorm_backward, ops.layernorm_forward_jvp,
          ops.layernorm_backward_jvp, [(4, 6), (6,), (6,)], {"eps": 1e-5}),
    _spec("layernorm-4d-eps0", ops.layernorm_forward, ops.layernorm_backward, ops.layernorm_forward_jvp,
          ops.layernorm_backward_jvp, [(3, 2, 3, 2), (2, 3, 2), (2, 3, 2)], {"eps": 0.0}),
    _spec("layernorm-noaffine", ops.layernorm_forward, ops.layernorm_backward, ops.layernorm_forward_jvp,
          ops.layernorm_backward_jvp, [(3, 5), None, None], {"eps": 1e-5}),
    _spec("weightnorm", ops.weightnorm_forward, ops.weightnorm_backward, ops.weightnorm_forward_jvp,
          ops.weightnorm_backward_jvp, [(4, 5), (4,)]),
    _spec("weightnorm-conv", ops.weightnorm_forward, ops.weightnorm_backward, ops.weightnorm_forward_jvp,
          ops.weightnorm_backward_jvp, [(3, 2, 3, 3), (3,)]),
]


def _make(rng, shapes):
    """Arguments and tangents; a "varC" shape is a positive (C,) variance; a shape starting
    with "offset" is standard normal + 10; one with "spaced" gives distinct values at least 0.1 apart and away from 0 (no kink within
    the finite-difference steps: ReLU and max-pool are piecewise linear)."""
    args = []
    for s in shapes:
        if s is None:
            args.append(None)
        elif isinstance(s, str):
            args.append(rng.uniform(0.5, 2.0, int(s[3:])))
        elif s[0] == "offset":          # |mean| > std: batchnorm's centred (two-pass) branch
            args.append(rng.standard_normal(s[1:]) + 10.0)
        elif s[0] == "spaced":
            size = int(np.prod(s[1:]))
            args.append((rng.permutation(size) - (size - 0.5) / 2).reshape(s[1:]) * 0.1)
        else:
            args.append(rng.standard_normal(s))
    tangents = [None if a is None else rng.standard_normal(a.shape) for a in args]
    return args, tangents


def _moved(args, tangents, h):
    return [None if a is None else a + h * t for a, t in zip(args, tangents)]


def _richardson(f, h=1e-3):
    """d/dh f(h) at 0 from central differences at h and 2h: error O(h^4)."""
    d1 = (f(h) - f(-h)) / (2 * h)
    d2 = (f(2 * h) - f(-2 * h)) / (4 * h)
    return (4 * d1 - d2) / 3


def _tuple(grads):
    """A backward's gradients as a tuple (single-input ops return one array)."""
    return tuple(grads) if isinstance(grads, (tuple, list)) else (grads,)


def _rel_err(got, want):
    scale = max(float(np.abs(want).max()), 1e-300)
    return float(np.abs(got - want).max()) / scale


def _setup(fwd, shapes, kwargs, rng):
    args, tangents = _make(rng, shapes)
    out, cache = fwd(*args, **kwargs)
    dout, tdout = rng.standard_normal(out.shape), rng.standard_normal(out.shape)
    return args, tangents, out, cache, dout, tdout


@pytest.mark.parametrize("fwd, bwd, fjvp, bjvp, shapes, kwargs", OPS)
def test_forward_jvp_matches_central_differences_of_forward(fwd, bwd, fjvp, bjvp, shapes, kwargs, rng):
    args, tangents, out, cache, _, _ = _setup(fwd, shapes, kwargs, rng)
    want = _richardson(lambda h: fwd(*_moved(args, tangents, h), **kwargs)[0])
    assert _rel_err(fjvp(cache, *tangents), want) < FD_TOL


@pytest.mark.parametrize("fwd, bwd, fjvp, bjvp, shapes, kwargs", OPS)
def test_backward_jvp_matches_central_differences_of_backward(fwd, bwd, fjvp, bjvp, shapes, kwargs, rng):
    args, tangents, out, cache, dout, tdout = _setup(fwd, shapes, kwargs, rng)
    got = _tuple(bjvp(dout, tdout, cache, *tangents))
    for i, g in enumerate(got):
        def grad_i(h, i=i):
            return _tuple(bwd(dout + h * tdout, fwd(*_moved(args, tangents, h), **kwargs)[1]))[i]
        if g is None:
            assert args[i] is None and grad_i(0.0) is None
            continue
        assert _rel_err(g, _richardson(grad_i)) < FD_TOL, f"gradient {i}"


@pytest.mark.parametrize("fwd, bwd, fjvp, bjvp, shapes, kwargs", OPS)
def test_a_none_tangent_is_a_zero_tangent(fwd, bwd, fjvp, bjvp, shapes, kwargs, rng):
    args, tangents, out, cache, dout, tdout = _setup(fwd, shapes, kwargs, rng)
    zeros = [None if t is None else np.zeros_like(t) for t in tangents]
    nones = [None] * len(tangents)
    assert np.array_equal(fjvp(cache, *nones), fjvp(cache, *zeros))
    for a, b in zip(_tuple(bjvp(dout, None, cache, *nones)),
                    _tuple(bjvp(dout, np.zeros_like(dout), cache, *zeros))):
        assert (a is None and b is None) or np.allclose(a, b, rtol=0, atol=1e-15)


@pytest.mark.parametrize("fwd, bwd, fjvp, bjvp, shapes, kwargs", OPS)
def test_the_jvps_leave_their_inputs_and_the_cache_untouched(fwd, bwd, fjvp, bjvp, shapes, kwargs, rng):
    args, tangents, out, cache, dout, tdout = _setup(fwd, shapes, kwargs, rng)
    before = [None if t is None else t.copy() for t in tangents] + [dout.copy(), tdout.copy(), out.copy()]
    fjvp(cache, *tangents)
    bjvp(dout, tdout, cache, *tangents)
    fresh_out = fwd(*args, **kwargs)[0]
    for a, b in zip(before, list(tangents) + [dout, tdout, fresh_out]):
        assert (a is None and b is None) or np.array_equal(a, b)
    assert np.array_equal(_tuple(bwd(dout, cache))[0], _tuple(bwd(dout, fwd(*args, **kwargs)[1]))[0])


# --- ReLU and max-pool: zero second derivative, the same routing as the gradient ------------
def test_relu_jvps_follow_the_gradients_mask_at_the_kink():
    x = np.array([[-1.0, 0.0, 2.0]])
    _, cache = ops.relu_forward(x)
    t = np.ones_like(x)
    assert np.array_equal(ops.relu_forward_jvp(cache, t), ops.relu_backward(t, cache))
    assert np.array_equal(ops.relu_backward_jvp(t, t, cache, t), ops.relu_backward(t, cache))


def test_maxpool_forward_jvp_is_the_adjoint_of_its_backward_on_ties(rng):
    x = np.zeros((2, 2, 4, 4))          # every window a tie: the first tap takes it
    x[0, 0, 1, 1] = np.nan              # and a NaN window routes to its NaN
    _, cache = ops.maxpool2d_forward(x, 2)
    tx, dy = rng.standard_normal(x.shape), rng.standard_normal((2, 2, 2, 2))
    ty = ops.maxpool2d_forward_jvp(cache, tx)
    assert np.isclose(np.sum(ty * dy), np.sum(tx * ops.maxpool2d_backward(dy, cache)), rtol=1e-14)
    assert ty[0, 0, 0, 0] == tx[0, 0, 1, 1] and ty[1, 1, 0, 0] == tx[1, 1, 0, 0]


def test_softmax_cross_entropy_jvp_matches_central_differences(rng):
    z, labels = rng.standard_normal((5, 4)), rng.integers(0, 4, 5)
    tz = rng.standard_normal(z.shape)
    tloss, tdz = ops.softmax_cross_entropy_jvp(z, labels, tz)
    want_loss = _richardson(lambda h: ops.softmax_cross_entropy(z + h * tz, labels)[0])
    want_dz = _richardson(lambda h: ops.softmax_cross_entropy(z + h * tz, labels)[1])
    assert abs(float(tloss) - float(want_loss)) < FD_TOL * abs(float(want_loss))
    assert _rel_err(tdz, want_dz) < FD_TOL


def test_softmax_cross_entropy_hessian_is_symmetric_and_psd(rng):
    z, labels = rng.standard_normal((3, 4)), rng.integers(0, 4, 3)
    cols = [ops.softmax_cross_entropy_jvp(z, labels, e.reshape(z.shape))[1].ravel() for e in np.eye(z.size)]
    hess = np.array(cols).T
    assert np.allclose(hess, hess.T, rtol=0, atol=1e-15)
    assert np.linalg.eigvalsh(hess).min() > -1e-15


# --- PyTorch: torch.func.jvp of the forward and of its vjp (double backward) -----------------
def _torch_fn(torch, fwd, kwargs):
    F = torch.nn.functional
    if fwd is ops.linear_forward:
        return lambda x, w, b=None: F.linear(x, w, b)
    if fwd is ops.conv2d_forward:
        return lambda x, w, b=None: F.conv2d(x, w, b, kwargs["stride"], kwargs["padding"])
    if fwd is ops.maxpool2d_forward:
        return lambda x: F.max_pool2d(x, kwargs["kernel_size"], kwargs.get("stride"))
    if fwd is ops.avgpool2d_forward:
        return lambda x: F.avg_pool2d(x, kwargs["kernel_size"], kwargs.get("stride"))
    if fwd is ops.relu_forward:
        return F.relu
    if fwd is ops.batchnorm_forward:
        return lambda x, g=None, b=None: F.batch_norm(x, None, None, g, b, True, 0.0, kwargs["eps"])
    if fwd is ops.batchnorm_eval_forward:
        def bn_eval(x, g, b, mean, var):
            shape = (1, -1) + (1,) * (x.ndim - 2)
            return (x - mean.reshape(shape)) / torch.sqrt(var.reshape(shape) + kwargs["eps"]) \
                * g.reshape(shape) + b.reshape(shape)
        return bn_eval
    if fwd is ops.layernorm_forward:
        return lambda x, g=None, b=None: F.layer_norm(x, x.shape[1:], g, b, kwargs["eps"])
    if fwd is ops.weightnorm_forward:
        def wn(v, g):
            norms = torch.sqrt((v.reshape(v.shape[0], -1) ** 2).sum(1))
            return v * (g / norms).reshape((-1,) + (1,) * (v.ndim - 1))
        return wn
    raise AssertionError(fwd)


@pytest.mark.parametrize("fwd, bwd, fjvp, bjvp, shapes, kwargs", OPS)
def test_jvps_match_pytorch_double_backward(fwd, bwd, fjvp, bjvp, shapes, kwargs, rng):
    torch = require_torch()
    if kwargs.get("eps") == 0.0 and fwd is ops.batchnorm_forward:
        kwargs = dict(kwargs, eps=1e-5)  # PyTorch refuses eps = 0 in training mode
    args, tangents, out, cache, dout, tdout = _setup(fwd, shapes, kwargs, rng)
    present = [i for i, a in enumerate(args) if a is not None]
    fn = _torch_fn(torch, fwd, kwargs)
    t = torch.from_numpy

    def call(*present_args):
        full = [None] * len(args)
        for i, a in zip(present, present_args):
            full[i] = a
        while full and full[-1] is None:
            full.pop()
        return fn(*full)

    primals = tuple(t(args[i]) for i in present)
    tans = tuple(t(tangents[i]) for i in present)
    _, ty = torch.func.jvp(call, primals, tans)
    assert _rel_err(fjvp(cache, *tangents), ty.numpy()) < TORCH_TOL

    def grads(dy, *present_args):
        _, vjp = torch.func.vjp(call, *present_args)
        return vjp(dy)

    _, tgrads = torch.func.jvp(grads, (t(dout),) + primals, (t(tdout),) + tans)
    got = _tuple(bjvp(dout, tdout, cache, *tangents))
    for i, tg in zip(present, tgrads):
        assert _rel_err(got[i], tg.numpy()) < TORCH_TOL, f"gradient {i}"


@pytest.mark.parametrize("c, k, stride, padding", [(1, 3, 1, 1), (3, 3, 1, 1), (8, 3, 1, 1), (8, 3, 2, 1),
                                                   (4, 1, 1, 0), (2, 5, 3, 2), (6, 2, 1, 0)])
def test_conv2d_backward_input_is_the_backwards_dx(c, k, stride, padding, rng):
    """The hvp's dx-only path (both im2col layouts, the flipped-kernel convolution and col2im)."""
    x, w = rng.standard_normal((2, c, 9, 8)), rng.standard_normal((4, c, k, k))
    y, cache = ops.conv2d_forward(x, w, None, stride, padding)
    dy = rng.standard_normal(y.shape)
    from refnet.ops.conv import conv2d_backward_input
    assert np.array_equal(conv2d_backward_input(dy, cache), ops.conv2d_backward(dy, cache)[0])
