"""Learning-rate schedules: multipliers of the base lr as functions of the step (0, 1, ...)."""

import math

import pytest

from refnet.optim import constant, cosine, get_schedule, linear_warmup, step_decay, warmup_then


def test_constant_is_one_at_every_step():
    assert [constant(t) for t in (0, 1, 10, 10 ** 6)] == [1.0] * 4


def test_step_decay_multiplies_by_gamma_every_step_size_steps():
    assert [step_decay(t, 3, gamma=0.5) for t in range(8)] == [1, 1, 1, .5, .5, .5, .25, .25]


@pytest.mark.parametrize("final", [0.0, 0.1])
def test_cosine_runs_from_one_to_final_then_stays(final):
    T = 10
    assert cosine(0, T, final) == 1.0
    assert cosine(T // 2, T, final) == pytest.approx(0.5 * (1 + final), abs=1e-15)
    assert cosine(T, T, final) == pytest.approx(final, abs=1e-15)
    assert cosine(3 * T, T, final) == cosine(T, T, final)
    values = [cosine(t, T, final) for t in range(T + 1)]
    assert all(a > b for a, b in zip(values, values[1:]))
    assert values[3] == pytest.approx(final + (1 - final) * 0.5 * (1 + math.cos(math.pi * 0.3)), abs=1e-15)


def test_cosine_is_symmetric_about_its_midpoint():
    T = 8
    for t in range(T + 1):
        assert cosine(t, T) + cosine(T - t, T) == pytest.approx(1.0, abs=1e-15)


def test_linear_warmup_rises_to_one_in_warmup_steps_then_stays():
    assert [linear_warmup(t, 4) for t in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert linear_warmup(0, 0) == 1.0


def test_warmup_then_warms_up_then_follows_the_schedule_shifted():
    sched = warmup_then(lambda t: 0.5 ** t, 4)
    assert [sched(t) for t in range(7)] == [0.25, 0.5, 0.75, 1.0, 1.0, 0.5, 0.25]


@pytest.mark.parametrize("name,options,expected", [
    ("constant", {}, [1.0] * 6),
    ("step", {"step_size": 2}, [1, 1, .1, .1, .1 ** 2, .1 ** 2]),
    ("step", {"step_size": 2, "gamma": 0.5}, [1, 1, .5, .5, .25, .25]),
    ("cosine", {"total_steps": 5}, [cosine(t, 5) for t in range(6)]),
    ("cosine", {"total_steps": 4, "final": 0.2}, [cosine(min(t, 4), 4, 0.2) for t in range(6)]),
    ("warmup", {"warmup_steps": 3}, [1 / 3, 2 / 3, 1, 1, 1, 1]),
    ("warmup-constant", {"warmup_steps": 2}, [0.5, 1, 1, 1, 1, 1]),
    ("warmup-step", {"warmup_steps": 2, "step_size": 2, "gamma": 0.5}, [.5, 1, 1, 1, .5, .5]),
    ("warmup-cosine", {"warmup_steps": 2, "total_steps": 6}, [0.5, 1] + [cosine(t, 4) for t in range(4)]),
])
def test_get_schedule_builds_the_named_schedule(name, options, expected):
    sched = get_schedule(name, **options)
    assert [sched(t) for t in range(6)] == pytest.approx(expected, abs=1e-15)


def test_warmup_cosine_reaches_final_at_total_steps():
    sched = get_schedule("warmup-cosine", warmup_steps=10, total_steps=100, final=0.05)
    assert sched(9) == 1.0
    assert sched(100) == pytest.approx(0.05, abs=1e-15)


@pytest.mark.parametrize("call,error,match", [
    (lambda: get_schedule("linear"), ValueError, "expected one of"),
    (lambda: get_schedule("step"), TypeError, "step_size"),
    (lambda: get_schedule("cosine", total_steps=10, gama=0.1), TypeError, "gama"),
    (lambda: get_schedule("warmup-cosine", total_steps=10), TypeError, "warmup_steps"),
    (lambda: get_schedule("warmup-cosine", warmup_steps=10, total_steps=10), ValueError, "total_steps"),
    (lambda: get_schedule("step", step_size=0), ValueError, "step_size"),
    (lambda: step_decay(3, 2, gamma=-0.1), ValueError, "gamma"),
    (lambda: cosine(3, 0), ValueError, "total_steps"),
    (lambda: cosine(3, 10, final=float("nan")), ValueError, "final"),
    (lambda: constant(-1), ValueError, "step"),
    (lambda: linear_warmup(1.5, 3), TypeError, "step"),
    (lambda: warmup_then(0.5, 3), TypeError, "schedule"),
])
def test_bad_arguments_raise_clear_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()
