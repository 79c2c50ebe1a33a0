"""Worker memory: how much data may be held (``persist="auto"``), and glibc's heap on workers."""

from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from typing import Any, NamedTuple

import dask.array as da
import numpy as np

from ..errors import InputError, WorkerMemoryError
from ..kernels.array_api import numpy_dtype
from .client import active_client

#: With ``persist="auto"`` the data are held in memory when they fit in this
#: share of the workers' memory, less what they use already (see
#: :func:`memory_for_data`): the rest is room for the passes' own work, for
#: blocks shared out unevenly and for other data, and keeps a worker below
#: distributed's spill threshold (70%).
PERSIST_MEMORY_SHARE = 0.5


#: Tells this process from others where host name and pid do not (containers that share
#: a host name each have their own pids); renewed in a forked child.
_PROCESS_TOKEN = uuid.uuid4().hex


def _new_token() -> None:
    global _PROCESS_TOKEN
    _PROCESS_TOKEN = uuid.uuid4().hex


os.register_at_fork(after_in_child=_new_token)


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
    the interpreter, the loaded libraries (numba's compiler among them),
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
    # By the dtype's name: chunks of another library (CuPy, array-api-strict) may have their own.
    return X.size * numpy_dtype(X.dtype).itemsize <= memory_for_data()


#: Room for a pass's own temporaries per worker thread, besides its blocks: the
#: kernel's chunk buffers and the reference path's sub-blocks (see
#: :data:`.kernels.common.TEMPORARY_ELEMENTS`), the statistics vectors.
PASS_TEMPORARY_BYTES = 48 * 2**20


def pass_memory(block_bytes: int, persisted: bool) -> int:
    """Bytes one worker thread needs for a pass over blocks of ``block_bytes``: a streamed
    block is read (its stored bytes) and decoded (the array) before the kernel runs; a
    persisted block is held already."""
    return (0 if persisted else 2 * block_bytes) + PASS_TEMPORARY_BYTES


def check_worker_memory(client: Any, block_bytes: int, *, persisted: bool = False) -> None:
    """Refuse, before the first pass, a worker whose memory limit cannot hold a pass.

    A worker pauses when its process uses more than the ``pause`` share of its
    limit (``distributed.worker.memory.pause``, 80% by default) and waits, with
    no error, until memory goes down: a worker that reaches it with nothing
    held but the interpreter, the libraries and the kernel would wait forever.
    Each worker's process memory now (after :func:`.load_kernel`), plus what
    every thread of that process needs for a pass (:func:`pass_memory`), must
    stay below its pause threshold.  Workers without a limit are not checked.

    Raises
    ------
    WorkerMemoryError
        Naming the worker, its limit, what it uses and what the pass needs, and the fixes.
    """
    import dask.config
    from dask.utils import format_bytes

    fraction = dask.config.get("distributed.worker.memory.pause", 0.8) or dask.config.get(
        "distributed.worker.memory.terminate", 0.95) or 1.0
    rows = client.run(_memory_in_use, on_error="ignore")
    threads_per_process: dict[str, int] = {}
    for row in rows.values():
        threads_per_process[row.process] = threads_per_process.get(row.process, 0) + row.threads
    per_thread = pass_memory(block_bytes, persisted)
    for address, row in sorted(rows.items()):
        if not row.limit or not row.used:
            continue
        need = row.used + threads_per_process[row.process] * per_thread
        if need > fraction * row.limit:
            raise WorkerMemoryError(
                f"Worker {address} has a memory limit of {format_bytes(row.limit)} and pauses at "
                f"{fraction:.0%} of it ({format_bytes(int(fraction * row.limit))}); its process "
                f"already uses {format_bytes(row.used)} (Python, Dask, the compiled kernel) and a "
                f"pass needs {format_bytes(per_thread)} more per thread (blocks of "
                f"{format_bytes(block_bytes)}, read and decoded, and the kernel's temporaries): "
                f"{format_bytes(need)} in all. The worker would pause for good. Give the workers more "
                f"memory (at least {-(-int(1.25 * need / fraction) // 2**20)} MiB each: "
                "memory_limit= of LocalCluster or `dask worker --memory-limit`, --memory-limit "
                "of `dask-softkmeans fit`), or fewer threads per worker, or smaller row blocks "
                "(fewer rows per Zarr chunk, or X.rechunk({0: ROWS}) for a Dask array).")


#: At most this much freed memory stays in a worker's heap for the next block
#: (and blocks up to this size come from the heap), see :func:`tune_worker_malloc`.
WORKER_HEAP_KEEP = 64 * 2**20

_worker_libc: Any = None  # glibc, once tune_worker_malloc has tuned this worker process
_malloc_tuned = False


def tune_worker_malloc() -> Any:
    """Let a Dask worker process reuse freed block buffers instead of mapping fresh pages.

    Dask starts workers with ``MALLOC_TRIM_THRESHOLD_`` set, which also pins
    glibc's mmap threshold at 128 KiB: every block buffer above it (a Zarr
    chunk and its decoded copy, megabytes each) is then mapped, faulted in
    page by page and unmapped again, on every pass.  Raising
    both thresholds to :data:`WORKER_HEAP_KEEP` (at most a sixteenth of the
    worker's memory limit: glibc may keep that much free in each of its arenas,
    and at an eighth a 512 MiB worker spilled to disk now and then while it
    gathered a sample) keeps such buffers in the heap, where the next
    block reuses them; a task that streamed its blocks hands the heap back
    with ``malloc_trim`` when it ends (:func:`block_reads`), so a
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


@contextmanager
def block_reads():
    """Around a task that reads blocks on a worker: freed block buffers may be reused
    (:func:`_tune_worker_malloc`) while it runs, and go back to the system after it."""
    libc = tune_worker_malloc()
    try:
        yield
    finally:
        if libc is not None:
            libc.malloc_trim(0)
