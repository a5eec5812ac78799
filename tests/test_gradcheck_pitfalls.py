"""Two ways a wrong backward could slip past a naive checker, and why refnet's does not."""

import numpy as np
import pytest

from refnet import nn
from refnet.gradcheck import check_module, check_op
from refnet.ops import linear_backward, linear_forward


class AssigningLinear(nn.Linear):
    """A Linear whose backward overwrites weight.grad instead of adding to it."""

    def backward(self, dy):
        self.weight.grad[...] = 0
        return super().backward(dy)


@pytest.mark.parametrize("mode", ["full", "directional"])
def test_check_module_flags_a_backward_that_assigns_instead_of_accumulating(mode):
    rng = np.random.default_rng(0)
    report = check_module(AssigningLinear(4, 3, rng=rng).double(), rng.standard_normal((5, 4)), mode=mode)
    assert report.status == "failed"
    assert report.problems == ["backward did not accumulate into weight.grad (it must add, +=, not assign)"]


@pytest.mark.parametrize("mode", ["full", "directional"])
def test_check_module_passes_a_module_that_accumulates(mode):
    rng = np.random.default_rng(0)
    assert check_module(nn.Linear(4, 3, rng=rng).double(), rng.standard_normal((5, 4)), mode=mode).ok


def test_upstream_gradient_is_not_the_users_seeded_input():
    # Inputs drawn from default_rng(0) with the output's shape must not equal the checker's
    # upstream gradient (seed 0): if they did, dy.T @ x would be symmetric for a square w and
    # a transposed weight gradient would pass.
    n = 4
    x = np.random.default_rng(0).standard_normal((n, n))
    w = np.random.default_rng(1).standard_normal((n, n))

    def transposed_backward(dy, cache):
        dx, dw, db = linear_backward(dy, cache)
        return dx, dw.T, db

    assert not check_op(linear_forward, transposed_backward, (x, w, None), seed=0).ok
