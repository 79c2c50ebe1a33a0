"""The functions a pass runs on the workers (or in threads here): blocks in, node sums out.

A ``task(x, w, params) -> float64 vector`` computes one block's packed
statistics (e.g. :func:`.kernels.pass_statistics` with a :class:`.PassParams`);
the functions here run it over the blocks a worker holds or reads and fold
the results into the nodes of the pass's reduction tree (:mod:`.reduce`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import io
from .memory import block_reads, tune_worker_malloc
from .reduce import Node, reduce_blocks

#: A block task: ``task(x, w, params)`` returns the block's packed float64 statistics.
BlockTask = Any


def streamed_task(x: np.ndarray, w: np.ndarray | None, params: Any, task: BlockTask) -> np.ndarray:
    """One block of a graph pass whose read is fused into the task (see ``GraphPass``)."""
    tune_worker_malloc()
    return task(x, w, params)


def held_blocks_task(task: BlockTask, params: Any, xs: list[np.ndarray],
                     ws: list[np.ndarray] | None, blocks: list[int], n_blocks: int,
                     split_every: int) -> dict[Node, np.ndarray]:
    """``task`` over blocks this worker holds (``xs``, indices ``blocks``), folded into nodes."""
    tune_worker_malloc()
    return reduce_blocks(lambda i: task(xs[i], None if ws is None else ws[i], params),
                         blocks, n_blocks, split_every)


def source_blocks_task(bounds: list[tuple[int, int]], blocks: list[int], n_blocks: int,
                       split_every: int, *, task: BlockTask, params: Any,
                       source: Any) -> dict[Node, np.ndarray]:
    """``task`` over row ranges read from ``source`` (a Zarr array), one block in memory at a
    time, folded into nodes."""
    with block_reads():
        return reduce_blocks(
            lambda i: task(io.read_rows(source, *bounds[i]), None, params),
            blocks, n_blocks, split_every)


def source_take_task(source: Any, start: int, stop: int, index: np.ndarray) -> np.ndarray:
    """The rows ``index`` (global, sorted, within ``start:stop``) of a Zarr array, read inside
    the task: the block is read, the rows kept, the block dropped."""
    with block_reads():
        return io.read_rows(source, start, stop)[index - start]


def source_rows_task(source: Any, start: int, stop: int, per_row: Any,
                     kwargs: dict[str, Any]) -> np.ndarray:
    """``per_row(rows, **kwargs)`` of rows ``start:stop`` read from ``source`` inside the task:
    one block of a lazy per-row result over a Zarr array (read where it is used)."""
    with block_reads():
        return per_row(io.read_rows(source, start, stop), **kwargs)
