"""Run many independent tasks (training runs, probes) in parallel, cached on disk.

A *task* is a plain, JSON-able dict ``spec`` with a ``"task"`` key naming a function in
``execute`` (train, invariance, one_step); ``execute(spec)`` runs it and returns ``(arrays, meta)``:
a dict of numpy arrays and a JSON-able dict. Nothing else crosses a process boundary.

    runner = Runner(jobs=2, cache_dir="figures/.cache")
    results = runner.map(specs)        # [(arrays, meta), ...] in the order of specs

``Runner.map`` looks every spec up in the cache first (``<cache_dir>/<key>.npz``, the key a
SHA-256 of the spec's canonical JSON, written atomically with the metadata inside the
``.npz``, read back without pickle), then runs what is missing:

- ``jobs=1``: in this process, one after another;
- ``jobs=N``: in N fresh processes (``spawn``: each imports numpy anew, with one BLAS thread,
  so N workers use N cores instead of fighting over them);
- ``scheduler="tcp://host:8786"`` (or a ``distributed.Client``): on a Dask cluster, which
  needs the ``cluster`` extra (``pip install "refnet[cluster]"``) and the data on every worker.

A tqdm bar counts training steps (each task weighs its ``steps``), so its rate and time
estimate mean something when tasks differ 100-fold in length; tasks start longest first. ``runner.executed`` counts the tasks this runner computed
(cache misses), which is how the tests check that a second call retrains nothing.

Ctrl-C (or any error) while tasks run: every task finished by then is in the cache, the
workers are stopped at once (they ignore SIGINT themselves, so only this process decides)
and unstarted tasks are cancelled, on a Dask cluster too; the exception goes on to the caller.
"""

import concurrent.futures as cf
import contextlib
import hashlib
import json
import multiprocessing
import os
import signal
import threading
import time

from tqdm import tqdm

from refnet import checkpoint

FORMAT = 4  # bump when a task's output changes meaning: old cache entries are then ignored
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")
# keys that say where things are, not what is computed: left out of the cache key
_NOT_IN_KEY = ("data_dir", "label")


def _keyed(spec):
    if isinstance(spec, dict):
        return {k: _keyed(v) for k, v in spec.items() if k not in _NOT_IN_KEY}
    if isinstance(spec, (list, tuple)):
        return [_keyed(v) for v in spec]
    return spec


def spec_key(spec):
    """The cache key of a task: SHA-256 (24 hex digits) of its canonical JSON and FORMAT."""
    text = json.dumps({"format": FORMAT, "spec": _keyed(spec)}, sort_keys=True,
                      separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


def execute(spec):
    """Run one task in this process; returns ``(arrays, meta)``."""
    from refnet.experiments import probes, tasks, tasks_curvature  # here: a spawned worker imports them lazily

    known = {"train": tasks.train_task, "invariance": probes.invariance_task,
             "one_step": probes.one_step_task}
    known.update(curvature_identities=tasks_curvature.curvature_identities_task,
                 sharpness=tasks_curvature.sharpness_task)
    name = spec.get("task")
    if name not in known:
        raise ValueError(f"execute(spec['task']): got {name!r}, expected one of {sorted(known)}")
    cpu = time.process_time()  # every thread of this process (BLAS's too): the budgets are in CPU-seconds
    arrays, meta = known[name](spec)
    meta["cpu_seconds"] = time.process_time() - cpu
    return arrays, meta


def _worker_init():
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the parent stops us
    # tqdm's default lock is a multiprocessing semaphore; a worker stopped by the parent could
    # not release it, and the resource tracker would warn about it at exit
    tqdm.set_lock(threading.RLock())
    try:  # only if installed; the environment variables already did the job at numpy import
        import threadpoolctl
        threadpoolctl.threadpool_limits(1)
    except ImportError:
        pass


@contextlib.contextmanager
def _one_thread_env():
    """Workers spawned inside this block inherit one-thread BLAS settings (set before their
    numpy import); this process's own settings are restored afterwards."""
    saved = {k: os.environ.get(k) for k in _THREAD_VARS}
    os.environ.update({k: "1" for k in _THREAD_VARS})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class Cache:
    """``key -> (arrays, meta)`` as one ``.npz`` per key in ``directory`` (None: no cache)."""

    def __init__(self, directory):
        self.directory = None if directory is None else os.fspath(directory)

    def path(self, key):
        return os.path.join(self.directory, f"{key}.npz")

    def get(self, key):
        if self.directory is None or not os.path.exists(self.path(key)):
            return None
        try:
            arrays, meta = checkpoint.read_npz(self.path(key))
        except (ValueError, OSError):  # a foreign or damaged file: recompute it
            return None
        return arrays, (meta or {}).get("meta", {})

    def put(self, key, spec, arrays, meta):
        if self.directory is None:
            return
        os.makedirs(self.directory, exist_ok=True)
        checkpoint.write_npz(self.path(key), arrays,
                             checkpoint.json_safe({"spec": spec, "meta": meta}))


class Runner:
    """Maps ``execute`` over task specs with a cache; see the module docstring.

    jobs: worker processes (1: in this process). scheduler: a Dask scheduler address or a
    ``distributed.Client`` (overrides ``jobs``). cache_dir: where results are kept (None:
    nowhere). progress: show a tqdm bar.
    """

    def __init__(self, jobs=1, scheduler=None, cache_dir=None, progress=True):
        if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
            raise ValueError(f"Runner(jobs): got {jobs!r}, expected a positive integer")
        self.jobs, self.scheduler, self.progress = jobs, scheduler, progress
        self.cache = Cache(cache_dir)
        self.executed = 0
        self._memo = {}  # key -> result, so experiments sharing runs read them once

    def map(self, specs, desc="runs"):
        """``[(arrays, meta), ...]``, one per spec, in order; equal specs run once."""
        specs = list(specs)
        keys = [spec_key(s) for s in specs]
        results = {k: self._memo.get(k) or self.cache.get(k) for k in dict.fromkeys(keys)}
        todo = {k: s for k, s in zip(keys, specs) if results[k] is None}
        total = sum(steps(s) for s in {k: s for k, s in zip(keys, specs)}.values())
        bar = tqdm(total=total, initial=total - sum(steps(s) for s in todo.values()), desc=desc, unit="step",
                   unit_scale=True, disable=not (self.progress and todo), dynamic_ncols=True)
        try:
            for key, (arrays, meta) in self._run(todo):
                self.cache.put(key, todo[key], arrays, meta)
                results[key] = (arrays, meta)
                self.executed += 1
                bar.update(steps(todo[key]))
        finally:
            bar.close()
        self._memo.update(results)
        return [results[k] for k in keys]

    def _run(self, todo):
        """Yield ``(key, result)`` as tasks finish (longest first, so the tail is short)."""
        order = sorted(todo, key=lambda k: -_cost(todo[k]))
        if not order:
            return
        if self.scheduler is not None:
            yield from self._run_dask(order, todo)
        elif self.jobs == 1 or len(order) == 1:
            for key in order:
                yield key, execute(todo[key])
        else:
            with _one_thread_env(), cf.ProcessPoolExecutor(
                    min(self.jobs, len(order)), mp_context=multiprocessing.get_context("spawn"),
                    initializer=_worker_init) as pool:
                futures = {pool.submit(execute, todo[key]): key for key in order}
                try:
                    for fut in cf.as_completed(futures):
                        yield futures[fut], fut.result()
                except BaseException:  # Ctrl-C, a failed task: keep what finished, stop the rest now
                    self._keep_finished(futures, todo)
                    _stop_pool(pool)
                    raise

    def _run_dask(self, order, todo):
        try:
            from distributed import Client, as_completed
        except ImportError:
            raise RuntimeError("a Dask scheduler was given but dask.distributed is not installed: "
                               "pip install 'refnet[cluster]' (or \"dask[distributed]\")") from None
        own = not isinstance(self.scheduler, Client)
        client = Client(self.scheduler) if own else self.scheduler
        try:
            futures = [client.submit(execute, todo[key], key=f"refnet-{key}", pure=False)
                       for key in order]
            key_of = {f.key: k for f, k in zip(futures, order)}
            try:
                for fut in as_completed(futures):
                    yield key_of[fut.key], fut.result()
            except BaseException:
                client.cancel(futures)  # or the cluster goes on computing for no one
                raise
        finally:
            if own:
                client.close()


    def _keep_finished(self, futures, todo):
        """Cache the results of futures that finished but were not handed out yet."""
        for fut, key in futures.items() if self.cache.directory is not None else ():
            if fut.done() and not fut.cancelled() and fut.exception() is None and \
                    self.cache.get(key) is None:
                self.cache.put(key, todo[key], *fut.result())
                self.executed += 1


def _stop_pool(pool):
    """Cancel the queued tasks and end the running ones (a worker mid-task would otherwise
    hold the interpreter's exit until the task is done)."""
    terminate = getattr(pool, "terminate_workers", None)  # Python >= 3.14
    if terminate is not None:
        terminate()
        return
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        process.terminate()  # the pool sees them die, fails what is left and cleans up
    pool.shutdown(wait=True, cancel_futures=True)


def steps(spec):
    """A task's training steps: its weight in the progress bar (at least 1)."""
    return max(1, int(spec.get("steps", 0) or spec.get("train_steps", 0) or 0))


def _cost(spec):
    """A rough relative cost, to start the longest tasks first: steps x width, float64 and the
    per-step gradient correlations counted about twice."""
    model = spec.get("model", {})
    width = model.get("width", 1)
    factor = (2.0 if model.get("dtype") == "float64" else 1.0) * (2.0 if spec.get("autocorr_lags") else 1.0)
    return steps(spec) * (sum(width) if isinstance(width, list) else width) * factor
