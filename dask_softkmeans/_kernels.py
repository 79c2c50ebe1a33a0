"""Pure NumPy mathematics of one row block.  No Dask here.

Convention (``shared/design/mission.md``): points ``x_i``, centers ``c_k``,
``d_ik = ||x_i - c_k||^2``, temperature ``T``, log-priors ``log pi_k``;
``p_ik = pi_k exp(-d_ik / T) / Z_i`` and the free energy
``F = -T sum_i log Z_i``.  At ``T = 0`` the responsibilities are the hard
nearest-center assignment and ``F`` is the k-means inertia.

Every statistic is a sum over rows, so the statistics of a whole array are the
sums of the statistics of its blocks: :func:`block_statistics` returns them
packed in one flat float64 vector that a tree reduction adds up, and
:class:`StatsLayout` gives the named views back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np

MomentMode = Literal["none", "full", "power"]

#: Shifted logits below this are clipped before ``exp``: ``exp(-60)`` is
#: ~1e-26, negligible against the row's largest term (which is 1), and the
#: clip keeps ``exp`` out of the denormal range, where it is ~10x slower.
LOGIT_FLOOR = -60.0

#: Rows per sub-block are chosen so that one ``(K, rows)`` temporary holds
#: about this many elements, whatever the chunk size (8 MiB in float32).
TEMPORARY_ELEMENTS = 1 << 21


class BlockStats(NamedTuple):
    """Named views into a packed statistics vector (all float64 sums).

    Sums run over rows, each row counted ``w_i`` times (its sample weight).
    ``sums`` and ``moments`` are relative to the offset and centers the
    kernel was given, see :func:`block_statistics`.
    """

    weight: np.ndarray  # () total weight
    counts: np.ndarray  # (K,) soft counts N_k
    sums: np.ndarray  # (K, D) soft sums S_k of (x - offset)
    free_energy: np.ndarray  # () sum_i -T log Z_i
    entropy: np.ndarray  # () sum_i -sum_k p_ik log p_ik
    distortion: np.ndarray  # () sum_ik p_ik d_ik
    inertia: np.ndarray  # () sum_i min_k d_ik
    hard_counts: np.ndarray  # (K,)
    confidence: np.ndarray  # () sum_i max_k p_ik
    nonfinite: np.ndarray  # () rows holding NaN or infinity (skipped)
    removal: np.ndarray  # (K,) inertia added if center k were removed (T = 0, on request)
    moments: np.ndarray  # (K, D, D), (K, D) or (0,): see block_statistics


@dataclass(frozen=True)
class StatsLayout:
    """Where each statistic lives in the packed vector of one pass."""

    n_clusters: int
    n_features: int
    moments: MomentMode = "none"

    def _shapes(self) -> list[tuple[int, ...]]:
        k, d = self.n_clusters, self.n_features
        moment_shape = {"none": (0,), "full": (k, d, d), "power": (k, d)}[self.moments]
        return [(), (k,), (k, d), (), (), (), (), (k,), (), (), (k,), moment_shape]

    @property
    def size(self) -> int:
        """Length of the packed vector."""
        return int(sum(np.prod(s, dtype=int) for s in self._shapes()))

    def unpack(self, vector: np.ndarray) -> BlockStats:
        """Named views (not copies) into ``vector``."""
        views = []
        start = 0
        for shape in self._shapes():
            stop = start + int(np.prod(shape, dtype=int))
            views.append(vector[start:stop].reshape(shape))
            start = stop
        return BlockStats(*views)

    def empty(self) -> np.ndarray:
        """A zero vector to accumulate into."""
        return np.zeros(self.size, dtype=np.float64)


def working_dtype(dtype: np.dtype) -> type:
    """The dtype of the distance products: float32 stays float32, the rest float64."""
    return np.float32 if np.dtype(dtype) == np.float32 else np.float64


def sub_block_rows(n_clusters: int, n_features: int) -> int:
    """Rows per sub-block so that temporaries stay under a fixed budget."""
    return max(64, TEMPORARY_ELEMENTS // max(n_clusters, n_features, 1))


def _squared_distances(
    x_work: np.ndarray, centers_work: np.ndarray, center_norms: np.ndarray
) -> np.ndarray:
    """``(K, n)`` squared distances, laid out so reductions over K run along rows of n."""
    d = centers_work @ x_work.T
    d *= -2.0
    d += center_norms[:, None]
    d += np.einsum("ij,ij->i", x_work, x_work)[None, :]
    np.maximum(d, 0.0, out=d)
    return d


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
) -> np.ndarray:
    """Soft k-means statistics of one row block, packed for a tree reduction.

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
        one power-iteration product per cluster along ``directions``.
    directions : ndarray of shape (K, D), optional
        Unit vectors ``v_k``; required when ``moments="power"``.
    removal : bool, default=False
        At ``T = 0``, also sum for each center the extra inertia its points
        would cost if it were removed (second-nearest minus nearest distance).

    Returns
    -------
    ndarray of shape (StatsLayout(K, D, moments).size,)
        Float64 sums; read them with :meth:`StatsLayout.unpack`.  ``sums``
        are of ``x - offset``.
    """
    x = np.asarray(x)
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
    centers = np.asarray(centers, dtype=np.float64)
    n_clusters, n_features = centers.shape
    layout = StatsLayout(n_clusters, n_features, moments)
    out = layout.empty()
    acc = layout.unpack(out)
    offset = np.zeros(n_features) if offset is None else np.asarray(offset, np.float64)
    work = working_dtype(x.dtype)
    rel_centers = centers - offset
    centers_work = rel_centers.astype(work)
    center_norms = np.einsum("ij,ij->i", centers_work, centers_work)
    priors_work = None if log_priors is None else np.asarray(log_priors, work)
    if moments == "power":
        if directions is None:
            raise ValueError("moments='power' needs directions of shape (K, D).")
        directions = np.asarray(directions, np.float64)
        center_proj = np.einsum("kd,kd->k", rel_centers, directions)
    # The (rows, D*D) outer products of "full" moments count against the budget too.
    rows = sub_block_rows(n_clusters, n_features * n_features if moments == "full" else n_features)

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
        x_work = x64.astype(work, copy=False)
        d = _squared_distances(x_work, centers_work, center_norms)
        labels = d.argmin(axis=0)
        # The nearest distance again, directly in float64: the expanded
        # product above cancels when clusters are far apart relative to their size.
        diff = x64 - rel_centers[labels]
        dmin = np.einsum("ij,ij->i", diff, diff)
        hard = np.bincount(labels, weights=w, minlength=n_clusters)
        acc.weight[...] += w.sum()
        acc.hard_counts[...] += hard
        acc.inertia[...] += w @ dmin

        if temperature == 0 or not np.isfinite(1.0 / temperature):
            resp_w = np.zeros((n_clusters, n), dtype=np.float64)
            resp_w[labels, np.arange(n)] = w
            acc.free_energy[...] += w @ dmin
            acc.distortion[...] += w @ dmin
            acc.confidence[...] += w.sum()
            if removal and n_clusters > 1:
                second = np.partition(d, 1, axis=0)[1]
                extra = w * (second - d[labels, np.arange(n)])
                acc.removal[...] += np.bincount(labels, weights=extra, minlength=n_clusters)
        else:
            # Shifted logits u_ik = log pi_k - (d_ik - min_j d_ij) / T, at most log pi_k.
            u = d - d[labels, np.arange(n)][None, :]
            u *= -1.0 / temperature
            if priors_work is not None:
                u += priors_work[:, None]
            u_max = u.max(axis=0)
            u -= u_max[None, :]
            np.maximum(u, LOGIT_FLOOR, out=u)
            e = np.exp(u)
            z = e.sum(axis=0, dtype=np.float64)
            resp = e.astype(np.float64)
            resp /= z[None, :]
            log_z = np.log(z)
            resp_w = resp * w[None, :]
            # -sum_k p log p with log p = u - log z: never 0 * log 0.
            entropy = log_z - np.einsum("kn,kn->n", resp, u, dtype=np.float64)
            acc.entropy[...] += w @ entropy
            acc.free_energy[...] += w @ (dmin - temperature * (u_max + log_z))
            acc.distortion[...] += np.einsum("kn,kn->", resp_w, d, dtype=np.float64)
            acc.confidence[...] += w @ (1.0 / z)

        counts = resp_w.sum(axis=1)
        sums = resp_w @ x64
        acc.counts[...] += counts
        acc.sums[...] += sums
        if moments == "full":
            outer = (x64[:, :, None] * x64[:, None, :]).reshape(n, -1)
            q = (resp_w @ outer).reshape(n_clusters, n_features, n_features)
            # sum p (x - c)(x - c)^T = sum p x x^T - c S^T - S c^T + N c c^T
            cs = rel_centers[:, :, None] * sums[:, None, :]
            q -= cs + cs.transpose(0, 2, 1)
            q += counts[:, None, None] * rel_centers[:, :, None] * rel_centers[:, None, :]
            acc.moments[...] += q
        elif moments == "power":
            proj = directions @ x64.T
            proj -= center_proj[:, None]
            proj *= resp_w
            acc.moments[...] += proj @ x64 - rel_centers * proj.sum(axis=1)[:, None]
    return out


def scan_statistics(
    x: np.ndarray, origin: np.ndarray, *, weights: np.ndarray | None = None, gram: bool = True
) -> np.ndarray:
    """First-pass statistics: weight, weighted sums and (optionally) Gram matrix.

    ``nonfinite`` counts rows with a non-finite value or a non-finite or
    negative weight; those rows are left out of the sums.

    Packed as ``[weight, nonfinite, sum (D), gram (D*D or 0)]``, all relative
    to ``origin`` (one data row, so that far-away data does not cancel).
    """
    x = np.asarray(x)
    n_features = x.shape[1]
    out = np.zeros(2 + n_features + (n_features * n_features if gram else 0))
    finite = np.isfinite(x).all(axis=1)
    out[1] = np.count_nonzero(~finite)
    if weights is not None:
        weights = np.asarray(weights, np.float64)
        out[1] += np.count_nonzero(~np.isfinite(weights) | (weights < 0))
        finite &= np.isfinite(weights) & (weights >= 0)
    xb = x[finite].astype(np.float64) - origin
    w = np.ones(xb.shape[0]) if weights is None else weights[finite]
    out[0] = w.sum()
    # Overflow shows up as infinity in the sums; the caller explains it.
    with np.errstate(over="ignore", invalid="ignore"):
        out[2 : 2 + n_features] = w @ xb
        if gram:
            out[2 + n_features :] = ((xb * w[:, None]).T @ xb).ravel()
    return out


def responsibilities(
    x: np.ndarray,
    centers: np.ndarray,
    temperature: float,
    *,
    offset: np.ndarray | None = None,
    log_priors: np.ndarray | None = None,
) -> np.ndarray:
    """``(n, K)`` float64 responsibilities ``p_ik``; one-hot at ``T = 0``."""
    x = np.asarray(x)
    centers = np.asarray(centers, np.float64)
    n_clusters, n_features = centers.shape
    offset = np.zeros(n_features) if offset is None else np.asarray(offset, np.float64)
    work = working_dtype(x.dtype)
    centers_work = (centers - offset).astype(work)
    center_norms = np.einsum("ij,ij->i", centers_work, centers_work)
    x_work = (np.asarray(x, np.float64) - offset).astype(work, copy=False)
    d = _squared_distances(x_work, centers_work, center_norms)
    if temperature == 0:
        out = np.zeros((x.shape[0], n_clusters))
        out[np.arange(x.shape[0]), d.argmin(axis=0)] = 1.0
        return out
    u = (d - d.min(axis=0)[None, :]) * (-1.0 / temperature)
    if log_priors is not None:
        u += np.asarray(log_priors, work)[:, None]
    u -= u.max(axis=0)[None, :]
    e = np.exp(np.maximum(u, LOGIT_FLOOR)).astype(np.float64)
    e /= e.sum(axis=0)[None, :]
    return np.ascontiguousarray(e.T)


def nearest(
    x: np.ndarray, centers: np.ndarray, *, offset: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest center of each row and the exact float64 squared distance to it."""
    x = np.asarray(x)
    centers = np.asarray(centers, np.float64)
    n_features = centers.shape[1]
    offset = np.zeros(n_features) if offset is None else np.asarray(offset, np.float64)
    work = working_dtype(x.dtype)
    rel_centers = centers - offset
    centers_work = rel_centers.astype(work)
    center_norms = np.einsum("ij,ij->i", centers_work, centers_work)
    x64 = np.asarray(x, np.float64) - offset
    d = _squared_distances(x64.astype(work, copy=False), centers_work, center_norms)
    labels = d.argmin(axis=0)
    diff = x64 - rel_centers[labels]
    return labels.astype(np.int32), np.einsum("ij,ij->i", diff, diff)


def squared_distances(
    x: np.ndarray, centers: np.ndarray, *, offset: np.ndarray | None = None
) -> np.ndarray:
    """``(n, K)`` float64 squared distances from every row to every center."""
    centers = np.asarray(centers, np.float64)
    offset = np.zeros(centers.shape[1]) if offset is None else np.asarray(offset, np.float64)
    x64 = np.asarray(x, np.float64) - offset
    c = centers - offset
    d = _squared_distances(x64, c, np.einsum("ij,ij->i", c, c))
    return np.ascontiguousarray(d.T)
