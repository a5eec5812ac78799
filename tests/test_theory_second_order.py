"""theory/second_order.py's identities on real refnet networks, with refnet's hand-written
Hessian-vector products (float64).

A BatchNorm MLP (16-12-12-3), a BatchNorm CNN (two conv blocks on 4x4 images) and a
LayerNorm MLP (a "tensor" group) on a seeded synthetic problem, one batch of 32. Per scale
group G (one unit before BN, the whole tensor before LN):

    H(w) [w_G, 0] = [-g_G, 0]                         to EXACT at eps = 0
    H(c w_G) v = H(w) v / c^2 on G, / c elsewhere     (v supported on G), to EXACT at eps = 0

With eps = 1e-5 both bend, and the bend has a law of its own: scaling w_G by c is eps -> eps/c^2
in the normalization after G, so, exactly,

    H(w) [w_G, 0] + [g_G, 0] = -2 eps dg/deps          (dg/deps by central differences in eps)
    H(c w_G; eps) v = H(w; eps / c^2) v / c^2 on G

and the bend's relative size is of order eps / (var + eps) (var: the group's pre-norm
batch variance): 1e-4 to 3e-4 at this initialization, O(1) at c = 0.01.
"""

import numpy as np
import pytest

import theory.second_order as so
from refnet.data import synthetic
from refnet.nn import Conv2d, Linear, cnn, mlp
from refnet.nn.curvature import gradient
from refnet.nn.norm import LayerNorm, _BatchNorm

EXACT = 1e-9


@pytest.fixture(scope="module")
def batch():
    data = synthetic(n_train=64, n_test=3, shape=(1, 4, 4), num_classes=3, seed=0)
    return data.x_train[:32].astype(np.float64), data.y_train[:32]


def _set_eps(model, eps):
    for m in model.modules():
        if isinstance(m, (_BatchNorm, LayerNorm)):
            m.eps = eps
    return model


BUILDERS = {
    "bn-mlp": lambda: mlp(16, num_classes=3, width=12, depth=2, norm="bn", rng=0, dtype=np.float64),
    "bn-cnn": lambda: cnn(1, num_classes=3, image_size=4, widths=(3, 4), norm="bn", rng=0, dtype=np.float64),
    "ln-mlp": lambda: mlp(16, num_classes=3, width=12, depth=2, norm="ln", rng=0, dtype=np.float64),
}


def net(name, eps=0.0):
    return _set_eps(BUILDERS[name](), eps)


def groups(model):
    """(parameter name, index of the group in it: a row, or Ellipsis for the whole tensor)."""
    out = []
    for name, p in model.named_parameters():
        if p.scale_group == "unit":
            out += [(name, r) for r in range(p.shape[0])]
        elif p.scale_group == "tensor":
            out.append((name, Ellipsis))
    return out


def _embed(model, name, index, values):
    v = {name: np.zeros(dict(model.named_parameters())[name].shape)}
    v[name][index] = values
    return v


def _max(d):
    return max(float(np.abs(a).max()) for a in d.values())


@pytest.mark.parametrize("name", BUILDERS)
def test_hessian_times_each_group_is_minus_its_gradient(name, batch):
    model = net(name)
    x, y = batch
    g = gradient(model, x, y)
    params = dict(model.named_parameters())
    for pname, index in groups(model):
        hv = model.hvp(x, y, _embed(model, pname, index, params[pname].data[index]))
        want = {n: np.zeros_like(a) for n, a in g.items()}
        want[pname][index] = so.euler_hvp(g[pname][index])
        err = max(float(np.abs(hv[n] - want[n]).max()) for n in g)
        assert err < EXACT * _max(g), (pname, index, err)


@pytest.mark.parametrize("c", [0.1, 10.0])
@pytest.mark.parametrize("name", BUILDERS)
def test_the_hessian_scales_as_one_over_c_squared_on_the_group(name, c, batch, rng):
    model = net(name)
    x, y = batch
    params = dict(model.named_parameters())
    for pname, index in groups(model)[::3]:
        v = _embed(model, pname, index, rng.standard_normal(params[pname].data[index].shape))
        before = model.hvp(x, y, v)
        params[pname].data[index] *= c
        after = model.hvp(x, y, v)
        params[pname].data[index] /= c
        for n in before:
            want = before[n] * so.hessian_scale_factor(c, "cross")
            if n == pname:
                want[index] = before[n][index] * so.hessian_scale_factor(c, "group")
            assert np.abs(after[n] - want).max() < EXACT * _max(before) * max(1.0, 1 / c ** 2), (pname, n)


def test_hessian_scale_factors_and_sharpness_are_the_closed_forms():
    assert so.hessian_scale_factor(2.0, "group") == 0.25 and so.hessian_scale_factor(2.0, "cross") == 0.5
    assert so.hessian_scale_factor(2.0, "other") == 1.0
    assert so.effective_sharpness(0.1, 3.0, 2.0) == pytest.approx(0.1 * 3.0 / 4.0)
    with pytest.raises(ValueError, match="block"):
        so.hessian_scale_factor(2.0, "diagonal")


# --- eps > 0: the bend, and its own exact law -----------------------------------------------
def _norm_after(model, pname):
    """The normalization right after the layer that owns parameter ``pname`` ("1.weight" -> layer 2)."""
    return model[int(pname.split(".")[0]) + 1]


def _bn_groups(model):
    return [(n, p) for n, p in model.named_parameters() if p.scale_group == "unit"]


@pytest.mark.parametrize("c", [1.0, 0.1, 0.01])
@pytest.mark.parametrize("name", ["bn-mlp", "bn-cnn"])
def test_with_eps_euler_bends_by_minus_two_eps_dg_deps(name, c, batch):
    eps = 1e-5
    model = net(name, eps)
    x, y = batch
    for pname, p in _bn_groups(model):
        p.data *= c
        g = gradient(model, x, y)
        hv = model.hvp(x, y, {pname: p.data.copy()})      # every unit of the layer at once
        bn, h = _norm_after(model, pname), 1e-3 * eps
        bn.eps = eps + h
        g_plus = gradient(model, x, y)
        bn.eps = eps - h
        g_minus = gradient(model, x, y)
        bn.eps = eps
        p.data /= c
        for n in g:
            bend = hv[n] + (g[n] if n == pname else 0)
            law = -2 * eps * (g_plus[n] - g_minus[n]) / (2 * h)
            assert np.abs(bend - law).max() < 1e-6 * max(float(np.abs(law).max()), 1e-12 * _max(g)), (pname, n)


@pytest.mark.parametrize("name", ["bn-mlp", "bn-cnn"])
def test_the_bend_is_of_order_eps_over_the_variance(name, batch):
    """Relative bend |H w_G + g_G| / |g_G| against eps / (var + eps): visible at eps = 1e-5
    (> 1e-4), within a factor 3 of the closed form at c = 1, 0.1, 0.01, and growing as c shrinks."""
    eps = 1e-5
    x, y = batch
    measured, predicted = [], []
    for c in (1.0, 0.1, 0.01):
        model = net(name, eps)
        bends, preds = [], []
        for pname, p in _bn_groups(model):
            p.data *= c
            g = gradient(model, x, y)
            hv = model.hvp(x, y, {pname: p.data.copy()})
            bends.append(float(np.abs(hv[pname] + g[pname]).max() / np.abs(g[pname]).max()))
            pre = _pre_norm(model, pname, x)
            preds.append(float(so.eps_bend(eps, pre.var(axis=(0,) + tuple(range(2, pre.ndim)))).max()))
        measured.append(max(bends))
        predicted.append(max(preds))
    assert measured[0] > 1e-4 and measured[0] < measured[1] < measured[2]
    assert all(1 / 3 < m / p < 3 for m, p in zip(measured, predicted)), (measured, predicted)


def _pre_norm(model, pname, x):
    """The input of the normalization after ``pname``'s layer."""
    index = int(pname.split(".")[0])
    for layer in list(model)[:index + 1]:
        x = layer(x)
    return x


@pytest.mark.parametrize("c", [0.1, 10.0])
def test_with_eps_scaling_the_group_is_scaling_eps(c, batch, rng):
    """H(c w_G; eps) v = H(w_G; eps / c^2) v / c^2 on the group, exactly (v supported on G)."""
    eps, x, y = 1e-5, *batch
    model = net("bn-mlp", eps)
    pname, p = _bn_groups(model)[0]
    v = {pname: rng.standard_normal(p.shape)}
    p.data *= c
    scaled = model.hvp(x, y, v)[pname]
    p.data /= c
    _norm_after(model, pname).eps = eps / c ** 2
    moved_eps = model.hvp(x, y, v)[pname] * so.hessian_scale_factor(c, "group")
    assert np.abs(scaled - moved_eps).max() < EXACT * np.abs(moved_eps).max()


def test_layers_of_the_models_are_what_the_tests_assume():
    for name in ("bn-mlp", "bn-cnn"):
        model = net(name)
        for pname, _ in _bn_groups(model):
            assert isinstance(model[int(pname.split(".")[0])], (Linear, Conv2d))
            assert isinstance(_norm_after(model, pname), _BatchNorm)
