"""``refnet bench``: how fast are the hand-written ops, and how far from PyTorch?

    refnet bench                       # CPU, float32, PyTorch side by side if importable
    refnet bench --quick --json b.json # fewer repeats, results also as JSON
    refnet bench --compare b.json      # ... and new/old per case against a saved run
    refnet bench --device gpu          # the same code on CuPy

Each case times forward+backward (or one training step) of refnet and, when PyTorch
happens to be installed (never a dependency), of the same computation in PyTorch, in the
same process. Timings on a shared machine drift by tens of percent between processes and
even between seconds, so the two sides are *interleaved* -- refnet, torch, refnet, torch,
... -- and each reports the median of its repeats: both see the same machine state, and
the ratio is meaningful even when the absolute numbers are not. The recorder cases time a
training step with the per-step recording ``refnet reproduce`` does against the same step
without it (their "torch" column is the step without recording: the ratio is the overhead).
The second-order cases time ``model.hvp`` and ``model.gvp`` against one forward-backward of
the same model and batch (the "torch" column is that forward-backward; target: an hvp in at
most 2.5x its time), and, with PyTorch, refnet's hvp against ``torch.func``'s jvp-of-grad.

Columns: median milliseconds, the ratio refnet/PyTorch, GFLOP/s (matrix-product FLOPs of
the forward and the two backward products; none for memory-bound ops) and its fraction of
the measured float32 GEMM peak (a square matmul timed at start), and refnet's peak extra
memory during one call: tracemalloc on NumPy (NumPy reports its buffers to it), the
growth of CuPy's memory pool on the GPU.

``OMP_WAIT_POLICY=PASSIVE`` is set before PyTorch is imported: its OpenMP threads
otherwise spin after each op and slow NumPy's BLAS threads in the same process by about
a third. After the table, the memory a training step keeps for the backward pass is
compared with PyTorch's saved tensors (``activation_memory``).

The package: ``cases`` (what is timed), ``timing`` (interleaved medians, GEMM peak, memory),
``torch_side`` (PyTorch's twins, imported only when PyTorch is compared; nothing else in
refnet imports torch), ``report`` (table, JSON, ``--compare``), ``command`` (the CLI).
"""

from refnet.bench.cases import CONVS, NETS, Case, _model_flops, make_cases, training_step
from refnet.bench.timing import CLOCKS, gemm_peak, peak_memory, run_cases, time_interleaved
from refnet.bench.command import add_arguments, run  # looks gemm_peak, run_cases up here

__all__ = ["CONVS", "NETS", "Case", "make_cases", "training_step", "CLOCKS", "gemm_peak", "peak_memory",
           "run_cases", "time_interleaved", "add_arguments", "run"]
