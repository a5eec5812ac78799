"""The documentation site builds with ``mkdocs build --strict`` (no broken link, no missing
reference, no page left out of the navigation) and shows what it promises: the README as the
home page, the tutorials (every one in the navigation, each saying how to open it), the
derivations, the BatchNorm lesson (run here as a script: its checks are asserted), every
public op beside its derivation, and a math renderer shipped with the site; ``refnet docs``
stores the lessons' executed notebooks and knows when one is stale. What a browser sees on
the pages, the lessons' outputs included, is tested in ``test_site_browser.py``.

Skipped, with the reason, when the docs extra or KaTeX is not installed
(``python -m pip install -e ".[docs]"``; ``apt-get install libjs-katex``).
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
PLUGINS = ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python", "mkdocs_jupyter", "jupytext",
           "nbclient")
KATEX = Path(os.environ.get("REFNET_KATEX_DIR") or "/usr/share/javascript/katex")
LESSONS = sorted(p.stem for p in (ROOT / "docs" / "lessons").glob("*.py"))


def _missing():
    missing = [m for m in PLUGINS if importlib.util.find_spec(m.split(".")[0]) is None
               or importlib.util.find_spec(m) is None]
    return missing + ([] if KATEX.is_dir() else [f"KaTeX in {KATEX} (apt-get install libjs-katex)"])


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
    ("tutorials/01_write_a_layer.py", "index.md", "tutorials/01_write_a_layer.ipynb"),
    ("docs/screenshots/theory.png", "index.md", "screenshots/theory.png"),
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
    assert out == "[2](02_scale_invariance.ipynb) [theory](../theory.md)"


@needs_docs
def test_a_repository_file_without_a_page_becomes_code_and_a_missing_one_stays_broken():
    hooks = _hooks()
    assert hooks.rewrite_links("[the config](setup.cfg)", "README.md", "index.md", set()) == "`the config`"
    missing = "[gone](no/such/file.md)"
    assert hooks.rewrite_links(missing, "README.md", "index.md", set()) == missing


# --- math shipped with the site, tutorials with their outputs, the lesson --------------
def _built_pages(site):
    return sorted(site[0].rglob("*.html"))


@needs_docs
def test_the_site_ships_katex_and_its_fonts(site):
    for path in ("assets/katex/katex.min.js", "assets/katex/katex.min.css", "assets/katex/auto-render.js"):
        assert (site[0] / path).stat().st_size > 1000, path
    fonts = {p.name for p in (site[0] / "assets" / "katex" / "fonts").iterdir()}
    assert set(re.findall(r"url\(fonts/([^)]+)\)", (site[0] / "assets/katex/katex.min.css").read_text())) <= fonts


FETCHED_FROM_ELSEWHERE = re.compile(r"""<(?:script|img|iframe)[^>]*\ssrc=["']?(?:https?:)?//|"""
                                    r"""<link[^>]*\shref=["']?(?:https?:)?//|url\(["']?(?:https?:)?//|fonts\.googleapis""", re.I)


@needs_docs
def test_no_page_loads_anything_from_another_host(site):
    offending = {p.relative_to(site[0]).as_posix(): FETCHED_FROM_ELSEWHERE.findall(p.read_text(encoding="utf-8"))
                 for p in _built_pages(site)}
    assert {page: hits for page, hits in offending.items() if hits} == {}


def test_the_check_for_other_hosts_catches_a_cdn_script_a_stylesheet_and_google_fonts():
    for html in ('<script src="https://cdn.example/mathjax.js">', '<link rel="stylesheet" href="//cdn.example/x.css">',
                 "@import url(https://fonts.googleapis.com/css)"):
        assert FETCHED_FROM_ELSEWHERE.search(html), html
    assert not FETCHED_FROM_ELSEWHERE.search('<a href="https://arxiv.org/abs/1706.05350">paper</a>')


@needs_docs
def test_every_tutorial_is_in_the_navigation_once(site):
    nav = _page(site, "conventions").split('class="md-content"', 1)[0]  # the navigation, before the content
    for name in sorted(p.stem for p in (ROOT / "tutorials").glob("[0-9][0-9]_*.py")):
        assert len(re.findall(rf'href="\.\./tutorials/{name}/"', nav)) == 1, name


@needs_docs
def test_nav_hook_replaces_tutorial_lines_of_mkdocs_yml_by_one_entry_per_tutorial():
    class Config:  # the part of mkdocs' config the hook reads
        nav = [{"Home": "index.md"},
               {"Tutorials": [{"Overview": "tutorials/index.md"}, {"6. Written by hand": "tutorials/06_by_hand.py"},
                              {"Reference solutions": "tutorials/solutions.md"}]}]
    config = Config()
    _hooks().on_config(config)
    entries = [next(iter(e.values())) for e in config.nav[1]["Tutorials"]]
    scripts = sorted((ROOT / "tutorials").glob("[0-9][0-9]_*.py"))
    assert entries == ["tutorials/index.md", *[f"tutorials/{p.stem}.ipynb" for p in scripts], "tutorials/solutions.md"]


@needs_docs
@pytest.mark.parametrize("name", sorted(p.stem for p in (ROOT / "tutorials").glob("[0-9][0-9]_*.py")))
def test_every_tutorial_page_says_how_to_open_it_and_offers_its_notebook(site, name):
    page = _page(site, f"tutorials/{name}")  # its outputs: test_site_browser.py
    assert f"jupytext --to ipynb tutorials/{name}.py" in page and f'href="{name}.ipynb"' in page
    assert (site[0] / "tutorials" / name / f"{name}.ipynb").is_file()


@needs_docs
@pytest.mark.parametrize("name", LESSONS)
def test_lesson_runs_top_to_bottom_and_its_checks_hold(name, tmp_path):
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, str(ROOT / "docs" / "lessons" / f"{name}.py")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]


@needs_docs
def test_the_batchnorm_lesson_is_a_page_under_the_derivations(site):
    page = _page(site, "lessons/batchnorm_backward")
    assert "The BatchNorm backward, on one page" in page
    nav = page.split('class="md-content"', 1)[0]
    assert nav.index('href="../../theory/"') < nav.index('href="./"')  # listed right after the derivations


# --- refnet docs: stored outputs, stale when the script changes ------------------------
@pytest.fixture
def lesson_tree(tmp_path, monkeypatch):
    """A source tree with one tiny tutorial, seen by refnet.docsite.notebooks as the repository."""
    from refnet.docsite import notebooks

    (tmp_path / "mkdocs.yml").write_text("site_name: t\n")
    (tmp_path / "tutorials").mkdir()
    script = tmp_path / "tutorials" / "01_tiny.py"
    script.write_text("# %% [markdown]\n# # 1. Tiny\n\n# %%\nprint(6 * 7)\n")
    monkeypatch.setattr(notebooks, "ROOT", tmp_path)
    return tmp_path, script


@needs_docs
def test_refnet_docs_stores_the_executed_notebook_and_check_then_passes(lesson_tree, capsys):
    from refnet.cli import main

    root, _ = lesson_tree
    assert main(["docs", "--check"]) == 1
    assert main(["docs"]) == 0
    import nbformat
    code = [c for c in nbformat.read(root / "docs" / "tutorials" / "01_tiny.ipynb", 4).cells if c.cell_type == "code"]
    assert code[0].outputs[0].text == "42\n"
    assert main(["docs", "--check"]) == 0


@needs_docs
def test_a_stored_notebook_goes_stale_when_its_script_changes(lesson_tree):
    from refnet.docsite import notebooks

    root, script = lesson_tree
    stored = notebooks.stored_path("tutorials/01_tiny.ipynb")
    notebooks.write(notebooks.to_notebook(script), stored)
    assert notebooks.is_fresh(script, stored)
    script.write_text(script.read_text().replace("6 * 7", "6 * 8"))
    assert not notebooks.is_fresh(script, stored)


@needs_docs
def test_an_unexecuted_notebook_is_never_fresh(lesson_tree):
    from refnet.docsite import notebooks

    root, script = lesson_tree
    stored = notebooks.stored_path("tutorials/01_tiny.ipynb")
    notebooks.write(notebooks.to_notebook(script, execute=False), stored)
    assert not notebooks.is_fresh(script, stored)
