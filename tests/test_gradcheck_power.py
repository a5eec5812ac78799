"""The power campaign measures the checker, and its scoring cannot be gamed: every built-in
op and module with its mutants in both modes (small inputs here; `refnet gradcheck --power`
adds the large ones and more seeds), only `failed` counts as a detection, and a checker that
says ok, or inconclusive, everywhere scores nothing."""

import numpy as np
import pytest

from refnet.gradcheck import campaign, mutants, suite
from refnet.gradcheck.report import GradcheckReport

SMALL = (("small", "full"), ("small", "directional"))


@pytest.fixture(scope="module")
def small_campaign():
    return campaign.power(seeds=(0,), configs=SMALL, fast=False)


def test_every_planted_error_in_every_case_is_reported_failed(small_campaign):
    missed = [c for c in small_campaign["checks"] if not campaign._must_pass(c) and c["status"] != "failed"
              and c["status"] != "not applicable"]
    assert small_campaign["summary"]["mutants"] > 500 and missed == []


def test_no_correct_backward_is_flagged_or_left_inconclusive(small_campaign):
    correct = [c for c in small_campaign["checks"] if c["mutant"] == "correct"]
    assert len(correct) == 2 * len(suite.CASES) and all(c["status"] == "ok" for c in correct)


def test_the_near_threshold_mutant_is_planted_in_every_argument_and_caught(small_campaign):
    rows = [c for c in small_campaign["checks"] if c["mutant"] == "one entry x(1+10 rtol)"]
    args = {(c["case"], c["target"]) for c in small_campaign["checks"] if c["target"] != "-"}
    assert {(c["case"], c["target"]) for c in rows} == args
    assert [c for c in rows if c["status"] not in ("failed", "not applicable")] == []


def test_the_sub_threshold_control_is_run_everywhere_and_never_failed(small_campaign):
    rows = [c for c in small_campaign["checks"] if c["mutant"].startswith(mutants.CONTROL)]
    args = {(c["case"], c["target"]) for c in small_campaign["checks"] if c["target"] != "-"}
    assert {(c["case"], c["target"]) for c in rows} == args and all(c["status"] == "ok" for c in rows)
    s = small_campaign["summary"]
    assert (s["controls"], s["controls_failed"], s["correct"]) == (len(rows), 0, 2 * len(suite.CASES))


def test_a_failed_control_counts_against_the_checker_not_as_a_detection():
    rows = [{"case": "c", "mode": "full", "mutant": mutants.CONTROL + "x", "status": "failed"},
            {"case": "c", "mode": "full", "mutant": "one sign flipped", "status": "failed"}]
    r = campaign._rates(rows)
    assert (r["mutants"], r["detected"], r["controls"], r["controls_failed"]) == (1, 1, 1, 1)


def test_a_detected_mutant_fails_on_the_argument_it_was_planted_in(small_campaign):
    wrong_place = [c for c in small_campaign["checks"] if c["status"] == "failed"
                   and c["target"] not in c["failing"] and "(problem)" not in c["failing"]]
    assert wrong_place == []


@pytest.mark.parametrize("case, mutant", [
    ("batchnorm", "BN without its mean path"), ("batchnorm", "BN without its variance path"),
    ("nn.BatchNorm2d", "BN without its mean path"), ("layernorm", "LN over the wrong axis"),
    ("nn.LayerNorm", "LN over the wrong axis"), ("weightnorm", "WN without the projection"),
    ("nn.WeightNorm(Conv2d)", "WN without the projection"), ("conv2d", "conv dw transposed (F and C)"),
    ("nn.Conv2d", "conv dw kernel flipped"), ("nn.Linear", "assigns (=) instead of adding (+=)"),
])
def test_the_layer_specific_slips_are_planted_and_caught(small_campaign, case, mutant):
    rows = [c for c in small_campaign["checks"] if c["case"] == case and c["mutant"] == mutant]
    assert len(rows) >= 2 and all(c["status"] == "failed" for c in rows)


def test_a_zero_gradient_is_not_counted_as_mutated(small_campaign):
    """The conv bias before BatchNorm has gradient 0: scaling it by 1.001 changes nothing."""
    skipped = [c for c in small_campaign["checks"] if c["status"] == "not applicable"]
    assert {(c["case"], c["target"]) for c in skipped} == {("nn.Sequential", "0.bias")}


@pytest.mark.slow
@pytest.mark.parametrize("case", ["maxpool2d", "relu", "nn.Sequential", "models.mlp", "models.cnn"])
def test_large_inputs_in_directional_mode_are_held_to_the_same_standard(case):
    result = campaign.power(cases=[case], seeds=(0,), configs=(("large", "directional"),), fast=False)
    s = result["summary"]
    assert (s["detection_rate"], s["false_alarms"], s["inconclusive"]) == (1.0, 0, 0)


def test_fast_mode_is_measured_apart():
    result = campaign.power(cases=["linear"], seeds=(0,), configs=SMALL, fast=True)
    fast = result["summary"]["fast"]
    assert fast["mutants"] > 0 and fast["correct"] == 1 and fast["false_alarms"] == 0
    assert result["summary"]["mutants"] == 2 * fast["mutants"]


# --- the scoring ---------------------------------------------------------------------------------
def _constant_checker(status):
    """A fake checker that returns ``status`` for every argument of every check."""
    from refnet.gradcheck.report import ArgCheck

    def check(self, **opts):
        return GradcheckReport("fake", [ArgCheck(n, (1,), status=status) for n in self.names()], [], 1e-5)
    return check


@pytest.mark.parametrize("status, detection, inconclusive", [("ok", 0.0, 0.0), ("inconclusive", 0.0, 1.0),
                                                            ("failed", 1.0, 0.0)])
def test_a_checker_that_says_the_same_everywhere_scores_accordingly(status, detection, inconclusive, monkeypatch):
    monkeypatch.setattr(suite.Setup, "check", _constant_checker(status))
    r = campaign.power(cases=["linear", "nn.ReLU"], seeds=(0,), configs=SMALL, fast=False)["summary"]
    assert (r["detection_rate"], r["inconclusive_rate"]) == (detection, inconclusive)
    assert r["false_alarm_rate"] == (1.0 if status == "failed" else 0.0)


def test_shared_finite_differences_give_the_verdicts_of_separate_checks():
    setup = suite.make_case("batchnorm")
    grads, dout = campaign.reference(setup, 0)
    planted = mutants.generic("x", grads["x"].shape, None, np.random.default_rng(0)) + mutants.structural(setup)
    cache = {}
    for label, target, change in planted:
        shared = campaign._mutated(setup, target, change).check(mode="directional", _fd_cache=cache)
        alone = campaign._mutated(setup, target, change).check(mode="directional")
        expected = "ok" if label.startswith(mutants.CONTROL) else "failed"
        assert shared.status == alone.status == expected, label
        assert [c.max_rel_err for c in shared.errors.values()] == [c.max_rel_err for c in alone.errors.values()]


@pytest.mark.parametrize("seed", range(5))
def test_one_entry_mutants_are_planted_away_from_kinks(seed):
    setup = suite.make_case("relu", seed)
    kinks = setup.kinks["x"]
    g = np.ones(kinks.shape)
    for label, _, change in mutants.generic("x", kinks.shape, kinks, np.random.default_rng(seed)):
        if label.startswith("one"):
            changed = np.flatnonzero(change(g.copy(), {}, None) != g)
            assert changed.size == 1 and not kinks.reshape(-1)[changed[0]]


def test_an_unknown_case_is_refused():
    with pytest.raises(ValueError, match=r"power\(cases\): unknown \['convolution'\]"):
        campaign.power(cases=["convolution"])


@pytest.mark.parametrize("case, entries", [("relu", 16384), ("maxpool2d", 18000)])
def test_the_campaign_holds_large_inputs_full_of_kinks(case, entries):
    """Nearly every directional block of these holds a kink: the false-alarm rate covers them."""
    setup = suite.make_case(case, large=True)
    assert setup.args[0].size >= entries and setup.kinks["x"].mean() > 0.05


@pytest.mark.parametrize("case", ["models.mlp", "models.cnn"])
def test_the_campaign_checks_whole_models_with_check_module(case):
    setup = suite.make_case(case)
    assert setup.kind == "module" and len(setup.names()) > 5


@pytest.mark.parametrize("case, holds", [
    ("nn.BatchNorm1d.eval", lambda m: not m.training and m.track_running_stats and m.running_var.min() != 1),
    ("nn.BatchNorm2d(affine=False)", lambda m: m.training and m.weight is None and m.bias is None),
    ("nn.BatchNorm1d(track_running_stats=False).eval", lambda m: not m.training and not m.track_running_stats),
    ("nn.LayerNorm(elementwise_affine=False)", lambda m: m.weight is None and m.bias is None),
    ("nn.Linear(bias=False)", lambda m: m.bias is None),
    ("nn.Conv2d(bias=False)", lambda m: m.bias is None),
    ("nn.Linear+1e4", lambda m: m.bias.data.min() > 9e3),
    ("nn.Conv2d+1e3", lambda m: m.bias.data.min() > 9e2),
])
def test_the_campaign_holds_each_module_configuration(case, holds):
    assert holds(suite.make_case(case).fn) and holds(suite.make_case(case, large=True).fn)


@pytest.mark.parametrize("case", ["nn.BatchNorm2d(affine=False)", "nn.BatchNorm1d(track_running_stats=False).eval"])
def test_batchnorm_with_batch_statistics_gets_its_structural_mutants(case):
    labels = [label for label, _, _ in mutants.structural(suite.make_case(case))]
    assert labels == ["BN without its mean path", "BN without its variance path"]
