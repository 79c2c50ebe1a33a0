"""Zarr input and output: open arrays, write generated data.

This module knows Zarr and Dask arrays; it knows nothing of the clustering.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import zarr

from .errors import InputError, StoreNotFoundError

PathLike = str | os.PathLike


def open_array(
    path: PathLike, *, storage_options: dict[str, Any] | None = None
) -> zarr.Array:
    """Open a 2-D numeric Zarr array (v2 or v3) read-only, from a path or fsspec URL.

    Raises
    ------
    StoreNotFoundError
        Nothing is stored at ``path``.
    InputError
        ``path`` holds a group, or an array that is not 2-D and numeric.
    """
    try:
        node = zarr.open(store=str(path), mode="r", storage_options=storage_options)
    except FileNotFoundError as exc:
        raise StoreNotFoundError(
            f"No Zarr array at {str(path)!r}. Check the path, or write one with "
            "`dask-softkmeans make-data PATH` or dask_softkmeans.io.write_blobs."
        ) from exc
    if isinstance(node, zarr.Group):
        arrays = sorted(name for name, _ in node.arrays())
        raise InputError(
            f"{str(path)!r} is a Zarr group, not an array. Point at one of its arrays"
            + (f", e.g. {str(path).rstrip('/')}/{arrays[0]} (arrays: {', '.join(arrays)})."
               if arrays else "; it holds none.")
        )
    return node


def to_dask(array: zarr.Array) -> da.Array:
    """A Dask array over a Zarr array: row chunks aligned to the Zarr chunks, all features in one."""
    rows = array.chunks[0]
    shards = getattr(array, "shards", None)
    if shards:
        # Read whole shards: a chunk inside a shard is not an independent object.
        rows = shards[0]
    x = da.from_zarr(array, chunks=(rows, array.shape[1]) if array.ndim == 2 else None)
    return x


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
    random_state: int = 0,
    overwrite: bool = False,
) -> zarr.Group:
    """Write a Gaussian-blob dataset to a Zarr group, one chunk at a time.

    The group holds ``X`` (n_samples, n_features), ``labels`` (n_samples,)
    and ``centers`` (n_clusters, n_features), the generating centers.  Memory
    use is one chunk, whatever ``n_samples``; each chunk has its own seed, so
    the data do not depend on the order chunks are written in.

    Returns
    -------
    zarr.Group
        The group, opened read-only.
    """
    if n_samples < 1 or n_features < 1 or n_clusters < 1:
        raise InputError(
            "n_samples, n_features and n_clusters must be positive; got "
            f"{n_samples}, {n_features}, {n_clusters}."
        )
    path = str(path)
    if not overwrite and Path(path).exists():
        raise FileExistsError(f"{path!r} exists. Choose another path or pass overwrite=True.")
    rng = np.random.default_rng(random_state)
    centers = rng.uniform(-center_box, center_box, size=(n_clusters, n_features))
    group = zarr.open_group(path, mode="w")
    group.attrs.update(
        {"generator": "dask_softkmeans.io.write_blobs", "cluster_std": cluster_std,
         "random_state": random_state}
    )
    group.create_array("centers", data=centers)
    x = group.create_array(
        "X", shape=(n_samples, n_features), chunks=(chunk_rows, n_features), dtype=dtype
    )
    labels = group.create_array(
        "labels", shape=(n_samples,), chunks=(chunk_rows,), dtype="int32"
    )
    for index, start in enumerate(range(0, n_samples, chunk_rows)):
        stop = min(start + chunk_rows, n_samples)
        block_rng = np.random.default_rng([random_state, index])
        y = block_rng.integers(0, n_clusters, size=stop - start).astype(np.int32)
        noise = block_rng.standard_normal((stop - start, n_features)) * cluster_std
        x[start:stop] = (centers[y] + noise).astype(dtype)
        labels[start:stop] = y
    return zarr.open_group(path, mode="r")


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
    """Read a model file written by :func:`save_arrays`; never unpickles."""
    import json
    import zipfile

    path = Path(path)
    if not path.exists():
        raise StoreNotFoundError(f"No model file at {str(path)!r}.")
    try:
        with np.load(path, allow_pickle=False) as archive:
            meta = json.loads(str(archive["__meta__"]))
            arrays = {name: archive[name] for name in archive.files if name != "__meta__"}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
        raise InputError(
            f"{str(path)!r} is not a readable dask-softkmeans model file ({exc}). "
            "It may be damaged or truncated: fit and save the model again."
        ) from exc
    if meta.get("format") != "dask-softkmeans-model":
        raise InputError(f"{str(path)!r} is not a dask-softkmeans model file.")
    if meta.get("version", 0) > MODEL_FORMAT_VERSION:
        raise InputError(
            f"{str(path)!r} was written by a newer dask-softkmeans (format version "
            f"{meta['version']} > {MODEL_FORMAT_VERSION}). Upgrade dask-softkmeans to read it."
        )
    return meta, arrays
