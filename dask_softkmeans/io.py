"""Zarr input and output: open arrays, write generated data and per-row results; model files.

This module knows Zarr and Dask arrays; it knows nothing of the clustering
(the per-row results it writes are computed by a function it is given).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

import dask
import dask.array as da
import numcodecs
import numpy as np
import zarr
import zarr.codecs
import zarr.storage

from .errors import InputError, MissingDependencyError, StoreNotFoundError

PathLike = str | os.PathLike

#: Compressors :func:`write_blobs` and :func:`write_row_blocks` can use, by name.
#: ``blosc-lz4`` (byte shuffle) decodes 2-3x faster than ``zstd`` on float data
#: (``benchmarks/out_of_core.py``) and is the default for per-sample outputs,
#: whose responsibilities are mostly zeros and compress well.
COMPRESSORS: dict[str, Callable[[], Any]] = {
    "blosc-lz4": lambda: zarr.codecs.BloscCodec(cname="lz4", clevel=5, shuffle="shuffle"),
    "zstd": lambda: zarr.codecs.ZstdCodec(level=1),
    "none": lambda: None,
}
DEFAULT_COMPRESSOR = "blosc-lz4"

#: The generated blobs are stored uncompressed by default: Gaussian float noise
#: compresses to 0.91 of its size with ``blosc-lz4`` (0.92 with ``zstd``), while
#: decoding it is the largest cost of a streamed pass (a streamed pass / a
#: persisted one, ``benchmarks/out_of_core.py``: 1.17 uncompressed, 1.86 blosc-lz4).
DEFAULT_DATA_COMPRESSOR = "none"

#: A Dask block joins whole Zarr chunks (or shards) up to about this many bytes,
#: so that small chunks do not make a pass thousands of tasks ...
BLOCK_BYTES = 32 * 2**20
#: ... but it joins no more of them than leaves this many blocks, for parallelism.
MIN_BLOCKS = 16


def _is_url(path: str) -> bool:
    return "://" in path


def _compressors(name: str) -> Any:
    try:
        codec = COMPRESSORS[name]()
    except KeyError:
        raise InputError(
            f"Unknown compressor {name!r}; choose one of {', '.join(COMPRESSORS)}."
        ) from None
    return None if codec is None else [codec]


def _store_path(path: PathLike, storage_options: dict[str, Any] | None) -> str:
    """``path`` as zarr should open it: a URL as it is, a local path made absolute, so
    that workers started elsewhere (another working directory) find the same files.
    ``storage_options`` on a local path are refused (zarr would ignore them)."""
    path = str(path)
    if storage_options and not _is_url(path):
        raise InputError(
            f"storage_options apply to fsspec URLs (s3://, gs://, file://, memory://, ...), "
            f"but {path!r} is a local path. Drop storage_options, or write the path as a URL, "
            f"e.g. file://{os.path.abspath(path)}."
        )
    # Not os.path.abspath: it folds "link/.." as text, where the system follows the link.
    return path if _is_url(path) else str(Path(path).absolute())


def _open(path: str, mode: str, storage_options: dict[str, Any] | None, opener: Callable) -> Any:
    """Call a zarr opener, turning a missing fsspec backend into an error that names it."""
    try:
        return opener(store=path, mode=mode, storage_options=storage_options or None)
    except ImportError as exc:
        protocol = path.split("://", 1)[0]
        raise MissingDependencyError(
            f"Opening {path!r} needs the fsspec backend of {protocol}:// ({exc}). Install it, "
            "e.g. `pip install s3fs` for s3://, `pip install gcsfs` for gs://."
        ) from exc


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
    MissingDependencyError
        The fsspec backend of the URL's protocol (``s3fs``, ``gcsfs``) is not installed.
    """
    shown = str(path)  # messages name the path as it was given
    path = _store_path(path, storage_options)
    try:
        node = _open(path, "r", storage_options, zarr.open)
    except FileNotFoundError as exc:
        raise StoreNotFoundError(
            f"No Zarr array at {shown!r}. Check the path, or write one with "
            "`dask-softkmeans make-data PATH` or dask_softkmeans.io.write_blobs."
        ) from exc
    if isinstance(node, zarr.Group):
        arrays = sorted(name for name, _ in node.arrays())
        raise InputError(
            f"{shown!r} is a Zarr group, not an array. Point at one of its arrays"
            + (f", e.g. {shown.rstrip('/')}/{arrays[0]} (arrays: {', '.join(arrays)})."
               if arrays else "; it holds none.")
        )
    from ._data import _check_shape_dtype  # imported here: _data imports this module

    _check_shape_dtype(node.shape, node.dtype, f"The Zarr array at {shown!r}")
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
    array = _absolute(array)
    chunks = (block_rows(array, block_bytes=block_bytes), array.shape[1])
    x = da.from_array(array, chunks=chunks, name="from-zarr-" + dask.base.tokenize(array, chunks),
                      getitem=_read_block)
    # The source travels with the Dask array, so that a streamed pass on a cluster
    # can read its blocks in a few tasks instead of a graph (``_engine.Runner``).
    # Anything derived from ``x`` (a slice, a cast) has no such attribute.
    x.zarr_source = array
    return x


class _ChunkFiles(NamedTuple):
    """Where the chunks of a 2-D Zarr array lie as files, and how to decode one."""

    root: Path  #: the array's folder
    rows: int  #: rows per chunk (every chunk holds all the features)
    codec: Any  #: a numcodecs codec that decodes a stored chunk; None: stored raw


def _local_folder(array: zarr.Array) -> Path | None:
    """The folder of an array in zarr's own local store (None for other stores, subclasses
    included: they may read their files another way)."""
    store = array.store
    return Path(store.root, array.path) if type(store) is zarr.storage.LocalStore else None


def _absolute(array: zarr.Array) -> zarr.Array:
    """``array`` itself, or, in a local store given by a relative path, the same array
    opened from the absolute path: a worker with another working directory reads it too."""
    folder = _local_folder(array)
    if folder is None or Path(array.store.root).is_absolute():
        return array
    store = zarr.storage.LocalStore(Path(array.store.root).absolute(), read_only=True)
    return zarr.open_array(store=store, path=array.path, mode="r")


def _check_local_folder(array: zarr.Array, action: str) -> None:
    """Refuse to read or write an array of a local store whose folder this process cannot
    see: zarr would read fill values (zeros) for its chunks, or write them elsewhere."""
    folder = _local_folder(array)
    if folder is not None and not folder.is_dir():
        import socket

        raise StoreNotFoundError(
            f"Cannot {action} the Zarr array at {str(folder)!r}: no such folder on "
            f"{socket.gethostname()!r} (pid {os.getpid()}). Every worker must see the data "
            "at the same path: put it on a filesystem they share, or use a URL (s3://, gs://, "
            "...).")


def _big_endian(dtype: Any) -> bool:
    """Whether a data type in Zarr metadata is big-endian (zarr >= 3.1: a ``ZDType``; 3.0: NumPy's)."""
    return getattr(dtype, "endianness", None) == "big" or getattr(dtype, "byteorder", "") == ">"


def _chunk_files(array: zarr.Array) -> _ChunkFiles | None:
    """How to read ``array``'s chunks straight from their files, or None where zarr must.

    Only zarr's own local store (``zarr.storage.LocalStore``), no sharding, every
    chunk holding all the features, little-endian values stored in C order
    with no filter and either no compressor or one blosc or zstd codec.
    """
    if (_local_folder(array) is None or array.ndim != 2
            or array.chunks[1] != array.shape[1] or sys.byteorder != "little"
            or _big_endian(array.metadata.dtype)):
        return None
    meta = array.metadata
    if meta.zarr_format == 3:
        first, *rest = meta.codecs
        if (not isinstance(first, zarr.codecs.BytesCodec) or len(rest) > 1
                or getattr(first.endian, "value", None) == "big"):
            return None
        stored = rest[0] if rest else None
        codecs = {zarr.codecs.BloscCodec: numcodecs.Blosc, zarr.codecs.ZstdCodec: numcodecs.Zstd}
        if stored is not None and type(stored) not in codecs:
            return None
        codec = None if stored is None else codecs[type(stored)]()  # frames describe themselves
    else:
        if meta.filters or meta.order != "C" or not isinstance(
                meta.compressor, (type(None), numcodecs.Blosc, numcodecs.Zstd)):
            return None
        codec = meta.compressor
    return _ChunkFiles(_local_folder(array), array.chunks[0], codec)


def _frame_bytes(codec: Any, stored: bytes) -> int | None:
    """How many bytes a blosc or zstd frame decodes to, from its header (None: unknown).

    Blosc (1.x format): ``nbytes``, bytes 4-8.  Zstandard (RFC 8878, 3.1.1): the magic
    number, the frame header descriptor, then the window descriptor (unless single
    segment), the dictionary ID and the frame content size, whose widths the descriptor
    gives.
    """
    if isinstance(codec, numcodecs.Blosc):
        return int.from_bytes(stored[4:8], "little") if len(stored) >= 16 else None
    if len(stored) < 5 or stored[:4] != b"\x28\xb5\x2f\xfd":
        return None
    descriptor = stored[4]
    single_segment = (descriptor >> 5) & 1
    size_bytes = (single_segment, 2, 4, 8)[descriptor >> 6]
    at = 5 + (1 - single_segment) + (0, 1, 2, 4)[descriptor & 3]
    if size_bytes == 0 or len(stored) < at + size_bytes:
        return None
    size = int.from_bytes(stored[at : at + size_bytes], "little")
    return size + 256 if size_bytes == 2 else size


def _read_chunk(files: _ChunkFiles, array: zarr.Array, chunk: int, first: int,
                out: np.ndarray) -> bool:
    """Rows ``first:first + len(out)`` of chunk ``chunk`` into ``out``; False if its file is
    missing (a chunk never written holds the fill value) or not what it should be."""
    path = files.root / array.metadata.encode_chunk_key((chunk, 0))
    try:
        f = open(path, "rb", buffering=0)
    except FileNotFoundError:
        return False
    with f:
        row_bytes = out.itemsize * out.shape[1]
        if files.codec is None:
            if os.fstat(f.fileno()).st_size != files.rows * row_bytes:
                return False
            f.seek(first * row_bytes)
            return f.readinto(memoryview(out).cast("B")) == out.nbytes
        stored = f.read()
    try:
        if len(out) == files.rows:
            # Straight into place, no copy of the chunk; the codecs fill ``out`` only as
            # far as the frame goes, so a frame of another size is zarr's to report.
            if _frame_bytes(files.codec, stored) != out.nbytes:
                return False
            files.codec.decode(stored, out=out)
            return True
        # An edge chunk (stored whole) or a range that starts or ends inside a chunk.
        whole = np.frombuffer(files.codec.decode(stored), dtype=out.dtype)
    except MemoryError:
        raise
    except Exception:  # a damaged chunk: zarr reads it again and reports it its own way
        return False
    if whole.size != files.rows * out.shape[1]:
        return False
    out[...] = whole.reshape(files.rows, out.shape[1])[first : first + len(out)]
    return True


def read_rows(array: zarr.Array, start: int, stop: int) -> np.ndarray:
    """``array[start:stop]`` of a 2-D Zarr array, read straight from its chunk files when it can.

    Zarr's own read of a chunk (the store's bytes, the codec pipeline, a copy
    into the result) took 1.8 ms for an 8 MiB uncompressed chunk here; reading
    the file into the result takes 0.5 ms, and decoding blosc-lz4 or zstd
    straight into the result saves ~1.8 ms a chunk (``benchmarks/out_of_core.py``
    measures a pass).  Where the layout is one zarr knows better (another store,
    sharding, filters, other codecs, split features, big-endian values) or a
    chunk's file is missing or damaged, zarr reads it.  The result is always
    equal to ``array[start:stop]`` (``start`` and ``stop`` taken as a slice's).

    Raises
    ------
    StoreNotFoundError
        The array is in a local store whose folder this process cannot see (a
        worker without the caller's filesystem), where zarr would read zeros.
    """
    start, stop, _ = slice(start, stop).indices(array.shape[0])  # as a slice: clipped
    _check_local_folder(array, "read")
    files = _chunk_files(array) if stop > start else None
    if files is None:
        return array[start:stop]
    out = np.empty((stop - start, array.shape[1]), dtype=array.dtype)
    for chunk in range(start // files.rows, (stop - 1) // files.rows + 1):
        lo, hi = max(start, chunk * files.rows), min(stop, (chunk + 1) * files.rows)
        target = out[lo - start : hi - start]
        if not _read_chunk(files, array, chunk, lo - chunk * files.rows, target):
            target[...] = array[lo:hi]
    return out


def _create_group(path: PathLike, storage_options: dict[str, Any] | None, overwrite: bool,
                  attrs: Mapping[str, Any]) -> zarr.Group:
    shown = str(path)
    path = _store_path(path, storage_options)
    if not overwrite and not _is_url(path) and Path(path).exists():
        raise FileExistsError(f"{shown!r} exists. Choose another path or pass overwrite=True.")
    try:
        group = _open(path, "w" if overwrite else "w-", storage_options, zarr.open_group)
    except FileExistsError as exc:
        raise FileExistsError(
            f"{shown!r} exists. Choose another path or pass overwrite=True.") from exc
    group.attrs.update(dict(attrs))
    return group


def write_blobs(
    path: PathLike,
    n_samples: int = 200_000,
    n_features: int = 8,
    n_clusters: int = 8,
    *,
    cluster_std: float = 1.0,
    center_box: float = 10.0,
    chunk_rows: int = 65_536,
    dtype: str = "float32",
    compressor: str = DEFAULT_DATA_COMPRESSOR,
    random_state: int = 0,
    overwrite: bool = False,
    storage_options: dict[str, Any] | None = None,
    n_threads: int = 4,
) -> zarr.Group:
    """Write a Gaussian-blob dataset of any size to a Zarr group, one chunk at a time.

    The group holds ``X`` (n_samples, n_features), ``labels`` (n_samples,)
    int32 and ``centers`` (n_clusters, n_features), the generating centers.
    Memory use is about two chunks per thread, whatever ``n_samples``; each
    chunk has its own seed, so the data depend neither on the order chunks
    are written in nor on ``n_threads``.

    Parameters
    ----------
    path : str or os.PathLike
        Local path or fsspec URL of the group to create.
    chunk_rows : int, default=65536
        Rows per Zarr chunk of ``X`` and ``labels`` (every chunk holds all features).
    dtype : {"float32", "float64"}, default="float32"
    compressor : {"blosc-lz4", "zstd", "none"}, default="none"
        See :data:`COMPRESSORS` and :data:`DEFAULT_DATA_COMPRESSOR`.
    storage_options : dict, optional
        fsspec options for a URL.
    n_threads : int, default=4
        Chunks generated and written at the same time.

    Returns
    -------
    zarr.Group
        The group, opened read-only.
    """
    if min(n_samples, n_features, n_clusters, chunk_rows, n_threads) < 1:
        raise InputError(
            "n_samples, n_features, n_clusters, chunk_rows and n_threads must be positive; got "
            f"{n_samples}, {n_features}, {n_clusters}, {chunk_rows}, {n_threads}."
        )
    if np.dtype(dtype) not in (np.float32, np.float64):
        raise InputError(f"dtype must be 'float32' or 'float64'; got {dtype!r}.")
    compressors = _compressors(compressor)
    rng = np.random.default_rng(random_state)
    centers = rng.uniform(-center_box, center_box, size=(n_clusters, n_features))
    group = _create_group(path, storage_options, overwrite, {
        "generator": "dask_softkmeans.io.write_blobs", "cluster_std": cluster_std,
        "random_state": random_state, "compressor": compressor})
    group.create_array("centers", data=centers)
    x = group.create_array(
        "X", shape=(n_samples, n_features), chunks=(chunk_rows, n_features), dtype=dtype,
        compressors=compressors)
    labels = group.create_array(
        "labels", shape=(n_samples,), chunks=(chunk_rows,), dtype="int32", compressors=compressors)
    typed_centers = centers.astype(dtype)

    def write_chunk(index: int) -> None:
        start = index * chunk_rows
        stop = min(start + chunk_rows, n_samples)
        block_rng = np.random.default_rng([random_state, index])
        y = block_rng.integers(0, n_clusters, size=stop - start).astype(np.int32)
        # Noise drawn in the target dtype: no float64 temporary for float32 data.
        block = block_rng.standard_normal((stop - start, n_features), dtype=dtype)
        block *= cluster_std
        block += typed_centers[y]
        x[start:stop] = block
        labels[start:stop] = y

    # A few threads: drawing, compressing and writing release the GIL.  Each
    # holds one chunk at a time, so memory stays a few chunks whatever n_samples.
    n_chunks = -(-n_samples // chunk_rows)
    with ThreadPoolExecutor(max(1, min(n_threads, n_chunks))) as pool:
        for _ in pool.map(write_chunk, range(n_chunks)):
            pass
    return zarr.open_group(group.store, mode="r")


def _row_starts(chunks: tuple[int, ...]) -> Iterator[tuple[int, int]]:
    start = 0
    for size in chunks:
        yield start, start + size
        start += size


def _write_block(x: np.ndarray, start: int, stop: int, shared: dict[str, Any]) -> int:
    """Compute one block's per-row results and write them straight to their Zarr arrays."""
    for target in shared["targets"].values():
        _check_local_folder(target, "write to")  # not into a folder of this worker's own
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
    count per block returns to the caller.

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
    compressors = _compressors(compressor)
    group = _create_group(path, storage_options, overwrite, attrs or {})
    targets = {}
    for name, (dtype, width) in outputs.items():
        shape = (X.shape[0],) if width is None else (X.shape[0], width)
        chunks = (rows[0],) if width is None else (rows[0], width)
        targets[name] = group.create_array(
            name, shape=shape, chunks=chunks, dtype=dtype, compressors=compressors)
    # One key for what every task shares, so it is not copied into each task.
    shared = dask.delayed({"targets": targets, "func": func, "params": params}, traverse=False)
    write = dask.delayed(_write_block, pure=False)
    blocks = X.to_delayed(optimize_graph=True).ravel()
    tasks = [write(block, start, stop, shared)
             for block, (start, stop) in zip(blocks, _row_starts(rows), strict=True)]
    dask.compute(*tasks)
    return zarr.open_group(group.store, mode="r")


#: Version of the model file format written by :func:`save_arrays`.
MODEL_FORMAT_VERSION = 1


def save_arrays(path: PathLike, meta: dict[str, Any], arrays: dict[str, np.ndarray],
                *, overwrite: bool = False) -> None:
    """Write a model file: numeric arrays plus JSON metadata in one ``.npz``, atomically.

    The file holds no pickled objects: :func:`load_arrays` reads it with
    ``allow_pickle=False``, so loading never runs code.
    """
    import json

    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{str(path)!r} exists. Choose another path or pass overwrite=True.")
    payload = {"format": "dask-softkmeans-model", "version": MODEL_FORMAT_VERSION, **meta}
    text = json.dumps(payload)  # fails before any file is touched
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            np.savez(f, __meta__=np.array(text), **arrays)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_arrays(path: PathLike) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read a model file written by :func:`save_arrays`; never unpickles, never runs code.

    Raises
    ------
    StoreNotFoundError
        Nothing is stored at ``path``.
    ModelFileError
        ``path`` is not a model file, or it is damaged, truncated, or written
        by a newer version of the format.
    """
    import json
    import zipfile

    from .errors import ModelFileError

    path = Path(path)
    name = repr(str(path))
    if not path.exists():
        raise StoreNotFoundError(f"No model file at {name}. Check the path.")
    if path.is_dir():
        raise ModelFileError(
            f"{name} is a directory, not a model file. Point at the .npz file that "
            "SoftKMeans.save or `dask-softkmeans fit --out` wrote.")
    if not zipfile.is_zipfile(path):
        # A truncated .npz loses its zip directory (at the end), so it lands here too.
        raise ModelFileError(
            f"{name} is not a dask-softkmeans model file: it is not an .npz archive (another "
            "kind of file, or a damaged or truncated one). Check the path, or fit and save the "
            "model again.")
    try:
        with np.load(path, allow_pickle=False) as archive:
            if "__meta__" not in archive.files:
                raise ModelFileError(
                    f"{name} is an .npz archive but not a dask-softkmeans model file (it has no "
                    "model metadata). Check the path; models are written by SoftKMeans.save.")
            text = str(archive["__meta__"])
            arrays = {key: archive[key] for key in archive.files if key != "__meta__"}
        meta = json.loads(text)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
        if isinstance(exc, ModelFileError):
            raise
        # ValueError covers an object (pickled) array: it is refused, not loaded.
        raise ModelFileError(
            f"{name} is a damaged dask-softkmeans model file ({exc}). Fit and save the "
            "model again.") from exc
    if not isinstance(meta, dict) or meta.get("format") != "dask-softkmeans-model":
        raise ModelFileError(
            f"{name} is not a dask-softkmeans model file (its metadata name no model "
            "format). Check the path; models are written by SoftKMeans.save.")
    version = meta.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ModelFileError(
            f"{name} has a damaged format version ({version!r}). Fit and save the model again.")
    if version > MODEL_FORMAT_VERSION:
        raise ModelFileError(
            f"{name} was written by a newer dask-softkmeans (format version "
            f"{version} > {MODEL_FORMAT_VERSION}, the newest this one reads). Upgrade "
            "dask-softkmeans to read it.")
    return meta, arrays
