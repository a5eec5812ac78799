"""``refnet train --opt lion|muon`` and ``--wrapper rotational|hyperball``: each trains, records the
optimizer it was asked for with its defaults, resumes bit for bit, and a bad combination is
one line with exit status 2."""

import json
import re

import numpy as np
import pytest

from refnet.cli import main

STEPS = ["train", "--data", "synthetic", "--model", "mlp", "--width", "16", "--batch-size", "500",
         "--subset", "1000", "--no-progress"]  # add --steps N
CLI = STEPS + ["--epochs", "1"]

RUNS = {  # flags: (optimizer class recorded, param group options expected)
    "lion": (["--opt", "lion", "--weight-decay", "1.0"], "Lion", {"lr": 1e-4, "betas": [0.9, 0.99], "weight_decay": 1.0}),
    "muon": (["--opt", "muon", "--lr", "0.02", "--ns-steps", "4"], "Muon",
             {"lr": 0.02, "momentum": 0.95, "nesterov": True, "weight_decay": 0.1, "ns_steps": 4, "eps": 1e-7}),
    "muon-heavy-ball": (["--opt", "muon", "--no-nesterov", "--momentum", "0.9", "--adjust-lr-fn", "match_rms_adamw"],
                        "Muon", {"nesterov": False, "momentum": 0.9, "adjust_lr_fn": "match_rms_adamw"}),
    "muon-no-momentum": (["--opt", "muon", "--momentum", "0"], "Muon",  # torch's Muon accepts it, nesterov or not
                         {"momentum": 0.0, "nesterov": True}),
    "rotational-sgd": (["--momentum", "0.9", "--l2", "5e-4", "--wrapper", "rotational"], "Rotational",
                       {"lr": 0.01, "momentum": 0.9, "l2": 5e-4}),
    "rotational-adam": (["--opt", "adam", "--l2", "1e-3", "--wrapper", "rotational", "--eta-r", "0.01"],
                        "Rotational", {"betas": [0.9, 0.999], "l2": 1e-3}),
    "hyperball-adam": (["--opt", "adam", "--wrapper", "hyperball"], "Hyperball", {"lr": 1e-3}),
}


@pytest.mark.parametrize("name", sorted(RUNS))
def test_cli_trains_with_the_optimizer_asked_for_and_its_defaults(tmp_path, name):
    flags, cls, options = RUNS[name]
    assert main(CLI + flags + ["--out", str(tmp_path)]) == 0
    config = json.loads((tmp_path / "history.json").read_text())["config"]
    assert config["optimizer"] == cls
    group = config["param_groups"][0]
    assert {k: group[k] for k in options} == options


@pytest.mark.parametrize("name", ["muon", "rotational-sgd", "hyperball-adam"])
def test_cli_resume_from_mid_epoch_matches_a_straight_run_to_the_bit(tmp_path, name):
    flags = RUNS[name][0]
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert main(STEPS + flags + ["--out", str(straight), "--steps", "5"]) == 0
    assert main(STEPS + flags + ["--out", str(split), "--steps", "3"]) == 0
    assert main(STEPS + flags + ["--out", str(split), "--steps", "5", "--resume"]) == 0
    a, b = (np.load(d / "checkpoint.npz", allow_pickle=False) for d in (straight, split))
    assert sorted(a.files) == sorted(b.files)
    for k in a.files:
        if k != "__meta__":
            assert np.array_equal(a[k], b[k]), k


@pytest.mark.parametrize("flags, match", [
    (["--opt", "lion", "--l2", "1e-3"], "--l2 does not apply to --opt lion"),
    (["--opt", "muon", "--unit-norm"], "--unit-norm does not apply to --opt muon"),
    (["--opt", "lion", "--momentum", "0.9"], "--momentum does not apply to --opt lion"),
    (["--opt", "adam", "--ns-steps", "3"], "--ns-steps does not apply to --opt adam"),
    (["--eta-r", "0.01"], "--eta-r does not apply to --wrapper none"),
    (["--opt", "adam", "--l2", "1e-3", "--wrapper", "rotational"], r"Rotational\(eta_r\)"),
    (["--wrapper", "rotational"], r"Rotational\(eta_r\).*is 0"),
    (["--wrapper", "hyperball", "--unit-norm"], "unit_norm"),
    (["--opt", "muon", "--ns-steps", "100"], r"Muon\(ns_steps\)"),
    (["--opt", "lion", "--betas", "0.9", "1.0"], r"--betas: got 1"),
])
def test_cli_bad_combination_is_one_line_and_exit_status_2(tmp_path, capsys, flags, match):
    assert main(CLI + flags + ["--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(match, err), err
