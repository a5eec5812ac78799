"""Blocks of rows, run on a few threads: the one place the CPU ops use threads.

NumPy runs each elementwise operation and reduction on one thread, and a pass over an
array larger than the cache is paced by memory. A memory-bound op (layer norm, max pooling;
batch norm is within PyTorch's time on one thread) that makes several passes over the same
rows therefore runs them block by block,
while a block stays in cache, and ``run_blocks`` hands the blocks to ``threads()``
threads: NumPy releases the GIL inside its loops, so two threads on a 2-core machine run
two blocks at once. Each thread takes the next block nobody has taken yet, so a thread the
OS does not schedule (a busy machine) delays the op by at most its current block, where a
static split would wait for its whole half; a worker that has not started when the calling
thread has done every block is cancelled, not waited for.

Work inside a block must not call a multithreaded BLAS: two blocks would each ask BLAS for
every core. The ops use NumPy's own loops there (einsum, vecdot on short rows, ufuncs).

On a GPU (CuPy) ``row_blocks`` returns one block: its kernels are not cache-bound and every
block costs kernel launches, so ``run_blocks`` makes a single call, on this thread.
"""

import itertools
import os
from concurrent.futures import ThreadPoolExecutor

_pool = None
_threads = None
_threads_set = False      # set_threads was called: keep its count in a forked child too


def _forget_pool():
    global _pool, _threads
    _pool = None
    if not _threads_set:  # the child may have its own OMP_NUM_THREADS (a worker process)
        _threads = None


# a forked child has none of the parent's threads: it must start its own pool
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def _default_threads():
    """OMP_NUM_THREADS when set (as BLAS and PyTorch read it; the experiment runner's
    worker processes set it to 1), else the cores this process may run on."""
    value = os.environ.get("OMP_NUM_THREADS", "")
    if value.strip().isdigit() and int(value) >= 1:
        return int(value)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:        # not on Linux
        return os.cpu_count() or 1


def threads():
    """How many threads ``run_blocks`` uses (read from the environment on first use)."""
    global _threads
    if _threads is None:
        _threads = _default_threads()
    return _threads


def set_threads(n):
    """Use ``n`` threads from now on (1: everything on the calling thread); returns the
    previous count."""
    global _threads, _threads_set, _pool
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"set_threads(n): got {n!r}, expected a positive integer")
    previous = threads()
    if n != previous:
        _pool = None      # not shut down: another thread may be using it; its threads end with it
    _threads, _threads_set = n, True
    return previous


def row_blocks(n, row_size, xp, block_size):
    """Slices of range(n) covering it in order, each of about ``block_size`` values (rows
    of ``row_size`` values, at least one row per slice); one slice for CuPy arrays."""
    rows = n if xp.__name__ == "cupy" else max(1, block_size // max(1, row_size))
    return [slice(i, min(n, i + rows)) for i in range(0, n, rows)]


def run_blocks(fn, count):
    """Call ``fn(k)`` for k in range(count), on up to ``threads()`` threads; returns when
    all calls are done. An error in a call is raised: the first failed worker's (in start
    order), else the calling thread's (then in the worker's ``__context__``); the other
    threads may still run later blocks.
    ``fn`` writes its results into slots of preallocated arrays (block k's rows, or row k of
    a per-block array), so the result does not depend on which thread ran which block, nor
    in what order."""
    workers = min(threads(), count)
    if workers < 2:
        for k in range(count):
            fn(k)
        return
    global _pool
    pool = _pool          # this call's pool, even if set_threads replaces it meanwhile
    if pool is None:
        pool = _pool = ThreadPoolExecutor(max_workers=threads() - 1, thread_name_prefix="refnet-blocks")
    taken = itertools.count()     # next() on it is atomic under the GIL

    def work():
        while (k := next(taken)) < count:
            fn(k)
    futures = [pool.submit(work) for _ in range(workers - 1)]
    try:
        work()
    finally:
        for f in futures:
            if not f.cancel():       # a worker that never started took no block: skip it
                f.result()
