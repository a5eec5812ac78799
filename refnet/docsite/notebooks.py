"""The lessons executed as notebooks, and their stored outputs.

A lesson is a jupytext percent script: ``tutorials/NN_name.py`` or ``docs/lessons/name.py``.
The site shows it as the notebook of that script *executed*, so that its printed numbers
and figures are on the page. ``refnet docs`` executes every lesson once and stores the
notebook under ``docs/`` at its page's path (``docs/tutorials/NN_name.ipynb``), stamped
with the SHA-256 of every file its outputs came from: the script, and each module of this
repository's ``refnet`` and ``theory`` that the lesson's kernel had imported when it
finished (recorded by the kernel itself, so the list is exact, not guessed). A stored
notebook is fresh while every one of those files is unchanged; ``refnet docs --check``
names the files that changed. The site build (``docs/hooks.py``) uses a stored notebook
only while it is fresh and executes the lesson itself otherwise, so neither an edited
tutorial nor a change in the code it runs shows stale outputs: it only makes the next build
slower until ``refnet docs`` stores the lesson again (all of them: about 30 s on 2 cores).

Not covered by the stamp: the third-party packages (NumPy, Matplotlib), the data set and
the machine (its BLAS). A stored notebook shows the numbers of the machine that ran
``refnet docs``; a change in refnet that cannot alter them (a docstring) still marks the
lessons that import it stale, which costs one ``refnet docs``.
"""

import hashlib
import json
import os
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STAMP = "refnet_inputs_sha256"     # notebook metadata: {repository path: SHA-256} of its inputs
CODE = ("refnet", "theory")          # the repository's packages whose imported modules are inputs
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


def digest(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _relative(path):
    return Path(path).resolve().relative_to(Path(ROOT).resolve()).as_posix()


def stale_inputs(script, notebook):
    """Why ``notebook`` does not hold the outputs of ``script`` as things are now: the inputs
    (repository paths) that changed since it was executed, or a sentence; empty when fresh."""
    import nbformat

    notebook = Path(notebook)
    if not notebook.is_file():
        return ["no stored notebook"]
    try:
        stamp = nbformat.read(notebook, as_version=4).metadata.get(STAMP)
    except (OSError, ValueError):  # unreadable: stale, so it is executed again
        return ["unreadable"]
    if not isinstance(stamp, dict) or _relative(script) not in stamp:
        return ["not executed by this version of `refnet docs`"]
    return [path for path, sha in sorted(stamp.items())
            if not (Path(ROOT) / path).is_file() or digest(Path(ROOT) / path) != sha]


def is_fresh(script, notebook):
    """Whether ``notebook`` holds the outputs of ``script`` and of the code it ran, as they are now."""
    return not stale_inputs(script, notebook)


# Run in the lesson's kernel after its last cell: the files of every module it imported.
_IMPORTED = ("import sys as _s, json as _j\n"
             "print(_j.dumps(sorted({getattr(m, '__file__', None) or '' for m in list(_s.modules.values())})))")


def _inputs(script, imported):
    """The stamp: the script and the imported modules of CODE, each with its SHA-256."""
    root = Path(ROOT).resolve()
    paths = {_relative(script)}
    for file in imported:
        path = Path(file).resolve() if file else None
        if path and path.suffix == ".py" and path.is_relative_to(root) and path.relative_to(root).parts[0] in CODE:
            paths.add(path.relative_to(root).as_posix())
    return {p: digest(root / p) for p in sorted(paths)}


def to_notebook(script, execute=True, timeout=900):
    """The notebook of ``script``; with ``execute``, run top to bottom in a fresh kernel.

    The kernel runs in a temporary directory (nothing is written into the repository) with
    this tree's ``refnet`` first on its path. A failing cell raises nbclient's
    ``CellExecutionError``, which names the cell and shows its traceback.
    """
    import jupytext

    import nbformat

    nb = jupytext.read(script)
    if execute:
        from nbclient import NotebookClient

        path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        env = {**os.environ, **_THREADS, "PYTHONPATH": path, "MPLBACKEND": _INLINE}
        nb.cells.append(nbformat.v4.new_code_cell(_IMPORTED))
        with tempfile.TemporaryDirectory(prefix="refnet-lesson-") as work:
            client = NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                                    resources={"metadata": {"path": work}})
            client.execute(env=env)
        imported = json.loads(nb.cells.pop().outputs[0]["text"])
        nb.metadata[STAMP] = _inputs(script, imported)
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
