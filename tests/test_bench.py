"""`refnet bench` and the performance paths it measures: the harness runs end to end on
tiny shapes and reports what it promises (no timing is asserted); the activation memory a
training step keeps stays within 2x of PyTorch's; every conv2d layout and dx path, the
reused column workspace and the disjoint-window max-pool path give the naive twins' results."""

import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
from naive import conv2d_backward_naive, conv2d_forward_naive
from oracle import require_torch
from test_ops_conv import CASES, IDS

from refnet import backend, bench
from refnet.bench import report, torch_side
from refnet.cli import main
from refnet.nn import Conv2d, Flatten, Linear, MaxPool2d, ReLU, Sequential
from refnet.nn.models import cnn
from refnet.ops import _chunks, conv, conv2d_backward, conv2d_forward, maxpool2d_backward, maxpool2d_forward

KEYS = {"name", "baseline", "refnet_ms", "torch_ms", "ratio", "gflops", "peak_fraction", "peak_mem_mb"}


def _run_json(tmp_path, *extra):
    out = tmp_path / "bench.json"
    assert main(["bench", "--quick", "--repeats", "1", "--batch", "2", "--json", str(out),
                 *extra]) == 0
    return json.loads(out.read_text())


def test_bench_cli_writes_every_case_with_positive_timings(tmp_path, capsys):
    result = _run_json(tmp_path, "--no-torch")
    names = [c["name"] for c in result["cases"]]
    assert len(names) == len(bench.CONVS) + 4 + len(bench.NETS) + 1 + 3 + 4  # + MLP step, 3 recorder, 4 hvp/gvp
    assert {"batchnorm2d (N,64,16,16)", "layernorm (N,64,16,16)", "linear 1024->1024"} <= set(names)
    for case in result["cases"]:
        assert set(case) == KEYS
        assert case["refnet_ms"] > 0 and case["peak_mem_mb"] >= 0
        if case["baseline"] == "torch":
            assert case["torch_ms"] is None and case["ratio"] is None
    gemm_cases = [c for c in result["cases"] if c["name"].startswith(("conv", "linear", "step"))]
    assert len(gemm_cases) == len(bench.CONVS) + 1 + len(bench.NETS) + 1
    assert all(c["gflops"] > 0 and c["peak_fraction"] > 0 for c in gemm_cases)
    assert result["clock"] == "wall" and result["gemm_peak_gflops"] > 0
    printed = capsys.readouterr().out
    assert "refnet ms" in printed and "activation memory" in printed


def test_bench_json_states_machine_threads_versions_and_gemm_peak(tmp_path):
    result = _run_json(tmp_path, "--no-torch", "--only", "maxpool")
    assert result["schema"] == report.SCHEMA
    machine = result["machine"]
    assert machine["model"] and machine["cores"] >= 1
    assert set(machine["flags"]) <= set(report.VECTOR_FLAGS)
    assert set(result["threads"]["env"]) == set(report.THREAD_VARIABLES)
    assert result["threads"]["torch"] is None and result["versions"]["torch"] is None
    assert result["threads"]["refnet"] == _chunks.threads()
    assert result["versions"]["numpy"] == np.__version__
    assert result["dtype"] == "float32" and result["gemm_peak_gflops"] > 0


@pytest.mark.parametrize("torch_threads, refnet_threads, noted", [(2, 1, True), (2, 2, False), (None, 2, False)])
def test_bench_notes_when_pytorch_and_refnet_use_different_thread_counts(torch_threads, refnet_threads, noted):
    from refnet.bench.command import thread_note
    note = thread_note(torch_threads, refnet_threads)
    assert (note is not None) == noted
    if noted:
        assert f"PyTorch runs on {torch_threads} threads and refnet's blocked ops on {refnet_threads}" in note


def test_bench_prints_the_thread_note_when_the_counts_differ(capsys, monkeypatch):
    side = torch_side.TorchSide.create("cpu")
    if side is None:
        require_torch()  # skips, or fails where torch is required
        pytest.fail("PyTorch imports, but TorchSide.create('cpu') returned None")
    monkeypatch.setattr(_chunks, "threads", lambda: side.threads() + 1)
    assert main(["bench", "--quick", "--repeats", "1", "--batch", "2", "--only", "maxpool"]) == 0
    assert f"note: PyTorch runs on {side.threads()} threads" in capsys.readouterr().out


@pytest.mark.parametrize("text, flags", [("flags\t: fpu sse avx2 fma avx512f\n", ["avx2", "fma", "avx512f"]),
                                         ("flags\t: fpu sse avx\n", ["avx"])])
def test_cpu_info_reads_the_model_and_the_vector_flags(tmp_path, text, flags):
    path = tmp_path / "cpuinfo"
    path.write_text("processor\t: 0\nmodel name\t: Some CPU 9000\n" + text)
    info = report.cpu_info(str(path))
    assert info["model"] == "Some CPU 9000" and info["flags"] == flags


def test_bench_compare_prints_new_over_old_for_the_cases_in_both(tmp_path, capsys):
    old = _run_json(tmp_path, "--no-torch", "--only", "pool")
    old["cases"][0]["refnet_ms"] = 4 * old["cases"][0]["refnet_ms"]  # the old run was 4x slower
    old["cases"].append(dict(old["cases"][0], name="a case since removed"))
    old["machine"]["model"] = "another CPU"
    path = tmp_path / "old.json"
    path.write_text(json.dumps(old))
    capsys.readouterr()
    new = _run_json(tmp_path, "--no-torch", "--only", "pool", "--compare", str(path))
    (row,) = report.compare(new, old)
    assert row["time_new_over_old"] == pytest.approx(new["cases"][0]["refnet_ms"] / old["cases"][0]["refnet_ms"])
    assert row["ratio_new_over_old"] is None     # no PyTorch side in either run
    printed = capsys.readouterr().out
    assert f"{row['time_new_over_old']:8.2f}" in printed
    assert "not in this run: a case since removed" in printed and "another CPU" in printed


def test_compare_divides_the_torch_ratios_too():
    old = {"cases": [{"name": "c", "refnet_ms": 2.0, "ratio": 2.0}]}
    new = {"cases": [{"name": "c", "refnet_ms": 1.0, "ratio": 1.5}]}
    (row,) = report.compare(new, old)
    assert row["time_new_over_old"] == 0.5 and row["ratio_new_over_old"] == 0.75


@pytest.mark.parametrize("content, fragment", [("not json", "cannot be read as JSON"),
                                               ('{"cases": 3}', "expected a `refnet bench --json` result")])
def test_bench_compare_with_a_bad_file_is_refused_before_any_timing(tmp_path, capsys, monkeypatch,
                                                                    content, fragment):
    monkeypatch.setattr(bench, "gemm_peak", lambda *a, **k: pytest.fail("timing started"))
    path = tmp_path / "old.json"
    path.write_text(content)
    assert main(["bench", "--no-torch", "--compare", str(path)]) == 2
    err = capsys.readouterr().err
    assert "--compare" in err and fragment in err


def test_bench_without_torch_never_imports_torch(tmp_path):
    code = ("import sys; from refnet.cli import main; "
            f"assert main(['bench', '--no-torch', '--repeats', '1', '--batch', '2', '--only', 'pool']) == 0; "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")])))
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr


def test_recorder_cases_time_a_recorded_step_against_the_same_step_unrecorded(tmp_path, capsys):
    result = _run_json(tmp_path, "--no-torch", "--only", "record")
    assert [c["name"] for c in result["cases"]] == ["record mlp 784-256-256 (BN)", "record mlp 784-256-256 (Recorder)",
                                                    "record cnn 1x28x28"]
    for case in result["cases"]:
        assert case["baseline"] == "unrecorded" and case["torch_ms"] > 0
        assert case["ratio"] == pytest.approx(case["refnet_ms"] / case["torch_ms"])
    assert capsys.readouterr().out.count("per-step recording, ") == 3


def test_second_order_cases_time_hvp_and_gvp_against_one_forward_backward(tmp_path, capsys):
    result = _run_json(tmp_path, "--no-torch", "--only", "vp ")
    assert [c["name"] for c in result["cases"]] == ["hvp mlp 784-256-256 (BN) @2", "gvp mlp 784-256-256 (BN) @2",
                                                    "hvp cnn 1x28x28 @2", "gvp cnn 1x28x28 @2"]
    for case in result["cases"]:
        assert case["baseline"] == "forward-backward" and case["torch_ms"] > 0
        assert case["ratio"] == pytest.approx(case["refnet_ms"] / case["torch_ms"])
    printed = capsys.readouterr().out
    assert printed.count("second order, ") == 4 and printed.count("(target: at most 2.5x)") == 4


@pytest.mark.parametrize("only", ["hvp mlp", "gvp cnn"])
def test_second_order_case_returns_a_finite_product_for_every_parameter(only):
    (case,) = bench.make_cases(batch=2, only=only)
    result = case.refnet_fn()
    assert set(result) == {name for name, _ in case.model.named_parameters()}
    assert all(np.all(np.isfinite(r)) and np.any(r != 0) for r in result.values())


def test_torch_func_hvp_twin_matches_refnets_hvp():
    side = torch_side.TorchSide.create("cpu")
    if side is None:
        require_torch()
        pytest.fail("PyTorch imports, but TorchSide.create('cpu') returned None")
    (case,) = bench.make_cases(batch=4, torch_side=side, only="hvp mlp 784-256-256 @4 (torch)")
    ours, theirs = case.refnet_fn(), case.torch_fn()
    for name, t in theirs.items():
        np.testing.assert_allclose(ours[name], t.numpy(), rtol=2e-3, atol=2e-3 * float(abs(t).max()))


def test_recorder_case_records_every_step_and_its_baseline_none():
    (recorded, recorder) = [c for c in bench.make_cases(batch=2, only="mlp 784") if c.baseline == "unrecorded"]
    for _ in range(3):
        recorded.refnet_fn(), recorded.torch_fn()
    with_record, without = recorded.trainers
    assert len(with_record.history.steps["step"]) == 3
    assert without.history.steps == {}


def test_recorder_cases_draw_fresh_labels_on_every_pass_so_the_net_cannot_fit_them():
    # fixed labels: the MLP fits its 16 batches within ~150 steps and every step turns into
    # pure decay (the record's slow radial path), which is not what a training run records
    from refnet.bench.cases import _cycling
    seen = []
    x, y = np.arange(12, dtype=np.float32).reshape(6, 2), np.zeros(6, dtype=np.int64)
    call = _cycling(lambda xb, yb: seen.append((xb.copy(), yb.copy())), x, y, batch=2, seed=0)
    for _ in range(9):
        call()
    passes = [seen[i:i + 3] for i in (0, 3, 6)]
    for p in passes[1:]:   # the same inputs in the same order, new labels
        assert all(np.array_equal(a[0], b[0]) for a, b in zip(p, passes[0]))
    labels = [np.concatenate([yb for _, yb in p]) for p in passes]
    assert not np.array_equal(labels[0], labels[1]) and not np.array_equal(labels[1], labels[2])
    fixed = []
    call = _cycling(lambda xb, yb: fixed.append(yb.copy()), x, y, batch=2)
    for _ in range(6):
        call()
    assert np.array_equal(np.concatenate(fixed[:3]), np.concatenate(fixed[3:]))


def test_bench_only_filters_cases_and_cpu_clock_is_recorded(tmp_path):
    result = _run_json(tmp_path, "--no-torch", "--only", "maxpool", "--clock", "cpu")
    assert [c["name"] for c in result["cases"]] == ["maxpool2d 2x2 (N,32,32,32)"]
    assert result["clock"] == "cpu"


def test_bench_with_pytorch_reports_a_ratio_per_case(tmp_path):
    require_torch()
    result = _run_json(tmp_path, "--only", "conv3x3 64->128")
    (case,) = result["cases"]
    assert case["torch_ms"] > 0
    assert case["ratio"] == pytest.approx(case["refnet_ms"] / case["torch_ms"])


def test_bench_on_a_missing_gpu_exits_with_the_reason(monkeypatch, capsys):
    monkeypatch.setattr(backend, "gpu_status", lambda: (False, "cupy is not installed"))
    assert main(["bench", "--device", "gpu", "--quick"]) == 2
    assert "cupy is not installed" in capsys.readouterr().err
    assert backend.default_name() == "numpy"


def test_model_flops_count_three_products_per_layer_but_two_for_the_first():
    g = np.random.default_rng(0)
    model = Sequential(Conv2d(3, 4, 3, padding=1, rng=g), ReLU(), MaxPool2d(2), Flatten(),
                       Linear(4 * 4 * 4, 10, rng=g))
    conv_flops = 2 * 5 * 4 * 3 * 9 * 8 * 8
    linear_flops = 2 * 5 * 64 * 10
    # the first layer's dx is not computed in a training step (its input is data)
    assert bench._model_flops(model, (5, 3, 8, 8)) == 2 * conv_flops + 3 * linear_flops


def test_cached_bytes_counts_each_activation_buffer_once_and_no_parameter():
    g = np.random.default_rng(0)
    model = Sequential(Conv2d(1, 2, 3, padding=1, bias=False, rng=g), ReLU(), MaxPool2d(2),
                       Flatten(), Linear(2 * 2 * 2, 3, rng=g))
    x = np.zeros((4, 1, 4, 4), dtype=np.float32)
    # conv: x (4*1*4*4); relu: its output y (4*2*4*4), which max-pool also caches as its
    # input; max-pool: its output (4*2*2*2), which Linear caches again through Flatten's view.
    expected = 4 * (4 * 16 + 4 * 2 * 16 + 4 * 2 * 4)
    assert torch_side.cached_bytes(model, x) == expected


def test_training_step_activations_stay_within_twice_pytorchs_saved_tensors():
    side = torch_side.TorchSide.create("cpu")  # first: it sets OMP_WAIT_POLICY before importing torch
    if side is None:
        require_torch()  # skips, or fails where torch is required
        pytest.fail("PyTorch imports, but TorchSide.create('cpu') returned None")
    for m in torch_side.activation_report(bench.NETS, batch=4, torch_side=side):
        assert 0 < m["ratio"] <= 2, m


@pytest.mark.parametrize("layout", ["channel_last", "channel_first"])
@pytest.mark.parametrize("x_shape, k_shape, stride, padding, bias", CASES, ids=IDS)
def test_each_conv_layout_matches_the_naive_twin(monkeypatch, rng, layout, x_shape, k_shape,
                                                 stride, padding, bias):
    # Forcing the layout also forces the dx path: stride-1 channel-last convolutions take
    # dx by kernel rows (one product, then KH slice-adds), the others use col2im.
    monkeypatch.setattr(conv, "_channel_last", lambda *shape: layout == "channel_last")
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal((k_shape[0], x_shape[1]) + k_shape[1:])
    b = rng.standard_normal(k_shape[0]) if bias else None
    y, cache = conv2d_forward(x, w, b, stride, padding)
    want_y = conv2d_forward_naive(x, w, b, stride, padding)
    np.testing.assert_allclose(y, want_y, rtol=1e-12, atol=1e-12)
    dy = rng.standard_normal(y.shape)
    got = conv2d_backward(dy, cache)
    want = conv2d_backward_naive(dy, x, w, stride, padding, has_bias=bias)
    for g, e in zip(got, want):
        if e is None:
            assert g is None
        else:
            np.testing.assert_allclose(g, e, rtol=1e-11, atol=1e-11)


# Batch 1 or one output channel: the transpose to NCHW is a view there, so it must copy.
@pytest.mark.parametrize("x_shape, f", [((2, 8, 6, 6), 4), ((1, 8, 6, 6), 4), ((2, 8, 6, 6), 1),
                                        ((1, 1, 6, 6), 3)],
                         ids=["channel-last", "batch-1", "one-filter", "channel-first-batch-1"])
def test_conv_results_do_not_alias_the_reused_workspace(rng, x_shape, f):
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal((f, x_shape[1], 3, 3)).astype(np.float32)
    y1, cache = conv2d_forward(x, w, None, 1, 1)
    kept_y = y1.copy()
    conv2d_forward(-x, w * 2, None, 1, 1)   # reuses the same buffers
    np.testing.assert_array_equal(y1, kept_y)
    grads = conv2d_backward(np.ones_like(y1), cache)
    kept = [g.copy() for g in grads if g is not None]
    conv2d_backward(np.ones_like(y1) * 3, cache)
    for a, b in zip([g for g in grads if g is not None], kept):
        np.testing.assert_array_equal(a, b)


def test_each_thread_gets_its_own_workspace():
    buffers = []

    def grab():
        buffers.append(conv._workspace(np, (64, 64), np.dtype(np.float32)))
    threads = [threading.Thread(target=grab) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not np.shares_memory(buffers[0], buffers[1])


def test_workspace_is_not_used_for_columns_over_the_limit(monkeypatch):
    monkeypatch.setattr(conv, "_WORKSPACE_MAX", 1024)
    a = conv._workspace(np, (16, 32), np.dtype(np.float32))    # 2048 bytes: a fresh array each time
    b = conv._workspace(np, (16, 32), np.dtype(np.float32))
    assert not np.shares_memory(a, b)


@pytest.mark.parametrize("kernel, stride", [((2, 2), None), ((3, 3), (2, 2)), ((2, 3), (3, 3))])
def test_maxpool_disjoint_and_overlapping_windows_route_ties_to_the_first_maximum(kernel, stride):
    # Constant input: every window is a tie, so each window's gradient goes to its top-left.
    x = np.zeros((2, 3, 7, 9))
    y, cache = maxpool2d_forward(x, kernel, stride)
    dy = np.arange(1, y.size + 1, dtype=float).reshape(y.shape)
    dx = maxpool2d_backward(dy, cache)
    (kh, kw), (sh, sw) = kernel, kernel if stride is None else stride
    want = np.zeros_like(x)
    for i in range(y.shape[2]):
        for j in range(y.shape[3]):
            want[:, :, i * sh, j * sw] += dy[:, :, i, j]
    np.testing.assert_array_equal(dx, want)


def test_float32_training_step_of_the_default_cnn_runs_and_lowers_nothing_to_float64():
    model = cnn(1, image_size=8, widths=(4,), norm="bn", rng=0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 1, 8, 8)).astype(np.float32)
    y = rng.integers(0, 10, size=4)
    step = bench.training_step(model, x, y)
    loss, correct = step()
    assert np.isfinite(loss) and 0 <= correct <= 4
    for p in model.parameters():
        assert p.data.dtype == np.float32 and p.grad.dtype == np.float32


def test_json_is_written_atomically(tmp_path, monkeypatch):
    """Results that fail to serialize midway leave the previous file as it was and no temporary."""
    real = bench.run_cases
    monkeypatch.setattr(bench, "run_cases", lambda *a, **k: [dict(r, note=object()) for r in real(*a, **k)])
    out = tmp_path / "bench.json"
    out.write_text("the previous results")
    with pytest.raises(TypeError):
        main(["bench", "--quick", "--no-torch", "--repeats", "1", "--batch", "2", "--only", "maxpool",
              "--json", str(out)])
    assert os.listdir(tmp_path) == ["bench.json"] and out.read_text() == "the previous results"
