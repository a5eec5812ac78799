"""Shared pytest fixtures: seeded generators and the GPU marker's skip rule.

Tests marked ``gpu`` skip where CuPy sees no device, and fail instead under
``REFNET_REQUIRE_GPU=1`` (.ci/gpu-check). PyTorch parity tests get torch through
``oracle.require_torch()`` (tests/oracle.py): a skip without torch, a failure when
``REFNET_REQUIRE_TORCH=1`` (set by .ci/run, which installs the ``oracle`` extra), so that CI never counts a skipped parity test as a pass."""

import os

import numpy as np
import pytest

from refnet import backend


def pytest_collection_modifyitems(config, items):
    ok, why = backend.gpu_status()
    if ok:
        return
    # REFNET_REQUIRE_GPU=1 (.ci/gpu-check, on a lent GPU machine): a gpu test that cannot run
    # fails, so that a skipped one is never counted as a pass there
    if os.environ.get("REFNET_REQUIRE_GPU") == "1":
        skip = pytest.mark.unmet_requirement(f"gpu test: {why} (REFNET_REQUIRE_GPU=1)")
    else:
        skip = pytest.mark.skip(reason=f"gpu test: {why}")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def rng():
    """A fresh, seeded generator per test (never the global RNG)."""
    return np.random.default_rng(1234)


# --- REFNET_REQUIRE_DOCS=1 (CI): a docs or browser test that lacks a tool fails, not skips --------
def pytest_configure(config):
    config.addinivalue_line("markers", "unmet_requirement(reason): fail the test with this reason "
                            "before its fixtures run (tests/requirement.py)")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    marker = item.get_closest_marker("unmet_requirement")
    if marker is not None:
        pytest.fail(marker.args[0], pytrace=False)
