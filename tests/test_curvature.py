"""model.hvp and model.gvp (refnet.nn.curvature): against central differences of the
hand-written gradient, against torch.func in float64, and leaving the model as found.

Tolerances: central differences at h = 1e-5 (error ~h^2, and small enough not to cross a
ReLU or max-pool kink) agree to 1e-6 relative to max |H v|; torch.func to 1e-9."""

import numpy as np
import pytest

from oracle import require_torch
from refnet.nn import BatchNorm1d, Linear, ReLU, Sequential, cnn, mlp
from refnet.nn.curvature import gradient

FD_TOL = 1e-6
TORCH_TOL = 1e-9

MODELS = {
    "mlp-bn": lambda: mlp(6, num_classes=3, width=5, norm="bn", rng=0, dtype=np.float64),
    "mlp-ln": lambda: mlp(6, num_classes=3, width=5, norm="ln", rng=0, dtype=np.float64),
    "mlp-wn": lambda: mlp(6, num_classes=3, width=5, norm="wn", rng=0, dtype=np.float64),
    "mlp-none": lambda: mlp(6, num_classes=3, width=5, norm="none", rng=0, dtype=np.float64),
    "mlp-bn-eval": lambda: _eval(mlp(6, num_classes=3, width=5, norm="bn", rng=0, dtype=np.float64)),
    "cnn-bn": lambda: cnn(1, num_classes=3, image_size=8, widths=(3, 4), norm="bn", rng=0, dtype=np.float64),
    "cnn-ln": lambda: cnn(1, num_classes=3, image_size=8, widths=(2,), norm="ln", rng=0, dtype=np.float64),
    "cnn-wn": lambda: cnn(1, num_classes=3, image_size=8, widths=(2,), norm="wn", rng=0, dtype=np.float64),
}


def _eval(model):
    rng = np.random.default_rng(5)
    for _ in range(3):              # running statistics that are not the batch's
        model(rng.standard_normal((8, 6)))
    return model.eval()


def _data(name, rng):
    x = rng.standard_normal((8, 6) if name.startswith("mlp") else (4, 1, 8, 8))
    return x, rng.integers(0, 3, x.shape[0])


def _direction(model, rng):
    return {n: rng.standard_normal(p.shape) for n, p in model.named_parameters()}


def _fd_hvp(model, x, y, v, h=1e-5):
    params = dict(model.named_parameters())

    def moved(step):
        for n, p in params.items():
            p.data += step * v[n]
        try:
            return gradient(model, x, y)
        finally:
            for n, p in params.items():
                p.data -= step * v[n]
    plus, minus = moved(h), moved(-h)
    return {n: (plus[n] - minus[n]) / (2 * h) for n in params}


def _rel_err(got, want):
    scale = max(float(np.abs(w).max()) for w in want.values())
    return max(float(np.abs(got[n] - want[n]).max()) for n in want) / scale


@pytest.mark.parametrize("name", MODELS)
def test_hvp_matches_central_differences_of_the_gradient(name, rng):
    model = MODELS[name]()
    x, y = _data(name, rng)
    v = _direction(model, rng)
    assert _rel_err(model.hvp(x, y, v), _fd_hvp(model, x, y, v)) < FD_TOL


@pytest.mark.parametrize("name", ["mlp-bn", "cnn-bn", "mlp-wn"])
def test_hvp_is_symmetric(name, rng):
    model = MODELS[name]()
    x, y = _data(name, rng)
    u, v = _direction(model, rng), _direction(model, rng)
    hu, hv = model.hvp(x, y, u), model.hvp(x, y, v)
    uhv = sum(float(np.sum(u[n] * hv[n])) for n in u)
    vhu = sum(float(np.sum(v[n] * hu[n])) for n in u)
    assert abs(uhv - vhu) < 1e-12 * max(abs(uhv), 1.0)


@pytest.mark.parametrize("name", ["mlp-bn", "cnn-bn"])
def test_gvp_is_symmetric_positive_semidefinite(name, rng):
    model = MODELS[name]()
    x, y = _data(name, rng)
    u, v = _direction(model, rng), _direction(model, rng)
    gu, gv = model.gvp(x, y, u), model.gvp(x, y, v)
    ugv = sum(float(np.sum(u[n] * gv[n])) for n in u)
    assert abs(ugv - sum(float(np.sum(v[n] * gu[n])) for n in u)) < 1e-12 * max(abs(ugv), 1.0)
    assert sum(float(np.sum(v[n] * gv[n])) for n in v) >= 0


def test_gvp_equals_hvp_for_a_linear_model(rng):
    """With logits linear in the parameters, H = J^T H_z J exactly."""
    model = Sequential(Linear(4, 3, rng=np.random.default_rng(0), dtype=np.float64))
    x, y = rng.standard_normal((5, 4)), rng.integers(0, 3, 5)
    v = _direction(model, rng)
    hv, gv = model.hvp(x, y, v), model.gvp(x, y, v)
    assert all(np.allclose(hv[n], gv[n], rtol=1e-12, atol=1e-15) for n in hv)


@pytest.mark.parametrize("product", ["hvp", "gvp"])
@pytest.mark.parametrize("name", ["mlp-bn", "cnn-bn"])
def test_products_leave_buffers_grads_and_mode_as_found(name, product, rng):
    model = MODELS[name]()
    x, y = _data(name, rng)
    for p in model.parameters():
        p.grad[...] = rng.standard_normal(p.shape)
    before = model.state_dict()
    grads = [p.grad.copy() for p in model.parameters()]
    getattr(model, product)(x, y, _direction(model, rng))
    after = model.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before)
    assert all(np.array_equal(g, p.grad) for g, p in zip(grads, model.parameters()))
    assert model.training


def test_a_missing_name_is_a_zero_component(rng):
    model = MODELS["mlp-bn"]()
    x, y = _data("mlp-bn", rng)
    v = _direction(model, rng)
    partial = {"1.weight": v["1.weight"]}
    zeros = {n: (a if n == "1.weight" else np.zeros_like(a)) for n, a in v.items()}
    got, want = model.hvp(x, y, partial), model.hvp(x, y, zeros)
    assert set(got) == set(v) and all(np.allclose(got[n], want[n], rtol=0, atol=1e-15) for n in v)


@pytest.mark.parametrize("v, error, match", [
    ({"nope": np.zeros(3)}, KeyError, "unknown parameter"),
    ({"1.weight": np.zeros(3)}, ValueError, r"v\['1.weight'\].*shape"),
    ({"1.weight": np.zeros((5, 6), dtype=np.float32)}, TypeError, "dtype"),
    ([np.zeros(3)], TypeError, "expected a dict"),
])
def test_bad_directions_are_named(v, error, match, rng):
    model = MODELS["mlp-bn"]()
    x, y = _data("mlp-bn", rng)
    with pytest.raises(error, match=match):
        model.hvp(x, y, v)


# --- PyTorch: torch.func on a functional twin of the refnet model ---------------------------
def _torch_twin(torch, model):
    """f(params, x): the refnet Sequential as torch functional calls on a {name: tensor} dict."""
    from refnet.nn import AvgPool2d, BatchNorm2d, Conv2d, Flatten, LayerNorm, MaxPool2d, WeightNorm
    F = torch.nn.functional

    def apply(layer, prefix, p, x):
        def get(name):
            return p.get(f"{prefix}.{name}")
        if isinstance(layer, WeightNorm):
            v, g = get("weight_v"), get("weight_g")
            w = v * (g / torch.sqrt((v.reshape(v.shape[0], -1) ** 2).sum(1))).reshape((-1,) + (1,) * (v.ndim - 1))
            inner = layer.module
            if isinstance(inner, Linear):
                return F.linear(x, w, get("bias"))
            return F.conv2d(x, w, get("bias"), inner.stride, inner.padding)
        if isinstance(layer, Linear):
            return F.linear(x, get("weight"), get("bias"))
        if isinstance(layer, Conv2d):
            return F.conv2d(x, get("weight"), get("bias"), layer.stride, layer.padding)
        if isinstance(layer, (BatchNorm1d, BatchNorm2d)):
            if layer.training:
                return F.batch_norm(x, None, None, get("weight"), get("bias"), True, 0.0, layer.eps)
            return F.batch_norm(x, torch.from_numpy(layer.running_mean), torch.from_numpy(layer.running_var),
                                get("weight"), get("bias"), False, 0.0, layer.eps)
        if isinstance(layer, LayerNorm):
            return F.layer_norm(x, layer.normalized_shape, get("weight"), get("bias"), layer.eps)
        if isinstance(layer, ReLU):
            return F.relu(x)
        if isinstance(layer, MaxPool2d):
            return F.max_pool2d(x, layer.kernel_size, layer.stride)
        if isinstance(layer, AvgPool2d):
            return F.avg_pool2d(x, layer.kernel_size, layer.stride)
        if isinstance(layer, Flatten):
            return torch.flatten(x, layer.start_dim, layer.end_dim)
        raise AssertionError(type(layer))

    def f(p, x):
        for i, layer in enumerate(model):
            x = apply(layer, str(i), p, x)
        return x
    return f


def _torch_products(torch, model, x, y, v):
    f = _torch_twin(torch, model)
    params = {n: torch.from_numpy(p.data.copy()) for n, p in model.named_parameters()}
    tv = {n: torch.from_numpy(v[n]) for n in params}
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)

    def loss(p):
        return torch.nn.functional.cross_entropy(f(p, tx), ty)
    _, hv = torch.func.jvp(torch.func.grad(loss), (params,), (tv,))
    z, jv = torch.func.jvp(lambda p: f(p, tx), (params,), (tv,))
    _, hz_jv = torch.func.jvp(torch.func.grad(lambda z: torch.nn.functional.cross_entropy(z, ty)), (z,), (jv,))
    _, vjp = torch.func.vjp(lambda p: f(p, tx), params)
    gv = vjp(hz_jv)[0]
    return ({n: t.numpy() for n, t in hv.items()}, {n: t.numpy() for n, t in gv.items()})


@pytest.mark.parametrize("name", MODELS)
def test_hvp_and_gvp_match_torch_func(name, rng):
    torch = require_torch()
    model = MODELS[name]()
    x, y = _data(name, rng)
    v = _direction(model, rng)
    want_h, want_g = _torch_products(torch, model, x, y, v)
    assert _rel_err(model.hvp(x, y, v), want_h) < TORCH_TOL
    assert _rel_err(model.gvp(x, y, v), want_g) < TORCH_TOL


# --- Lanczos: the top eigenvalue of one layer's Hessian block ----------------------------------
def _dense_block(model, x, y, name, product="hvp"):
    p = dict(model.named_parameters())[name]
    cols = []
    for e in np.eye(p.data.size):
        cols.append(getattr(model, product)(x, y, {name: e.reshape(p.shape)})[name].reshape(-1))
    return np.array(cols).T


@pytest.mark.parametrize("product", ["hvp", "gvp"])
@pytest.mark.parametrize("name, layer", [("mlp-bn", "1.weight"), ("mlp-bn", "4.weight"), ("cnn-bn", "0.weight")])
def test_lanczos_top_eigenvalues_match_the_dense_block(name, layer, product, rng):
    from refnet.nn.curvature import top_eigenvalues
    model = MODELS[name]()
    x, y = _data(name, rng)
    dense = _dense_block(model, x, y, layer, product)
    assert np.abs(dense - dense.T).max() < 1e-12 * np.abs(dense).max()
    want = np.sort(np.linalg.eigvalsh((dense + dense.T) / 2))[::-1][:2]
    got = top_eigenvalues(model, x, y, layer, k=2, product=product)
    assert np.allclose(got, want, rtol=1e-9, atol=1e-12 * abs(want[0]))


def test_lanczos_sharpness_scales_as_one_over_the_squared_norm(rng):
    """eps = 0: every unit of a layer before BN scaled by c scales its Hessian block by 1/c^2."""
    from refnet.nn.curvature import top_eigenvalues
    model = MODELS["mlp-bn"]()
    for m in model.modules():
        if isinstance(m, BatchNorm1d):
            m.eps = 0.0
    x, y = _data("mlp-bn", rng)
    before = top_eigenvalues(model, x, y, "1.weight")[0]
    dict(model.named_parameters())["1.weight"].data *= 0.1
    after = top_eigenvalues(model, x, y, "1.weight")[0]
    assert after == pytest.approx(before * 100, rel=1e-8)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"name": "nope"}, KeyError, "name"), ({"name": "1.weight", "k": 0}, ValueError, "k"),
    ({"name": "1.weight", "product": "fisher"}, ValueError, "product")])
def test_lanczos_bad_arguments_are_named(kwargs, error, match, rng):
    from refnet.nn.curvature import top_eigenvalues
    model = MODELS["mlp-bn"]()
    x, y = _data("mlp-bn", rng)
    with pytest.raises(error, match=match):
        top_eigenvalues(model, x, y, **kwargs)
