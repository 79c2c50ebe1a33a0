"""A chunk's rows, relative to the offset and in the working precision, and the first product."""

from __future__ import annotations

import numba as nb
import numpy as np

from ._math import FLOAT64_MAX, PHASE, STEP, product_into
from ._plan import PRODUCT_TILED, PRODUCT_XT
from ._transpose import IR_TRANSPOSE, tiled_product


@nb.njit(**PHASE)
def prepare_chunk(x, weights, start, m, work, with_norms, norms, wc):  # pragma: no cover - compiled
    """Rows ``start:start+m`` of ``x`` into ``work``; returns how many hold NaN or infinity.

    ``work.xw`` gets ``x - offset`` in the working precision (and ``work.x64``
    in float64, ``work.xt`` transposed, unless empty), ``wc`` the weights (1
    when ``weights`` is empty) and, ``with_norms``, ``norms`` the squared norms.
    Rows holding NaN or infinity get weight 0 and zero coordinates, so they
    add nothing.
    """
    dim = x.shape[1]
    xw = work.xw
    outside = _offset_rows(x, start, m, work.offset_tiled, xw, work.x64)
    if weights.size:
        for i in range(m):
            wc[i] = weights[start + i]
    else:
        for i in range(m):
            wc[i] = 1.0
    bad = _zero_nonfinite(x, start, m, xw, work.x64, wc) if outside else 0
    xt = work.xt[: dim * m].reshape((dim if work.xt.size else 0, m))
    if xt.size:
        for i in range(m):
            for j in range(dim):
                xt[j, i] = xw[i, j]
    if with_norms:
        _row_norms(xw, xt, m, norms)
    return bad


@nb.njit(**STEP)
def _offset_rows(x, start, m, offset_tiled, xw, x64):  # pragma: no cover - compiled
    """``xw = x - offset`` for the chunk's rows (and ``x64`` in float64 unless empty);
    returns how many of their values are NaN or infinite.

    One flat loop over the chunk (``offset_tiled`` repeats the offset once per
    row): a loop per row is too short to vectorise with few features.  The test
    is a comparison (``|v| <= max``, false for NaN and infinity), which fast
    math leaves alone, unlike arithmetic such as ``v - v``.
    """
    size = m * x.shape[1]
    flat = x[start : start + m].reshape(size)
    work = xw[:m].reshape(size)
    limit = np.finfo(flat.dtype).max
    one = flat.dtype.type(1.0)
    none = flat.dtype.type(0.0)
    outside = flat.dtype.type(0.0)  # a float count keeps the loop vectorised
    for t in range(size):
        xv = flat[t]
        outside += none if abs(xv) <= limit else one
        work[t] = xv - offset_tiled[t]
    if x64.size:
        wide = x64[:m].reshape(size)
        for t in range(size):
            wide[t] = np.float64(flat[t]) - np.float64(offset_tiled[t])
    return outside


@nb.njit(**STEP)
def _zero_nonfinite(x, start, m, xw, x64, wc):  # pragma: no cover - compiled
    """Weight 0 and zero coordinates for the chunk's rows holding NaN or infinity;
    returns their count."""
    dim = x.shape[1]
    bad = 0
    for i in range(m):
        finite = True
        for j in range(dim):
            finite &= abs(np.float64(x[start + i, j])) <= FLOAT64_MAX
        if not finite:
            bad += 1
            wc[i] = 0.0
            for j in range(dim):
                xw[i, j] = 0.0
            if x64.size:
                for j in range(dim):
                    x64[i, j] = 0.0
    return bad


@nb.njit(**STEP)
def _row_norms(xw, xt, m, norms):  # pragma: no cover - compiled
    """Squared norms of the chunk's rows in float64, along the points when transposed."""
    if xt.size:
        for i in range(m):
            norms[i] = 0.0
        for j in range(xt.shape[0]):
            row = xt[j]
            for i in range(m):
                v = np.float64(row[i])
                norms[i] += v * v
    else:
        for i in range(m):
            row = xw[i]
            acc = 0.0
            for j in range(xw.shape[1]):
                v = np.float64(row[j])
                acc += v * v
            norms[i] = acc


# Cached only with the register tiles, like the driver (see ._transpose).
@nb.njit(**(PHASE | {"cache": PHASE["cache"] and IR_TRANSPOSE}))
def first_product(work, centers_work, product, m, g):  # pragma: no cover - compiled
    """``g = C (x - offset)^T`` (K, m) in the working precision, as ``product`` says."""
    k, dim = centers_work.shape
    if product == PRODUCT_XT:
        product_into(centers_work, work.xt[: dim * m].reshape((dim, m)), g)
    elif product == PRODUCT_TILED:
        tiled_product(work.xw[:m], work.centers_t, work.gt[: k * m].reshape((m, k)), g)
    else:
        product_into(centers_work, work.xw[:m].T, g)
