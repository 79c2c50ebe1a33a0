"""The pass of the sparse normalisations (entmax-1.5, sparsemax): work on the support only.

Held to :func:`.reference.reference_statistics` in the tests.  The distances
are dense, as in any pass (BLAS, as the reference forms them); everything
after them (the threshold, the soft counts and sums ``S_k = sum_i p_ik x_i``,
the energies, the second moments and the split statistics of
:func:`.reference.split_weights`) runs over each row's candidates (logits
within 1 of its largest, after halving for entmax-1.5) and nonzero
responsibilities only, so its cost follows the support, not ``K``.  The rows
go through the compiled loop :func:`.compiled.sparse_rows`; the vectorised
NumPy functions below do the same work (``compiled=False``), as its tested twin.

The split statistics need, for every nonzero ``p_ik``, the map of row ``i``
with center ``k`` duplicated.  A duplicated logit only raises the threshold,
so that map's support is a prefix of the row's sorted logits with ``u_k``
inserted twice, no longer than the row's support plus one: one threshold
search over ``s + 1`` sorted values per nonzero.
"""

from __future__ import annotations

import numpy as np

from .._typing import MomentMode, Normalization
from .common import SPARSE_LOGIT_FLOOR, float_block, sub_block_rows
from .layout import StatsLayout
from .reference import hard_sub_blocks


def _thresholds(top: np.ndarray, normalization: Normalization) -> np.ndarray:
    """Threshold ``tau`` of each column of ``top`` (sorted in decreasing order, ``(L, m)``).

    Sparsemax: ``p = [z - tau]_+``; entmax-1.5 (``z = u / 2``): ``p = [z - tau]_+^2``.
    """
    rank = np.arange(1, top.shape[0] + 1, dtype=np.float64)[:, None]
    columns = np.arange(top.shape[1])
    cumulative = np.cumsum(top, axis=0)
    if normalization == "sparsemax":
        support = (1.0 + rank * top > cumulative).sum(axis=0)
        return (cumulative[support - 1, columns] - 1.0) / support
    mean = cumulative / rank
    mean_sq = np.cumsum(top * top, axis=0) / rank
    delta = (1.0 - rank * (mean_sq - mean * mean)) / rank
    tau = mean - np.sqrt(np.maximum(delta, 0.0))
    support = (tau <= top).sum(axis=0)
    return tau[support - 1, columns]


def _power(z: np.ndarray, normalization: Normalization) -> np.ndarray:
    """Responsibilities from ``z - tau``."""
    z = np.maximum(z, 0.0)
    return z if normalization == "sparsemax" else z * z


def sparse_map(
    u: np.ndarray, normalization: Normalization
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sparse responsibilities of ``(K, n)`` logits, as :func:`.reference.normalize` gives them,
    as their nonzero entries.

    Returns
    -------
    clusters, rows : ndarrays of int
        Where the nonzero responsibilities are, sorted by cluster.
    values : ndarray of float64
        The nonzero responsibilities; each row's sum to 1.
    z : ndarray of shape (K, n)
        The shifted, clipped logits the map thresholds (halved for entmax-1.5).
    top : ndarray of shape (L, n)
        The ``L`` largest values of each column of ``z``, in decreasing order:
        every value that can be in a support, of any row (``L <= K``).
    """
    z = u - u.max(axis=0, keepdims=True)
    np.maximum(z, SPARSE_LOGIT_FLOOR, out=z)
    if normalization == "entmax15":
        z *= 0.5
    # The largest z is 0, so tau >= -1 and only z > -1 can be in the support: the
    # thresholds need the sorted candidates only (few, except at high temperature).
    length = int((z > -1.0).sum(axis=0).max())
    if length < z.shape[0]:
        top = -np.sort(-np.partition(z, z.shape[0] - length, axis=0)[z.shape[0] - length:],
                       axis=0)
    else:
        top = -np.sort(-z, axis=0)
    clusters, rows = np.nonzero(z > -1.0)
    values = _power(z[clusters, rows] - _thresholds(top, normalization)[rows], normalization)
    keep = values > 0
    clusters, rows, values = clusters[keep], rows[keep], values[keep]
    # A few ulps off 1 after rounding: rescaled, as the reference does.
    values /= np.bincount(rows, weights=values, minlength=z.shape[1])[rows]
    return clusters, rows, values, z, top


def split_pairs(
    z: np.ndarray, top: np.ndarray, rows: np.ndarray, clusters: np.ndarray,
    support: int, normalization: Normalization,
) -> np.ndarray:
    """``q`` of :func:`.reference.split_weights` for the nonzero pairs ``(clusters, rows)``.

    ``support`` is the largest support of a row; the duplicated map needs the
    first ``support + 1`` values of the sorted column with ``z_k`` doubled.
    """
    value = z[clusters, rows]
    length = min(support + 1, top.shape[0] + 1)  # top holds every candidate of the support
    # Rank of z_k in its column (its first position among equal values): within the support.
    rank = (top[:length, rows] > value[None, :]).sum(axis=0)
    position = np.arange(length)[:, None]
    source = np.where(position <= rank[None, :], position, position - 1)
    doubled = top[np.minimum(source, top.shape[0] - 1), rows[None, :]]
    tau = _thresholds(doubled, normalization)
    return _power(value - tau, normalization)


def _per_row(rows: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Sum of the nonzero pairs' ``values`` in each of ``n`` rows."""
    return np.bincount(rows, weights=values, minlength=n)


def sparse_statistics(
    x: np.ndarray,
    centers: np.ndarray,
    temperature: float,
    *,
    offset: np.ndarray | None = None,
    log_priors: np.ndarray | None = None,
    weights: np.ndarray | None = None,
    moments: MomentMode = "none",
    directions: np.ndarray | None = None,
    normalization: Normalization = "entmax15",
    compiled: bool = True,
) -> np.ndarray:
    """:func:`.block_statistics` of a sparse map at ``T > 0``, in work that follows the support.

    Parameters and result as :func:`.block_statistics` (``removal`` is a
    ``T = 0`` statistic, which these passes never compute).  ``compiled``:
    the rows after the distances go through the compiled loop
    (:func:`.compiled.sparse_rows`); False runs the vectorised NumPy of this
    module instead (the same sums, in another order).
    """
    if normalization not in ("entmax15", "sparsemax"):
        raise KeyError(f"sparse_statistics takes 'entmax15' or 'sparsemax', not {normalization!r}.")
    x = float_block(x)
    centers = np.asarray(centers, dtype=np.float64)
    n_clusters, n_features = centers.shape
    layout = StatsLayout(n_clusters, n_features, moments)
    out = layout.empty()
    acc = layout.unpack(out)
    offset = np.zeros(n_features) if offset is None else np.asarray(offset, np.float64)
    rel_centers = centers - offset
    priors = None if log_priors is None else np.asarray(log_priors, np.float64)
    if moments == "power":
        if directions is None:
            raise ValueError("moments='power' needs directions of shape (K, D).")
        directions = np.asarray(directions, np.float64)
    rows_per_block = sub_block_rows(n_clusters, n_features)

    for x64, w, _, dmin, gap in hard_sub_blocks(
            x, weights, centers, offset, rows_per_block, acc):
        n = x64.shape[0]
        if compiled:
            from . import compiled as kernel  # numba compiles (or loads) on first use

            scalars = np.zeros(4)
            kernel.sparse_rows(
                gap, dmin, w, x64, np.zeros(n_clusters) if priors is None else priors,
                priors is not None, float(temperature), normalization == "entmax15",
                {"none": 0, "full": 1, "power": 2}[moments], rel_centers,
                np.zeros((n_clusters, n_features)) if directions is None else directions,
                acc.counts, acc.sums, acc.moments.reshape(n_clusters, -1), acc.split_counts,
                scalars)
            for name, value in zip(("entropy", "free_energy", "distortion", "confidence"),
                                   scalars, strict=True):
                getattr(acc, name)[...] += value
            continue
        u = gap * (-1.0 / temperature)
        if priors is not None:
            u += priors[:, None]
        # From here on, only the nonzero responsibilities.
        clusters, rows, values, z, top = sparse_map(u, normalization)
        weighted = values * w[rows]
        if normalization == "sparsemax":
            omega = 0.5 * (1.0 - _per_row(rows, values * values, n))
        else:
            omega = (4.0 / 3.0) * (1.0 - _per_row(rows, values * np.sqrt(values), n))
        row_distortion = _per_row(rows, values * gap[clusters, rows], n) + dmin
        row_free = row_distortion - temperature * omega
        if priors is not None:
            row_free -= temperature * _per_row(rows, values * priors[clusters], n)
        acc.entropy[...] += w @ omega
        acc.free_energy[...] += w @ row_free
        acc.distortion[...] += w @ row_distortion
        largest = np.zeros(n)
        np.maximum.at(largest, rows, values)
        acc.confidence[...] += w @ largest

        import scipy.sparse  # only this twin of the compiled loop needs it

        by_cluster = scipy.sparse.csr_matrix((weighted, (clusters, rows)), shape=(n_clusters, n))
        acc.counts[...] += np.bincount(clusters, weights=weighted, minlength=n_clusters)
        acc.sums[...] += by_cluster @ x64
        if moments == "none":
            continue
        q = split_pairs(z, top, rows, clusters, int(np.bincount(rows, minlength=n).max()),
                        normalization)
        acc.split_counts[...] += np.bincount(clusters, weights=q * w[rows], minlength=n_clusters)
        share = (q > 0).astype(np.float64) if normalization == "sparsemax" else np.sqrt(q)
        share *= w[rows]
        y = x64[rows] - rel_centers[clusters]  # (nnz, D)
        pairs = scipy.sparse.csr_matrix(
            (share, (clusters, np.arange(len(rows)))), shape=(n_clusters, len(rows)))
        if moments == "full":
            outer = (y[:, :, None] * y[:, None, :]).reshape(len(rows), -1)
            acc.moments[...] += (pairs @ outer).reshape(n_clusters, n_features, n_features)
        else:
            projection = np.einsum("md,md->m", y, directions[clusters])
            acc.moments[...] += pairs @ (y * projection[:, None])
    return out

