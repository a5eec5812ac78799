"""The lessons executed as notebooks, and their stored outputs.

A lesson is a jupytext percent script: ``tutorials/NN_name.py`` or ``docs/lessons/name.py``.
The site shows it as the notebook of that script *executed*, so that its printed numbers
and figures are on the page. ``refnet docs`` executes every lesson once and stores the
notebook under ``docs/`` at its page's path (``docs/tutorials/NN_name.ipynb``), stamped
with the SHA-256 of the script it came from. The site build (``docs/hooks.py``) uses a
stored notebook only while its stamp matches the script and executes the lesson itself
otherwise, so an edited tutorial never shows stale outputs: it only makes the next build
slower until ``refnet docs`` stores it again.
"""

import hashlib
import os
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STAMP = "refnet_source_sha256"
# One BLAS thread, as in tests/test_tutorials.py: these small products gain nothing from
# threads, and spinning threads made the training tutorials 5-10x slower on 2 cores.
_THREADS = {k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
_INLINE = "module://matplotlib_inline.backend_inline"   # figures become image outputs


def lessons(root=None):
    """``[(script, page)]``: every lesson script and the site path of its notebook page."""
    root = Path(root or ROOT)
    found = [(p, f"tutorials/{p.stem}.ipynb") for p in sorted((root / "tutorials").glob("[0-9][0-9]_*.py"))]
    found += [(p, f"lessons/{p.stem}.ipynb") for p in sorted((root / "docs" / "lessons").glob("*.py"))]
    return found


def stored_path(page, root=None):
    """Where ``refnet docs`` stores the executed notebook of the page ``page``."""
    return Path(root or ROOT) / "docs" / page


def digest(script):
    return hashlib.sha256(Path(script).read_bytes()).hexdigest()


def is_fresh(script, notebook):
    """Whether ``notebook`` holds the outputs of ``script`` as the script is now."""
    import nbformat

    notebook = Path(notebook)
    if not notebook.is_file():
        return False
    try:
        nb = nbformat.read(notebook, as_version=4)
    except (OSError, ValueError):  # unreadable: not fresh, so it is executed again
        return False
    return nb.metadata.get(STAMP) == digest(script)


def to_notebook(script, execute=True, timeout=900):
    """The notebook of ``script``; with ``execute``, run top to bottom in a fresh kernel.

    The kernel runs in a temporary directory (nothing is written into the repository) with
    this tree's ``refnet`` first on its path. A failing cell raises nbclient's
    ``CellExecutionError``, which names the cell and shows its traceback.
    """
    import jupytext

    nb = jupytext.read(script)
    if execute:
        from nbclient import NotebookClient

        path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        env = {**os.environ, **_THREADS, "PYTHONPATH": path, "MPLBACKEND": _INLINE}
        with tempfile.TemporaryDirectory(prefix="refnet-lesson-") as work:
            client = NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                                    resources={"metadata": {"path": work}})
            client.execute(env=env)
        nb.metadata[STAMP] = digest(script)
    return nb


def write(nb, path):
    """Write ``nb`` to ``path`` atomically (a temporary file, then a rename)."""
    import nbformat

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        nbformat.write(nb, f)
    os.replace(tmp, path)
