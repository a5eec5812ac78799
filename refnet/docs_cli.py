"""``refnet docs``: store the lessons' outputs for the documentation site, and screenshot it.

    refnet docs                  execute every lesson whose stored notebook is missing or stale
    refnet docs --all            execute every lesson
    refnet docs --check          only say which stored notebooks are missing or stale, and which of
                                 their inputs changed (exit 1 if any)
    refnet docs --screenshots    then build the site, serve it on 127.0.0.1 and screenshot a
                                 theory page and a tutorial page into docs/screenshots/

A lesson (``tutorials/NN_*.py``, ``docs/lessons/*.py``) is executed in a fresh kernel and
its notebook, outputs and figures included, is stored under ``docs/`` at its page's path
(``refnet.docsite.notebooks``), stamped with its inputs (the script and the modules of refnet
and theory it imported); the site build shows it while those are unchanged. Needs
the ``docs`` extra (and for screenshots Debian's ``chromium``).
"""

import sys
import tempfile
import time
from pathlib import Path

from refnet.docsite import notebooks

SCREENSHOTS = Path("docs") / "screenshots"
# (page, heading id to scroll to, file, viewport height): a derivation with its display
# math, and a tutorial's derivation followed by a training run's printed numbers and figure.
SHOTS = (
    ("theory/", "3-sgd-l2-identity-4-and-the-equilibrium", "theory.png", 900),
    ("tutorials/03_effective_learning_rate/", "derivation", "tutorial.png", 1700),
)


def add_arguments(parser):
    parser.add_argument("--all", action="store_true",
                        help="execute every lesson, even those whose stored notebook is fresh")
    parser.add_argument("--check", action="store_true",
                        help="only list the missing or stale stored notebooks; exit 1 if any")
    parser.add_argument("--screenshots", action="store_true",
                        help=f"then screenshot a theory page and a tutorial page into {SCREENSHOTS}/")


def _missing_extra():
    import importlib.util
    return [m for m in ("jupytext", "nbclient", "nbformat", "mkdocs") if importlib.util.find_spec(m) is None]


def run(args):
    if not (notebooks.ROOT / "mkdocs.yml").is_file():
        print(f"refnet docs: works in a source checkout of refnet (no mkdocs.yml in {notebooks.ROOT})",
              file=sys.stderr)
        return 2
    missing = _missing_extra()
    if missing:
        print(f"refnet docs: needs the docs extra (missing {', '.join(missing)}): "
              "python -m pip install -e '.[docs]'", file=sys.stderr)
        return 2
    if args.screenshots:
        from refnet.docsite import browser
        if browser.missing():
            print("refnet docs --screenshots: needs " + "; ".join(browser.missing()), file=sys.stderr)
            return 2
    why = {p: notebooks.stale_inputs(s, notebooks.stored_path(p)) for s, p in notebooks.lessons()}
    stale = [(s, p) for s, p in notebooks.lessons() if args.all or why[p]]
    if args.check:
        for script, page in stale:
            print(f"stale: docs/{page} (from {script.relative_to(notebooks.ROOT)}): "
                  + ", ".join(why[page] or ["--all"]))
        print(f"{len(stale)} of {len(notebooks.lessons())} stored notebooks need `refnet docs`")
        return 1 if stale else 0
    for script, page in stale:
        start = time.perf_counter()
        nb = notebooks.to_notebook(script, execute=True)
        notebooks.write(nb, notebooks.stored_path(page))
        took = time.perf_counter() - start
        print(f"docs/{page}: executed {script.relative_to(notebooks.ROOT)} in {took:.1f} s")
    for page in _orphans():
        page.unlink()
        print(f"{page.relative_to(notebooks.ROOT)}: removed (its lesson script is gone)")
    if not stale:
        print("every stored notebook is fresh")
    if args.screenshots:
        for path in screenshots(notebooks.ROOT / SCREENSHOTS):
            print(f"{path.relative_to(notebooks.ROOT)}: written")
    return 0


def _orphans():
    wanted = {notebooks.stored_path(p) for _, p in notebooks.lessons()}
    docs = notebooks.ROOT / "docs"
    found = [*(docs / "tutorials").glob("*.ipynb"), *(docs / "lessons").glob("*.ipynb")]
    return [p for p in found if p not in wanted]


def screenshots(folder):
    """Build the site into a temporary folder, serve it and write the SHOTS into ``folder``."""
    from refnet.docsite import browser

    with tempfile.TemporaryDirectory(prefix="refnet-site-") as site:
        browser.build(site)
        with browser.serve(site) as base, browser.chromium() as chromium:
            return take_screenshots(chromium, base, folder)


def take_screenshots(chromium, base, folder):
    """The SHOTS of the site served at ``base``, written into ``folder``; refuses a page with a
    problem (``refnet.docsite.browser.open_page``) or with no typeset formula."""
    from refnet.docsite import browser

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for url, anchor, name, height in SHOTS:
        page = browser.open_page(chromium, width=1280, height=height)
        browser.visit(page, base + url)
        page.evaluate("id => window.scrollTo(0, document.getElementById(id).offsetTop - 64)", anchor)
        page.wait_for_timeout(1000)  # the header's title fades to the page's on scroll
        typeset = page.evaluate("document.querySelectorAll('article .katex').length")
        if page.problems or typeset == 0:
            raise RuntimeError(f"{url}: {typeset} formulas typeset; " + "; ".join(page.problems))
        tmp = folder / f".{name}.tmp.png"
        page.screenshot(path=str(tmp))
        tmp.replace(folder / name)
        written.append(folder / name)
        page.close()
    return written
