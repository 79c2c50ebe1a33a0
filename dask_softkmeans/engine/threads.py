"""Threads of this process: the pool of in-memory passes, and BLAS on one thread."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

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
    global _lock, _pool, _blas_users, _blas_limit
    _lock, _pool, _blas_users, _blas_limit = threading.Lock(), None, 0, None


os.register_at_fork(after_in_child=_after_fork)


def thread_pool() -> ThreadPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(LOCAL_THREADS, thread_name_prefix=_POOL_PREFIX)
        return _pool


def in_pool_thread() -> bool:
    """Whether this is one of the pool's own threads (waiting for the pool there could deadlock)."""
    return threading.current_thread().name.startswith(_POOL_PREFIX)


class _SingleThreadedBlas:
    """The context of :func:`single_threaded_blas` (a class: each pass opens one)."""

    def __enter__(self) -> None:
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

    def __exit__(self, *exc: object) -> None:
        global _blas_users, _blas_limit
        with _lock:
            _blas_users -= 1
            if _blas_users == 0 and _blas_limit is not None:
                _blas_limit.restore_original_limits()
                _blas_limit = None


_SINGLE_THREADED_BLAS = _SingleThreadedBlas()


def single_threaded_blas() -> _SingleThreadedBlas:
    """BLAS on one thread while passes run: a pass parallelises over row blocks instead.

    The products of a pass are skinny (K or D small); multi-threaded BLAS on
    them is slower than one thread, and on a busy machine many times slower
    (its threads spin-wait).  Dask's worker processes already run BLAS on one
    thread; this covers the threads of this process (in-memory passes, the
    threaded scheduler, in-process workers).  The limit is process-wide, so
    the scopes are counted: the first to open sets it, the last to close
    restores it, whichever threads (concurrent fits) they run in.
    """
    return _SINGLE_THREADED_BLAS
