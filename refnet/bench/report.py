"""What ``refnet bench`` prints and saves: the table, the JSON record and the ``--compare`` view.

A saved result is comparable with another only as far as their machines agree, so the JSON
states the machine (CPU model, the vector flags that decide which kernels NumPy's BLAS and
PyTorch pick, core count), the threads each side was allowed (the thread variables in the
environment, refnet's blocked ops' and PyTorch's own counts), the versions (Python, NumPy and its BLAS, refnet,
PyTorch) and the float32 GEMM peak measured at the start of the run. ``--compare OLD.json``
matches cases by name and prints new/old for refnet's time and for the refnet/PyTorch ratio:
on a shared machine the absolute times drift between runs, the ratio much less.
"""

import json
import os
import platform
import time

import numpy as np

import refnet
from refnet.checkpoint import write_json
from refnet.ops import _chunks

SCHEMA = 1
SECOND_ORDER_TARGET = 2.5   # issue 17: a Hessian-vector product in at most 2.5 forward-backwards
VECTOR_FLAGS = ("avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16",
                "amx_tile")
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY",
                    "OPENBLAS_CORETYPE")


def format_table(rows):
    def f(v, spec):
        return format("-" if v is None else format(v, spec), ">" + spec.split(".")[0])
    lines = [f"{'case':32s} {'refnet ms':>10s} {'torch ms':>9s} {'ratio':>6s} "
             f"{'GFLOP/s':>8s} {'%peak':>6s} {'peak MB':>8s}"]
    for r in rows:
        if r["baseline"] != "torch":
            continue
        frac = None if r["peak_fraction"] is None else 100 * r["peak_fraction"]
        lines.append(f"{r['name']:32s} {f(r['refnet_ms'], '10.2f')} {f(r['torch_ms'], '9.2f')} "
                     f"{f(r['ratio'], '6.2f')} {f(r['gflops'], '8.1f')} {f(frac, '6.0f')} "
                     f"{f(r['peak_mem_mb'], '8.1f')}")
    for r in rows:
        if r["baseline"] == "unrecorded":
            lines.append(f"per-step recording, {r['name']}: {r['refnet_ms']:.2f} ms a step recorded, "
                         f"{r['torch_ms']:.2f} ms not: overhead {100 * (r['ratio'] - 1):+.1f}%")
    for r in rows:
        if r["baseline"] == "forward-backward":
            lines.append(f"second order, {r['name']}: {r['refnet_ms']:.2f} ms, one forward-backward "
                         f"{r['torch_ms']:.2f} ms: {r['ratio']:.2f}x (target: at most {SECOND_ORDER_TARGET}x)")
    return "\n".join(lines)


def cpu_info(path="/proc/cpuinfo"):
    """``{"model", "flags", "cores"}``: the CPU model name, which of ``VECTOR_FLAGS`` it has
    (Linux's /proc/cpuinfo; elsewhere the model from ``platform`` and no flags) and the cores."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open(path) as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    model = value.strip()
                elif key.strip() in ("flags", "Features"):
                    flags = set(value.split())
                    break
    except OSError:
        pass
    return {"model": model, "flags": [x for x in VECTOR_FLAGS if x in flags],
            "cores": os.cpu_count(), "system": platform.system()}


def _blas():
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{blas.get('name')} {blas.get('version')}"
    except Exception:  # show_config's layout is not a stable API; the name is a courtesy
        return None


def environment(torch_side=None):
    """Machine, threads and versions of this run (see the module docstring)."""
    import sys
    return {"machine": cpu_info(),
            "threads": {"env": {k: os.environ.get(k) for k in THREAD_VARIABLES},
                        "refnet": _chunks.threads(),      # the blocked ops' threads (ops/_chunks)
                        "torch": torch_side.torch.get_num_threads() if torch_side else None},
            "versions": {"python": sys.version.split()[0], "numpy": np.__version__, "blas": _blas(),
                         "refnet": refnet.__version__,
                         "torch": torch_side.torch.__version__ if torch_side else None}}


def result(args, repeats, peak, rows, memory, torch_side, workspace_mb):
    """The JSON record of one run."""
    return {"schema": SCHEMA, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                      "device": args.device, "dtype": "float32", "batch": args.batch,
                      "repeats": repeats, "clock": args.clock, "gemm_peak_gflops": peak,
                      **environment(torch_side),
                      "torch": torch_side.describe() if torch_side else None,
                      "cases": rows, "activation_memory": memory, "conv_workspace_mb": workspace_mb}


def save(path, record):
    write_json(path, record)  # atomic: an interrupted run leaves the old file


def load(path):
    """A saved result, checked enough to compare with: a dict with a list of named cases.
    Raises ValueError naming the file and what is wrong."""
    try:
        with open(path, encoding="utf-8") as f:
            old = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"got {path!r}, which cannot be read as JSON ({err})") from None
    cases = old.get("cases") if isinstance(old, dict) else None
    if not isinstance(cases, list) or not all(isinstance(c, dict) and "name" in c for c in cases):
        raise ValueError(f"got {path!r}, expected a `refnet bench --json` result (a 'cases' list of "
                         f"named rows)")
    return old


def _div(a, b):
    return a / b if a is not None and b else None


def compare(new, old):
    """Rows ``{"name", "refnet_ms_old", "refnet_ms_new", "time_new_over_old", "ratio_old",
    "ratio_new", "ratio_new_over_old"}`` for the cases in both results, in ``new``'s order."""
    before = {c["name"]: c for c in old["cases"]}
    rows = []
    for c in new["cases"]:
        o = before.get(c["name"])
        if o is None:
            continue
        rows.append({"name": c["name"], "refnet_ms_old": o.get("refnet_ms"), "refnet_ms_new": c["refnet_ms"],
                     "time_new_over_old": _div(c["refnet_ms"], o.get("refnet_ms")),
                     "ratio_old": o.get("ratio"), "ratio_new": c.get("ratio"),
                     "ratio_new_over_old": _div(c.get("ratio"), o.get("ratio"))})
    return rows


def machine_differences(new, old):
    """What differs between the two runs' setups (machine, threads, versions, batch...)."""
    out = []
    for key in ("machine", "threads", "versions", "device", "batch", "clock"):
        if old.get(key) != new.get(key):
            out.append(f"{key}: {old.get(key)!r} -> {new.get(key)!r}")
    return out


def format_compare(rows, new, old, path):
    def f(v, spec):
        return format("-" if v is None else format(v, spec), ">" + spec.split(".")[0])
    lines = [f"compared with {path} ({old.get('created', 'undated')}; GEMM peak "
             f"{f(old.get('gemm_peak_gflops'), '.0f').strip()} -> {new['gemm_peak_gflops']:.0f} GFLOP/s)"]
    lines += [f"  differs: {d}" for d in machine_differences(new, old)]
    lines.append(f"{'case':32s} {'old ms':>9s} {'new ms':>9s} {'new/old':>8s} "
                 f"{'ratio old':>9s} {'ratio new':>9s} {'new/old':>8s}")
    for r in rows:
        lines.append(f"{r['name']:32s} {f(r['refnet_ms_old'], '9.2f')} {f(r['refnet_ms_new'], '9.2f')} "
                     f"{f(r['time_new_over_old'], '8.2f')} {f(r['ratio_old'], '9.2f')} "
                     f"{f(r['ratio_new'], '9.2f')} {f(r['ratio_new_over_old'], '8.2f')}")
    missing = sorted({c["name"] for c in old["cases"]} - {r["name"] for r in rows})
    if missing:
        lines.append(f"not in this run: {', '.join(missing)}")
    return "\n".join(lines)
