"""The equilibrium laws of theory/ hold for refnet's optimizers on a real network, as measured
by ``refnet.dynamics`` (whose estimators are first checked where the answer is known).

A BatchNorm MLP 784-256-256-10 (``refnet.nn.models.mlp``), float64, trained on Fashion-MNIST
(skipped if absent) at batch 128, lam = 5e-3 (convention A: loss + lam ||w||^2), measured by
``refnet.dynamics.compare`` per unit over the second half of the run, median over units, with
``G2`` relaxed at the law's relaxation rate (``refnet.dynamics`` explains the estimator).

The two hidden weights "1.weight" (d = 784) and "4.weight" (d = 256) are scale-invariant per
unit. Kaiming init gives ``||w||^2 ~ 1/3`` per unit, 7-20x the SGD equilibrium, and the norm
relaxes only at ``8 lr lam = 0.004`` per step; the loss ignores the scale, so every run starts
the hidden weights 0.3x smaller: the function is the same, the transient shorter, and the
window (the second half of 3000 steps) opens 6 relaxation times in.

Held: SGD + L2, ``||w||^4`` and the RMS angle within 3%; SGD + momentum + L2, the angle within
3% and the norm's miss explained (``||w||^4 = S * law``, S from the measured gradient
autocorrelation, see ``refnet.dynamics.gradient_correlation``); balance (same angle across
layers under SGD, not under Adam + L2); without L2, ``||w||^4`` grows at ``2 lr^2 G2`` within 5%.
These are marked slow (about 1.5 minutes together, float64, on 2 cores).
"""

from types import SimpleNamespace

import numpy as np
import pytest

import theory
from refnet import backend
from refnet.data import DatasetNotFoundError, load_dataset, synthetic
from refnet.dynamics import Recorder, angle_balance, compare, gradient_correlation, law
from refnet.nn.models import mlp, trainable_parameters
from refnet.ops import softmax_cross_entropy
from refnet.optim import SGD, Adam
from refnet.train import Trainer

slow = pytest.mark.slow

# --- the harness where the answer is known ------------------------------------------------------
WALKS = {  # a reference rule of theory's on the scale-invariant walk (d = 256), with its options
    "sgd+l2": ("SGD", dict(lr=0.1, l2=0.01)),
    "sgd+momentum+l2": ("SGD", dict(lr=0.02, momentum=0.9, l2=0.01)),
    "adam+l2": ("Adam", dict(lr=0.01, betas=(0.9, 0.99), eps=1e-8, l2=0.01)),
    "adamw": ("Adam", dict(lr=0.01, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.5)),
    "projected sgd": ("SGD", dict(lr=0.1, l2=0.01, unit_norm=True)),
    "projected adam": ("Adam", dict(lr=0.01, betas=(0.9, 0.99), eps=1e-8, unit_norm=True)),
    "sgd growth": ("SGD", dict(lr=0.1)),
    "adam growth": ("Adam", dict(lr=0.01, betas=(0.9, 0.99), eps=1e-8)),
}


def walk_record(kind, options, steps=2000, units=32):
    """theory.random_walk driven by theory's rule for ``options``, shaped like a History."""
    def make(w0):
        return (theory.SGDRule if kind == "SGD" else theory.AdamRule)(**options)
    w = theory.random_walk(make, d=256, units=units, steps=steps, rng=np.random.default_rng(0))
    rows = {"step": np.arange(steps), "lr": np.full(steps, options["lr"]), "norm/w": np.sqrt(w.norms2[:-1]),
            "angle/w": w.angles, "grad_norm_unit/w": np.sqrt(w.gt2)}
    group = {"l2": 0.0, "weight_decay": 0.0, "unit_norm": False, **options}
    return SimpleNamespace(steps=rows, params={"w": {"scale_group": "unit", "shape": [units, 256]}},
                           config={"optimizer": kind, "param_groups": [group]})


@pytest.mark.parametrize("expected", list(WALKS))
def test_compare_recovers_each_law_on_the_random_walk(expected):
    """On the walk the laws hold (test_theory_randomwalk); compare must see that, within the
    issue's 3% (the estimates land within 0.5%, Adam's growth slope within 2%)."""
    result = compare(walk_record(*WALKS[expected]))["params"]["w"]
    assert result["law"] == expected
    for quantity, error in result["median"]["rel_error"].items():
        assert abs(error) < 0.03, (quantity, error)


@pytest.mark.parametrize("setup, expected", [
    (dict(kind="sgd", lr=0.1, weight_decay=0.01), ("sgd+l2", 4)),
    (dict(kind="adam", lr=0.1, unit_norm=True), ("projected adam", 2)),
    (dict(kind="adam", lr=0.1), ("adam growth", 2)),
    (dict(kind="adam", lr=0.1, l2=0.01), ("adam+l2", 3)),
])
def test_law_is_chosen_from_the_optimizer_options(setup, expected):
    assert law(setup) == expected


@pytest.mark.parametrize("setup", [dict(kind="sgd", lr=0.1, momentum=0.9, nesterov=True, l2=0.01),
                                   dict(kind="sgd", lr=0.1, momentum=0.9),
                                   dict(kind="adam", lr=0.1, l2=0.01, weight_decay=0.1)])
def test_law_refuses_settings_without_a_closed_form(setup):
    with pytest.raises(ValueError, match="no closed form"):
        law(setup)


def tiny_run(device, steps=30, lags=3):
    """A 16-12-12-3 BN MLP, SGD + momentum + L2, recorded; returns the Recorder and layer 1's grads."""
    data = synthetic(n_train=64, n_test=1, shape=(1, 4, 4), num_classes=3, seed=0)
    model = mlp(16, num_classes=3, width=12, depth=2, norm="bn", rng=0, dtype=np.float64).to(device=device)
    opt = SGD(trainable_parameters(model), lr=0.1, momentum=0.5, l2=0.01)
    recorder, grads = Recorder(model, opt, lags=lags).attach(), []
    x = backend.to_device(data.x_train.astype(np.float64), device)
    y = backend.to_device(data.y_train, device)
    for t in range(steps):
        batch = slice(t % 4 * 16, t % 4 * 16 + 16)
        model.zero_grad()
        model.backward(softmax_cross_entropy(model(x[batch]), y[batch])[1])
        grads.append(backend.asnumpy(model[1].weight.grad).copy())
        opt.step()
    return recorder.detach(), np.array(grads)


def test_recorder_lags_are_dot_products_with_earlier_gradients():
    recorder, grads = tiny_run("numpy")
    dots = recorder.steps["grad_dot/1.weight"]
    for m in range(4):
        expected = np.einsum("tij,tij->ti", grads[m:], grads[:len(grads) - m])
        assert np.allclose(dots[m:, m], expected, rtol=1e-12, atol=0), m


@pytest.mark.parametrize("device", ["numpy", pytest.param("cupy", marks=pytest.mark.gpu)])
def test_recorded_norm_angle_and_buffer_agree_with_the_step(device):
    """``||w_{t+1} - w_t||^2 = lr^2 ||b_t||^2`` (heavy ball), computed from the recorded norms and
    angle as ``x_t + x_{t+1} - 2 sqrt(x_t x_{t+1}) cos(angle_t)``: every row, every unit."""
    steps = tiny_run(device)[0].steps
    x = steps["norm/1.weight"] ** 2
    step2 = x[:-1] + x[1:] - 2 * np.sqrt(x[:-1] * x[1:]) * np.cos(steps["angle/1.weight"][:-1])
    assert np.allclose(step2, 0.1 ** 2 * steps["buffer_sq/1.weight"][:-1], rtol=1e-7, atol=0)


# --- the real network ---------------------------------------------------------------------------
LAYERS = ["1.weight", "4.weight"]
LAM, INIT_SCALE = 5e-3, 0.3


@pytest.fixture(scope="module")
def data():
    try:
        return load_dataset("fashion-mnist")
    except DatasetNotFoundError as e:
        pytest.skip(f"Fashion-MNIST not found: {e}")


def train(data, make_optimizer, steps, lags=None):
    """Train the BN MLP for ``steps``; return the History, or a Recorder when ``lags`` is set."""
    model = mlp(784, width=256, depth=2, norm="bn", rng=0, dtype=np.float64)
    for p in model.parameters():
        if p.scale_group is not None:
            p.data *= INIT_SCALE
    opt = make_optimizer(trainable_parameters(model))
    recorder = None if lags is None else Recorder(model, opt, lags=lags).attach()
    history = Trainer(model, opt, data, batch_size=128, steps=steps, progress=False,
                      log_every=1 if recorder is None else steps + 1, eval_every_epoch=False).fit()
    return history if recorder is None else recorder.detach()


def show(report, title):
    print(f"\n{title}")
    for name, r in report["params"].items():
        m = r["median"]
        print(f"  {name} ({r['law']}, d={r['d']}, G2={np.median(r['G2']):.3g}): " + ", ".join(
            f"{k} {m['measured'][k]:.4g} vs {m['predicted'][k]:.4g} ({m['rel_error'][k]:+.2%})"
            for k in m["measured"]))


@pytest.fixture(scope="module")
def sgd(data):
    report = compare(train(data, lambda ps: SGD(ps, lr=0.1, l2=LAM), 3000))
    show(report, "SGD + L2, lr 0.1")
    return report


@pytest.fixture(scope="module")
def momentum(data):
    recorder = train(data, lambda ps: SGD(ps, lr=0.01, momentum=0.9, l2=LAM), 3000, lags=20)
    report, corr = compare(recorder), gradient_correlation(recorder)
    show(report, "SGD + momentum 0.9 + L2, lr 0.01")
    for name, c in corr.items():
        print(f"  {name}: S {np.median(c['S']):.4f}, buffer ratio {np.median(c['buffer_ratio']):.4f}, "
              f"balance {np.median(c['balance']):+.1e}, c_1..c_8 {np.round(np.median(c['autocorr'][:8], 1), 3)}")
    return report, corr


@pytest.fixture(scope="module")
def adam(data):
    report = compare(train(data, lambda ps: Adam(ps, lr=1e-3, betas=(0.9, 0.99), l2=LAM), 1500))
    show(report, "Adam + L2, lr 1e-3, betas (0.9, 0.99)")
    return report


@pytest.fixture(scope="module")
def growth(data):
    report = compare(train(data, lambda ps: SGD(ps, lr=0.1), 1000))
    show(report, "SGD without L2, lr 0.1 (norm_power: slope of ||w||^4 per step)")
    return report


def median_error(report, name, quantity):
    return report["params"][name]["median"]["rel_error"][quantity]


# SGD + L2
@slow
@pytest.mark.parametrize("name", LAYERS)
@pytest.mark.parametrize("quantity", ["norm_power", "angle"])
def test_sgd_l2_steady_state_matches_the_law(sgd, name, quantity):
    """``||w||^4 = lr G2/(4 lam (1 - lr lam))`` and ``cos(angle) = 1 - 2 lr lam``, within 3%."""
    assert sgd["params"][name]["law"] == "sgd+l2" and sgd["params"][name]["p"] == 4
    assert abs(median_error(sgd, name, quantity)) < 0.03


# SGD + momentum + L2
@slow
@pytest.mark.parametrize("name", LAYERS)
def test_sgd_momentum_angle_matches_the_law(momentum, name):
    """``cos(angle) = 1 - 2 lr lam/(1 + mu)`` within 3%."""
    assert abs(median_error(momentum[0], name, "angle")) < 0.03


@slow
@pytest.mark.parametrize("name", LAYERS)
def test_sgd_momentum_norm_is_the_law_times_the_gradient_correlation_factor(momentum, name, record_property):
    """The random-walk law misses ``||w||^4`` (reported); ``S * law`` holds within 3%, with
    ``S = 1 + 2 sum_m mu^m c_m`` from the measured lag correlations of the minibatch gradients."""
    report, corr = momentum
    r = report["params"][name]
    record_property(f"{name} momentum norm^4 vs random-walk law", r["median"]["rel_error"]["norm_power"])
    explained = r["measured"]["norm_power"] / (corr[name]["S"] * r["predicted"]["norm_power"]) - 1
    assert abs(np.median(explained)) < 0.03


@slow
@pytest.mark.parametrize("name", LAYERS)
def test_sgd_momentum_buffer_balance_is_exact(momentum, name):
    """``E||w||^2 = lr (1+mu) E||b||^2/(4 lam)`` (with the window's drift term), any gradients."""
    assert abs(np.median(momentum[1][name]["balance"])) < 2e-3


# balance across layers
@slow
def test_sgd_turns_both_hidden_layers_at_the_same_rate(sgd):
    ratio = angle_balance(sgd, *LAYERS)["measured"]
    assert abs(ratio - 1) < 0.05


@slow
def test_adam_l2_turns_the_hidden_layers_at_different_rates_as_predicted(adam):
    """Adam + L2: angle ~ (d / sqrt(G2))^(1/3); a clear imbalance, on the predicted side."""
    ratio = angle_balance(adam, *LAYERS)
    assert min(ratio["measured"], ratio["predicted"]) > 1.2 or max(ratio["measured"], ratio["predicted"]) < 1 / 1.2


# no L2: growth
@slow
@pytest.mark.parametrize("name", LAYERS)
def test_sgd_without_l2_norm4_grows_at_2_lr2_G2(growth, name):
    assert growth["params"][name]["law"] == "sgd growth"
    assert abs(median_error(growth, name, "norm_power")) < 0.05
