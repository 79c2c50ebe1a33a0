"""One pass over one dataset: a block task mapped over the row blocks, then the reduction tree.

:class:`Runner` decides where a pass runs; :mod:`.reduce` fixes the order of
its sums, so every path gives the same bits for the same blocks:

- NumPy data: fixed-size row blocks on this process's thread pool.
- Dask data without a distributed client: a graph (one task per block and
  the tree) on the threaded scheduler.
- Persisted blocks on a distributed client: one holder (actor) per worker runs
  the blocks that worker holds; if a worker is lost, the pass runs again as
  tasks, which the scheduler can rerun elsewhere.
- Zarr data streamed on a distributed client: the first pass as one task per
  worker thread, each reading a contiguous run of blocks; from the second on,
  one reader (actor) per worker.

On a cluster each worker folds its blocks into the tree's nodes and the
client receives only those (:attr:`Runner.bytes_received`); the data never
travel to the client.
"""

from __future__ import annotations

import weakref
from typing import Any

import dask
import dask.array as da
import numpy as np
from dask.highlevelgraph import HighLevelGraph

from .._typing import Metric
from ..kernels import PassParams, array_api, block_scan, pass_statistics, sub_block_rows
from ..kernels.layout import ScanLayout, ScanStats
from .client import active_client, load_kernel
from .holders import (
    Holders,
    balanced_assignment,
    block_futures,
    persist_in_runs,
    registry,
    registry_lock,
    release,
    start_holders,
    worker_runs,
)
from .memory import check_worker_memory, should_persist
from .reduce import combine_results, sum_vectors
from .tasks import (
    BlockTask,
    held_blocks_task,
    source_blocks_task,
    source_rows_task,
    source_take_task,
    streamed_task,
)
from .threads import LOCAL_BLOCK_ROWS, LOCAL_THREADS, in_pool_thread, single_threaded_blas, thread_pool


def _scan_task(x: np.ndarray, w: np.ndarray | None, params: dict[str, Any]) -> np.ndarray:
    return block_scan(x, weights=w, **params)


class Runner:
    """Runs passes of a block task over one dataset and returns the summed statistics.

    ``X`` is a validated float NumPy or Dask array (see :func:`.inputs.as_data`) and
    ``split_every`` an int >= 2 (see :func:`.validation.check_split_every`): the public
    functions validate, the runner assumes valid input.
    ``persist`` (True, False or "auto", see :func:`.should_persist`) holds Dask
    data in memory once; otherwise every pass reads each block from its
    source and drops it once its statistics are computed, so memory stays
    bounded by the blocks in flight whatever the size of the data.
    """

    def __init__(
        self,
        X: np.ndarray | da.Array,
        sample_weight: np.ndarray | da.Array | None = None,
        *,
        split_every: int = 8,
        persist: bool | str = False,
    ) -> None:
        self.n_samples, self.n_features = X.shape
        #: The NumPy dtype of the rows (that of another array library's chunks, by name).
        self.dtype = array_api.numpy_dtype(X.dtype)
        #: Whether the rows are blocks of another array library (CuPy chunks, say): those
        #: stay where they are, and only statistics, samples and per-row results leave them.
        self.foreign = array_api.is_foreign_array(getattr(X, "_meta", X))
        self.split_every = split_every
        #: Passes run so far (the scan, the statistics passes, a sample's gathering).
        self.n_passes = 0
        #: Bytes of node sums the last pass brought to this process from workers.
        self.bytes_received = 0
        self._local = not isinstance(X, da.Array)
        self._x, self._w = X, sample_weight
        if not self._local:
            client = active_client()
            if client is not None and client.nthreads():
                # The kernel first, then the memory it leaves: a worker that cannot
                # run a pass is an error now, not a pause that never ends.
                load_kernel(client)
                check_worker_memory(client, max(X.chunks[0]) * X.shape[1] * self.dtype.itemsize)
        #: True when the data were persisted in (cluster) memory for the passes.
        self.persisted = should_persist(X, persist)
        if self._local:
            return
        #: ``(client, block futures, weight futures)`` of data persisted on a client.
        self._futures = None
        #: Which worker holds which blocks, when this runner placed them (persist_in_runs).
        self._plan: dict[str, list[int]] | None = None
        client = active_client() if self.persisted else None
        if client is not None and client.nthreads() and all(
                n == 1 for a in (X, sample_weight) if a is not None for n in a.numblocks[1:]):
            (self._x, self._w), (xf, wf), self._plan = persist_in_runs(
                client, [X, sample_weight], split_every)
            self._futures = (client, xf, wf)
        elif self.persisted:
            self._x = X.persist()
            self._w = None if sample_weight is None else sample_weight.persist()
        if self._futures is None:
            self._futures = block_futures(self._x, self._w)
        #: The Zarr array streamed passes read from (unweighted, not persisted).
        self._source = (None if self.persisted or sample_weight is not None
                        else getattr(X, "zarr_source", None))
        self._source_passes = 0
        self._source_holders: Holders | None = None

    @property
    def n_blocks(self) -> int:
        """Number of row blocks a pass maps over."""
        return 1 if self._local else self._x.numblocks[0]

    # -- the passes ------------------------------------------------------------
    def reduce(self, task: BlockTask, params: Any) -> np.ndarray:
        """One pass of any block task ``task(x, w, params) -> float64 vector``, summed over blocks.

        ``w`` is the block of the per-row array given as ``sample_weight``
        (it may be 2-D: the RBF network passes ``[weight, targets]`` rows).
        """
        self.n_passes += 1
        self.bytes_received = 0
        if self._local:
            return self._run_local(task, params)
        client = active_client()
        if client is not None and self._futures is not None:
            result = self._run_held(task, params)
            return self._run_held_tasks(task, params) if result is None else result
        if client is not None and self._source is not None and client.nthreads():
            result = self._run_source_holders(client, task, params)
            return self._run_source_tasks(client, task, params) if result is None else result
        return self._run_graph(task, params)

    def statistics(self, params: PassParams) -> np.ndarray:
        """Packed statistics of one soft pass (see :func:`.kernels.block_statistics`)."""
        return self.reduce(pass_statistics, params)

    def scan(self, origin: np.ndarray, *, gram: bool, metric: Metric = "euclidean") -> ScanStats:
        """The first pass: weight, non-finite rows, sums and Gram matrix relative to ``origin``
        (of the rows scaled to unit length, and their rows of zeros, under "cosine")."""
        vector = self.reduce(_scan_task, {"origin": origin, "gram": gram, "metric": metric})
        return ScanLayout(self.n_features, gram).unpack(vector)

    def _run_local(self, task: BlockTask, params: Any) -> np.ndarray:
        """In-memory rows: fixed-size blocks on the thread pool (no GIL in the kernel)."""
        x, w = self._x, self._w
        with single_threaded_blas():
            if x.shape[0] <= LOCAL_BLOCK_ROWS:
                return task(x, w, params)
            starts = range(0, x.shape[0], LOCAL_BLOCK_ROWS)
            parts = thread_pool().map(
                lambda i: task(x[i : i + LOCAL_BLOCK_ROWS],
                               None if w is None else w[i : i + LOCAL_BLOCK_ROWS], params),
                starts)
            # Summed in block order: the same result whatever the number of threads.
            return sum_vectors(*parts)

    def _run_graph(self, task: BlockTask, params: Any) -> np.ndarray:
        """A graph of one task per block and the reduction tree, on the active scheduler."""
        # One key holds the parameters: they are not copied into every task.
        shared = dask.delayed(params, traverse=False)
        if self.persisted:
            call = dask.delayed(task, pure=True)
            xs = self._x.to_delayed(optimize_graph=False).ravel()
            ws = [None] * len(xs) if self._w is None else self._w.to_delayed(optimize_graph=False).ravel()
            parts = [call(x, w, shared) for x, w in zip(xs, ws, strict=True)]
        else:
            parts = self._streamed_parts(task, shared)
        combine = dask.delayed(sum_vectors, pure=True)
        while len(parts) > 1:
            parts = [combine(*parts[i : i + self.split_every])
                     for i in range(0, len(parts), self.split_every)]
        with single_threaded_blas():
            (result,) = dask.compute(parts[0])
        return result

    def _streamed_parts(self, task: BlockTask, shared: Any) -> list[Any]:
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
            streamed_task, out, x, "ij", *weight_args, shared, None, task, None,
            adjust_chunks=dict.fromkeys(out, 1), concatenate=True, dtype=np.float64,
            meta=np.empty((0,) * len(out), np.float64),
        )
        return list(stats.to_delayed(optimize_graph=True).ravel())

    # -- persisted blocks on a distributed client --------------------------------
    def _block_holders(self) -> Holders | None:
        """This array's block holders (actors), made on the first pass; None if they cannot be."""
        client, x_futures, w_futures = self._futures
        keys = tuple(f.key for f in x_futures + (w_futures or []))
        with registry_lock:
            holders = registry.get(x_futures[0])
        if holders is not None and holders.client is client and holders.keys == keys:
            return holders
        try:
            from distributed import wait

            wait(x_futures)  # where they are once computed, not where they are queued
            who_has = client.who_has(x_futures)
        except Exception:  # the scheduler is unreachable: the tasks will say why
            return None
        held = [tuple(who_has.get(f.key, ())) for f in x_futures]
        plan = self._plan
        if plan is None or any(worker not in held[i] for worker, index in plan.items()
                               for i in index):
            # Placed by the caller, or moved since (a lost worker's blocks recomputed).
            plan = balanced_assignment(list(self._x.chunks[0]), held, client.nthreads())
        started = start_holders(client, plan, lambda index: {
            "xs": [x_futures[i] for i in index],
            "ws": None if w_futures is None else [w_futures[i] for i in index],
            **self._tree_position(index)})
        if started is None:
            return None
        futures, actors = started
        holders = Holders(client, keys, actors, futures,
                          weakref.finalize(x_futures[0], release, futures, actors))
        with registry_lock:
            registry[x_futures[0]] = holders
        return holders

    def _tree_position(self, blocks: list[int]) -> dict[str, Any]:
        """What a worker needs to fold ``blocks`` into the pass's reduction tree."""
        return {"blocks": list(blocks), "n_blocks": self.n_blocks, "split_every": self.split_every}

    def _call_holders(self, holders: Holders, task: BlockTask, params: Any) -> np.ndarray | None:
        """The pass as one call to each holder; None if a call failed (a lost worker)."""
        try:
            with single_threaded_blas():
                calls = [actor.run(task, params) for actor in holders.actors]
                results = [call.result() for call in calls]
        except Exception:
            # The caller runs this pass as tasks instead, which rerun what a lost
            # worker held or read (and raise again an error of the task itself),
            # and drops these holders: the next pass makes new ones.
            return None
        return self._combine(results)

    def _combine(self, results: list[dict]) -> np.ndarray:
        root, self.bytes_received = combine_results(results, self.n_blocks, self.split_every)
        return root

    def _run_held(self, task: BlockTask, params: Any) -> np.ndarray | None:
        """A pass over persisted blocks through their holders; None if it must run as tasks."""
        holders = self._block_holders()
        if holders is None:
            return None
        result = self._call_holders(holders, task, params)
        if result is None:
            first = self._futures[1][0]
            with registry_lock:
                if registry.get(first) is holders:
                    del registry[first]
            holders.release()
        return result

    def _run_held_tasks(self, task: BlockTask, params: Any) -> np.ndarray:
        """The pass as one task per worker thread, each over a run of blocks its worker holds.

        The blocks stay persisted futures with their lineage: if a worker is
        lost, the scheduler recomputes its blocks and runs the task elsewhere
        (``allow_other_workers``), so a failure costs time, not the fit.
        """
        client, x_futures, w_futures = self._futures
        where = client.who_has(x_futures)
        nthreads = client.nthreads()
        groups: dict[Any, list[int]] = {}
        for i, future in enumerate(x_futures):
            groups.setdefault((where.get(future.key) or (None,))[0], []).append(i)
        submitted = []
        for worker, index in groups.items():
            share = max(1, min(nthreads.get(worker, 1), len(index)))
            for run in np.array_split(np.array(index), share):
                blocks = run.tolist()
                submitted.append(client.submit(
                    held_blocks_task, task, params, [x_futures[i] for i in blocks],
                    None if w_futures is None else [w_futures[i] for i in blocks],
                    blocks, self.n_blocks, self.split_every, pure=False,
                    **({} if worker is None else {"workers": [worker], "allow_other_workers": True})))
        with single_threaded_blas():
            return self._combine(client.gather(submitted))

    # -- Zarr data streamed on a distributed client -------------------------------
    def _block_bounds(self) -> list[tuple[int, int]]:
        """``(start, stop)`` rows of each block."""
        stops = np.cumsum(self._x.chunks[0])
        return list(zip((0, *stops[:-1].tolist()), stops.tolist(), strict=True))

    def _run_source_tasks(self, client: Any, task: BlockTask, params: Any) -> np.ndarray:
        """The streamed pass as one task per worker thread, each reading its run of blocks.

        Each task reads its blocks one at a time and keeps only their node
        sums, so memory stays bounded; a task lost with its worker is run
        again elsewhere: it only reads.
        """
        bounds = self._block_bounds()
        # One task per worker thread: each worker's run split among its threads.
        threads = client.nthreads()
        plan = worker_runs(threads, self.n_blocks, self.split_every)
        runs = [part.tolist() for worker, run in plan.items()
                for part in np.array_split(np.array(run), min(threads[worker], len(run)))]
        # One map, not one submit per task: the client batches messages sent within
        # 10 ms of each other, which would hold every task after the first back.
        submitted = client.map(
            source_blocks_task, [[bounds[i] for i in run] for run in runs], runs,
            [self.n_blocks] * len(runs), [self.split_every] * len(runs),
            task=task, params=params, source=self._source, pure=False)
        with single_threaded_blas():
            return self._combine(client.gather(submitted))

    def _run_source_holders(self, client: Any, task: BlockTask, params: Any) -> np.ndarray | None:
        """A streamed pass through one reader (holder) per worker; None if it must run as tasks.

        The first streamed pass runs as tasks (one pass, as ``soft_statistics``
        makes, would not repay making the actors); from the second on, each
        worker's holder reads its runs of blocks.
        """
        self._source_passes += 1
        if self._source_passes == 1:
            return None
        holders = self._source_holders
        if holders is None or holders.client is not client:
            bounds = self._block_bounds()
            plan = worker_runs(client.nthreads(), self.n_blocks, self.split_every)
            started = start_holders(client, plan, lambda index: {
                "source": self._source, "bounds": [bounds[i] for i in index],
                **self._tree_position(index)})
            if started is None:
                return None
            futures, actors = started
            holders = self._source_holders = Holders(
                client, (), actors, futures, weakref.finalize(self, release, futures, actors))
        result = self._call_holders(holders, task, params)
        if result is None:
            self._source_holders = None
            holders.release()
        return result

    # -- rows -------------------------------------------------------------------
    def first_row(self) -> np.ndarray:
        """The first row as float64 with non-finite values replaced by 0 (an origin for sums)."""
        row = self._x[:1] if self._local else self._x[:1].compute()
        row = np.asarray(array_api.to_numpy(row), dtype=np.float64)
        return np.nan_to_num(row[0], nan=0.0, posinf=0.0, neginf=0.0)

    def all_rows(self) -> tuple[np.ndarray, np.ndarray | None]:
        """Every row in order, in memory, with its weights: :meth:`sample` of all the
        rows, without a copy or a shuffle for NumPy data."""
        if self._local:
            return self._x, None if self._w is None else np.asarray(self._w, np.float64)
        return self.sample(self.n_samples)

    def sample(self, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray | None]:
        """``size`` rows drawn uniformly without replacement, in memory, with their weights.

        The rows are chosen by global index, so the sample is the same whatever
        the chunking; Dask data are read once (one pass) to gather them.
        """
        index = np.sort(np.random.default_rng(seed).choice(self.n_samples, size, replace=False))
        if self._local:
            x = self._x[index]
            return x, None if self._w is None else np.asarray(self._w[index], np.float64)
        self.n_passes += 1
        if self._source is not None:
            return _source_take(self._x, self._source, index).compute(), None
        if self.foreign:
            x = _foreign_take(self._x, index)
            return x, None if self._w is None else np.asarray(self._w[index].compute(), np.float64)
        parts = [self._x[index]] + ([] if self._w is None else [self._w[index]])
        out = dask.compute(*parts)
        return np.asarray(out[0]), None if self._w is None else np.asarray(out[1], np.float64)


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
    ``(n, n_outputs)`` otherwise.  A Dask array read from a Zarr array gives a
    Dask array whose tasks each read their own rows (one block in memory at a
    time, as the passes read), not a graph of reads that could run ahead.
    """
    dtype = array_api.numpy_dtype(dtype)
    if isinstance(X, da.Array):
        source = getattr(X, "zarr_source", None)
        chunks = (X.chunks[0],) if n_outputs is None else (X.chunks[0], (n_outputs,))
        if source is not None:
            return _source_rows(X, source, func, chunks, dtype, kwargs)
        # The blocks' results are NumPy whatever the chunks' library (CuPy chunks give labels
        # on the host): their meta says so, and Dask need not call func to find it out.
        meta = np.empty((0,) * len(chunks), dtype)
        if n_outputs is None and array_api.is_foreign_array(X._meta):
            # Dropping the feature axis makes Dask concatenate the chunks along it with
            # NumPy's functions: keep it (one column per block), then drop it from the result.
            return X.map_blocks(_as_column, func, kwargs, dtype=dtype, chunks=(X.chunks[0], (1,)),
                                meta=np.empty((0, 0), dtype))[:, 0]
        if n_outputs is None:
            return X.map_blocks(func, dtype=dtype, drop_axis=1, meta=meta, **kwargs)
        return X.map_blocks(func, dtype=dtype, chunks=chunks, meta=meta, **kwargs)
    centers = kwargs.get("centers")
    rows = sub_block_rows(0 if centers is None else len(centers), X.shape[1])
    starts = range(0, X.shape[0], rows)
    # In one of the pool's own threads (a task of an in-memory pass) waiting for the pool
    # could wait forever: run there.
    if len(starts) <= 1 or LOCAL_THREADS == 1 or in_pool_thread():
        parts = [func(X[i : i + rows], **kwargs) for i in starts]
    else:  # as the in-memory passes: sub-blocks on the local threads, BLAS on one each
        with single_threaded_blas():
            parts = list(thread_pool().map(lambda i: func(X[i : i + rows], **kwargs), starts))
    return np.concatenate(parts).astype(dtype, copy=False)


def _as_column(x: Any, func: Any, kwargs: dict[str, Any]) -> np.ndarray:
    """``func(x, **kwargs)`` of shape ``(n,)`` as one column ``(n, 1)``."""
    return func(x, **kwargs)[:, None]


def _foreign_take(X: da.Array, index: np.ndarray) -> np.ndarray:
    """The rows ``index`` (global, sorted) of a Dask array of another library's chunks, as
    NumPy: each block gives the rows it holds, gathered on its device (Dask's fancy indexing
    would need NumPy's functions on the chunks)."""
    stops = np.cumsum(X.chunks[0])
    cuts = np.searchsorted(index, stops)
    starts = np.concatenate([[0], cuts[:-1]])
    offsets = stops - np.asarray(X.chunks[0])
    take = dask.delayed(array_api.take_rows, pure=True)
    parts = [take(block, index[a:b] - offsets[i])
             for i, (block, a, b) in enumerate(zip(X.to_delayed().ravel(), starts, cuts, strict=True))
             if b > a]
    rows = dask.compute(*parts)
    return np.concatenate(rows) if rows else np.empty((0, X.shape[1]), array_api.numpy_dtype(X.dtype))


def _source_take(X: da.Array, source: Any, index: np.ndarray) -> da.Array:
    """The rows ``index`` (sorted) of ``X`` as a Dask array, each task reading its block of
    the Zarr array ``source`` and keeping the rows it needs: no block is a task's result, so
    none waits in a worker's memory for the task that selects from it."""
    name = "softkmeans-take-" + dask.base.tokenize(X.name, index)
    stops = np.cumsum(X.chunks[0])
    starts = stops - np.asarray(X.chunks[0])
    cuts = np.searchsorted(index, stops)
    counts = np.diff(cuts, prepend=0)
    layer: dict[Any, Any] = {}
    for i in np.flatnonzero(counts):
        key = (name, len(layer), 0)
        layer[key] = (source_take_task, source, int(starts[i]), int(stops[i]),
                      index[cuts[i] - counts[i] : cuts[i]])
    graph = HighLevelGraph.from_collections(name, layer, dependencies=[])
    return da.Array(graph, name, chunks=(tuple(int(c) for c in counts[counts > 0]),
                                         (X.shape[1],)), dtype=X.dtype)


def _source_rows(X: da.Array, source: Any, func: Any, chunks: tuple, dtype: Any,
                 kwargs: dict[str, Any]) -> da.Array:
    """A Dask array of ``func`` over the row blocks of ``X``, each task reading its rows of
    the Zarr array ``source`` itself."""
    name = "softkmeans-rows-" + dask.base.tokenize(X.name, func, kwargs)
    stops = np.cumsum(X.chunks[0]).tolist()
    starts = [0, *stops[:-1]]
    params = name + "-params"  # one key for what every task shares
    layer: dict[Any, Any] = {params: kwargs}
    for i, (start, stop) in enumerate(zip(starts, stops, strict=True)):
        key = (name, i) if len(chunks) == 1 else (name, i, 0)
        layer[key] = (source_rows_task, source, start, stop, func, params)
    graph = HighLevelGraph.from_collections(name, layer, dependencies=[])
    return da.Array(graph, name, chunks=chunks, dtype=dtype)
