"""Turn what a user passes as data into a validated NumPy or Dask array.

Checks here are on metadata only (shape, dtype, chunks): they cost nothing
whatever the size of the data.  Values (NaN, infinity) are checked inside the
first pass over the data, not by an extra one.
"""

from __future__ import annotations

import os
from typing import Any

import dask.array as da
import numpy as np
import zarr

from . import io
from .errors import ChunkingError, InputError

ArrayLike = Any  # NumPy array, Dask array, zarr.Array, path or URL, or nested lists


def _check_shape_dtype(shape: tuple[int, ...], dtype: np.dtype, what: str) -> None:
    if len(shape) != 2:
        hint = (
            " Reshape it with X.reshape(-1, 1) if it holds one feature, or "
            "X.reshape(1, -1) if it holds one sample."
            if len(shape) == 1
            else " Flatten the trailing axes into one feature axis first."
        )
        raise InputError(
            f"{what} must be a 2-D array (n_samples, n_features); got {len(shape)}-D "
            f"with shape {tuple(shape)}.{hint}"
        )
    if not (np.issubdtype(dtype, np.number) or np.issubdtype(dtype, np.bool_)) or np.issubdtype(
        dtype, np.complexfloating
    ):
        raise InputError(
            f"{what} has dtype {dtype}; clustering needs real numbers. Convert it, "
            "e.g. with X.astype('float32')."
        )
    if shape[0] == 0 or shape[1] == 0:
        raise InputError(
            f"{what} is empty: shape {tuple(shape)}. It needs at least one sample and one feature."
        )


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
    to one feature chunk.  Nothing the user passed is modified.
    """
    if isinstance(X, (str, os.PathLike)):
        X = io.open_array(X, storage_options=storage_options)
    if isinstance(X, zarr.Array):
        _check_shape_dtype(X.shape, X.dtype, what)
        X = io.to_dask(X)
    if isinstance(X, da.Array):
        if any(np.isnan(c) for chunks in X.chunks for c in chunks):
            raise ChunkingError(
                f"{what} is a Dask array with unknown chunk sizes. Call "
                f"{what}.compute_chunk_sizes() first (or build it with known lengths)."
            )
        _check_shape_dtype(X.shape, X.dtype, what)
        if len(X.chunks[1]) > 1:
            X = X.rechunk({1: X.shape[1]})
        dtype = _float_dtype(X.dtype)
        return X if X.dtype == dtype else X.astype(dtype)
    X = np.asarray(X)
    _check_shape_dtype(X.shape, X.dtype, what)
    dtype = _float_dtype(X.dtype)
    return X if X.dtype == dtype else X.astype(dtype)


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
        # Dask weights are checked inside the first pass (non-finite or negative
        # weights show up as a non-finite or negative total).
        sample_weight = da.asarray(sample_weight).astype(np.float64).rechunk((X.chunks[0],))
    elif isinstance(sample_weight, da.Array):
        return as_weights(sample_weight.compute(), X)
    return sample_weight
