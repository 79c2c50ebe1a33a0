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

import functools
import math
from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np

MomentMode = Literal["none", "full", "power"]
Normalization = Literal["softmax", "entmax15", "sparsemax"]

#: The normalisations of the logits ``u_ik = log pi_k - d_ik / T`` a pass knows.
NORMALIZATIONS: tuple[str, ...] = ("softmax", "entmax15", "sparsemax")

#: The sparse normalisations give exactly zero weight to a logit this far
#: (or further) below the row's largest one: sparsemax below 1, entmax-1.5
#: below 2.  Clipping there changes nothing and keeps huge logits (T -> 0) finite.
SPARSE_LOGIT_FLOOR = -3.0

#: Shifted logits below this are clipped before ``exp``: ``exp(-60)`` is
#: ~1e-26, negligible against the row's largest term (which is 1), and the
#: clip keeps ``exp`` out of the denormal range, where it is ~10x slower.
LOGIT_FLOOR = -60.0

#: Rows per sub-block are chosen so that one ``(K, rows)`` temporary holds
#: about this many elements, whatever the chunk size (8 MiB in float32).
TEMPORARY_ELEMENTS = 1 << 21

#: The compiled kernel takes rows in chunks whose ``(K, rows)`` buffers hold
#: about this many elements (256 KiB in float32), so that they stay in the
#: CPU's cache between the sweeps over them.
CACHE_ELEMENTS = 1 << 16

#: ... and never more than this many rows: the skinny ``C x^T`` product and
#: the per-row sweeps ran ~10% faster at 512 rows than at 2048 (32-D, K=32).
MAX_CHUNK_ROWS = 512


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

    def _slices(self) -> tuple[tuple[int, int, tuple[int, ...]], ...]:
        return _layout_slices(self)

    @property
    def size(self) -> int:
        """Length of the packed vector."""
        return self._slices()[-1][1]

    def unpack(self, vector: np.ndarray) -> BlockStats:
        """Named views (not copies) into ``vector``."""
        return BlockStats(*(vector[start:stop].reshape(shape) for start, stop, shape in self._slices()))

    def empty(self) -> np.ndarray:
        """A zero vector to accumulate into."""
        return np.zeros(self.size, dtype=np.float64)


@functools.lru_cache(maxsize=256)
def _layout_slices(layout: StatsLayout) -> tuple[tuple[int, int, tuple[int, ...]], ...]:
    """``(start, stop, shape)`` of each statistic; cached, as every pass unpacks twice."""
    slices, start = [], 0
    for shape in layout._shapes():
        stop = start + math.prod(shape)
        slices.append((start, stop, shape))
        start = stop
    return tuple(slices)


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


def chunk_rows(n_clusters: int, n_features: int, moments: MomentMode = "none") -> int:
    """Rows the compiled kernel takes at a time: its ``(K, rows)`` buffers fit the CPU cache.

    Never more than :func:`sub_block_rows`, so that the temporaries of a block
    stay under the fixed budget whatever the chunk size of the data.
    """
    width = max(n_clusters, n_features, n_features * n_features if moments == "full" else 1)
    cap = sub_block_rows(n_clusters, n_features * n_features if moments == "full" else n_features)
    return max(1, min(CACHE_ELEMENTS // width, MAX_CHUNK_ROWS, cap))


def _fused_statistics(
    x: np.ndarray,
    centers: np.ndarray,
    temperature: float,
    *,
    offset: np.ndarray | None,
    log_priors: np.ndarray | None,
    weights: np.ndarray | None,
    moments: MomentMode,
    directions: np.ndarray | None,
    removal: bool,
    labels: np.ndarray | None = None,
) -> np.ndarray:
    """:func:`block_statistics` with softmax responsibilities, by the compiled kernel;
    at ``temperature == 0`` each row's nearest center into ``labels`` (int32) if given."""
    from . import _compiled  # numba compiles (or loads) on first use, not on import

    n_clusters, n_features = centers.shape
    layout = StatsLayout(n_clusters, n_features, moments)
    out = layout.empty()
    acc = layout.unpack(out)
    x = np.ascontiguousarray(x)
    offset = np.zeros(n_features) if offset is None else np.asarray(offset, np.float64)
    # The kernel forms x - offset in the block's precision: it takes the offset rounded to
    # it, and its sums are moved back to the caller's offset below, in float64.
    with np.errstate(over="ignore"):
        kernel_offset = offset.astype(x.dtype).astype(np.float64)
    kernel_offset[~np.isfinite(kernel_offset)] = 0.0  # beyond float32: no centering helps there
    rel_centers = np.ascontiguousarray(centers - kernel_offset)
    centers_work = rel_centers.astype(x.dtype)
    center_norms = np.einsum("ij,ij->i", centers_work, centers_work, dtype=np.float64)
    priors = (np.zeros(n_clusters) if log_priors is None
              else np.ascontiguousarray(log_priors, dtype=np.float64))
    # No weights: an empty array, read as 1 per row (not n ones to allocate and read).
    w = np.empty(0) if weights is None else np.ascontiguousarray(weights, np.float64)
    mode = {"none": _compiled.MOMENTS_NONE, "full": _compiled.MOMENTS_FULL,
            "power": _compiled.MOMENTS_POWER}[moments]
    if moments == "power":
        if directions is None:
            raise ValueError("moments='power' needs directions of shape (K, D).")
        directions = np.ascontiguousarray(directions, np.float64)
    else:
        directions = np.zeros((0, n_features))
    scalars = np.zeros(7)
    _compiled.soft_block(
        x, w, kernel_offset, rel_centers, centers_work, center_norms, priors, float(temperature),
        LOGIT_FLOOR, mode, directions, bool(removal), chunk_rows(n_clusters, n_features, moments),
        acc.counts, acc.sums, acc.hard_counts, acc.removal, acc.moments.reshape(-1), scalars,
        np.empty(0, np.int32) if labels is None else labels,
    )
    for name, value in zip(
        ("weight", "free_energy", "entropy", "distortion", "inertia", "confidence", "nonfinite"),
        scalars, strict=True,
    ):
        getattr(acc, name)[...] = value
    acc.sums[...] += acc.counts[:, None] * (kernel_offset - offset)
    return out


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
    normalization : {"softmax", "entmax15", "sparsemax"}, default="softmax"
        How logits become responsibilities (see :func:`normalize`).  With a
        sparse one, ``entropy`` holds the sum of its regulariser ``Omega`` and
        ``free_energy`` the sum of ``sum_k p_k (d_k - T log pi_k) - T Omega``;
        the gradient is ``2 (N_k c_k - S_k)`` for every normalisation.

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
    if normalization == "softmax" or temperature == 0 or not np.isfinite(1.0 / temperature):
        return _fused_statistics(
            x, centers, temperature, offset=offset, log_priors=log_priors, weights=weights,
            moments=moments, directions=directions, removal=removal)
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

        # Sparse normalisations at T > 0 (softmax and T = 0 run compiled, above).
        u = d - d[labels, np.arange(n)][None, :]
        with np.errstate(over="ignore"):
            u = u.astype(np.float64) * (-1.0 / temperature)
        if priors_work is not None:
            u += np.asarray(log_priors, np.float64)[:, None]
        resp, omega = normalize(u, normalization)
        resp_w = resp * w[None, :]
        row_distortion = np.einsum("kn,kn->n", resp, d, dtype=np.float64)
        row_free = row_distortion - temperature * omega
        if priors_work is not None:
            row_free -= temperature * (np.asarray(log_priors, np.float64) @ resp)
        acc.entropy[...] += w @ omega
        acc.free_energy[...] += w @ row_free
        acc.distortion[...] += w @ row_distortion
        acc.confidence[...] += w @ resp.max(axis=0)

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
    # Sub-blocks keep the float64 temporaries small whatever the block size
    # (a streamed pass holds a block and these temporaries, nothing else).
    rows = sub_block_rows(1, n_features)
    for start in range(0, x.shape[0], rows):
        part = x[start : start + rows]
        finite = np.isfinite(part).all(axis=1)
        out[1] += np.count_nonzero(~finite)
        w = None
        if weights is not None:
            w = np.asarray(weights[start : start + rows], np.float64)
            out[1] += np.count_nonzero(~np.isfinite(w) | (w < 0))
            finite &= np.isfinite(w) & (w >= 0)
        xb = part[finite].astype(np.float64) - origin
        w = np.ones(xb.shape[0]) if w is None else w[finite]
        out[0] += w.sum()
        # Overflow shows up as infinity in the sums; the caller explains it.
        with np.errstate(over="ignore", invalid="ignore"):
            out[2 : 2 + n_features] += w @ xb
            if gram:
                out[2 + n_features :] += ((xb * w[:, None]).T @ xb).ravel()
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
    d = _squared_distances(x_work, centers_work, center_norms)
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


def nearest_labels(
    x: np.ndarray, centers: np.ndarray, *, offset: np.ndarray | None = None
) -> np.ndarray:
    """Nearest center of each (finite) row, int32: the assignments of a Lloyd pass.

    By the compiled kernel at ``T = 0``, so the labels are those the fit's own
    Lloyd passes make (ties to the lower index); float32 rows are compared in
    float32, as the passes do.
    """
    x = np.asarray(x)
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
    labels = np.empty(x.shape[0], np.int32)
    if x.shape[0]:
        _fused_statistics(x, np.asarray(centers, np.float64), 0.0, offset=offset,
                          log_priors=None, weights=None, moments="none", directions=None,
                          removal=False, labels=labels)
    return labels


def nearest(
    x: np.ndarray, centers: np.ndarray, *, offset: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest center of each row (:func:`nearest_labels`) and the exact float64
    squared distance to it."""
    centers = np.asarray(centers, np.float64)
    labels = nearest_labels(x, centers, offset=offset)
    diff = np.asarray(x, np.float64) - centers[labels]
    return labels, np.einsum("ij,ij->i", diff, diff)


def squared_distances(
    x: np.ndarray, centers: np.ndarray, *, offset: np.ndarray | None = None
) -> np.ndarray:
    """``(n, K)`` float64 squared distances from every row to every center.

    Formed in that layout (``x c^T`` with the norms added), not as the ``(K, n)``
    of the passes transposed: 1.5x faster at 32 features and clusters.
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


# -- the normalised RBF network ---------------------------------------------
#
# Hidden layer h_ik = p_ik (the responsibilities at temperature T, equal priors),
# output o_i = h_i W + b.  Per row, the objective adds a supervised loss l_i(o_i)
# and the free energy in units of T plus the Gaussian normalisation,
# u_i = f_i / T + (D/2) log T with f_i = sum_k p_ik d_ik - T Omega(p_i)
# (for softmax u_i = -log sum_k exp(-d_ik / T) + (D/2) log T: the negative
# log-likelihood, up to constants, of an equal-weight Gaussian mixture of
# variance T/2).  Its gradient in the centers is 2 (N_k c_k - S_k) / T, the
# clustering gradient; the (D/2) log T term only keeps a learned T finite.

RBFTask = Literal["regression", "classification"]


class RBFBlock(NamedTuple):
    """Named views into the packed vector of :func:`rbf_gradient_block` (float64 sums)."""

    weight: np.ndarray  # () total weight W
    loss: np.ndarray  # () sum_i w_i l_i
    unsupervised: np.ndarray  # () sum_i w_i u_i
    correct: np.ndarray  # () weight of rows whose largest output is the label (classification)
    centers_loss: np.ndarray  # (K, D) d(sum w l)/dC
    centers_unsupervised: np.ndarray  # (K, D) d(sum w u)/dC = 2 (N c - S) / T
    readout: np.ndarray  # (K, M) d(sum w l)/dW
    bias: np.ndarray  # (M,) d(sum w l)/db
    log_temperature_loss: np.ndarray  # () d(sum w l)/d log T
    log_temperature_unsupervised: np.ndarray  # () d(sum w u)/d log T


@dataclass(frozen=True)
class RBFLayout:
    """Where each part of :class:`RBFBlock` lives in the packed vector."""

    n_centers: int
    n_features: int
    n_outputs: int

    def _shapes(self) -> list[tuple[int, ...]]:
        k, d, m = self.n_centers, self.n_features, self.n_outputs
        return [(), (), (), (), (k, d), (k, d), (k, m), (m,), (), ()]

    @property
    def size(self) -> int:
        """Length of the packed vector."""
        return int(sum(np.prod(s, dtype=int) for s in self._shapes()))

    def unpack(self, vector: np.ndarray) -> RBFBlock:
        """Named views (not copies) into ``vector``."""
        views, start = [], 0
        for shape in self._shapes():
            stop = start + int(np.prod(shape, dtype=int))
            views.append(vector[start:stop].reshape(shape))
            start = stop
        return RBFBlock(*views)


def _rbf_hidden(
    x64: np.ndarray, centers: np.ndarray, temperature: float, normalization: Normalization
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Shifted distances ``d - min_k d`` (K, n), ``min_k d`` (n,), activations ``p`` and ``Omega(p)``."""
    d = _squared_distances(x64, centers, np.einsum("ij,ij->i", centers, centers))
    labels = d.argmin(axis=0)
    columns = np.arange(d.shape[1])
    # The nearest distance directly: the expanded product cancels far from the origin.
    diff = x64 - centers[labels]
    dmin = np.einsum("ij,ij->i", diff, diff)
    d -= d[labels, columns][None, :]
    p, omega = normalize(d * (-1.0 / temperature), normalization)
    return d, dmin, p, omega


def rbf_normal_block(
    x: np.ndarray,
    side: np.ndarray,
    centers: np.ndarray,
    temperature: float,
    *,
    offset: np.ndarray,
    normalization: Normalization = "softmax",
    n_classes: int = 0,
) -> np.ndarray:
    """Weighted normal equations of the linear read-out on one row block.

    ``side`` holds ``[w_i, y_i1 .. y_iM]`` rows, or ``[w_i, class_i]`` when
    ``n_classes > 0`` (the targets are then the one-hot rows, ``M = n_classes``).
    With ``H1 = [H, 1]`` (the hidden layer and a bias column) returns the
    packed float64 ``[W, H1^T diag(w) H1 (K+1)^2, H1^T diag(w) Y ((K+1) M)]``.
    """
    centers = np.asarray(centers, np.float64) - offset
    n_centers = centers.shape[0]
    n_outputs = n_classes if n_classes else side.shape[1] - 1
    gram = np.zeros((n_centers + 1, n_centers + 1))
    cross = np.zeros((n_centers + 1, n_outputs))
    rows = sub_block_rows(n_centers, x.shape[1])
    for start in range(0, x.shape[0], rows):
        x64 = np.asarray(x[start : start + rows], np.float64) - offset
        s = np.asarray(side[start : start + rows], np.float64)
        p = _rbf_hidden(x64, centers, temperature, normalization)[2]
        h1 = np.vstack([p, np.ones((1, p.shape[1]))])  # (K + 1, n)
        hw = h1 * s[:, 0][None, :]
        gram += hw @ h1.T
        if n_classes:
            cross += np.stack([
                np.bincount(s[:, 1].astype(np.intp), weights=row, minlength=n_classes)
                for row in hw])
        else:
            cross += hw @ s[:, 1:]
    return np.concatenate([[side[:, 0].sum()], gram.ravel(), cross.ravel()])


def rbf_gradient_block(
    x: np.ndarray,
    side: np.ndarray,
    centers: np.ndarray,
    readout: np.ndarray,
    bias: np.ndarray,
    temperature: float,
    *,
    offset: np.ndarray,
    task: RBFTask,
    normalization: Normalization = "softmax",
) -> np.ndarray:
    """Loss, unsupervised term and their gradients on one row block, packed (see :class:`RBFLayout`).

    ``side`` holds ``[w_i, y_i...]`` rows: targets for "regression" (loss
    ``||o - y||^2 / 2``), the class index for "classification" (cross-entropy
    of ``softmax(o)``).  All gradients are sums over the rows, in float64.
    """
    centers = np.asarray(centers, np.float64) - offset
    readout = np.asarray(readout, np.float64)
    bias = np.asarray(bias, np.float64)
    n_centers, n_features = centers.shape
    layout = RBFLayout(n_centers, n_features, readout.shape[1])
    out = np.zeros(layout.size)
    acc = layout.unpack(out)
    rows = sub_block_rows(max(n_centers, readout.shape[1]), n_features)
    half_log_t = 0.5 * n_features * np.log(temperature)
    for start in range(0, x.shape[0], rows):
        x64 = np.asarray(x[start : start + rows], np.float64) - offset
        s = np.asarray(side[start : start + rows], np.float64)
        w = s[:, 0]
        n = x64.shape[0]
        d, dmin, p, omega = _rbf_hidden(x64, centers, temperature, normalization)
        output = p.T @ readout + bias  # (n, M)
        if task == "regression":
            grad_out = output - s[:, 1:]
            loss = 0.5 * np.einsum("nm,nm->n", grad_out, grad_out)
        else:
            labels = s[:, 1].astype(np.intp)
            shifted = output - output.max(axis=1, keepdims=True)
            log_proba = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
            loss = -log_proba[np.arange(n), labels]
            grad_out = np.exp(log_proba)
            grad_out[np.arange(n), labels] -= 1.0
            acc.correct[...] += w @ (output.argmax(axis=1) == labels)
        grad_out *= w[:, None]
        grad_logits = normalize_vjp(p, readout @ grad_out.T, normalization)  # (K, n)
        # u_ik = -d_ik / T: du/dc_k = 2 (x_i - c_k) / T, du/dlog T = d_ik / T.
        acc.centers_loss[...] += (2.0 / temperature) * (
            grad_logits @ x64 - grad_logits.sum(axis=1)[:, None] * centers)
        acc.log_temperature_loss[...] += np.einsum("kn,kn->", grad_logits, d) / temperature
        acc.readout[...] += p @ grad_out
        acc.bias[...] += grad_out.sum(axis=0)
        acc.loss[...] += w @ loss
        # The unsupervised term, with the nearest distance put back into d.
        row_distortion = np.einsum("kn,kn->n", p, d) + dmin
        acc.unsupervised[...] += w @ (row_distortion / temperature - omega) + w.sum() * half_log_t
        pw = p * w[None, :]
        counts = pw.sum(axis=1)
        acc.centers_unsupervised[...] += (2.0 / temperature) * (
            counts[:, None] * centers - pw @ x64)
        acc.log_temperature_unsupervised[...] += w @ (0.5 * n_features - row_distortion / temperature)
        acc.weight[...] += w.sum()
    return out


def rbf_outputs(
    x: np.ndarray,
    centers: np.ndarray,
    temperature: float,
    *,
    offset: np.ndarray,
    normalization: Normalization,
    readout: np.ndarray,
    bias: np.ndarray,
) -> np.ndarray:
    """``(n, M)`` network outputs ``o = h W + b`` of the rows of ``x``."""
    hidden = responsibilities(x, centers, temperature, offset=offset, normalization=normalization)
    return hidden @ readout + bias
