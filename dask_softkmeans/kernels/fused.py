"""The compiled kernel behind the package's softmax passes and labels: arguments in, packed statistics out.

:mod:`.compiled` is numba code over plain arrays; this module prepares those
arrays (the centers relative to the block's offset, in the block's precision,
their norms, the priors) and packs what the kernel sums into a
:class:`.StatsLayout` vector, exactly as :func:`.reference.reference_statistics`
does in NumPy.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from .._typing import MomentMode
from .common import LOGIT_FLOOR, sub_block_rows
from .layout import StatsLayout

#: The compiled kernel takes rows in chunks whose ``(K, rows)`` buffers hold
#: about this many elements (256 KiB in float32), so that they stay in the
#: CPU's cache between the sweeps over them.
CACHE_ELEMENTS = 1 << 16

#: ... and never more than this many rows (``benchmarks/kernel_compare.py``
#: measures the effect of the chunk size).
MAX_CHUNK_ROWS = 512


def chunk_rows(n_clusters: int, n_features: int, moments: MomentMode = "none") -> int:
    """Rows the compiled kernel takes at a time: its ``(K, rows)`` buffers fit the CPU cache.

    Never more than :func:`sub_block_rows`, so that the temporaries of a block
    stay under the fixed budget whatever the chunk size of the data.
    """
    width = max(n_clusters, n_features, n_features * n_features if moments == "full" else 1)
    cap = sub_block_rows(n_clusters, n_features * n_features if moments == "full" else n_features)
    return max(1, min(CACHE_ELEMENTS // width, MAX_CHUNK_ROWS, cap))


#: The fields of :class:`.BlockStats` that the kernel's ``Outputs.scalars`` hold, in order.
_SCALARS = ("weight", "free_energy", "entropy", "distortion", "inertia", "confidence", "nonfinite")


@functools.lru_cache(maxsize=64)
def _packing(n_clusters: int, n_features: int, moments: MomentMode) -> tuple[
        int, tuple[slice, ...], np.ndarray, int]:
    """What every call with these shapes shares (a pass calls with the same ones each time):
    the packed vector's length; where counts, sums, hard counts, removal costs and moments
    lie in it; where the kernel's scalars go; the kernel's chunk of rows."""
    layout = StatsLayout(n_clusters, n_features, moments)
    parts = tuple(layout.part(name)
                  for name in ("counts", "sums", "hard_counts", "removal", "moments"))
    scalars = np.array([layout.part(name).start for name in _SCALARS])
    scalars.flags.writeable = False
    return layout.size, parts, scalars, chunk_rows(n_clusters, n_features, moments)


_MOMENT_CODES: dict[str, int] = {}
_COMPILED: list[Any] = []  # the compiled module, once imported


def _compiled() -> Any:
    """The compiled kernel's module: numba compiles (or loads) it on first use, not on import."""
    if not _COMPILED:
        from . import compiled

        _MOMENT_CODES.update(none=compiled.MOMENTS_NONE, full=compiled.MOMENTS_FULL,
                             power=compiled.MOMENTS_POWER)
        _COMPILED.append(compiled)
    return _COMPILED[0]


def fused_statistics(
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
    compiled = _compiled()
    n_clusters, n_features = centers.shape
    # A soft pass of a small block costs little more than this function's own Python:
    # what depends only on the shapes is looked up, and the kernel adds into views.
    size, parts, scalar_index, chunk = _packing(n_clusters, n_features, moments)
    out = np.zeros(size)
    counts, sums, hard_counts, removal_costs, moment_sums = (out[part] for part in parts)
    sums = sums.reshape(n_clusters, n_features)
    x = np.ascontiguousarray(x)
    offset = np.zeros(n_features) if offset is None else np.asarray(offset, np.float64)
    # The kernel forms x - offset in the block's precision: it takes the offset rounded to
    # it, and its sums are moved back to the caller's offset below, in float64.
    if x.dtype == np.float64:
        kernel_offset = offset.copy()
    else:
        with np.errstate(over="ignore"):
            kernel_offset = offset.astype(x.dtype).astype(np.float64)
    finite = np.isfinite(kernel_offset)
    all_finite = bool(finite.all())
    if not all_finite:
        kernel_offset[~finite] = 0.0  # beyond float32: no centering helps there
    # The kernel's offset differs from the caller's only where the offset is not finite
    # or not exact in the block's precision: never for a float64 block, nor for the zero
    # offset of an already centered copy.
    moved = not all_finite or (x.dtype != np.float64
                               and not np.array_equal(kernel_offset, offset))
    rel_centers = np.ascontiguousarray(centers - kernel_offset)
    centers_work = rel_centers.astype(x.dtype)
    if moments == "power":
        if directions is None:
            raise ValueError("moments='power' needs directions of shape (K, D).")
        directions = np.array(directions, np.float64, order="C")  # fresh: the kernel writes none
    else:
        directions = np.zeros((0, n_features))
    kernel_centers = compiled.Centers(
        offset=kernel_offset,
        rel=rel_centers,
        work=centers_work,
        norms=np.einsum("ij,ij->i", centers_work, centers_work, dtype=np.float64),
        log_priors=(np.zeros(n_clusters) if log_priors is None
                    else np.array(log_priors, np.float64, order="C")),
        directions=directions,
    )
    settings = compiled.Settings(
        temperature=float(temperature),
        floor=float(LOGIT_FLOOR),
        moments=_MOMENT_CODES[moments],
        removal=bool(removal),
        chunk=chunk,
    )
    scalars = np.zeros(len(compiled.TOTALS))
    # No weights: an empty array, read as 1 per row (not n ones to allocate and read).
    w = np.empty(0) if weights is None else np.ascontiguousarray(weights, np.float64)
    compiled.soft_block(x, w, kernel_centers, settings, compiled.Outputs(
        counts, sums, hard_counts, removal_costs, moment_sums, scalars,
        np.empty(0, np.int32) if labels is None else labels))
    out[scalar_index] = scalars
    if moved:
        sums += counts[:, None] * (kernel_offset - offset)
    return out


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
        fused_statistics(x, np.asarray(centers, np.float64), 0.0, offset=offset,
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


