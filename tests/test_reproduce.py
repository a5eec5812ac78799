"""`refnet reproduce`: arguments, outputs, the cache across calls, --only, and the quick run."""

import json
import os

import pytest

from refnet.cli import main
from refnet.data import load_dataset
from refnet.experiments import NAMES

TINY = ["reproduce", "--preset", "tiny", "--data", "synthetic", "--jobs", "1", "--no-progress"]


def _report(out):
    with open(os.path.join(out, "report.json")) as f:
        return json.load(f)


def _pngs(out):
    return sorted(f for f in os.listdir(out) if f.endswith(".png"))


@pytest.fixture(scope="module")
def tiny_out(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("reproduce"))
    rc = main(TINY + ["--out", out])
    return out, rc


def test_writes_a_figure_per_experiment_and_the_report(tiny_out):
    out, rc = tiny_out
    report = _report(out)
    assert len(_pngs(out)) == len(NAMES)
    assert all(open(os.path.join(out, f), "rb").read(8) == b"\x89PNG\r\n\x1a\n" for f in _pngs(out))
    assert set(report) >= {"claims", "config", "versions", "wall_time_s"}
    assert rc == (0 if all(c["pass"] for c in report["claims"] if c["kind"] == "identity") else 1)
    md = open(os.path.join(out, "report.md")).read()
    assert md.count("\n| ") >= len(report["claims"])


def test_second_call_only_redraws(tiny_out):
    out, _ = tiny_out
    first = _report(out)
    main(TINY + ["--out", out])
    second = _report(out)
    assert first["config"]["tasks_run"] > 0 and second["config"]["tasks_run"] == 0
    assert [c["measured"] for c in first["claims"]] == [c["measured"] for c in second["claims"]]


def test_only_runs_the_named_experiments(tmp_path):
    rc = main(TINY + ["--out", str(tmp_path), "--only", "invariance,effective_lr"])
    report = _report(tmp_path)
    assert rc == 0 and _pngs(tmp_path) == ["fig1_invariance.png", "fig2_effective_lr.png"]
    assert {c["figure"] for c in report["claims"]} == {"fig1_invariance.png", "fig2_effective_lr.png"}


@pytest.mark.parametrize("extra", [["--only", "nope"], ["--only", ","], ["--jobs", "0"]])
def test_bad_arguments_exit_2(tmp_path, extra, capsys):
    assert main(TINY + ["--out", str(tmp_path)] + extra) == 2
    assert "refnet reproduce:" in capsys.readouterr().err


def test_tiny_preset_needs_synthetic_data(tmp_path):
    assert main(["reproduce", "--preset", "tiny", "--out", str(tmp_path)]) == 2


@pytest.mark.slow
def test_quick_end_to_end_on_real_data_holds_every_identity(tmp_path):
    try:
        load_dataset("fashion-mnist", subset=10, test_subset=10)
    except FileNotFoundError as err:
        pytest.skip(f"Fashion-MNIST is not installed: {err}")
    rc = main(["reproduce", "--quick", "--out", str(tmp_path), "--jobs", "2", "--no-progress"])
    report = _report(tmp_path)
    predictions = [c for c in report["claims"] if c["kind"] == "prediction"]
    assert rc == 0 and len(_pngs(tmp_path)) == len(NAMES)
    assert [c["id"] for c in report["claims"] if c["kind"] == "identity" and not c["pass"]] == []
    assert len(predictions) >= 8
    assert [c["id"] for c in predictions if not c["pass"] and not (c["note"] or "").strip()] == []


def test_figures_are_numbered_once_each_in_the_order_of_the_experiments():
    from refnet.experiments import get
    assert [get(n).FIGURE.split("_")[0] for n in NAMES] == [f"fig{i}" for i in range(1, len(NAMES) + 1)]


# --- the claims: kinds, registry, exit status ---------------------------------------------
def test_every_row_is_in_the_registry_with_its_text_tolerance_and_kind(tiny_out):
    from refnet.experiments import registry
    for c in _report(tiny_out[0])["claims"]:
        e = registry.REGISTRY.get(c.get("id"))
        assert e is not None, f"claim {c['claim']!r} has no registry id"
        assert (c["claim"], c["tolerance"], c["kind"], c["theory"], c["figure"], c["tolerance_source"]) == (
            e.text, e.tolerance, e.kind, e.theory, e.figure, e.tolerance_source), c["id"]


def test_registry_ids_appear_once_per_report(tiny_out):
    ids = [c["id"] for c in _report(tiny_out[0])["claims"]]
    assert len(ids) == len(set(ids))


def test_report_rows_have_a_kind_and_a_list_of_inputs(tiny_out):
    from refnet.experiments.claims import KINDS
    rows = _report(tiny_out[0])["claims"]
    assert {c["kind"] for c in rows} == set(KINDS)
    assert all(isinstance(c["inputs"], list) and all(isinstance(i, str) for i in c["inputs"]) for c in rows)


def test_every_prediction_lists_inputs_that_exclude_its_own_window(tiny_out):
    predictions = [c for c in _report(tiny_out[0])["claims"] if c["kind"] == "prediction"]
    assert predictions
    for c in predictions:
        assert c["inputs"] and all(i.strip() for i in c["inputs"]), c["id"]
        assert c["window"], f"{c['id']}: a prediction names the window its measurement comes from"
        assert not any(c["window"] in i for i in c["inputs"]), c["id"]


def test_summary_line_counts_each_kind(tiny_out):
    from refnet.experiments import claims
    report = _report(tiny_out[0])
    rows = report["claims"]
    headline = [c for c in rows if not (c["kind"] == "prediction" and c.get("narrows"))]  # narrowed: apart
    n = {k: (sum(c["pass"] for c in headline if c["kind"] == k), sum(c["kind"] == k for c in headline))
         for k in claims.KINDS}
    expected = (f"{n['prediction'][0]} of {n['prediction'][1]} predictions hold; {n['identity'][0]} of "
                f"{n['identity'][1]} identities hold; {n['consistency'][1]} consistency checks")
    assert report["summary"].startswith(expected)
    assert expected in open(os.path.join(tiny_out[0], "report.md")).read()


def _planted(monkeypatch, kind):
    """Make experiment 1 add one failing row of ``kind``."""
    from refnet.experiments import claims, invariance
    analyze = invariance.analyze

    def planted(cfg, results):
        data = analyze(cfg, results)
        data["claims"].append(claims.claim("planted", invariance.FIGURE, "q", 1.0, 2.0, 0.05, "theory.planted",
                                           kind=kind, inputs=["hyperparameters: none"], note="planted failure"))
        return data
    monkeypatch.setattr(invariance, "analyze", planted)


@pytest.mark.parametrize("kind, rc", [("identity", 1), ("prediction", 0), ("consistency", 0)])
def test_exit_status_fails_only_on_a_failed_identity(tmp_path, monkeypatch, capsys, kind, rc):
    _planted(monkeypatch, kind)
    assert main(TINY + ["--out", str(tmp_path), "--only", "invariance"]) == rc
    text = capsys.readouterr().out
    assert ("FAILED" in text) == (kind != "consistency")  # a failed prediction is reported, with its note
    assert ("planted failure" in text) == (kind != "consistency")
    assert [c["pass"] for c in _report(tmp_path)["claims"] if c["claim"] == "planted"] == [False]


def test_cupy_version_is_none_without_cupy_and_the_version_with_it(monkeypatch):
    from refnet import backend
    monkeypatch.setattr(backend, "_cupy", lambda: None)
    assert backend.cupy_version() is None
    monkeypatch.setattr(backend, "_cupy", lambda: type("FakeCupy", (), {"__version__": "13.0.0"}))
    assert backend.cupy_version() == "13.0.0"
