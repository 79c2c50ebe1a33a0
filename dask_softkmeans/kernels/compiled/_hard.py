"""Exact nearest distances, the one-hot test, and the sums of hard assignments.

A row whose every other shifted logit is at the floor is one-hot: its other
terms are the floor's ``exp(-60)`` relative, which the soft sums drop anyway.
One-hot rows are summed as hard assignments to their largest logit: no
``exp``, no second product.  With separated clusters at low T nearly every
row is; when a few are not (points between clusters), those few take the soft
path (:mod:`._soft`).
"""

from __future__ import annotations

import numba as nb
import numpy as np

from ._math import PHASE, STEP, exact_distance
from ._plan import (
    CONF_SUM,
    D_SUM,
    F_SUM,
    J_SUM,
    SWEEP_GAP,
    SWEEP_PRIORS,
    SWEEP_REMOVAL,
    W_SUM,
)

#: After a soft chunk that is not one-hot, the test is skipped for this many
#: chunks: where the responsibilities are soft (annealing at a high temperature)
#: it would fail on every chunk and cost a sweep over the ``(K, rows)`` buffer.
_ONE_HOT_RETRY = 8

#: A chunk's one-hot rows are summed as hard assignments, and its other rows alone
#: take the soft path, when at most one row in this many is not one-hot.
_MIXED_FACTOR = 2


@nb.njit(**PHASE)
def exact_rows(x, start, index, n, weights, rows, abs_centers, hard_counts,
               totals):  # pragma: no cover - compiled
    """The exact nearest distance of the chunk's rows ``index[:n]`` (rows of ``x`` from
    ``start``) into ``rows.exact``, their weights ``weights[:n]`` into ``hard_counts``,
    their summed weight and inertia into ``totals``."""
    label, exact = rows.label, rows.exact
    w_sum = 0.0
    j_sum = 0.0
    for t in range(n):
        i = index[t]
        lab = label[i]
        wi = weights[t]
        acc = exact_distance(x[start + i], abs_centers[lab]) if wi != 0.0 else 0.0
        exact[i] = acc
        w_sum += wi
        hard_counts[lab] += wi
        j_sum += wi * acc
    totals[W_SUM] += w_sum
    totals[J_SUM] += j_sum


@nb.njit(**PHASE)
def exact_logits(m, tlp, rows):  # pragma: no cover - compiled
    """Equal priors: the nearest distance and the largest logit ``tlp - d`` from the
    exact distance."""
    best, amax, exact = rows.best, rows.amax, rows.exact
    for i in range(m):
        best[i] = exact[i]
        amax[i] = tlp - exact[i]


@nb.njit(**PHASE)
def one_hot_test(sweep, g, m, log_priors, plan, rows, untested):  # pragma: no cover - compiled
    """How many of the chunk's rows take the soft path (0, a few, or ``m``), and the
    chunks left before the test runs again (it is skipped for ``untested`` chunks)."""
    if untested > 0:
        return m, untested - 1
    z = rows.z
    if sweep != SWEEP_GAP:  # the gap sweep's z holds the test already
        _count_logits(g, m, log_priors, plan.temperature, plan.inv_t, plan.floor, rows.amax, z)
    n_soft = _split_soft_rows(m, plan.r64, z, rows.weight, rows.soft_index, rows.soft_w)
    return n_soft, 0 if n_soft < m else _ONE_HOT_RETRY


@nb.njit(**STEP)
def _count_logits(g, m, log_priors, temperature, inv_t, floor, amax, z):  # pragma: no cover
    """Per row, the shifted logits above the floor into ``z``: one (its largest) when
    one-hot."""
    for i in range(m):
        z[i] = 0.0
    for c in range(g.shape[0]):
        gr = g[c]
        tlp = temperature * log_priors[c]
        for i in range(m):
            z[i] += 1.0 if (tlp - np.float64(gr[i]) - amax[i]) * inv_t > floor else 0.0


@nb.njit(**STEP)
def _split_soft_rows(m, r64, z, wc, soft_index, soft_w):  # pragma: no cover - compiled
    """How many rows take the soft path: 0, ``m``, or (a mixed chunk) its rows with
    ``z > 1``, when they are few and there are no moments.

    A mixed chunk moves the soft rows' weights to ``soft_w`` and their indices
    to ``soft_index``, leaving zeros in ``wc``: the hard sums then skip them.
    """
    soft_rows = 0.0  # a float count keeps the loop vectorised
    for i in range(m):
        soft_rows += 1.0 if z[i] > 1.0 else 0.0
    if soft_rows == 0.0:
        return 0
    if r64 or soft_rows * _MIXED_FACTOR > m:
        return m
    s_at = 0
    for i in range(m):
        if z[i] > 1.0:
            soft_index[s_at] = i
            soft_w[s_at] = wc[i]
            wc[i] = 0.0
            s_at += 1
    return s_at


@nb.njit(**PHASE)
def fused_hard_sums(x, start, m, xw, tlp, rows, abs_centers, out, totals):  # pragma: no cover - compiled
    """Hard sums with the exact distances taken row by row, in the same loop: one-hot
    rows of the gap sweep (largest logit ``tlp - d``), or a Lloyd pass (``tlp = 0``).

    A row's free energy is ``d - tlp`` (``z_i = 1``, ``log z_i = 0``).  Soft rows
    of the chunk have weight 0 here.
    """
    wc, label = rows.weight, rows.label
    counts, hard_counts, sums = out.counts, out.hard_counts, out.sums
    hot_w = 0.0
    hot_j = 0.0
    for i in range(m):
        wi = wc[i]
        lab = label[i]
        acc = exact_distance(x[start + i], abs_centers[lab]) if wi != 0.0 else 0.0
        hot_w += wi
        hot_j += wi * acc
        hard_counts[lab] += wi
        counts[lab] += wi
        sr = sums[lab]
        xi = xw[i]
        for j in range(xw.shape[1]):
            sr[j] += wi * np.float64(xi[j])
    totals[W_SUM] += hot_w
    totals[CONF_SUM] += hot_w
    totals[J_SUM] += hot_j
    totals[D_SUM] += hot_j
    totals[F_SUM] += hot_j - tlp * hot_w


@nb.njit(**PHASE)
def hard_sums(sweep, g, m, log_priors, plan, work, rows, out, totals):  # pragma: no cover - compiled
    """Hard assignments (T = 0, or one-hot rows: ``rows.label`` is then the largest
    logit's index) whose exact distances are in ``rows.exact`` (with the moments, their
    sums in float64: :func:`._moments.hard_moments` adds the moments)."""
    if sweep == SWEEP_PRIORS:
        _largest_logit_labels(g, m, log_priors, plan.temperature, rows.label, rows.best, rows.amax)
    _hard_scalars(sweep, g, m, plan.soft, rows.weight, rows.label, rows.exact, rows.best, rows.amax,
                  rows.second, out.counts, out.removal, totals)
    # The sums as the soft sums take them (in the working precision, or in float64
    # with the moments, whose correction about the centers must see the same sums):
    # in the cache, already offset, zero where not finite.  A loop of its own,
    # through the center's row, is faster than inside the loop above.
    label, wc, sums = rows.label, rows.weight, out.sums
    if plan.r64:
        x64 = work.x64
        for i in range(m):
            sr = sums[label[i]]
            wi = wc[i]
            xd = x64[i]
            for j in range(x64.shape[1]):
                sr[j] += wi * xd[j]
    else:
        xw = work.xw
        for i in range(m):
            sr = sums[label[i]]
            wi = wc[i]
            xi = xw[i]
            for j in range(xw.shape[1]):
                sr[j] += wi * np.float64(xi[j])


@nb.njit(**STEP)
def _largest_logit_labels(g, m, log_priors, temperature, label, best, amax):  # pragma: no cover
    """Unequal priors: the largest logit is the nearest center's unless the priors
    outweigh the distances; then ``label`` becomes the largest logit's index."""
    differs = 0.0
    for i in range(m):
        a = temperature * log_priors[label[i]] - best[i]
        differs += 1.0 if a != amax[i] else 0.0
    if differs:
        for c in range(g.shape[0]):
            gr = g[c]
            tlp = temperature * log_priors[c]
            for i in range(m):
                label[i] = c if tlp - np.float64(gr[i]) == amax[i] else label[i]


@nb.njit(**STEP)
def _hard_scalars(sweep, g, m, soft, wc, label, exact, best, amax, second, counts, removal_costs,
                  totals):  # pragma: no cover - compiled
    """Free energy, distortion, confidence, counts and removal costs of hard rows."""
    removal = sweep == SWEEP_REMOVAL and g.shape[0] > 1
    equal_priors = sweep != SWEEP_PRIORS
    f_sum, d_sum, conf_sum = totals[F_SUM], totals[D_SUM], totals[CONF_SUM]
    for i in range(m):
        wi = wc[i]
        lab = label[i]
        if soft:
            # z_i = 1 (the floor terms vanish in float64), so log z_i = 0.
            f_sum += wi * (exact[i] - (amax[i] + best[i]))
            # The largest logit's distance: the nearest's with equal priors.
            d_sum += wi * (best[i] if equal_priors else np.float64(g[lab, i]))
        else:
            f_sum += wi * exact[i]
            d_sum += wi * exact[i]
        conf_sum += wi
        counts[lab] += wi
        if removal:
            removal_costs[lab] += wi * (second[i] - best[i])
    totals[F_SUM], totals[D_SUM], totals[CONF_SUM] = f_sum, d_sum, conf_sum
