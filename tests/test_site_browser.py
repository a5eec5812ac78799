"""The documentation site in a real browser: built (``mkdocs build --strict``, into a temporary
folder), served on 127.0.0.1 and opened page by page in headless Chromium (Debian's, through
Playwright; ``refnet.docsite.browser``).

Every page loads with no console error, no failed request and no request off the machine;
every formula of its source is typeset (as many KaTeX formulas on the page as ``$...$`` and
``$$...$$`` in the source, and no raw ``$``, ``\\(`` or ``\\[`` left in the text outside code);
every internal link resolves, anchors included; each lesson page shows its printed numbers
and figures; the search finds ``batchnorm_backward``. The same checks fail on pages planted
with a console error, an unrendered formula or a request off the machine.

Marked ``browser``; skipped, with the reason, when Chromium or the docs extra is missing
(``apt-get install chromium libjs-katex``; ``python -m pip install -e '.[docs]'``).
"""

import os
import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from refnet.docsite import browser, notebooks

ROOT = Path(__file__).resolve().parents[1]
_skip = browser.missing() + ([] if os.environ.get("REFNET_KATEX_DIR") or Path("/usr/share/javascript/katex").is_dir()
                             else ["KaTeX (apt-get install libjs-katex)"])
pytestmark = [pytest.mark.browser, pytest.mark.skipif(bool(_skip), reason="needs " + "; ".join(_skip))]

REPO_PAGES = {"README.md": "", "theory/README.md": "theory/", "tutorials/README.md": "tutorials/"}
CODE_TAGS = ["SCRIPT", "STYLE", "CODE", "PRE", "KBD", "SAMP", "TEXTAREA", "NOSCRIPT"]
OBSERVE = """(codeTags) => {
  const article = document.querySelector("article") || document.body;
  const raw = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const node = walker.currentNode;
    if (!/\\$|\\\\\\(|\\\\\\[/.test(node.textContent)) continue;
    let el = node.parentElement, code = false;
    for (; el; el = el.parentElement) {
      if (codeTags.includes(el.tagName) || el.classList.contains("katex")) { code = true; break; }
    }
    if (!code) raw.push(node.textContent.trim().slice(0, 80));
  }
  const cells = [...article.querySelectorAll(".jp-CodeCell")].filter(
    cell => cell.parentElement.closest(".jp-CodeCell") === null   // mkdocs-jupyter nests two
  ).map(cell => ({
    output: cell.querySelector(".jp-OutputArea-output") !== null,
    images: [...cell.querySelectorAll(".jp-OutputArea-output img")].map(
      img => img.complete && img.naturalWidth > 0 && img.getBoundingClientRect().width > 100),
  }));
  return {
    typeset: article.querySelectorAll(".katex").length,
    raw: raw,
    cells: cells,
    links: [...document.querySelectorAll("a[href]")].map(a => a.href),
  };
}"""


# --- what each page's source says ---------------------------------------------------
def count_formulas(markdown):
    """The formulas of a markdown text: ``$$...$$`` and ``$...$`` outside code (an inline
    formula may wrap onto the next line of its paragraph, as arithmatex and GitHub allow)."""
    text = re.sub(r"^ *(```|~~~).*?^ *\1", "", markdown, flags=re.M | re.S)  # fenced code
    text = re.sub(r"(`+)(?!`).+?(?<!`)\1(?!`)", "", text, flags=re.S)       # inline code
    display = re.findall(r"\$\$.+?\$\$", text, flags=re.S)
    text = re.sub(r"\$\$.+?\$\$", "", text, flags=re.S)
    inline = re.findall(r"(?<![\\$])\$(?=\S)(?:[^$\n]|\n(?![ \t]*\n))*?(?<=[^\s\\])\$(?!\d)", text)
    return len(display) + len(inline)


def _markdown_cells(script):
    import jupytext
    return "\n\n".join(c.source for c in jupytext.read(script).cells if c.cell_type == "markdown")


def _code_cells(script):
    import jupytext
    return [c.source for c in jupytext.read(script).cells if c.cell_type == "code"]


def _url(site_path):
    """``api/ops.md`` -> ``api/ops/``, ``index.md`` -> ``""``."""
    stem = site_path.rsplit(".", 1)[0]
    return "" if stem == "index" else (stem[:-len("index")] if stem.endswith("/index") else stem + "/")


def pages():
    """{url: markdown source} for every page of the site."""
    found = {url: (ROOT / repo).read_text(encoding="utf-8") for repo, url in REPO_PAGES.items()}
    found["tutorials/solutions/"] = ""  # the solutions file shown as one code block
    for md in sorted((ROOT / "docs").rglob("*.md")):
        found[_url(md.relative_to(ROOT / "docs").as_posix())] = md.read_text(encoding="utf-8")
    for script, page in notebooks.lessons(ROOT):
        found[_url(page)] = _markdown_cells(script)
    return found


PAGES = pages()
LESSONS = {_url(page): script for script, page in notebooks.lessons(ROOT)}


# --- the site, served, and what a browser sees on each page ------------------------
@pytest.fixture(scope="module")
def site(tmp_path_factory):
    folder = tmp_path_factory.mktemp("site")
    browser.build(folder)
    return folder


@pytest.fixture(scope="module")
def served(site):
    with browser.serve(site) as base, browser.chromium() as chromium:
        yield base, chromium, {}


def observe(served, url):
    """What the browser saw on ``url`` (each page is opened once per module)."""
    base, chromium, seen = served
    if url not in seen:
        page = browser.open_page(chromium)
        browser.visit(page, base + url)
        seen[url] = {**page.evaluate(OBSERVE, CODE_TAGS), "problems": list(page.problems)}
        page.close()
    return seen[url]


def formula_problems(seen, expected):
    problems = [f"raw math left in the text: {r!r}" for r in seen["raw"]]
    if seen["typeset"] != expected:
        problems.append(f"{seen['typeset']} formulas typeset, the source has {expected}")
    return problems


def _ids(site, path):
    file = site / path / "index.html" if not Path(path).suffix else site / path
    if not file.is_file():
        return None
    return set(re.findall(r'\sid="([^"]+)"', file.read_text(encoding="utf-8", errors="replace")))


def broken_links(site, base, seen, url):
    broken = []
    for link in seen["links"]:
        if not link.startswith(base):
            continue
        parts = urlsplit(link)
        path = unquote(parts.path[len(urlsplit(base).path):])
        ids = _ids(site, path.rstrip("/") if path else "")
        if ids is None:
            broken.append(f"{link}: no such file")
        elif parts.fragment and unquote(parts.fragment) not in ids:
            broken.append(f"{link}: no anchor #{parts.fragment}")
    return broken


# --- every page ------------------------------------------------------------------
@pytest.mark.parametrize("url", sorted(PAGES), ids=lambda u: u or "home")
def test_page_loads_without_console_error_failed_request_or_request_off_the_machine(served, url):
    assert observe(served, url)["problems"] == []


@pytest.mark.parametrize("url", sorted(PAGES), ids=lambda u: u or "home")
def test_every_formula_of_the_source_is_typeset(served, url):
    assert formula_problems(observe(served, url), count_formulas(PAGES[url])) == []


@pytest.mark.parametrize("url", sorted(PAGES), ids=lambda u: u or "home")
def test_internal_links_resolve_anchors_included(site, served, url):
    assert broken_links(site, served[0], observe(served, url), url) == []


@pytest.mark.parametrize("url", sorted(LESSONS))
def test_lesson_page_shows_the_output_of_every_cell_that_prints_or_draws(served, url):
    cells = observe(served, url)["cells"]
    code = _code_cells(LESSONS[url])
    assert len(cells) == len(code)
    for source, cell in zip(code, cells):
        if re.search(r"\bprint\(", source):
            assert cell["output"], source[:200]
        if re.search(r"plt\.(subplots|figure)\(", source):
            assert cell["images"] and all(cell["images"]), source[:200]


def test_search_finds_batchnorm_backward(served):
    base, chromium, _ = served
    page = browser.open_page(chromium)
    browser.visit(page, base)
    page.locator("input.md-search__input").press_sequentially("batchnorm_backward")  # typed, key by key
    hit = page.locator(".md-search-result__item a[href*='#refnet.ops.batchnorm.batchnorm_backward']")
    hit.first.wait_for(timeout=15_000)
    assert hit.first.get_attribute("href").startswith(base + "api/ops/")
    assert page.problems == []
    page.close()


# --- the checks above fail where they should ---------------------------------------
PLANTED_FROM = "conventions/"  # a short page with formulas


def _planted(site, name, edit):
    """A copy of a page of the site, edited, at the same depth (its relative links still work)."""
    html = (site / PLANTED_FROM / "index.html").read_text(encoding="utf-8")
    changed = edit(html)
    assert changed != html
    (site / name).mkdir(exist_ok=True)
    (site / name / "index.html").write_text(changed, encoding="utf-8")
    return f"{name}/"


def test_the_page_check_fails_on_a_console_error(site, served):
    url = _planted(site, "planted-console-error",
                   lambda h: h.replace("</body>", "<script>console.error('planted')</script></body>"))
    assert any("planted" in p for p in observe(served, url)["problems"])


def test_the_page_check_fails_on_a_request_off_the_machine(site, served):
    url = _planted(site, "planted-off-machine",  # aborted by the page's route before it leaves
                   lambda h: h.replace("</body>", '<img src="http://127.0.0.2:9/x.png"></body>'))
    assert any("off the machine" in p for p in observe(served, url)["problems"])


def test_the_formula_check_fails_on_a_formula_katex_cannot_typeset(site, served):
    url = _planted(site, "planted-bad-formula",
                   lambda h: h.replace('<span class="arithmatex">\\(', '<span class="arithmatex">\\(\\frac{1}{', 1))
    seen = observe(served, url)
    expected = count_formulas(PAGES[PLANTED_FROM])
    assert any("typeset" in p for p in formula_problems(seen, expected))
    assert any("raw math" in p for p in formula_problems(seen, expected))
    assert any("KaTeX could not typeset" in p for p in seen["problems"])


def test_the_formula_check_fails_on_a_formula_left_unrendered(site, served):
    url = _planted(site, "planted-raw-formula",
                   lambda h: h.replace("</article>", "<p>left as written: $x^2$</p></article>", 1))
    assert "raw math left in the text: 'left as written: $x^2$'" in formula_problems(
        observe(served, url), count_formulas(PAGES[PLANTED_FROM]))


def test_the_link_check_fails_on_a_missing_page_and_a_missing_anchor(site, served):
    url = _planted(site, "planted-bad-links", lambda h: h.replace(
        "</article>", '<a href="../no-such-page/">x</a><a href="../conventions/#no-such-anchor">y</a></article>', 1))
    broken = broken_links(site, served[0], observe(served, url), url)
    assert any("no such file" in b for b in broken) and any("no anchor" in b for b in broken)


def test_count_formulas_skips_code_and_counts_display_and_inline_math():
    text = "a $x$ and $$\\sum_i y_i$$ b `$not$` c\n\n```\n$no$\n```\nd $\\lVert w \\rVert$, costs $5"
    assert count_formulas(text) == 3



def test_refnet_docs_screenshots_writes_the_theory_page_and_a_tutorial_page_typeset(served, tmp_path):
    from refnet import docs_cli

    base, chromium, _ = served
    written = docs_cli.take_screenshots(chromium, base, tmp_path)  # what `refnet docs --screenshots` runs
    assert [p.name for p in written] == [name for _, _, name, _ in docs_cli.SHOTS]
    for path, (_, _, _, height) in zip(written, docs_cli.SHOTS):
        png = path.read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        assert (int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")) == (1280, height)


def test_taking_a_screenshot_refuses_a_page_with_a_problem(site, served, tmp_path, monkeypatch):
    from refnet import docs_cli

    url = _planted(site, "planted-screenshot", lambda h: h.replace("</body>", "<script>console.error('x')</script></body>"))
    monkeypatch.setattr(docs_cli, "SHOTS", ((url, "scale-groups", "bad.png", 600),))
    with pytest.raises(RuntimeError, match="console error"):
        docs_cli.take_screenshots(served[1], served[0], tmp_path)
    assert not (tmp_path / "bad.png").exists()
