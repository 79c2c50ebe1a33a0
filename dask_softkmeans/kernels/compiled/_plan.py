"""What the kernel takes and gives, the modes of a pass, and the kernel's buffers.

The modes are derived once per call, in :func:`make_plan`; every buffer is
allocated once per call, in :func:`allocate`.  Nothing is shared between
calls, so that threads may run the kernel at once.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numba as nb
import numpy as np

from ._math import STEP
from ._transpose import IR_TRANSPOSE, TILE

#: Codes of the second-moment statistic (see :func:`.kernels.block_statistics`).
MOMENTS_NONE, MOMENTS_FULL, MOMENTS_POWER = 0, 1, 2

#: How a chunk finds each row's nearest center, and what else with it.
#: ``SWEEP_LLOYD``: T = 0, the nearest center alone, from ``|c|^2 - 2 x.c``.
#: ``SWEEP_REMOVAL``: T = 0, the nearest two distances (the removal costs).
#: ``SWEEP_PRIORS``: T > 0, unequal priors: float64 distances, nearest, largest logit.
#: ``SWEEP_EQUAL``: T > 0, equal priors: distances in the working precision, nearest.
#: ``SWEEP_GAP``: ``SWEEP_EQUAL`` after one-hot chunks: the nearest two from the
#: products alone, a row being one-hot when its second-nearest is far enough.
SWEEP_LLOYD, SWEEP_REMOVAL, SWEEP_PRIORS, SWEEP_EQUAL, SWEEP_GAP = 0, 1, 2, 3, 4

#: How the first product ``g = C (x - offset)^T`` (K, rows) is formed:
#: ``PRODUCT_PLAIN`` as such; ``PRODUCT_XT`` as ``C xt`` from the chunk transposed
#: while it is prepared (BLAS runs that shape faster, and with few features the
#: transposition costs less than it saves); ``PRODUCT_TILED`` as ``x C^T`` transposed
#: in registers (see :mod:`._transpose`).
PRODUCT_PLAIN, PRODUCT_XT, PRODUCT_TILED = 0, 1, 2

#: ``PRODUCT_XT`` up to this many features.
_TRANSPOSE_MAX_DIM = 8

#: ``PRODUCT_TILED`` for float32 blocks with more features, up to this many, and at
#: least ``TILE`` clusters; beyond, the product's shape no longer matters.
_TILE_MAX_DIM = 64

#: ... with at most this many rows per chunk, so that both products' buffers stay in
#: the L1 cache.
_TILE_CHUNK_ROWS = 128

#: Padding (float64 elements) of the per-point buffers' row stride: at 512 rows,
#: separate arrays would sit 4 KiB apart, and the CPU then takes the loads of one
#: for stores to another (4K aliasing), which slows every sweep.
_PAD = 40


class Centers(NamedTuple):
    """The centers as the kernel takes them (all fresh, writable, C-contiguous)."""

    offset: np.ndarray  #: (D,) float64, exact in the block's precision
    rel: np.ndarray  #: (K, D) float64: centers - offset
    work: np.ndarray  #: (K, D) ``rel`` in the block's precision
    norms: np.ndarray  #: (K,) float64 squared norms of ``work``
    log_priors: np.ndarray  #: (K,) float64
    directions: np.ndarray  #: (K, D) float64 for ``MOMENTS_POWER``, else (0, D)


class Settings(NamedTuple):
    """The scalar parameters of a pass, with exactly these Python types."""

    temperature: float  #: T >= 0; 0 (or 1 / T not finite) gives hard assignments
    floor: float  #: the logit floor
    moments: int  #: a ``MOMENTS_*`` code
    removal: bool  #: the removal costs (at T = 0 only)
    chunk: int  #: rows at a time


class Outputs(NamedTuple):
    """Float64 sums the kernel adds to (and the labels it writes)."""

    counts: np.ndarray  #: (K,)
    sums: np.ndarray  #: (K, D), of x - offset
    hard_counts: np.ndarray  #: (K,)
    removal: np.ndarray  #: (K,)
    moments: np.ndarray  #: flat: (K * D * D,), (K * D,) or empty
    scalars: np.ndarray  #: (7,), see ``TOTALS``
    labels: np.ndarray  #: (n,) int32 nearest centers at T = 0, or empty


#: The order of ``Outputs.scalars`` and of the driver's running totals.
W_SUM, F_SUM, H_SUM, D_SUM, J_SUM, CONF_SUM, BAD_ROWS = range(7)
TOTALS = ("weight", "free energy", "entropy", "distortion", "inertia", "confidence",
          "non-finite rows")


class Plan(NamedTuple):
    """The modes of one call, derived from its arguments by :func:`make_plan`."""

    sweep: int  #: SWEEP_LLOYD, SWEEP_REMOVAL, SWEEP_PRIORS or SWEEP_EQUAL
    soft: bool  #: T > 0: softmax responsibilities
    product: int  #: a ``PRODUCT_*`` code
    chunk: int  #: rows at a time
    temperature: float
    inv_t: float  #: 1 / T, 0 when hard
    floor: float  #: shifted logits are clipped to this
    e_cut: float  #: responsibilities up to this become exact zeros
    moments: int  #: a ``MOMENTS_*`` code
    r64: bool  #: the chunk's responsibilities are kept in float64 (for the moments)


class Work(NamedTuple):
    """A chunk's arrays: the rows, the products, the centers' derived forms."""

    xw: np.ndarray  #: (chunk, D) x - offset, working precision
    xt: np.ndarray  #: flat (D * chunk) its transpose for ``PRODUCT_XT``, else empty
    x64: np.ndarray  #: (chunk, D) x - offset in float64 for the moments, else (0, D)
    offset_tiled: np.ndarray  #: (chunk * D) the offset once per row, block precision
    g: np.ndarray  #: flat (K * chunk): products -> distances -> responsibilities
    gt: np.ndarray  #: flat (chunk * K) for ``PRODUCT_TILED``, else empty
    centers_t: np.ndarray  #: (D, K) ``Centers.work`` transposed
    abs_centers: np.ndarray  #: (K, D) float64 centers, for the exact distances
    s_work: np.ndarray  #: (K, D) the soft sums' product
    r: np.ndarray  #: flat (K * chunk) float64 responsibilities for the moments
    s64: np.ndarray  #: (K, D) float64 products for the moments, else (0, D)
    outer: np.ndarray  #: (chunk, D * D) float64 outer products for ``MOMENTS_FULL``
    q: np.ndarray  #: (K, D * D) float64 their product for ``MOMENTS_FULL``
    proj: np.ndarray  #: flat (K * chunk) float64 projections for ``MOMENTS_POWER``
    center_proj: np.ndarray  #: (K,) the centers' projections on their directions
    proj_sums: np.ndarray  #: (K,) summed weighted projections
    all_rows: np.ndarray  #: (chunk,) int64 ``arange``: every row of a chunk
    marks: np.ndarray  #: flat (ceil(K / 64) * chunk) int64: each soft row's logits above the cut
    directions: np.ndarray  #: (K, D) ``Centers.directions`` (the power moments' unit vectors)


class Rows(NamedTuple):
    """Per-point float64 values of a chunk: rows of one padded buffer."""

    norms: np.ndarray  #: squared norms of xw
    weight: np.ndarray  #: the rows' weights (0 for non-finite and buffered rows)
    best: np.ndarray  #: nearest distance
    second: np.ndarray  #: second-nearest distance (removal costs)
    exact: np.ndarray  #: nearest distance, exact in float64
    amax: np.ndarray  #: largest logit T log pi - d
    z: np.ndarray  #: normaliser (or the one-hot test's count)
    su: np.ndarray  #: sum of exp(u) u
    sd: np.ndarray  #: sum of exp(u) d
    soft_w: np.ndarray  #: weights of the soft rows of a mixed chunk
    label: np.ndarray  #: int64 nearest center (largest logit)
    soft_index: np.ndarray  #: int64 the soft rows of a mixed chunk


class WorkRows(NamedTuple):
    """Per-point values of the equal-priors sweeps, in the working precision."""

    norms: np.ndarray
    best: np.ndarray
    second: np.ndarray
    label: np.ndarray  #: int32


class Pending(NamedTuple):
    """Soft rows of mixed chunks, waiting until a chunk's worth takes the soft path."""

    g: np.ndarray  #: flat (K * chunk) their distances, row stride ``chunk``
    xw: np.ndarray  #: (chunk, D) their rows
    pp: np.ndarray  #: (4, chunk + pad) their [amax, best, exact, weight]


@nb.njit(**STEP)
def make_plan(n, dim, single, settings, log_priors):  # pragma: no cover - compiled
    """The modes of a call; ``single``: a float32 block."""
    k = log_priors.size
    temperature = settings.temperature
    soft = temperature > 0.0 and math.isfinite(1.0 / temperature)
    equal_priors = True
    for c in range(k):
        equal_priors &= log_priors[c] == log_priors[0]
    if not soft:
        sweep = SWEEP_REMOVAL if settings.removal else SWEEP_LLOYD
    else:
        sweep = SWEEP_EQUAL if equal_priors else SWEEP_PRIORS
    if dim <= _TRANSPOSE_MAX_DIM:
        product = PRODUCT_XT
    elif IR_TRANSPOSE and single and dim <= _TILE_MAX_DIM and k >= TILE:
        product = PRODUCT_TILED
    else:
        product = PRODUCT_PLAIN
    chunk = max(1, min(settings.chunk, n))
    if product == PRODUCT_TILED:
        chunk = min(chunk, _TILE_CHUNK_ROWS)
    return Plan(sweep, soft, product, chunk, temperature, 1.0 / temperature if soft else 0.0,
                settings.floor, 2.0 * math.exp(settings.floor), settings.moments,
                settings.moments != MOMENTS_NONE)


@nb.njit(**STEP)
def allocate(x, centers, plan):  # pragma: no cover - compiled
    """The buffers of a call: :class:`Work`, :class:`Rows`, :class:`WorkRows`, :class:`Pending`."""
    return (_work_arrays(x, centers, plan), _rows(plan.chunk),
            _work_rows(plan.chunk, centers.work.dtype), _pending(plan, centers))


@nb.njit(**STEP)
def _work_arrays(x, centers, plan):  # pragma: no cover - compiled
    dim = x.shape[1]
    chunk = plan.chunk
    k, wdt = centers.work.shape[0], centers.work.dtype
    offset_tiled = np.empty(chunk * dim, x.dtype)
    for i in range(chunk):
        offset_tiled[i * dim : (i + 1) * dim] = centers.offset
    for j in range(dim):
        if np.float64(offset_tiled[j]) != centers.offset[j]:
            raise ValueError("the offset must be exact in the block's precision")
    # The centers themselves, for the exact distance x - c: one subtraction per
    # coordinate instead of two ((x - offset) - rel).
    abs_centers = np.empty((k, dim))
    for c in range(k):
        for j in range(dim):
            abs_centers[c, j] = centers.offset[j] + centers.rel[c, j]
    power = plan.moments == MOMENTS_POWER
    full = plan.moments == MOMENTS_FULL
    center_proj = np.zeros(k)
    if power:
        for c in range(k):
            acc = 0.0
            for j in range(dim):
                acc += centers.rel[c, j] * centers.directions[c, j]
            center_proj[c] = acc
    return Work(
        np.empty((chunk, dim), wdt),
        np.empty(chunk * dim if plan.product == PRODUCT_XT else 0, wdt),
        np.empty((chunk if plan.r64 else 0, dim), np.float64),
        offset_tiled,
        np.empty(k * chunk, wdt),
        np.empty(k * chunk if plan.product == PRODUCT_TILED else 0, wdt),
        np.ascontiguousarray(centers.work.T),
        abs_centers,
        np.empty((k, dim), wdt),
        np.empty(k * chunk if plan.r64 else 0, np.float64),
        np.empty((k if plan.r64 else 0, dim), np.float64),
        np.empty((chunk if full else 0, dim * dim), np.float64),
        np.empty((k if full else 0, dim * dim), np.float64),
        np.empty(k * chunk if power else 0, np.float64),
        center_proj,
        np.zeros(k),
        np.arange(chunk),
        np.empty(((k + 63) // 64) * chunk if plan.soft and (power or not plan.r64) else 0,
                 np.int64),
        centers.directions,
    )


@nb.njit(**STEP)
def _rows(chunk):  # pragma: no cover - compiled
    b = np.empty((12, chunk + _PAD))
    return Rows(b[0][:chunk], b[1][:chunk], b[2][:chunk], b[3][:chunk], b[4][:chunk], b[5][:chunk],
                b[6][:chunk], b[7][:chunk], b[8][:chunk], b[10][:chunk],
                b[9][:chunk].view(np.int64), b[11][:chunk].view(np.int64))


@nb.njit(**STEP)
def _work_rows(chunk, dtype):  # pragma: no cover - compiled
    return WorkRows(np.empty(chunk + _PAD, dtype)[:chunk], np.empty(chunk + _PAD, dtype)[:chunk],
                    np.empty(chunk + _PAD, dtype)[:chunk], np.empty(chunk + _PAD, np.int32)[:chunk])


@nb.njit(**STEP)
def _pending(plan, centers):  # pragma: no cover - compiled
    k, dim = centers.work.shape
    rows = plan.chunk if plan.soft else 0
    return Pending(np.empty(k * rows, centers.work.dtype), np.empty((rows, dim), centers.work.dtype),
                   np.empty((4, rows + _PAD if plan.soft else 0)))
