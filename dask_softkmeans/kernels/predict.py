"""Per-row results of one block: labels, distances, responsibilities, network outputs.

Each function refuses a block holding NaN or infinity (the per-sample methods
cannot skip a row as the passes do: every row needs an answer) and otherwise
calls the maths of :mod:`.reference`, :mod:`.fused` or :mod:`.rbf`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._typing import Metric
from ..validation import foreign_metric_error, nonfinite_error, zero_rows_error
from . import array_api
from .common import sub_block_rows, unit_rows
from .fused import nearest_labels
from .rbf import rbf_outputs
from .reference import responsibilities

#: Per-sample outputs of :func:`predictions_block`: dtype and whether there is
#: one column per cluster.
PREDICTION_OUTPUTS: dict[str, tuple[type, bool]] = {
    "labels": (np.int32, False), "proba": (np.float32, True), "distances": (np.float32, True)}


def check_finite(x: np.ndarray) -> np.ndarray:
    """``x``, refused when it holds NaN or infinity (raised when the block is computed)."""
    if array_api.is_foreign_array(x):
        if not array_api.all_finite(x):
            raise nonfinite_error()
        return x
    if not np.all(np.isfinite(x)):
        raise nonfinite_error()
    return x


def check_rows(x: np.ndarray, metric: Metric = "euclidean") -> np.ndarray:
    """``x`` refused when it holds NaN or infinity; under "cosine" its rows scaled to unit
    length (a copy), refused when a row is all zeros."""
    x = check_finite(x)
    if metric != "euclidean" and array_api.is_foreign_array(x):
        raise foreign_metric_error(metric, x)
    if metric == "cosine":
        x, zeros = unit_rows(x)
        if zeros:
            raise zero_rows_error(zeros)
    return x


def labels_block(x: np.ndarray, centers: np.ndarray, offset: np.ndarray,
                 metric: Metric = "euclidean") -> np.ndarray:
    """Nearest center of each row, int32 (see :func:`.nearest_labels`); under "cosine", the
    center of largest cosine similarity (the nearest to the unit row).  A block of another
    array library (a CuPy chunk) is labelled on its device; only the labels come back."""
    if array_api.is_foreign_array(x):
        return array_api.nearest_labels(check_rows(x, metric), centers, np.asarray(offset, np.float64))
    return nearest_labels(check_rows(x, metric), centers, offset=offset)


#: Entries with ``d_ik <= NEAR * (|x_i|^2 + max_k |c_k|^2)`` are recomputed as ``|x_i - c_k|^2``.
NEAR = 2.0**-20


def exact_squared_distances(
    x: np.ndarray, centers: np.ndarray, offset: np.ndarray
) -> np.ndarray:
    """``(n, K)`` float64 squared distances, accurate to rounding of the difference.

    The expanded form ``|x|^2 + |c|^2 - 2 x.c`` (one matrix product) loses
    about ``eps (|x|^2 + |c|^2)`` to cancellation, which is all of ``d`` for a
    point on a center (``2e-8`` instead of 0 after the square root), so equal
    fits by weights or by repeated rows could differ there.  The few entries
    where cancellation matters (a point within about ``1e-3`` of a center,
    relative to their norms) are recomputed from the difference itself.
    """
    x64 = np.asarray(x, np.float64) - offset
    c = np.asarray(centers, np.float64) - offset
    x_norms = np.einsum("ij,ij->i", x64, x64)
    c_norms = np.einsum("ij,ij->i", c, c)
    # As reference.squared_distances, keeping the norms for the test below.
    d = x64 @ (-2.0 * c.T)
    d += x_norms[:, None]
    d += c_norms[None, :]
    np.maximum(d, 0.0, out=d)
    # One threshold per row (with the largest center norm: a few more entries recomputed
    # than needed, one (n, K) comparison instead of a sum and a comparison).
    near = d <= (NEAR * (x_norms + c_norms.max()))[:, None]
    if near.any():
        rows, cols = np.nonzero(near)
        diff = x64[rows] - c[cols]
        d[rows, cols] = np.einsum("ij,ij->i", diff, diff)
    return d


def distances_block(
    x: np.ndarray, centers: np.ndarray, offset: np.ndarray, out_dtype: Any = np.float64,
    metric: Metric = "euclidean",
) -> np.ndarray:
    """Distances to every center, ``(n, K)``, computed in float64 and returned as
    ``out_dtype`` (the estimator passes the data's: float32 in, float32 out).

    Euclidean distances; under "cosine" (unit centers) the cosine distances
    ``1 - cos(x_i, c_k) = ||x_i/||x_i|| - c_k||^2 / 2``.  A block of another array library
    is computed on its device in float64 by the expanded product (no recomputation near a
    center); the ``(n, K)`` result comes back as NumPy.
    """
    out_dtype = array_api.numpy_dtype(out_dtype)
    if array_api.is_foreign_array(x):
        d = array_api.host_squared_distances(check_rows(x, metric), centers, np.asarray(offset, np.float64))
    else:
        d = exact_squared_distances(check_rows(x, metric), centers, np.asarray(offset, np.float64))
    if metric == "cosine":
        return (0.5 * d).astype(out_dtype, copy=False)
    return np.sqrt(d, out=d).astype(out_dtype, copy=False)


def proba_block(x: np.ndarray, out_dtype: Any = np.float64, metric: Metric = "euclidean",
                **kwargs: Any) -> np.ndarray:
    """Responsibilities ``(n, K)`` as ``out_dtype`` (see :func:`.responsibilities` for the
    keywords); under "cosine" those of the unit rows (von Mises-Fisher, ``kappa = 2 / T``).
    A block of another array library is computed on its device; the result comes back as NumPy."""
    out_dtype = array_api.numpy_dtype(out_dtype)
    if array_api.is_foreign_array(x):
        check_rows(x, metric)
        p = array_api.block_responsibilities(
            x, kwargs["centers"], kwargs["temperature"], offset=np.asarray(kwargs["offset"], np.float64),
            log_priors=kwargs.get("log_priors"), normalization=kwargs.get("normalization", "softmax"))
        return p.astype(out_dtype, copy=False)
    return responsibilities(check_rows(x, metric), **kwargs).astype(out_dtype, copy=False)


def outputs_block(x: np.ndarray, **kwargs: Any) -> np.ndarray:
    """RBF network outputs ``(n, M)`` (see :func:`.rbf_outputs` for the keywords)."""
    return rbf_outputs(check_finite(x), **kwargs)


def predictions_block(
    x: np.ndarray, what: tuple[str, ...], centers: np.ndarray, offset: np.ndarray,
    temperature: float, log_priors: np.ndarray, normalization: str = "softmax",
    metric: Metric = "euclidean",
) -> dict[str, np.ndarray]:
    """Several per-sample outputs of one block (names of :data:`PREDICTION_OUTPUTS`).

    The same functions as the estimator's ``predict``, ``predict_proba`` and
    ``transform`` compute them, on sub-blocks so that temporaries stay small.
    """
    n_clusters = centers.shape[0]
    out = {name: np.empty((x.shape[0],) + ((n_clusters,) if PREDICTION_OUTPUTS[name][1] else ()),
                          dtype=PREDICTION_OUTPUTS[name][0]) for name in what}
    step = sub_block_rows(n_clusters, x.shape[1])
    for start in range(0, x.shape[0], step):
        # Both axes and a stop within the block: the array API standard defines no other
        # slice, and a block of another library (a CuPy chunk) takes this path too.
        part = x[start : min(start + step, x.shape[0]), :]
        if "labels" in out:
            out["labels"][start : start + step] = labels_block(part, centers, offset, metric)
        if "proba" in out:
            out["proba"][start : start + step] = proba_block(
                part, metric=metric, centers=centers, temperature=temperature, offset=offset,
                log_priors=log_priors, normalization=normalization)
        if "distances" in out:
            out["distances"][start : start + step] = distances_block(
                part, centers, offset, metric=metric)
    return out
