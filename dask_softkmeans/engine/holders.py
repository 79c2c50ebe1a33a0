"""One actor per worker that runs that worker's share of every pass over one dataset.

A pass through tasks costs the scheduler's round trip (a task goes client ->
scheduler -> worker, its result worker -> scheduler -> client, then a
gather); a call to an actor goes client -> worker -> client.  Each holder
keeps references to the persisted blocks its worker holds (no copy), or a
Zarr array and the row ranges it reads from it at each pass, and returns the
node sums of those blocks (:mod:`.reduce`).
"""

from __future__ import annotations

import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

import dask.array as da
import numpy as np
from dask.highlevelgraph import HighLevelGraph

from .. import io
from .client import active_client
from .memory import tune_worker_malloc
from .reduce import Node, reduce_blocks


class BlockHolder:
    """An actor on one worker that runs its share of every pass over one dataset.

    It holds either references to persisted blocks (``xs``, ``ws``) or a Zarr
    array (``source``) and the row ranges (``bounds``) it reads at each pass;
    ``blocks`` are their indices among the dataset's ``n_blocks`` blocks, ascending.
    """

    def __init__(self, xs: list[np.ndarray] | None = None, ws: list[np.ndarray] | None = None,
                 *, source: Any = None, bounds: list[tuple[int, int]] | None = None,
                 blocks: list[int], n_blocks: int, split_every: int) -> None:
        self._xs, self._ws = xs, ws
        self._source, self._bounds = source, bounds
        self._blocks, self._n_blocks, self._split_every = blocks, n_blocks, split_every
        self._pool: ThreadPoolExecutor | None = None

    def _block_statistics(self, i: int, task: Any, params: Any) -> np.ndarray:
        if self._source is not None:
            return task(io.read_rows(self._source, *self._bounds[i]), None, params)
        return task(self._xs[i], None if self._ws is None else self._ws[i], params)

    def run(self, task: Any, params: Any) -> dict[Node, np.ndarray]:
        """``task`` over the blocks, on as many threads as the worker has, folded into nodes."""
        from distributed import get_worker

        libc = tune_worker_malloc()
        threads = min(get_worker().state.nthreads, len(self._blocks))
        if threads > 1 and self._pool is None:
            self._pool = ThreadPoolExecutor(threads, thread_name_prefix="softkmeans-holder")
        try:
            return reduce_blocks(lambda i: self._block_statistics(i, task, params),
                                 self._blocks, self._n_blocks, self._split_every,
                                 pool=self._pool if threads > 1 else None, window=2 * threads)
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
    there once, when the holders are made: a pass takes as long as its
    busiest worker, and persisted blocks are not always shared out evenly.
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


class Holders(NamedTuple):
    """The holders (actors) of one dataset on one client."""

    client: Any
    keys: tuple
    actors: list[Any]
    futures: list[Any]  # the actors' futures: the actors live as long as these
    release: weakref.finalize  # releases the futures once, when its owner goes or when called


def release(futures: list[Any], actors: list[Any]) -> None:
    """Release the holders' futures now, so the actors (and their references to blocks)
    go at once, not whenever a garbage collection breaks the reference cycles of
    ``distributed``'s actor proxies (each proxy holds a future of its own)."""
    for future in [*futures, *(getattr(actor, "_future", None) for actor in actors)]:
        if future is not None:
            future.release()


def start_holders(client: Any, plan: dict[str, list[int]],
                   arguments: Any) -> tuple[list[Any], list[Any]] | None:
    """One :class:`BlockHolder` per worker of ``plan`` (``{worker: block indices}``),
    made with the keyword arguments ``arguments(indices)``: ``(futures, actors)``, or
    None, with nothing left behind, when a worker was lost meanwhile (the pass then
    runs as tasks)."""
    futures: list[Any] = []
    actors: list[Any] = []
    try:
        for worker, index in plan.items():
            futures.append(client.submit(BlockHolder, **arguments(index), workers=[worker],
                                         actor=True, pure=False))
        for future in futures:
            actors.append(future.result())
    except Exception:
        release(futures, actors)
        return None
    return futures, actors


#: Lock of :data:`registry`.
registry_lock = threading.Lock()

#: Holders by the first block's future of the persisted array they serve.  The
#: entry (and with it the actors and their references to the blocks) goes away
#: when that array's futures do: the holders never keep released data alive.
registry: weakref.WeakKeyDictionary[Any, Holders] = weakref.WeakKeyDictionary()


def block_futures(X: da.Array, sample_weight: da.Array | None) -> tuple[Any, list, list | None] | None:
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


def worker_runs(nthreads: dict[str, int], n_blocks: int,
                split_every: int) -> dict[str, list[int]]:
    """Contiguous runs of block indices, one per worker thread, a worker's runs in a row:
    ``{worker: block indices}``.  A worker holding one run sends few node sums
    (:func:`.reduce.covering_nodes`) and reads neighbouring chunks.

    Run boundaries fall on multiples of the largest power of ``split_every`` that is
    at most a sixteenth of a run, so that they cut few nodes of the reduction tree
    while the runs stay within a few percent of equal.
    """
    workers = np.repeat(list(nthreads), list(nthreads.values()))
    n_runs = max(1, min(len(workers), n_blocks))
    align = 1
    while align * split_every * 16 * n_runs <= n_blocks:
        align *= split_every
    cuts = [round(n_blocks * r / n_runs / align) * align for r in range(n_runs + 1)]
    cuts[-1] = n_blocks
    plan: dict[str, list[int]] = {}
    for worker, start, stop in zip(workers, cuts[:-1], cuts[1:], strict=False):
        plan.setdefault(str(worker), []).extend(range(start, stop))
    return {worker: run for worker, run in plan.items() if run}


def persist_in_runs(client: Any, arrays: list[da.Array | None], split_every: int,
                    ) -> tuple[list[da.Array | None], list[list[Any] | None], dict[str, list[int]]]:
    """Persist row-chunked arrays (data and weights, block for block) on ``client``, each
    worker computing and holding a contiguous run of blocks (:func:`worker_runs`).

    ``Array.persist`` leaves the placement to the scheduler, which shares blocks out
    in turn: every worker would then hold every other block and send a node sum per
    block.  Here the reads run where their blocks will stay; the placement is a
    preference (``allow_other_workers``), so a lost worker's blocks are recomputed
    elsewhere from their lineage.  Returns the persisted arrays, their block futures
    in block order (None for None), and the plan ``{worker: block indices}``.
    """
    n_blocks = next(a for a in arrays if a is not None).numblocks[0]
    plan = worker_runs(client.nthreads(), n_blocks, split_every)
    out: list[da.Array | None] = []
    held: list[list[Any] | None] = []
    for array in arrays:
        if array is None:
            out.append(None)
            held.append(None)
            continue
        blocks = array.to_delayed(optimize_graph=True).reshape(n_blocks)
        futures: list[Any] = [None] * n_blocks
        for worker, run in plan.items():
            computed = client.compute([blocks[i] for i in run], workers=[worker],
                                      allow_other_workers=True)
            for i, future in zip(run, computed, strict=True):
                futures[i] = future
        name = "softkmeans-held-" + array.name
        index = (0,) * (array.ndim - 1)
        layer = {(name, i, *index): future for i, future in enumerate(futures)}
        graph = HighLevelGraph.from_collections(name, layer, dependencies=[])
        out.append(da.Array(graph, name, array.chunks, array.dtype, meta=array._meta))
        held.append(futures)
    return out, held, plan
