"""The tolerance rule: every non-identity claim's tolerance is max(floor, K * spread), the spread
measured by `refnet calibrate` over seeds that are not judged and committed in
refnet/experiments/calibration.json; a law's systematic miss is not absorbed; the significance
and bound claims are a short, explained list of exceptions."""

import json
import os
from dataclasses import replace

import numpy as np
import pytest

from refnet.cli import main
from refnet.experiments import NAMES, calibrate, claims, config, get, registry
from refnet.experiments.runner import Runner, spec_key

for _name in NAMES:  # every experiment registers its claims at import
    get(_name)

# predictions without a calibration record yet: `refnet calibrate --only EXPERIMENT` calibrates
# them (the lead does, after merging a changed experiment) and empties this list
# The CNN rows of experiment 9 run only in --preset full (about 9 CPU-minutes per seed here), and
# their tolerances are the MLP's, said so in their sources; they are not calibrated yet.
PENDING = {f"{id}_cnn" for id in ("opt_sgdm_angle", "opt_adamw_angle", "opt_lion_angle_hyper", "opt_muon_angle_hyper",
                                  "opt_adam_l2_angle", "opt_adam_l2_spread",
                                  "opt_adam_l2_spread_without_lion", "opt_muon_angle_hyper_shape",
                                  "opt_adam_l2_spread_predicted")}
JUDGED_SEED = calibrate.JUDGED_SEED


def _record(errors, preset="quick"):
    errors = np.asarray(errors, dtype=float)
    rows = {s: {"id": "x", "quantity": "q", "rel_error": float(np.max(np.abs(errors[:, j]))), "error_kind": "relative",
                "comparisons": [[f"pair {i}", 1.0, 1.0 + e] for i, e in enumerate(errors[:, j])]}
            for j, s in enumerate(range(1, errors.shape[1] + 1))}
    return calibrate.record(rows, preset, "abc1234", "2026-12-07")


def test_spread_is_the_pooled_seed_to_seed_standard_deviation():
    errors = [[0.01, 0.03, 0.02, 0.04], [-0.1, -0.1, -0.1, -0.1]]
    want = np.sqrt((np.var(errors[0], ddof=1) + 0.0) / 2)
    assert calibrate.spread(errors) == pytest.approx(want, rel=1e-12)


def test_spread_ignores_the_mean_error():
    a = np.array([[0.01, -0.01, 0.02, 0.0]])
    assert calibrate.spread(a + 0.074) == pytest.approx(calibrate.spread(a), rel=1e-9)


@pytest.mark.parametrize("errors", [[0.01, 0.02], [[0.01], [0.02]]])
def test_spread_needs_two_seeds(errors):
    with pytest.raises(ValueError, match="seeds >= 2"):
        calibrate.spread(errors)


def test_a_systematic_miss_of_the_law_fails_under_its_calibrated_tolerance():
    """A law missing by 7.4% at every seed, with a seed-to-seed noise of 0.5%, gets a tolerance
    of 3 x 0.5%: the miss is reported as a failure, not absorbed."""
    rec = _record([[0.074, 0.069, 0.079, 0.074]])
    tol, source = registry.calibrated("x", records={"x": rec})
    assert tol == pytest.approx(max(registry.FLOOR, registry.K * rec["spread"]))
    assert tol < 0.03 and rec["mean_error"] == pytest.approx(0.074)
    assert not claims.claim("t", "f.png", "q", 1.0, 1.074, tol, "theory.f", kind="prediction", inputs=["lr"])["pass"]
    assert "mean error +0.074 (not in the tolerance)" in source


def test_noise_alone_passes_under_its_calibrated_tolerance():
    rng = np.random.default_rng(0)
    rec = _record(rng.normal(0.0, 0.02, size=(6, 4)))
    tol, _ = registry.calibrated("x", records={"x": rec})
    assert tol == pytest.approx(registry.K * rec["spread"]) and tol > registry.FLOOR
    assert claims.claim("t", "f.png", "q", 1.0, 1.02, tol, "theory.f", kind="prediction", inputs=["lr"])["pass"]


@pytest.mark.parametrize("floor", [None, 0.002])
def test_a_nearly_noise_free_quantity_is_held_to_the_floor(floor):
    rec = _record([[1e-4, 2e-4, 1.5e-4, 1e-4]])
    tol, source = registry.calibrated("x", floor=floor, records={"x": rec})
    assert tol == (registry.FLOOR if floor is None else floor)
    assert f"floor {tol:g} -> tolerance {tol:.3g}" in source


@pytest.mark.parametrize("errors,unresolved", [([[0.3, -0.3, 0.2, -0.2]], True), ([[0.01, 0.03, 0.02, 0.04]], False)])
def test_a_tolerance_as_large_as_the_effect_says_the_claim_is_not_resolved(errors, unresolved):
    tol, source = registry.calibrated("x", records={"x": _record(errors)})
    assert (tol >= registry.UNRESOLVED, "cannot test the law" in source) == (unresolved, unresolved)


def test_the_source_names_preset_seeds_commit_date_and_spread():
    _, source = registry.calibrated("x", records={"x": _record([[0.01, 0.03, 0.02, 0.04]])})
    assert source.startswith("calibration over quick seeds 1-4 (commit abc1234, 2026-12-07): spread ")
    assert f"K = {registry.K:g}" in source


def test_record_refuses_claims_compared_differently_across_seeds():
    rows = {1: {"id": "x", "quantity": "q", "rel_error": 0.0, "comparisons": [["a", 1.0, 1.0]]},
            2: {"id": "x", "quantity": "q", "rel_error": 0.0, "comparisons": [["a", 1.0, 1.0], ["b", 1.0, 1.0]]}}
    with pytest.raises(ValueError, match="same number"):
        calibrate.record(rows, "quick", "c", "d")


def test_signed_errors_are_relative_or_absolute_by_the_row():
    rel = {"quantity": "q", "predicted": 2.0, "measured": 2.2, "error_kind": "relative"}
    ab = {"quantity": "q", "predicted": 0.0, "measured": -0.3, "error_kind": "absolute"}
    assert calibrate.signed_errors(rel)[0][1] == pytest.approx(0.1)
    assert calibrate.signed_errors(ab) == [("q", -0.3)]


def test_worst_keeps_every_comparison_for_the_calibration():
    row = claims.worst([(1.0, 1.01, "a"), (2.0, 2.5, "b")], "t", "f.png", "q", 0.05, "theory.f", kind="prediction",
                       inputs=["lr"])
    assert row["comparisons"] == [["a", 1.0, 1.01], ["b", 2.0, 2.5]] and row["quantity"].endswith("[b]")


@pytest.mark.parametrize("text,want", [("1,2,3,4", [1, 2, 3, 4]), ("1-4", [1, 2, 3, 4]), ("3,1,1", [1, 3]),
                                       ("0-1,5", [0, 1, 5])])
def test_seeds_argument_takes_lists_and_ranges(text, want):
    assert calibrate.seeds_arg(text) == want


@pytest.mark.parametrize("text", ["1", "1,1", "a", "-1,2", "", "0-3"])
def test_seeds_argument_refuses_fewer_than_two_seeds(text, capsys):
    assert main(["calibrate", "--seeds", text]) == 2
    assert "--seeds" in capsys.readouterr().err


# --- the task cache keeps seeds apart --------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_the_task_cache_key_contains_the_seed(name):
    mod = get(name)
    keys = [{spec_key(s) for s in mod.specs(config.make_config("quick", seed=seed))} for seed in (0, 1)]
    assert not keys[0] & keys[1]


# --- the calibration run merges into the file -----------------------------------------------------
@pytest.fixture(scope="module")
def merged(tmp_path_factory):
    d = tmp_path_factory.mktemp("calib")
    path = str(d / "calibration.json")
    with open(path, "w") as f:
        json.dump({"claims": {"x_other": {"spread": 0.5, "seeds": [7, 8]}}}, f)
    rc = main(["calibrate", "--preset", "tiny", "--data", "synthetic", "--only", "momentum_S", "--seeds", "1,2",
               "--jobs", "1", "--no-progress", "--cache", str(d / "cache"), "--file", path])
    with open(path) as f:
        return rc, json.load(f)


def test_calibrate_writes_the_claims_record(merged):
    rc, doc = merged
    rec = doc["claims"]["momentum_S_other_run"]
    assert rc == 0 and rec["preset"] == "tiny" and rec["seeds"] == [1, 2] and rec["commit"] and rec["date"]
    assert set(rec["judged_error"]) == {"1", "2"} and len(rec["signed_errors"]) == len(rec["labels"]) >= 1
    assert rec["spread"] == pytest.approx(calibrate.spread(rec["signed_errors"]))


def test_calibrate_keeps_the_records_of_other_claims(merged):
    _, doc = merged
    assert doc["claims"]["x_other"] == {"spread": 0.5, "seeds": [7, 8]}


# --- the registry applies the committed file ------------------------------------------------------
def _file_records():
    with open(registry.CALIBRATION_FILE) as f:
        return json.load(f)["claims"]


def test_the_committed_calibration_never_uses_the_judged_seed():
    recs = _file_records()
    assert recs and all(JUDGED_SEED not in r["seeds"] and len(r["seeds"]) >= 2 for r in recs.values())


def test_every_calibrated_entry_takes_its_tolerance_from_the_file_by_the_rule():
    recs = _file_records()
    done = [e for e in registry.REGISTRY.values() if e.tolerance_source.startswith(registry.CALIBRATED)]
    assert done
    for e in done:
        floor = registry.FLOOR if e.floor is None else e.floor
        assert e.tolerance == pytest.approx(max(floor, registry.K * recs[e.id]["spread"]), rel=1e-12), e.id


def test_every_prediction_is_calibrated_or_a_listed_exception():
    pending = set()
    for e in registry.REGISTRY.values():
        if e.kind != "prediction":
            continue
        if e.id in registry.UNCALIBRATED:
            assert not e.tolerance_source.startswith((registry.CALIBRATED, registry.PENDING)), e.id
        elif not e.tolerance_source.startswith(registry.CALIBRATED):
            assert e.tolerance_source.startswith(registry.PENDING), e.id
            pending.add(e.id)
    assert pending == PENDING, "predictions not yet calibrated (run refnet calibrate --only ...)"


def test_the_exceptions_are_few_registered_and_explained():
    assert len(registry.UNCALIBRATED) <= 8
    for id, reason in registry.UNCALIBRATED.items():
        assert id in registry.REGISTRY and len(reason) > 20, id


def test_identities_keep_their_rounding_tolerance():
    for e in registry.REGISTRY.values():
        if e.kind == "identity":
            assert not e.tolerance_source.startswith((registry.CALIBRATED, registry.PENDING)), e.id
            assert e.tolerance <= 1e-5, e.id


def test_a_new_claim_without_a_record_keeps_its_literal_tolerance_and_says_so():
    e = replace(registry.entry("sgd_l2_angle"), id="x_new_claim", tolerance=0.07, tolerance_source="my reason")
    try:
        registry.register(e)
        got = registry.entry("x_new_claim")
        assert got.tolerance == 0.07 and got.tolerance_source == registry.PENDING + "my reason"
    finally:
        registry.REGISTRY.pop("x_new_claim", None)


def test_a_row_of_a_calibrated_claim_is_judged_by_the_calibrated_tolerance():
    e = next(e for e in registry.REGISTRY.values() if e.tolerance_source.startswith(registry.CALIBRATED)
             and registry.systematic_miss(e) is None and e.tolerance < registry.UNRESOLVED)
    r = registry.row(e.id, "q", 1.0, 1.0 + 0.99 * e.tolerance, inputs=["lr"])
    assert (r["tolerance"], r["tolerance_source"], r["pass"]) == (e.tolerance, e.tolerance_source, True)
    assert not registry.row(e.id, "q", 1.0, 1.0 + 1.01 * e.tolerance, inputs=["lr"])["pass"]


def test_the_calibration_file_is_in_the_package():
    assert os.path.dirname(registry.CALIBRATION_FILE) == os.path.dirname(calibrate.__file__)
    assert registry.CALIBRATION_FILE == calibrate.FILE


def _registered(tolerance, id="x_claim", kind="prediction", source=None):
    base = registry.entry("sgd_l2_angle")
    e = replace(base, id=id, kind=kind, tolerance=tolerance,
                tolerance_source=source or registry.CALIBRATED + "a test's own record")
    registry.REGISTRY[id] = e
    return e


@pytest.mark.parametrize("error", [0.0, 0.1, 0.4])
def test_a_prediction_whose_tolerance_is_as_large_as_the_effect_never_holds(error):
    _registered(registry.UNRESOLVED)
    try:
        r = registry.row("x_claim", "q", 1.0, 1.0 + error, inputs=["lr"])
        assert r["pass"] is False and r["note"].startswith("inconclusive")
    finally:
        registry.REGISTRY.pop("x_claim", None)


def test_a_prediction_just_below_the_unresolved_tolerance_is_judged_as_usual():
    _registered(0.99 * registry.UNRESOLVED)
    try:
        assert registry.row("x_claim", "q", 1.0, 1.1, inputs=["lr"])["pass"] is True
    finally:
        registry.REGISTRY.pop("x_claim", None)


def test_a_failed_row_without_a_diagnosis_gets_the_calibrations(monkeypatch):
    rec = {"preset": "quick", "seeds": [1, 2, 3, 4], "mean_error": -0.03, "spread": 0.02}
    monkeypatch.setattr(registry, "calibration_records", lambda path=None: {"x_claim": rec})
    _registered(0.06)
    try:
        failed = registry.row("x_claim", "q", 1.0, 0.93, inputs=["lr"])
        assert not failed["pass"] and "-3.0%" in failed["note"] and "noise" in failed["note"]
        assert failed["note"].startswith(registry.entry("x_claim").note)
        held = registry.row("x_claim", "q", 1.0, 0.99, inputs=["lr"])
        assert held["pass"] and held["note"] == registry.entry("x_claim").note
        diagnosed = registry.row("x_claim", "q", 1.0, 0.93, inputs=["lr"], note="the cause")
        assert diagnosed["note"] == "the cause"
    finally:
        registry.REGISTRY.pop("x_claim", None)


def test_a_claim_whose_calibration_shows_a_systematic_miss_never_holds(monkeypatch):
    rec = {"preset": "quick", "seeds": [1, 2, 3, 4], "mean_error": -0.05, "spread": 0.01,
           "judged_error": {"1": 0.05, "2": 0.06, "3": 0.04, "4": 0.05}}
    monkeypatch.setattr(registry, "calibration_records", lambda path=None: {"x_claim": rec})
    _registered(0.03)
    try:
        r = registry.judge(registry.row("x_claim", "q", 1.0, 1.0, inputs=["lr"]), "quick")  # exact: luck
        assert r["pass"] is False and r["note"].startswith("a systematic miss") and "-5.0%" in r["note"]
        assert r["held_at_calibration_seeds"] == [0, 4]
        other = registry.judge(registry.row("x_claim", "q", 1.0, 1.0, inputs=["lr"]), "default")
        assert other["pass"] is False and other["note"].startswith("unconfirmed")
    finally:
        registry.REGISTRY.pop("x_claim", None)


@pytest.mark.parametrize("mean, spread", [(-0.008, 0.001), (0.03, 0.04)])
def test_a_mean_miss_within_the_floor_or_the_seeds_noise_is_not_systematic(monkeypatch, mean, spread):
    rec = {"preset": "quick", "seeds": [1, 2, 3, 4], "mean_error": mean, "spread": spread,
           "judged_error": {"1": 0.01, "2": 0.0, "3": 0.02, "4": 0.0}}
    monkeypatch.setattr(registry, "calibration_records", lambda path=None: {"x_claim": rec})
    e = _registered(0.12)
    try:
        assert registry.systematic_miss(e) is None
        r = registry.judge(registry.row("x_claim", "q", 1.0, 1.0, inputs=["lr"]), "quick")
        assert r["pass"] is True and r["held_at_calibration_seeds"] == [4, 4]
    finally:
        registry.REGISTRY.pop("x_claim", None)


def test_narrowed_predictions_are_counted_apart_from_the_headline():
    row = dict(kind="prediction", inputs=["lr"])
    wide = claims.claim("w", "f.png", "q", 1.0, 2.0, 0.05, "theory.f", note="why", **row)
    narrow = claims.claim("n", "f.png", "q", 1.0, 1.0, 0.05, "theory.f", **row)
    narrow["narrows"] = "w"
    n = claims.counts([wide, narrow])
    assert n["prediction"] == (0, 1) and n["narrowed"] == (1, 1)
    assert claims.summary([wide, narrow]).startswith("0 of 1 predictions hold")
    assert "1 of 1 narrowed predictions" in claims.summary([wide, narrow])


def test_every_narrowed_entry_names_a_registered_wider_claim():
    narrowed = [e for e in registry.REGISTRY.values() if e.narrows]
    assert narrowed
    for e in narrowed:
        assert e.kind == "prediction" and e.narrows in registry.REGISTRY and e.narrows != e.id, e.id
