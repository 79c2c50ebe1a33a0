"""The compiled (numba) kernel of :func:`.kernels.block_statistics`: one fused pass over a block.

Why compiled: a soft pass does a handful of cheap operations per point and
cluster (distance from the product, minimum, ``exp``, normaliser, entropy,
weighting).  As separate NumPy sweeps over a ``(K, n)`` matrix each one reads
and writes the whole matrix, and the sweeps, not the two matrix products,
dominate the pass.  Here the rows go through in chunks small enough for the
CPU cache: two BLAS products per chunk (``C x^T`` for the distances, ``R x``
for the soft sums, in the data's float precision), and in between one sweep
per cluster row that the compiler vectorises along the points.  Every
reduced sum accumulates in float64.

:func:`soft_block` is a short driver; per chunk its phases are

1. :func:`._chunk.prepare_chunk`: the rows minus the offset, weights, norms;
   rows holding NaN or infinity get weight 0;
2. :func:`._chunk.first_product`: ``g = C (x - offset)^T`` (:mod:`._transpose`);
3. :func:`._nearest.nearest_centers`: distances, nearest centers, largest
   logits, by the sweep the modes call for (:mod:`._plan`);
4. :func:`._hard.exact_rows`: the nearest distance again, exactly, in float64;
5. :func:`._hard.one_hot_test`: which rows are soft (none, a few, or all);
6. :func:`._hard.hard_sums`: the one-hot rows as hard assignments;
7. :mod:`._soft`: the soft rows, at once or through the soft-row buffer;
8. :func:`._moments.moment_products` (soft chunks) or :func:`._moments.hard_moments`
   (hard ones): the second moments, if asked for.

:func:`._sparse_maps.sparse_rows` is the row loop of the sparse maps' passes
(entmax-1.5, sparsemax) after their distances, over each row's support only.

The inline ``exp`` and ``log`` are in :mod:`._math`.  The functions are
compiled eagerly for float32 and float64 blocks and cached on disk, in the
user's cache directory (:mod:`._cache`: never in the installed package), so
that a fresh process loads machine code instead of compiling it; they release the
GIL, so the threaded scheduler runs blocks in parallel.  Nothing is shared
between calls: each call allocates its own buffers, so concurrent calls from
several threads are safe.
"""

from __future__ import annotations

from ._cache import CACHE_DIR, KernelCacheWarning, kernel_cache

# The decorators choose their cache directory as they run: the kernel's modules are
# imported inside kernel_cache(), and only here (this package's __init__ runs first).
with kernel_cache():
    from ._driver import soft_block
    from ._plan import (
        MOMENTS_FULL,
        MOMENTS_NONE,
        MOMENTS_POWER,
        TOTALS,
        Centers,
        Outputs,
        Settings,
    )
    from ._sparse_maps import sparse_rows
    from ._transpose import IR_TRANSPOSE

__all__ = [
    "CACHE_DIR",
    "IR_TRANSPOSE",
    "MOMENTS_FULL",
    "MOMENTS_NONE",
    "MOMENTS_POWER",
    "TOTALS",
    "Centers",
    "KernelCacheWarning",
    "Outputs",
    "Settings",
    "soft_block",
    "sparse_rows",
]
