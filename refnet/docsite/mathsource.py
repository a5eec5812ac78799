"""The formulas of a Markdown text, and what a repository host's Markdown view does to them.

``formulas(text)`` finds every formula as the site's renderer (``pymdownx.arithmatex``) does:
a ```` ```math ```` fence or ``$$...$$`` (display), ``$...$`` (inline), never inside code.

``github_problems(text)`` and ``commonmark_problems(text)`` list what GitHub's view of the
file would break. GitHub parses the Markdown first and typesets what is left between the
dollars, so:

* backslash + ASCII punctuation is a Markdown escape: ``\\,`` reaches the typesetter as
  ``,``, ``\\\\`` as ``\\`` (github/markup#1746). Write ``\\thinspace``, ``\\medspace``,
  ``\\thickspace``, ``\\negthinspace``, ``\\lbrace``, ``\\rbrace``, ``\\Vert``; a display
  block that needs them (the ``\\\\`` rows of ``aligned``) goes in a ```` ```math ```` fence,
  which GitHub hands to the typesetter untouched (the site renders it through a
  ``pymdownx.superfences`` custom fence);
* an inline formula stays on one line;
* an inline formula is not glued to a letter, digit, ``-`` or ``/`` before it, nor to a letter
  or digit after it: GitHub leaves ``a$x$``, ``-$x$``, ``/$x$`` and ``$x$a`` as text
  (github/markup#1742);
* a table row has as many cells as its header: GFM splits a row at every ``|`` that is not
  escaped, inside code spans too (write a norm as ``\\lVert w \\rVert``);
* (``commonmark_problems``) the formula survives CommonMark's inline parsing verbatim: no
  ``_`` or ``*`` pairing up as emphasis across it, no link, no HTML tag (checked with
  markdown-it-py, a CommonMark parser that comes with jupytext, in the docs extra).

A ```` ```math ```` fence is exempt from all of these: GitHub does not parse inside it.
"""

import html
import re
from collections import Counter, namedtuple

Formula = namedtuple("Formula", "tex display line source")

_FENCE = re.compile(r"^([ \t]*)(`{3,}|~{3,})[ \t]*([^\n]*)$")
_CODE_SPAN = re.compile(r"(`+)(?!`).+?(?<!`)\1(?!`)", re.S)
_DISPLAY = re.compile(r"(?<!\\)\$\$(.+?)\$\$", re.S)
# arithmatex's inline rule: no space inside the dollars, may wrap onto the next line of its
# paragraph (GitHub's may not: see github_problems), not closed right before a digit ($5).
_INLINE = re.compile(r"(?<![\\$])\$(?=\S)((?:[^$\n]|\n(?![ \t]*\n))*?(?<=[^\s\\]))\$(?!\d)")
_ESCAPE = re.compile(r"\\[!-/:-@\[-`{-~]")  # backslash + ASCII punctuation: a Markdown escape
INSTEAD = {r"\,": r"\thinspace", r"\:": r"\medspace", r"\;": r"\thickspace", r"\!": r"\negthinspace",
           r"\{": r"\lbrace", r"\}": r"\rbrace", r"\|": r"\Vert", "\\\\": "a ```math fence (rows of a display block)"}
_DELIMITER_ROW = re.compile(r"^[ \t]*\|?[ \t]*:?-+:?[ \t]*(\|[ \t]*:?-+:?[ \t]*)*\|?[ \t]*$")


def _blank(text):
    """``text`` with every character but newlines replaced by a space (positions kept)."""
    return re.sub(r"[^\n]", " ", text)


def _mask_fences(text):
    """``(text with fenced code blanked, [Formula of each math fence])``."""
    lines = text.split("\n")
    out, fences, i = [], [], 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            out.append(lines[i])
            i += 1
            continue
        mark = opening.group(2)
        close = re.compile(rf"^[ \t]*{re.escape(mark[0])}{{{len(mark)},}}[ \t]*$")
        end = next((j for j in range(i + 1, len(lines)) if close.match(lines[j])), len(lines))
        body = lines[i + 1:end]
        if opening.group(3).split()[:1] == ["math"]:
            source = "\n".join(lines[i:end + 1])
            fences.append(Formula("\n".join(b.strip() for b in body), True, i + 1, source))
        out.extend(_blank(line) for line in lines[i:end + 1])
        i = end + 1
    return "\n".join(out), fences


def _without_code(text):
    """``text`` with fenced code and code spans blanked, and the math fences found."""
    masked, fences = _mask_fences(text)
    return _CODE_SPAN.sub(lambda m: _blank(m.group(0)), masked), fences


def _line(text, pos):
    return text.count("\n", 0, pos) + 1


def _dollar_formulas(text):
    """``[(Formula, start, end)]`` of the ``$$...$$`` and ``$...$`` formulas of ``text``."""
    masked, _ = _without_code(text)
    found = []
    for m in _DISPLAY.finditer(masked):
        found.append((Formula(m.group(1).strip(), True, _line(text, m.start()), text[m.start():m.end()]),
                      m.start(), m.end()))
    masked = _DISPLAY.sub(lambda m: _blank(m.group(0)), masked)
    for m in _INLINE.finditer(masked):
        found.append((Formula(m.group(1), False, _line(text, m.start()), text[m.start():m.end()]),
                      m.start(), m.end()))
    return sorted(found, key=lambda f: f[1])


def formulas(text):
    """Every formula of the Markdown ``text``, in order: ``Formula(tex, display, line, source)``."""
    _, fences = _mask_fences(text)
    return sorted(fences + [f for f, _, _ in _dollar_formulas(text)], key=lambda f: f.line)


def count(text):
    return len(formulas(text))


def github_problems(text):
    """What GitHub's Markdown view would break in ``text``: ``["line N: ..."]`` (empty: nothing)."""
    problems = []
    for f, start, end in _dollar_formulas(text):
        shown = _normalized(f.source)
        where = f"line {f.line}: {shown if len(shown) < 90 else shown[:87] + '...'}"
        escapes = sorted(set(_ESCAPE.findall(f.tex)))
        if escapes:
            problems.append(f"{where}: GitHub drops the backslash of " + ", ".join(
                f"{e} (write {INSTEAD.get(e, 'it another way')})" for e in escapes))
        if not f.display and "\n" in f.tex:
            problems.append(f"{where}: an inline formula spans lines (GitHub leaves it as text): join them")
        glued = re.match(r"[A-Za-z0-9/-]", text[start - 1:start]) or re.match(r"[A-Za-z0-9]", text[end:end + 1])
        if not f.display and glued:
            problems.append(f"{where}: glued to the text around it (GitHub leaves it as text): add a space")
    return problems + _table_rows_split(text)


def _normalized(text):
    return " ".join(text.split())


def commonmark_problems(text):
    """The ``$`` formulas of ``text`` that a CommonMark parser (GFM's base) does not pass on
    verbatim: emphasis, a link or an HTML tag across them. Needs markdown-it-py."""
    from markdown_it import MarkdownIt

    rendered = _normalized(MarkdownIt("commonmark").enable("table").render(text))
    problems = []
    wanted = Counter(_normalized(html.escape(f.source, quote=True).replace("&#x27;", "'"))
                     for f, _, _ in _dollar_formulas(text) if not _ESCAPE.search(f.tex))
    for source, n in wanted.items():
        if rendered.count(source) < n:
            problems.append(f"{html.unescape(source)[:90]}: CommonMark does not pass it on verbatim "
                            "(emphasis, a link or an HTML tag across it): put it in a ```math fence or rewrite it")
    return problems


def _cells(row):
    row = row.strip()
    row = row[1:] if row.startswith("|") else row
    row = row[:-1] if row.endswith("|") and not row.endswith("\\|") else row
    return len(re.split(r"(?<!\\)\|", row))


def _table_rows_split(text):
    """Table rows whose count of cells differs from their header's (GFM's split at every ``|``)."""
    lines = _mask_fences(text)[0].split("\n")
    problems = []
    for i in range(1, len(lines)):
        header = _cells(lines[i - 1])
        if not (_DELIMITER_ROW.match(lines[i]) and "|" in lines[i - 1] and _cells(lines[i]) == header):
            continue  # a table starts with a header row and a delimiter row of as many cells
        for j in range(i + 1, len(lines)):
            if "|" not in lines[j] or not lines[j].strip():
                break
            if _cells(lines[j]) != header:
                problems.append(f"line {j + 1}: a table row of {_cells(lines[j])} cells under a header of {header} "
                                "(GFM splits at every |, in code spans too: write a norm as \\lVert w \\rVert)")
    return problems
