"""PyTorch parity tests get torch through ``tests/oracle.py`` ``require_torch()``: a skip
without torch, but a failure under CI's ``REFNET_REQUIRE_TORCH=1``. ``pytest.importorskip``
of torch would skip there too, and CI would count a parity test that never ran as a pass.
Likewise a ``gpu`` test skips without a device but fails under ``REFNET_REQUIRE_GPU=1``."""

import os
import re
import subprocess
import sys
from pathlib import Path

from refnet import backend

TESTS = Path(__file__).resolve().parent
IMPORTORSKIP_TORCH = re.compile(r"""importorskip\(\s*(?:modname\s*=\s*)?["']torch""")


def test_no_test_imports_torch_through_importorskip():
    found = [f"{path.relative_to(TESTS.parent)}:{number}"
             for path in sorted(TESTS.rglob("*.py")) if path != Path(__file__).resolve()  # not these examples
             for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             if IMPORTORSKIP_TORCH.search(line)]
    assert found == [], f"use tests/oracle.py require_torch() instead of importorskip('torch') at: {found}"


def test_the_scan_finds_what_it_looks_for():
    assert IMPORTORSKIP_TORCH.search('    torch = pytest.importorskip("torch")')
    assert IMPORTORSKIP_TORCH.search("pytest.importorskip( 'torch.nn' )")
    assert not IMPORTORSKIP_TORCH.search('pytest.importorskip("cupy")')


def test_gpu_tests_fail_rather_than_skip_under_refnet_require_gpu():
    """.ci/gpu-check sets REFNET_REQUIRE_GPU=1: there a gpu test that cannot run must fail,
    never skip (a skip would read as a pass on the one machine meant to run it)."""
    root = TESTS.parent
    env = {**os.environ, "REFNET_REQUIRE_GPU": "1"}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "gpu",
                           "tests/test_gpu.py::test_softmax_cross_entropy_on_cupy_matches_numpy"], cwd=root, env=env, capture_output=True, text=True)
    if backend.gpu_status()[0]:
        assert done.returncode == 0, done.stdout[-2000:]
    else:
        assert done.returncode != 0 and "REFNET_REQUIRE_GPU=1" in done.stdout, done.stdout[-2000:]
        assert "skipped" not in done.stdout.splitlines()[-1], done.stdout[-500:]
