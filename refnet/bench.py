"""``refnet bench``: how fast are the hand-written ops, and how far from PyTorch?

    refnet bench                       # CPU, float32, PyTorch side by side if importable
    refnet bench --quick --json b.json # fewer repeats, results also as JSON
    refnet bench --device gpu          # the same code on CuPy

Each case times forward+backward (or one training step) of refnet and, when PyTorch
happens to be installed (never a dependency), of the same computation in PyTorch, in the
same process. Timings on a shared machine drift by tens of percent between processes and
even between seconds, so the two sides are *interleaved* -- refnet, torch, refnet, torch,
... -- and each reports the median of its repeats: both see the same machine state, and
the ratio is meaningful even when the absolute numbers are not.

Columns: median milliseconds, the ratio refnet/PyTorch, GFLOP/s (matrix-product FLOPs of
the forward and the two backward products; none for memory-bound ops) and its fraction of
the measured float32 GEMM peak (a square matmul timed at start), and refnet's peak extra
memory during one call: tracemalloc on NumPy (NumPy reports its buffers to it), the
growth of CuPy's memory pool on the GPU.

``OMP_WAIT_POLICY=PASSIVE`` is set before PyTorch is imported: its OpenMP threads
otherwise spin after each op and slow NumPy's BLAS threads in the same process by about
a third. After the table, the memory a training step keeps for the backward pass is
compared with PyTorch's saved tensors (``activation_memory``).
"""

import json
import os
import statistics
import time
import tracemalloc

import numpy as np

from refnet import backend
from refnet import bench_torch
from refnet.cli_checks import UsageError, int_at_least, positive_int, writable_file
from refnet.nn.models import cnn, mlp, trainable_parameters
from refnet.ops import conv
from refnet.ops import (batchnorm_backward, batchnorm_forward, conv2d_backward, conv2d_forward,
                        layernorm_backward, layernorm_forward, linear_backward, linear_forward,
                        maxpool2d_backward, maxpool2d_forward, softmax_cross_entropy)
from refnet.optim import SGD

# (name, N, C, F, H, kernel, stride, padding): the three 3x3 shapes of a CIFAR-style
# 3-block CNN at batch 128, a 1x1 and a stride-2 conv.
CONVS = (("conv3x3 3->32 @32", 3, 32, 32, 3, 1, 1),
         ("conv3x3 32->64 @16", 32, 64, 16, 3, 1, 1),
         ("conv3x3 64->128 @8", 64, 128, 8, 3, 1, 1),
         ("conv1x1 64->128 @16", 64, 128, 16, 1, 1, 0),
         ("conv3x3/2 32->64 @32", 32, 64, 32, 3, 2, 1))
# (name, in_channels, image_size, widths) for cnn(): the default net on Fashion-MNIST and
# CIFAR-sized inputs, and the 3-block net whose step the issue's target is about.
NETS = (("step cnn 1x28x28", 1, 28, (32, 64)),
        ("step cnn 3x32x32", 3, 32, (32, 64)),
        ("step cnn3 3x32x32", 3, 32, (32, 64, 128)))


class Case:
    """One benchmark: zero-argument callables for refnet and (maybe) PyTorch, and the
    matrix-product FLOPs of one call (None for memory-bound ops)."""

    def __init__(self, name, refnet_fn, torch_fn=None, flops=None):
        self.name, self.refnet_fn, self.torch_fn, self.flops = name, refnet_fn, torch_fn, flops


def _conv_flops(n, c, f, ho, wo, k):
    return 3 * 2 * n * f * c * k * k * ho * wo      # forward, dw and dcols products


def _model_flops(model, x_shape):
    """Matrix-product FLOPs of a forward+backward of ``model`` (3 products per conv/linear)."""
    flops, shape = 0, x_shape
    for layer in model:
        kind = type(layer).__name__
        if kind == "Conv2d":
            (kh, kw), (sh, sw), (ph, pw) = layer.kernel_size, layer.stride, layer.padding
            ho, wo = (shape[2] + 2 * ph - kh) // sh + 1, (shape[3] + 2 * pw - kw) // sw + 1
            flops += 3 * 2 * shape[0] * layer.out_channels * layer.in_channels * kh * kw * ho * wo
            shape = (shape[0], layer.out_channels, ho, wo)
        elif kind == "MaxPool2d":
            shape = shape[:2] + tuple(s // k for s, k in zip(shape[2:], layer.kernel_size))
        elif kind == "Flatten":
            shape = (shape[0], int(np.prod(shape[1:])))
        elif kind == "Linear":
            flops += 3 * 2 * shape[0] * layer.in_features * layer.out_features
            shape = (shape[0], layer.out_features)
    return flops


def make_cases(batch=128, torch_side=None, only=None):
    """The benchmark cases at batch size ``batch``; ``torch_side`` is a
    ``bench_torch.TorchSide`` or None; ``only``: keep names containing that substring."""
    rng = np.random.default_rng(0)
    dev = backend.to_device

    def arr(*shape):
        return dev(rng.standard_normal(shape).astype(np.float32))

    ts = torch_side
    cases = []
    for name, c, f, h, k, s, p in CONVS:
        x, w, b = arr(batch, c, h, h), arr(f, c, k, k) * 0.1, arr(f)
        ho = (h + 2 * p - k) // s + 1
        dy = arr(batch, f, ho, ho)

        def conv(x=x, w=w, b=b, dy=dy, s=s, p=p):
            conv2d_backward(dy, conv2d_forward(x, w, b, s, p)[1])
        cases.append(Case(name, conv, ts and ts.op("conv2d", (x, w, b), dy, stride=s, padding=p),
                          _conv_flops(batch, c, f, ho, ho, k)))

    xn, g, beta, dyn = arr(batch, 64, 16, 16), arr(64), arr(64), arr(batch, 64, 16, 16)
    cases.append(Case("batchnorm2d (N,64,16,16)",
                      lambda: batchnorm_backward(dyn, batchnorm_forward(xn, g, beta)[1]),
                      ts and ts.op("batch_norm", (xn, g, beta), dyn)))
    g2, b2 = arr(64, 16, 16), arr(64, 16, 16)
    cases.append(Case("layernorm (N,64,16,16)",
                      lambda: layernorm_backward(dyn, layernorm_forward(xn, g2, b2)[1]),
                      ts and ts.op("layer_norm", (xn, g2, b2), dyn)))
    xm, dym = arr(batch, 32, 32, 32), arr(batch, 32, 16, 16)
    cases.append(Case("maxpool2d 2x2 (N,32,32,32)",
                      lambda: maxpool2d_backward(dym, maxpool2d_forward(xm, 2)[1]),
                      ts and ts.op("max_pool2d", (xm,), dym, kernel_size=2)))
    xl, wl, bl, dyl = arr(batch, 1024), arr(1024, 1024) * 0.03, arr(1024), arr(batch, 1024)
    cases.append(Case("linear 1024->1024",
                      lambda: linear_backward(dyl, linear_forward(xl, wl, bl)[1]),
                      ts and ts.op("linear", (xl, wl, bl), dyl), 3 * 2 * batch * 1024 * 1024))

    nets = [(name, cnn(c, image_size=size, widths=widths, norm="bn", rng=0), (c, size, size))
            for name, c, size, widths in NETS]
    nets.append(("step mlp 784-256-256 (BN)", mlp(784, width=256, depth=2, norm="bn", rng=0),
                 (1, 28, 28)))      # the network `refnet reproduce` trains
    for name, model, shape in nets:
        xs = arr(batch, *shape)
        ys = dev(rng.integers(0, 10, size=batch))
        cases.append(Case(name, training_step(model, xs, ys),
                          ts and ts.step(model, xs, ys), _model_flops(model, xs.shape)))
    return [cs for cs in cases if only is None or only in cs.name]


def training_step(model, x, y, lr=0.01, momentum=0.9, l2=5e-4):
    """A callable doing one SGD step of ``model`` on ``(x, y)``, as ``Trainer.train_step``
    does it without its per-step recording: zero_grad, forward, loss, backward, step."""
    opt = SGD(trainable_parameters(model), lr=lr, momentum=momentum, l2=l2)

    def step():
        with np.errstate(all="ignore"):
            model.zero_grad()
            logits = model(x)
            loss, dlogits = softmax_cross_entropy(logits, y)
            loss = backend.scalar(loss)
            model.backward(dlogits)
            opt.step()
        return loss, int((logits.argmax(axis=1) == y).sum())
    return step


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
    """Time every case; returns one dict per case (see the module docstring)."""
    rows = []
    for case in cases:
        fns = [case.refnet_fn] + ([case.torch_fn] if case.torch_fn else [])
        sync = (lambda: (_sync(), torch_side.sync())) if case.torch_fn else _sync
        t = time_interleaved(fns, repeats, sync=sync, clock=clock)
        row = {"name": case.name, "refnet_ms": 1e3 * t[0],
               "torch_ms": 1e3 * t[1] if case.torch_fn else None}
        row["ratio"] = t[0] / t[1] if case.torch_fn else None
        row["gflops"] = case.flops / t[0] / 1e9 if case.flops else None
        row["peak_fraction"] = row["gflops"] / peak if row["gflops"] and peak else None
        row["peak_mem_mb"] = peak_memory(case.refnet_fn) / 2 ** 20
        rows.append(row)
    return rows


def format_table(rows):
    def f(v, spec):
        return format("-" if v is None else format(v, spec), ">" + spec.split(".")[0])
    lines = [f"{'case':28s} {'refnet ms':>10s} {'torch ms':>9s} {'ratio':>6s} "
             f"{'GFLOP/s':>8s} {'%peak':>6s} {'peak MB':>8s}"]
    for r in rows:
        frac = None if r["peak_fraction"] is None else 100 * r["peak_fraction"]
        lines.append(f"{r['name']:28s} {f(r['refnet_ms'], '10.2f')} {f(r['torch_ms'], '9.2f')} "
                     f"{f(r['ratio'], '6.2f')} {f(r['gflops'], '8.1f')} {f(frac, '6.0f')} "
                     f"{f(r['peak_mem_mb'], '8.1f')}")
    return "\n".join(lines)


def add_arguments(parser):
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu",
                        help="cpu: NumPy; gpu: CuPy (and PyTorch on CUDA when it has it)")
    parser.add_argument("--quick", action="store_true", help="fewer repeats, for a fast look")
    parser.add_argument("--repeats", type=positive_int, default=None,
                        help="timed calls per case and side (default 25, --quick 5)")
    parser.add_argument("--batch", type=int_at_least(2), default=128, help="batch size (default 128)")
    parser.add_argument("--only", default=None, help="run only cases whose name contains this")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch side")
    parser.add_argument("--clock", choices=tuple(CLOCKS), default="wall",
                        help="wall: elapsed time (default); cpu: process CPU time, steadier "
                             "on a busy machine when both sides run one thread")
    parser.add_argument("--json", type=writable_file, metavar="FILE", default=None,
                        help="also write results here (checked writable before anything runs)")


def run(args):
    previous = backend.default_name()
    if args.device == "gpu":
        try:
            backend.use("cupy")
        except RuntimeError as err:     # says why: no cupy, no device, broken CUDA
            raise UsageError(f"--device gpu: {err}") from None
    try:
        return _run(args)
    finally:
        backend.use(previous)


def _run(args):
    repeats = args.repeats or (5 if args.quick else 25)
    if args.only is not None and not make_cases(args.batch, None, args.only):
        names = ", ".join(repr(c.name) for c in make_cases(args.batch))
        raise UsageError(f"--only: got {args.only!r}, which is in no case's name; the cases are {names}")
    if args.device == "gpu" and args.clock == "cpu":
        raise UsageError("--clock cpu does not measure GPU work; use --clock wall")
    torch_side = None if args.no_torch else bench_torch.TorchSide.create(args.device)
    env = {k: os.environ.get(k) for k in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS",
                                          "OPENBLAS_NUM_THREADS", "OPENBLAS_CORETYPE")}
    peak = gemm_peak(512 if args.quick else 1024, clock=args.clock)
    print(f"refnet bench: device {args.device}, float32, batch {args.batch}, median of {repeats} "
          f"interleaved repeats ({args.clock} clock); float32 GEMM peak {peak:.0f} GFLOP/s; "
          f"{torch_side.describe() if torch_side else 'PyTorch: not compared'}")
    rows = run_cases(make_cases(args.batch, torch_side, args.only), repeats, torch_side, peak,
                     args.clock)
    print(format_table(rows))
    print(f"conv2d's reused column buffer (not in 'peak MB'): "
          f"{conv.workspace_nbytes() / 2 ** 20:.1f} MB")
    memory = bench_torch.activation_report(NETS, args.batch, torch_side)
    for m in memory:
        torch_mb = "-" if m["torch_mb"] is None else f"{m['torch_mb']:.1f} MB"
        ratio = "" if m["ratio"] is None else f" (ratio {m['ratio']:.2f})"
        print(f"activation memory kept for backward, {m['name']}: refnet {m['refnet_mb']:.1f} MB, "
              f"PyTorch {torch_mb}{ratio}")
    if args.json:
        result = {"device": args.device, "dtype": "float32", "batch": args.batch,
                  "repeats": repeats, "clock": args.clock, "gemm_peak_gflops": peak, "env": env,
                  "torch": torch_side.describe() if torch_side else None,
                  "cases": rows, "activation_memory": memory,
                  "conv_workspace_mb": conv.workspace_nbytes() / 2 ** 20}
        tmp = args.json + ".tmp"
        with open(tmp, "w") as fh:
            json.dump(result, fh, indent=2)
        os.replace(tmp, args.json)
    return 0
