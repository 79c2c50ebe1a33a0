"""The per-block mathematics: pure functions of one row block and the pass's parameters.

Nothing here imports Dask.  The engine maps these functions over row blocks
and adds up what they return.

- :mod:`.common`: constants, :class:`.PassParams` (the parameters of a pass).
- :mod:`.layout`: how a block's statistics are packed into one float64 vector.
- :mod:`.reference`: the NumPy specification of a pass (and the normalisations).
- :mod:`.array_api`: the same mathematics on the array API standard, for blocks
  of other libraries (CuPy chunks, JAX, PyTorch) and the differentiable objective.
- :mod:`.compiled` and :mod:`.fused`: the compiled (numba) kernel and its wrapper,
  the fast path of softmax passes and of labels.
- :mod:`.sparse_maps`: the passes of the sparse normalisations, over the support.
- :mod:`.rbf`: the RBF network's blocks.
- :mod:`.predict`: per-row results (labels, distances, responsibilities).
"""

from __future__ import annotations

import numpy as np

from .._typing import Metric, MomentMode, Normalization
from ..validation import NORMALIZATIONS, foreign_metric_error
from . import array_api
from .common import PassParams, float_block, sub_block_rows, unit_rows, working_dtype
from .fused import fused_statistics, nearest, nearest_labels
from .layout import BlockStats, NormalLayout, RBFLayout, ScanLayout, StatsLayout, stats_layout
from .reference import (
    normalize,
    normalize_vjp,
    reference_statistics,
    responsibilities,
    scan_statistics,
    squared_distances,
)
from .sparse_maps import sparse_statistics

__all__ = [
    "NORMALIZATIONS",
    "BlockStats",
    "NormalLayout",
    "PassParams",
    "RBFLayout",
    "ScanLayout",
    "StatsLayout",
    "block_scan",
    "block_statistics",
    "nearest",
    "nearest_labels",
    "normalize",
    "normalize_vjp",
    "pass_statistics",
    "reference_statistics",
    "responsibilities",
    "scan_statistics",
    "sparse_statistics",
    "squared_distances",
    "stats_layout",
    "sub_block_rows",
    "unit_rows",
    "working_dtype",
]


def block_statistics(
    x: np.ndarray,
    centers: np.ndarray,
    temperature: float,
    *,
    offset: np.ndarray | None = None,
    log_priors: np.ndarray | None = None,
    weights: np.ndarray | None = None,
    moments: MomentMode = "none",
    directions: np.ndarray | None = None,
    removal: bool = False,
    normalization: Normalization = "softmax",
    metric: Metric = "euclidean",
) -> np.ndarray:
    """Soft k-means statistics of one row block, packed for a tree reduction.

    Softmax passes (and every pass at ``T = 0``) run the compiled kernel
    (:func:`.fused_statistics`); the sparse normalisations at ``T > 0`` run
    :func:`.sparse_statistics`, whose work after the distances follows the
    support.  Both are tested against the NumPy reference
    (:func:`.reference_statistics`).  A block of another array library
    (a CuPy chunk of a Dask array, say) runs the array-API twin of the
    reference (:func:`.array_api.packed_statistics`) where it lives, and only
    the packed statistics come back to the host.

    Parameters
    ----------
    x : ndarray of shape (n, D)
        Float32 or float64 rows; other dtypes are converted to float64.
        Rows holding NaN or infinity are counted in ``nonfinite`` and skipped.
    centers : ndarray of shape (K, D)
        Current centers, float64, in the coordinates of ``x``.
    temperature : float
        ``T >= 0``; ``T = 0`` gives hard (Lloyd) assignments.
    offset : ndarray of shape (D,), optional
        Subtracted from ``x`` and ``centers`` before any product, so that data
        far from the origin suffers no cancellation (pass the data mean).
    log_priors : ndarray of shape (K,), optional
        ``log pi_k``; equal priors when omitted.  Ignored at ``T = 0``.
    weights : ndarray of shape (n,), optional
        Sample weights: a row of weight ``w`` counts as ``w`` copies.
    moments : {"none", "full", "power"}
        Second-moment statistic for critical temperatures: "full" gives
        ``Q_k = sum_i w_i p_ik (x_i - c_k)(x_i - c_k)^T`` (K, D, D); "power"
        gives ``M_k = sum_i w_i p_ik (x_i - c_k) ((x_i - c_k) . v_k)`` (K, D),
        one power-iteration product per cluster along ``directions``.  With a
        sparse normalisation at ``T > 0`` each row is weighted instead by its
        share in a split of ``k`` (``sqrt(q_ik)`` or ``1[q_ik > 0]``, see
        :func:`.reference.split_weights`), and ``split_counts`` holds
        ``sum_i w_i q_ik``: the critical temperature is then
        ``2 lambda_max(Q_k / split_counts_k)``.
    directions : ndarray of shape (K, D), optional
        Unit vectors ``v_k``; required when ``moments="power"``.
    removal : bool, default=False
        At ``T = 0``, also sum for each center the extra inertia its points
        would cost if it were removed (second-nearest minus nearest distance).
    normalization : {"softmax", "entmax15", "sparsemax"}, default="softmax"
        How logits become responsibilities (see :func:`.normalize`).  With a
        sparse one, ``entropy`` holds the sum of its regulariser ``Omega`` and
        ``free_energy`` the sum of ``sum_k p_k (d_k - T log pi_k) - T Omega``;
        the gradient is ``2 (N_k c_k - S_k)`` for every normalisation.
    metric : {"euclidean", "cosine"}, default="euclidean"
        "cosine": the rows are scaled to unit length first (a copy; ``x`` is
        never modified), so that ``d_ik = ||x_i/||x_i|| - c_k||^2``, which is
        ``2 - 2 cos(x_i, c_k)`` for unit centers; every statistic is then of
        the unit rows.  Rows of zeros are counted in ``zero_rows`` (the
        callers refuse them).

    Returns
    -------
    ndarray of shape (StatsLayout(K, D, moments).size,)
        Float64 sums; read them with :meth:`.StatsLayout.unpack`.  ``sums``
        are of ``x - offset``.
    """
    if array_api.is_foreign_array(x):
        if metric != "euclidean":
            raise foreign_metric_error(metric, x)
        return array_api.packed_statistics(
            x, centers, temperature, offset=offset, log_priors=log_priors, weights=weights,
            moments=moments, directions=directions, removal=removal, normalization=normalization)
    x = float_block(x)
    centers = np.asarray(centers, dtype=np.float64)
    zero_rows = 0
    if metric == "cosine":
        x, zero_rows = unit_rows(x)
    if normalization == "softmax" or temperature == 0 or not np.isfinite(1.0 / temperature):
        out = fused_statistics(
            x, centers, temperature, offset=offset, log_priors=log_priors, weights=weights,
            moments=moments, directions=directions, removal=removal)
    else:
        out = sparse_statistics(
            x, centers, temperature, offset=offset, log_priors=log_priors, weights=weights,
            moments=moments, directions=directions, normalization=normalization)
    if zero_rows:
        StatsLayout(*centers.shape, moments).unpack(out).zero_rows[...] = zero_rows
    return out


def pass_statistics(x: np.ndarray, weights: np.ndarray | None, params: PassParams) -> np.ndarray:
    """:func:`block_statistics` of one block with the pass's :class:`.PassParams`: the task
    that the engine maps over the blocks of a soft pass."""
    return block_statistics(
        x, params.centers, params.temperature, offset=params.offset,
        log_priors=params.log_priors, weights=weights, moments=params.moments,
        directions=params.directions, removal=params.removal, normalization=params.normalization,
        metric=params.metric)


def block_scan(x: np.ndarray, origin: np.ndarray, *, weights: np.ndarray | None = None,
               gram: bool = True, metric: Metric = "euclidean") -> np.ndarray:
    """The first pass's statistics of one block (:func:`.scan_statistics`), packed as
    :class:`.ScanLayout`; a block of another array library runs the array-API twin
    (:func:`.array_api.packed_scan`) where it lives."""
    if array_api.is_foreign_array(x):
        if metric != "euclidean":
            raise foreign_metric_error(metric, x)
        return array_api.packed_scan(x, origin, weights=weights, gram=gram)
    return scan_statistics(x, origin, weights=weights, gram=gram, metric=metric)
