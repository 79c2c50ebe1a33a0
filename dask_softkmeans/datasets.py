"""Datasets to try the library on, written to Zarr of any size (like ``sklearn.datasets``)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import zarr

from ._typing import PathLike
from .errors import InputError
from .io.stores import compressors, create_group, mark_complete

#: The generated blobs are stored uncompressed by default: Gaussian float noise
#: hardly compresses, while decoding it is the largest cost of a streamed pass
#: (``benchmarks/out_of_core.py`` compares the codecs).
DEFAULT_DATA_COMPRESSOR = "none"


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
        See :data:`.io.COMPRESSORS` and :data:`DEFAULT_DATA_COMPRESSOR`.
    storage_options : dict, optional
        fsspec options for a URL.
    n_threads : int, default=4
        Chunks generated and written at the same time.

    Returns
    -------
    zarr.Group
        The group, opened read-only.  It is created marked incomplete and marked
        complete after its last chunk is written (:data:`.io.stores.MARKER`): the
        arrays of a group whose write was interrupted are refused by
        :func:`.io.open_array`.
    """
    if min(n_samples, n_features, n_clusters, chunk_rows, n_threads) < 1:
        raise InputError(
            "n_samples, n_features, n_clusters, chunk_rows and n_threads must be positive; got "
            f"{n_samples}, {n_features}, {n_clusters}, {chunk_rows}, {n_threads}."
        )
    if np.dtype(dtype) not in (np.float32, np.float64):
        raise InputError(f"dtype must be 'float32' or 'float64'; got {dtype!r}.")
    codecs = compressors(compressor)
    rng = np.random.default_rng(random_state)
    centers = rng.uniform(-center_box, center_box, size=(n_clusters, n_features))
    group = create_group(path, storage_options, overwrite, {
        "generator": "dask_softkmeans.datasets.write_blobs", "cluster_std": cluster_std,
        "random_state": random_state, "compressor": compressor})
    group.create_array("centers", data=centers)
    x = group.create_array(
        "X", shape=(n_samples, n_features), chunks=(chunk_rows, n_features), dtype=dtype,
        compressors=codecs)
    labels = group.create_array(
        "labels", shape=(n_samples,), chunks=(chunk_rows,), dtype="int32", compressors=codecs)
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
    mark_complete(group)  # only now: an interrupted write leaves a group marked incomplete
    return zarr.open_group(group.store, mode="r")
