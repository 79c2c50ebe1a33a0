"""The kernel's driver: one call adds the statistics of a block, a chunk of rows at a time.

numba keys the driver's disk cache on this file alone, yet the cached machine code holds
every phase it calls (soft chunks whose logits are mostly negligible now evaluate only the
marked ones, row by row, with their power moments, :mod:`._soft`; hard chunks add their
moments row by row, :mod:`._moments`): a change to a phase in another module must change this
file too, or a warm cache keeps running the old phases.
"""

from __future__ import annotations

from typing import Any

import numba as nb
import numpy as np
from numba.core import types

from ._chunk import first_product, prepare_chunk
from ._hard import exact_logits, exact_rows, fused_hard_sums, hard_sums, one_hot_test
from ._math import DRIVER
from ._moments import center_moments, hard_moments, moment_products
from ._nearest import nearest_centers
from ._plan import (
    BAD_ROWS,
    SWEEP_EQUAL,
    SWEEP_GAP,
    SWEEP_LLOYD,
    Centers,
    Outputs,
    Settings,
    allocate,
    make_plan,
)
from ._soft import flush_pending, pend_rows, soft_chunk
from ._transpose import IR_TRANSPOSE


def _signatures() -> list[Any]:
    """Eager signatures: float32 and float64 blocks, everything else fixed.

    The block and its weights are typed read-only, which also accepts writable
    arrays: a read-only block (a memory map, a Zarr read) must not need a copy.
    The arrays inside the tuples are writable (numba converts no tuple members),
    so the caller passes fresh ones.
    """
    f64, v1, v2 = types.float64, types.float64[::1], types.float64[:, ::1]
    settings = types.NamedTuple((f64, f64, types.int64, types.boolean, types.int64), Settings)
    outputs = types.NamedTuple((v1, v2, v1, v1, v1, v1, types.int32[::1]), Outputs)
    signatures = []
    for t in (types.float32, types.float64):
        centers = types.NamedTuple((v1, v2, types.Array(t, 2, "C"), v1, v1, v2), Centers)
        block = types.Array(t, 2, "C", readonly=True)
        weights = types.Array(f64, 1, "C", readonly=True)
        signatures.append(types.void(block, weights, centers, settings, outputs))
    return signatures


@nb.njit(_signatures(), **(DRIVER | {"cache": DRIVER["cache"] and IR_TRANSPOSE}))
def soft_block(x, weights, centers, settings, out):  # pragma: no cover - compiled
    """Add the statistics of the rows of ``x`` to ``out`` (float64 sums).

    ``x`` (n, D) in its own precision, ``weights`` (n,) or empty (1 per row);
    ``centers`` a :class:`.Centers` (``offset`` exact in the block's precision:
    ``x - offset`` is formed in it), ``settings`` a :class:`.Settings`, ``out``
    an :class:`.Outputs`.  Rows are taken ``settings.chunk`` at a time, which
    bounds every temporary.
    """
    n, dim = x.shape
    k = centers.work.shape[0]
    plan = make_plan(n, dim, centers.work.itemsize == 4, settings, centers.log_priors)
    work, rows, wrows, pending = allocate(x, centers, plan)
    totals = np.zeros(out.scalars.size)
    # The arrays the loop itself reads, taken out of their tuples once.
    log_priors, all_rows, abs_centers = centers.log_priors, work.all_rows, work.abs_centers
    weight, label, hard_counts, labels = rows.weight, rows.label, out.hard_counts, out.labels
    untested = 0  # chunks left before the one-hot test runs again
    n_buf = 0  # soft rows waiting in the soft-row buffer
    for start in range(0, n, plan.chunk):
        m = min(plan.chunk, n - start)
        sweep = SWEEP_GAP if plan.sweep == SWEEP_EQUAL and untested == 0 else plan.sweep
        # These sweeps need no norms, and their hard rows' exact distances are taken
        # in the loop of the hard sums.
        lean = sweep == SWEEP_LLOYD or sweep == SWEEP_GAP
        fused = lean and not plan.r64
        totals[BAD_ROWS] += prepare_chunk(x, weights, start, m, work, not lean, rows.norms, weight)
        g = work.g[: k * m].reshape((k, m))
        first_product(work, centers.work, plan.product, m, g)
        nearest_centers(sweep, g, m, centers, plan, rows, wrows)
        if labels.size:  # the assignments of a Lloyd pass, kept (predict)
            for i in range(m):
                labels[start + i] = np.int32(label[i])
        if not fused:
            exact_rows(x, start, all_rows, m, weight, rows, abs_centers, hard_counts, totals)
            if sweep == SWEEP_GAP:
                exact_logits(m, plan.temperature * log_priors[0], rows)

        n_soft = 0  # the chunk's rows that take the soft path
        added = False  # the soft path added the chunk's moments (its sparse route)
        if plan.soft:
            n_soft, untested = one_hot_test(sweep, g, m, log_priors, plan, rows, untested)
        if fused and 0 < n_soft < m:  # the soft rows' exact distances (the hard sums skip them)
            exact_rows(x, start, rows.soft_index, n_soft, rows.soft_w, rows, abs_centers,
                       hard_counts, totals)
        elif fused and n_soft:
            exact_rows(x, start, all_rows, m, weight, rows, abs_centers, hard_counts, totals)
        if n_soft < m and fused:
            tlp = plan.temperature * log_priors[0] if plan.soft else 0.0
            fused_hard_sums(x, start, m, work.xw, tlp, rows, abs_centers, out, totals)
        elif n_soft < m:
            hard_sums(sweep, g, m, log_priors, plan, work, rows, out, totals)

        if 0 < n_soft < m:
            if n_buf + n_soft > plan.chunk:
                flush_pending(pending, n_buf, log_priors, plan, work, rows, out, totals)
                n_buf = 0
            n_buf = pend_rows(g, n_soft, n_buf, work.xw, sweep == SWEEP_GAP, centers, plan, rows,
                              wrows, pending)
        elif n_soft:
            added = soft_chunk(g, m, work.xw, sweep == SWEEP_GAP, centers, plan, work, rows,
                               wrows, out, totals)
        if plan.r64 and not n_soft:
            hard_moments(m, label, weight, centers, plan, work, out)
        elif plan.r64 and not added:
            moment_products(m, centers, plan, work, out)

    if n_buf:
        flush_pending(pending, n_buf, log_priors, plan, work, rows, out, totals)
    center_moments(centers, plan, work, out)
    for t in range(totals.size):
        out.scalars[t] += totals[t]
