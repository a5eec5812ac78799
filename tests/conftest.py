"""Shared pytest fixtures: seeded generators and the GPU marker's skip rule."""

import numpy as np
import pytest

from refnet import backend


def pytest_collection_modifyitems(config, items):
    ok, why = backend.gpu_status()
    if ok:
        return
    skip = pytest.mark.skip(reason=f"gpu test: {why}")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def rng():
    """A fresh, seeded generator per test (never the global RNG)."""
    return np.random.default_rng(1234)
