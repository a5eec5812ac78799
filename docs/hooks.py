"""MkDocs hook: put the pages that live outside docs/ on the site, with working links.

* ``README.md`` becomes the home page, ``theory/README.md`` the derivations page and
  ``tutorials/README.md`` the tutorials' index (their text is never copied into docs/, so
  the site cannot drift from the repository);
* every ``tutorials/NN_*.py`` is added as itself, for mkdocs-jupyter to render as a
  notebook; ``tutorials/solutions.py`` becomes a page showing its code.

Links in those pages are written for the repository (``theory/README.md``,
``refnet/ops/``); they are rewritten to the site's pages. An image the README shows is
copied as is. A link to another file of the repository that has no page (``setup.cfg``)
becomes plain code; a link to a path that does not exist is left alone, so that
``mkdocs build --strict`` fails on it.
"""

import logging
import posixpath
import re
from pathlib import Path

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File

log = logging.getLogger("mkdocs.hooks.refnet")
ROOT = Path(__file__).resolve().parents[1]

PAGES = {  # repository file -> site page
    "README.md": "index.md",
    "theory/README.md": "theory.md",
    "tutorials/README.md": "tutorials/index.md",
    "tutorials/solutions.py": "tutorials/solutions.md",
}
API = {  # repository path (file or folder) -> API page
    "refnet/ops": "api/ops.md", "refnet/nn": "api/nn.md", "refnet/optim": "api/optim.md",
    "refnet/gradcheck.py": "api/gradcheck.md", "refnet/invariance.py": "api/invariance.md",
    "refnet/train.py": "api/train.md", "refnet/checkpoint.py": "api/train.md",
    "refnet/data.py": "api/data.md", "refnet/datasets_io.py": "api/data.md",
    "refnet/dynamics.py": "api/dynamics.md", "refnet/backend.py": "api/backend.md",
    "theory": "api/theory.md",
}
IMAGES = (".png", ".svg", ".jpg", ".jpeg", ".gif")
LINK = re.compile(r"(!?\[(?:[^\[\]]|\[[^\]]*\])*\]\()([^)\s]+)(\))")


def _site_target(repo_target):
    """The site path for a repository path, or None if it has no page."""
    path = repo_target.rstrip("/")
    if path in PAGES:
        return PAGES[path]
    if path in ("tutorials", "docs"):
        return "tutorials/index.md" if path == "tutorials" else "index.md"
    if re.fullmatch(r"tutorials/\d\d_\w+\.py", path) and (ROOT / path).is_file():
        return path
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
    # Real files rooted at the repository (not File.generated): mkdocs-jupyter's wrapper
    # recomputes abs_src_path from src_dir and would lose a generated file's path.
    notebooks = [f"tutorials/{p.name}" for p in sorted((ROOT / "tutorials").glob("[0-9][0-9]_*.py"))]
    for src_uri in notebooks + sorted(extra):
        files.append(File(src_uri, src_dir=str(ROOT), dest_dir=config.site_dir,
                          use_directory_urls=config.use_directory_urls))
    return files
