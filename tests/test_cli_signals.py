"""Ctrl-C never loses work. ``refnet train`` stopped by SIGINT or SIGTERM (in a real
subprocess, mid-run) says so at once, finishes the step in flight, checkpoints it, prints
the command that resumes and exits with 130; that command ends bit-identical to an
uninterrupted run. A second Ctrl-C stops sooner and still keeps every finished step, in a
step or in a test pass. ``refnet reproduce`` (its workers too) keeps every finished task;
``refnet bench`` stops with one line and writes nothing. The handlers are put back
afterwards, so a program calling refnet keeps its own."""

import json
import multiprocessing
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import refnet.train
from refnet import bench, checkpoint, signals, train_cli
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


def _history_json(out):
    """history.json less what differs between a run and its resumption by design: the wall
    clock, and how the run was invoked (--resume, --checkpoint-every, ...)."""
    h = json.loads((Path(out) / "history.json").read_text())
    h.pop("epoch_time")
    h["config"].pop("resumed_from_step", None)
    h["config"]["args"] = {k: v for k, v in h["config"].get("args", {}).items()
                           if k not in train_cli._FREE_ON_RESUME}
    return h


def _assert_same_run(a, b):
    for name in ("checkpoint.npz", "history.npz"):
        x, y = _arrays(os.path.join(a, name)), _arrays(os.path.join(b, name))
        assert sorted(x) == sorted(y), name
        for k in x:
            assert np.array_equal(x[k], y[k]), (name, k)
    assert _history_json(a) == _history_json(b)


def _said_at(line, name, total=TOTAL):
    """The step the first request arrived at, from its one line."""
    match = re.fullmatch(rf"refnet train: {name} at step (\d+) of {total}: finishing the step in flight, "
                         rf"then saving a checkpoint; press Ctrl-C again to stop sooner \(every finished "
                         rf"step is saved all the same\)", line)
    assert match, line
    return int(match[1])


def _start(argv, cwd, **popen_options):
    """``refnet ARGV`` in a subprocess, its output unbuffered (read as it comes)."""
    return subprocess.Popen([sys.executable, "-m", "refnet.cli"] + argv, cwd=cwd, text=True,
                            env={**os.environ, "PYTHONPATH": ROOT, "PYTHONUNBUFFERED": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen_options)


def _wait_until(condition, proc, timeout=120):
    deadline = time.monotonic() + timeout
    while not condition() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert proc.poll() is None, proc.communicate()  # still running: the signal will come mid-run


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
    proc = _start(argv, tmp_path, preexec_fn=_ignore_sigint if inherited_ignore else None)
    _wait_until(lambda: (out / "checkpoint.npz").exists(), proc)
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stdout + stderr
    said, line = stderr.strip().splitlines()
    name = signals.signal_name(signum)
    at = _said_at(said, name)
    match = re.fullmatch(rf"refnet train: stopped by {name} at step (\d+) of {TOTAL}; checkpoint saved: "
                         rf"(.+); resume with: (refnet train .+)", line)
    assert match, line
    step, path, command = int(match[1]), match[2], match[3]
    assert 1 <= at <= step < TOTAL  # the signal came mid-run; nothing finished before it is lost
    assert path == str(out / "checkpoint.npz")
    assert checkpoint.read_npz(path, meta_only=True)[1]["step"] == step
    words = shlex.split(command)
    assert words[-1] == "--resume" and words[1:-1] == argv
    assert main(words[1:]) == 0
    assert main(TRAIN + ["--out", str(tmp_path / "straight")]) == 0
    _assert_same_run(out, tmp_path / "straight")


SLOW = ["train", "--data", "synthetic", "--model", "mlp", "--width", "256", "--batch-size", "250",
        "--seed", "3", "--no-progress", "--steps", "8"]  # steps of a tenth of a second or so


def test_a_second_sigint_stops_sooner_and_still_keeps_every_finished_step(tmp_path):
    """The second Ctrl-C is sent as soon as the first is acknowledged, so it lands in the
    step in flight (dropped) or in the save (which finishes): either way the checkpoint holds
    every step finished before the first one, and the printed command resumes it."""
    out = tmp_path / "stopped"
    argv = SLOW + ["--out", str(out), "--checkpoint-every", "1"]
    proc = _start(argv, tmp_path)
    _wait_until(lambda: (out / "checkpoint.npz").exists(), proc)
    proc.send_signal(signal.SIGINT)
    at = _said_at(proc.stderr.readline().strip(), "SIGINT", total=8)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in stdout + stderr, stderr
    (line,) = stderr.strip().splitlines()
    match = re.fullmatch(r"refnet train: stopped by SIGINT at step (\d+) of 8; checkpoint saved: (.+); "
                         r"resume with: (refnet train .+)", line)
    assert match, line
    assert 1 <= at <= int(match[1]) < 8
    assert checkpoint.read_npz(match[2], meta_only=True)[1]["step"] == int(match[1])
    assert main(shlex.split(match[3])[1:]) == 0
    assert main(SLOW + ["--out", str(tmp_path / "straight"), "--checkpoint-every", "1"]) == 0
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
                      batch_size=32, steps=25, seed=1, out_dir=out_dir, progress=False, eval_batch_size=20)
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


# (whose loss call: a training step's or a test batch's, which one, how many requests there)
# -> the step the checkpoint holds. 25 steps, 10 per epoch (a BN model): test passes of 3
# batches after steps 10 and 20 (calls 1-3, 4-6) and the final one after 25 (calls 7-9).
STOPS = {
    "once-mid-step": ("train", 13, 1, 13),           # the step in flight finishes
    "twice-mid-step": ("train", 13, 2, 12),          # it is dropped, BN's running stats put back
    "once-mid-test-pass": ("test", 2, 1, 10),        # the pass stops; resuming runs it again
    "twice-mid-test-pass": ("test", 2, 2, 10),
    "once-in-the-final-test-pass": ("test", 8, 1, 25),
    "twice-in-the-final-test-pass": ("test", 8, 2, 25),
}


@pytest.mark.parametrize("mode, nth, requests, step", list(STOPS.values()), ids=list(STOPS))
def test_a_stop_anywhere_keeps_every_finished_step_and_resumes_bit_identically(
        tmp_path, monkeypatch, mode, nth, requests, step):
    data = synthetic(n_train=300, n_test=60, shape=(1, 6, 6), num_classes=4, seed=0)
    trainer = _trainer(data, tmp_path / "a")
    real, calls = refnet.train.softmax_cross_entropy, []

    def loss(logits, y):  # after the forward: BN's running statistics have already moved
        out = real(logits, y)
        calls.append(trainer.model.training)
        if calls.count(mode == "train") == nth and calls[-1] == (mode == "train"):
            for _ in range(requests):
                trainer.request_stop(signal.SIGINT)
        return out
    monkeypatch.setattr(refnet.train, "softmax_cross_entropy", loss)
    with pytest.raises(TrainingInterrupted) as stop:
        trainer.fit()
    assert stop.value.step == step
    assert checkpoint.read_npz(stop.value.checkpoint_path, meta_only=True)[1]["step"] == step
    monkeypatch.undo()
    resumed = _trainer(data, tmp_path / "a")
    resumed.load_checkpoint()
    resumed.fit()
    _trainer(data, tmp_path / "b").fit()
    _assert_same_run(tmp_path / "a", tmp_path / "b")


def test_requests_after_a_stop_change_nothing_until_fit_starts_again(tmp_path):
    data = synthetic(n_train=300, n_test=60, shape=(1, 6, 6), num_classes=4, seed=0)
    trainer = _trainer(data, None, stop_at=3)
    with pytest.raises(TrainingInterrupted):
        trainer.fit()
    trainer.request_stop(signal.SIGINT)  # a late Ctrl-C while the program says it stopped
    trainer.schedule = None
    assert trainer.fit().final["step"] == 25


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


def _live_in_group(pgid):
    """Processes of process group ``pgid`` still running (zombies, already dead, excluded)."""
    live = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()  # after "pid (name)": state, ppid, pgrp
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            live.append(int(pid))
    return live


def test_reproduce_stopped_by_a_terminal_ctrl_c_keeps_finished_tasks_and_leaves_no_worker(tmp_path):
    """A real SIGINT to the whole process group, as a terminal sends it, while two workers
    run the short tasks of the experiment 'fix': the workers ignore it, the parent stops them."""
    from refnet.experiments import config, fix
    n = len(fix.specs(config.make_config("tiny", data="synthetic")))
    argv = ["reproduce", "--preset", "tiny", "--data", "synthetic", "--jobs", "2", "--no-progress",
            "--only", "fix", "--out", str(tmp_path)]
    cache = tmp_path / ".cache"
    proc = _start(argv, tmp_path, start_new_session=True)  # its own group, like a terminal's job
    _wait_until(lambda: len(list(cache.glob("*.npz"))) >= 2, proc)
    os.killpg(proc.pid, signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in stdout + stderr, stderr
    (line,) = stderr.strip().splitlines()
    match = re.fullmatch(rf"refnet reproduce: interrupted by SIGINT; the (\d+) tasks finished in this run "
                         rf"are kept in {re.escape(str(cache))} \((\d+) cached in all\): the same command "
                         rf"goes on from them", line)
    assert match, line
    kept = len(list(cache.glob("*.npz")))
    assert int(match[1]) == int(match[2]) == kept and 2 <= kept < n
    deadline = time.monotonic() + 10
    while _live_in_group(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _live_in_group(proc.pid) == []
    assert main(argv) in (0, 1)  # the tiny preset's claims may fail; its tasks ran all the same
    assert json.loads((tmp_path / "report.json").read_text())["config"]["tasks_run"] == n - kept


def test_bench_stopped_by_a_real_sigint_exits_130_and_writes_no_json(tmp_path):
    out = tmp_path / "b.json"
    proc = _start(["bench", "--quick", "--no-torch", "--repeats", "1000000", "--batch", "2", "--only",
                   "maxpool", "--json", str(out)], tmp_path)
    assert proc.stdout.readline().startswith("refnet bench: device cpu")  # the cases are being timed
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in stdout + stderr, stderr
    assert stderr.strip().splitlines() == ["refnet bench: interrupted by SIGINT"]
    assert os.listdir(tmp_path) == []
