"""The soft path: ``exp`` of the shifted logits, per-point totals, the soft sums.

Responsibilities within ln 2 of the logit floor are stored as exact zeros (in
float32 blocks, also those below ``2**-40`` of their row's largest).  With 32
features or more, one compare per logit first marks, in a bit mask per row, the
logits above that cut; where at most one in :data:`_SPARSE_FACTOR` is, only those
are evaluated, row by row (``exp``, the row's totals, and a float64 scatter of the
soft sums), instead of the ``exp`` sweep over all K logits and the second product;
with the power moments, each marked term's moments too, instead of three products
over all K (:func:`sparse_power`).  Soft rows of mixed chunks (:mod:`._hard`) wait
in the soft-row buffer (:class:`._plan.Pending`) until a chunk's worth takes the
soft path: a loop over a dozen rows runs far slower per row than one over hundreds.
"""

from __future__ import annotations

import numba as nb
import numpy as np
from numba.cpython.unsafe.numbers import trailing_zeros

from ._math import PHASE, STEP, exp_nonpositive, exp_nonpositive32, log_positive, product_into, squared_norm
from ._moments import add_power_term
from ._plan import CONF_SUM, D_SUM, F_SUM, H_SUM, MOMENTS_POWER

#: The soft sums of a chunk are scattered, not a dense product, when at most one in
#: this many responsibilities is nonzero ...
_SPARSE_FACTOR = 8

#: ... and only with this many features or more: below, BLAS does the dense product
#: faster than the scatter visits the responsibilities.
_SPARSE_MIN_DIM = 32

#: Float32 blocks also drop the responsibilities below this fraction of their row's
#: largest (``exp(u) <= 2**-40``, about 1e-12): a row's sums then move by less than
#: ``K 2**-40`` of its weight, far below the float32 rounding of its responsibilities and
#: of the second product; a cluster that only such terms reach weighs less than
#: ``2**-40`` of the data, which the annealing counts as empty.
_NEGLIGIBLE_32 = 2.0**-40


@nb.njit(**PHASE)
def soft_rows(g, xw, point, scratch, log_priors, plan, work, out, totals):  # pragma: no cover
    """The soft path over ``ms`` rows whose distances are ``g`` (K, ms).

    ``point`` holds the rows' ``(amax, best, exact, weight)``, ``scratch`` three
    per-point buffers.  Their soft sums go to ``out.counts`` and ``out.sums`` (or,
    with the moments, the responsibilities to ``work.r``), their entropy, free
    energy, distortion and confidence to ``totals``; ``g`` is scratch.

    Not inlined: three call sites, and inlined copies would triple the
    compilation time.  The sizes come from the arrays, not from integer
    arguments, which numba would compile again for each literal value passed.
    """
    amax, best, exact, wc = point
    z, su, sd = scratch
    k, ms = g.shape
    e_cut = max(plan.e_cut, _NEGLIGIBLE_32) if g.itemsize == 4 else plan.e_cut
    if xw.shape[1] >= _SPARSE_MIN_DIM and not plan.r64:
        # One compare per logit first: where few are above the cut, only those are
        # evaluated, row by row, and scattered (with the power moments: sparse_power).
        marks = work.marks[: ((k + 63) >> 6) * ms]
        above = _mark_above(g, amax, log_priors, plan.temperature, log_positive(e_cut), marks, su)
        if above * _SPARSE_FACTOR <= k * ms:
            _sparse_rows(g, marks, point, scratch, log_priors, plan.temperature, plan.inv_t,
                         totals)
            _scatter(g, xw, marks, z, out.counts, out.sums, work.directions, work.center_proj,
                     work.proj_sums, out.moments[:0])
            return
    _exp_sweep(g, amax, z, su, sd, log_priors, plan.temperature, plan.inv_t, plan.floor)
    _row_totals(ms, amax, best, exact, wc, z, su, sd, plan.temperature, totals)
    _drop_floor(g, z, e_cut, out.counts)
    _soft_sums(g, xw, plan.r64, work.r, work.s_work, out.sums)


@nb.njit(**PHASE)
def sparse_power(g, xw, log_priors, plan, work, rows, out, totals):  # pragma: no cover
    """A soft chunk with the power moments by the sparse route, if at most one logit in
    :data:`_SPARSE_FACTOR` is above the cut: each marked term's sums and moments
    row by row (:func:`_scatter`); returns whether it took that route (else
    :func:`soft_rows` and :func:`._moments.moment_products` do the chunk).

    Its own function, not a branch of :func:`soft_rows`: compiled into that body, the
    branch slowed the dense route's ``exp`` sweep.
    """
    k, ms = g.shape
    if xw.shape[1] < _SPARSE_MIN_DIM or plan.moments != MOMENTS_POWER:
        return False
    e_cut = max(plan.e_cut, _NEGLIGIBLE_32) if g.itemsize == 4 else plan.e_cut
    marks = work.marks[: ((k + 63) >> 6) * ms]
    above = _mark_above(g, rows.amax, log_priors, plan.temperature, log_positive(e_cut), marks,
                        rows.su)
    if above * _SPARSE_FACTOR > k * ms:
        return False
    _sparse_rows(g, marks, (rows.amax, rows.best, rows.exact, rows.weight),
                 (rows.z, rows.su, rows.sd), log_priors, plan.temperature, plan.inv_t, totals)
    _scatter(g, work.x64[:ms], marks, rows.z, out.counts, out.sums, work.directions,
             work.center_proj, work.proj_sums, out.moments)
    return True


@nb.njit(**STEP)
def _mark_above(g, amax, log_priors, temperature, log_cut, marks, bound):  # pragma: no cover
    """Bit ``c % 64`` of ``marks[(c // 64) ms + i]`` set where row ``i``'s shifted logit
    for cluster ``c`` is above ``log_cut`` (``u > log_cut``, i.e. ``d < T log pi_c -
    amax - T log_cut``); returns how many are.  ``bound`` gets each row's
    ``-amax - T log_cut``."""
    k, ms = g.shape
    for t in range(marks.size):
        marks[t] = 0
    for i in range(ms):
        bound[i] = -amax[i] - temperature * log_cut
    above = 0.0  # a float count keeps the loop vectorised
    for c in range(k):
        gr = g[c]
        tlp = temperature * log_priors[c]
        word = marks[(c >> 6) * ms : (c >> 6) * ms + ms]
        bit = np.int64(c & 63)
        for i in range(ms):
            keep = np.float64(gr[i]) < tlp + bound[i]
            above += 1.0 if keep else 0.0
            word[i] |= np.int64(keep) << bit
    return above


@nb.njit(**STEP)
def _sparse_rows(g, marks, point, scratch, log_priors, temperature, inv_t,
                 totals):  # pragma: no cover - compiled
    """The soft path row by row over the marked logits only: their ``exp`` into ``g``
    and the per-point ``scratch`` (normaliser, ``sum exp(u) u``, ``sum exp(u) d``),
    then the rows' totals as on the dense route (:func:`_row_totals`), which leaves
    each row's ``weight / z`` in the first scratch buffer for the scatter that follows
    (:func:`_scatter`).

    The logits left out are those at or below the cut of :func:`_drop_floor`, whose
    responsibilities the dense path drops too; they are also left out of the normaliser
    ``z`` and of ``sum exp(u) u`` and ``sum exp(u) d``.  With ``z >= 1`` (the row's
    largest logit is 0) that moves each row's ``1 / z``, and so every statistic, by less
    than ``K e_cut`` relative (``K 2**-40`` in float32 blocks, ``K 2e-26`` in float64),
    and each row's ``sum exp(u) u`` and ``sum exp(u) d`` by at most ``K e_cut`` times the
    largest ``|u|`` and ``d`` left out: far below the rounding of the blocks' distances.
    ``g`` is left as scratch (the marked terms' ``exp``), not as responsibilities.
    """
    amax, best, exact, wc = point
    z, su, sd = scratch
    k, ms = g.shape
    words = (k + 63) >> 6
    single = g.itemsize == 4
    for i in range(ms):
        am = amax[i]
        zi = 0.0
        sui = 0.0
        sdi = 0.0
        for w in range(words):
            bits = marks[w * ms + i]
            while bits != 0:
                c = (w << 6) + trailing_zeros(bits)
                bits &= bits - 1
                d = np.float64(g[c, i])
                v = (temperature * log_priors[c] - d - am) * inv_t
                # As in the sweep: float32 blocks take exp in float32.
                e = np.float64(exp_nonpositive32(np.float32(v))) if single else exp_nonpositive(v)
                zi += e
                sui += e * v
                sdi += e * d
                g[c, i] = e
        z[i] = zi
        su[i] = sui
        sd[i] = sdi
    _row_totals(ms, amax, best, exact, wc, z, su, sd, temperature, totals)  # z becomes w / z


@nb.njit(**STEP)
def _scatter(g, rows, marks, q, counts, sums, directions, center_proj, proj_sums,
             moments):  # pragma: no cover - compiled
    """The marked terms' weighted responsibilities ``p = exp(u) q`` into ``counts``, and
    scattered into ``sums`` (in float64).  With the power moments (``moments`` not
    empty; ``rows`` then the float64 rows, as the moments' correction about the centers
    needs), also each term's ``p (x - c) . v_c`` and ``p ((x - c) . v_c) x``, as
    :func:`._moments.moment_products` sums them over all K."""
    k, ms = g.shape
    dim = rows.shape[1]
    words = (k + 63) >> 6
    power = moments.size > 0
    for i in range(ms):
        qi = q[i]
        xi = rows[i]
        for w in range(words):
            bits = marks[w * ms + i]
            while bits != 0:
                c = (w << 6) + trailing_zeros(bits)
                bits &= bits - 1
                pw = np.float64(g[c, i]) * qi
                counts[c] += pw
                sc = sums[c]
                for j in range(dim):
                    sc[j] += pw * np.float64(xi[j])
                if power:
                    add_power_term(c, pw, xi, directions, center_proj, proj_sums, moments)


@nb.njit(**STEP)
def _exp_sweep(g, amax, z, su, sd, log_priors, temperature, inv_t, floor):  # pragma: no cover
    """``g = exp(u)`` of the clipped shifted logits; per point the normaliser
    ``z = sum exp(u)``, ``su = sum exp(u) u`` and ``sd = sum exp(u) d``.

    Float32 blocks take ``exp`` in float32: their responsibilities are stored
    in float32 anyway.
    """
    k, ms = g.shape
    single = g.itemsize == 4
    for i in range(ms):
        z[i] = 0.0
        su[i] = 0.0
        sd[i] = 0.0
    for c in range(k):
        gr = g[c]
        tlp = temperature * log_priors[c]
        if single:
            for i in range(ms):
                d = np.float64(gr[i])
                v = (tlp - d - amax[i]) * inv_t
                v = v if v > floor else floor
                e32 = exp_nonpositive32(np.float32(v))
                e = np.float64(e32)
                z[i] += e
                su[i] += e * v
                sd[i] += e * d
                gr[i] = e32
        else:
            for i in range(ms):
                d = np.float64(gr[i])
                v = (tlp - d - amax[i]) * inv_t
                v = v if v > floor else floor
                e = exp_nonpositive(v)
                z[i] += e
                su[i] += e * v
                sd[i] += e * d
                gr[i] = e


@nb.njit(**STEP)
def _row_totals(ms, amax, best, exact, wc, z, su, sd, temperature, totals):  # pragma: no cover
    """Entropy, free energy, distortion and confidence of the rows into ``totals``;
    ``z`` becomes each row's ``weight / z``."""
    h_sum = 0.0
    f_sum = 0.0
    d_sum = 0.0
    conf_sum = 0.0
    for i in range(ms):
        wi = wc[i]
        q = wi / z[i]
        log_z = log_positive(z[i])
        # -sum_k p log p with log p = u - log z: never 0 * log 0.
        h_sum += wi * (log_z - su[i] / z[i])
        # -T log Z_i = d_min - (max_j a_ij + d_min) - T log z_i, d_min exact.
        f_sum += wi * (exact[i] - (amax[i] + best[i]) - temperature * log_z)
        d_sum += sd[i] * q
        conf_sum += q
        z[i] = q
    totals[H_SUM] += h_sum
    totals[F_SUM] += f_sum
    totals[D_SUM] += d_sum
    totals[CONF_SUM] += conf_sum


@nb.njit(**STEP)
def _drop_floor(g, q, e_cut, counts):  # pragma: no cover - compiled
    """``g`` becomes the weighted responsibilities ``exp(u) q``, exact zeros up to
    ``e_cut`` (at or within ln 2 of the logit floor, where they weigh < 2e-26 of the
    row's largest, or the float32 cut); adds them to ``counts``."""
    k, ms = g.shape
    for c in range(k):
        gr = g[c]
        acc = 0.0
        for i in range(ms):
            e = np.float64(gr[i])
            pw = e * q[i] if e > e_cut else 0.0
            gr[i] = pw
            acc += pw
        counts[c] += acc


@nb.njit(**STEP)
def _soft_sums(g, xw, r64, r, s_work, sums):  # pragma: no cover - compiled
    """The soft sums ``g xw`` into ``sums`` by the second product (through ``s_work``);
    with the moments, ``g`` into ``r`` instead (:func:`._moments.moment_products` takes
    them in float64)."""
    k, ms = g.shape
    dim = xw.shape[1]
    if r64:
        for c in range(k):
            for i in range(ms):
                r[c * ms + i] = np.float64(g[c, i])
    else:
        product_into(g, xw[:ms], s_work)
        for c in range(k):
            for j in range(dim):
                sums[c, j] += np.float64(s_work[c, j])


@nb.njit(**PHASE)
def soft_chunk(g, m, xw, gap, centers, plan, work, rows, wrows, out, totals):  # pragma: no cover
    """A chunk that is soft as a whole; after the gap sweep, its distances first.
    Returns whether its moments are added already (the sparse route with the power
    moments, :func:`sparse_power`); else :func:`._moments.moment_products` adds them."""
    if gap:
        _gap_distances(g, m, xw, centers.norms, plan.temperature * centers.log_priors[0],
                       wrows.norms, rows.label, rows.best, rows.amax)
    if plan.r64 and sparse_power(g, xw, centers.log_priors, plan, work, rows, out, totals):
        return True
    soft_rows(g, xw, (rows.amax, rows.best, rows.exact, rows.weight), (rows.z, rows.su, rows.sd),
              centers.log_priors, plan, work, out, totals)
    return False


@nb.njit(**STEP)
def _gap_distances(g, m, xw, center_norms, tlp, norms_w, label, best, amax):  # pragma: no cover
    """After the gap sweep, which left the products in ``g``: the norms and distances,
    and the nearest distance as stored, so that its logit is exactly the largest (the
    exact distance rounds differently)."""
    for i in range(m):
        norms_w[i] = squared_norm(xw[i])
    two = g.dtype.type(2.0)
    zero = g.dtype.type(0.0)
    for c in range(g.shape[0]):
        gr = g[c]
        cw = g.dtype.type(center_norms[c])
        for i in range(m):
            gr[i] = max(norms_w[i] + cw - two * gr[i], zero)
    for i in range(m):
        best[i] = np.float64(g[label[i], i])
        amax[i] = tlp - best[i]


@nb.njit(**PHASE)
def flush_pending(pending, n_buf, log_priors, plan, work, rows, out, totals):  # pragma: no cover
    """The soft path over the ``n_buf`` rows in the soft-row buffer.

    Their distances, at row stride ``chunk`` there, are first packed to stride
    ``n_buf`` (every value moves to a position at or before its own).
    """
    stride = pending.xw.shape[0]
    b_g = pending.g
    k = b_g.size // stride
    for c in range(1, k):
        for t in range(n_buf):
            b_g[c * n_buf + t] = b_g[c * stride + t]
    pp = pending.pp
    soft_rows(b_g[: k * n_buf].reshape((k, n_buf)), pending.xw, (pp[0], pp[1], pp[2], pp[3]),
              (rows.z, rows.su, rows.sd), log_priors, plan, work, out, totals)


@nb.njit(**PHASE)
def pend_rows(g, n_soft, n_buf, xw, gap, centers, plan, rows, wrows, pending):  # pragma: no cover
    """The soft rows of a mixed chunk (``rows.soft_index[:n_soft]``) join the soft-row
    buffer after its ``n_buf`` rows; returns the rows it then holds."""
    stride = pending.xw.shape[0]
    b_g, b_xw, pp, center_norms = pending.g, pending.xw, pending.pp, centers.norms
    soft_index, norms_w, label = rows.soft_index, wrows.norms, rows.label
    amax, best, exact, soft_w = rows.amax, rows.best, rows.exact, rows.soft_w
    for t in range(n_soft):
        i = soft_index[t]
        pp[0, n_buf + t] = amax[i]
        pp[1, n_buf + t] = best[i]
        pp[2, n_buf + t] = exact[i]
        pp[3, n_buf + t] = soft_w[t]
        for j in range(xw.shape[1]):
            b_xw[n_buf + t, j] = xw[i, j]
        if gap:
            norms_w[i] = squared_norm(xw[i])
    for c in range(g.shape[0]):
        gr = g[c]
        if gap:  # the norms and distances from the products
            cw = gr.dtype.type(center_norms[c])
            two = gr.dtype.type(2.0)
            zero = gr.dtype.type(0.0)
            for t in range(n_soft):
                i = soft_index[t]
                b_g[c * stride + n_buf + t] = max(norms_w[i] + cw - two * gr[i], zero)
        else:
            for t in range(n_soft):
                b_g[c * stride + n_buf + t] = gr[soft_index[t]]
    if gap:  # the nearest distance as stored, as in _gap_distances
        tlp = plan.temperature * centers.log_priors[0]
        for t in range(n_soft):
            d = np.float64(b_g[label[soft_index[t]] * stride + n_buf + t])
            pp[1, n_buf + t] = d
            pp[0, n_buf + t] = tlp - d
    return n_buf + n_soft
