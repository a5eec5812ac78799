"""PyTorch as a test oracle: ``torch = require_torch()`` in a parity test.

Without torch the test is skipped, unless the environment says torch must be there
(``REFNET_REQUIRE_TORCH=1``, which ``.ci/run`` sets after installing the ``oracle`` extra):
then it fails, so that a CI run can never report parity tests as passed by skipping them.
"""

import os

import pytest

FLAG = "REFNET_REQUIRE_TORCH"


def require_torch():
    try:
        import torch
    except ImportError as err:
        if os.environ.get(FLAG) == "1":
            pytest.fail(f"PyTorch is required ({FLAG}=1) but cannot be imported: {err}; "
                        "install the oracle extra: python -m pip install -e '.[oracle]'")
        pytest.skip("PyTorch is not installed (python -m pip install -e '.[oracle]')")
    return torch
