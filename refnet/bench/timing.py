"""Timing for ``refnet bench``: interleaved medians, the float32 GEMM peak, peak memory."""

import statistics
import time
import tracemalloc

import numpy as np

from refnet import backend


def _sync():
    if backend.default_name() == "cupy":
        backend.default_module().cuda.Device().synchronize()


def peak_memory(fn):
    """Peak bytes allocated above the starting point during one call of ``fn``."""
    if backend.default_name() == "cupy":
        pool = backend.default_module().get_default_memory_pool()
        pool.free_all_blocks()      # then the pool grows exactly to the peak of live blocks
        before = pool.total_bytes()
        fn()
        _sync()
        return pool.total_bytes() - before
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def time_interleaved(fns, repeats, warmup=2, sync=_sync, clock="wall"):
    """Median seconds per call of each callable in ``fns``, calling them in turn.

    clock "wall": elapsed time. "cpu": this process's CPU time, which does not count the
    time other processes hold the cores: on a busy machine with one thread per side
    (OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1) it gives steadier ratios.
    """
    now = CLOCKS[clock]
    for fn in fns:
        for _ in range(warmup):
            fn()
        sync()
    times = [[] for _ in fns]
    for r in range(repeats):
        order = range(len(fns)) if r % 2 == 0 else reversed(range(len(fns)))
        for i in order:
            t0 = now()
            fns[i]()
            sync()
            times[i].append(now() - t0)
    return [statistics.median(t) for t in times]


def gemm_peak(size=1024, repeats=7, clock="wall"):
    """Measured float32 GFLOP/s of a square matmul on the current backend (best of
    ``repeats`` one-call medians: the peak, not the typical, on a shared machine)."""
    rng = np.random.default_rng(1)
    a, b = (backend.to_device(rng.standard_normal((size, size)).astype(np.float32)) for _ in "ab")
    t = min(time_interleaved([lambda: a @ b], 1, warmup=1, clock=clock)[0] for _ in range(repeats))
    return 2 * size ** 3 / t / 1e9


def run_cases(cases, repeats, torch_side=None, peak=None, clock="wall"):
    """Time every case; returns one dict per case (see the package docstring); a recorder
    case's "torch_ms" is its step without recording, its "ratio" 1 + the overhead."""
    rows = []
    for case in cases:
        fns = [case.refnet_fn] + ([case.torch_fn] if case.torch_fn else [])
        torch_sync = case.torch_fn and case.baseline == "torch"
        sync = (lambda: (_sync(), torch_side.sync())) if torch_sync else _sync
        t = time_interleaved(fns, repeats, sync=sync, clock=clock)
        row = {"name": case.name, "baseline": case.baseline, "refnet_ms": 1e3 * t[0],
               "torch_ms": 1e3 * t[1] if case.torch_fn else None}
        row["ratio"] = t[0] / t[1] if case.torch_fn else None
        row["gflops"] = case.flops / t[0] / 1e9 if case.flops else None
        row["peak_fraction"] = row["gflops"] / peak if row["gflops"] and peak else None
        row["peak_mem_mb"] = peak_memory(case.refnet_fn) / 2 ** 20
        rows.append(row)
    return rows
