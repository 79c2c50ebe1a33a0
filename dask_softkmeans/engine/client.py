"""The distributed client a pass runs on, and the compiled kernel on its workers."""

from __future__ import annotations

from typing import Any

#: Values of Dask's ``scheduler`` setting that name a scheduler of this process.
LOCAL_SCHEDULERS = frozenset({"sync", "synchronous", "single-threaded", "threads", "threading",
                              "processes", "multiprocessing"})


def active_client() -> Any:
    """The default ``distributed.Client``, or None without one or when Dask's ``scheduler``
    setting picks a scheduler of this process (``dask.config.set(scheduler="threads")``):
    passes then run where ``compute`` would."""
    import dask.config

    scheduler = dask.config.get("scheduler", None)
    if isinstance(scheduler, str) and scheduler in LOCAL_SCHEDULERS:
        return None
    try:
        from distributed import default_client

        return default_client()
    except (ImportError, ValueError):
        return None


def _import_kernel() -> None:
    from ..kernels import compiled  # noqa: F401  - numba compiles it, or loads it from its cache


def load_kernel(client: Any = None) -> None:
    """Load the compiled kernel in this process, then on every worker of ``client``.

    With an empty numba cache this compiles it (once per installation and CPU;
    ``benchmarks/throughput.py --sections fixed`` times it); workers on this machine then
    load what this process wrote.  A fit does it first, so that the wait is
    neither hidden in its first pass (here, on the sample) nor in its first
    pass over the data (on the workers), and can be announced.

    Loading it takes a worker's process from what distributed alone uses to
    what Dask's arrays, numba's compiler and the machine code use together: a
    worker with a small memory limit passes the nanny's terminate threshold
    (95%) on the way and is killed.  That is named here, before any pass.

    Raises
    ------
    WorkerMemoryError
        A worker with a memory limit was lost while it loaded the kernel.
    """
    _import_kernel()
    if client is None:
        return
    limits = {address: int(worker.get("memory_limit") or 0)
              for address, worker in client.scheduler_info(n_workers=-1)["workers"].items()}
    results = client.run(_import_kernel, on_error="return")
    failed = {address: result for address, result in results.items()
              if isinstance(result, BaseException)}
    # A worker that died answers with a closed connection (an OSError); any other
    # exception is the import's own (a package missing on the worker) and is raised as is.
    lost = sorted(address for address, result in failed.items()
                  if isinstance(result, OSError) and limits.get(address))
    if not lost:
        for result in failed.values():
            raise result
        return
    address = lost[0]
    from dask.utils import format_bytes

    from ..errors import WorkerMemoryError

    raise WorkerMemoryError(
        f"Worker {address} has a memory limit of {format_bytes(limits[address])} and was lost "
        f"while it loaded the compiled kernel ({results[address]!r}): its nanny ends a worker "
        "that passes 95% of its limit, and loading Dask's arrays, numba and the kernel takes a fresh worker "
        "to about 200 MiB (more where xarray and pandas are installed: Dask's arrays import "
        "them). Give the workers more memory (at least 512 MiB each: memory_limit= of "
        "LocalCluster or `dask worker --memory-limit`, --memory-limit of `dask-softkmeans "
        "fit`), or fewer workers per machine with more memory each.") from results[address]
