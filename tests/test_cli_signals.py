"""Ctrl-C never loses work. ``refnet train`` stopped by SIGINT or SIGTERM (in a real
subprocess, mid-run) finishes the step in flight, checkpoints it, prints the command that
resumes and exits with 130; that command ends bit-identical to an uninterrupted run.
``refnet reproduce`` keeps every finished task; ``refnet bench`` stops with one line. The
handlers are put back afterwards, so a program calling refnet keeps its own."""

import json
import multiprocessing
import os
import re
import shlex
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from refnet import bench, checkpoint, signals
from refnet.cli import main
from refnet.data import synthetic
from refnet.experiments import config, get
from refnet.experiments import runner as runner_mod
from refnet.experiments.runner import Runner
from refnet.nn.models import mlp, trainable_parameters
from refnet.optim import SGD
from refnet.train import Trainer, TrainingInterrupted

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOTAL = 100
BASE = ["train", "--data", "synthetic", "--model", "mlp", "--width", "8", "--batch-size", "50",
        "--subset", "500", "--seed", "3", "--no-progress"]
TRAIN = BASE + ["--steps", str(TOTAL)]


def _arrays(path):
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files if k != checkpoint.META_KEY}


def _assert_same_run(a, b):
    for name in ("checkpoint.npz", "history.npz"):
        x, y = _arrays(os.path.join(a, name)), _arrays(os.path.join(b, name))
        assert sorted(x) == sorted(y), name
        for k in x:
            assert np.array_equal(x[k], y[k]), (name, k)


def _ignore_sigint():
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a shell does for a job started with &


@pytest.mark.parametrize("signum, inherited_ignore", [(signal.SIGINT, False), (signal.SIGINT, True),
                                                       (signal.SIGTERM, False)],
                         ids=["sigint", "sigint-inherited-as-ignored", "sigterm"])
def test_a_signal_mid_run_keeps_the_step_and_the_printed_command_resumes_bit_identically(
        tmp_path, signum, inherited_ignore):
    out = tmp_path / "stopped"
    # --checkpoint-every 1 shows from outside that training has begun; it does not shape the run
    argv = TRAIN + ["--out", str(out), "--checkpoint-every", "1"]
    proc = subprocess.Popen([sys.executable, "-m", "refnet.cli"] + argv, cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": ROOT}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=_ignore_sigint if inherited_ignore else None)
    deadline = time.monotonic() + 120
    while not (out / "checkpoint.npz").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stdout + stderr
    (line,) = stderr.strip().splitlines()
    name = signals.signal_name(signum)
    match = re.fullmatch(rf"refnet train: stopped by {name} at step (\d+) of {TOTAL}; checkpoint saved: "
                         rf"(.+); resume with: (refnet train .+)", line)
    assert match, line
    step, path, command = int(match[1]), match[2], match[3]
    assert 1 <= step < TOTAL  # the signal came mid-run
    assert path == str(out / "checkpoint.npz")
    assert checkpoint.read_npz(path, meta_only=True)[1]["step"] == step
    words = shlex.split(command)
    assert words[-1] == "--resume" and words[1:-1] == argv
    assert main(words[1:]) == 0
    assert main(TRAIN + ["--out", str(tmp_path / "straight")]) == 0
    _assert_same_run(out, tmp_path / "straight")


def test_handlers_are_put_back_after_the_command(tmp_path):
    def mine(signum, frame):
        pass
    before = {s: signal.signal(s, mine) for s in signals.STOP_SIGNALS}
    try:
        assert main(BASE + ["--steps", "2", "--out", str(tmp_path)]) == 0
        assert all(signal.getsignal(s) is mine for s in signals.STOP_SIGNALS)
    finally:
        for s, h in before.items():
            signal.signal(s, h)


def test_handled_calls_the_callback_and_restores(monkeypatch):
    seen = []
    previous = signal.getsignal(signal.SIGTERM)
    with signals.handled(seen.append):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.01)  # the handler runs between bytecodes of the main thread
    assert seen == [signal.SIGTERM] and signal.getsignal(signal.SIGTERM) is previous


# --- the library: request_stop ------------------------------------------------------------
def _trainer(data, out_dir, stop_at=None):
    model = mlp(36, num_classes=4, width=8, depth=1, rng=0)
    trainer = Trainer(model, SGD(trainable_parameters(model), lr=0.05, momentum=0.9), data,
                      batch_size=32, steps=25, seed=1, out_dir=out_dir, progress=False)
    if stop_at is not None:  # the schedule is called at the start of every step: ask there
        trainer.schedule = lambda step: (step == stop_at and trainer.request_stop(signal.SIGINT)) or 1.0
    return trainer


def test_request_stop_finishes_the_step_in_flight_and_resume_is_bit_identical(tmp_path):
    data = synthetic(n_train=300, n_test=60, shape=(1, 6, 6), num_classes=4, seed=0)
    with pytest.raises(TrainingInterrupted) as stop:
        _trainer(data, tmp_path / "a", stop_at=12).fit()
    assert (stop.value.step, stop.value.total_steps) == (13, 25)  # step 12 (0-based) was completed
    assert stop.value.checkpoint_path == str(tmp_path / "a" / "checkpoint.npz")
    assert isinstance(stop.value, KeyboardInterrupt)
    resumed = _trainer(data, tmp_path / "a")
    resumed.load_checkpoint()
    assert resumed.step == 13
    resumed.fit()
    _trainer(data, tmp_path / "b").fit()
    _assert_same_run(tmp_path / "a", tmp_path / "b")


def test_a_second_request_stops_at_once(tmp_path):
    trainer = _trainer(synthetic(n_train=64, n_test=8, shape=(36,), num_classes=4), None)
    trainer.request_stop()
    with pytest.raises(signals.Interrupted):
        trainer.request_stop()


# --- reproduce and bench --------------------------------------------------------------------
REPRO = ["reproduce", "--preset", "tiny", "--data", "synthetic", "--jobs", "1", "--no-progress",
         "--only", "invariance"]


def test_reproduce_interrupted_keeps_finished_tasks_and_says_so(tmp_path, monkeypatch, capsys):
    """Its three tasks run in this process (--jobs 1); Ctrl-C arrives during the third."""
    real = runner_mod.execute
    calls = []

    def execute(spec):
        calls.append(spec)
        if len(calls) == 3:
            raise signals.Interrupted(signal.SIGINT)
        return real(spec)
    monkeypatch.setattr(runner_mod, "execute", execute)
    assert main(REPRO + ["--out", str(tmp_path)]) == 130
    (line,) = capsys.readouterr().err.strip().splitlines()
    cache = tmp_path / ".cache"
    assert line == (f"refnet reproduce: interrupted by SIGINT; the 2 tasks finished in this run are kept "
                    f"in {cache} (2 cached in all): the same command goes on from them")
    assert len(os.listdir(cache)) == 2
    monkeypatch.setattr(runner_mod, "execute", real)
    assert main(REPRO + ["--out", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "report.json").read_text())["config"]["tasks_run"] == 1


def test_a_failing_task_stops_the_pool_and_keeps_what_finished(tmp_path):
    """Two workers, the failing task last (cheapest): the error reaches the caller, what
    finished is cached, and no worker is left running."""
    cfg = config.make_config("tiny", data="synthetic")
    good = get("invariance").specs(cfg)
    with pytest.raises(ValueError, match="execute"):
        Runner(jobs=2, cache_dir=tmp_path, progress=False).map(good + [{"task": "nope"}])
    assert 1 <= len(os.listdir(tmp_path)) <= len(good)
    deadline = time.monotonic() + 10
    while multiprocessing.active_children() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert multiprocessing.active_children() == []


def test_bench_interrupted_prints_one_line_and_writes_nothing(tmp_path, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise signals.Interrupted(signal.SIGTERM)
    monkeypatch.setattr(bench, "run_cases", interrupted)
    out = tmp_path / "b.json"
    rc = main(["bench", "--quick", "--no-torch", "--repeats", "1", "--batch", "2", "--only", "maxpool",
               "--json", str(out)])
    assert rc == 130 and not out.exists()
    assert capsys.readouterr().err.strip().splitlines() == ["refnet bench: interrupted by SIGTERM"]
