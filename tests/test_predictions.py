"""The held-out prediction experiments (cross_run, init_forgetting, schedule, adam_growth,
momentum_S) on the tiny synthetic preset: plain data, rows of the right kind with their inputs,
figures drawn; their verdicts can go either way (tests below make them fail)."""

import json

import numpy as np
import pytest

from refnet import plots
from refnet.experiments import config, get
from refnet.experiments.runner import Runner

NAMES = ("cross_run", "init_forgetting", "schedule", "adam_growth", "momentum_S")


@pytest.fixture(scope="module")
def cfg():
    return config.make_config("tiny", data="synthetic")


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    return Runner(jobs=1, cache_dir=str(tmp_path_factory.mktemp("cache")), progress=False)


@pytest.fixture(scope="module")
def results(cfg, runner):
    return {name: get(name).run(cfg, runner) for name in NAMES}


@pytest.mark.parametrize("name", NAMES)
def test_prediction_experiment_returns_plain_data_and_draws_its_figure(results, name, tmp_path):
    data = results[name]
    json.dumps(data, allow_nan=True)
    assert data["claims"] and data["name"] == name
    assert plots.plot(data, str(tmp_path / data["figure"])).endswith(".png")


@pytest.mark.parametrize("name", NAMES)
def test_every_prediction_lists_inputs_and_a_tolerance_source(results, name):
    for row in results[name]["claims"]:
        assert row["kind"] in ("identity", "consistency", "prediction")
        if row["kind"] == "prediction":
            assert row["inputs"] and all(isinstance(x, str) and x for x in row["inputs"])
            assert row["tolerance_source"]


@pytest.mark.parametrize("name", NAMES)
def test_predictions_use_no_window_of_the_run_they_judge(results, name):
    for row in results[name]["claims"]:
        if row["kind"] == "prediction":
            assert not any("same window" in x or "judged window" in x for x in row["inputs"])
