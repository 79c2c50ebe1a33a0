"""Dask orchestration: one pass over the data is a map over row blocks plus a tree reduction.

The per-block mathematics lives in :mod:`._kernels`; here we only decide where
it runs.  On the threaded scheduler a pass builds a fresh graph on top of the
(possibly persisted) data: one task per block, one literal key holding the
small parameters (centers, temperature, ...), and a tree of float64 sums with
``split_every`` inputs per node.  On a distributed client, persisted blocks
(and Zarr sources from a runner's second pass on) go through one holder actor
per worker, which runs the kernel over its blocks at each call; lacking
holders, a pass is one task per worker thread.  Every path sums the blocks'
statistics in the graph's tree order, so they agree bit for bit.  Only the
packed statistics, ``O(K D)`` numbers, reach the driver, and nothing grows
from pass to pass.
"""

from __future__ import annotations

import os
import threading
import uuid
import weakref
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, NamedTuple

import dask
import dask.array as da
import numpy as np

from . import _kernels, io
from ._data import ArrayLike, as_data, as_weights
from ._kernels import NORMALIZATIONS, MomentMode, Normalization, StatsLayout
from .errors import InputError

#: Above this many features the first pass skips the D x D Gram matrix and the
#: largest covariance eigenvalue comes from power iteration instead.
GRAM_MAX_FEATURES = 1024

#: With ``persist="auto"`` the data are held in memory when they fit in this
#: share of the workers' memory, less what they use already (see
#: :func:`memory_for_data`): the rest is room for the passes' own work, for
#: blocks shared out unevenly and for other data, and keeps a worker below
#: distributed's spill threshold (70%).
PERSIST_MEMORY_SHARE = 0.5


def active_client() -> Any:
    """The default ``distributed.Client``, or None without one."""
    try:
        from distributed import default_client

        return default_client()
    except (ImportError, ValueError):
        return None


def _import_kernel() -> None:
    from . import _compiled  # noqa: F401  - numba compiles it, or loads it from its cache


def load_kernel(client: Any = None) -> None:
    """Load the compiled kernel in this process, then on every worker of ``client``.

    With an empty numba cache this compiles it (once per installation and CPU,
    about half a minute on a 2-core machine); workers on this machine then
    load what this process wrote.  A fit does it first, so that the wait is
    neither hidden in its first pass (here, on the sample) nor in its first
    pass over the data (on the workers), and can be announced.
    """
    _import_kernel()
    if client is not None:
        client.run(_import_kernel)


#: Tells this process from others where host name and pid do not (containers that share
#: a host name each have their own pids); renewed in a forked child.
_PROCESS_TOKEN = uuid.uuid4().hex


class _ProcessMemory(NamedTuple):
    """What one worker (or this process, without a client) reports for ``persist="auto"``."""

    host: str
    process: str  #: :data:`_PROCESS_TOKEN` of its process
    limit: int  #: the worker's memory limit in bytes, 0 for none
    host_memory: int  #: its host's memory (``distributed.system.MEMORY_LIMIT`` there)
    used: int  #: its process's resident memory now, 0 where it cannot be read
    threads: int


def _memory_in_use(dask_worker: Any = None) -> _ProcessMemory:
    """This process's :class:`_ProcessMemory`, as ``dask_worker`` (``Client.run`` passes
    the worker it runs on) or, without one, as a single-threaded worker without a limit."""
    import socket

    import psutil
    from distributed.system import MEMORY_LIMIT

    try:
        used = int(psutil.Process().memory_info().rss)
    except (psutil.Error, OSError):
        used = 0
    if dask_worker is None:
        limit, threads = 0, 1
    else:
        limit, threads = dask_worker.memory_manager.memory_limit or 0, dask_worker.state.nthreads
    return _ProcessMemory(socket.gethostname(), _PROCESS_TOKEN, int(limit), int(MEMORY_LIMIT),
                          used, int(threads))


def memory_for_data() -> int:
    """The most bytes of data that ``persist="auto"`` holds in memory, now.

    Memory comes in pools: a worker process with a memory limit (workers that
    share a process, ``processes=False``, add their limits), or all processes
    without a limit on one host (that host's memory, once).  A pool offers
    :data:`PERSIST_MEMORY_SHARE` of its memory less what its processes use now:
    the interpreter, the loaded libraries (numba's compiler alone ~130 MiB),
    data held already.  Persisted blocks are shared out by worker threads, so
    the data fit when each pool's share (its threads over all threads) fits
    in what it offers: one small worker limits the whole cluster.  Without a
    client, the pool is this process on this machine; a client with no
    workers has no room (the data stream).  A worker that cannot be reached
    is left out.
    """
    client = active_client()
    rows: list[_ProcessMemory] = (
        [_memory_in_use()] if client is None
        else list(client.run(_memory_in_use, on_error="ignore").values()))
    pools: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        key = ("process", row.process) if row.limit else ("host", row.host)
        pool = pools.setdefault(key, {"memory": 0, "used": {}, "threads": 0})
        pool["memory"] = pool["memory"] + row.limit if row.limit else row.host_memory
        pool["used"][row.process] = row.used  # once per process, however many workers
        pool["threads"] += row.threads
    if not pools:
        return 0
    threads = sum(pool["threads"] for pool in pools.values())
    return int(min(max(0.0, PERSIST_MEMORY_SHARE * pool["memory"] - sum(pool["used"].values()))
                   * threads / pool["threads"] for pool in pools.values()))


def should_persist(X: np.ndarray | da.Array, persist: bool | str) -> bool:
    """Whether to hold ``X`` in (cluster) memory for the passes, decided now.

    ``persist`` is True, False or "auto": hold a Dask array when it takes at
    most :func:`memory_for_data`.  NumPy data are in memory already (False).
    """
    if not isinstance(X, da.Array) or persist is False:
        return False
    if persist is True:
        return True
    if persist != "auto":
        raise InputError(f"persist must be 'auto', True or False; got {persist!r}.")
    return X.nbytes <= memory_for_data()


def _sum_vectors(*vectors: np.ndarray) -> np.ndarray:
    """Associative float64 sum of packed statistics (one tree-reduction node)."""
    total = vectors[0].copy()
    for v in vectors[1:]:
        total += v
    return total


#: At most this much freed memory stays in a worker's heap for the next block
#: (and blocks up to this size come from the heap), see :func:`_tune_worker_malloc`.
WORKER_HEAP_KEEP = 64 * 2**20

_worker_libc: Any = None  # glibc, once _tune_worker_malloc has tuned this worker process
_malloc_tuned = False


def _tune_worker_malloc() -> Any:
    """Let a Dask worker process reuse freed block buffers instead of mapping fresh pages.

    Dask starts workers with ``MALLOC_TRIM_THRESHOLD_`` set, which also pins
    glibc's mmap threshold at 128 KiB: every block buffer above it (a Zarr
    chunk and its decoded copy, megabytes each) is then mapped, faulted in
    page by page and unmapped again, on every pass (~40,000 page faults per
    worker per pass over 256 MB; ``benchmarks/out_of_core.py``).  Raising
    both thresholds to :data:`WORKER_HEAP_KEEP` (at most a sixteenth of the
    worker's memory limit: glibc may keep that much free in each of its arenas,
    and at an eighth a 512 MiB worker spilled to disk now and then while it
    gathered a sample) keeps such buffers in the heap, where the next
    block reuses them; a task that streamed its blocks hands the heap back
    with ``malloc_trim`` when it ends (:func:`_source_blocks_task`), so a
    memory-limited worker does not hold it between passes.

    Only in a worker process that a nanny started with that setting and
    without an mmap threshold of its own; never in the caller's process (an
    in-process cluster), and nothing without glibc.  Returns glibc when the
    process is tuned, else None.
    """
    global _worker_libc, _malloc_tuned
    if _malloc_tuned:
        return _worker_libc
    _malloc_tuned = True
    import multiprocessing

    if (multiprocessing.parent_process() is None
            or "MALLOC_TRIM_THRESHOLD_" not in os.environ
            or "MALLOC_MMAP_THRESHOLD_" in os.environ):
        return None
    try:
        from distributed import get_worker

        limit = get_worker().memory_manager.memory_limit
    except (ImportError, ValueError, AttributeError):
        return None
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        libc = None
    if libc is None or not hasattr(libc, "mallopt") or not hasattr(libc, "malloc_trim"):
        return None
    keep = min(WORKER_HEAP_KEEP, limit // 16) if limit else WORKER_HEAP_KEEP
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's <malloc.h>
    libc.mallopt(m_mmap_threshold, int(keep))
    libc.mallopt(m_trim_threshold, int(keep))
    _worker_libc = libc
    return libc


def _statistics_task(x: np.ndarray, w: np.ndarray | None, params: dict[str, Any]) -> np.ndarray:
    return _kernels.block_statistics(x, weights=w, **params)


def _scan_task(x: np.ndarray, w: np.ndarray | None, params: dict[str, Any]) -> np.ndarray:
    return _kernels.scan_statistics(x, weights=w, **params)


def _streamed_task(x: np.ndarray, w: np.ndarray | None, params: dict[str, Any], task: Any) -> np.ndarray:
    _tune_worker_malloc()
    return task(x, w, params)


def _blocks_task(
    task: Any, params: dict[str, Any], xs: list[np.ndarray], ws: list[np.ndarray] | None
) -> np.ndarray:
    """``task`` over several blocks of one worker: one row of statistics per block."""
    _tune_worker_malloc()
    return np.stack([task(x, None if ws is None else ws[i], params) for i, x in enumerate(xs)])


@contextmanager
def _block_reads():
    """Around a task that reads blocks on a worker: freed block buffers may be reused
    (:func:`_tune_worker_malloc`) while it runs, and go back to the system after it."""
    libc = _tune_worker_malloc()
    try:
        yield
    finally:
        if libc is not None:
            libc.malloc_trim(0)


def _source_blocks_task(
    bounds: list[tuple[int, int]], *, task: Any, params: dict[str, Any], source: Any
) -> np.ndarray:
    """``task`` over row ranges read from ``source`` (a Zarr array), one range at a time."""
    with _block_reads():
        return np.stack([task(io.read_rows(source, start, stop), None, params)
                         for start, stop in bounds])


def _source_rows_task(
    bounds: list[tuple[int, int]], *, per_row: Any, kwargs: dict[str, Any], source: Any
) -> np.ndarray:
    """``per_row(rows, **kwargs)`` over row ranges read from ``source``, one range at a
    time, concatenated: a per-row output (labels) with one block in memory at a time."""
    with _block_reads():
        return np.concatenate([per_row(io.read_rows(source, start, stop), **kwargs)
                               for start, stop in bounds])


class _BlockHolder:
    """An actor on one worker that runs its share of every pass over one dataset.

    It holds either references to persisted blocks (the arrays themselves, no
    copy) or a Zarr array and the row ranges it reads from it at each pass.
    A pass through tasks costs the scheduler's round trip (a task goes
    client -> scheduler -> worker, its result worker -> scheduler -> client,
    then a gather), ~12 ms on a 2-worker ``LocalCluster``; a call to an actor
    goes client -> worker -> client, ~3 ms.
    """

    def __init__(self, xs: list[np.ndarray] | None = None, ws: list[np.ndarray] | None = None,
                 *, source: Any = None, bounds: list[tuple[int, int]] | None = None) -> None:
        self._xs, self._ws = xs, ws
        self._source, self._bounds = source, bounds
        self._pool: ThreadPoolExecutor | None = None

    def _block_statistics(self, i: int, task: Any, params: dict[str, Any]) -> np.ndarray:
        if self._source is not None:
            start, stop = self._bounds[i]
            return task(io.read_rows(self._source, start, stop), None, params)
        return task(self._xs[i], None if self._ws is None else self._ws[i], params)

    def run(self, task: Any, params: dict[str, Any]) -> np.ndarray:
        """``task`` over the blocks, on as many threads as the worker has: one row per block."""
        from distributed import get_worker

        libc = _tune_worker_malloc()
        n_blocks = len(self._bounds) if self._source is not None else len(self._xs)
        threads = min(get_worker().state.nthreads, n_blocks)
        try:
            if threads <= 1:
                return np.stack([self._block_statistics(i, task, params)
                                 for i in range(n_blocks)])
            if self._pool is None:
                self._pool = ThreadPoolExecutor(threads, thread_name_prefix="softkmeans-holder")
            return np.stack(list(self._pool.map(
                lambda i: self._block_statistics(i, task, params), range(n_blocks))))
        finally:
            if self._source is not None and libc is not None:
                libc.malloc_trim(0)  # the read buffers go back to the system between passes

    def __del__(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)


def balanced_assignment(rows: list[int], holders: list[tuple[str, ...]],
                        threads: dict[str, int]) -> dict[str, list[int]]:
    """Which worker runs which block in every pass: ``{worker: [block index, ...]}``.

    Each block goes to the least busy worker that holds it (a worker's load
    is its rows per thread); then, while it shortens the pass, a block moves
    from the busiest worker to the least busy one.  A moved block is copied
    there once, when the holders are made.  Persisting 16 blocks on 2 workers
    left them 10 and 6 in one measured run: a pass then takes as long as 10
    blocks on one worker instead of 8.
    """
    load = dict.fromkeys(threads, 0)
    plan: dict[str, list[int]] = {w: [] for w in threads}

    def busy(worker: str, extra: int = 0) -> float:
        return (load[worker] + extra) / threads[worker]

    for i, (size, where) in enumerate(zip(rows, holders, strict=True)):
        candidates = [w for w in where if w in threads] or list(threads)
        worker = min(candidates, key=lambda w: busy(w, size))
        plan[worker].append(i)
        load[worker] += size
    for _ in range(len(rows) * len(threads)):
        high = max(threads, key=busy)
        low = min(threads, key=busy)
        if high == low or not plan[high]:
            break
        block = min(plan[high], key=lambda i: max(busy(high, -rows[i]), busy(low, rows[i])))
        if max(busy(high, -rows[block]), busy(low, rows[block])) >= busy(high):
            break
        plan[high].remove(block)
        plan[low].append(block)
        load[high] -= rows[block]
        load[low] += rows[block]
    return {w: sorted(index) for w, index in plan.items() if index}


class _Holders(NamedTuple):
    """The holders (actors) of one dataset on one client."""

    client: Any
    keys: tuple
    actors: list[Any]
    jobs: list[list[int]]  # block indices held by each actor, in actor order
    futures: list[Any]  # the actors' futures: the actors live as long as these
    release: weakref.finalize  # releases the futures once, when its owner goes or when called


def _release(futures: list[Any], actors: list[Any]) -> None:
    """Release the holders' futures now, so the actors (and their references to blocks)
    go at once, not whenever a garbage collection breaks the reference cycles of
    ``distributed``'s actor proxies (each proxy holds a future of its own)."""
    for future in [*futures, *(getattr(actor, "_future", None) for actor in actors)]:
        if future is not None:
            future.release()


def _start_holders(client: Any, plan: dict[str, list[int]],
                   arguments: Any) -> tuple[list[Any], list[Any]] | None:
    """One :class:`_BlockHolder` per worker of ``plan`` (``{worker: block indices}``),
    made with the keyword arguments ``arguments(indices)``: ``(futures, actors)``, or
    None, with nothing left behind, when a worker was lost meanwhile (the pass then
    runs as tasks)."""
    futures: list[Any] = []
    actors: list[Any] = []
    try:
        for worker, index in plan.items():
            futures.append(client.submit(_BlockHolder, **arguments(index), workers=[worker],
                                         actor=True, pure=False))
        for future in futures:
            actors.append(future.result())
    except Exception:
        _release(futures, actors)
        return None
    return futures, actors


#: Holders by the first block's future of the persisted array they serve.  The
#: entry (and with it the actors and their references to the blocks) goes away
#: when that array's futures do: the holders never keep released data alive.
_holders: weakref.WeakKeyDictionary[Any, _Holders] = weakref.WeakKeyDictionary()


def _tree_sum(parts: list[np.ndarray], split_every: int) -> np.ndarray:
    """The reduction tree of a pass, ``split_every`` inputs per node, computed here.

    The same tree as the graph's (see ``Runner._run``), so the same blocks
    give bit-identical sums whichever way the pass ran.
    """
    while len(parts) > 1:
        parts = [_sum_vectors(*parts[i : i + split_every]) for i in range(0, len(parts), split_every)]
    return parts[0]


def _block_futures(X: da.Array, sample_weight: da.Array | None) -> tuple[Any, list, list | None] | None:
    """``(client, X's block futures, weight block futures)`` in block order, or None.

    None unless ``X`` was persisted on a distributed client with its rows as
    the only chunked axis (and the weights likewise, block for block).
    """
    client = active_client()
    if client is None:
        return None
    from dask.core import flatten
    from distributed import futures_of

    def ordered(array: da.Array) -> list | None:
        if any(n != 1 for n in array.numblocks[1:]):
            return None
        futures = {f.key: f for f in futures_of(array)}
        keys = list(flatten(array.__dask_keys__()))
        if not all(k in futures for k in keys):
            return None
        return [futures[k] for k in keys]

    x_futures = ordered(X)
    w_futures = None if sample_weight is None else ordered(sample_weight)
    if x_futures is None or (sample_weight is not None and
                             (w_futures is None or len(w_futures) != len(x_futures))):
        return None
    return client, x_futures, w_futures


#: In-memory passes cut the rows into blocks of this many rows (a fixed size,
#: so the sums do not depend on the machine's core count) and run them on up to
#: ``LOCAL_THREADS`` threads, each with a single-threaded BLAS.
LOCAL_BLOCK_ROWS = 16384
LOCAL_THREADS = max(1, min(os.cpu_count() or 1, 8))
_POOL_PREFIX = "softkmeans-local"

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_blas: Any = None
_blas_users = 0  # scopes of single_threaded_blas open in this process
_blas_limit: Any = None


def _after_fork() -> None:
    """A forked child inherits the pool object but not its threads: start afresh."""
    global _lock, _pool, _blas_users, _blas_limit, _PROCESS_TOKEN
    _lock, _pool, _blas_users, _blas_limit = threading.Lock(), None, 0, None
    _PROCESS_TOKEN = uuid.uuid4().hex


os.register_at_fork(after_in_child=_after_fork)


def _thread_pool() -> ThreadPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(LOCAL_THREADS, thread_name_prefix=_POOL_PREFIX)
        return _pool


@contextmanager
def single_threaded_blas():
    """BLAS on one thread while passes run: a pass parallelises over row blocks instead.

    The products of a pass are skinny (K or D small); multi-threaded BLAS on
    them is slower than one thread, and on a busy machine many times slower
    (its threads spin-wait).  Dask's worker processes already run BLAS on one
    thread; this covers the threads of this process (in-memory passes, the
    threaded scheduler, in-process workers).  The limit is process-wide, so
    the scopes are counted: the first to open sets it, the last to close
    restores it, whichever threads (concurrent fits) they run in.
    """
    global _blas, _blas_users, _blas_limit
    with _lock:
        if _blas is None:
            # The compiled kernel's products run on SciPy's BLAS: load it before
            # the controller lists the libraries it limits.
            import scipy.linalg.cython_blas  # noqa: F401
            from threadpoolctl import ThreadpoolController

            _blas = ThreadpoolController()
        if _blas_users == 0:
            _blas_limit = _blas.limit(limits=1, user_api="blas")
        _blas_users += 1
    try:
        yield
    finally:
        with _lock:
            _blas_users -= 1
            if _blas_users == 0 and _blas_limit is not None:
                _blas_limit.restore_original_limits()
                _blas_limit = None


class Runner:
    """Runs passes of a block kernel over one dataset and returns the summed statistics.

    ``X`` is a validated float NumPy or Dask array (see :func:`._data.as_data`).
    NumPy data run in this process (fixed-size row blocks on a thread pool,
    see :data:`LOCAL_BLOCK_ROWS`); Dask data run on the active scheduler: the ``distributed``
    client when there is one, the threaded scheduler otherwise.

    ``persist`` (True, False or "auto", see :func:`should_persist`) holds
    Dask data in memory once; otherwise every pass maps over blocks that read
    their rows from the source (a Zarr chunk is read once per pass) and are
    dropped when their statistics are computed, so memory stays bounded by
    the blocks in flight whatever the size of the data.
    """

    def __init__(
        self,
        X: np.ndarray | da.Array,
        sample_weight: np.ndarray | da.Array | None = None,
        *,
        split_every: int = 8,
        persist: bool | str = False,
    ) -> None:
        if split_every < 2:
            raise InputError(f"split_every must be an int >= 2; got {split_every!r}.")
        self.n_samples, self.n_features = X.shape
        self.dtype = X.dtype
        self.split_every = split_every
        self.n_passes = 0
        self._local = not isinstance(X, da.Array)
        #: True when the data were persisted in (cluster) memory for the passes;
        #: False when NumPy data run in this process or each pass streams the
        #: Dask blocks from their source (one read of each block per pass).
        persist = self.persisted = should_persist(X, persist)
        if self._local:
            self._x, self._w = X, sample_weight
            return
        if persist:
            X = X.persist()
            sample_weight = None if sample_weight is None else sample_weight.persist()
        self._x, self._w = X, sample_weight
        #: With a distributed client and data persisted on it (here or by the
        #: caller), a pass submits one task per worker thread over the blocks
        #: that worker holds (see _run_futures).
        self._futures = _block_futures(X, sample_weight)
        #: Streamed straight from a Zarr array (see _run_source), without weights.
        self._source = (None if persist or sample_weight is not None
                        else getattr(X, "zarr_source", None))
        self._source_passes = 0
        self._source_holders: _Holders | None = None
        if persist:
            self._blocks = list(X.to_delayed(optimize_graph=False).ravel())
            self._weight_blocks = (
                [None] * len(self._blocks)
                if sample_weight is None
                else list(sample_weight.to_delayed(optimize_graph=False).ravel())
            )

    @property
    def n_blocks(self) -> int:
        """Number of row blocks a pass maps over."""
        return 1 if self._local else self._x.numblocks[0]

    def _streamed_parts(self, task: Any, shared: Any) -> list[Any]:
        """One task per block that reads the block and maps ``task`` over it, fused.

        Expressed as a blockwise operation so that Dask's array optimisation
        fuses the read (e.g. the Zarr getter) into the task: a block then lives
        only inside its task and is dropped with it, instead of waiting in
        worker memory as a separate key (which memory-limited workers would
        spill, or be restarted for).
        """
        x, w = self._x, self._w
        # No index is contracted (Dask fuses only then): X's features and the
        # columns of a 2-D weight array each become an output axis of one chunk.
        if w is None:
            out, weight_args = "ij", (None, None)
        else:
            out, weight_args = ("ij", (w, "i")) if w.ndim == 1 else ("ijk", (w, "ik"))
        # Each output block is one packed statistics vector: the array's chunk
        # sizes are never used, only its per-block tasks.
        stats = da.blockwise(
            _streamed_task, out, x, "ij", *weight_args, shared, None, task, None,
            adjust_chunks=dict.fromkeys(out, 1), concatenate=True, dtype=np.float64,
            meta=np.empty((0,) * len(out), np.float64),
        )
        return list(stats.to_delayed(optimize_graph=True).ravel())

    def _run_local(self, task: Any, params: dict[str, Any]) -> np.ndarray:
        """The pass over in-memory rows: fixed-size blocks on a thread pool (no GIL in the kernel)."""
        x, w = self._x, self._w
        with single_threaded_blas():
            if x.shape[0] <= LOCAL_BLOCK_ROWS:
                return task(x, w, params)
            starts = range(0, x.shape[0], LOCAL_BLOCK_ROWS)
            parts = _thread_pool().map(
                lambda i: task(x[i : i + LOCAL_BLOCK_ROWS],
                               None if w is None else w[i : i + LOCAL_BLOCK_ROWS], params),
                starts)
            # Summed in block order: the same result whatever the number of threads.
            return _sum_vectors(*parts)

    def _block_holders(self) -> _Holders | None:
        """This array's block holders (actors), made on the first pass; None if they cannot be."""
        client, x_futures, w_futures = self._futures
        keys = tuple(f.key for f in x_futures + (w_futures or []))
        with _lock:
            holders = _holders.get(x_futures[0])
        if holders is not None and holders.client is client and holders.keys == keys:
            return holders
        try:
            who_has = client.who_has(x_futures)
        except Exception:  # the scheduler is unreachable: the tasks will say why
            return None
        plan = balanced_assignment(list(self._x.chunks[0]),
                                   [tuple(who_has.get(f.key, ())) for f in x_futures],
                                   client.nthreads())
        started = _start_holders(client, plan, lambda index: {
            "xs": [x_futures[i] for i in index],
            "ws": None if w_futures is None else [w_futures[i] for i in index]})
        if started is None:
            return None
        futures, actors = started
        holders = _Holders(client, keys, actors, list(plan.values()), futures,
                           weakref.finalize(x_futures[0], _release, futures, actors))
        with _lock:
            _holders[x_futures[0]] = holders
        return holders

    def _call_holders(self, holders: _Holders, task: Any,
                      params: dict[str, Any]) -> np.ndarray | None:
        """The pass as one call to each holder; None if a call failed (a lost worker)."""
        try:
            with single_threaded_blas():
                calls = [actor.run(task, params) for actor in holders.actors]
                stacked = [call.result() for call in calls]
        except Exception:
            # The caller runs this pass as tasks instead, which rerun what a lost
            # worker held or read (and raise again an error of the task itself),
            # and drops these holders: the next pass makes new ones.
            return None
        return self._sum_in_block_order(holders.jobs, stacked)

    def _run_holders(self, task: Any, params: dict[str, Any]) -> np.ndarray | None:
        """A pass over persisted blocks through their holders; None if it must run as tasks."""
        holders = self._block_holders()
        if holders is None:
            return None
        result = self._call_holders(holders, task, params)
        if result is None:
            with _lock:
                if _holders.get(self._futures[1][0]) is holders:
                    del _holders[self._futures[1][0]]
            holders.release()
        return result

    def _run_source_holders(self, client: Any, task: Any,
                            params: dict[str, Any]) -> np.ndarray | None:
        """A streamed pass through one reader (holder) per worker; None if it must run as tasks.

        The first streamed pass runs as tasks (one pass, as ``soft_statistics``
        makes, would not repay making the actors); from the second on, each
        worker's holder reads a contiguous run of blocks, as many runs as the
        worker has threads, from the Zarr array.
        """
        self._source_passes += 1
        if self._source_passes == 1:
            return None
        holders = self._source_holders
        if holders is None or holders.client is not client:
            bounds = self._block_bounds()
            threads = client.nthreads()
            if not threads:
                return None
            # As many contiguous runs of blocks as there are threads, a worker's runs
            # in a row: each holder reads neighbouring chunks.
            runs = np.array_split(np.arange(len(bounds)), sum(threads.values()))
            plan: dict[str, list[int]] = {}
            for worker, run in zip(np.repeat(list(threads), list(threads.values())), runs,
                                   strict=True):
                plan.setdefault(str(worker), []).extend(run.tolist())
            plan = {w: index for w, index in plan.items() if index}
            started = _start_holders(client, plan, lambda index: {
                "source": self._source, "bounds": [bounds[i] for i in index]})
            if started is None:
                return None
            futures, actors = started
            holders = self._source_holders = _Holders(
                client, (), actors, list(plan.values()), futures,
                weakref.finalize(self, _release, futures, actors))
        result = self._call_holders(holders, task, params)
        if result is None:
            self._source_holders = None
            holders.release()
        return result

    def _run_futures(self, task: Any, params: dict[str, Any]) -> np.ndarray:
        """The pass as one task per worker thread, each over blocks its worker holds.

        A graph of one task per block plus a reduction tree costs the
        scheduler more than the kernel on small data; here a pass is a
        handful of tasks and one gather.  The blocks stay persisted futures
        with their lineage: if a worker is lost, the scheduler recomputes its
        blocks and runs the task elsewhere (``allow_other_workers``), so a
        failure costs time, not the fit.
        """
        client, x_futures, w_futures = self._futures
        holders = client.who_has(x_futures)
        nthreads = client.nthreads()
        groups: dict[Any, list[int]] = {}
        for i, future in enumerate(x_futures):
            where = holders.get(future.key) or (None,)
            groups.setdefault(where[0], []).append(i)
        jobs = []
        for worker, index in groups.items():
            share = max(1, min(nthreads.get(worker, 1), len(index)))
            jobs += [(worker, index[j::share]) for j in range(share)]
        submitted = [
            client.submit(
                _blocks_task, task, params, [x_futures[i] for i in index],
                None if w_futures is None else [w_futures[i] for i in index],
                pure=False,
                **({} if worker is None else {"workers": [worker], "allow_other_workers": True}),
            )
            for worker, index in jobs
        ]
        return self._sum_rows(client, [index for _, index in jobs], submitted)

    def _block_bounds(self) -> list[tuple[int, int]]:
        """``(start, stop)`` rows of each block."""
        stops = np.cumsum(self._x.chunks[0])
        return list(zip((0, *stops[:-1].tolist()), stops.tolist(), strict=True))

    def _run_source(self, client: Any, task: Any, params: dict[str, Any]) -> np.ndarray:
        """The streamed pass as one task per worker thread, each reading its row blocks.

        Each task reads its blocks from the Zarr array one at a time and
        keeps only their statistics, so memory stays bounded as in the graph
        pass, and each chunk is still read once per pass; but the scheduler
        handles a few tasks, not a graph of one task per block plus a tree.
        A task lost with its worker is run again elsewhere: it only reads.
        """
        jobs, bounds = self._source_jobs(client)
        # One map, not one submit per task: the client batches messages sent within
        # 10 ms of each other, which would hold every task after the first back.
        submitted = client.map(_source_blocks_task, bounds, task=task, params=params,
                               source=self._source, pure=False)
        return self._sum_rows(client, jobs, submitted)

    def _source_jobs(self, client: Any) -> tuple[list[list[int]], list[list[tuple[int, int]]]]:
        """One job per worker thread (at most one per block): the indices and the row
        ranges of a contiguous run of blocks, so that each task reads neighbouring chunks."""
        bounds = self._block_bounds()
        share = max(1, min(sum(client.nthreads().values()), len(bounds)))
        jobs = [index.tolist() for index in np.array_split(np.arange(len(bounds)), share)]
        return jobs, [[bounds[i] for i in index] for index in jobs]

    def _sum_rows(self, client: Any, jobs: list[list[int]], submitted: list[Any]) -> np.ndarray:
        """Gather the tasks' rows of block statistics and sum them in block order."""
        with single_threaded_blas():
            stacked = client.gather(submitted)
        return self._sum_in_block_order(jobs, stacked)

    def _sum_in_block_order(self, jobs: list[list[int]], stacked: list[np.ndarray]) -> np.ndarray:
        """Sum rows of block statistics (``stacked[j]`` for blocks ``jobs[j]``) in block order."""
        parts: list[Any] = [None] * sum(len(index) for index in jobs)
        for index, rows in zip(jobs, stacked, strict=True):
            for i, row in zip(index, rows, strict=True):
                parts[i] = row
        # Blocks are summed in block order, whichever worker ran them: the same
        # sums as the graph's tree.
        return _tree_sum(parts, self.split_every)

    def _run(self, task: Any, params: dict[str, Any]) -> np.ndarray:
        self.n_passes += 1
        if self._local:
            return self._run_local(task, params)
        if self._futures is not None:
            result = self._run_holders(task, params)
            return self._run_futures(task, params) if result is None else result
        if self._source is not None:
            client = active_client()
            if client is not None:
                result = self._run_source_holders(client, task, params)
                return self._run_source(client, task, params) if result is None else result
        # One key holds the parameters: they are not copied into every task.
        shared = dask.delayed(params, traverse=False)
        if self.persisted:
            call = dask.delayed(task, pure=True)
            parts = [call(x, w, shared)
                     for x, w in zip(self._blocks, self._weight_blocks, strict=True)]
        else:
            parts = self._streamed_parts(task, shared)
        combine = dask.delayed(_sum_vectors, pure=True)
        while len(parts) > 1:
            parts = [
                combine(*parts[i : i + self.split_every])
                for i in range(0, len(parts), self.split_every)
            ]
        with single_threaded_blas():
            (result,) = dask.compute(parts[0])
        return result

    def map_rows(self, func: Any, *, dtype: Any, **kwargs: Any) -> np.ndarray | da.Array:
        """``func(block, **kwargs)``, one value per row, over the data the passes run over
        (:func:`map_rows` on the persisted copy when :attr:`persisted`).

        Data streamed from a Zarr array on a distributed client are read as
        the passes read them, one task per worker thread over a contiguous run
        of blocks, one block at a time, and the result (NumPy) is gathered
        here; in a graph, the reads are tasks of their own that run ahead of
        the per-row tasks and wait in worker memory.
        """
        client = None if self._local or self._source is None else active_client()
        if client is None or not client.nthreads():
            return map_rows(self._x, func, n_outputs=None, dtype=dtype, **kwargs)
        _, bounds = self._source_jobs(client)
        submitted = client.map(_source_rows_task, bounds, per_row=func, kwargs=kwargs,
                               source=self._source, pure=False)
        return np.concatenate(client.gather(submitted)).astype(dtype, copy=False)

    def first_row(self) -> np.ndarray:
        """The first row as float64 with non-finite values replaced by 0 (an origin for sums)."""
        row = self._x[:1] if self._local else self._x[:1].compute()
        row = np.asarray(row, dtype=np.float64)
        return np.nan_to_num(row[0], nan=0.0, posinf=0.0, neginf=0.0)

    def sample(self, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray | None]:
        """``size`` rows drawn uniformly without replacement, in memory, with their weights.

        The rows are chosen by global index, so the sample is the same whatever
        the chunking; Dask data are read once (one pass) to gather them.
        """
        index = np.sort(np.random.default_rng(seed).choice(self.n_samples, size, replace=False))
        if self._local:
            x = self._x[index]
            return x, None if self._w is None else np.asarray(self._w[index], np.float64)
        parts = [self._x[index]] + ([] if self._w is None else [self._w[index]])
        self.n_passes += 1
        out = dask.compute(*parts)
        return np.asarray(out[0]), None if self._w is None else np.asarray(out[1], np.float64)

    def reduce(self, task: Any, params: dict[str, Any]) -> np.ndarray:
        """One pass of any block task ``task(x, w, params) -> float64 vector``, summed over blocks.

        ``w`` is the block of the per-row array given as ``sample_weight``
        (it may be 2-D: the RBF network passes ``[weight, targets]`` rows).
        """
        return self._run(task, params)

    def scan(self, origin: np.ndarray, *, gram: bool) -> np.ndarray:
        """Packed ``[weight, nonfinite, sum, gram]`` relative to ``origin``."""
        return self._run(_scan_task, {"origin": origin, "gram": gram})

    def statistics(
        self,
        centers: np.ndarray,
        temperature: float,
        *,
        offset: np.ndarray | None = None,
        log_priors: np.ndarray | None = None,
        moments: MomentMode = "none",
        directions: np.ndarray | None = None,
        removal: bool = False,
        normalization: Normalization = "softmax",
    ) -> np.ndarray:
        """Packed statistics of one pass (see :func:`._kernels.block_statistics`)."""
        params = {
            "normalization": normalization,
            "centers": np.asarray(centers, np.float64),
            "temperature": float(temperature),
            "offset": offset,
            "log_priors": log_priors,
            "moments": moments,
            "directions": directions,
            "removal": removal,
        }
        return self._run(_statistics_task, params)


def map_rows(
    X: np.ndarray | da.Array,
    func: Any,
    *,
    n_outputs: int | None,
    dtype: Any,
    **kwargs: Any,
) -> np.ndarray | da.Array:
    """Apply a per-row function block by block: NumPy in, NumPy out; Dask in, Dask out.

    ``func(block, **kwargs)`` returns ``(n,)`` when ``n_outputs`` is None and
    ``(n, n_outputs)`` otherwise.
    """
    if isinstance(X, da.Array):
        if n_outputs is None:
            return X.map_blocks(func, dtype=dtype, drop_axis=1, **kwargs)
        return X.map_blocks(func, dtype=dtype, chunks=(X.chunks[0], (n_outputs,)), **kwargs)
    centers = kwargs.get("centers")
    rows = _kernels.sub_block_rows(0 if centers is None else len(centers), X.shape[1])
    starts = range(0, X.shape[0], rows)
    # In one of the pool's own threads (a task of an in-memory pass) waiting for the pool
    # could wait forever: run there.
    in_pool = threading.current_thread().name.startswith(_POOL_PREFIX)
    if len(starts) <= 1 or LOCAL_THREADS == 1 or in_pool:
        parts = [func(X[i : i + rows], **kwargs) for i in starts]
    else:  # as the in-memory passes: sub-blocks on the local threads, BLAS on one each
        with single_threaded_blas():
            parts = list(_thread_pool().map(lambda i: func(X[i : i + rows], **kwargs), starts))
    return np.concatenate(parts).astype(dtype, copy=False)


class SoftStatistics(NamedTuple):
    """Statistics of one soft pass over the data, in the data's coordinates.

    Attributes
    ----------
    counts : ndarray of shape (K,)
        Soft counts ``N_k = sum_i w_i p_ik``.
    sums : ndarray of shape (K, D)
        Soft sums ``S_k = sum_i w_i p_ik x_i``.
    free_energy : float
        ``F_T = -T sum_i w_i log Z_i`` (the inertia at ``T = 0``).
    entropy : float
        ``H = -sum_ik w_i p_ik log p_ik``.
    distortion : float
        ``D = sum_ik w_i p_ik d_ik``.
    inertia : float
        Hard k-means objective ``J = sum_i w_i min_k d_ik``.
    hard_counts : ndarray of shape (K,)
        Weight of the points whose nearest center is ``k``.
    gradient : ndarray of shape (K, D)
        ``dF/dc_k = 2 (N_k c_k - S_k)``.
    n_samples : float
        Total weight (the number of samples when unweighted).
    """

    counts: np.ndarray
    sums: np.ndarray
    free_energy: float
    entropy: float
    distortion: float
    inertia: float
    hard_counts: np.ndarray
    gradient: np.ndarray
    n_samples: float


def _check_centers(centers: ArrayLike, n_features: int) -> np.ndarray:
    centers = np.asarray(centers, dtype=np.float64)
    if centers.ndim != 2 or centers.shape[1] != n_features or centers.shape[0] == 0:
        raise InputError(
            f"centers must have shape (n_clusters, {n_features}) to match X's "
            f"{n_features} features; got shape {centers.shape}."
        )
    if not np.all(np.isfinite(centers)):
        raise InputError("centers contain NaN or infinity; every center must be finite.")
    return centers


def check_temperature(temperature: float) -> float:
    """A temperature is a finite number ``>= 0``."""
    try:
        value = float(temperature)
    except (TypeError, ValueError):
        value = float("nan")
    if not np.isfinite(value) or value < 0:
        raise InputError(f"temperature must be a finite number >= 0; got {temperature!r}.")
    return value


def check_normalization(normalization: str) -> Normalization:
    """A normalisation is one of :data:`._kernels.NORMALIZATIONS`."""
    if normalization not in NORMALIZATIONS:
        raise InputError(
            f"normalization must be one of {', '.join(map(repr, NORMALIZATIONS))}; "
            f"got {normalization!r}.")
    return normalization


def soft_statistics(
    X: ArrayLike,
    centers: ArrayLike,
    temperature: float,
    *,
    log_priors: ArrayLike | None = None,
    sample_weight: ArrayLike | None = None,
    split_every: int = 8,
    normalization: Normalization = "softmax",
) -> SoftStatistics:
    """One soft pass: the smooth objective, its gradient and the sufficient statistics.

    This is the pass the annealed fit repeats, made public so that the
    objective can be used inside a larger model.  For a Dask or Zarr ``X``
    the kernel is mapped over the row blocks and the statistics are
    tree-reduced in float64 on the active scheduler; only ``O(K D)`` numbers
    reach the caller.

    Parameters
    ----------
    X : array-like, Dask array, zarr.Array or path of shape (n_samples, n_features)
    centers : array-like of shape (n_clusters, n_features)
    temperature : float
        ``T >= 0``; ``T = 0`` gives the hard k-means statistics.
    log_priors : array-like of shape (n_clusters,), optional
        ``log pi_k``; equal priors by default.
    sample_weight : array-like of shape (n_samples,), optional
    split_every : int, default=8
        Inputs per node of the tree reduction.
    normalization : {"softmax", "entmax15", "sparsemax"}, default="softmax"
        "softmax" is the Gaussian RBF layer; the sparse ones give exact zeros
        at low temperatures.  For those, ``free_energy`` is
        ``sum_i [sum_k p_ik (d_ik - T log pi_k) - T Omega(p_i)]`` and ``entropy``
        the sum of the regulariser ``Omega`` (see :func:`._kernels.normalize`);
        ``gradient`` is still its exact derivative ``2 (N_k c_k - S_k)``.

    Returns
    -------
    SoftStatistics

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0.0, 0.0], [0.0, 1.0], [10.0, 0.0]])
    >>> stats = soft_statistics(X, [[0.0, 0.5], [10.0, 0.0]], temperature=0.0)
    >>> stats.counts.tolist(), round(stats.inertia, 3)
    ([2.0, 1.0], 0.5)
    """
    data = as_data(X)
    weights = as_weights(sample_weight, data)
    centers = _check_centers(centers, data.shape[1])
    temperature = check_temperature(temperature)
    normalization = check_normalization(normalization)
    if log_priors is not None:
        log_priors = np.asarray(log_priors, np.float64)
        if log_priors.shape != (centers.shape[0],) or np.any(np.isnan(log_priors)):
            raise InputError(
                f"log_priors must have shape ({centers.shape[0]},) without NaN; "
                f"got shape {log_priors.shape}."
            )
    runner = Runner(data, weights, split_every=split_every)
    # Centering on the centers' mean keeps the products away from cancellation.
    offset = centers.mean(axis=0)
    vector = runner.statistics(centers, temperature, offset=offset, log_priors=log_priors,
                               normalization=normalization)
    stats = StatsLayout(*centers.shape).unpack(vector)
    if stats.nonfinite > 0:
        raise InputError(
            f"X contains NaN or infinity in {int(stats.nonfinite)} rows. Drop or impute "
            "them first, e.g. X[np.isfinite(X).all(axis=1)]."
        )
    sums = stats.sums + stats.counts[:, None] * offset
    return SoftStatistics(
        counts=stats.counts.copy(),
        sums=sums,
        free_energy=float(stats.free_energy),
        entropy=float(stats.entropy),
        distortion=float(stats.distortion),
        inertia=float(stats.inertia),
        hard_counts=stats.hard_counts.copy(),
        gradient=2.0 * (stats.counts[:, None] * centers - sums),
        n_samples=float(stats.weight),
    )
