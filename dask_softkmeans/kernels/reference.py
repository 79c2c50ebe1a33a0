"""Pure NumPy mathematics of one row block: the specification of every pass.  No Dask here.

Convention: points ``x_i``, centers ``c_k``, ``d_ik = ||x_i - c_k||^2``,
temperature ``T``, log-priors ``log pi_k``; ``p_ik = pi_k exp(-d_ik / T) / Z_i``
and the free energy ``F = -T sum_i log Z_i``.  At ``T = 0`` the
responsibilities are the hard nearest-center assignment and ``F`` is the
k-means inertia.

:func:`reference_statistics` computes every statistic of a pass with plain
NumPy sweeps over a ``(K, n)`` matrix.  It is what the compiled kernel
(:mod:`.fused`) is tested against, and the pass itself for the sparse
normalisations, which the compiled kernel does not implement.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from .._typing import Metric, MomentMode, Normalization
from ..validation import NORMALIZATIONS
from .common import (
    LOGIT_FLOOR,
    SPARSE_LOGIT_FLOOR,
    float_block,
    sub_block_rows,
    unit_rows,
    working_dtype,
)
from .layout import ScanLayout, StatsLayout


def pairwise_distances(
    x_work: np.ndarray, centers_work: np.ndarray, center_norms: np.ndarray
) -> np.ndarray:
    """``(K, n)`` squared distances, laid out so reductions over K run along rows of n."""
    d = centers_work @ x_work.T
    d *= -2.0
    d += center_norms[:, None]
    d += np.einsum("ij,ij->i", x_work, x_work)[None, :]
    np.maximum(d, 0.0, out=d)
    return d


def normalize(u: np.ndarray, normalization: Normalization = "softmax") -> tuple[np.ndarray, np.ndarray]:
    """Normalise ``(K, n)`` logits column by column; return ``p`` and its regulariser ``Omega(p)``.

    Each normalisation is the maximiser of ``p . u + Omega(p)`` over the
    probability simplex (Blondel, Martins & Niculae 2020):

    - "softmax": Shannon entropy ``Omega = -sum p log p``; ``p = exp(u) / Z``.
    - "entmax15": Tsallis entropy with ``alpha = 1.5``,
      ``Omega = (4/3)(1 - sum p^1.5)``; ``p = [u/2 - tau]_+^2`` (Peters et al. 2019).
    - "sparsemax": Gini entropy ``Omega = (1 - sum p^2) / 2``; ``p = [u - tau]_+``
      (Martins & Astudillo 2016).

    The sparse ones give exact zeros to logits well below the row maximum.
    With ``u = log pi - d / T`` the free energy of a row is
    ``f = sum_k p_k (d_k - T log pi_k) - T Omega(p)``; for softmax it is ``-T log Z``.

    Parameters
    ----------
    u : ndarray of shape (K, n)
        Logits, one column per row of data; any per-column constant may be
        added (it cancels).  Not modified.
    normalization : {"softmax", "entmax15", "sparsemax"}

    Returns
    -------
    p : ndarray of shape (K, n), float64
        Non-negative, every column sums to 1.
    omega : ndarray of shape (n,), float64
        ``Omega(p)`` of each column.
    """
    u = np.asarray(u, dtype=np.float64)
    u = u - u.max(axis=0, keepdims=True)
    n_clusters = u.shape[0]
    if normalization == "softmax":
        np.maximum(u, LOGIT_FLOOR, out=u)
        p = np.exp(u)
        z = p.sum(axis=0)
        p /= z
        # -sum p log p with log p = u - log z: never 0 * log 0.
        return p, np.log(z) - np.einsum("kn,kn->n", p, u)
    if normalization not in ("entmax15", "sparsemax"):
        raise KeyError(
            f"Unknown normalization {normalization!r}; valid names: {', '.join(NORMALIZATIONS)}.")
    np.maximum(u, SPARSE_LOGIT_FLOOR, out=u)
    columns = np.arange(u.shape[1])
    rank = np.arange(1, n_clusters + 1, dtype=np.float64)[:, None]
    if normalization == "sparsemax":
        top = -np.sort(-u, axis=0)
        cumulative = np.cumsum(top, axis=0)
        support = (1.0 + rank * top > cumulative).sum(axis=0)
        tau = (cumulative[support - 1, columns] - 1.0) / support
        p = np.maximum(u - tau, 0.0)
    else:
        half = u / 2.0
        top = -np.sort(-half, axis=0)
        mean = np.cumsum(top, axis=0) / rank
        mean_sq = np.cumsum(top * top, axis=0) / rank
        delta = (1.0 - rank * (mean_sq - mean * mean)) / rank
        tau = mean - np.sqrt(np.maximum(delta, 0.0))
        support = (tau <= top).sum(axis=0)
        p = np.maximum(half - tau[support - 1, columns], 0.0) ** 2
    # Rounding leaves the sum a few ulps off 1; rescaling keeps the zeros exact.
    p /= p.sum(axis=0)
    if normalization == "sparsemax":
        return p, 0.5 * (1.0 - np.einsum("kn,kn->n", p, p))
    return p, (4.0 / 3.0) * (1.0 - np.sum(p * np.sqrt(p), axis=0))


def normalize_vjp(p: np.ndarray, g: np.ndarray, normalization: Normalization = "softmax") -> np.ndarray:
    """Vector-Jacobian product of :func:`normalize`: ``(dp/du)^T g`` for ``(K, n)`` arrays.

    The Jacobians are symmetric: softmax ``diag(p) - p p^T``; sparsemax
    ``diag(s) - s s^T / |S|`` (``s`` the support indicator); entmax-1.5
    ``diag(r) - r r^T / sum r`` with ``r = sqrt(p)``.
    """
    if normalization == "softmax":
        return p * (g - np.einsum("kn,kn->n", p, g)[None, :])
    if normalization == "sparsemax":
        s = (p > 0).astype(np.float64)
        mean = np.einsum("kn,kn->n", s, g) / s.sum(axis=0)
        return s * (g - mean[None, :])
    if normalization == "entmax15":
        r = np.sqrt(p)
        q = np.einsum("kn,kn->n", r, g) / r.sum(axis=0)
        return r * (g - q[None, :])
    raise KeyError(
        f"Unknown normalization {normalization!r}; valid names: {', '.join(NORMALIZATIONS)}.")




def split_weights(
    u: np.ndarray, p: np.ndarray, normalization: Normalization
) -> tuple[np.ndarray, np.ndarray]:
    """What each row gives the critical temperature of each center under a sparse map.

    Copy center ``k`` into two coincident copies ``a`` and ``b`` (the same
    logit ``u_k`` twice) and normalise again: ``q_ik`` is the responsibility
    of one copy.  Moving the copies apart by ``+-eps v`` changes the logit
    difference of row ``i`` by ``4 eps (x_i - c_k).v / T``, and the map's
    Jacobian turns it into ``dq_ia = w_ik 2 eps (x_i - c_k).v / T`` with
    ``w = q`` (softmax), ``sqrt(q)`` (entmax-1.5) or ``1[q > 0]`` (sparsemax).
    One EM step then multiplies ``eps`` by ``(2 / T) lambda_max(Q_k) / N_a``,
    ``Q_k = sum_i w_ik (x_i - c_k)(x_i - c_k)^T`` and ``N_a = sum_i q_ik``: the
    pair splits below ``T_c,k = 2 lambda_max(Q_k / N_a)``.  A duplicated logit
    only raises the threshold, so only rows with ``p_ik > 0`` have ``q_ik > 0``.

    Computed here one center at a time, by normalising each duplicated column
    again (the specification; the pass itself uses :mod:`.sparse_maps`).

    Parameters
    ----------
    u : ndarray of shape (K, n)
        The logits that gave ``p``.
    p : ndarray of shape (K, n)
        ``normalize(u, normalization)[0]``.
    normalization : {"entmax15", "sparsemax"}

    Returns
    -------
    q, w : ndarrays of shape (K, n)
    """
    q = np.zeros_like(p)
    for k in range(p.shape[0]):
        rows = np.flatnonzero(p[k] > 0)
        if len(rows):
            doubled = np.vstack([u[:, rows], u[k, rows][None, :]])
            q[k, rows] = normalize(doubled, normalization)[0][k]
    if normalization == "sparsemax":
        return q, (q > 0).astype(np.float64)
    return q, np.sqrt(q)


def _one_hot(labels: np.ndarray, n_clusters: int) -> np.ndarray:
    """``(K, n)`` hard responsibilities of ``labels``."""
    p = np.zeros((n_clusters, labels.shape[0]))
    p[labels, np.arange(labels.shape[0])] = 1.0
    return p


def hard_sub_blocks(
    x: np.ndarray,
    weights: np.ndarray | None,
    centers: np.ndarray,
    offset: np.ndarray,
    rows: int,
    acc: Any,
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """The sub-blocks of ``rows`` rows of ``x``, and what every pass takes from them.

    Rows with a NaN or an infinity are counted in ``acc.nonfinite`` and left
    out; the weight, the hard counts and the inertia of the others are added to
    ``acc`` (a :class:`.StatsLayout` view).  Distances are formed in the block's
    precision from the products, as the compiled kernel forms them; each row's
    nearest distance is recomputed exactly in float64 (the expanded product
    cancels when clusters are far apart relative to their size) and the others
    are taken relative to it.

    Yields
    ------
    x64, w, labels, dmin, gap
        The finite rows in float64 about ``offset`` ``(n, D)``, their weights
        ``(n,)``, nearest centers ``(n,)`` and nearest squared distances
        ``(n,)``, and every squared distance minus the nearest ``(K, n)``, >= 0.
    """
    work = working_dtype(x.dtype)
    rel_centers = centers - offset
    centers_work = rel_centers.astype(work)
    center_norms = np.einsum("ij,ij->i", centers_work, centers_work)
    for start in range(0, x.shape[0], rows):
        xb = x[start : start + rows]
        wb = None if weights is None else np.asarray(weights[start : start + rows], np.float64)
        finite = np.isfinite(xb).all(axis=1)
        if not finite.all():
            acc.nonfinite[...] += np.count_nonzero(~finite)
            xb = xb[finite]
            wb = None if wb is None else wb[finite]
        n = xb.shape[0]
        if n == 0:
            continue
        w = np.ones(n) if wb is None else wb
        x64 = xb.astype(np.float64) - offset
        d = pairwise_distances(x64.astype(work, copy=False), centers_work, center_norms)
        labels = d.argmin(axis=0)
        diff = x64 - rel_centers[labels]
        dmin = np.einsum("ij,ij->i", diff, diff)
        acc.weight[...] += w.sum()
        acc.hard_counts[...] += np.bincount(labels, weights=w, minlength=centers.shape[0])
        acc.inertia[...] += w @ dmin
        yield x64, w, labels, dmin, d.astype(np.float64) - d[labels, np.arange(n)][None, :]


def reference_statistics(
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
) -> np.ndarray:
    """Every statistic of :func:`.block_statistics`, by NumPy sweeps over ``(K, n)`` sub-blocks.

    The parameters and the result are those of :func:`.block_statistics`.
    Distances are formed in the block's precision from the products, as the
    compiled kernel forms them; each row's nearest distance (the inertia) is
    recomputed exactly in float64 and the others are taken relative to it.
    """
    x = float_block(x)
    centers = np.asarray(centers, dtype=np.float64)
    n_clusters, n_features = centers.shape
    layout = StatsLayout(n_clusters, n_features, moments)
    out = layout.empty()
    acc = layout.unpack(out)
    offset = np.zeros(n_features) if offset is None else np.asarray(offset, np.float64)
    rel_centers = centers - offset
    hard = temperature == 0 or not np.isfinite(1.0 / temperature)
    if moments == "power":
        if directions is None:
            raise ValueError("moments='power' needs directions of shape (K, D).")
        directions = np.asarray(directions, np.float64)
        center_proj = np.einsum("kd,kd->k", rel_centers, directions)
    # The (rows, D*D) outer products of "full" moments count against the budget too.
    rows = sub_block_rows(n_clusters, n_features * n_features if moments == "full" else n_features)

    for x64, w, labels, dmin, gap in hard_sub_blocks(x, weights, centers, offset, rows, acc):
        n = x64.shape[0]

        if hard:
            resp, omega = _one_hot(labels, n_clusters), np.zeros(n)
            row_distortion = dmin
            row_free = dmin
            if removal and n_clusters > 1:
                second = np.partition(gap, 1, axis=0)[1]
                acc.removal[...] += np.bincount(labels, weights=w * second, minlength=n_clusters)
        else:
            u = gap * (-1.0 / temperature)
            if log_priors is not None:
                u += np.asarray(log_priors, np.float64)[:, None]
            resp, omega = normalize(u, normalization)
            row_distortion = np.einsum("kn,kn->n", resp, gap) + dmin
            row_free = row_distortion - temperature * omega
            if log_priors is not None:
                row_free = row_free - temperature * (np.asarray(log_priors, np.float64) @ resp)
        resp_w = resp * w[None, :]
        # Sparse maps: the moments weigh each row by its share in a split (split_weights).
        split = None if hard or normalization == "softmax" or moments == "none" else (
            split_weights(u, resp, normalization))
        acc.entropy[...] += w @ omega
        acc.free_energy[...] += w @ row_free
        acc.distortion[...] += w @ row_distortion
        acc.confidence[...] += w @ resp.max(axis=0)

        counts = resp_w.sum(axis=1)
        sums = resp_w @ x64
        acc.counts[...] += counts
        acc.sums[...] += sums
        if split is not None:
            acc.split_counts[...] += split[0] @ w
            moment_w = split[1] * w[None, :]
            moment_counts, moment_sums = moment_w.sum(axis=1), moment_w @ x64
        else:
            moment_w, moment_counts, moment_sums = resp_w, counts, sums
        if moments == "full":
            outer = (x64[:, :, None] * x64[:, None, :]).reshape(n, -1)
            q = (moment_w @ outer).reshape(n_clusters, n_features, n_features)
            # sum p (x - c)(x - c)^T = sum p x x^T - c S^T - S c^T + N c c^T
            cs = rel_centers[:, :, None] * moment_sums[:, None, :]
            q -= cs + cs.transpose(0, 2, 1)
            q += moment_counts[:, None, None] * rel_centers[:, :, None] * rel_centers[:, None, :]
            acc.moments[...] += q
        elif moments == "power":
            proj = directions @ x64.T
            proj -= center_proj[:, None]
            proj *= moment_w
            acc.moments[...] += proj @ x64 - rel_centers * proj.sum(axis=1)[:, None]
    return out


def scan_statistics(
    x: np.ndarray, origin: np.ndarray, *, weights: np.ndarray | None = None, gram: bool = True,
    metric: Metric = "euclidean",
) -> np.ndarray:
    """First-pass statistics: weight, weighted sums and (optionally) Gram matrix.

    ``nonfinite`` counts rows with a non-finite value or a non-finite or
    negative weight; those rows are left out of the sums.  With
    ``metric="cosine"`` the statistics are of the rows scaled to unit length
    (:func:`.unit_rows`), and ``zero_rows`` counts the rows of zeros (the caller refuses them).

    Packed as :class:`.ScanLayout` ``(D, gram)``, all relative to ``origin``
    (one data row, so that far-away data does not cancel).
    """
    x = np.asarray(x)
    n_features = x.shape[1]
    layout = ScanLayout(n_features, gram)
    out = layout.empty()
    acc = layout.unpack(out)
    # Sub-blocks keep the float64 temporaries small whatever the block size
    # (a streamed pass holds a block and these temporaries, nothing else).
    rows = sub_block_rows(1, n_features)
    for start in range(0, x.shape[0], rows):
        part = x[start : start + rows]
        if metric == "cosine":
            part, zeros = unit_rows(part)
            acc.zero_rows[...] += zeros
        finite = np.isfinite(part).all(axis=1)
        acc.nonfinite[...] += np.count_nonzero(~finite)
        w = None
        if weights is not None:
            w = np.asarray(weights[start : start + rows], np.float64)
            acc.nonfinite[...] += np.count_nonzero(~np.isfinite(w) | (w < 0))
            finite &= np.isfinite(w) & (w >= 0)
        xb = part[finite].astype(np.float64) - origin
        w = np.ones(xb.shape[0]) if w is None else w[finite]
        acc.weight[...] += w.sum()
        # Overflow shows up as infinity in the sums; the caller explains it.
        with np.errstate(over="ignore", invalid="ignore"):
            acc.sums[...] += w @ xb
            if gram:
                acc.gram[...] += (xb * w[:, None]).T @ xb
    return out


def responsibilities(
    x: np.ndarray,
    centers: np.ndarray,
    temperature: float,
    *,
    offset: np.ndarray | None = None,
    log_priors: np.ndarray | None = None,
    normalization: Normalization = "softmax",
) -> np.ndarray:
    """``(n, K)`` float64 responsibilities ``p_ik``; one-hot at ``T = 0``.

    ``normalization`` is "softmax" (the Gaussian RBF layer), "entmax15" or
    "sparsemax" (sparse: exact zeros, see :func:`normalize`).
    """
    x = np.asarray(x)
    centers = np.asarray(centers, np.float64)
    n_clusters, n_features = centers.shape
    offset = np.zeros(n_features) if offset is None else np.asarray(offset, np.float64)
    work = working_dtype(x.dtype)
    centers_work = (centers - offset).astype(work)
    center_norms = np.einsum("ij,ij->i", centers_work, centers_work)
    x_work = (np.asarray(x, np.float64) - offset).astype(work, copy=False)
    d = pairwise_distances(x_work, centers_work, center_norms)
    if temperature == 0:
        out = np.zeros((x.shape[0], n_clusters))
        out[np.arange(x.shape[0]), d.argmin(axis=0)] = 1.0
        return out
    with np.errstate(over="ignore", invalid="ignore"):
        u = (d - d.min(axis=0)[None, :]) * (-1.0 / temperature)
    if log_priors is not None:
        u += np.asarray(log_priors, work)[:, None]
    if normalization != "softmax" or not np.isfinite(1.0 / temperature):
        # Tiny T: 1/T overflows; the nearest center's logit is 0 and the rest
        # -inf, which the sparse normalisations clip exactly.
        u = np.nan_to_num(np.asarray(u, np.float64), nan=0.0)
        return np.ascontiguousarray(normalize(u, normalization)[0].T)
    u -= u.max(axis=0)[None, :]
    e = np.exp(np.maximum(u, LOGIT_FLOOR)).astype(np.float64)
    e /= e.sum(axis=0)[None, :]
    return np.ascontiguousarray(e.T)




def squared_distances(
    x: np.ndarray, centers: np.ndarray, *, offset: np.ndarray | None = None
) -> np.ndarray:
    """``(n, K)`` float64 squared distances from every row to every center.

    Formed in that layout (``x c^T`` with the norms added), not as the ``(K, n)``
    of the passes transposed, which is faster for this output.
    """
    centers = np.asarray(centers, np.float64)
    offset = np.zeros(centers.shape[1]) if offset is None else np.asarray(offset, np.float64)
    x64 = np.asarray(x, np.float64) - offset
    c = centers - offset
    d = x64 @ (-2.0 * c.T)
    d += np.einsum("ij,ij->i", x64, x64)[:, None]
    d += np.einsum("ij,ij->i", c, c)[None, :]
    np.maximum(d, 0.0, out=d)
    return d


