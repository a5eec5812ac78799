"""`refnet gradcheck` runs the second-order checks (check_jvp, check_hvp) on every op and the
loss; `refnet gradcheck --power --order 2` measures their power on planted JVP errors.

Tolerance: the checker's default rtol = 1e-5 per entry, and 1e-10 for <u,Hv> = <Hu,v>."""

import json

import pytest

from refnet import ops
from refnet.cli import main
from refnet.gradcheck import campaign, suite


def _rows(out, kind):
    return {line.split()[0]: line.split() for line in out.splitlines()
            if len(line.split()) > 1 and line.split()[1] == kind}


@pytest.mark.parametrize("kind", suite.SECOND_ORDER)
def test_gradcheck_lists_every_ops_second_order_row_as_ok(kind, capsys):
    assert main(["gradcheck", "--order", "2"]) == 0
    rows = _rows(capsys.readouterr().out, kind)
    assert set(rows) == set(suite.second_order_cases())
    assert all("ok" in row for row in rows.values())


def test_the_default_order_prints_first_and_second_order_rows(capsys):
    assert main(["gradcheck", "--op", "batchnorm,relu"]) == 0
    out = capsys.readouterr().out
    assert set(_rows(out, "op")) == set(_rows(out, "jvp")) == set(_rows(out, "hvp")) == {"batchnorm", "relu"}
    assert "6/6 ok" in out


def test_order_1_prints_no_second_order_rows(capsys):
    assert main(["gradcheck", "--op", "linear", "--order", "1"]) == 0
    out = capsys.readouterr().out
    assert _rows(out, "op") and not _rows(out, "jvp") and not _rows(out, "hvp")


def test_order_2_on_a_module_only_is_a_usage_error(capsys):
    assert main(["gradcheck", "--op", "nn.ReLU", "--order", "2"]) == 2
    assert "has JVPs" in capsys.readouterr().err


def _backward_jvp_scaled(original, factor):
    def backward_jvp(*args):
        grads = original(*args)
        return tuple(None if g is None else g * factor for g in grads) if isinstance(grads, tuple) \
            else grads * factor
    return backward_jvp


@pytest.mark.parametrize("name, attribute", [("linear", "linear_backward_jvp"),
                                             ("batchnorm", "batchnorm_backward_jvp"),
                                             ("maxpool2d", "maxpool2d_backward_jvp")])
def test_a_wrong_backward_jvp_makes_gradcheck_exit_1_and_name_the_op(name, attribute, monkeypatch, capsys):
    monkeypatch.setattr(ops, attribute, _backward_jvp_scaled(getattr(ops, attribute), 1.001))
    assert main(["gradcheck", "--op", name]) == 1
    out = capsys.readouterr().out
    assert f"NOT OK: {name} (hvp)" in out and "ok" in _rows(out, "op")[name]
    assert "failed" in _rows(out, "hvp")[name]


def test_a_wrong_forward_jvp_fails_both_second_order_rows(monkeypatch, capsys):
    original = ops.layernorm_forward_jvp
    monkeypatch.setattr(ops, "layernorm_forward_jvp", lambda *a: original(*a) * 1.001)
    assert main(["gradcheck", "--op", "layernorm", "--order", "2"]) == 1
    out = capsys.readouterr().out
    assert "failed" in _rows(out, "jvp")["layernorm"] and "failed" in _rows(out, "hvp")["layernorm"]


# --- power ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def second_order_power():
    return campaign.power_second_order(["linear", "relu", "batchnorm_1d", "softmax_cross_entropy"], seeds=(0,))


def test_the_second_order_campaign_detects_every_mutant(second_order_power):
    s = second_order_power["summary"]
    assert s["mutants"] > 0 and s["detected"] == s["mutants"], [
        c for c in second_order_power["checks"] if c["status"] not in ("failed", "not applicable")]


def test_the_second_order_campaign_fails_no_correct_jvp_and_no_control(second_order_power):
    s = second_order_power["summary"]
    assert s["correct"] > 0 and s["controls"] > 0
    assert s["false_alarms"] == 0 and s["controls_failed"] == 0 and s["inconclusive"] == 0


@pytest.mark.parametrize("mutant", ["BN without the variance term (ts Q)", "backward_jvp without tdout",
                                    "backward_jvp without tx", "forward_jvp without tw"])
def test_the_second_order_campaign_plants_the_dropped_terms(mutant, second_order_power):
    """Every planted one is caught; "not applicable" only where the term is zero (ReLU's tx)."""
    rows = [c for c in second_order_power["checks"] if c["mutant"] == mutant]
    assert any(c["status"] == "failed" for c in rows)
    assert all(c["status"] == "failed" or (c["case"], c["status"]) == ("relu", "not applicable") for c in rows)


def test_a_checker_that_never_sees_the_mutants_scores_zero(monkeypatch):
    real = suite.check_second_order
    monkeypatch.setattr(suite, "check_second_order", lambda setup, which, fns=None, **opts: real(setup, which, **opts))
    s = campaign.power_second_order(["linear"], seeds=(0,))["summary"]
    assert s["mutants"] > 0 and s["detected"] == 0


def test_power_order_2_prints_the_table_and_writes_json(tmp_path, capsys):
    path = tmp_path / "power2.json"
    assert main(["gradcheck", "--power", "--order", "2", "--op", "relu", "--seeds", "1", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert "second order" in out and "controls failed" in out and "relu" in out
    result = json.loads(path.read_text())
    assert result["cases"]["relu"]["detection_rate"] == 1.0 and result["by_check"]["hvp"]["mutants"] > 0


def test_power_order_2_exits_1_when_a_correct_jvp_is_flagged(monkeypatch, capsys):
    monkeypatch.setattr(ops, "relu_backward_jvp", _backward_jvp_scaled(ops.relu_backward_jvp, 1.001))
    assert main(["gradcheck", "--power", "--order", "2", "--op", "relu", "--seeds", "1"]) == 1
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("relu"))
    assert "50% (1/2)" in row  # check_hvp flags it; check_jvp does not call backward_jvp
