"""The documentation site in a real browser: built (``mkdocs build --strict``, into a temporary
folder), served on 127.0.0.1 and opened page by page in headless Chromium (Debian's, through
Playwright; ``refnet.docsite.browser``).

Every page the build wrote (404.html included) is opened, and loads with no console error
or warning (KaTeX warns in strict mode), no failed request and no request off the machine;
every formula of its source reaches the page verbatim and is typeset (as many KaTeX formulas
on the page as the source has, ``refnet.docsite.mathsource``, and no raw ``$``, ``\\(`` or
``\\[`` left in the text outside code); every internal link resolves, anchors included; each
lesson page shows its printed numbers and figures, with no code line cut off; the search
finds ``batchnorm_backward``. Each check also runs on a planted page (or term) where it must
fail: a console error or warning, a formula mangled, unparsable or left raw, a request off
the machine, a broken link, a lesson page without its outputs, a code line cut off, a term
the search does not find.

Marked ``browser``; skipped, with the reason, when Chromium or the docs extra is missing
(``apt-get install chromium libjs-katex``; ``python -m pip install -e '.[docs]'``); with
``REFNET_REQUIRE_DOCS=1`` (CI) they fail instead (``tests/requirement.py``).
"""

import os
import re
from pathlib import Path
from html import unescape
from urllib.parse import unquote, urlsplit

import pytest
import requirement

from refnet.docsite import browser, mathsource, notebooks

ROOT = Path(__file__).resolve().parents[1]
_skip = browser.missing() + ([] if os.environ.get("REFNET_KATEX_DIR") or Path("/usr/share/javascript/katex").is_dir()
                             else ["KaTeX (apt-get install libjs-katex)"])
pytestmark = [pytest.mark.browser, requirement.unmet(_skip)]

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
    cut: [...cell.querySelectorAll(".jp-InputArea .highlight-ipynb")].some(
      box => box.scrollWidth > box.clientWidth + 1),              // a code line hidden on the right
  }));
  return {
    typeset: article.querySelectorAll(".katex").length,
    raw: raw,
    cells: cells,
    links: [...document.querySelectorAll("a[href]")].map(a => a.href),
  };
}"""


# --- what each page's source says ---------------------------------------------------
count_formulas = mathsource.count


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
    found["404.html"] = ""  # Material's page for a missing address
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


def formulas_not_verbatim(html, markdown):
    """The formulas of ``markdown`` that the page ``html`` does not hold verbatim, in order
    (entities decoded, each run of white space as one space): a formula changed on the way
    (an escape eaten, a character dropped) may still typeset, and then only this sees it."""
    text = " ".join(unescape(html.split("<article", 1)[-1]).split())
    missing, at = [], 0
    for formula in mathsource.formulas(markdown):
        tex = " ".join(formula.tex.split())
        found = text.find(tex, at)
        if found < 0:
            missing.append(f"line {formula.line}: {tex[:80]}")
        else:
            at = found + len(tex)
    return missing


def built_urls(site):
    """The address of every page the build wrote (the pages planted below left out)."""
    rels = [p.relative_to(site).as_posix() for p in site.rglob("*.html")]
    return {r[:-len("index.html")] if r.endswith("index.html") else r for r in rels if "planted-" not in r}


def lesson_problems(seen, code):
    """What a lesson page lacks: the output of a cell that prints, the figure of a cell that
    draws, a whole code line (one cut off on the right)."""
    cells = seen["cells"]
    problems = [] if len(cells) == len(code) else [f"{len(cells)} code cells on the page, {len(code)} in the script"]
    for source, cell in zip(code, cells):
        first = (source.strip().splitlines() or [""])[0][:60]
        if re.search(r"\bprint\(", source) and not cell["output"]:
            problems.append(f"no output under: {first}")
        if re.search(r"plt\.(subplots|figure)\(", source) and not (cell["images"] and all(cell["images"])):
            problems.append(f"no figure under: {first}")
        if cell["cut"]:
            problems.append(f"a code line cut off in: {first}")
    return problems


def search_problems(served, term, target, timeout=15_000):
    """Type ``term`` into the site's search box: what is wrong if no result links to an
    address containing ``target`` (an API page's anchor) within ``timeout`` ms."""
    from playwright.sync_api import TimeoutError as Timeout

    base, chromium, _ = served
    page = browser.open_page(chromium)
    try:
        browser.visit(page, base)
        page.locator("input.md-search__input").press_sequentially(term)  # typed, key by key
        hit = page.locator(f".md-search-result__item a[href*='{target}']")
        try:
            hit.first.wait_for(timeout=timeout)
        except Timeout:
            listed = [a.get_attribute("href") for a in page.locator(".md-search-result__item a").all()]
            return [f"the search for {term!r} lists no {target} (it lists {listed[:5]})"] + page.problems
        href = hit.first.get_attribute("href")
        return ([] if href.startswith(base + "api/") else [f"{href}: not an API page"]) + page.problems
    finally:
        page.close()


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
def test_every_page_the_build_wrote_is_opened(site):
    assert built_urls(site) == set(PAGES)


@pytest.mark.parametrize("url", sorted(PAGES), ids=lambda u: u or "home")
def test_page_loads_without_console_error_warning_failed_request_or_request_off_the_machine(served, url):
    assert observe(served, url)["problems"] == []


@pytest.mark.parametrize("url", sorted(PAGES), ids=lambda u: u or "home")
def test_every_formula_of_the_source_reaches_the_page_verbatim(site, url):
    path = site / url / "index.html" if url.endswith("/") or not url else site / url
    assert formulas_not_verbatim(path.read_text(encoding="utf-8"), PAGES[url]) == []


@pytest.mark.parametrize("url", sorted(PAGES), ids=lambda u: u or "home")
def test_every_formula_of_the_source_is_typeset(served, url):
    assert formula_problems(observe(served, url), count_formulas(PAGES[url])) == []


@pytest.mark.parametrize("url", sorted(PAGES), ids=lambda u: u or "home")
def test_internal_links_resolve_anchors_included(site, served, url):
    assert broken_links(site, served[0], observe(served, url), url) == []


@pytest.mark.parametrize("url", sorted(LESSONS))
def test_lesson_page_shows_every_output_and_figure_and_whole_code_lines(served, url):
    assert lesson_problems(observe(served, url), _code_cells(LESSONS[url])) == []


def test_search_finds_batchnorm_backward(served):
    assert search_problems(served, "batchnorm_backward", "#refnet.ops.batchnorm.batchnorm_backward") == []


# --- the checks above fail where they should ---------------------------------------
PLANTED_FROM = "conventions/"  # a short page with formulas
PLANTED_LESSON = "tutorials/03_effective_learning_rate/"  # prints, draws, and has a long code line


def _planted(site, name, edit, source=PLANTED_FROM):
    """A copy of the page ``source``, edited, beside it (its relative links still work)."""
    html = (site / source / "index.html").read_text(encoding="utf-8")
    changed = edit(html)
    assert changed != html
    folder = site / Path(source).parent / name
    folder.mkdir(exist_ok=True)
    (folder / "index.html").write_text(changed, encoding="utf-8")
    return folder.relative_to(site).as_posix() + "/"


def test_the_page_check_fails_on_a_console_error(site, served):
    url = _planted(site, "planted-console-error",
                   lambda h: h.replace("</body>", "<script>console.error('planted')</script></body>"))
    assert any("planted" in p for p in observe(served, url)["problems"])


def test_the_page_check_fails_on_a_console_warning(site, served):
    url = _planted(site, "planted-console-warning",
                   lambda h: h.replace("</body>", "<script>console.warn('planted')</script></body>"))
    assert "console warning: planted" in observe(served, url)["problems"]


def test_the_page_check_fails_on_katex_warning_in_strict_mode(site, served):
    url = _planted(site, "planted-katex-warning",  # typesets, but KaTeX warns: unicode text in math
                   lambda h: h.replace("</article>", '<p><span class="arithmatex">\\(\u00e9\\)</span></p>'
                                                     "</article>", 1))
    assert any("console warning" in p and "strict" in p for p in observe(served, url)["problems"])


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


def test_the_verbatim_check_fails_on_a_formula_changed_that_still_typesets(site, served):
    changed = r"\(\lambda \lVert w \rVert^3\)"  # the source has ^2
    url = _planted(site, "planted-changed-formula",
                   lambda h: h.replace(r"\(\lambda \lVert w \rVert^2\)", changed, 1))
    assert formula_problems(observe(served, url), count_formulas(PAGES[PLANTED_FROM])) == []  # typesets
    html = (site / url / "index.html").read_text(encoding="utf-8")
    assert formulas_not_verbatim(html, PAGES[PLANTED_FROM]) == ["line 17: \\lambda \\lVert w \\rVert^2"]


def test_the_link_check_fails_on_a_missing_page_and_a_missing_anchor(site, served):
    url = _planted(site, "planted-bad-links", lambda h: h.replace(
        "</article>", '<a href="../no-such-page/">x</a><a href="../conventions/#no-such-anchor">y</a></article>', 1))
    broken = broken_links(site, served[0], observe(served, url), url)
    assert any("no such file" in b for b in broken) and any("no anchor" in b for b in broken)


def _stripped_lesson(html):
    """The lesson page without its outputs (so without its figures), its code unwrapped."""
    html = html.replace("jp-OutputArea-output", "jp-OutputArea-gone")
    return html.replace("</head>", "<style>.jupyter-wrapper .highlight-ipynb pre{white-space:pre !important}</style>"
                                   "</head>", 1)


@pytest.mark.parametrize("problem", ["no output under", "no figure under", "a code line cut off"])
def test_the_lesson_check_fails_on_a_page_without_outputs_figures_or_whole_lines(site, served, problem):
    url = _planted(site, "planted-lesson", _stripped_lesson, source=PLANTED_LESSON)
    problems = lesson_problems(observe(served, url), _code_cells(LESSONS[PLANTED_LESSON]))
    assert any(p.startswith(problem) for p in problems)


def test_the_search_check_fails_on_a_term_the_site_does_not_hold(served):
    problems = search_problems(served, "zqxw_not_on_the_site", "#refnet.ops.batchnorm.batchnorm_backward",
                               timeout=3_000)  # short: the term is nowhere, so waiting longer changes nothing
    assert problems and problems[0].startswith("the search for 'zqxw_not_on_the_site' lists no")


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
