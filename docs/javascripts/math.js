// Typeset every formula of the page with the site's own copy of KaTeX (assets/katex/,
// copied from a package at build time: the site needs no network).
//
// * Markdown pages: pymdownx.arithmatex (generic mode) wraps each formula written as
//   $...$ or $$...$$ in an element of class "arithmatex", as \(...\) or \[...\].
// * Notebook pages (tutorials, lessons): nbconvert leaves $...$ and $$...$$ as written in
//   the markdown cells.
//
// A formula KaTeX cannot parse is left as written and reported with console.error, so
// the browser test (tests/test_site_browser.py) fails on it.
(function () {
  "use strict";

  function renderArithmatex(el) {
    var tex = el.textContent.trim();
    var display = tex.slice(0, 2) === "\\[";
    try {
      katex.render(tex.slice(2, -2), el, { displayMode: display, throwOnError: true });
    } catch (err) {
      el.textContent = tex;  // katex.render emptied the element before it failed
      console.error("KaTeX could not typeset " + JSON.stringify(tex) + ": " + err.message);
    }
  }

  function renderNotebookCell(el) {
    renderMathInElement(el, {
      delimiters: [
        { left: "$$", right: "$$", display: true },
        { left: "$", right: "$", display: false },
        { left: "\\(", right: "\\)", display: false },
        { left: "\\[", right: "\\]", display: true },
      ],
      throwOnError: true,
      errorCallback: function (msg, err) {
        console.error("KaTeX could not typeset a notebook formula: " + msg + " " + err);
      },
    });
  }

  function typeset() {
    document.querySelectorAll(".arithmatex").forEach(renderArithmatex);
    document.querySelectorAll(".jp-MarkdownOutput").forEach(renderNotebookCell);
    document.documentElement.setAttribute("data-math-typeset", "done");
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", typeset);
  } else {
    typeset();
  }
})();
