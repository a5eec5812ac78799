"""Non-finite or malformed input gets one clear error, never a verdict: a ValueError or
TypeError that names the argument, what it got, and (for NaN/inf) the first bad index."""

import re

import numpy as np
import pytest

from refnet import ops
from refnet.gradcheck import check_loss, check_module, check_op
from refnet.nn import Linear, Module

MODES = ["full", "directional"]


def _linear_args(rng):
    return rng.standard_normal((3, 4)), rng.standard_normal((2, 4)), rng.standard_normal(2)


def _with(a, index, value):
    a = a.copy()
    a[index] = value
    return a


# --- NaN and inf ------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("k, name", [(0, "x"), (1, "w"), (2, "b")])
def test_a_non_finite_input_names_the_argument_and_the_first_bad_index(k, name, value, mode, rng):
    args = list(_linear_args(rng))
    index = (1, 2)[:args[k].ndim]
    args[k] = _with(args[k], index, value)
    with pytest.raises(ValueError, match=re.escape(f"check_op(args[{k}] '{name}'): {value} at index {index}")):
        check_op(ops.linear_forward, ops.linear_backward, tuple(args), mode=mode)


def test_a_nan_input_is_not_mistaken_for_kinks(rng):
    """The old checker read one NaN as 'every probe straddles a kink: nothing was checked'."""
    x = _with(rng.standard_normal((4, 5)), (2, 3), np.nan)
    with pytest.raises(ValueError, match="nan at index"):
        check_op(ops.relu_forward, ops.relu_backward, (x,))


def test_a_non_finite_output_is_an_error(rng):
    def forward(x):
        with np.errstate(invalid="ignore"):
            return np.log(x), x

    with pytest.raises(ValueError, match=r"forward's output: nan at index \(0, 1\)"):
        check_op(forward, lambda dy, x: dy / x, (np.array([[1.0, -1.0], [2.0, 3.0]]),))


def test_a_non_finite_gradient_is_an_error(rng):
    def backward(dy, cache):
        dx, dw, db = ops.linear_backward(dy, cache)
        return dx, _with(dw, (1, 0), np.inf), db

    with pytest.raises(ValueError, match=r"gradient for 'w': inf at index \(1, 0\)"):
        check_op(ops.linear_forward, backward, _linear_args(rng))


def test_a_function_that_turns_non_finite_under_the_step_is_an_error():
    def forward(x):
        with np.errstate(invalid="ignore"):
            return np.sqrt(x), x

    with pytest.raises(ValueError, match="non-finite .* when 'x' was perturbed"):
        check_op(forward, lambda dy, x: dy / (2 * np.sqrt(x)), (np.array([1e-6, 1.0]),), mode="full")


@pytest.mark.parametrize("mode", MODES)
def test_check_module_with_a_nan_input_raises_instead_of_blaming_backward(mode, rng):
    """The old check_module said a correct backward did not accumulate into .grad."""
    x = _with(rng.standard_normal((5, 4)), (4, 1), np.nan)
    with pytest.raises(ValueError, match=r"check_module\(x\): nan at index \(4, 1\)"):
        check_module(Linear(4, 3, rng=rng, dtype=np.float64), x, mode=mode)


def test_check_module_with_a_nan_parameter_names_it(rng):
    layer = Linear(4, 3, rng=rng, dtype=np.float64)
    layer.weight.data[2, 0] = np.inf
    with pytest.raises(ValueError, match=r"parameter 'weight'\): inf at index \(2, 0\)"):
        check_module(layer, rng.standard_normal((5, 4)))


class Reciprocal(Module):
    def forward(self, x):
        self._x = x
        with np.errstate(divide="ignore"):
            return 1 / x

    def backward(self, dy):
        return -dy / self._x ** 2


def test_check_module_with_a_non_finite_output_raises(rng):
    x = _with(rng.standard_normal((4, 3)), (3, 2), 0.0)
    with pytest.raises(ValueError, match=r"module's output: inf at index \(3, 2\)"):
        check_module(Reciprocal(), x)


# --- API slips ---------------------------------------------------------------------------------
def test_args_not_a_tuple_is_a_type_error_that_says_how(rng):
    with pytest.raises(TypeError, match=r"check_op\(args\): got ndarray, expected a tuple .* \(x,\)"):
        check_op(ops.relu_forward, ops.relu_backward, rng.standard_normal(4))


def test_a_forward_that_does_not_return_out_and_cache_is_a_type_error(rng):
    expected = "check_op(forward): <lambda> returned ndarray, expected a pair (out, cache)"
    with pytest.raises(TypeError, match=re.escape(expected)):
        check_op(lambda x: np.tanh(x), lambda dy, c: dy, (rng.standard_normal(3),))


def test_a_forward_returning_three_things_is_a_type_error(rng):
    with pytest.raises(TypeError, match="returned a tuple of 3, expected a pair"):
        check_op(lambda x: (x, x, x), lambda dy, c: dy, (rng.standard_normal(3),))


def test_a_forward_whose_out_is_not_an_array_is_a_type_error(rng):
    with pytest.raises(TypeError, match="returned out of type list"):
        check_op(lambda x: ([1.0], x), lambda dy, c: dy, (rng.standard_normal(3),))


@pytest.mark.parametrize("option, value", [("rtol", -1e-5), ("rtol", np.nan), ("rtol", 0.0), ("atol", -1.0),
                                           ("atol", np.inf), ("nondet_tol", -1.0), ("step", 0.0),
                                           ("max_full", -1)])
def test_a_negative_or_nan_tolerance_is_a_value_error_naming_it(option, value, rng):
    with pytest.raises(ValueError, match=rf"check_op\({option}\): got {value!r}"):
        check_op(ops.relu_forward, ops.relu_backward, (rng.standard_normal(3),), **{option: value})


def test_an_unknown_mode_is_a_value_error(rng):
    with pytest.raises(ValueError, match=r"check_op\(mode\): got 'dense', expected one of"):
        check_op(ops.relu_forward, ops.relu_backward, (rng.standard_normal(3),), mode="dense")


@pytest.mark.parametrize("what, call", [
    ("forward", lambda rng: check_op(None, ops.relu_backward, (rng.standard_normal(3),))),
    ("backward", lambda rng: check_op(ops.relu_forward, "relu", (rng.standard_normal(3),))),
    ("kwargs", lambda rng: check_op(ops.relu_forward, ops.relu_backward, (rng.standard_normal(3),), [1])),
    ("module", lambda rng: check_module(ops.relu_forward, rng.standard_normal(3))),
    ("x", lambda rng: check_module(Linear(4, 3, rng=rng, dtype=np.float64), [[1.0] * 4])),
    ("loss_fn", lambda rng: check_loss(42, rng.standard_normal((2, 3)), np.array([0, 1]))),
], ids=["forward", "backward", "kwargs", "module", "x", "loss_fn"])
def test_a_wrong_type_of_argument_is_a_type_error_naming_it(what, call, rng):
    with pytest.raises(TypeError, match=rf"\({what}\): got "):
        call(rng)


def test_a_loss_fn_that_does_not_return_loss_and_gradient_is_a_type_error(rng):
    with pytest.raises(TypeError, match=r"check_loss\(loss_fn\): .* expected a pair \(loss, dlogits\)"):
        check_loss(lambda z, y: z.sum(), rng.standard_normal((2, 3)), np.array([0, 1]))


# --- what was not checked is never ok ----------------------------------------------------------
def _double(x):
    return 2.0 * np.asarray(x, dtype=np.float64), None


@pytest.mark.parametrize("arg", [1.5, [1.0, 2.0], (1.0, 2.0), np.arange(3)],
                         ids=["float", "list", "tuple", "int array"])
def test_with_no_floating_point_array_argument_nothing_is_checked_and_it_says_so(arg):
    report = check_op(_double, lambda dy, c: 2.0 * dy, (arg,))
    assert report.status == "inconclusive" and not report.ok
    assert "nothing was checked: no argument is a floating-point array" in str(report)
    assert report.errors["x"].status == "inconclusive" and "not a floating-point array" in report.errors["x"].note


def test_with_only_a_non_float_argument_and_no_gradient_nothing_is_checked_and_it_says_so():
    report = check_op(_double, lambda dy, c: None, ([1.0, 2.0],))
    assert report.status == "inconclusive" and not report.ok and report.errors == {}
    assert "nothing was checked" in str(report) and "not differentiated: 'x' (list)" in str(report)


@pytest.mark.parametrize("alpha", [0.5, [0.5]], ids=["float", "list"])
def test_a_gradient_for_an_argument_that_is_not_a_float_array_is_inconclusive_not_ok(alpha, rng):
    """scale(x, alpha) with a gradient for alpha: alpha was not checked, so the report cannot be ok."""
    def forward(x, alpha):
        return x * np.asarray(alpha), (x, alpha)

    def backward(dy, cache):
        x, alpha = cache
        return dy * np.asarray(alpha), np.sum(dy * x)

    report = check_op(forward, backward, (rng.standard_normal(4), alpha))
    assert report.errors["x"].ok and report.errors["alpha"].status == "inconclusive"
    assert report.status == "inconclusive" and "not a floating-point array" in str(report)


def test_a_float_hyperparameter_without_a_gradient_is_listed_as_not_differentiated(rng):
    def forward(x, alpha):
        return x * alpha, alpha

    report = check_op(forward, lambda dy, alpha: (dy * alpha, None), (rng.standard_normal(4), 0.5))
    assert report.ok and "not differentiated: 'alpha' (float)" in str(report)


@pytest.mark.parametrize("x", [np.array(1.5), np.float64(-0.7)], ids=["0-d array", "numpy scalar"])
@pytest.mark.parametrize("mode", ["full", "directional", "fast"])
def test_a_zero_dimensional_argument_is_checked(x, mode):
    def forward(x):
        return np.tanh(x) * np.ones(3), x

    def backward(dy, x, wrong=1.0):
        return np.sum(dy) * (1 - np.tanh(x) ** 2) * wrong

    report = check_op(forward, backward, (x,), mode=mode)
    assert report.ok and report.errors["x"].shape == () and report.errors["x"].n_covered == 1
    wrong = check_op(forward, lambda dy, c: backward(dy, c, 1.001), (x,), mode=mode)
    assert wrong.errors["x"].status == "failed"


# --- seed, complex inputs, integer outputs, NaN in kwargs ----------------------------------------
def _calls(seed=0, x=None, kwargs=None):
    """check_op, check_module and check_loss, each with the given seed (and x)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4)) if x is None else x
    return {"check_op": lambda: check_op(ops.relu_forward, ops.relu_backward, (x,), kwargs, seed=seed),
            "check_module": lambda: check_module(Linear(4, 3, rng=rng, dtype=np.float64), x, seed=seed),
            "check_loss": lambda: check_loss(ops.softmax_cross_entropy, x, np.array([0, 1, 2]), seed=seed)}


@pytest.mark.parametrize("where", ["check_op", "check_module", "check_loss"])
@pytest.mark.parametrize("seed", [-1, 1.5, "0", True])
def test_a_seed_that_is_not_a_non_negative_integer_is_a_value_error_naming_it(seed, where):
    with pytest.raises(ValueError, match=re.escape(f"{where}(seed): got {seed!r}, expected an integer >= 0")):
        _calls(seed=seed)[where]()


@pytest.mark.parametrize("where, name", [("check_op", "args[0] 'x'"), ("check_module", "x"),
                                         ("check_loss", "logits")])
def test_a_complex_input_is_a_type_error_naming_it(where, name, rng):
    x = rng.standard_normal((3, 4)) + 1j
    with pytest.raises(TypeError, match=re.escape(f"{where}({name}): got complex128 array, "
                                                  "expected a real floating-point array")):
        _calls(x=x)[where]()


def test_an_integer_output_is_a_type_error_naming_forward(rng):
    def sign(x):
        return np.sign(x).astype(np.int64), x

    with pytest.raises(TypeError, match=re.escape("check_op(forward): sign returned out of dtype int64, "
                                                  "expected a floating-point array")):
        check_op(sign, lambda dy, x: np.zeros_like(x), (rng.standard_normal(4),))


def test_a_module_with_an_integer_output_is_a_type_error(rng):
    class Sign(Module):
        def forward(self, x):
            return np.sign(x).astype(np.int64)

        def backward(self, dy):
            return np.zeros(dy.shape)

    with pytest.raises(TypeError, match=re.escape("check_module: the module's output: got int64 array, "
                                                  "expected a floating-point array")):
        check_module(Sign(), rng.standard_normal((2, 3)))


@pytest.mark.parametrize("value, shown", [(float("nan"), "nan at index ()"),
                                          (np.array([1.0, np.inf]), "inf at index (1,)"),
                                          ((1.0, float("-inf")), "-inf at index (1,)")])
def test_a_non_finite_value_in_kwargs_names_the_keyword(value, shown, rng):
    with pytest.raises(ValueError, match=re.escape(f"check_op(kwargs['scale']): {shown}")):
        check_op(lambda x, scale: (x * np.asarray(scale)[0], x), lambda dy, x: dy, (rng.standard_normal(4),),
                 {"scale": value})
