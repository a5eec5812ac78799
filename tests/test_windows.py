"""A prediction's inputs are what its row says, by perturbation: each experiment's ``analyze`` is run
on a tiny run's results and on copies with some measured arrays scaled. Scaling the judged window
moves the measured values and leaves every predicted value where it was; scaling the input window
(an earlier window of the run, or another run) moves the predicted values. The comparisons are
those ``claims.worst`` keeps (``row["comparisons"]``), so the worst one changing does not hide
anything."""

import numpy as np
import pytest

from refnet.experiments import config, get
from refnet.experiments.runner import Runner

SCALE = 1.5
_GROWTH = get("adam_growth")
_ANGLES = get("optimizer_angles")
_TINY = config.make_config("tiny", data="synthetic")


@pytest.fixture(scope="module")
def cfg():
    return _TINY


@pytest.fixture(scope="module")
def tiny(cfg, tmp_path_factory):
    runner = Runner(jobs=1, cache_dir=str(tmp_path_factory.mktemp("cache")), progress=False)
    names = ("momentum_S", "adam_growth", "cross_run", "init_forgetting", "lr_dynamics", "balance", "one_knob",
             "optimizer_angles")
    return {n: runner.map(get(n).specs(cfg)) for n in names}


def _step_of(arrays, k):
    """The step of each row of array ``k``: a trace's ``trace/step`` (a branch's own, for a
    ``branch<i>/`` key of ``tasks.rescale_branches``); ``units/`` records keep every step, row j
    step j."""
    if k.startswith("units/"):
        return np.arange(len(arrays[k]), dtype=float)
    branch = k.split("/", 1)[0] + "/" if k.startswith("branch") else ""
    return arrays[branch + "trace/step"].astype(float)


def perturbed(results, runs, suffix, steps=None, ramp=False, prefix="", scale=SCALE):
    """A copy of ``results`` in which, in the runs ``runs`` (None: all), every float array whose key
    starts with ``prefix`` and ends with ``suffix`` (a string or a tuple) is scaled by ``scale``: along a
    trace (or a per-step ``units/`` record) only its rows with ``steps[0] <= step <= steps[1]`` when
    ``steps`` is given (an array with no steps, a window's or a run's summary, is then left alone),
    or by ``scale * (1 + step/T)`` when ``ramp``."""
    out = []
    for i, (arrays, meta) in enumerate(results):
        arrays = {k: np.array(v, copy=True) for k, v in arrays.items()}
        if runs is None or i in runs:
            for k in arrays:
                if not (k.startswith(prefix) and k.endswith(suffix)) or k.endswith("trace/step") \
                        or arrays[k].dtype.kind != "f":
                    continue
                if ("/trace/" in k or k.startswith("units/")) and (steps is not None or ramp):
                    step = _step_of(arrays, k)
                    f = np.where((step >= steps[0]) & (step <= steps[1]), scale, 1.0) if steps is not None \
                        else scale * (1 + step / step.max())
                    arrays[k] = arrays[k] * f.reshape((-1,) + (1,) * (arrays[k].ndim - 1))
                elif steps is None:
                    arrays[k] = arrays[k] * scale
        out.append((arrays, meta))
    return out


def _adam_l2_layers(data):
    """Adam + L2's judged layers (fed by normalized units: all but the first): predicted and measured
    steady angles. Its row compares their ratio with 1, so its ``predicted`` is always 1."""
    judged = list(data["optimizers"]["adam_l2"]["layers"].values())[1:]
    return np.array([L["predicted"] for L in judged]), np.array([L["median"] for L in judged])


VALUES = {"opt_adam_l2_angle": _adam_l2_layers}  # rows of a ratio against 1: where their values are


def pairs(data, id):
    """``(predicted, measured)`` arrays of every comparison of claim ``id``."""
    if id in VALUES:
        return VALUES[id](data)
    row, = [c for c in data["claims"] if c["id"] == id]
    comp = row.get("comparisons") or [[row["quantity"], row["predicted"], row["measured"]]]
    return np.array([c[1] for c in comp]), np.array([c[2] for c in comp])


def _moved(a, b):
    return not np.allclose(a, b, rtol=1e-9, atol=0, equal_nan=True)


def _judge(cfg, name, results, changed, id):
    mod = get(name)
    (p0, m0), (p1, m1) = pairs(mod.analyze(cfg, results), id), pairs(mod.analyze(cfg, changed), id)
    return _moved(p0, p1), _moved(m0, m1)


def post_rescale(c):
    """The return's judged window: the steps after the rescale at ``T = rescale_at``."""
    return c["rescale_at"] + 1, c["rescale_at"] + c["rescale_steps"]


def pre_rescale(c):
    """The window that sets the equilibrium level ``y*``: steps ``[(1 - RESCALE_PRE) T, T)``."""
    return (1 - get("init_forgetting").RESCALE_PRE) * c["rescale_at"], c["rescale_at"] - 1


def middle_third(c):
    """optimizer_angles' input window, ``[start, stop)`` as the experiment cuts it."""
    start, stop = _ANGLES.windows(c["steps"])[0]
    return start, stop - 1


def last_third(c):
    """optimizer_angles' judged window."""
    start, stop = _ANGLES.windows(c["steps"])[1]
    return start, stop - 1


# init_forgetting's rescale tasks (each holds both factors as branches) and optimizer_angles' Adam + L2 run
_RESCALED = {h["opt"]: i for i, (h, _) in enumerate(get("init_forgetting").runs(_TINY)) if "rescale" in h}
_ADAM_L2 = list(_ANGLES.runs(_TINY)).index("adam_l2")

# (experiment, claim, runs perturbed, array suffix, trace steps as fractions of the run, or a
#  function of the experiment's config giving them in steps, or None, predicted moves, measured moves)
CASES = [
    # S predicted from the reference run (index 1), judged on run 0
    ("momentum_S", "momentum_S_other_run", {0}, "/win/norm4", None, False, True),
    ("momentum_S", "momentum_S_other_run", {0}, "/autocorr", None, False, False),  # the judged run's own c_m: unused
    ("momentum_S", "momentum_S_other_run", {1}, "/autocorr", None, True, False),
    ("momentum_S", "momentum_S_other_run", {1}, "/win/norm4", None, False, False),
    # the growth rate of an earlier window (steps EARLY of the run) predicts the last third (WINDOW)
    ("adam_growth", "adam_growth_window", {0}, "/trace/norm", (1 - _GROWTH.WINDOW, 1.0), False, True),
    ("adam_growth", "adam_growth_window", {0}, "/trace/norm", _GROWTH.EARLY, True, False),
    # the angle law: from the hyperparameters, d and the initial norm only
    ("adam_growth", "adam_growth_angle", {0}, "/win/angle", None, False, True),
    ("adam_growth", "adam_growth_angle", {0}, "/run/norm0", None, True, False),
    ("adam_growth", "adam_growth_norm", {0}, "/run/normT", None, False, True),
    # Adam + L2's angle per unit from its G2 over the middle third; the last third is judged
    ("optimizer_angles", "opt_adam_l2_angle", {_ADAM_L2}, "/G2", last_third, False, False),
    ("optimizer_angles", "opt_adam_l2_angle", {_ADAM_L2}, "/G2", middle_third, True, False),
    ("optimizer_angles", "opt_adam_l2_angle", {_ADAM_L2}, "/win/angle", None, False, True),
]


def _span(cfg, name, steps):
    if steps is None or callable(steps):
        return steps and steps(cfg[name])
    return steps[0] * cfg[name]["steps"], steps[1] * cfg[name]["steps"]


@pytest.mark.parametrize("name,id,runs,suffix,steps,pred_moves,meas_moves", CASES,
                         ids=[f"{c[1]}-run{sorted(c[2])}-{c[3].strip('/')}"
                              f"{'-' + getattr(c[4], '__name__', str(c[4])) if c[4] else ''}" for c in CASES])
def test_a_perturbed_window_moves_only_what_the_row_says_it_feeds(cfg, tiny, name, id, runs, suffix, steps,
                                                                   pred_moves, meas_moves):
    changed = perturbed(tiny[name], runs, suffix, steps=_span(cfg, name, steps))
    assert _judge(cfg, name, tiny[name], changed, id) == (pred_moves, meas_moves)


# The tiny run has not settled by T: its x1/2 branch never gets half-way back (measured NaN), and
# with its norm scaled by 1.5 (||w||^4 by 5) it still does not; scaled by 3 it does at once.
RETURN_SCALE = 3.0
# (claim, rescale task, window scaled): the branch after the rescale is judged; the settled window
# before it sets only the half-way level y*, so it too moves the measured time alone
RETURN_CASES = [(f"init_{opt}_return_{side}", i, post_rescale) for opt, i in _RESCALED.items()
                for side in ("above", "below")] + [("init_sgd_return_above", _RESCALED["sgd"], pre_rescale)]


@pytest.mark.parametrize("id,run,window", RETURN_CASES, ids=[f"{c[0]}-{c[2].__name__}" for c in RETURN_CASES])
def test_the_return_after_a_rescale_is_predicted_from_the_hyperparameters_and_c_alone(cfg, tiny, id, run, window):
    name = "init_forgetting"
    changed = perturbed(tiny[name], {run}, "/trace/norm", steps=window(cfg[name]), scale=RETURN_SCALE)
    assert _judge(cfg, name, tiny[name], changed, id) == (False, True)


# predictions from hyperparameters alone: nothing measured in any run moves them
HYPER_ONLY = {"cross_run": ("cross_run_norm2_invariant", "cross_run_angle_invariant", "cross_run_norm2_ordinary",
                            "cross_run_angle_ordinary"),
              "init_forgetting": ("init_sgd_efflr", "init_sgd_angle", "init_adamw_efflr", "init_adamw_angle"),
              "lr_dynamics": ("sgd_l2_angle", "sgd_momentum_angle"),
              "one_knob": ("sgd_l2_angle_grid", "adamw_angle_every_layer", "adamw_angle_normalized_layers")}
# the runs scaled: one of each group of three (each net, each optimizer) but not the first, the
# reference of the cross-run ratios; every run where there are no ratios between runs
RUNS = {"cross_run": {1, 4}, "init_forgetting": {1, 4}, "lr_dynamics": {0, 1}, "one_knob": None}
MEASURED = tuple(f"/{w}/{q}" for w in ("win", "trace") for q in ("norm", "norm4", "angle", "efflr", "G2"))
MEASURED += ("/run/normT",)


@pytest.mark.parametrize("name,id", [(n, i) for n, ids in HYPER_ONLY.items() for i in ids])
def test_a_prediction_from_hyperparameters_moves_with_no_measurement(cfg, tiny, name, id):
    """Runs scaled along their traces and windows: the measured values move, the predicted ones do not."""
    changed = perturbed(tiny[name], RUNS[name], MEASURED, ramp=True)
    assert _judge(cfg, name, tiny[name], changed, id) == (False, True)


def test_the_adamw_balance_is_predicted_from_nothing_measured(cfg, tiny):
    """The AdamW angle ratio across layers is predicted without G2 or any window: scaling the last
    layer's windows in every run moves the measured ratio only."""
    last = list(tiny["balance"][0][1]["params"])[-1]
    changed = perturbed(tiny["balance"], None, MEASURED, prefix=last + "/")
    assert _judge(cfg, "balance", tiny["balance"], changed, "balance_adamw") == (False, True)


def test_the_adam_l2_balance_uses_the_window_it_judges(cfg, tiny):
    """The contrast: the Adam + L2 ratio is fed each layer's G2 from the judged window (a consistency
    check, so labelled): the same perturbation moves its predicted ratio too."""
    last = list(tiny["balance"][0][1]["params"])[-1]
    changed = perturbed(tiny["balance"], None, MEASURED, prefix=last + "/")
    assert _judge(cfg, "balance", tiny["balance"], changed, "balance_adam") == (True, True)
