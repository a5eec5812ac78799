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
    assert rc == (0 if all(c["pass"] for c in report["claims"]) else 1)
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
def test_quick_end_to_end_on_real_data_passes_every_claim(tmp_path):
    try:
        load_dataset("fashion-mnist", subset=10, test_subset=10)
    except FileNotFoundError as err:
        pytest.skip(f"Fashion-MNIST is not installed: {err}")
    rc = main(["reproduce", "--quick", "--out", str(tmp_path), "--jobs", "2", "--no-progress"])
    report = _report(tmp_path)
    assert len(_pngs(tmp_path)) >= 7
    assert [c for c in report["claims"] if not c["pass"]] == [] and rc == 0
