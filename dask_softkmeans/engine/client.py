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
    """
    _import_kernel()
    if client is not None:
        client.run(_import_kernel)
