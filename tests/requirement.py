"""What a test does when an optional tool it needs is missing: skip it, saying what to install;
or, where the environment requires the tool (``.ci/run`` sets ``REFNET_REQUIRE_DOCS=1`` for the
docs and browser tests), fail it with the same reason, so that in CI a missing Chromium,
Playwright or KaTeX cannot pass for a passing test.

    needs_docs = requirement.unmet(missing_hints)        # a marker for a test or a module

The failing half is ``conftest.pytest_runtest_setup``: it fails a test marked
``unmet_requirement`` before any of its fixtures run.
"""

import os

import pytest

DOCS = "REFNET_REQUIRE_DOCS"
MARK = "unmet_requirement"


def decide(missing, flag=DOCS, environ=None):
    """``None`` when nothing is ``missing``; else ``("skip", reason)``, or ``("fail", reason)``
    when the environment variable ``flag`` is ``1``."""
    environ = os.environ if environ is None else environ
    if not missing:
        return None
    reason = "needs " + "; ".join(missing)
    if environ.get(flag) == "1":
        return "fail", f"{reason} ({flag}=1: required here, so this fails instead of skipping)"
    return "skip", reason


def unmet(missing, flag=DOCS, environ=None):
    """The marker for a test that needs what ``missing`` lists (see ``decide``)."""
    decided = decide(missing, flag, environ)
    if decided is None:
        return pytest.mark.skipif(False, reason="")
    what, reason = decided
    return pytest.mark.skip(reason=reason) if what == "skip" else getattr(pytest.mark, MARK)(reason)
