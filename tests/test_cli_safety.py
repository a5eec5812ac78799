"""A mistake on the command line costs nothing: every bad input below, run through
``refnet.cli.main``, ends with exit status 2 and ONE line on stderr naming the option, what
it got and what was expected -- no traceback, and before any data is loaded or any
benchmark runs. A run in --out is never replaced without --resume or --overwrite; a corrupt
checkpoint is named with what is wrong and what to do. Ctrl-C: see test_cli_signals.py."""

import os
import shutil
import signal

import numpy as np
import pytest

import refnet.data
import refnet.train
from refnet import bench, checkpoint
from refnet.cli import build_parser, main
from refnet.experiments import reproduce
from test_data import write_idx_dir

TRAIN = ["train", "--data", "synthetic", "--model", "mlp", "--width", "8", "--batch-size", "100",
         "--subset", "200", "--no-progress"]
REPRO = ["reproduce", "--preset", "tiny", "--data", "synthetic", "--jobs", "1", "--no-progress"]
BENCH = ["bench", "--quick", "--no-torch", "--repeats", "1", "--batch", "2"]
NOT_A_DIR = "/proc/refnet-cannot-be-made"  # exists nowhere and cannot be created, even by root


@pytest.fixture(autouse=True)
def no_work(monkeypatch):
    """Any row that got as far as loading data or benchmarking fails loudly (a test that
    must train calls ``monkeypatch.undo()``)."""
    forbid_work(monkeypatch)


def forbid_work(monkeypatch):
    def work(*args, **kwargs):
        raise AssertionError("work started before the bad input was refused")
    monkeypatch.setattr(refnet.data, "load_dataset", work)
    monkeypatch.setattr(reproduce, "locate_dataset", work)
    monkeypatch.setattr(bench, "gemm_peak", work)


def _one_line(capsys, rc, *fragments, code=2):
    out, err = capsys.readouterr()
    assert rc == code, (rc, err)
    assert "Traceback" not in out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def _file(tmp):
    path = tmp / "a-file"
    path.write_text("not a directory")
    return str(path)


# (argv from a tmp dir, fragments of the one line)
TRAIN_ROWS = {
    "out-unwritable": (lambda t: ["--out", NOT_A_DIR], ["--out", NOT_A_DIR, "cannot be written"]),
    "out-is-a-file": (lambda t: ["--out", _file(t)], ["--out", "a-file", "which is a file; expected a directory"]),
    "out-empty": (lambda t: ["--out", ""], ["--out: got '', expected a directory"]),
    "out-under-a-file": (lambda t: ["--out", _file(t) + "/run"], ["--out", "is a file, not a directory"]),
    "data-dir-missing": (lambda t: ["--out", str(t / "r"), "--data", "fashion-mnist", "--data-dir",
                                    str(t / "nope")], ["--data-dir", "nope", "does not exist"]),
    "data-dir-for-synthetic": (lambda t: ["--out", str(t / "r"), "--data-dir", str(t)],
                               ["--data-dir does not apply to --data synthetic"]),
    "data-unknown": (lambda t: ["--out", str(t / "r"), "--data", "imagenet"],
                     ["--data", "'imagenet'", "expected one of fashion-mnist"]),
    "steps-negative": (lambda t: ["--out", str(t / "r"), "--steps", "-3"],
                       ["--steps", "got -3", "expected an integer >= 1"]),
    "steps-not-int": (lambda t: ["--out", str(t / "r"), "--steps", "2.5"],
                      ["--steps", "got '2.5'", "expected an integer"]),
    "batch-size-0": (lambda t: ["--out", str(t / "r"), "--batch-size", "0"], ["--batch-size", "got 0", ">= 1"]),
    "epochs-0": (lambda t: ["--out", str(t / "r"), "--epochs", "0"], ["--epochs", "got 0", ">= 1"]),
    "log-every-0": (lambda t: ["--out", str(t / "r"), "--log-every", "0"], ["--log-every", "got 0", ">= 1"]),
    "checkpoint-every-0": (lambda t: ["--out", str(t / "r"), "--checkpoint-every", "0"],
                           ["--checkpoint-every", "got 0"]),
    "width-0": (lambda t: ["--out", str(t / "r"), "--width", "0"], ["--width", "got 0", ">= 1"]),
    "depth-0": (lambda t: ["--out", str(t / "r"), "--depth", "0"], ["--depth", "got 0", ">= 1"]),
    "subset-0": (lambda t: ["--out", str(t / "r"), "--subset", "0"], ["--subset", "got 0"]),
    "seed-negative": (lambda t: ["--out", str(t / "r"), "--seed", "-1"], ["--seed", "got -1", ">= 0"]),
    "lr-negative": (lambda t: ["--out", str(t / "r"), "--lr", "-0.1"], ["--lr", "got -0.1", "[0, inf)"]),
    "lr-nan": (lambda t: ["--out", str(t / "r"), "--lr", "nan"], ["--lr", "got 'nan'", "finite"]),
    "lr-text": (lambda t: ["--out", str(t / "r"), "--lr", "fast"], ["--lr", "got 'fast'", "a number"]),
    "momentum-1": (lambda t: ["--out", str(t / "r"), "--momentum", "1"], ["--momentum", "got 1", "[0, 1)"]),
    "betas-1": (lambda t: ["--out", str(t / "r"), "--opt", "adam", "--betas", "1", "0.9"],
                ["--betas", "got 1", "[0, 1)"]),
    "eps-0": (lambda t: ["--out", str(t / "r"), "--opt", "adam", "--eps", "0"], ["--eps", "got 0", "(0, inf)"]),
    "l2-negative": (lambda t: ["--out", str(t / "r"), "--l2", "-1"], ["--l2", "got -1"]),
    "weight-decay-inf": (lambda t: ["--out", str(t / "r"), "--weight-decay", "inf"], ["--weight-decay", "finite"]),
    "gamma-0": (lambda t: ["--out", str(t / "r"), "--schedule", "step", "--step-size", "2", "--gamma", "0"],
                ["--gamma", "got 0", "(0, 1]"]),
    "opt-unknown": (lambda t: ["--out", str(t / "r"), "--opt", "rmsprop"], ["--opt", "invalid choice: 'rmsprop'"]),
    "option-unknown": (lambda t: ["--out", str(t / "r"), "--learning-rate", "0.1"],
                       ["unrecognized arguments: --learning-rate"]),
    "option-abbreviated": (lambda t: ["--out", str(t / "r"), "--overw"], ["unrecognized arguments: --overw"]),
    "out-missing": (lambda t: [], ["the following arguments are required: --out"]),
    "adam-momentum": (lambda t: ["--out", str(t / "r"), "--opt", "adam", "--momentum", "0.9"],
                      ["--momentum does not apply to --opt adam", "--opt sgd"]),
    "adam-nesterov": (lambda t: ["--out", str(t / "r"), "--opt", "adam", "--nesterov"],
                      ["--nesterov does not apply to --opt adam"]),
    "sgd-betas": (lambda t: ["--out", str(t / "r"), "--opt", "sgd", "--betas", "0.8", "0.9"],
                  ["--betas does not apply to --opt sgd", "--opt adam"]),
    "sgd-eps": (lambda t: ["--out", str(t / "r"), "--eps", "1e-6"], ["--eps does not apply to --opt sgd"]),
    "no-norm-no-affine": (lambda t: ["--out", str(t / "r"), "--norm", "none", "--no-affine"],
                          ["--no-affine does not apply to --norm none"]),
    "no-norm-unit-norm": (lambda t: ["--out", str(t / "r"), "--norm", "none", "--unit-norm"],
                          ["--unit-norm does not apply to --norm none"]),
    "constant-gamma": (lambda t: ["--out", str(t / "r"), "--gamma", "0.5"],
                       ["--gamma does not apply to --schedule constant"]),
    "cosine-step-size": (lambda t: ["--out", str(t / "r"), "--schedule", "cosine", "--step-size", "3"],
                         ["--step-size does not apply to --schedule cosine"]),
    "step-needs-step-size": (lambda t: ["--out", str(t / "r"), "--schedule", "step"],
                             ["--schedule step needs --step-size"]),
    "warmup-needs-steps": (lambda t: ["--out", str(t / "r"), "--schedule", "warmup-cosine"],
                           ["--schedule warmup-cosine needs --warmup-steps"]),
    "epochs-and-steps": (lambda t: ["--out", str(t / "r"), "--epochs", "2", "--steps", "5"],
                         ["--epochs 2 and --steps 5: give one"]),
    "resume-and-overwrite": (lambda t: ["--out", str(t / "r"), "--resume", "--overwrite"],
                             ["--resume and --overwrite: give one"]),
    "resume-nothing": (lambda t: ["--out", str(t / "r"), "--resume"], ["--resume: no checkpoint at"]),
    "nesterov-without-momentum": (lambda t: ["--out", str(t / "r"), "--nesterov"],
                                  ["--nesterov needs --momentum > 0"]),
    "nesterov-momentum-0": (lambda t: ["--out", str(t / "r"), "--nesterov", "--momentum", "0"],
                            ["--nesterov needs --momentum > 0 (got momentum 0.0)"]),
    "warmup-not-below-steps": (lambda t: ["--out", str(t / "r"), "--schedule", "warmup-cosine",
                                          "--warmup-steps", "50", "--steps", "10"],
                               ["--warmup-steps 50 with --steps 10", "needs fewer warmup steps than steps"]),
    "subset-below-classes": (lambda t: ["--out", str(t / "r"), "--subset", "5"],
                             ["--subset: got 5, expected at least one example per class (>= 10"]),
}


@pytest.mark.parametrize("make, fragments", list(TRAIN_ROWS.values()), ids=list(TRAIN_ROWS))
def test_bad_train_input_is_one_line_and_exit_2_before_any_data(tmp_path, capsys, make, fragments):
    _one_line(capsys, main(TRAIN + make(tmp_path)), "refnet train: ", *fragments)
    assert not (tmp_path / "r").exists()


REPRO_ROWS = {
    "out-unwritable": (lambda t: ["--out", NOT_A_DIR], ["--out", "cannot be written"]),
    "out-is-a-file": (lambda t: ["--out", _file(t)], ["--out", "which is a file; expected a directory"]),
    "data-dir-missing": (lambda t: ["--out", str(t / "r"), "--data-dir", str(t / "nope")],
                         ["--data-dir", "does not exist"]),
    "jobs-0": (lambda t: ["--out", str(t / "r"), "--jobs", "0"], ["--jobs", "got 0", ">= 1"]),
    "only-nomatch": (lambda t: ["--out", str(t / "r"), "--only", "nope"], ["--only", "'nope'", "invariance"]),
    "only-empty": (lambda t: ["--out", str(t / "r"), "--only", ","], ["--only", "expected a comma-separated"]),
    "seed-negative": (lambda t: ["--out", str(t / "r"), "--seed", "-2"], ["--seed", "got -2"]),
    "preset-unknown": (lambda t: ["--out", str(t / "r"), "--preset", "huge"], ["--preset", "invalid choice"]),
    **{f"seed-calibration-{n}": (lambda t, n=n: ["--out", str(t / "r"), "--seed", str(n)],
                                 ["--seed: got " + str(n), "one of the calibration seeds (1, 2, 3, 4)",
                                  "the tolerances were measured on it", "would not be held out"])
       for n in (1, 4)},
    "quick-and-preset-tiny": (lambda t: ["--out", str(t / "r"), "--quick"],
                              ["--quick and --preset tiny: give one"]),
    "data-dir-for-synthetic": (lambda t: ["--out", str(t / "r"), "--data-dir", str(t)],
                               ["--data-dir does not apply to --data synthetic"]),
    "dask-scheduler-malformed": (lambda t: ["--out", str(t / "r"), "--dask-scheduler", "nonsense"],
                                 ["--dask-scheduler: got 'nonsense'", "expected the address of a running"]),
    "dask-scheduler-unreachable": (lambda t: ["--out", str(t / "r"), "--dask-scheduler", "tcp://127.0.0.1:1"],
                                   ["--dask-scheduler: got 'tcp://127.0.0.1:1'",
                                    "expected the address of a running scheduler"]),
}


@pytest.mark.parametrize("make, fragments", list(REPRO_ROWS.values()), ids=list(REPRO_ROWS))
def test_bad_reproduce_input_is_one_line_and_exit_2_before_any_task(tmp_path, capsys, monkeypatch, make,
                                                                    fragments):
    monkeypatch.setattr(reproduce, "CONNECT_TIMEOUT", 0.5, raising=False)  # unreachable: a short wait
    _one_line(capsys, main(REPRO + make(tmp_path)), "refnet reproduce: ", *fragments)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("seed", [0, 5])
def test_a_seed_the_tolerances_were_not_measured_on_is_judged(tmp_path, seed):
    """Past the calibration-seed check, reproduce goes on to the work (here refused by ``no_work``)."""
    assert seed not in reproduce.calibration_seeds()
    with pytest.raises(AssertionError, match="work started"):
        main(REPRO + ["--out", str(tmp_path / "r"), "--seed", str(seed)])


def test_the_calibration_seeds_are_the_calibrations_own(tmp_path):
    from refnet.experiments import calibrate, registry
    recorded = {s for r in registry.calibration_records().values() for s in r.get("seeds", ())}
    assert set(reproduce.calibration_seeds()) == set(calibrate.DEFAULT_SEEDS) | recorded


def test_calibrate_still_runs_the_calibration_seeds(tmp_path, monkeypatch, capsys):
    """calibrate measures seeds 1-4 itself, without reproduce's check."""
    from refnet.experiments import calibrate
    got = []
    monkeypatch.setattr(calibrate, "calibrate", lambda names, seeds, *a, **k: got.append(list(seeds)) or {})
    rc = main(["calibrate", "--preset", "tiny", "--data", "synthetic", "--seeds", "1-4", "--only", "invariance",
               "--jobs", "1", "--no-progress", "--cache", str(tmp_path / "c"), "--file", str(tmp_path / "c.json")])
    assert rc == 0 and got == [[1, 2, 3, 4]], capsys.readouterr().err


BENCH_ROWS = {
    "repeats-0": (lambda t: ["--repeats", "0"], ["--repeats", "got 0", ">= 1"]),
    "batch-1": (lambda t: ["--batch", "1"], ["--batch", "got 1", ">= 2"]),
    "only-nomatch": (lambda t: ["--only", "nomatch"], ["--only", "'nomatch'", "in no case's name",
                                                      "'linear 1024->1024'"]),
    "json-in-a-missing-directory": (lambda t: ["--json", NOT_A_DIR + "/b.json"], ["--json", "does not exist"]),
    "json-unwritable": (lambda t: ["--json", "/proc/x"], ["--json: got '/proc/x'", "/proc cannot be written"]),
    "json-is-a-directory": (lambda t: ["--json", str(t)], ["--json", "is a directory"]),
    "json-empty": (lambda t: ["--json", ""], ["--json: got '', expected a file name"]),
}


@pytest.mark.parametrize("make, fragments", list(BENCH_ROWS.values()), ids=list(BENCH_ROWS))
def test_bad_bench_input_is_one_line_and_exit_2_before_any_timing(tmp_path, capsys, make, fragments):
    _one_line(capsys, main(BENCH + make(tmp_path)), "refnet bench: ", *fragments)


def test_a_writable_out_is_checked_without_leaving_anything_behind(tmp_path, monkeypatch):
    """The write check creates and removes a directory; a good --out passes it untouched."""
    def no_data(*args, **kwargs):
        raise OSError("no data here")
    monkeypatch.setattr(refnet.data, "load_dataset", no_data)
    assert main(TRAIN + ["--out", str(tmp_path / "new" / "run")]) == 2
    assert os.listdir(tmp_path) == []


def test_bad_gradcheck_seed_is_one_line_and_exit_2(capsys):
    _one_line(capsys, main(["gradcheck", "--seed", "-1"]), "refnet gradcheck: --seed", "got -1", ">= 0")


# --- a run in --out is never replaced silently -----------------------------------------
@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished 2-step run on synthetic data (its files are copied, never changed)."""
    out = tmp_path_factory.mktemp("finished")  # module scope: set up before no_work patches
    assert main(TRAIN + ["--steps", "2", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def interrupted_run(tmp_path_factory):
    """A 4-step run stopped by a real SIGINT (sent to this process once its first checkpoint,
    after step 1, is saved)."""
    out = tmp_path_factory.mktemp("interrupted")
    save = refnet.train.Trainer.save_checkpoint

    def save_then_sigint(trainer, *args, **kwargs):
        path = save(trainer, *args, **kwargs)
        if trainer.step == 1:
            os.kill(os.getpid(), signal.SIGINT)
        return path
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(refnet.train.Trainer, "save_checkpoint", save_then_sigint)
        assert main(TRAIN + ["--steps", "4", "--checkpoint-every", "1", "--out", str(out)]) == 130
    return out


def _copy(run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(run, out)
    return out


def _files(out):
    return {name: (out / name).read_bytes() for name in sorted(os.listdir(out))}


@pytest.mark.parametrize("run, steps, said", [("finished_run", 2, "a finished run (step 2 of 2)"),
                                              ("interrupted_run", 4, "a partial run (step 1 of 4)")])
def test_a_run_in_out_is_not_replaced_without_resume_or_overwrite(finished_run, interrupted_run, tmp_path,
                                                                  capsys, run, steps, said):
    out = _copy({"finished_run": finished_run, "interrupted_run": interrupted_run}[run], tmp_path)
    before = _files(out)
    line = _one_line(capsys, main(TRAIN + ["--steps", str(steps), "--out", str(out)]), "--out",
                     "--resume to continue it or --overwrite to replace it")
    assert said in line
    assert _files(out) == before


@pytest.mark.parametrize("resume", [False, True])
@pytest.mark.parametrize("name", ["checkpoint.npz", "history.json"])
def test_a_directory_where_a_run_file_goes_is_refused_before_training(finished_run, tmp_path, capsys,
                                                                      name, resume):
    out = _copy(finished_run, tmp_path)
    (out / name).unlink()
    (out / name).mkdir()
    flag = "--resume" if resume else "--overwrite"
    _one_line(capsys, main(TRAIN + ["--steps", "3", "--out", str(out), flag]),
              f"refnet train: --out: {out / name} is not a file", "move it away")
    assert (out / name).is_dir()


SUBSET = ["--subset", "200"]
# (the first run's flags, the resume's) -> the line names what differs, as given on the command line
RESUMED_WITH = {
    "subset-omitted": (SUBSET, [], "--subset was 200, now not given"),
    "no-affine-omitted": (SUBSET + ["--no-affine"], SUBSET, "--no-affine was given, now not given"),
    "no-affine-added": (SUBSET, SUBSET + ["--no-affine"], "--no-affine was not given, now given"),
    "nesterov-omitted": (SUBSET + ["--momentum", "0.9", "--nesterov"], SUBSET + ["--momentum", "0.9"],
                         "--nesterov was given, now not given"),
    "data-dir-omitted": (SUBSET + ["--data", "fashion-mnist", "--data-dir", "{dir}"],
                         SUBSET + ["--data", "fashion-mnist"], "--data-dir was '{dir}', now not given"),
}


@pytest.mark.parametrize("first, then, said", list(RESUMED_WITH.values()), ids=list(RESUMED_WITH))
def test_resume_with_other_flags_is_refused_before_any_data(tmp_path, capsys, monkeypatch, first, then, said):
    """An omitted flag counts: resumed without --subset the run would go on with all the data."""
    monkeypatch.undo()
    write_idx_dir(tmp_path / "fmnist", np.random.default_rng(0), n_train=300, n_test=20)
    fill = lambda words: [w.format(dir=tmp_path / "fmnist") for w in words]  # noqa: E731
    at = TRAIN.index("--subset")
    base, out = TRAIN[:at] + TRAIN[at + 2:], str(tmp_path / "r")
    assert main(base + fill(first) + ["--steps", "2", "--out", out]) == 0
    forbid_work(monkeypatch)
    line = _one_line(capsys, main(base + fill(then) + ["--steps", "4", "--out", out, "--resume"]),
                     "refnet train: --resume: the flags differ", fill([said])[0])
    assert line.endswith("resume with that run's flags, or train into another --out")


# refused once the data is found (its size is known then), still before any training step
AFTER_DATA = {
    "subset-above-the-data": (["--subset", "100000"], "--subset: got 100000, but the split has only 2000"),
    "warmup-not-below-epochs": (["--schedule", "warmup-cosine", "--warmup-steps", "50", "--epochs", "1"],
                                "--warmup-steps 50 with --epochs 1 (2 steps): --schedule warmup-cosine "
                                "needs fewer warmup steps than steps"),
}


@pytest.mark.parametrize("extra, said", list(AFTER_DATA.values()), ids=list(AFTER_DATA))
def test_a_size_known_only_with_the_data_is_refused_before_training(tmp_path, capsys, monkeypatch, extra, said):
    monkeypatch.undo()
    _one_line(capsys, main(TRAIN + extra + ["--out", str(tmp_path / "r")]), f"refnet train: {said}")
    assert not (tmp_path / "r" / "checkpoint.npz").exists()


def test_overwrite_replaces_the_run(finished_run, tmp_path, monkeypatch):
    monkeypatch.undo()  # this one trains
    out = _copy(finished_run, tmp_path)
    assert main(TRAIN + ["--steps", "3", "--out", str(out), "--overwrite"]) == 0
    assert checkpoint.read_npz(out / "checkpoint.npz", meta_only=True)[1]["step"] == 3


def _truncated(path):
    path.write_bytes(path.read_bytes()[:1000])
    return "is truncated or damaged"


def _empty(path):
    path.write_bytes(b"")
    return "is empty (0 bytes)"


def _random(path):
    path.write_bytes(np.random.default_rng(0).bytes(5000))
    return "is not an .npz file"


def _npy(path):
    with open(path, "wb") as f:
        np.save(f, np.zeros(3))
    return "is not an .npz file"


def _other_version(path):
    arrays, meta = checkpoint.read_npz(path)
    checkpoint.write_npz(path, arrays, {**meta, "format": "refnet-checkpoint-0", "refnet": "0.0.1"})
    return "has checkpoint format 'refnet-checkpoint-0', written by refnet 0.0.1"


def _meta_not_an_object(path):
    arrays, _ = checkpoint.read_npz(path)
    checkpoint.write_npz(path, arrays, [1, 2])
    return "holds metadata that is a JSON list, not an object"


def _other_flags(path):
    arrays, meta = checkpoint.read_npz(path)
    meta["history"]["config"]["args"]["width"] = 16
    checkpoint.write_npz(path, arrays, meta)
    return "--width was 16, now 8"


def _other_model(path):
    """Same recorded flags, other arrays: a file copied from another run's directory."""
    arrays, meta = checkpoint.read_npz(path)
    arrays["model/1.weight"] = np.zeros((5, 784), np.float32)
    checkpoint.write_npz(path, arrays, meta)
    return "holds another model's or optimizer's state: '1.weight' has shape (5, 784) there, (8, 784)"


@pytest.mark.parametrize("corrupt", [_truncated, _empty, _random, _npy, _meta_not_an_object, _other_version,
                                     _other_flags, _other_model])
def test_resume_from_a_bad_checkpoint_names_the_file_the_problem_and_the_fix(
        finished_run, tmp_path, capsys, monkeypatch, corrupt):
    out = _copy(finished_run, tmp_path)
    why = corrupt(out / "checkpoint.npz")
    if corrupt is _other_model:
        monkeypatch.undo()  # its arrays are only compared with the model once it is built
    rc = main(TRAIN + ["--steps", "4", "--out", str(out), "--resume"])
    line = _one_line(capsys, rc, "refnet train: --resume:", why)
    assert str(out / "checkpoint.npz") in line
    assert "--overwrite" in line or "flags" in line


def test_overwrite_is_not_part_of_the_recorded_flags(finished_run, tmp_path, monkeypatch):
    """A run started with --overwrite resumes without it."""
    monkeypatch.undo()
    out = _copy(finished_run, tmp_path)
    assert main(TRAIN + ["--steps", "2", "--out", str(out), "--overwrite"]) == 0
    assert main(TRAIN + ["--steps", "3", "--out", str(out), "--resume"]) == 0


# --- --help shows every default --------------------------------------------------------
def test_train_help_shows_every_default(capsys):
    assert main(["train", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for said in ("(default: fashion-mnist)", "(default: cnn)", "(default: bn)", "(default: float32)",
                 "(default: sgd)", "default 0.01 (sgd), 0.001 (adam)", "--opt sgd/muon; default 0.0 (sgd), 0.95 (muon)",
                 "--opt adam/lion; default (0.9, 0.999) (adam), (0.9, 0.99) (lion)",
                 "--opt adam/muon; default 1e-08 (adam), 1e-07 (muon)", "--opt muon; default 5", "default 0.1",
                 "--wrapper rotational: the angle per step (default: the inner optimizer's equilibrium angle)",
                 "default 2", "(default: 128)", "(default: 0)", "(default: 1)", "(default: constant)",
                 "(default: cpu)", "default 256", "default 32"):
        assert said in text, said


@pytest.mark.parametrize("command", ["train", "reproduce", "bench"])
def test_help_says_what_every_option_left_out_does(command, capsys):
    """Each option that takes a value and may be left out says its default in --help."""
    assert main([command, "--help"]) == 0
    helps, option = {}, None  # option -> its help text, from its line and the indented ones after it
    for line in capsys.readouterr().out.splitlines():
        if line.startswith("  -"):
            option = line.split()[0].rstrip(",")
            helps[option] = line
        elif line.startswith("   ") and option:
            helps[option] += " " + line.strip()
        else:
            option = None
    sub = next(a for a in build_parser()._actions if a.dest == "command").choices[command]
    takes_value = {a.option_strings[0] for a in sub._actions
                   if a.option_strings and a.nargs != 0 and not a.required}
    assert takes_value <= set(helps)
    assert [o for o in sorted(takes_value) if "default" not in helps[o]] == []


# --- reproduce: missing or corrupt data ------------------------------------------------------
def test_reproduce_with_no_data_in_data_dir_fails_before_any_task(tmp_path, monkeypatch, capsys):
    monkeypatch.undo()  # the real locate_dataset: it reads no file
    from refnet.experiments import runner

    def no_task(*args, **kwargs):
        raise AssertionError("a task ran")
    monkeypatch.setattr(runner, "execute", no_task)
    (tmp_path / "empty").mkdir()
    rc = main(["reproduce", "--quick", "--data-dir", str(tmp_path / "empty"), "--only", "invariance",
               "--jobs", "1", "--no-progress", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert err.startswith(f"refnet reproduce: fashion-mnist: could not find") and str(tmp_path / "empty") in err


def test_reproduce_catches_a_dataset_error_raised_inside_a_task(tmp_path, monkeypatch, capsys):
    monkeypatch.undo()
    from refnet.experiments import runner

    def corrupt(spec):
        raise refnet.data.DatasetError("/data/train-images-idx3-ubyte.gz: corrupt gzip file; download it again")
    monkeypatch.setattr(runner, "execute", corrupt)
    rc = main(REPRO + ["--only", "invariance", "--out", str(tmp_path)])
    _one_line(capsys, rc, "refnet reproduce: /data/train-images-idx3-ubyte.gz: corrupt gzip file")
