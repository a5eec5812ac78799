"""`refnet gradcheck`: checks every built-in op and module, prints a table, exit code 0/1."""

import pytest

import refnet
from refnet import gradcheck_suite
from refnet.cli import main


def test_gradcheck_checks_everything_and_exits_0(capsys):
    assert main(["gradcheck"]) == 0
    out = capsys.readouterr().out
    for name in gradcheck_suite.CASES:
        assert name in out
    assert f"{len(gradcheck_suite.CASES)}/{len(gradcheck_suite.CASES)} passed" in out


@pytest.mark.parametrize("name", ["batchnorm", "batchnorm_eval", "layernorm", "weightnorm",
                                  "nn.BatchNorm1d", "nn.BatchNorm2d", "nn.BatchNorm2d.eval",
                                  "nn.LayerNorm", "nn.WeightNorm(Linear)", "nn.WeightNorm(Conv2d)"])
def test_built_in_cases_cover_the_normalizations(name):
    assert name in gradcheck_suite.CASES


@pytest.mark.parametrize("name", ["linear", "conv2d", "maxpool2d", "avgpool2d", "relu",
                                  "softmax_cross_entropy", "nn.Linear", "nn.Conv2d", "nn.ReLU",
                                  "nn.MaxPool2d", "nn.AvgPool2d", "nn.Flatten", "nn.Sequential"])
def test_built_in_cases_cover_the_core_ops_and_modules(name):
    assert name in gradcheck_suite.CASES


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"refnet {refnet.__version__}"


def test_op_linear_checks_only_linear(capsys):
    assert main(["gradcheck", "--op", "linear"]) == 0
    out = capsys.readouterr().out
    assert "1/1 passed" in out and "conv2d" not in out


@pytest.mark.parametrize("argv", [["--op", "relu,conv2d"], ["--op", "relu", "--op", "conv2d"]])
def test_op_accepts_a_comma_list_or_repeats(argv, capsys):
    assert main(["gradcheck"] + argv) == 0
    out = capsys.readouterr().out
    assert "2/2 passed" in out and "relu" in out and "conv2d" in out


def test_op_names_are_case_insensitive(capsys):
    assert main(["gradcheck", "--op", "NN.LINEAR"]) == 0
    assert "nn.Linear" in capsys.readouterr().out


def test_unknown_op_is_a_clear_usage_error(capsys):
    assert main(["gradcheck", "--op", "linear,convolution"]) == 2
    err = capsys.readouterr().err
    assert "unknown op 'convolution'" in err and "conv2d" in err and "--list" in err


def test_list_names_every_case(capsys):
    assert main(["gradcheck", "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list(gradcheck_suite.CASES)


def test_a_failing_case_exits_1_and_prints_its_report(monkeypatch, capsys):
    from refnet.gradcheck import check_op
    from refnet.ops import linear_backward, linear_forward

    def wrong(rng):
        def backward(dy, cache):
            dx, dw, db = linear_backward(dy, cache)
            return dx, dw * 1.001, db
        return check_op(linear_forward, backward, (rng.standard_normal((3, 4)),
                                                   rng.standard_normal((2, 4)), rng.standard_normal(2)))

    monkeypatch.setitem(gradcheck_suite.CASES, "linear", ("op", "a wrong dw", wrong))
    assert main(["gradcheck", "--op", "linear,relu"]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "FAILED: linear" in out and "1/2 passed" in out


def test_a_case_that_raises_exits_1_with_its_reason(monkeypatch, capsys):
    def broken(rng):
        raise ValueError("no such shape")

    monkeypatch.setitem(gradcheck_suite.CASES, "relu", ("op", "broken", broken))
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
