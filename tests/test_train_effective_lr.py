"""What the Trainer records as the effective learning rate for every optimizer kind: the step of
the unit vector w/||w|| per unit of the optimizer's own scale-free direction
(``refnet.train.effective_lr``)."""

import numpy as np
import pytest

from refnet.data import batch_indices, synthetic
from refnet.invariance import angular_update
from refnet.nn.models import mlp, trainable_parameters
from refnet.nn.norm import _BatchNorm
from refnet.ops import softmax_cross_entropy
from refnet.optim import SGD, Adam, Hyperball, Lion, Muon, Rotational
from refnet.optim.muon import adjusted_lr
from refnet.train import Trainer

NAMES = ("1.weight", "4.weight")  # the two BN-fed hidden weights of the MLP
BUILD = {
    "sgd": lambda ps: SGD(ps, lr=0.05, momentum=0.9, l2=1e-3),
    "adam": lambda ps: Adam(ps, lr=1e-3, weight_decay=0.1),
    "lion": lambda ps: Lion(ps, lr=1e-3, weight_decay=1.0),
    "muon": lambda ps: Muon(ps, lr=0.02, weight_decay=0.1),
    "muon_rms": lambda ps: Muon(ps, lr=0.02, weight_decay=0.1, adjust_lr_fn="match_rms_adamw"),
    "rotational": lambda ps: Rotational(SGD(ps, lr=0.05, momentum=0.9, l2=1e-3), update_norm_decay=0.0),
    "hyperball": lambda ps: Hyperball(SGD(ps, lr=0.05)),
}
# the power of ||w|| in the effective lr: SGD's gradient shrinks as 1/||w||, Adam's, Lion's and
# Muon's directions do not, the wrappers set the angle itself
POWER = {"sgd": -2, "adam": -1, "lion": -1, "muon": -1, "muon_rms": -1, "rotational": 0, "hyperball": 0}


@pytest.fixture(scope="module")
def data():
    return synthetic(n_train=200, n_test=50, shape=(1, 6, 6), num_classes=4, seed=0)


def _model():
    """float64, BN eps = 0: the hidden weights exactly scale-invariant, gradients orthogonal to them."""
    model = mlp(36, num_classes=4, width=8, depth=2, norm="bn", rng=0, dtype=np.float64)
    for m in model.modules():
        if isinstance(m, _BatchNorm):
            m.eps = 0.0
    return model


def _first_step(data, kind, scale=1.0):
    model = _model()
    for p in model.parameters():
        if p.scale_group is not None:
            p.data *= scale
    before = {n: p.data.copy() for n, p in model.named_parameters()}
    opt = BUILD[kind](trainable_parameters(model))
    history = Trainer(model, opt, data, batch_size=32, steps=1, seed=7, progress=False,
                      eval_every_epoch=False).fit()
    return model, opt, history, before


@pytest.mark.parametrize("kind", list(BUILD))
def test_effective_lr_scales_as_the_norm_to_its_power(data, kind):
    """Rescaling the scale-invariant weights by c multiplies the recorded effective lr by c^power."""
    _, _, plain, _ = _first_step(data, kind)
    _, _, scaled, _ = _first_step(data, kind, scale=3.0)
    for name in NAMES:
        ratio = scaled.steps[f"effective_lr/{name}"][0] / plain.steps[f"effective_lr/{name}"][0]
        np.testing.assert_allclose(ratio, 3.0 ** POWER[kind], rtol=1e-12)


@pytest.mark.parametrize("kind", ["rotational", "hyperball"])
def test_a_wrappers_effective_lr_is_the_tangent_of_its_angle(data, kind):
    """Rotational (no running average) and Hyperball around plain SGD turn each unit by exactly
    atan(effective lr): eta_r and lr."""
    model, opt, history, _ = _first_step(data, kind)
    for name in NAMES:
        eff = history.steps[f"effective_lr/{name}"][0]
        # 1e-6: Rotational divides by RMS(||u||) + eps, its eps = 1e-8 against ||u|| ~ 0.1
        np.testing.assert_allclose(np.tan(history.steps[f"angle/{name}"][0]), eff, rtol=1e-6)
    want = opt.target(opt.param_groups[0]) if kind == "rotational" else 0.05
    np.testing.assert_allclose(eff, want, rtol=1e-15)


def test_lions_effective_lr_turns_the_unit_vector_by_the_sign_step(data):
    """First Lion step (m = 0, so the step is sign(g)): with e the recorded effective lr and s =
    sign(g), tan(angle) = e ||s_perp|| / (p - e <w_hat, s>), p = 1 - lr wd, per unit."""
    model, opt, history, before = _first_step(data, "lion")
    idx = batch_indices(len(data.x_train), 32, np.random.default_rng(7))[0]
    probe = _model()
    _, dlogits = softmax_cross_entropy(probe(data.x_train[idx].astype(np.float64)), data.y_train[idx])
    probe.backward(dlogits)
    grads = dict(probe.named_parameters())
    p = 1 - 1e-3 * 1.0
    for name in NAMES:
        w, s = before[name], np.sign(grads[name].grad)
        e = history.steps[f"effective_lr/{name}"][0]
        w_hat = w / np.linalg.norm(w, axis=1, keepdims=True)
        radial = (w_hat * s).sum(axis=1)
        perp = np.linalg.norm(s - radial[:, None] * w_hat, axis=1)
        np.testing.assert_allclose(np.tan(history.steps[f"angle/{name}"][0]), e * perp / (p - e * radial), rtol=1e-9)
        np.testing.assert_allclose(np.tan(angular_update(w, dict(model.named_parameters())[name].data, "unit")),
                                   e * perp / (p - e * radial), rtol=1e-9)


@pytest.mark.parametrize("kind, fn", [("muon", None), ("muon_rms", "match_rms_adamw")])
def test_muons_effective_lr_uses_the_adjusted_lr(data, kind, fn):
    _, opt, history, before = _first_step(data, kind)
    for name in NAMES:
        w = before[name]
        want = adjusted_lr(0.02, fn, w.shape) / np.linalg.norm(w, axis=1)
        np.testing.assert_allclose(history.steps[f"effective_lr/{name}"][0], want, rtol=1e-12)


def test_an_optimizer_of_unknown_kind_is_refused_by_name(data):
    class Plain:
        param_groups = [{"lr": 0.1, "params": []}]

    model = mlp(36, num_classes=4, width=8, depth=2, norm="bn", rng=0)
    with pytest.raises(TypeError, match=r"Trainer\(optimizer\): got Plain"):
        Trainer(model, Plain(), data, progress=False)
