"""The sweeps over a chunk's product ``g`` (K, m): distances, nearest centers, largest logits.

Each sweep runs along the points, one center at a time, so that the compiler
vectorises it; each loop touches few arrays, as with more (say, a
second-largest logit too) it is no longer vectorised.  With
``a_ik = T log pi_k - d_ik`` the shifted logits are
``u_ik - max_j u_ij = (a_ik - max_j a_ij) / T``.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from ._math import PHASE, STEP
from ._plan import SWEEP_EQUAL, SWEEP_GAP, SWEEP_LLOYD, SWEEP_PRIORS


@nb.njit(**PHASE)
def nearest_centers(sweep, g, m, centers, plan, rows, wrows):  # pragma: no cover - compiled
    """Run the chunk's ``sweep`` (a ``SWEEP_*`` code) over ``g``; see each sweep for what
    it leaves in ``rows`` and ``wrows``."""
    norms, log_priors, t = centers.norms, centers.log_priors, plan.temperature
    if sweep == SWEEP_LLOYD:
        _lloyd_sweep(g, norms, m, rows.best, rows.label)
    elif sweep == SWEEP_GAP:
        _gap_sweep(g, norms, m, wrows.best, wrows.second, wrows.label)
        _gap_rows(m, plan.inv_t, plan.floor, wrows.best, wrows.second, wrows.label, rows.label,
                  rows.z)
    elif sweep == SWEEP_EQUAL:
        _equal_sweep(g, norms, m, rows.norms, wrows.norms, wrows.best, wrows.label)
        _equal_rows(m, t * log_priors[0], wrows.best, wrows.label, rows.best, rows.label, rows.amax)
    elif sweep == SWEEP_PRIORS:
        _priors_sweep(g, norms, t, log_priors, m, rows.norms, rows.best, rows.label, rows.amax)
    else:
        _removal_sweep(g, norms, m, rows.norms, rows.best, rows.second, rows.label)


@nb.njit(**STEP)
def _lloyd_sweep(g, center_norms, m, best, label):  # pragma: no cover - compiled
    """The nearest center alone into ``label`` and ``best`` (as ``|c|^2 - 2 x.c``).

    ``|x|^2`` is the same for every center, so the smallest ``|c|^2 - 2 x.c``
    is the nearest, taken in the working precision as the product itself; the
    exact distance comes later.  Two centers at a time: half the loads and
    stores of the per-point values (ties go to the lower index, as one at a
    time).
    """
    k = g.shape[0]
    for i in range(m):
        best[i] = np.inf
        label[i] = 0
    two = g.dtype.type(2.0)
    for c in range(0, k - 1, 2):
        g0 = g[c]
        g1 = g[c + 1]
        cw0 = g.dtype.type(center_norms[c])
        cw1 = g.dtype.type(center_norms[c + 1])
        for i in range(m):
            v0 = cw0 - two * g0[i]
            v1 = cw1 - two * g1[i]
            first = v1 < v0
            lo = np.float64(v1 if first else v0)
            pair = c + 1 if first else c
            closer = lo < best[i]
            label[i] = pair if closer else label[i]
            best[i] = lo if closer else best[i]
    if k % 2:
        c = k - 1
        gr = g[c]
        cw = g.dtype.type(center_norms[c])
        for i in range(m):
            v = np.float64(cw - two * gr[i])
            closer = v < best[i]
            label[i] = c if closer else label[i]
            best[i] = v if closer else best[i]


@nb.njit(**STEP)
def _gap_sweep(g, center_norms, m, best_w, second_w, label_w):  # pragma: no cover - compiled
    """As :func:`_lloyd_sweep`, in the working precision, and the second-nearest too;
    the products stay in ``g``."""
    k = g.shape[0]
    for i in range(m):
        best_w[i] = np.inf
        second_w[i] = np.inf
        label_w[i] = 0
    two = g.dtype.type(2.0)
    for c in range(0, k - 1, 2):
        g0 = g[c]
        g1 = g[c + 1]
        cw0 = g.dtype.type(center_norms[c])
        cw1 = g.dtype.type(center_norms[c + 1])
        for i in range(m):
            v0 = cw0 - two * g0[i]
            v1 = cw1 - two * g1[i]
            first = v1 < v0
            lo = v1 if first else v0
            hi = v0 if first else v1
            pair = c + 1 if first else c
            b = best_w[i]
            closer = lo < b
            second_w[i] = min(max(b, lo), min(second_w[i], hi))
            label_w[i] = pair if closer else label_w[i]
            best_w[i] = lo if closer else b
    if k % 2:
        c = k - 1
        gr = g[c]
        cw = g.dtype.type(center_norms[c])
        for i in range(m):
            v = cw - two * gr[i]
            closer = v < best_w[i]
            second_w[i] = min(second_w[i], max(v, best_w[i]))
            label_w[i] = c if closer else label_w[i]
            best_w[i] = v if closer else best_w[i]


@nb.njit(**STEP)
def _gap_rows(m, inv_t, floor, best_w, second_w, label_w, label, z):  # pragma: no cover
    """After :func:`_gap_sweep`: the labels, and the one-hot test's ``z``: 2 where the
    second-nearest logit is above the floor (a soft row), else 1.

    The nearest distance and the largest logit are set later, from the exact
    distance (soft rows get them again from their distances).
    """
    for i in range(m):
        label[i] = label_w[i]
        near = (np.float64(best_w[i]) - np.float64(second_w[i])) * inv_t > floor
        z[i] = 2.0 if near else 1.0


@nb.njit(**STEP)
def _equal_sweep(g, center_norms, m, norms, norms_w, best_w, label_w):  # pragma: no cover - compiled
    """Equal priors: the distances into ``g`` and the nearest, in the working precision
    (the logits use the distances rounded to it anyway).

    A separate loop for the largest logit (:func:`_equal_rows`) is faster than
    one loop with a flag for it (``benchmarks/kernel_compare.py``).
    """
    k = g.shape[0]
    for i in range(m):
        norms_w[i] = norms[i]
        best_w[i] = np.inf
        label_w[i] = 0
    two = g.dtype.type(2.0)
    zero = g.dtype.type(0.0)
    for c in range(k):
        gr = g[c]
        cw = g.dtype.type(center_norms[c])
        for i in range(m):
            v = max(norms_w[i] + cw - two * gr[i], zero)
            gr[i] = v
            closer = v < best_w[i]
            label_w[i] = c if closer else label_w[i]
            best_w[i] = v if closer else best_w[i]


@nb.njit(**STEP)
def _equal_rows(m, tlp, best_w, label_w, best, label, amax):  # pragma: no cover - compiled
    """After :func:`_equal_sweep`: the nearest distance and label in float64, and the
    largest logit, the nearest center's ``tlp - d``."""
    for i in range(m):
        best[i] = np.float64(best_w[i])
        label[i] = label_w[i]
        # Exactly max_c (tlp - d_ic), rounding being monotone.
        amax[i] = tlp - best[i]


@nb.njit(**STEP)
def _priors_sweep(g, center_norms, temperature, log_priors, m, norms, best, label,
                  amax):  # pragma: no cover - compiled
    """Unequal priors: the float64 distances into ``g``, the nearest and the largest
    logit, in one loop per center."""
    k = g.shape[0]
    for i in range(m):
        best[i] = np.inf
        amax[i] = -np.inf
        label[i] = 0
    for c in range(k):
        gr = g[c]
        cn = center_norms[c]
        tlp = temperature * log_priors[c]
        for i in range(m):
            gr[i] = max(norms[i] + cn - 2.0 * np.float64(gr[i]), 0.0)
            v = np.float64(gr[i])
            closer = v < best[i]
            label[i] = c if closer else label[i]
            best[i] = v if closer else best[i]
            a = tlp - v
            amax[i] = a if a > amax[i] else amax[i]


@nb.njit(**STEP)
def _removal_sweep(g, center_norms, m, norms, best, second, label):  # pragma: no cover - compiled
    """The removal costs' sweep (T = 0): the float64 distances into ``g``, the nearest
    and second-nearest."""
    k = g.shape[0]
    for i in range(m):
        best[i] = np.inf
        second[i] = np.inf
        label[i] = 0
    for c in range(k):
        gr = g[c]
        cn = center_norms[c]
        for i in range(m):
            gr[i] = max(norms[i] + cn - 2.0 * np.float64(gr[i]), 0.0)
        for i in range(m):
            v = np.float64(gr[i])
            closer = v < best[i]
            second[i] = min(second[i], max(v, best[i]))
            label[i] = c if closer else label[i]
            best[i] = v if closer else best[i]
