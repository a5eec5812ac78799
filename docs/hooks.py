"""MkDocs hook: put the pages that live outside docs/ on the site, with working links,
typeset math and the lessons' outputs.

* ``README.md`` becomes the home page, ``theory/README.md`` the derivations page and
  ``tutorials/README.md`` the tutorials' index (their text is never copied into docs/, so
  the site cannot drift from the repository);
* every lesson (``tutorials/NN_*.py``, ``docs/lessons/*.py``) becomes a notebook page
  with its outputs: the notebook ``refnet docs`` stored under ``docs/`` while it matches
  the script, else the script executed now (``refnet.docsite.notebooks``). The tutorials
  are put into the navigation here, in order, so a new one needs no mkdocs.yml line.
  ``REFNET_DOCS_EXECUTE=false`` shows a stale lesson without outputs instead (quick
  previews), ``=true`` executes every lesson even where a stored notebook is fresh;
* ``tutorials/solutions.py`` becomes a page showing its code;
* nbconvert's own loaders are taken off each notebook page (``strip_nbconvert_loaders``): a
  second copy of KaTeX, and a mermaid loader pointing at a CDN;
* KaTeX, the math renderer, is copied from a package into ``assets/katex/`` (Debian's
  ``libjs-katex`` at /usr/share/javascript/katex, or any KaTeX ``dist`` folder named by
  ``REFNET_KATEX_DIR``, e.g. npm's ``node_modules/katex/dist``): nothing is fetched
  from a CDN when a page is read.

Links in those pages are written for the repository (``theory/README.md``,
``refnet/ops/``); they are rewritten to the site's pages. An image the README shows is
copied as is. A link to another file of the repository that has no page (``setup.cfg``)
becomes plain code; a link to a path that does not exist is left alone, so that
``mkdocs build --strict`` fails on it.
"""

import html
import logging
import os
import posixpath
import re
import shutil
import sys
import tempfile
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File

log = logging.getLogger("mkdocs.hooks.refnet")
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # this tree's refnet, not another installed copy
    sys.path.insert(0, str(ROOT))
from refnet.docsite import notebooks  # noqa: E402

PAGES = {  # repository file -> site page
    "README.md": "index.md",
    "theory/README.md": "theory.md",
    "tutorials/README.md": "tutorials/index.md",
    "tutorials/solutions.py": "tutorials/solutions.md",
}
API = {  # repository path (file or folder) -> API page
    "refnet/ops": "api/ops.md", "refnet/nn": "api/nn.md", "refnet/optim": "api/optim.md",
    "refnet/gradcheck": "api/gradcheck.md", "refnet/invariance.py": "api/invariance.md",
    "refnet/train.py": "api/train.md", "refnet/checkpoint.py": "api/train.md",
    "refnet/data.py": "api/data.md", "refnet/datasets_io.py": "api/data.md",
    "refnet/dynamics.py": "api/dynamics.md", "refnet/backend.py": "api/backend.md",
    "theory": "api/theory.md",
}
IMAGES = (".png", ".svg", ".jpg", ".jpeg", ".gif")
LINK = re.compile(r"(!?\[(?:[^\[\]]|\[[^\]]*\])*\]\()([^)\s]+)(\))")
TUTORIAL_LINK = re.compile(r"(\]\((?:[^)\s]*/)?tutorials/\d\d_\w+)\.py([)#])")
KATEX_DIRS = ("/usr/share/javascript/katex",)
# site path -> candidate file names in a KaTeX folder (Debian's, then npm's dist layout)
KATEX_FILES = {
    "assets/katex/katex.min.js": ("katex.min.js",),
    "assets/katex/katex.min.css": ("katex.min.css",),
    "assets/katex/auto-render.js": ("contrib/auto-render.js", "contrib/auto-render.min.js"),
}
TUTORIALS_NAV = "Tutorials"
_build = {}  # per build: the temporary folder of executed notebooks


def _site_target(repo_target):
    """The site path for a repository path, or None if it has no page."""
    path = repo_target.rstrip("/")
    if path in PAGES:
        return PAGES[path]
    if path in ("tutorials", "docs"):
        return "tutorials/index.md" if path == "tutorials" else "index.md"
    if re.fullmatch(r"tutorials/\d\d_\w+\.py", path) and (ROOT / path).is_file():
        return path[:-3] + ".ipynb"
    if path.startswith("docs/") and (ROOT / path).is_file():
        return path[len("docs/"):]
    for prefix, page in API.items():
        if path == prefix or path.startswith(prefix + "/"):
            return page
    return None


def rewrite_links(text, repo_path, site_path, extra_files):
    """Links of ``text`` (the repository file ``repo_path``) made relative to ``site_path``."""
    here = posixpath.dirname(repo_path)

    def fix(match):
        opening, target, closing = match.groups()
        if re.match(r"^[a-z][a-z0-9+.-]*:|^#|^/", target, re.I):
            return match.group(0)  # a URL, an anchor on the same page, or site-absolute
        path, _, anchor = target.partition("#")
        repo_target = posixpath.normpath(posixpath.join(here, path))
        site_target = _site_target(repo_target)
        if site_target is None and repo_target.lower().endswith(IMAGES) and (ROOT / repo_target).is_file():
            extra_files.add(repo_target)
            site_target = repo_target
        if site_target is None:
            if (ROOT / repo_target).exists():
                log.info("%s: %s has no page on the site; shown as code", repo_path, target)
                label = opening[opening.index("[") + 1:-2]
                return label if label.startswith("`") else f"`{label}`"
            return match.group(0)
        rel = posixpath.relpath(site_target, posixpath.dirname(site_path) or ".")
        return f"{opening}{rel}{'#' + anchor if anchor else ''}{closing}"

    return LINK.sub(fix, text)


def _solutions_page(text):
    return ("# Reference solutions\n\n"
            "The tutorials' exercises each end with a check you call (`exercise_1()`...). "
            "These are the answers `tests/test_tutorials.py` passes to those checks: try first.\n\n"
            f"```python\n{text}```\n")


def katex_dir():
    """The KaTeX folder the site ships, or a PluginError saying how to install one."""
    candidates = [os.environ["REFNET_KATEX_DIR"]] if os.environ.get("REFNET_KATEX_DIR") else list(KATEX_DIRS)
    for folder in map(Path, candidates):
        if all(any((folder / n).is_file() for n in names) for names in KATEX_FILES.values()):
            return folder
    raise PluginError(f"KaTeX (the site's math renderer) not found in {', '.join(candidates)}: "
                      "install Debian's package (apt-get install libjs-katex) or point "
                      "REFNET_KATEX_DIR at a KaTeX dist folder (npm install katex: node_modules/katex/dist)")


def _title(script):
    """A lesson's title: the first markdown heading of the script."""
    match = re.search(r"^# # (.+)$", script.read_text(encoding="utf-8"), re.M)
    return match.group(1).strip() if match else script.stem


def on_config(config):
    """Check that KaTeX is there, and list every tutorial under the Tutorials section."""
    katex_dir()
    pages = [{_title(s): page} for s, page in notebooks.lessons(ROOT) if page.startswith("tutorials/")]
    for section in config.nav or []:
        if isinstance(section, dict) and TUTORIALS_NAV in section:
            kept = [e for e in section[TUTORIALS_NAV]
                    if not re.match(r"tutorials/\d\d_", str(next(iter(e.values())) if isinstance(e, dict) else e))]
            section[TUTORIALS_NAV] = kept[:1] + pages + kept[1:]  # after the overview
    return config


def _lesson_file(script, page, files, config):
    """The File of a lesson's notebook page: stored and fresh, or made now."""
    stored = notebooks.stored_path(page, ROOT)
    mode = os.environ.get("REFNET_DOCS_EXECUTE", "auto").lower()
    if mode != "true" and notebooks.is_fresh(script, stored):
        return files.get_file_from_path(page) or File(page, src_dir=str(ROOT / "docs"), dest_dir=config.site_dir,
                                                        use_directory_urls=config.use_directory_urls)
    execute = mode != "false"
    log.info("%s: %s", script.relative_to(ROOT), "executing it (`refnet docs` stores the outputs)"
             if execute else "no stored outputs; shown without them (REFNET_DOCS_EXECUTE=false)")
    build = _build.setdefault("dir", Path(tempfile.mkdtemp(prefix="refnet-site-notebooks-")))
    try:
        nb = notebooks.to_notebook(script, execute=execute)
    except Exception as err:  # a failing cell: say which lesson, then nbclient's report
        raise PluginError(f"{script.relative_to(ROOT)} failed while executing:\n{err}") from err
    notebooks.write(nb, build / page)
    # A real file under the temporary folder (not File.generated): mkdocs-jupyter's wrapper
    # recomputes abs_src_path from src_dir and would lose a generated file's path.
    return File(page, src_dir=str(build), dest_dir=config.site_dir, use_directory_urls=config.use_directory_urls)


@event_priority(100)  # before mkdocs-jupyter looks for notebooks among the files
def on_files(files, config):
    extra = set()
    for repo_path, site_path in PAGES.items():
        source = ROOT / repo_path
        if not source.is_file():
            log.warning("%s is missing: the page %s is not built", repo_path, site_path)
            continue
        text = source.read_text(encoding="utf-8")
        if repo_path.endswith(".py"):
            text = _solutions_page(text)
        else:
            text = rewrite_links(text, repo_path, site_path, extra)
        files.append(File.generated(config, site_path, content=text))
    lessons = notebooks.lessons(ROOT)
    wanted = {page for _, page in lessons}
    for f in list(files):
        if f.src_uri.endswith(".ipynb") and f.src_uri not in wanted:
            log.warning("docs/%s has no lesson script: delete it, or run `refnet docs`", f.src_uri)
            files.remove(f)
    for script, page in lessons:
        made = _lesson_file(script, page, files, config)
        old = files.get_file_from_path(page)
        if old is not made:
            if old is not None:
                files.remove(old)
            files.append(made)
    for src_uri in sorted(extra):
        files.append(File(src_uri, src_dir=str(ROOT), dest_dir=config.site_dir,
                          use_directory_urls=config.use_directory_urls))
    folder = katex_dir()
    for site_path, names in KATEX_FILES.items():
        found = next(folder / n for n in names if (folder / n).is_file())
        files.append(File.generated(config, site_path, abs_src_path=str(found.resolve())))
    for font in sorted((folder / "fonts").iterdir()):
        files.append(File.generated(config, f"assets/katex/fonts/{font.name}", abs_src_path=str(font.resolve())))
    return files


def on_page_markdown(markdown, page, config, files):
    """A page of docs/ may link the repository's files as they lie (``../theory/README.md``,
    which also works on a repository host) or a tutorial by its script: point the links at
    the site's pages."""
    if not page.file.generated_by and page.file.src_uri.endswith(".md"):
        markdown = rewrite_links(markdown, f"docs/{page.file.src_uri}", page.file.src_uri, set())
    return TUTORIAL_LINK.sub(r"\1.ipynb\2", markdown)


def _toc_links(items):
    for item in items:
        yield item
        yield from _toc_links(item.children)


def _align_toc(content, page):
    """Point a notebook page's table of contents at its headings as nbconvert wrote them.

    mkdocs-jupyter takes the contents from a markdown rendering of the notebook, whose ids
    lose a heading's code (``#finding-the-groups`` for the heading "Finding the groups:
    `mark_scale_invariant`", whose id is ``finding-the-groups-mark_scale_invariant``).
    """
    heads = re.findall(r'<h([1-6])[^>]*\sid="([^"]+)"[^>]*>(.*?)</h\1>', content, flags=re.S)
    links = list(_toc_links(page.toc))
    if len(heads) != len(links):
        log.warning("%s: %d headings but %d entries in the contents", page.file.src_uri, len(heads), len(links))
        return
    for link, (_, anchor, inner) in zip(links, heads):
        link.id = anchor
        inner = re.sub(r'<a class="anchor-link".*?</a>', "", inner, flags=re.S)
        link.title = html.unescape(re.sub(r"<[^>]+>", "", inner)).strip()


def on_page_content(content, page, config, files):
    """Under each lesson's title: how to open it as a notebook or in a plain editor."""
    script = {page_: s for s, page_ in notebooks.lessons(ROOT)}.get(page.file.src_uri)
    if script is None:
        return content
    _align_toc(content, page)
    rel = script.relative_to(ROOT).as_posix()
    name = Path(page.file.src_uri).name
    box = (f'<div class="admonition tip"><p class="admonition-title">Open this lesson yourself</p>'
           f"<p>In a plain editor: <code>{html.escape(rel)}</code> is an ordinary Python script "
           f"(markdown cells are comments); run it with <code>python {html.escape(rel)}</code>. "
           f"As a notebook: <code>jupytext --to ipynb {html.escape(rel)}</code>, then open the "
           f"<code>.ipynb</code> in Jupyter; or download the notebook executed for this page, "
           f'<a href="{html.escape(name)}" download>{html.escape(name)}</a>.</p></div>')
    head = re.search(r"</h1>", content)
    return content[:head.end()] + box + content[head.end():] if head else box + content


# What nbconvert puts on every notebook page and the site does without: its math loader (a
# second copy of the site's KaTeX, at custom_mathjax_url) with a MathJax configuration nothing
# reads (docs/javascripts/math.js typesets the notebooks), and a module script that imports
# mermaid from cdnjs.cloudflare.com when a page has a diagram (no lesson has one).
NBCONVERT_MATH = re.compile(r"<!-- Load mathjax -->.*?<!-- End of mathjax configuration -->", re.S)
NBCONVERT_MERMAID = "jp-Mermaid"


def strip_nbconvert_loaders(output):
    """``output`` without nbconvert's math loader and its mermaid loader."""
    output = NBCONVERT_MATH.sub("", output)
    start = 0
    while (start := output.find('<script type="module">', start)) >= 0:
        end = output.find("</script>", start)
        if end < 0:
            break
        end += len("</script>")
        if NBCONVERT_MERMAID in output[start:end]:
            output = output[:start] + output[end:]
        else:
            start = end
    return output


def on_post_page(output, page, config):
    return strip_nbconvert_loaders(output)


def on_post_build(config):
    folder = _build.pop("dir", None)
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)
