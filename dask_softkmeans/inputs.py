"""Turn what a user passes as data into a validated NumPy or Dask array.

Checks here are on metadata only (shape, dtype, chunks, see
:mod:`.validation`): they cost nothing whatever the size of the data.  Values
(NaN, infinity) are checked inside the first pass over the data, not by an
extra one.
"""

from __future__ import annotations

import os
from typing import Any

import dask.array as da
import numpy as np
import zarr

from . import io
from ._typing import ArrayLike
from .errors import ChunkingError, InputError
from .validation import check_in_memory, check_shape_dtype


def _float_dtype(dtype: np.dtype) -> np.dtype:
    """float32 stays float32 (float16 widens to it); integers and bools become float64."""
    if dtype == np.float32 or dtype == np.float16:
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def as_data(
    X: ArrayLike, *, what: str = "X", storage_options: dict[str, Any] | None = None
) -> np.ndarray | da.Array:
    """Validate ``X`` and return a float NumPy array or a row-chunked float Dask array.

    Zarr arrays and paths become Dask arrays whose row chunks follow the Zarr
    chunks.  A Dask array chunked along the feature axis is rechunked lazily
    to one feature chunk.  Nothing the user passed is modified.  ``storage_options``
    (fsspec's, for a URL) apply to a path only.
    """
    if isinstance(X, (str, os.PathLike)):
        X = io.open_array(X, storage_options=storage_options)
    elif storage_options:
        raise InputError(
            f"storage_options apply to a path or URL of a Zarr array, but {what} is a "
            f"{type(X).__name__}. Pass the URL (e.g. 's3://bucket/data.zarr/X') with them, "
            "or drop storage_options.")
    if isinstance(X, zarr.Array):
        check_shape_dtype(X.shape, X.dtype, what)
        X = io.to_dask(X)
    if isinstance(X, da.Array):
        if any(np.isnan(c) for chunks in X.chunks for c in chunks):
            raise ChunkingError(
                f"{what} is a Dask array with unknown chunk sizes. Call "
                f"{what}.compute_chunk_sizes() first (or build it with known lengths)."
            )
        check_shape_dtype(X.shape, X.dtype, what)
        if len(X.chunks[1]) > 1:
            X = X.rechunk({1: X.shape[1]})
        dtype = _float_dtype(X.dtype)
        return X if X.dtype == dtype else X.astype(dtype)
    check_in_memory(X, what=what)
    X = np.asarray(X)
    dtype = _float_dtype(X.dtype)
    return X if X.dtype == dtype else X.astype(dtype)


def _checked_weights(block: np.ndarray) -> np.ndarray:
    """A block of Dask sample weights, refused when any is negative or not finite."""
    bad = np.count_nonzero(~np.isfinite(block) | (block < 0))
    if bad:
        raise InputError(
            f"sample_weight must be finite and non-negative; found {bad} bad values in a "
            "block of the Dask array. Fix them, e.g. da.where(w >= 0, w, 0).")
    return block


def as_weights(
    sample_weight: ArrayLike | None, X: np.ndarray | da.Array
) -> np.ndarray | da.Array | None:
    """Validate sample weights against ``X``; Dask weights get ``X``'s row chunks."""
    if sample_weight is None:
        return None
    if np.isscalar(sample_weight):
        sample_weight = np.full(X.shape[0], float(sample_weight))
    if isinstance(sample_weight, zarr.Array):
        sample_weight = da.from_zarr(sample_weight)
    if not isinstance(sample_weight, da.Array):
        sample_weight = np.asarray(sample_weight, dtype=np.float64)
    if sample_weight.ndim != 1 or sample_weight.shape[0] != X.shape[0]:
        raise InputError(
            f"sample_weight must have shape ({X.shape[0]},), one weight per sample; "
            f"got shape {tuple(sample_weight.shape)}."
        )
    if isinstance(sample_weight, np.ndarray):
        bad = np.count_nonzero(~np.isfinite(sample_weight) | (sample_weight < 0))
        if bad:
            raise InputError(
                f"sample_weight must be finite and non-negative; found {bad} bad values."
            )
    if isinstance(X, da.Array):
        # Dask weights are checked block by block when a pass reads them, not by
        # an extra pass (fit's first pass also counts them).
        sample_weight = (da.asarray(sample_weight).astype(np.float64).rechunk((X.chunks[0],))
                         .map_blocks(_checked_weights, dtype=np.float64))
    elif isinstance(sample_weight, da.Array):
        return as_weights(sample_weight.compute(), X)
    return sample_weight
