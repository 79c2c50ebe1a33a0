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
from .errors import ChunkingError, InputError, NonNumericError

ArrayLike = Any  # NumPy array, Dask array, zarr.Array, path or URL, or nested lists


def _check_shape_dtype(shape: tuple[int, ...], dtype: np.dtype, what: str) -> None:
    """Refuse what no pass can cluster, from metadata alone.

    Some phrases ("Reshape your data", "Complex data not supported",
    "0 feature(s) (shape=...) while a minimum of 1 is required") are the ones
    scikit-learn's estimator checks look for.
    """
    if len(shape) != 2:
        hint = (
            " Reshape your data with X.reshape(-1, 1) if it holds one feature, or "
            "X.reshape(1, -1) if it holds one sample."
            if len(shape) == 1
            else " Reshape your data: flatten the trailing axes into one feature axis, "
            "e.g. X.reshape(len(X), -1)."
        )
        raise InputError(
            f"{what} must be a 2-D array (n_samples, n_features); got {len(shape)}-D "
            f"with shape {tuple(shape)}.{hint}"
        )
    if np.issubdtype(dtype, np.complexfloating):
        raise NonNumericError(
            f"Complex data not supported: {what} has dtype {dtype}. Cluster the real and "
            f"imaginary parts as separate features, e.g. np.hstack([{what}.real, {what}.imag])."
        )
    if not (np.issubdtype(dtype, np.number) or np.issubdtype(dtype, np.bool_)):
        raise NonNumericError(
            f"{what} has dtype {dtype}; clustering needs real numbers. Encode or drop the "
            f"non-numeric columns, then convert, e.g. {what}.astype('float32')."
        )
    if shape[0] == 0 or shape[1] == 0:
        raise InputError(
            f"{what} is empty: {shape[0]} sample(s) and {shape[1]} feature(s) "
            f"(shape={tuple(shape)}) while a minimum of 1 is required. Pass at least one "
            "sample and one feature."
        )


def check_in_memory(X: ArrayLike, *, what: str = "X") -> tuple[int, ...]:
    """Refuse in-memory input (NumPy, lists, pandas) that cannot be clustered; return its shape.

    Runs before scikit-learn's own conversion so that every refusal is one of
    our errors with the fix in its message.  Numbers stored with dtype
    ``object`` are accepted (they are converted later); anything else that is
    not a real number is refused.
    """
    if hasattr(X, "tocsr") or type(X).__module__.startswith("scipy.sparse"):
        raise InputError(
            f"{what} is a sparse matrix; SoftKMeans needs dense data. Convert it with "
            f"{what}.toarray() if it fits in memory, or pass a Dask array."
        )
    try:
        array = np.asarray(X)
    except (ValueError, TypeError) as exc:
        raise InputError(
            f"{what} is not a rectangular array of numbers ({exc}). Give every row the same "
            "number of features."
        ) from exc
    if array.dtype == object:
        try:
            array = array.astype(np.float64)
        except (ValueError, TypeError) as exc:
            raise NonNumericError(
                f"{what} holds values that are not numbers ({exc}). Encode or drop the "
                f"non-numeric columns, then convert, e.g. {what}.astype('float64')."
            ) from exc
    _check_shape_dtype(array.shape, array.dtype, what)
    return array.shape


def feature_count_error(n_features: int, expected: int, owner: str, what: str = "X") -> InputError:
    """The error for data whose number of features differs from the fitted model's."""
    return InputError(
        f"{what} has {n_features} features, but {owner} is expecting {expected} features as "
        f"input. Pass data with the same {expected} columns, in the same order, as at fit time."
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
