"""Numerical gradient checks: a hand-written backward against central differences.

    report = check_op(conv2d_forward, conv2d_backward, (x, w, b), {"stride": 2})
    print(report)           # per argument: status, coverage, kinks, resolution, worst error
    assert report.ok        # bool(report) is the same

A verdict that cannot be a false pass. ``report.status`` is "ok", "failed" or
"inconclusive"; ``ok`` is True only when, for every argument, every entry that is not at a
kink was covered by a probe that agreed, and the check's *resolution* (the smallest error in
one entry it could have detected, from the finite-difference noise it measured) is within
``rtol``. A disagreement larger than ``rtol`` plus the measured noise is "failed"; anything
it cannot decide is "inconclusive", with the reason. Both make ``ok`` False.

How (the engine, ``refnet.gradcheck.probes``, has the formulas):

* An op becomes one scalar ``L = sum(dout * forward(args))`` with a *random* upstream
  gradient from a private stream: with ``dout = ones`` a backward that sums the wrong axis
  can still pass.
* A probe d (one entry e_j, +-1 signs on a block of entries, or a dense Gaussian direction)
  compares the analytic slope ``<grad, d>`` with a Richardson-extrapolated central
  difference at steps h, 2h and 4h. The same six evaluations measure the probe's
  truncation and rounding noise, and the step adapts per probe until that noise is below a
  quarter of the tolerance: an output offset of 1e4, a large loss or a large batch makes
  the step grow, not the tolerance.
* Each entry is judged against ``max(|g_j|, FLOOR * max|g|)``; a block against its
  smallest entry's, so a small entry is not diluted by a large one beside it.
* Kinks (ReLU at 0, tied maxima in a pool): the one-sided slopes differ by the same jump
  at every step. A block holding one is split in halves until the kink entries are
  isolated; the step of each shrinks until the kink is outside it (then the entry is
  judged) or the rounding noise allows no shorter step (then it is excluded and listed, at
  or within that step of a kink). Every other entry is still judged.
* Modes: "full" probes every entry (default up to ``max_full`` entries); "directional"
  probes <= 256 random disjoint blocks covering every entry plus 4 dense directions over
  the entries that are not kinks (a dense direction that still meets one is split, not
  dropped), and bisects a failing block to the entry responsible; "fast" is one dense
  random direction per argument, like ``torch.autograd.gradcheck(fast_mode=True)``: a
  wrong entry is caught unless its weight there is tiny, but errors in several entries can
  nearly cancel in its one sum.
* Backward must leave ``dout``, the cache and the inputs untouched (compared byte for
  byte), give the same gradients when run twice (``nondet_tol``), and, in a module, add
  into ``.grad`` (+=) rather than assign.
* Non-finite values (in an input, the output, a gradient) and API slips (args not a tuple,
  a forward that does not return (out, cache), a negative or NaN tolerance) raise a
  ValueError or TypeError naming the argument, never a verdict.

Reusing the engine: ``probes.check_argument(name, data, evaluate, analytic, rng, ...)``
takes any scalar function ``evaluate()`` of an array ``data`` (perturbed in place) and any
``probes.LinearMap`` (``apply(support, weights)``: the claimed directional derivative along a
probe; ``magnitudes``: |A(e_j)| for the scales) and returns an ``ArgCheck`` with the same
verdicts, coverage and resolution. A JVP check differences ``<c, forward(x)>`` against
``<c, jvp(x, d)>``; a Hessian-vector check differences ``<v, grad(x)>`` against
``<v, hvp(x, d)>`` (tests/test_gradcheck_engine.py has a JVP example).

The checker's power is measured, not asserted: ``refnet gradcheck --power`` (``power()``)
plants mutants in every built-in op and module and counts what comes out failed.
"""

from refnet.gradcheck.check import (FLOOR, MAX_FULL, RTOL, STEP, check_loss,  # noqa: F401
                                    check_module, check_op)
from refnet.gradcheck.inputs import checker_rng  # noqa: F401
from refnet.gradcheck.probes import LinearMap, check_argument  # noqa: F401
from refnet.gradcheck.report import (ArgCheck, GradcheckError, GradcheckReport,  # noqa: F401
                                     GradcheckWarning)
from refnet.gradcheck.second_order import check_hvp, check_jvp, check_model_hvp, check_module_jvp  # noqa: F401,E501


__all__ = ["check_op", "check_loss", "check_module", "power", "GradcheckReport", "ArgCheck",
           "GradcheckError", "GradcheckWarning", "LinearMap", "check_argument", "checker_rng",
           "RTOL", "FLOOR", "STEP", "MAX_FULL"]


def power(**kwargs):
    """Run the power campaign (``refnet.gradcheck.campaign.power``): detection, false-alarm
    and inconclusive rates per built-in op and module."""
    from refnet.gradcheck.campaign import power as run
    return run(**kwargs)
