"""ops/_chunks: blocks of rows cover the batch once, in order; run_blocks calls every block
once on any number of threads and re-raises a block's error; and the ops that use them give
on several threads, in blocks that do not divide the batch, what they give in one block."""

import signal
import threading

import numpy as np
import pytest

from refnet.ops import _chunks
from refnet.ops import layernorm as layernorm_module
from refnet.ops import pool as pool_module
from refnet.ops import layernorm_backward, layernorm_forward, maxpool2d_backward, maxpool2d_forward


@pytest.fixture
def threads():
    """Set the thread count for one test, restored afterwards."""
    saved = _chunks.threads()
    yield _chunks.set_threads
    _chunks.set_threads(saved)


@pytest.mark.parametrize("n, row_size, block_size", [(7, 10, 20), (1, 10, 20), (8, 10, 20),
                                                    (5, 10, 3), (3, 10, 1000)])
def test_row_blocks_cover_the_batch_once_in_order(n, row_size, block_size):
    blocks = _chunks.row_blocks(n, row_size, np, block_size)
    rows = [i for r in blocks for i in range(n)[r]]
    assert rows == list(range(n))
    assert all(r.stop - r.start == max(1, block_size // row_size) for r in blocks[:-1])


@pytest.mark.parametrize("count", [0, 1, 2, 7, 50])
@pytest.mark.parametrize("n_threads", [1, 2, 3])
def test_run_blocks_calls_every_block_exactly_once(threads, count, n_threads):
    threads(n_threads)
    calls, lock = [], threading.Lock()

    def fn(k):
        with lock:
            calls.append(k)
    _chunks.run_blocks(fn, count)
    assert sorted(calls) == list(range(count))


def test_run_blocks_uses_more_than_one_thread_when_asked(threads):
    threads(2)
    seen, both = set(), threading.Barrier(2, timeout=10)

    def fn(k):
        seen.add(threading.get_ident())
        both.wait()               # returns only once two blocks run at the same time
    _chunks.run_blocks(fn, 2)
    assert len(seen) == 2


@pytest.mark.parametrize("n_threads", [1, 2])
def test_run_blocks_reraises_the_error_of_a_block(threads, n_threads):
    threads(n_threads)

    def fn(k):
        if k == 3:
            raise ArithmeticError("block 3")
    with pytest.raises(ArithmeticError, match="block 3"):
        _chunks.run_blocks(fn, 6)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_set_threads_refuses_a_non_positive_integer(threads, bad):
    with pytest.raises(ValueError, match=r"set_threads\(n\).*expected a positive integer"):
        threads(bad)


@pytest.mark.parametrize("value, want", [("1", 1), ("3", 3)])
def test_the_default_thread_count_follows_omp_num_threads(monkeypatch, value, want):
    monkeypatch.setenv("OMP_NUM_THREADS", value)
    assert _chunks._default_threads() == want


# --- the ops: several threads and uneven blocks give the one-block result -------------------
@pytest.mark.parametrize("n", [1, 7])
def test_layernorm_on_two_threads_in_uneven_blocks_equals_one_block(rng, monkeypatch, threads, n):
    x = rng.standard_normal((n, 2, 3, 3))
    s = x.shape[1:]
    gamma, beta, dy = rng.standard_normal(s), rng.standard_normal(s), rng.standard_normal(x.shape)
    threads(1)
    y1, c1 = layernorm_forward(x, gamma, beta)
    want = layernorm_backward(dy, c1)
    threads(2)
    monkeypatch.setattr(layernorm_module, "_BLOCK", 2 * 18)      # 2 rows a block: 4 blocks for n=7
    y, cache = layernorm_forward(x, gamma, beta)
    np.testing.assert_allclose(y, y1, rtol=1e-13, atol=1e-14)
    for g, w in zip(layernorm_backward(dy, cache), want):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("n", [1, 7])
@pytest.mark.parametrize("kernel, stride", [(2, None), (3, 1), ((2, 3), (2, 1))])
def test_maxpool_on_two_threads_in_uneven_blocks_equals_one_block(rng, monkeypatch, threads, n,
                                                                 kernel, stride):
    x = rng.standard_normal((n, 3, 6, 7))
    x[0, 0, :2, :2] = 0.0                                     # a tie, routed to its first maximum
    threads(1)
    y1, c1 = maxpool2d_forward(x, kernel, stride)
    dy = rng.standard_normal(y1.shape)
    want = maxpool2d_backward(dy, c1)
    threads(2)
    monkeypatch.setattr(pool_module, "_BLOCK", 2 * x[0].size)  # 2 samples a block
    y, cache = maxpool2d_forward(x, kernel, stride)
    np.testing.assert_array_equal(y, y1)
    np.testing.assert_array_equal(maxpool2d_backward(dy, cache), want)


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_run_blocks_works_in_a_forked_child_of_a_process_that_used_threads(threads):
    import os
    threads(2)
    _chunks.run_blocks(lambda k: None, 4)          # the parent's pool now has a thread
    pid = os.fork()
    if pid == 0:                                   # child: exit 0 only if run_blocks returns
        signal.alarm(10)                           # a hang ends the child by SIGALRM
        done = []
        _chunks.run_blocks(done.append, 4)
        os._exit(0 if sorted(done) == [0, 1, 2, 3] else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
@pytest.mark.parametrize("chosen", [False, True])
def test_a_forked_child_reads_its_own_thread_count_unless_set_threads_chose_one(monkeypatch, chosen):
    import os
    monkeypatch.setattr(_chunks, "_threads_set", chosen)
    monkeypatch.setattr(_chunks, "_threads", 2)     # the parent's (read, or chosen) before the fork
    pid = os.fork()
    if pid == 0:                                   # child: a worker process with one thread
        signal.alarm(10)
        os.environ["OMP_NUM_THREADS"] = "1"
        os._exit(0 if _chunks.threads() == (2 if chosen else 1) else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_set_threads_while_another_thread_runs_blocks_breaks_nothing(threads):
    threads(2)
    errors, done = [], []

    def user():
        try:
            for _ in range(300):
                out = []
                _chunks.run_blocks(out.append, 4)
                done.append(sorted(out) == [0, 1, 2, 3])
        except Exception as err:                   # e.g. scheduling on a pool shut down meanwhile
            errors.append(err)
    worker = threading.Thread(target=user, daemon=True)
    worker.start()
    for i in range(300):
        _chunks.set_threads(2 + i % 2)
    worker.join(timeout=30)
    assert errors == [] and not worker.is_alive() and all(done) and len(done) == 300


def test_run_blocks_called_inside_a_block_does_not_wait_on_itself(threads):
    threads(2)
    done = []

    def outer(k):
        _chunks.run_blocks(lambda j: done.append((k, j)), 3)
    caller = threading.Thread(target=_chunks.run_blocks, args=(outer, 2), daemon=True)
    caller.start()
    caller.join(timeout=10)
    assert not caller.is_alive(), "run_blocks waited on a pool worker that was busy waiting on it"
    assert sorted(done) == [(k, j) for k in range(2) for j in range(3)]
