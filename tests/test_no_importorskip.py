"""PyTorch parity tests get torch through ``tests/oracle.py`` ``require_torch()``: a skip
without torch, but a failure under CI's ``REFNET_REQUIRE_TORCH=1``. ``pytest.importorskip``
of torch would skip there too, and CI would count a parity test that never ran as a pass."""

import re
from pathlib import Path

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
