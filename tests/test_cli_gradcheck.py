"""`refnet gradcheck`: checks every built-in op and module, prints a table, exit code 0/1;
`refnet gradcheck --power`: the mutation campaign, its table and its JSON."""

import json

import numpy as np
import pytest

import refnet
from refnet.cli import main
from refnet.gradcheck import suite


def test_gradcheck_checks_everything_and_exits_0(capsys):
    assert main(["gradcheck"]) == 0
    out = capsys.readouterr().out
    for name in suite.CASES:
        assert name in out
    total = len(suite.CASES) + len(suite.SECOND_ORDER) * len(suite.second_order_cases())  # + jvp, hvp rows
    assert f"{total}/{total} ok" in out and "resolution" in out


@pytest.mark.parametrize("name", ["batchnorm", "batchnorm_eval", "layernorm", "weightnorm",
                                  "nn.BatchNorm1d", "nn.BatchNorm2d", "nn.BatchNorm2d.eval",
                                  "nn.LayerNorm", "nn.WeightNorm(Linear)", "nn.WeightNorm(Conv2d)"])
def test_built_in_cases_cover_the_normalizations(name):
    assert name in suite.CASES


@pytest.mark.parametrize("name", ["linear", "conv2d", "maxpool2d", "avgpool2d", "relu",
                                  "softmax_cross_entropy", "nn.Linear", "nn.Conv2d", "nn.ReLU",
                                  "nn.MaxPool2d", "nn.AvgPool2d", "nn.Flatten", "nn.Sequential"])
def test_built_in_cases_cover_the_core_ops_and_modules(name):
    assert name in suite.CASES


@pytest.mark.parametrize("name", list(suite.CASES))
def test_the_large_size_of_each_case_has_a_tensor_above_max_full(name):
    from refnet.gradcheck import MAX_FULL
    setup = suite.make_case(name, large=True)
    tensors = list(setup.args) + ([p.data for p in setup.fn.parameters()] if setup.kind == "module" else [])
    assert max(np.size(a) for a in tensors if a is not None) > MAX_FULL


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"refnet {refnet.__version__}"


def test_op_linear_checks_only_linear(capsys):
    assert main(["gradcheck", "--op", "linear", "--order", "1"]) == 0
    out = capsys.readouterr().out
    assert "1/1 ok" in out and "conv2d" not in out


@pytest.mark.parametrize("argv", [["--op", "relu,conv2d"], ["--op", "relu", "--op", "conv2d"]])
def test_op_accepts_a_comma_list_or_repeats(argv, capsys):
    assert main(["gradcheck", "--order", "1"] + argv) == 0
    out = capsys.readouterr().out
    assert "2/2 ok" in out and "relu" in out and "conv2d" in out


def test_op_names_are_case_insensitive(capsys):
    assert main(["gradcheck", "--op", "NN.LINEAR"]) == 0
    assert "nn.Linear" in capsys.readouterr().out


@pytest.mark.parametrize("mode", ["full", "directional", "fast"])
def test_mode_is_passed_to_every_check(mode, capsys):
    assert main(["gradcheck", "--op", "linear", "--mode", mode, "-v"]) == 0
    assert f"  w    4x5    {mode}" in capsys.readouterr().out


def test_unknown_op_is_a_clear_usage_error(capsys):
    assert main(["gradcheck", "--op", "linear,convolution"]) == 2
    err = capsys.readouterr().err
    assert "unknown op 'convolution'" in err and "conv2d" in err and "--list" in err


def test_list_names_every_case(capsys):
    assert main(["gradcheck", "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list(suite.CASES)


def _wrong_linear(rng, large):
    from refnet.ops import linear_backward, linear_forward

    def backward(dy, cache):
        dx, dw, db = linear_backward(dy, cache)
        return dx, dw * 1.001, db
    return suite.Setup("op", (linear_forward, backward), (rng.standard_normal((3, 4)),
                                                           rng.standard_normal((2, 4)), rng.standard_normal(2)))


def test_a_failing_case_exits_1_and_prints_its_report(monkeypatch, capsys):
    monkeypatch.setitem(suite.CASES, "linear", ("op", "a wrong dw", _wrong_linear))
    assert main(["gradcheck", "--op", "linear,relu", "--order", "1"]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out and "NOT OK: linear" in out and "1/2 ok" in out


def test_a_case_that_raises_exits_1_with_its_reason(monkeypatch, capsys):
    def broken(rng, large):
        raise ValueError("no such shape")

    monkeypatch.setitem(suite.CASES, "relu", ("op", "broken", broken))
    assert main(["gradcheck", "--op", "relu"]) == 1
    assert "ValueError: no such shape" in capsys.readouterr().out


def _row(out, name):
    return next(line.split()[:5] for line in out.splitlines() if line.split()[:1] == [name])


def test_results_do_not_depend_on_which_cases_run(capsys):
    """A case's inputs come from its name and --seed, not from its position in the run."""
    main(["gradcheck"])
    everything = capsys.readouterr().out
    main(["gradcheck", "--op", "relu,conv2d"])
    chosen = capsys.readouterr().out
    assert _row(everything, "conv2d") == _row(chosen, "conv2d")


def test_seed_changes_the_inputs(capsys):
    main(["gradcheck", "--op", "conv2d", "--seed", "1"])
    one = capsys.readouterr().out
    main(["gradcheck", "--op", "conv2d", "--seed", "2"])
    assert _row(one, "conv2d") != _row(capsys.readouterr().out, "conv2d")


# --- --power --------------------------------------------------------------------------------
def test_power_prints_the_rates_writes_json_and_exits_0(tmp_path, capsys):
    path = tmp_path / "power.json"
    assert main(["gradcheck", "--power", "--op", "relu", "--seeds", "1", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert "detected" in out and "false alarms" in out and "inconclusive" in out and "CPU" in out
    result = json.loads(path.read_text())
    assert result["cases"]["relu"]["detection_rate"] == 1.0 and result["summary"]["false_alarms"] == 0
    assert result["arguments"]["relu"]["x"]["mutants"] == result["cases"]["relu"]["mutants"]
    assert result["seeds"] == [0] and result["cpu_s"] >= 0
    assert [p.name for p in tmp_path.iterdir()] == ["power.json"]  # no temporary file left behind


def test_power_exits_1_when_a_correct_backward_is_flagged(monkeypatch, capsys):
    monkeypatch.setitem(suite.CASES, "linear", ("op", "a wrong dw", _wrong_linear))
    assert main(["gradcheck", "--power", "--op", "linear", "--seeds", "1"]) == 1
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("linear"))
    assert "100% (3/3)" in row


@pytest.mark.parametrize("where", ["missing folder", "a directory"])
def test_power_refuses_an_unwritable_json_path_before_running(where, tmp_path, monkeypatch, capsys):
    from refnet.gradcheck import campaign
    monkeypatch.setattr(campaign, "power", lambda *a, **k: pytest.fail("the campaign ran"))
    path = {"missing folder": tmp_path / "no" / "power.json", "a directory": tmp_path}[where]
    assert main(["gradcheck", "--power", "--json", str(path)]) == 2
    assert capsys.readouterr().err.startswith("refnet gradcheck: --json: got")


def test_json_without_power_is_a_usage_error(tmp_path, capsys):
    assert main(["gradcheck", "--json", str(tmp_path / "p.json")]) == 2
    assert "--json needs --power" in capsys.readouterr().err


def test_mode_with_power_is_a_usage_error(capsys):
    assert main(["gradcheck", "--power", "--mode", "fast"]) == 2
    assert "--power runs every mode itself" in capsys.readouterr().err


@pytest.mark.parametrize("bad", ["0", "-1", "two"])
def test_seeds_must_be_a_positive_integer(bad, capsys):
    assert main(["gradcheck", "--power", "--seeds", bad]) == 2
    assert "--seeds: got" in capsys.readouterr().err
