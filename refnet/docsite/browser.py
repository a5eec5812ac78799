"""Build the documentation site, serve it on 127.0.0.1 and open it in headless Chromium.

Chromium is Debian's package (``/usr/bin/chromium``, or ``REFNET_CHROMIUM``), driven
through Playwright's Python package: Playwright downloads nothing here (never run
``playwright install``). The site is served over HTTP because its search runs in a web
worker, which a ``file://`` page cannot start.

Every page opened with ``open_page`` records what went wrong on it in ``page.problems``:
a console error or warning (KaTeX warns about input it typesets only in strict mode), an
uncaught exception, a failed request, a response of 400 or more, and any request to a host
other than 127.0.0.1 (aborted before it leaves the machine: the site must work without a
network).
"""

import contextlib
import functools
import os
import subprocess
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
# Headless as root in a sandboxed container, with no connection of its own: without the
# background-networking flags Chromium's own connections are refused and it logs errors.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
LOCAL = "127.0.0.1"


def chromium_path():
    return os.environ.get("REFNET_CHROMIUM", CHROMIUM)


def missing():
    """What ``chromium()`` needs and does not find: a list of install hints (empty when ready)."""
    hints = []
    if not Path(chromium_path()).is_file():
        hints.append(f"{chromium_path()} (apt-get install chromium)")
    try:
        import playwright  # noqa: F401
    except ImportError:
        hints.append("playwright (python -m pip install -e '.[docs]')")
    return hints


def build(dest, execute=None, timeout=1800):
    """``mkdocs build --strict`` of this tree into ``dest``; returns mkdocs' log.

    ``execute`` sets ``REFNET_DOCS_EXECUTE`` (see docs/hooks.py; None: the default, stored
    outputs where fresh). Raises RuntimeError with the log when the build fails.
    """
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    if execute is not None:
        env["REFNET_DOCS_EXECUTE"] = str(execute).lower()
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(dest)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    log = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise RuntimeError(f"mkdocs build --strict failed:\n{log}")
    return log


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@contextlib.contextmanager
def serve(folder):
    """Serve ``folder`` on a free port of 127.0.0.1; yields the base URL (ending in /)."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = ThreadingHTTPServer((LOCAL, 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{LOCAL}:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@contextlib.contextmanager
def chromium():
    """A headless Chromium (Debian's, through Playwright), with a fresh empty profile."""
    hints = missing()
    if hints:
        raise RuntimeError("headless Chromium needs: " + "; ".join(hints))
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), headless=True, args=FLAGS)
        try:
            yield browser
        finally:
            browser.close()


def open_page(browser, width=1280, height=900):
    """A new page of ``browser`` whose ``problems`` list records what goes wrong on it."""
    page = browser.new_page(viewport={"width": width, "height": height})
    page.problems = []

    def local(url):
        return url.startswith("data:") or urlsplit(url).hostname == LOCAL

    def route(r):
        if local(r.request.url):
            r.continue_()
        else:
            page.problems.append(f"request off the machine (aborted): {r.request.url}")
            r.abort()

    def console(msg):
        if msg.type in ("error", "warning"):
            page.problems.append(f"console {msg.type}: {msg.text}")

    def failed(r):
        if local(r.url):  # an off-machine request was recorded when it was aborted
            page.problems.append(f"failed request: {r.url} ({r.failure})")

    def response(r):
        if r.status >= 400:
            page.problems.append(f"HTTP {r.status}: {r.url}")

    page.route("**/*", route)
    page.on("console", console)
    page.on("pageerror", lambda err: page.problems.append(f"uncaught exception: {err}"))
    page.on("requestfailed", failed)
    page.on("response", response)
    return page


def visit(page, url):
    """Load ``url`` and wait until the page settled and its math was typeset."""
    page.goto(url, wait_until="load")
    page.wait_for_load_state("networkidle")
    if page.evaluate("typeof katex !== 'undefined'"):
        page.wait_for_function("document.documentElement.dataset.mathTypeset === 'done'", timeout=30_000)
