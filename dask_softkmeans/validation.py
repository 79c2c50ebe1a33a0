"""Every check of what a user passes, in one place: data metadata, parameters, centers.

Checks on data look at metadata only (shape, dtype); values (NaN, infinity)
are counted inside the first pass over the data, not by an extra one, and
reported with :func:`nonfinite_error`.  Each error names the problem and
the fix.  This module imports nothing of the package but its errors.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._typing import ArrayLike, Metric, Normalization
from .errors import InputError, NonNumericError

#: The normalisations of the logits a pass knows (see :func:`.kernels.normalize`).
NORMALIZATIONS: tuple[str, ...] = ("softmax", "entmax15", "sparsemax")

#: The metrics of :class:`.SoftKMeans` (see :data:`._typing.Metric`).
METRICS: tuple[str, ...] = ("euclidean", "cosine")

#: How to fix data that hold rows of zeros, with ``metric="cosine"``.
ZERO_ROWS_FIX = ("Drop or replace zero rows; cosine is undefined for them, e.g. "
                 "X[(X != 0).any(axis=1)].")

#: How to fix data that hold NaN or infinity.
NONFINITE_FIX = "Drop or impute those rows first, e.g. X[np.isfinite(X).all(axis=1)]."


def check_shape_dtype(shape: tuple[int, ...], dtype: np.dtype, what: str) -> None:
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
    check_shape_dtype(array.shape, array.dtype, what)
    return array.shape


def feature_count_error(n_features: int, expected: int, owner: str, what: str = "X") -> InputError:
    """The error for data whose number of features differs from the fitted model's."""
    return InputError(
        f"{what} has {n_features} features, but {owner} is expecting {expected} features as "
        f"input. Pass data with the same {expected} columns, in the same order, as at fit time."
    )


def nonfinite_error(rows: int | None = None, *, what: str = "X", extra: str = "") -> InputError:
    """The error for data holding NaN or infinity (in ``rows`` rows, when counted)."""
    where = "" if rows is None else f" in {int(rows)} rows"
    return InputError(f"{what} contains NaN or infinity{extra}{where}. {NONFINITE_FIX}")


def zero_rows_error(rows: int | None = None, *, what: str = "X") -> InputError:
    """The error for rows of zeros under ``metric="cosine"`` (in ``rows`` rows, when counted)."""
    where = "rows" if rows is None else f"{int(rows)} rows"
    return InputError(
        f"{what} contains {where} whose values are all zero, and metric='cosine' needs a "
        f"direction for every row. {ZERO_ROWS_FIX}")


def foreign_metric_error(metric: str, array: Any) -> InputError:
    """The error for ``metric`` other than Euclidean on arrays of another library (JAX,
    CuPy, ...), whose passes run the array-API reference, which has no row normalisation."""
    return InputError(
        f"metric={metric!r} is computed for NumPy data and NumPy blocks; X holds "
        f"{type(array).__module__}.{type(array).__name__} arrays, whose passes take the "
        "Euclidean metric only. Normalise the rows and the centers yourself (on the unit "
        "sphere the Euclidean pass is the cosine one), or use NumPy data or chunks.")


def check_metric(metric: str) -> Metric:
    """A metric is one of :data:`METRICS`."""
    if metric not in METRICS:
        raise InputError(
            f"metric must be one of {', '.join(map(repr, METRICS))}; got {metric!r}.")
    return metric


def check_temperature(temperature: Any) -> float:
    """A temperature is a finite number ``>= 0``."""
    try:
        value = float(temperature)
    except (TypeError, ValueError):
        value = float("nan")
    if not np.isfinite(value) or value < 0:
        raise InputError(f"temperature must be a finite number >= 0; got {temperature!r}.")
    return value


def check_normalization(normalization: str) -> Normalization:
    """A normalisation is one of :data:`NORMALIZATIONS`."""
    if normalization not in NORMALIZATIONS:
        raise InputError(
            f"normalization must be one of {', '.join(map(repr, NORMALIZATIONS))}; "
            f"got {normalization!r}.")
    return normalization


def check_centers(centers: ArrayLike, n_features: int) -> np.ndarray:
    """Centers as a float64 ``(K, n_features)`` array of finite values."""
    centers = np.asarray(centers, dtype=np.float64)
    if centers.ndim != 2 or centers.shape[1] != n_features or centers.shape[0] == 0:
        raise InputError(
            f"centers must have shape (n_clusters, {n_features}) to match X's "
            f"{n_features} features; got shape {centers.shape}."
        )
    if not np.all(np.isfinite(centers)):
        raise InputError("centers contain NaN or infinity; every center must be finite.")
    return centers


def check_log_priors(log_priors: ArrayLike | None, n_clusters: int) -> np.ndarray | None:
    """``log pi_k`` as a float64 ``(n_clusters,)`` array without NaN, or None."""
    if log_priors is None:
        return None
    log_priors = np.asarray(log_priors, np.float64)
    if log_priors.shape != (n_clusters,) or np.any(np.isnan(log_priors)):
        raise InputError(
            f"log_priors must have shape ({n_clusters},) without NaN; "
            f"got shape {log_priors.shape}.")
    return log_priors


def check_positive(name: str, value: Any, *, integer: bool = False) -> float | int:
    """A finite number ``> 0`` (an int ``>= 1`` when ``integer``)."""
    try:
        number = int(value) if integer else float(value)
    except (TypeError, ValueError):
        number = 0
    if integer and (number < 1 or number != value):
        raise InputError(f"{name} must be an int >= 1; got {value!r}.")
    if not integer and not (np.isfinite(number) and number > 0):
        raise InputError(f"{name} must be a finite number > 0; got {value!r}.")
    return number


def check_split_every(split_every: Any) -> int:
    """Inputs per node of a pass's reduction tree: an int ``>= 2``."""
    if isinstance(split_every, bool) or not isinstance(split_every, int | np.integer) or split_every < 2:
        raise InputError(f"split_every must be an int >= 2; got {split_every!r}.")
    return int(split_every)
