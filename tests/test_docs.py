"""The documentation site builds with ``mkdocs build --strict`` (no broken link, no missing
reference, no page left out of the navigation) and shows what it promises: the README as the
home page, the tutorials (every one in the navigation, each saying how to open it), the
derivations, the BatchNorm lesson (run here as a script: its checks are asserted), every
public op beside its derivation, and a math renderer shipped with the site; ``refnet docs``
stores the lessons' executed notebooks and knows when one is stale. What a browser sees on
the pages, the lessons' outputs included, is tested in ``test_site_browser.py``.

The Markdown the repository host shows itself (README.md, theory/README.md, docs/*.md) is
checked against GitHub's rules for math (``refnet.docsite.mathsource``).

Skipped, with the reason, when the docs extra or KaTeX is not installed
(``python -m pip install -e ".[docs]"``; ``apt-get install libjs-katex``); with
``REFNET_REQUIRE_DOCS=1`` (CI) they fail instead (``tests/requirement.py``).
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
import requirement

from refnet.docsite import mathsource

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python", "mkdocs_jupyter", "jupytext",
           "nbclient", "markdown_it")
KATEX = Path(os.environ.get("REFNET_KATEX_DIR") or "/usr/share/javascript/katex")
LESSONS = sorted(p.stem for p in (ROOT / "docs" / "lessons").glob("*.py"))


def _missing():
    """What the docs tests need and do not find, each with how to install it."""
    missing = [f"{m} (python -m pip install -e '.[docs]')" for m in PLUGINS
               if importlib.util.find_spec(m.split(".")[0]) is None or importlib.util.find_spec(m) is None]
    return missing + ([] if KATEX.is_dir() else [f"KaTeX in {KATEX} (apt-get install libjs-katex)"])


needs_docs = requirement.unmet(_missing())


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
SCRIPT_BODY = re.compile(r"<script\b[^>]*>(.*?)</script>", re.I | re.S)
URL_HOST = re.compile(r"https?://([A-Za-z0-9.-]+)", re.I)
LOCAL = {"127.0.0.1", "localhost"}


def elsewhere(html):
    """What a page would fetch from another host: tags that load from one, and any host other
    than this machine that the page's own scripts name (a script can fetch what it names)."""
    hosts = {h for body in SCRIPT_BODY.findall(html) for h in URL_HOST.findall(body)} - LOCAL
    return FETCHED_FROM_ELSEWHERE.findall(html) + sorted(f"a script names {h}" for h in hosts)


@needs_docs
def test_no_page_loads_or_names_anything_from_another_host(site):
    offending = {p.relative_to(site[0]).as_posix(): elsewhere(p.read_text(encoding="utf-8"))
                 for p in _built_pages(site)}
    assert {page: hits for page, hits in offending.items() if hits} == {}


@pytest.mark.parametrize("html", [
    '<script src="https://cdn.example/mathjax.js">', '<link rel="stylesheet" href="//cdn.example/x.css">',
    "@import url(https://fonts.googleapis.com/css)",
    '<script type="module">const m = await import("https://cdnjs.cloudflare.com/ajax/libs/mermaid/11/m.mjs")</script>',
])
def test_the_check_for_other_hosts_catches_a_cdn_script_a_stylesheet_fonts_and_a_script_import(html):
    assert elsewhere(html)


def test_the_check_for_other_hosts_passes_a_link_to_read_and_a_script_on_this_machine():
    assert elsewhere('<a href="https://arxiv.org/abs/1706.05350">paper</a>'
                     '<script>fetch("http://127.0.0.1:8000/search/search_index.json")</script>') == []


# The hosts that the JavaScript every page runs (Material's bundle and search worker, KaTeX,
# math.js) names, and why none is ever contacted by this site. The browser tests abort and
# report any request off the machine; this list makes a new host in a new version visible.
# (Material's lunr/ folder, search for languages other than English, is not loaded here.)
DORMANT_HOSTS = {
    "unpkg.com": "Material: a ResizeObserver polyfill, only in a browser without ResizeObserver (every "
                 "current one has it), and mermaid, only on a page with a mermaid diagram (none here)",
    "api.github.com": "Material: a repository's stars and latest release, only with repo_url set (it is not)",
    "bit.ly": "Material's search worker: a link inside the text of a console warning, never fetched",
    "www.w3.org": "KaTeX: the SVG and MathML namespace names, never fetched",
    **{host: "a license banner's link, in a comment" for host in ("clipboardjs.com", "lunrjs.com", "tartarus.org")},
}


@needs_docs
def test_the_sites_javascript_names_no_host_but_the_known_dormant_ones(site):
    scripts = [p for p in site[0].rglob("*.js") if "lunr" not in p.relative_to(site[0]).parts]
    named = {h: p.relative_to(site[0]).as_posix() for p in scripts
             for h in URL_HOST.findall(p.read_text(encoding="utf-8", errors="replace"))}
    assert {h: where for h, where in named.items() if h not in DORMANT_HOSTS and h not in LOCAL} == {}


@needs_docs
def test_katex_is_loaded_once_per_page(site):
    counts = {p.relative_to(site[0]).as_posix(): len(re.findall(r'<script[^>]*\ssrc="[^"]*katex\.min\.js"',
                                                                 p.read_text(encoding="utf-8")))
              for p in _built_pages(site)}
    assert {page: n for page, n in counts.items() if n != 1} == {}


@needs_docs
def test_notebook_pages_lose_nbconvert_loaders_and_nothing_else():
    hooks = _hooks()
    page = ('<p>a</p><!-- Load mathjax --><script src="k.js"> </script><script type="text/x-mathjax-config">'
            'x</script>\n<!-- End of mathjax configuration --><script type="module">const d = '
            'document.querySelectorAll(".jp-Mermaid > pre.mermaid"); import("https://cdnjs.example/m.mjs")'
            '</script><script type="module">keep()</script><p>b</p>')
    assert hooks.strip_nbconvert_loaders(page) == '<p>a</p><script type="module">keep()</script><p>b</p>'


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


def _lesson_pages():
    """``[(script as a repository path, page folder)]`` of every lesson, tutorials included."""
    from refnet.docsite import notebooks
    return [(s.relative_to(ROOT).as_posix(), page[:-len(".ipynb")]) for s, page in notebooks.lessons(ROOT)]


@needs_docs
@pytest.mark.parametrize("script, page", _lesson_pages(), ids=lambda v: v.rsplit("/", 1)[-1])
def test_every_lesson_page_says_how_to_open_it_and_offers_its_notebook(site, script, page):
    html, name = _page(site, page), page.rsplit("/", 1)[-1]  # its outputs: test_site_browser.py
    box = html.split("Open this lesson yourself", 1)[-1].split("</div>", 1)[0]
    assert f"jupytext --to ipynb {script}" in box and f"python {script}" in box and f'href="{name}.ipynb"' in box
    assert (site[0] / page / f"{name}.ipynb").is_file()


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


# --- refnet docs: stored outputs, stale when the script or the code it ran changes ------
@needs_docs
def test_the_stored_notebooks_are_fresh_so_refnet_docs_check_passes(capsys):
    from refnet.cli import main

    assert main(["docs", "--check"]) == 0, capsys.readouterr().out + "\nrun `refnet docs` and commit docs/"


@pytest.fixture
def lesson_tree(tmp_path, monkeypatch):
    """A source tree with one tiny tutorial that imports a module of a tiny package (``law``,
    beside ``other`` that it does not import), seen by refnet.docsite.notebooks as the repository."""
    from refnet.docsite import notebooks

    (tmp_path / "mkdocs.yml").write_text("site_name: t\n")
    (tmp_path / "tutorials").mkdir()
    (tmp_path / "tinylib").mkdir()
    (tmp_path / "tinylib" / "__init__.py").write_text("")
    (tmp_path / "tinylib" / "law.py").write_text("ANSWER = 42\n")
    (tmp_path / "tinylib" / "other.py").write_text("UNUSED = 0\n")
    script = tmp_path / "tutorials" / "01_tiny.py"
    script.write_text("# %% [markdown]\n# # 1. Tiny\n\n# %%\nfrom tinylib.law import ANSWER\nprint(ANSWER)\n")
    monkeypatch.setattr(notebooks, "ROOT", tmp_path)
    monkeypatch.setattr(notebooks, "CODE", ("tinylib",))
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
@pytest.mark.parametrize("edited, stale", [
    ("tutorials/01_tiny.py", ["tutorials/01_tiny.py"]),   # the script
    ("tinylib/law.py", ["tinylib/law.py"]),               # a module the lesson imported
    ("tinylib/other.py", []),                             # a module it did not import
])
def test_a_stored_notebook_goes_stale_when_its_script_or_a_module_it_imported_changes(lesson_tree, edited, stale):
    from refnet.docsite import notebooks

    root, script = lesson_tree
    stored = notebooks.stored_path("tutorials/01_tiny.ipynb")
    notebooks.write(notebooks.to_notebook(script), stored)
    assert notebooks.is_fresh(script, stored)
    with open(root / edited, "a") as f:
        f.write("# edited\n")
    assert notebooks.stale_inputs(script, stored) == stale
    assert notebooks.is_fresh(script, stored) == (not stale)


@needs_docs
def test_an_unexecuted_notebook_is_never_fresh(lesson_tree):
    from refnet.docsite import notebooks

    root, script = lesson_tree
    stored = notebooks.stored_path("tutorials/01_tiny.ipynb")
    notebooks.write(notebooks.to_notebook(script, execute=False), stored)
    assert not notebooks.is_fresh(script, stored)


# --- CI's REFNET_REQUIRE_DOCS=1: a missing tool fails these tests instead of skipping them ---
@pytest.mark.parametrize("missing, environ, expected", [
    ([], {}, None),
    ([], {"REFNET_REQUIRE_DOCS": "1"}, None),
    (["chromium (apt-get install chromium)"], {}, "skip"),
    (["chromium (apt-get install chromium)"], {"REFNET_REQUIRE_DOCS": "0"}, "skip"),
    (["chromium (apt-get install chromium)"], {"REFNET_REQUIRE_DOCS": "1"}, "fail"),
])
def test_a_missing_tool_skips_unless_required_and_then_fails_with_the_same_reason(missing, environ, expected):
    decided = requirement.decide(missing, environ=environ)
    assert (decided[0] if decided else None) == expected
    assert decided is None or decided[1].startswith("needs chromium (apt-get install chromium)")


@pytest.mark.parametrize("environ, fails", [({}, False), ({"REFNET_REQUIRE_DOCS": "1"}, True)])
def test_the_marker_of_a_missing_tool_skips_or_fails_the_test_before_its_fixtures(environ, fails):
    import conftest

    decorator = requirement.unmet(["chromium"], environ=environ)

    class Item:  # the part of a pytest item that conftest's hook reads
        def get_closest_marker(self, name):
            return decorator.mark if name == decorator.mark.name else None

    if fails:
        with pytest.raises(pytest.fail.Exception, match="needs chromium"):
            conftest.pytest_runtest_setup(Item())
    else:
        assert decorator.mark.name == "skip" and decorator.mark.kwargs["reason"] == "needs chromium"
        conftest.pytest_runtest_setup(Item())  # a skip is pytest's own business


# --- math as GitHub shows the repository's Markdown ----------------------------------------
GITHUB_SHOWN = ["README.md", "theory/README.md", "tutorials/README.md",
                *sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").rglob("*.md"))]


@pytest.mark.parametrize("path", GITHUB_SHOWN)
def test_math_survives_githubs_markdown_view(path):
    assert mathsource.github_problems((ROOT / path).read_text(encoding="utf-8")) == []


@needs_docs
@pytest.mark.parametrize("path", GITHUB_SHOWN)
def test_math_comes_out_of_a_commonmark_parser_verbatim(path):
    assert mathsource.commonmark_problems((ROOT / path).read_text(encoding="utf-8")) == []


@pytest.mark.parametrize("text, problem", [
    ("a $w \\leftarrow (1 - \\eta\\,\\mathrm{wd})\\, w$ b", "\\, (write \\thinspace)"),
    ("$$\nx \\; y\n$$\n", "\\; (write \\thickspace)"),
    ("a $\\{x\\}$ b", "\\{ (write \\lbrace)"),
    ("$$\n\\begin{aligned} a &= b \\\\ c &= d \\end{aligned}\n$$\n", "a ```math fence"),
    ("a $x + y\n= z$ b", "spans lines"),
    ("the lag-$m$ correlation", "glued"),
    ("no $\\gamma$/$\\beta$ here", "glued"),
    ("| a | b |\n|---|---|\n| `||w||` | 1 |\n", "a table row of 6 cells under a header of 2"),
])
def test_the_github_check_catches_what_githubs_view_would_break(text, problem):
    assert any(problem in p for p in mathsource.github_problems(text)), mathsource.github_problems(text)


@pytest.mark.parametrize("text", [
    "```math\n\\begin{aligned} a &= \\eta\\,b \\\\ c &= d \\end{aligned}\n```\n",  # not parsed by GitHub
    "a $\\eta\\thinspace\\mathrm{wd}$ b, and `$\\,$` in code",
    "| a | b |\n|---|---|\n| $\\lVert w \\rVert$ | `a \\| b` |\n",
    "it costs $5, or $6 (no math)",
])
def test_the_github_check_passes_what_github_shows_as_written(text):
    assert mathsource.github_problems(text) == []


@needs_docs
@pytest.mark.parametrize("text", [
    "```math\na_t = \\mathrm{EMA}_{\\beta_2}(x), \\qquad x_{t+1}\n```\n",    # fenced: fine
    "$$\na_t = \\mathrm{EMA}_{\\beta_2}(x), \\qquad x_{t+1}\n$$\n",          # }_{ ... x_{ : emphasis
    "a $[a+b](c+d)$ b",                                                           # a link
    "a $a <b > c$ b",                                                             # an HTML tag
])
def test_the_commonmark_check_catches_emphasis_links_and_html_across_a_formula(text):
    assert (mathsource.commonmark_problems(text) == []) == text.startswith("```math")


@pytest.mark.parametrize("text, expected", [
    ("a $x$ and $$\\sum_i y_i$$ b `$not$` c\n\n```\n$no$\n```\nd $\\lVert w \\rVert$, costs $5", 3),
    ("```math\na \\\\ b\n```\nthen $x$", 2),
])
def test_count_formulas_skips_code_and_counts_fences_display_and_inline_math(text, expected):
    assert mathsource.count(text) == expected
