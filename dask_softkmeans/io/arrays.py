"""Zarr arrays as the passes see them: open, wrap as Dask, read row ranges, write per-row results.

This module knows Zarr and Dask arrays; it knows nothing of the clustering
(the per-row results it writes are computed by a function it is given).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import dask
import dask.array as da
import numpy as np
import zarr

from .._typing import PathLike
from ..errors import IncompleteOutputError, InputError, StoreNotFoundError
from ..validation import check_shape_dtype
from . import chunk_files, retrying
from .stores import (
    DEFAULT_COMPRESSOR,
    MARKER,
    absolute,
    check_local_folder,
    compressors,
    create_group,
    is_incomplete,
    local_folder,
    mark_complete,
    open_store,
    parent_path,
    store_path,
)

#: A Dask block joins whole Zarr chunks (or shards) up to about this many bytes,
#: so that small chunks do not make a pass thousands of tasks ...
BLOCK_BYTES = 32 * 2**20
#: ... but it joins no more of them than leaves this many blocks, for parallelism.
MIN_BLOCKS = 16


def open_data(
    path: PathLike, *, storage_options: dict[str, Any] | None = None
) -> zarr.Array | zarr.Group:
    """Open the Zarr array or group at a path or fsspec URL read-only.

    An array is checked as by :func:`open_array`; a group is returned as it is
    (a group written by xarray holds one variable per feature, see
    :func:`dask_softkmeans.inputs.as_features`).

    Raises
    ------
    StoreNotFoundError
        Nothing is stored at ``path``.
    InputError
        ``path`` holds an array that is not 2-D and numeric.
    IncompleteOutputError
        The array is in a group whose writer was interrupted.
    """
    shown = str(path)  # messages name the path as it was given
    path = store_path(path, storage_options)
    try:
        node = open_store(path, "r", storage_options, zarr.open)
    except FileNotFoundError as exc:
        raise StoreNotFoundError(
            f"No Zarr array at {shown!r}. Check the path, or write one with "
            "`dask-softkmeans make-data PATH` or dask_softkmeans.datasets.write_blobs."
        ) from exc
    if isinstance(node, zarr.Group):
        return node
    parent = parent_path(path)
    if parent is not None and is_incomplete(parent, storage_options):
        raise IncompleteOutputError(
            f"The Zarr array at {shown!r} was left incomplete by an interrupted write (its "
            f"group is marked {{{MARKER!r}: {{'complete': False}}}}): some of its chunks may "
            "never have been written. Write it again (overwrite=True, or --overwrite).")
    check_shape_dtype(node.shape, node.dtype, f"The Zarr array at {shown!r}")
    return node


def open_array(
    path: PathLike, *, storage_options: dict[str, Any] | None = None
) -> zarr.Array:
    """Open a 2-D numeric Zarr array (v2 or v3) read-only, from a path or fsspec URL.

    Parameters
    ----------
    path : str or os.PathLike
        A local path, or an fsspec URL such as ``s3://bucket/data.zarr/X``,
        ``gs://...``, ``file:///...`` or ``memory://...``.
    storage_options : dict, optional
        Passed to the fsspec filesystem of a URL (credentials, endpoint,
        ``anon=True``, ...); an error for a local path, where they would be ignored.

    Raises
    ------
    StoreNotFoundError
        Nothing is stored at ``path``.
    InputError
        ``path`` holds a group, or an array that is not 2-D and numeric.
    IncompleteOutputError
        The array is in a group whose writer (:func:`write_row_blocks`,
        :func:`.write_blobs`) was interrupted: the group is marked incomplete.
    MissingDependencyError
        The fsspec backend of the URL's protocol (``s3fs``, ``gcsfs``) is not installed.
    """
    shown = str(path)
    node = open_data(path, storage_options=storage_options)
    if isinstance(node, zarr.Group):
        arrays = sorted(name for name, _ in node.arrays())
        raise InputError(
            f"{shown!r} is a Zarr group, not an array. Point at one of its arrays"
            + (f", e.g. {shown.rstrip('/')}/{arrays[0]} (arrays: {', '.join(arrays)})."
               if arrays else "; it holds none.")
        )
    return node


def block_rows(array: zarr.Array, *, block_bytes: int = BLOCK_BYTES) -> int:
    """Rows of a Dask block over ``array``: a whole number of its chunks (or shards).

    A chunk inside a shard is not an independent object, so a sharded array
    is read shard by shard.  Small chunks are joined, up to ``block_bytes``
    and down to :data:`MIN_BLOCKS` blocks; a chunk is never split, so a pass
    reads each chunk exactly once.
    """
    shards = getattr(array, "shards", None)
    unit = (shards or array.chunks)[0]
    n_rows = array.shape[0]
    row_bytes = max(1, int(np.prod(array.shape[1:], dtype=np.int64)) * array.dtype.itemsize)
    n_units = -(-n_rows // unit)
    join = max(1, min(block_bytes // max(1, unit * row_bytes), n_units // MIN_BLOCKS))
    return min(unit * join, max(n_rows, 1))


def _read_block(array: zarr.Array, key: Any) -> np.ndarray:
    """A Dask block of ``array`` (``key``: a slice per axis), read by :func:`read_rows`."""
    rows, cols = key
    if rows.step not in (None, 1):
        return array[key]
    start, stop, _ = rows.indices(array.shape[0])
    block = read_rows(array, start, stop)
    return block if cols == slice(None) or cols.indices(array.shape[1]) == (
        0, array.shape[1], 1) else block[:, cols]


def to_dask(array: zarr.Array, *, block_bytes: int = BLOCK_BYTES) -> da.Array:
    """A Dask array over a 2-D Zarr array: row blocks of whole Zarr chunks, all features in one.

    See :func:`block_rows`.  Reading a block reads each of its Zarr chunks
    once, whatever the chunking of the feature axis.
    """
    if array.ndim != 2:
        raise InputError(f"Expected a 2-D Zarr array; got shape {array.shape}.")
    array = absolute(array)
    chunks = (block_rows(array, block_bytes=block_bytes), array.shape[1])
    x = da.from_array(array, chunks=chunks, name="from-zarr-" + dask.base.tokenize(array, chunks),
                      getitem=_read_block)
    # The source travels with the Dask array, so that a streamed pass on a cluster
    # can read its blocks in a few tasks instead of a graph (``engine.Runner``).
    # Anything derived from ``x`` (a slice, a cast) has no such attribute.
    x.zarr_source = array
    return x


def read_rows(array: zarr.Array, start: int, stop: int) -> np.ndarray:
    """``array[start:stop]`` of a 2-D Zarr array, read straight from its chunk files when it can.

    Zarr's own read of a chunk goes through the store's bytes, the codec pipeline
    and a copy into the result; reading the file, or decoding blosc-lz4 or zstd,
    straight into the result skips the copies (``benchmarks/out_of_core.py``
    measures a pass both ways).  Where the layout is one zarr knows better (another store,
    sharding, filters, other codecs, split features, big-endian values) or a
    chunk's file is missing or damaged, zarr reads it.  The result is always
    equal to ``array[start:stop]`` (``start`` and ``stop`` taken as a slice's).

    From any other store (``s3://``, ``gs://``, ``memory://``, a wrapped store), a read
    that fails with a transient error (an object store's 5xx answer, a timeout, a dropped
    connection) is retried with exponential backoff: see :mod:`.retrying` and its Dask
    configuration keys ``softkmeans.read-retries`` and ``softkmeans.read-backoff``.

    Raises
    ------
    StoreNotFoundError
        The array is in a local store whose folder this process cannot see (a
        worker without the caller's filesystem), where zarr would read zeros.
    StoreReadError
        A chunk failed with transient errors on every try; the message names it.
    """
    start, stop, _ = slice(start, stop).indices(array.shape[0])  # as a slice: clipped
    check_local_folder(array, "read")
    out = chunk_files.read_direct(array, start, stop)
    if out is not None:
        return out
    if local_folder(array) is not None:  # local files: an error there is not a passing one
        return array[start:stop]
    return retrying.read(array, start, stop)


def _row_starts(chunks: tuple[int, ...]) -> Iterator[tuple[int, int]]:
    start = 0
    for size in chunks:
        yield start, start + size
        start += size


def _write_block(x: np.ndarray | None, start: int, stop: int, shared: dict[str, Any]) -> int:
    """Compute one block's per-row results and write them straight to their Zarr arrays;
    ``x`` None: read the block's rows from ``shared["source"]`` here, inside the task."""
    for target in shared["targets"].values():
        check_local_folder(target, "write to")  # not into a folder of this worker's own
    if x is None:
        x = read_rows(shared["source"], start, stop)
    results = shared["func"](x, **shared["params"])
    for name, target in shared["targets"].items():
        target[start:stop] = results[name]
    return stop - start


def write_row_blocks(
    X: da.Array,
    func: Callable[..., dict[str, np.ndarray]],
    params: dict[str, Any],
    path: PathLike,
    outputs: Mapping[str, tuple[Any, int | None]],
    *,
    attrs: Mapping[str, Any] | None = None,
    compressor: str = DEFAULT_COMPRESSOR,
    overwrite: bool = False,
    storage_options: dict[str, Any] | None = None,
) -> zarr.Group:
    """Write per-row results of ``X`` to Zarr arrays in a new group, block by block, out of core.

    ``func(block, **params)`` returns a dict of arrays with one row per row of
    the block; ``outputs`` names them, with their dtype and width (None for
    a 1-D output).  One task per block reads the block once, computes every
    output and writes each into its array at the block's rows: the Zarr chunks
    equal the blocks, so no two tasks write one chunk, and nothing but a row
    count per block returns to the caller.  Over a Zarr array (``X`` made by
    :func:`to_dask`) each task reads its own rows with :func:`read_rows`, as a
    pass does: no read runs ahead of its write.

    The group is created marked incomplete and marked complete after the last
    block is written (see :data:`.stores.MARKER`): an interrupted write leaves a
    group that :func:`open_array` refuses, and that ``overwrite=False`` names as such.

    Returns
    -------
    zarr.Group
        The group, opened read-only.
    """
    rows = X.chunks[0]
    if len(rows) > 1 and (len(set(rows[:-1])) > 1 or rows[-1] > rows[0]):
        # Zarr chunks are regular: make the blocks so (a user's irregular Dask array).
        X = X.rechunk({0: max(rows)})
        rows = X.chunks[0]
    source = getattr(X, "zarr_source", None)  # a Dask array made by to_dask, as it is
    codecs = compressors(compressor)
    group = create_group(path, storage_options, overwrite, attrs or {})
    targets = {}
    for name, (dtype, width) in outputs.items():
        shape = (X.shape[0],) if width is None else (X.shape[0], width)
        chunks = (rows[0],) if width is None else (rows[0], width)
        targets[name] = group.create_array(
            name, shape=shape, chunks=chunks, dtype=dtype, compressors=codecs)
    # One key for what every task shares, so it is not copied into each task.
    shared = dask.delayed({"targets": targets, "func": func, "params": params,
                           "source": source}, traverse=False)
    write = dask.delayed(_write_block, pure=False)
    blocks = ([None] * len(rows) if source is not None
              else X.to_delayed(optimize_graph=True).ravel())
    tasks = [write(block, start, stop, shared)
             for block, (start, stop) in zip(blocks, _row_starts(rows), strict=True)]
    dask.compute(*tasks)
    mark_complete(group)
    return zarr.open_group(group.store, mode="r")
