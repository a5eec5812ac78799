"""The documentation site builds with ``mkdocs build --strict`` (no broken link, no missing
reference, no page left out of the navigation) and shows what it promises: the README as the
home page, the tutorials, the derivations, and every public op beside its derivation.

Skipped, with the reason, when the docs extra is not installed
(``python -m pip install -e ".[docs]"``).
"""

import importlib.util
import inspect
import os
import re
import subprocess
import sys
from html import unescape
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python", "mkdocs_jupyter", "jupytext")


def _missing():
    return [m for m in PLUGINS if importlib.util.find_spec(m.split(".")[0]) is None
            or importlib.util.find_spec(m) is None]


needs_docs = pytest.mark.skipif(bool(_missing()), reason=f"docs extra not installed (missing: "
                                f"{', '.join(_missing())}); python -m pip install -e '.[docs]'")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """Build the site strictly into a temporary directory; the path, and mkdocs' log."""
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "REFNET_DOCS_EXECUTE": "false"}
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "-d", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    return out, proc.stdout + proc.stderr


def _page(site, path):
    return (site[0] / path / "index.html").read_text(encoding="utf-8")


def _hooks():
    spec = importlib.util.spec_from_file_location("refnet_docs_hooks", ROOT / "docs" / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@needs_docs
def test_site_builds_strictly_without_warnings(site):
    assert "WARNING" not in site[1] and "ERROR" not in site[1]


def _public_ops():
    import refnet.ops as ops
    return sorted((fn.__module__, name) for name, fn in vars(ops).items()
                  if inspect.isfunction(fn) and not name.startswith("_"))


def _text(html):
    """The page's text: tags dropped (highlighting splits code into spans), entities decoded."""
    return " ".join(unescape(re.sub(r"<[^>]+>", "", html)).split())


def _first_formula(doc):
    """The first formula of a docstring: an indented line with an '=', or the 'Gradient' line."""
    return next(" ".join(line.split()) for line in doc.splitlines()
                if (line.startswith("    ") and "=" in line) or line.startswith("Gradient"))


@needs_docs
@pytest.mark.parametrize("module, name", _public_ops(), ids=lambda v: v.rsplit(".", 1)[-1])
def test_every_public_op_is_documented_beside_its_derivation(site, module, name):
    page = _page(site, "api/ops")
    assert f'id="{module}.{name}"' in page and f'id="{module}"' in page
    section = _text(page.split(f'id="{module}"', 1)[1].split(f'id="{module}.', 1)[0])
    assert _first_formula(sys.modules[module].__doc__) in section


@needs_docs
@pytest.mark.parametrize("anchor, page", [
    ("refnet.nn.layers.Linear", "api/nn"), ("refnet.nn.layers.Conv2d", "api/nn"),
    ("refnet.nn.norm.BatchNorm1d", "api/nn"), ("refnet.nn.norm.BatchNorm2d", "api/nn"),
    ("refnet.nn.norm.LayerNorm", "api/nn"), ("refnet.nn.norm.WeightNorm", "api/nn"),
    ("refnet.nn.module.Sequential", "api/nn"), ("refnet.nn.module.Parameter", "api/nn"),
    ("refnet.optim.sgd.SGD", "api/optim"), ("refnet.optim.adam.Adam", "api/optim"),
    ("refnet.gradcheck.check_op", "api/gradcheck"), ("refnet.gradcheck.check_module", "api/gradcheck"),
    ("refnet.invariance.mark_scale_invariant", "api/invariance"),
    ("refnet.invariance.check_scale_invariance", "api/invariance"),
    ("refnet.train.Trainer", "api/train"), ("refnet.data.load_dataset", "api/data"),
    ("theory.equilibria.sgd_l2_equilibrium", "api/theory"),
])
def test_the_public_contract_is_in_the_api_reference(site, anchor, page):
    assert f'id="{anchor}"' in _page(site, page)


@needs_docs
def test_home_page_is_the_readme(site):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    title = re.search(r"^# (.+)$", readme, re.M).group(1).strip()
    page = _page(site, ".")
    assert f">{title}<" in page or f">{title}\n" in page
    assert "van Laarhoven" in page


@needs_docs
@pytest.mark.parametrize("name", sorted(p.stem for p in (ROOT / "tutorials").glob("[0-9][0-9]_*.py")))
def test_every_tutorial_is_rendered(site, name):
    assert "By the end you can" in _page(site, f"tutorials/{name}")


@needs_docs
def test_theory_page_holds_the_derivations(site):
    source = (ROOT / "theory" / "README.md").read_text(encoding="utf-8")
    headings = re.findall(r"^## (\d+)\. ", source, re.M)
    page = _page(site, "theory")
    assert len(headings) >= 10
    assert all(f">{h}. " in page for h in headings)


@needs_docs
def test_conventions_page_states_the_factor_two(site):
    page = _page(site, "conventions")
    assert "weight_decay=2*lam" in page and "AdamW" in page


# --- the link rewriting of docs/hooks.py, without a build ---------------------------
@needs_docs
@pytest.mark.parametrize("link, page, expected", [
    ("theory/README.md", "index.md", "theory.md"),
    ("theory/README.md#3-sgd-l2", "index.md", "theory.md#3-sgd-l2"),
    ("tutorials/", "index.md", "tutorials/index.md"),
    ("tutorials/01_write_a_layer.py", "index.md", "tutorials/01_write_a_layer.py"),
    ("refnet/ops/batchnorm.py", "index.md", "api/ops.md"),
    ("https://arxiv.org/abs/1706.05350", "index.md", "https://arxiv.org/abs/1706.05350"),
    ("#two-commands", "index.md", "#two-commands"),
])
def test_repository_links_point_at_the_site_pages(link, page, expected):
    out = _hooks().rewrite_links(f"see [this]({link})", "README.md", page, set())
    assert out == f"see [this]({expected})"


@needs_docs
def test_links_from_a_subfolder_page_are_relative_to_it():
    out = _hooks().rewrite_links("[2](02_scale_invariance.py) [theory](../theory/README.md)",
                                 "tutorials/README.md", "tutorials/index.md", set())
    assert out == "[2](02_scale_invariance.py) [theory](../theory.md)"


@needs_docs
def test_a_repository_file_without_a_page_becomes_code_and_a_missing_one_stays_broken():
    hooks = _hooks()
    assert hooks.rewrite_links("[the config](setup.cfg)", "README.md", "index.md", set()) == "`the config`"
    missing = "[gone](no/such/file.md)"
    assert hooks.rewrite_links(missing, "README.md", "index.md", set()) == missing
