"""The tutorials are executed lessons: each runs top to bottom as a plain script and ends with
the numbers it measured, asserted, so running it is its test. Each exercise's check must
reject the untouched stub and accept the reference solution in ``tutorials/solutions.py``.

Each tutorial runs once per session in a subprocess (from a temporary directory, matplotlib on
Agg, RuntimeWarnings from refnet as errors, as in the rest of the suite), which then calls
every exercise check with the stub and with the reference solution. One BLAS thread: these
small matrix products gain nothing from threads, and on a shared 2-core machine spinning
BLAS threads made the training tutorials 5-10x slower.
"""

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS_DIR = ROOT / "tutorials"
TUTORIALS = sorted(p.stem for p in TUTORIALS_DIR.glob("[0-9][0-9]_*.py"))
TRAINING = {"03_effective_learning_rate", "04_l2_is_a_learning_rate_knob", "05_sgd_adam_adamw",
            "06_rotational_view", "07_batchnorm_hessian"}

DRIVER = r"""
import importlib.util, json, runpy, sys, warnings
import matplotlib
matplotlib.use("Agg")
warnings.filterwarnings("error", category=RuntimeWarning, module=r"refnet(\..*)?$")
name, folder, out = sys.argv[1:4]
namespace = runpy.run_path(f"{folder}/{name}.py", run_name="__main__")
spec = importlib.util.spec_from_file_location("tutorial_solutions", f"{folder}/solutions.py")
solutions = importlib.util.module_from_spec(spec)
spec.loader.exec_module(solutions)
checks = {}
for exercise, args in solutions.SOLUTIONS.get(name, {}).items():
    check = namespace[exercise]
    checks[exercise] = {"solution": repr(check(*args)), "stub": repr(check())}
with open(out, "w") as f:
    json.dump({"checks": checks}, f)
"""


def _marks(name):
    return [pytest.mark.slow] if name in TRAINING else []


def _load_solutions():
    spec = importlib.util.spec_from_file_location("tutorial_solutions", TUTORIALS_DIR / "solutions.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SOLUTIONS = _load_solutions().SOLUTIONS
EXERCISES = [pytest.param(name, exercise, id=f"{name}-{exercise}", marks=_marks(name))
             for name in TUTORIALS for exercise in sorted(SOLUTIONS.get(name, {}))]

_runs = {}


@pytest.fixture(scope="session")
def run_tutorial(tmp_path_factory):
    """``run_tutorial(name)``: (the finished process, the exercise checks' results or None)."""
    def run(name):
        if name not in _runs:
            work = tmp_path_factory.mktemp(name)
            out = work / "checks.json"
            threads = {k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
            path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
            env = {**os.environ, **threads, "MPLBACKEND": "Agg", "PYTHONPATH": path}
            proc = subprocess.run([sys.executable, "-c", DRIVER, name, str(TUTORIALS_DIR), str(out)],
                                  cwd=work, env=env, capture_output=True, text=True, timeout=900)
            _runs[name] = (proc, json.loads(out.read_text()) if proc.returncode == 0 else None)
        return _runs[name]
    return run


def _checks(run_tutorial, name):
    proc, results = run_tutorial(name)
    assert results is not None, f"{name} did not run to the end:\n{(proc.stdout + proc.stderr)[-3000:]}"
    return results


def test_the_seven_tutorials_exist():
    assert TUTORIALS == ["01_write_a_layer", "02_scale_invariance", "03_effective_learning_rate",
                         "04_l2_is_a_learning_rate_knob", "05_sgd_adam_adamw", "06_rotational_view",
                         "07_batchnorm_hessian"]


@pytest.mark.parametrize("name", TUTORIALS)
def test_tutorial_says_first_what_the_student_will_be_able_to_do(name):
    text = (TUTORIALS_DIR / f"{name}.py").read_text()
    first_cell = text.split("# %%", 2)[1]
    assert first_cell.startswith(" [markdown]") and "\n# # " in first_cell
    assert "**By the end you can**" in first_cell


@pytest.mark.parametrize("name", TUTORIALS)
def test_tutorial_has_two_or_three_exercises_each_with_a_reference_solution(name):
    defined = set(re.findall(r"^def (exercise_\d)\(", (TUTORIALS_DIR / f"{name}.py").read_text(), re.M))
    assert 2 <= len(defined) <= 3
    assert defined == set(SOLUTIONS[name])


@pytest.mark.parametrize("name", [pytest.param(n, marks=_marks(n)) for n in TUTORIALS])
def test_tutorial_runs_top_to_bottom_and_its_asserted_numbers_hold(name, run_tutorial):
    proc, _ = run_tutorial(name)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert "not attempted yet" in proc.stdout  # the exercises ship as stubs


@pytest.mark.parametrize("name, exercise", EXERCISES)
def test_exercise_check_accepts_the_reference_solution(name, exercise, run_tutorial):
    assert _checks(run_tutorial, name)["checks"][exercise]["solution"] == "True"


@pytest.mark.parametrize("name, exercise", EXERCISES)
def test_exercise_check_rejects_the_untouched_stub(name, exercise, run_tutorial):
    assert _checks(run_tutorial, name)["checks"][exercise]["stub"] == "False"


@pytest.mark.parametrize("name", TUTORIALS)
def test_tutorial_converts_to_a_notebook_with_jupytext(name):
    jupytext = pytest.importorskip("jupytext", reason="jupytext is in the docs extra")
    notebook = jupytext.read(TUTORIALS_DIR / f"{name}.py")
    kinds = [cell.cell_type for cell in notebook.cells]
    assert kinds[0] == "markdown" and kinds.count("code") >= 8
    assert notebook.cells[0].source.startswith("# ")
