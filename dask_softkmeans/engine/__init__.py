"""Dask orchestration: where the passes run.  No mathematics here (see :mod:`..kernels`).

- :mod:`.runner`: :class:`Runner`, one pass = a block task mapped over the row
  blocks + the reduction tree; :func:`map_rows` for per-row results.
- :mod:`.reduce`: the reduction tree, the same on every path.
- :mod:`.tasks`, :mod:`.holders`: what runs on the workers (tasks, actors).
- :mod:`.memory`, :mod:`.threads`, :mod:`.client`: worker resources (memory
  for ``persist="auto"``, glibc's heap, the local thread pool, BLAS threads,
  the compiled kernel on every worker).
"""

from __future__ import annotations

from .client import active_client, load_kernel
from .memory import memory_for_data, should_persist
from .runner import Runner, map_rows
from .threads import single_threaded_blas

__all__ = [
    "Runner",
    "active_client",
    "load_kernel",
    "map_rows",
    "memory_for_data",
    "should_persist",
    "single_threaded_blas",
]
