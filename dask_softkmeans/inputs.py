"""Turn what a user passes as data into a validated NumPy or Dask array.

Checks here are on metadata only (shape, dtype, chunks, see
:mod:`.validation`): they cost nothing whatever the size of the data.  Values
(NaN, infinity) are checked inside the first pass over the data, not by an
extra one.

Containers (xarray ``DataArray`` and ``Dataset``, Zarr groups written by
xarray, pandas and Dask DataFrames) are unwrapped by :func:`as_features` into
the array they hold, without computing it: a Dask-backed container gives a
Dask array.  xarray, pandas and ``dask.dataframe`` are never imported here
unless the user's object comes from them (or a Zarr group is opened).
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Sequence
from typing import Any

import dask.array as da
import numpy as np
import zarr

from . import io
from ._typing import ArrayLike
from .errors import ChunkingError, InputError, MissingDependencyError
from .kernels.array_api import astype_named, is_foreign_array, numpy_dtype
from .validation import check_in_memory, check_shape_dtype


def _float_dtype(dtype: np.dtype) -> np.dtype:
    """float32 stays float32 (float16 widens to it); integers and bools become float64."""
    if dtype == np.float32 or dtype == np.float16:
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def as_data(
    X: ArrayLike, *, what: str = "X", storage_options: dict[str, Any] | None = None,
    variables: Sequence[str] | None = None, unknown_rows: bool = False,
) -> np.ndarray | da.Array:
    """Validate ``X`` and return a float NumPy array or a row-chunked float Dask array.

    Zarr arrays and paths become Dask arrays whose row chunks follow the Zarr
    chunks.  A Dask array chunked along the feature axis is rechunked lazily
    to one feature chunk.  Containers are unwrapped first (see
    :func:`as_features` for ``variables``).  A Dask array of unknown row
    counts is refused unless ``unknown_rows`` (results of a Dask DataFrame
    that are returned lazily: its row counts are left unknown, not computed).
    Nothing the user passed is modified.
    ``storage_options`` (fsspec's, for a URL) apply to a path only.
    """
    X, _ = as_features(X, variables=variables, storage_options=storage_options,
                       unknown_rows=unknown_rows, what=what)
    if isinstance(X, zarr.Array):
        check_shape_dtype(X.shape, X.dtype, what)
        X = io.to_dask(X)
    if isinstance(X, da.Array):
        if any(np.isnan(c) for chunks in X.chunks[int(unknown_rows):] for c in chunks):
            raise ChunkingError(
                f"{what} is a Dask array with unknown chunk sizes. Call "
                f"{what}.compute_chunk_sizes() first (or build it with known lengths)."
            )
        if is_foreign_array(X._meta):
            return _foreign_data(X, what)
        check_shape_dtype(X.shape, X.dtype, what)
        if len(X.chunks[1]) > 1:
            X = X.rechunk({1: X.shape[1]})
        dtype = _float_dtype(X.dtype)
        return X if X.dtype == dtype else X.astype(dtype)
    check_in_memory(X, what=what)
    X = np.asarray(X)
    dtype = _float_dtype(X.dtype)
    return X if X.dtype == dtype else X.astype(dtype)


def _foreign_data(X: da.Array, what: str) -> da.Array:
    """A Dask array whose chunks are arrays of another library (CuPy, JAX, ...), kept so:
    its dtype is checked by name, and a conversion to float runs in that library, block by
    block (Dask's own ``astype`` and ``rechunk`` would need NumPy's functions on the chunks)."""
    dtype = numpy_dtype(X.dtype)
    check_shape_dtype(X.shape, dtype, what)
    if len(X.chunks[1]) > 1:
        raise ChunkingError(
            f"{what} is a Dask array of {type(X._meta).__module__.split('.')[0]} chunks split "
            f"along the features ({len(X.chunks[1])} column chunks). Rechunk it to whole rows "
            f"first: {what}.rechunk({{1: {X.shape[1]}}}).")
    target = _float_dtype(dtype)
    if dtype == target:
        return X
    return X.map_blocks(astype_named, target.name, meta=astype_named(X._meta, target.name))


# -- containers -------------------------------------------------------------------

def _module(name: str) -> Any:
    """The module ``name`` if something already imported it (the user's object may come
    from it); None otherwise, so that checking a NumPy array imports nothing."""
    return sys.modules.get(name)


def _is_instance(X: Any, module: str, cls: str) -> bool:
    mod = _module(module)
    return mod is not None and isinstance(X, getattr(mod, cls))


def is_dask_frame(X: Any) -> bool:
    """Whether ``X`` is a Dask DataFrame (without importing ``dask.dataframe``)."""
    return _is_instance(X, "dask.dataframe", "DataFrame")


def is_pandas_frame(X: Any) -> bool:
    """Whether ``X`` is a pandas DataFrame (without importing pandas)."""
    return _is_instance(X, "pandas", "DataFrame")


def _require(module: str, extra: str, why: str) -> Any:
    """Import an optional dependency, or say which extra installs it."""
    try:
        return __import__(module, fromlist=["_"])
    except ImportError as exc:
        raise MissingDependencyError(
            f"{why} needs {module}, which is not installed. Install it with "
            f'pip install "dask-softkmeans[{extra}]".') from exc


def _feature_names(values: Any) -> list[str] | None:
    """Names as scikit-learn keeps them: only when every one is a string."""
    names = [v.item() if isinstance(v, np.generic) else v for v in np.asarray(values).tolist()]
    return names if names and all(isinstance(n, str) for n in names) else None


def _check_numeric(dtypes: Any, what: str) -> None:
    """Refuse DataFrame columns that are not numbers (or booleans), naming them."""
    types = _module("pandas").api.types  # DataFrames, pandas or Dask, have pandas dtypes
    bad = {str(name): str(dtype) for name, dtype in dtypes.items()
           if not (types.is_numeric_dtype(dtype) or types.is_bool_dtype(dtype))}
    if bad:
        listed = ", ".join(f"{name!r} ({dtype})" for name, dtype in bad.items())
        raise InputError(
            f"{what} has columns that are not numeric: {listed}. Select the numeric ones "
            f"(e.g. X.select_dtypes('number')) or encode them as numbers first.")


def _dataset_array(ds: Any, variables: Sequence[str] | None, what: str) -> tuple[Any, list[str]]:
    """The chosen data variables of an xarray Dataset as columns of one 2-D array."""
    names = list(ds.data_vars) if variables is None else [str(v) for v in variables]
    if not names:
        raise InputError(f"{what} is an xarray Dataset without data variables; it holds only "
                         "coordinates. Pass a Dataset with one 1-D variable per feature.")
    missing = [n for n in names if n not in ds.data_vars]
    if missing:
        raise InputError(
            f"{what} has no data variable {', '.join(map(repr, missing))}; its data variables "
            f"are {', '.join(map(repr, ds.data_vars)) or 'none'} (coordinates are never "
            "features). Choose among them with variables=[...].")
    dims = {n: ds[n].dims for n in names}
    if any(len(d) != 1 for d in dims.values()) or len(set(dims.values())) > 1:
        shown = ", ".join(f"{n!r} {tuple(d)}" for n, d in dims.items())
        raise InputError(
            f"Each feature of {what} must be a 1-D variable along one sample dimension; got "
            f"{shown}. Choose 1-D variables with variables=[...], pass a 2-D variable as a "
            "DataArray (ds['name']), or stack dimensions first (ds.stack(sample=(...))).")
    columns = [ds[n].data for n in names]
    if any(isinstance(c, da.Array) for c in columns):
        # One Dask block per row chunk; the feature axis is joined by as_data.
        chunks = next(c.chunks[0] for c in columns if isinstance(c, da.Array))
        columns = [da.asarray(c).rechunk((chunks,)) for c in columns]
        return da.stack(columns, axis=1), names
    return np.stack([np.asarray(c) for c in columns], axis=1), names


def _zarr_group(node: zarr.Group, what: str, path: str | None = None) -> Any:
    """A Zarr group written by xarray, opened lazily as an xarray Dataset of Dask arrays.

    Any other group (or any group without xarray installed) is refused, naming its
    arrays (as a path under ``path``, when given): the data are one of them.
    """
    arrays = sorted(name for name, _ in node.arrays())
    point = ("Point at one of its 2-D arrays instead"
             + (f", e.g. {path.rstrip('/')}/{arrays[0]}" if path and arrays else "")
             + (f" (arrays: {', '.join(arrays)})." if arrays else "."))
    try:
        xr = _require("xarray", "xarray", f"Reading {what}")
    except MissingDependencyError as exc:
        raise InputError(f"{what} is a Zarr group, not an array. {point} A group written by "
                         "xarray (one variable per feature) needs xarray: pip install "
                         '"dask-softkmeans[xarray]".') from exc
    try:
        with warnings.catch_warnings():
            # Groups without consolidated metadata are read as they are: the metadata
            # of a few variables, not worth a warning at every call.
            warnings.filterwarnings("ignore", "Failed to open Zarr store with consolidated",
                                    RuntimeWarning)
            ds = xr.open_zarr(node.store, group=node.path or None, chunks={})
    except (KeyError, ValueError, TypeError) as exc:
        raise InputError(
            f"{what} is a Zarr group that xarray cannot read as a Dataset ({exc}). {point}"
        ) from exc
    return ds


def _group_rows(X: da.Array) -> da.Array:
    """Row blocks of whole chunks of the variables, joined up to :data:`io.BLOCK_BYTES` and
    down to :data:`io.MIN_BLOCKS` blocks (as :func:`io.block_rows`): the chunks xarray
    writes for 1-D variables are often far smaller than a useful task."""
    first = int(X.chunks[0][0])
    rows = min(io.BLOCK_BYTES // max(1, 8 * X.shape[1]), -(-X.shape[0] // io.MIN_BLOCKS))
    rows = max(first, rows // first * first)
    return X if rows <= first else X.rechunk({0: rows})


def as_features(
    X: ArrayLike, *, variables: Sequence[str] | None = None,
    storage_options: dict[str, Any] | None = None, unknown_rows: bool = False,
    what: str = "X", fitted_names: Sequence[str] | None = None,
) -> tuple[Any, list[str] | None]:
    """Unwrap a container into the array it holds, and its feature names.

    Nothing is computed: a Dask-backed container gives a Dask array, an
    in-memory one a NumPy array (a pandas DataFrame is returned as it is, for
    scikit-learn's own checks).  Anything else is returned unchanged, with no
    names.

    Parameters
    ----------
    X : array-like or container
        xarray ``DataArray`` (dims samples x features; names from the feature
        coordinate when it holds strings), xarray ``Dataset``, ``zarr.Group``
        or path of a Zarr group written by xarray (each chosen 1-D data
        variable along the sample dimension is a feature; coordinates never
        are), pandas or Dask DataFrame (numeric columns only).
    variables : sequence of str, optional
        The data variables of a Dataset or Zarr group to use as features, in
        order; every data variable by default.  An error for other input.
    storage_options : dict, optional
        fsspec options for a URL.
    unknown_rows : bool, default=False
        For a Dask DataFrame: leave the rows per partition unknown (NaN
        chunks), so that nothing is computed; otherwise they are counted, which
        computes each partition's length only (``to_dask_array(lengths=True)``).
    what : str, default="X"
        How messages name the data.
    fitted_names : sequence of str, optional
        The names a model was fitted with: the variables taken from a Dataset
        or Zarr group when ``variables`` is None.

    Returns
    -------
    X : ndarray, dask.array.Array, pandas.DataFrame or the input
    names : list of str or None
    """
    if storage_options and not isinstance(X, (str, os.PathLike)):
        raise InputError(
            f"storage_options apply to a path or URL of a Zarr array, but {what} is a "
            f"{type(X).__name__}. Pass the URL (e.g. 's3://bucket/data.zarr/X') with them, "
            "or drop storage_options.")
    if isinstance(X, (str, os.PathLike)):
        node = io.open_data(X, storage_options=storage_options)
        if not isinstance(node, zarr.Group):
            if variables is not None:
                raise InputError(f"variables choose data variables of a Zarr group or Dataset; "
                                 f"{str(X)!r} is an array. Drop variables.")
            return node, None
        what = f"The Zarr group {str(X)!r}"
        X = _zarr_group(node, what, str(X))
        array, names = _dataset_array(X, variables or fitted_names, what)
        return _group_rows(array) if isinstance(array, da.Array) else array, names
    if isinstance(X, zarr.Group):
        X = _zarr_group(X, what)
    if _is_instance(X, "xarray", "Dataset"):
        return _dataset_array(X, variables or fitted_names, what)
    if variables is not None:
        raise InputError(
            f"variables choose data variables of an xarray Dataset or a Zarr group; X is a "
            f"{type(X).__name__}. Drop variables (select columns or features before fitting).")
    if _is_instance(X, "xarray", "DataArray"):
        if X.ndim != 2:
            raise InputError(
                f"X is an xarray DataArray with dims {X.dims}; it must be 2-D (samples, "
                "features). Select or stack dimensions first, e.g. "
                "X.stack(sample=(...)).transpose('sample', ...).")
        feature_dim = X.dims[1]
        names = _feature_names(X[feature_dim].values) if feature_dim in X.coords else None
        return X.data if isinstance(X.data, da.Array) else np.asarray(X.values), names
    if is_dask_frame(X):
        _check_numeric(X.dtypes, "The Dask DataFrame X")
        names = _feature_names(X.columns)
        return X.to_dask_array(lengths=None if unknown_rows else True), names
    if is_pandas_frame(X):
        _check_numeric(X.dtypes, "The pandas DataFrame X")
        return X, _feature_names(X.columns)
    return X, None


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
    if _is_instance(sample_weight, "xarray", "DataArray"):
        sample_weight = sample_weight.data
    elif _is_instance(sample_weight, "dask.dataframe", "Series"):
        sample_weight = sample_weight.to_dask_array(lengths=True)
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
