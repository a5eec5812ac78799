"""PyTorch is the parity tests' oracle, installed by the `oracle` extra; CI runs those tests
and fails, rather than skips, them when torch is missing."""

import configparser
import re
import sys
from pathlib import Path

import pytest
from oracle import FLAG, require_torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def no_torch(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # "import torch" now raises ImportError


def test_without_torch_a_parity_test_skips(no_torch, monkeypatch):
    monkeypatch.delenv(FLAG, raising=False)
    with pytest.raises(pytest.skip.Exception, match="oracle"):
        require_torch()


def test_without_torch_a_parity_test_fails_where_torch_is_required(no_torch, monkeypatch):
    monkeypatch.setenv(FLAG, "1")
    with pytest.raises(pytest.fail.Exception, match=f"{FLAG}=1"):
        require_torch()


def _readme_test_command():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.search(r"^python3 -m venv .* && (python -m pip install .*)$", readme, re.M).group(1)


def test_ci_runs_the_readmes_test_command_with_the_oracle_extra_and_the_flag():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    command = _readme_test_command()
    assert command in ci.splitlines() and ".[test,oracle," in command
    assert f"export {FLAG}=1" in ci and ci.index(f"export {FLAG}=1") < ci.index(command)


def test_the_oracle_extra_pins_the_cpu_build_series():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    assert cfg["options.extras_require"]["oracle"].split() == ["torch==2.13.*"]
