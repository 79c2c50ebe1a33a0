"""The second-moment statistics: of soft chunks from their float64 responsibilities
``work.r``, of hard chunks row by row, each row for its own cluster.

Summed about the offset chunk by chunk, and moved about the centers once at
the end (:func:`center_moments`).
"""

from __future__ import annotations

import numba as nb

from ._math import PHASE, STEP, product_into
from ._plan import MOMENTS_FULL, MOMENTS_POWER


@nb.njit(**PHASE)
def moment_products(m, centers, plan, work, out):  # pragma: no cover - compiled
    """Add the soft sums and the moments of a chunk of soft rows to ``out``, from their
    float64 responsibilities ``work.r`` (hard chunks: :func:`hard_moments`)."""
    k, dim = centers.rel.shape
    r = work.r[: k * m].reshape((k, m))
    xs = work.x64[:m]
    sums, moments = out.sums, out.moments
    s64 = work.s64
    product_into(r, xs, s64)
    for c in range(k):
        for j in range(dim):
            sums[c, j] += s64[c, j]
    if plan.moments == MOMENTS_FULL:
        # sum_i r_ik x_i x_i^T, corrected about the centers at the end.
        outer, q = work.outer[:m], work.q
        for i in range(m):
            for a in range(dim):
                for b in range(dim):
                    outer[i, a * dim + b] = xs[i, a] * xs[i, b]
        product_into(r, outer, q)
        for c in range(k):
            for ab in range(dim * dim):
                moments[c * dim * dim + ab] += q[c, ab]
    else:
        # sum_i r_ik (x_i - c_k) ((x_i - c_k) . v_k) without the - c_k, added at the end.
        proj = work.proj[: k * m].reshape((k, m))
        product_into(centers.directions, xs.T, proj)
        center_proj, proj_sums = work.center_proj, work.proj_sums
        for c in range(k):
            acc = 0.0
            for i in range(m):
                v = (proj[c, i] - center_proj[c]) * r[c, i]
                proj[c, i] = v
                acc += v
            proj_sums[c] += acc
        product_into(proj, xs, s64)
        for c in range(k):
            for j in range(dim):
                moments[c * dim + j] += s64[c, j]


@nb.njit(**STEP)
def add_power_term(c, weight, xi, directions, center_proj, proj_sums, moments):  # pragma: no cover
    """One row's term of cluster ``c``'s power moments, of weight ``weight`` (its weighted
    responsibility): ``weight ((x - offset) . v_c - rel_c . v_c)`` into ``proj_sums[c]``,
    and times ``x - offset`` into the flat ``moments`` (:func:`center_moments` moves them
    about the center at the end)."""
    dim = xi.shape[0]
    vc = directions[c]
    p = 0.0
    for j in range(dim):
        p += vc[j] * xi[j]
    v = (p - center_proj[c]) * weight
    proj_sums[c] += v
    base = c * dim
    for j in range(dim):
        moments[base + j] += v * xi[j]


@nb.njit(**PHASE)
def hard_moments(m, label, wc, centers, plan, work, out):  # pragma: no cover - compiled
    """The moments of a chunk of hard rows (T = 0, or one-hot): each row adds to its own
    cluster's alone, as :func:`moment_products` does with one-hot responsibilities, in
    ``O(D)`` (power) or ``O(D^2)`` (full) a row instead of products over all K."""
    dim = centers.rel.shape[1]
    xs = work.x64[:m]
    moments = out.moments
    if plan.moments == MOMENTS_FULL:
        for i in range(m):
            wi = wc[i]
            if wi == 0.0:
                continue
            base = label[i] * dim * dim
            xi = xs[i]
            for a in range(dim):
                wa = wi * xi[a]
                for b in range(dim):
                    moments[base + a * dim + b] += wa * xi[b]
    else:
        directions, center_proj, proj_sums = centers.directions, work.center_proj, work.proj_sums
        for i in range(m):
            if wc[i] != 0.0:
                add_power_term(label[i], wc[i], xs[i], directions, center_proj, proj_sums,
                               moments)


@nb.njit(**PHASE)
def center_moments(centers, plan, work, out):  # pragma: no cover - compiled
    """Move the summed moments from about the offset to about the centers."""
    k, dim = centers.rel.shape
    rel, sums, counts, moments, proj_sums = (centers.rel, out.sums, out.counts, out.moments,
                                             work.proj_sums)
    if plan.moments == MOMENTS_FULL:
        # sum p (x - c)(x - c)^T = sum p x x^T - c S^T - S c^T + N c c^T
        for c in range(k):
            for a in range(dim):
                for b in range(dim):
                    moments[c * dim * dim + a * dim + b] += (
                        -rel[c, a] * sums[c, b] - sums[c, a] * rel[c, b]
                        + counts[c] * rel[c, a] * rel[c, b]
                    )
    elif plan.moments == MOMENTS_POWER:
        for c in range(k):
            for j in range(dim):
                moments[c * dim + j] -= rel[c, j] * proj_sums[c]
