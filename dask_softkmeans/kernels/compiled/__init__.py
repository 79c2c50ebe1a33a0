"""Compiled (numba) loop of :func:`._kernels.block_statistics`: one fused pass over a block.

Why compiled: a soft pass does a handful of cheap operations per point and
cluster (distance from the product, minimum, ``exp``, normaliser, entropy,
weighting).  As separate NumPy sweeps over a ``(K, n)`` matrix each one reads
and writes the whole matrix, and the sweeps, not the two matrix products,
dominated the pass.  Here the rows go through in chunks small enough for the
CPU cache: two BLAS products per chunk (``C x^T`` for the distances, ``R x``
for the soft sums, in the data's float precision), and in between one sweep
per cluster row that the compiler vectorises along the points.  Every
reduced sum accumulates in float64.

``exp`` is evaluated inline (:func:`_exp_nonpositive`, relative error
~2e-15 on the clipped range ``[LOGIT_FLOOR, 0]``) because numba's
``math.exp`` is a scalar library call that stops the vectorisation (~8x
slower here); float32 blocks take a float32 version
(:func:`_exp_nonpositive32`, ~3e-7 relative, twice the lanes), and the
per-point ``log`` of the normaliser is inline too (:func:`_log_positive`).
Responsibilities within ln 2 of the logit floor are stored as exact zeros;
with many features and mostly zeros, the soft sums of a chunk are a float64
scatter of the nonzero terms instead of the second product.  Rows that are
one-hot (every other logit at the floor: separated clusters at low T) skip
``exp`` and the second product and are summed as hard assignments to their
largest logits; in a chunk where at most half the rows are soft (points
between clusters), those rows wait in a buffer that takes the soft path once
it holds a chunk's worth.

The functions are compiled eagerly for float32 and float64 blocks and cached
on disk (``cache=True``), so a fresh process loads machine code instead of
compiling it; they release the GIL, so the threaded scheduler runs blocks in
parallel.  Nothing here is shared between calls: each call allocates its own
chunk buffers, so concurrent calls from several threads are safe.
"""

from __future__ import annotations

import math
from typing import Any

import numba as nb
import numpy as np
from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic

#: Allowed: reassociate (vectorised sums and minima), fused multiply-add,
#: ignore the sign of zero.  Not allowed: assuming no NaN or infinity (the
#: non-finite rows must still be recognised) or approximate division.
_FASTMATH = {"reassoc", "contract", "nsz"}

_FLOAT64_MAX = 1.7976931348623157e308
_LOG2E = 1.4426950408889634
_LN2_HI = 0.6931471803691238  # ln 2 rounded to 32 significant bits
_LN2_LO = 1.9082149292705877e-10  # ln 2 - _LN2_HI

#: Padding (float64 elements) of the per-point buffers' row stride, see ``soft_block``.
_PAD = 40

#: Blocks with at most this many features are transposed per chunk for the first product.
_TRANSPOSE_MAX_DIM = 8

#: Float32 blocks with more features, up to ``_TILE_MAX_DIM``, and at least ``_TILE``
#: clusters take the first product as ``x C^T`` (rows, K), which OpenBLAS writes ~2x
#: faster than ``C x^T`` (K, rows) at 32 x 32, and transpose it in registers
#: (:func:`_transpose_tile`), 16 x 16 at a time: 1.10x a pass at 32 features, 1.13x at
#: 64, 1.06x at 16; at 128 and 256 the product's shape no longer matters.
_TILE = 16
_TILE_MAX_DIM = 64

#: ... with at most this many rows per chunk: both products' buffers stay in the L1
#: cache at 32 clusters (64 rows: slower, the per-chunk costs; 256: slower at 64-D).
_TILE_CHUNK_ROWS = 128

#: After a soft chunk that is not one-hot, the test is skipped for this many
#: chunks: where the responsibilities are soft (annealing at a high temperature)
#: it would fail on every chunk and cost a sweep over the ``(K, rows)`` buffer.
_ONE_HOT_RETRY = 8

#: A chunk's one-hot rows are summed as hard assignments, and its other rows alone
#: take the soft path, when at most one row in this many is not one-hot.
_MIXED_FACTOR = 2

#: The soft sums of a chunk are scattered, not a dense product, when at most one in
#: this many responsibilities is nonzero.
_SPARSE_FACTOR = 4

#: ... and only with this many features or more: below, BLAS does the dense product
#: faster than the scatter visits the responsibilities.
_SPARSE_MIN_DIM = 64

#: Codes of the second-moment statistic (see ``_kernels.block_statistics``).
MOMENTS_NONE, MOMENTS_FULL, MOMENTS_POWER = 0, 1, 2


def _signatures() -> list[Any]:
    """Eager signatures: float32 and float64 blocks, everything else fixed.

    Inputs are typed read-only, which also accepts writable arrays: a
    read-only block (a memory map, a Zarr read) must not need a copy.
    """
    def readonly(dtype: Any, ndim: int) -> types.Array:
        return types.Array(dtype, ndim, "C", readonly=True)

    out1, out2 = types.float64[::1], types.float64[:, ::1]
    f64 = types.float64
    return [
        types.void(readonly(t, 2), readonly(f64, 1), readonly(f64, 1), readonly(f64, 2),
                   readonly(t, 2), readonly(f64, 1), readonly(f64, 1), f64, f64, types.int64,
                   readonly(f64, 2), types.boolean, types.int64, out1, out2, out1, out1, out1,
                   out1, types.int32[::1])
        for t in (types.float32, types.float64)
    ]


@intrinsic
def _float64_from_bits(typingctx, bits):  # pragma: no cover - compiled
    """Reinterpret an int64 as the float64 with the same bits (an LLVM ``bitcast``)."""
    sig = types.float64(types.int64)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.float64))

    return sig, codegen


@nb.njit(inline="always", fastmath=_FASTMATH)
def _exp_nonpositive(v):  # pragma: no cover - compiled
    """``exp(v)`` for ``v`` in ``[-700, 0]``, to ~2e-15 relative, in registers only.

    ``v = t ln 2 + r`` with integer ``t`` and ``|r| <= ln(2) / 2`` (Cody-Waite:
    ``ln 2`` in two parts so that ``t * _LN2_HI`` is exact), ``exp(r)`` by its
    Taylor polynomial of degree 13, and ``2**t`` written into the exponent
    bits.  Unlike a call to the C library's ``exp``, this vectorises.
    """
    t = math.floor(v * _LOG2E + 0.5)
    r = v - t * _LN2_HI - t * _LN2_LO
    p = 1.0 / 6227020800.0
    p = p * r + 1.0 / 479001600.0
    p = p * r + 1.0 / 39916800.0
    p = p * r + 1.0 / 3628800.0
    p = p * r + 1.0 / 362880.0
    p = p * r + 1.0 / 40320.0
    p = p * r + 1.0 / 5040.0
    p = p * r + 1.0 / 720.0
    p = p * r + 1.0 / 120.0
    p = p * r + 1.0 / 24.0
    p = p * r + 1.0 / 6.0
    p = p * r + 0.5
    p = p * r + 1.0
    p = p * r + 1.0
    return p * _float64_from_bits((np.int64(t) + 1023) << 52)


@intrinsic
def _bits_from_float64(typingctx, value):  # pragma: no cover - compiled
    """Reinterpret a float64 as the int64 with the same bits (an LLVM ``bitcast``)."""
    sig = types.int64(types.float64)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.int64))

    return sig, codegen


@intrinsic
def _transpose_tile(typingctx, src, src_at, src_stride, dst, dst_at, dst_stride):  # pragma: no cover
    """Write the transpose of a 16 x 16 float32 tile of ``src`` into ``dst``.

    Both are flat arrays; the tile's rows start at ``src_at + r * src_stride``
    and the transpose's at ``dst_at + c * dst_stride``.  Sixteen vector loads,
    four rounds of two-vector shuffles (round ``b`` swaps bit ``b`` of the row
    index with bit ``b`` of the column index), sixteen vector stores: ~0.08 ns
    per element where a loop takes ~0.27 (a gather or a scatter per element).
    """
    sig = types.void(src, src_at, src_stride, dst, dst_at, dst_stride)

    def codegen(context, builder, signature, args):
        s, s_at, s_stride, d, d_at, d_stride = args
        lanes = _TILE
        element = context.get_value_type(signature.args[0].dtype)
        vector = ir.VectorType(element, lanes)
        width = context.get_abi_sizeof(element)
        i64 = ir.IntType(64)
        s_data = context.make_array(signature.args[0])(context, builder, s).data
        d_data = context.make_array(signature.args[3])(context, builder, d).data
        rows = []
        for r in range(lanes):
            at = builder.add(s_at, builder.mul(s_stride, ir.Constant(i64, r)))
            rows.append(builder.load(builder.bitcast(builder.gep(s_data, [at]), vector.as_pointer()),
                                     align=width))
        b = 1
        while b < lanes:
            low = ir.Constant(ir.VectorType(ir.IntType(32), lanes),
                              [c if not c & b else lanes + c - b for c in range(lanes)])
            high = ir.Constant(ir.VectorType(ir.IntType(32), lanes),
                               [c + b if not c & b else lanes + c for c in range(lanes)])
            swapped = list(rows)
            for i in range(lanes):
                if not i & b:
                    swapped[i] = builder.shuffle_vector(rows[i], rows[i | b], low)
                    swapped[i | b] = builder.shuffle_vector(rows[i], rows[i | b], high)
            rows = swapped
            b *= 2
        for c in range(lanes):
            at = builder.add(d_at, builder.mul(d_stride, ir.Constant(i64, c)))
            builder.store(rows[c], builder.bitcast(builder.gep(d_data, [at]), vector.as_pointer()),
                          align=width)
        return context.get_dummy_value()

    return sig, codegen


@nb.njit(nogil=True, cache=True, fastmath=_FASTMATH, error_model="numpy")
def _transposed_product(xw, centers_t, gt, g):  # pragma: no cover - compiled
    """``g = C xw^T`` (K, m) as ``gt = xw C^T`` (m, K) transposed, 16 x 16 at a time."""
    m = xw.shape[0]
    k = centers_t.shape[1]
    np.dot(xw, centers_t, gt)
    flat_t = gt.reshape(m * k)
    flat = g.reshape(k * m)
    m_tiled = m - m % _TILE
    k_tiled = k - k % _TILE
    for i0 in range(0, m_tiled, _TILE):
        for c0 in range(0, k_tiled, _TILE):
            _transpose_tile(flat_t, i0 * k + c0, k, flat, c0 * m + i0, m)
    for c in range(k):  # the edges
        gc = g[c]
        for i in range(m_tiled if c < k_tiled else 0, m):
            gc[i] = gt[i, c]


_MANTISSA_BITS = (1 << 52) - 1
_EXPONENT_ONE = 1023 << 52
_SQRT2 = 1.4142135623730951


@nb.njit(inline="always", fastmath=_FASTMATH)
def _log_positive(z):  # pragma: no cover - compiled
    """``log(z)`` for a positive normal float64, to ~1e-16 absolute near 1, in registers only.

    ``z = 2**e m`` with ``m`` in ``[sqrt(1/2), sqrt(2))`` from the bits, then
    ``log m = 2 atanh(s)``, ``s = (m - 1) / (m + 1)``, ``|s| <= 0.172``, by its
    series to ``s**21`` (next term below 3e-17 relative).  The C library's
    ``log`` is a scalar call that stops the vectorisation of the per-point
    loop (~10% of a pass at K = 16).
    """
    bits = _bits_from_float64(z)
    e = (bits >> 52) - 1023
    m = _float64_from_bits((bits & _MANTISSA_BITS) | _EXPONENT_ONE)
    big = m > _SQRT2
    m = 0.5 * m if big else m
    ef = np.float64(e + 1 if big else e)
    s = (m - 1.0) / (m + 1.0)
    s2 = s * s
    p = 1.0 / 21.0
    p = p * s2 + 1.0 / 19.0
    p = p * s2 + 1.0 / 17.0
    p = p * s2 + 1.0 / 15.0
    p = p * s2 + 1.0 / 13.0
    p = p * s2 + 1.0 / 11.0
    p = p * s2 + 1.0 / 9.0
    p = p * s2 + 1.0 / 7.0
    p = p * s2 + 1.0 / 5.0
    p = p * s2 + 1.0 / 3.0
    p = p * s2 + 1.0
    return ef * _LN2_HI + (ef * _LN2_LO + 2.0 * s * p)


@intrinsic
def _float32_from_bits(typingctx, bits):  # pragma: no cover - compiled
    """Reinterpret an int32 as the float32 with the same bits (an LLVM ``bitcast``)."""
    sig = types.float32(types.int32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.float32))

    return sig, codegen


_LOG2E_32 = np.float32(_LOG2E)
_LN2_HI_32 = np.float32(0.693145751953125)  # ln 2 rounded to 16 significant bits
_LN2_LO_32 = np.float32(1.428606765330187e-06)  # ln 2 - _LN2_HI_32
_HALF_32 = np.float32(0.5)
_EXP_TAYLOR_32 = tuple(np.float32(1.0 / math.factorial(j)) for j in range(8))


@nb.njit(inline="always", fastmath=_FASTMATH)
def _exp_nonpositive32(v):  # pragma: no cover - compiled
    """``exp(v)`` in float32 for float32 ``v`` in ``[-80, 0]``, to ~3e-7 relative.

    The same scheme as :func:`_exp_nonpositive` with a Taylor polynomial of
    degree 7, all in float32 (``np.floor`` keeps the type, ``math.floor``
    would return an integer and promote the rest to float64): twice the SIMD
    lanes and half the polynomial, ~3x faster than the float64 one.  Used for
    float32 blocks, whose responsibilities are float32 anyway.
    """
    c0, c1, c2, c3, c4, c5, c6, c7 = _EXP_TAYLOR_32
    t = np.floor(v * _LOG2E_32 + _HALF_32)
    r = v - t * _LN2_HI_32 - t * _LN2_LO_32
    p = c7
    p = p * r + c6
    p = p * r + c5
    p = p * r + c4
    p = p * r + c3
    p = p * r + c2
    p = p * r + c1
    p = p * r + c0
    return p * _float32_from_bits((np.int32(t) + np.int32(127)) << np.int32(23))


@nb.njit(inline="always", fastmath=_FASTMATH)
def _squared_norm(row):  # pragma: no cover - compiled
    """``|row|^2``, summed in float64."""
    acc = 0.0
    for j in range(row.size):
        v = np.float64(row[j])
        acc += v * v
    return acc


@nb.njit(nogil=True, cache=True, fastmath=_FASTMATH, error_model="numpy", inline="always")
def _exact_distance(xi, center):  # pragma: no cover - compiled
    """``|xi - center|^2`` in float64 from the row itself: the expanded product
    cancels when clusters are far apart relative to their size."""
    acc = 0.0
    for j in range(xi.size):
        v = np.float64(xi[j]) - center[j]
        acc += v * v
    return acc


@nb.njit(nogil=True, cache=True, fastmath=_FASTMATH, error_model="numpy")
def _exact_rows(x, start, index, n, label, weights, abs_centers, exact,
                hard_counts):  # pragma: no cover
    """The exact nearest distance of the chunk's rows ``index[:n]`` (rows of ``x`` from
    ``start``) into ``exact``, their weights ``weights[:n]`` into ``hard_counts``;
    returns their summed weight and inertia."""
    w_sum = 0.0
    j_sum = 0.0
    for t in range(n):
        i = index[t]
        lab = label[i]
        wi = weights[t]
        acc = _exact_distance(x[start + i], abs_centers[lab]) if wi != 0.0 else 0.0
        exact[i] = acc
        w_sum += wi
        hard_counts[lab] += wi
        j_sum += wi * acc
    return w_sum, j_sum


@nb.njit(nogil=True, cache=True, fastmath=_FASTMATH, error_model="numpy")
def _prepare_chunk(x, start, m, offset_tiled, weights, xw, xt, norms, wc, x64, need_x64):  # pragma: no cover
    """Rows ``start:start+m`` as ``x - offset`` in the working precision (``xw``, and
    transposed in ``xt`` unless it is empty), their squared norms (unless ``norms`` is
    empty) and weights (1 when ``weights`` is empty); returns how many rows hold NaN or
    infinity.

    ``offset_tiled`` is the offset repeated once per row, so that the rows go
    through as one flat vectorised loop (a loop per row is too short to
    vectorise with few features: ~2x slower at 8).  Rows holding NaN or
    infinity get weight 0 and zero coordinates, so they add nothing.  The test
    is a comparison (``|v| <= max``, false for NaN and infinity), which fast
    math leaves alone, unlike arithmetic such as ``v - v``.  Everything but
    ``x64`` is in the block's precision (``offset_tiled`` is exact in it).
    """
    dim = x.shape[1]
    size = m * dim
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
    if need_x64:
        wide = x64[:m].reshape(size)
        for t in range(size):
            wide[t] = np.float64(flat[t]) - np.float64(offset_tiled[t])
    if weights.size:
        for i in range(m):
            wc[i] = weights[start + i]
    else:
        for i in range(m):
            wc[i] = 1.0
    bad = 0
    if outside:
        for i in range(m):
            finite = True
            for j in range(dim):
                finite &= abs(np.float64(x[start + i, j])) <= _FLOAT64_MAX
            if not finite:
                bad += 1
                wc[i] = 0.0
                for j in range(dim):
                    xw[i, j] = 0.0
                if need_x64:
                    for j in range(dim):
                        x64[i, j] = 0.0
    if xt.size:
        for i in range(m):
            for j in range(dim):
                xt[j, i] = xw[i, j]
    if not norms.size:  # a plain Lloyd pass does not use them
        return bad
    if xt.size:
        for i in range(m):
            norms[i] = 0.0
        for j in range(dim):
            row = xt[j]
            for i in range(m):
                v = np.float64(row[i])
                norms[i] += v * v
    else:
        for i in range(m):
            row = xw[i]
            acc = 0.0
            for j in range(dim):
                v = np.float64(row[j])
                acc += v * v
            norms[i] = acc
    return bad


@nb.njit(nogil=True, cache=True, fastmath=_FASTMATH, error_model="numpy")
def _soft_rows(g, xw, amax, best, exact, wc, z, su, sd, log_priors, temperature, inv_t,
               floor, e_cut, single, r_flat, s_work, counts, sums):  # pragma: no cover
    """The soft path over ``ms`` rows: ``g`` (K, ms) holds their distances and gets their
    weighted responsibilities; adds the soft sums to ``counts`` and ``sums`` (or, when
    ``r_flat`` is not empty, writes the responsibilities there for the moments) and
    returns the rows' entropy, free energy, distortion and confidence.

    Not inlined: the caller has three call sites, and inlined copies tripled the
    compilation time for no speed.  The sizes come from the arrays, not from integer
    arguments, which numba would compile again for each literal value passed.
    """
    k, ms = g.shape
    dim = xw.shape[1]
    need_r64 = r_flat.size > 0
    h_sum = 0.0
    f_sum = 0.0
    d_sum = 0.0
    conf_sum = 0.0
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
                e32 = _exp_nonpositive32(np.float32(v))
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
                e = _exp_nonpositive(v)
                z[i] += e
                su[i] += e * v
                sd[i] += e * d
                gr[i] = e
    for i in range(ms):
        wi = wc[i]
        q = wi / z[i]
        log_z = _log_positive(z[i])
        # -sum_k p log p with log p = u - log z: never 0 * log 0.
        h_sum += wi * (log_z - su[i] / z[i])
        # -T log Z_i = d_min - (max_j a_ij + d_min) - T log z_i, d_min exact.
        f_sum += wi * (exact[i] - (amax[i] + best[i]) - temperature * log_z)
        d_sum += sd[i] * q
        conf_sum += q
        z[i] = q
    # Terms at (or within ln 2 of) the logit floor weigh < 2e-26 of the row's
    # largest: they become exact zeros, and when most are, the soft sums are
    # a scatter of the nonzero terms (in float64) instead of a dense product.
    nonzero = 0.0
    for c in range(k):
        gr = g[c]
        acc = 0.0
        count = 0.0  # a float count keeps the loop vectorised
        for i in range(ms):
            e = np.float64(gr[i])
            keep = e > e_cut
            pw = e * z[i] if keep else 0.0
            gr[i] = pw
            acc += pw
            count += 1.0 if keep else 0.0
        counts[c] += acc
        nonzero += count
    if need_r64:
        for c in range(k):
            for i in range(ms):
                r_flat[c * ms + i] = np.float64(g[c, i])
    elif dim >= _SPARSE_MIN_DIM and nonzero * _SPARSE_FACTOR <= k * ms:
        for c in range(k):
            gr = g[c]
            sc = sums[c]
            for i in range(ms):
                pw = np.float64(gr[i])
                if pw != 0.0:
                    xi = xw[i]
                    for j in range(dim):
                        sc[j] += pw * np.float64(xi[j])
    else:
        np.dot(g, xw[:ms], s_work)
        for c in range(k):
            for j in range(dim):
                sums[c, j] += np.float64(s_work[c, j])
    return h_sum, f_sum, d_sum, conf_sum


@nb.njit(inline="always", fastmath=_FASTMATH, error_model="numpy")
def _soft_buffer_rows(b_g, rows, stride, b_xw, b_pp, z, su, sd, log_priors, temperature, inv_t,
                      floor, e_cut, single, r_flat, s_work, counts, sums):  # pragma: no cover
    """The soft path over the ``rows`` gathered in the soft-row buffer (see ``soft_block``).

    Its distances sit in ``b_g`` with row stride ``stride``; they are first packed to
    stride ``rows`` (every value moves to a position at or before its own).
    """
    k = b_g.size // stride
    for c in range(1, k):
        for t in range(rows):
            b_g[c * rows + t] = b_g[c * stride + t]
    return _soft_rows(b_g[: k * rows].reshape((k, rows)), b_xw, b_pp[0], b_pp[1], b_pp[2],
                      b_pp[3], z, su, sd, log_priors, temperature, inv_t, floor, e_cut, single,
                      r_flat, s_work, counts, sums)


@nb.njit(_signatures(), nogil=True, cache=True, fastmath=_FASTMATH, error_model="numpy")
def soft_block(
    x, weights, offset, rel_centers, centers_work, center_norms, log_priors, temperature,
    floor, moment_mode, directions, removal, chunk,
    counts, sums, hard_counts, removal_costs, moments, scalars, labels,
):  # pragma: no cover - compiled; exercised through _kernels.block_statistics
    """Add the statistics of the rows of ``x`` to the output arrays (float64 sums).

    ``x`` (n, D) in its own precision; ``centers_work`` are ``rel_centers``
    (centers minus ``offset``) in that precision and ``center_norms`` their
    squared norms.  ``offset`` must be exact in that precision: ``x - offset``
    is formed in it (float32 blocks: twice the SIMD lanes of float64, and the
    same numbers as float64 rounded to float32, that rounding being innocuous
    for a difference of two float32).  ``sums`` are of ``x - offset``.
    ``temperature == 0`` gives hard assignments.  Rows are taken ``chunk`` at
    a time, which bounds every temporary.  ``scalars`` receives ``[weight,
    free energy, entropy, distortion, inertia, confidence, non-finite rows]``;
    ``moments`` is the flattened moment statistic (empty for
    ``moment_mode == MOMENTS_NONE``) about the centers.  ``labels`` receives each
    row's nearest center at ``temperature == 0`` (``predict``), or is empty.
    """
    n, dim = x.shape
    k = rel_centers.shape[0]
    chunk = max(1, min(chunk, n))
    soft = temperature > 0.0 and math.isfinite(1.0 / temperature)
    inv_t = 1.0 / temperature if soft else 0.0
    need_r64 = moment_mode != MOMENTS_NONE
    # float32 blocks: exp in float32 (the responsibilities are stored in float32 anyway).
    single = centers_work.itemsize == 4
    e_cut = 2.0 * math.exp(floor)

    # Few features: the same transposed, as BLAS runs ``C xt`` ~2x faster than ``C xw^T``
    # there; with many the transposition costs more than it saves.
    transposed = dim <= _TRANSPOSE_MAX_DIM
    tiled = single and _TRANSPOSE_MAX_DIM < dim <= _TILE_MAX_DIM and k >= _TILE
    if tiled:
        chunk = min(chunk, _TILE_CHUNK_ROWS)
    xw = np.empty((chunk, dim), centers_work.dtype)  # (x - offset) in the working precision
    offset_tiled = np.empty(chunk * dim, x.dtype)
    for i in range(chunk):
        offset_tiled[i * dim : (i + 1) * dim] = offset
    for j in range(dim):
        if np.float64(offset_tiled[j]) != offset[j]:
            raise ValueError("the offset must be exact in the block's precision")
    xt_flat = np.empty(chunk * dim if transposed else 0, centers_work.dtype)
    x64 = np.empty((chunk if need_r64 else 0, dim), np.float64)
    g_flat = np.empty(k * chunk, centers_work.dtype)  # products -> distances -> weighted responsibilities
    gt_flat = np.empty(k * chunk if tiled else 0, centers_work.dtype)
    centers_t = np.ascontiguousarray(centers_work.T)
    r_flat = np.empty(k * chunk if need_r64 else 0, np.float64)
    p_flat = np.empty(k * chunk if moment_mode == MOMENTS_POWER else 0, np.float64)
    s_work = np.empty((k, dim), centers_work.dtype)
    # The per-point arrays are rows of one buffer whose row stride is not a multiple
    # of 4 KiB: at 512 rows separate arrays sit 4 KiB apart, and the CPU then takes
    # the loads of one for stores to another (4K aliasing), ~2x slower sweeps.
    per_point = np.empty((12, chunk + _PAD))
    norms = per_point[0][:chunk]
    wc = per_point[1][:chunk]
    best = per_point[2][:chunk]
    second = per_point[3][:chunk]
    exact = per_point[4][:chunk]
    amax = per_point[5][:chunk]
    z = per_point[6][:chunk]
    su = per_point[7][:chunk]
    sd = per_point[8][:chunk]
    label = per_point[9][:chunk].view(np.int64)
    soft_w = per_point[10][:chunk]
    soft_index = per_point[11][:chunk].view(np.int64)
    all_rows = np.arange(chunk)
    # Soft rows of mixed chunks wait here, their distances (K, chunk) and per-point
    # values [amax, best, exact, weight], until a chunk's worth takes the soft path.
    b_g = np.empty(k * chunk if soft else 0, centers_work.dtype)
    b_xw = np.empty((chunk if soft else 0, dim), centers_work.dtype)
    b_pp = np.empty((4, chunk + _PAD if soft else 0))
    n_buf = 0
    # The sweep's per-point values in the working precision (equal priors, see below).
    norms_w = np.empty(chunk + _PAD, centers_work.dtype)[:chunk]
    best_w = np.empty(chunk + _PAD, centers_work.dtype)[:chunk]
    label_w = np.empty(chunk + _PAD, np.int32)[:chunk]
    second_w = np.empty(chunk + _PAD, centers_work.dtype)[:chunk]
    # The centers themselves, for the exact distance x - c: one subtraction per
    # coordinate instead of two ((x - offset) - rel_centers), 2-4% of a pass.
    abs_centers = np.empty((k, dim))
    for c in range(k):
        for j in range(dim):
            abs_centers[c, j] = offset[j] + rel_centers[c, j]
    proj_sums = np.zeros(k)
    center_proj = np.zeros(k)
    if moment_mode == MOMENTS_POWER:
        for c in range(k):
            acc = 0.0
            for j in range(dim):
                acc += rel_centers[c, j] * directions[c, j]
            center_proj[c] = acc

    w_sum = 0.0
    f_sum = 0.0
    h_sum = 0.0
    d_sum = 0.0
    j_sum = 0.0
    conf_sum = 0.0
    bad_rows = 0
    untested = 0  # chunks left before the one-hot test runs again
    equal_priors = True
    for c in range(k):
        equal_priors &= log_priors[c] == log_priors[0]
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        xt = xt_flat[: dim * m if transposed else 0].reshape((dim if transposed else 0, m))
        # With equal priors, and unless the last chunks were soft, the sweep finds the
        # nearest and second-nearest centers from |c|^2 - 2 x.c alone and leaves the
        # products in place: a row is one-hot when the second is far enough, and only
        # soft rows need their norms and distances (below).
        gap = soft and equal_priors and not removal and untested == 0
        bad_rows += _prepare_chunk(x, start, m, offset_tiled, weights, xw, xt,
                                   norms if (soft or removal) and not gap else norms[:0], wc,
                                   x64, need_r64)
        g = g_flat[: k * m].reshape((k, m))
        if transposed:
            np.dot(centers_work, xt, g)
        elif tiled:
            _transposed_product(xw[:m], centers_t, gt_flat[: k * m].reshape((m, k)), g)
        else:
            np.dot(centers_work, xw[:m].T, g)

        # Squared distances, nearest (and second-nearest) center, largest logits,
        # along the points.  With a_ik = T log pi_k - d_ik the shifted logits are
        # u_ik - max_j u_ij = (a_ik - max_j a_ij) / T.  Each loop touches few
        # arrays: with more (say, a second-largest logit too) it is not vectorised.
        if not gap:  # the gap sweep's rows get them below
            for i in range(m):
                best[i] = np.inf
                second[i] = np.inf
                amax[i] = -np.inf
                label[i] = 0
        if soft and equal_priors and not removal:
            if not gap:
                for i in range(m):
                    norms_w[i] = norms[i]
            for i in range(m):
                best_w[i] = np.inf
                second_w[i] = np.inf
                label_w[i] = 0
        if not (soft or removal):
            # A plain Lloyd pass needs only the nearest center: the smallest
            # |c|^2 - 2 x.c (|x|^2 is the same for every center), in the working
            # precision, as the product itself (~10% of a pass faster in float32 than
            # the distance in float64); the exact distance comes later.  Two centers
            # at a time: half the loads and stores of the per-point values (ties go
            # to the lower index, as one at a time).
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
        if gap:
            # As the Lloyd sweep above, and the second-nearest too.
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
        for c in range(k):
            gr = g[c]
            cn = center_norms[c]
            tlp = temperature * log_priors[c] if soft else 0.0
            if not (soft or removal) or gap:  # swept above
                continue
            if soft and not removal and equal_priors:
                # The distances and the nearest, all in the working precision (the
                # logits use the distances rounded to it anyway); with equal priors
                # the largest logit is the nearest center's, set below.  (One loop with
                # a flag for the largest logit, instead of this loop and the next,
                # measured 2-6% slower.)
                cw = gr.dtype.type(cn)
                two = gr.dtype.type(2.0)
                zero = gr.dtype.type(0.0)
                for i in range(m):
                    v = max(norms_w[i] + cw - two * gr[i], zero)
                    gr[i] = v
                    closer = v < best_w[i]
                    label_w[i] = c if closer else label_w[i]
                    best_w[i] = v if closer else best_w[i]
                continue
            if soft and not removal:
                # Fused: the distances, the nearest and the largest logit.
                for i in range(m):
                    gr[i] = max(norms[i] + cn - 2.0 * np.float64(gr[i]), 0.0)
                    v = np.float64(gr[i])
                    closer = v < best[i]
                    label[i] = c if closer else label[i]
                    best[i] = v if closer else best[i]
                    a = tlp - v
                    amax[i] = a if a > amax[i] else amax[i]
                continue
            # The removal costs' pass: the second-nearest too.
            for i in range(m):
                gr[i] = max(norms[i] + cn - 2.0 * np.float64(gr[i]), 0.0)
            for i in range(m):
                v = np.float64(gr[i])
                closer = v < best[i]
                second[i] = min(second[i], max(v, best[i]))
                label[i] = c if closer else label[i]
                best[i] = v if closer else best[i]
            if soft:
                for i in range(m):
                    a = tlp - np.float64(gr[i])
                    amax[i] = a if a > amax[i] else amax[i]

        if soft and equal_priors and not removal:
            if gap:
                # The nearest distance and the largest logit are set from the exact
                # distance below (soft rows get them again from their distances).
                # Soft rows (z = 2): the second-nearest logit is above the floor.
                for i in range(m):
                    label[i] = label_w[i]
                    near = (np.float64(best_w[i]) - np.float64(second_w[i])) * inv_t > floor
                    z[i] = 2.0 if near else 1.0
            else:
                tlp = temperature * log_priors[0]
                for i in range(m):
                    best[i] = np.float64(best_w[i])
                    label[i] = label_w[i]
                    # Exactly max_c (tlp - d_ic), rounding being monotone.
                    amax[i] = tlp - best[i]

        if labels.size:  # the assignments of a Lloyd pass, kept (predict)
            for i in range(m):
                labels[start + i] = np.int32(label[i])

        # The nearest distance again, directly in float64 (the inertia and the free
        # energy of one-hot rows).  Fused: with one label per row (T = 0, or the gap
        # sweep's one-hot rows) it is taken row by row with the hard sums below, one
        # loop instead of three (1.03x a pass at 32 features, 1.13-1.16x at 8); soft rows
        # get theirs when they leave the chunk.
        fused = (gap or not soft) and not need_r64 and not removal
        if not fused:
            dw, dj = _exact_rows(x, start, all_rows, m, label, wc, abs_centers, exact, hard_counts)
            w_sum += dw
            j_sum += dj
        if gap and not fused:
            tlp = temperature * log_priors[0]
            for i in range(m):
                best[i] = exact[i]
                amax[i] = tlp - exact[i]

        # A row whose every other shifted logit is at the floor is one-hot: its
        # other terms are the floor's exp(-60) relative, which the soft sums below
        # drop anyway.  One-hot rows are summed as hard assignments to the largest
        # logit: no exp, no second product.  With separated clusters at low T nearly
        # every row is; when a few are not (points between clusters), those few go
        # to the soft-row buffer.
        n_soft = m if soft else 0  # rows that take the soft path
        if soft and untested > 0:
            untested -= 1
        elif soft:
            if not gap:
                # Per row, the shifted logits above the floor: one (its largest) when
                # one-hot.
                for i in range(m):
                    z[i] = 0.0
                for c in range(k):
                    gr = g[c]
                    tlp = temperature * log_priors[c]
                    for i in range(m):
                        z[i] += 1.0 if (tlp - np.float64(gr[i]) - amax[i]) * inv_t > floor else 0.0
            soft_rows = 0.0  # a float count keeps the loop vectorised
            for i in range(m):
                soft_rows += 1.0 if z[i] > 1.0 else 0.0
            if soft_rows == 0.0:
                n_soft = 0
            elif not need_r64 and soft_rows * _MIXED_FACTOR <= m:
                # The soft rows' weights move to ``soft_w`` (in order), leaving zeros
                # in ``wc``: the hard sums below then skip those rows.
                n_soft = int(soft_rows)
                s_at = 0
                for i in range(m):
                    if z[i] > 1.0:
                        soft_index[s_at] = i
                        soft_w[s_at] = wc[i]
                        wc[i] = 0.0
                        s_at += 1
                if fused:
                    dw, dj = _exact_rows(x, start, soft_index, n_soft, label, soft_w, abs_centers,
                                         exact, hard_counts)
                    w_sum += dw
                    j_sum += dj
            if fused and n_soft == m:
                dw, dj = _exact_rows(x, start, all_rows, m, label, wc, abs_centers, exact,
                                     hard_counts)
                w_sum += dw
                j_sum += dj
            untested = 0 if n_soft < m else _ONE_HOT_RETRY

        if n_soft < m and fused:
            # One-hot rows (soft rows have weight 0 here): with z_i = 1, log z_i = 0 and
            # the largest logit T log pi - d, the free energy is d - T log pi (equal priors).
            tlp = temperature * log_priors[0] if soft else 0.0
            hot_w = 0.0
            hot_j = 0.0
            for i in range(m):
                wi = wc[i]
                lab = label[i]
                acc = _exact_distance(x[start + i], abs_centers[lab]) if wi != 0.0 else 0.0
                hot_w += wi
                hot_j += wi * acc
                hard_counts[lab] += wi
                counts[lab] += wi
                sr = sums[lab]
                xi = xw[i]
                for j in range(dim):
                    sr[j] += wi * np.float64(xi[j])
            w_sum += hot_w
            conf_sum += hot_w
            j_sum += hot_j
            d_sum += hot_j
            f_sum += hot_j - tlp * hot_w
        elif n_soft < m:
            if soft and not equal_priors:
                # The largest logit is the nearest center's unless the priors outweigh
                # the distances; then look it up.
                differs = 0.0
                for i in range(m):
                    a = temperature * log_priors[label[i]] - best[i]
                    differs += 1.0 if a != amax[i] else 0.0
                if differs:
                    for c in range(k):
                        gr = g[c]
                        tlp = temperature * log_priors[c]
                        for i in range(m):
                            label[i] = c if tlp - np.float64(gr[i]) == amax[i] else label[i]
            # Hard assignments (T = 0, or one-hot rows: ``label`` is then the largest
            # logit's index).
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
                if removal and k > 1 and not soft:
                    removal_costs[lab] += wi * (second[i] - best[i])
            # The sums from the chunk's rows as the soft sums take them (in the working
            # precision, or in float64 with the moments, whose correction about the
            # centers must see the same sums): they are in the cache, already offset, and
            # zero where not finite (soft rows of the chunk have weight 0 here).  A loop of
            # its own, through the center's row (not ``sums[lab, j]``): 1.1x (32-D) to
            # 1.3x (8-D) faster a pass than inside the loop above.
            if need_r64:
                for i in range(m):
                    sr = sums[label[i]]
                    wi = wc[i]
                    xd = x64[i]
                    for j in range(dim):
                        sr[j] += wi * xd[j]
            else:
                for i in range(m):
                    sr = sums[label[i]]
                    wi = wc[i]
                    xi = xw[i]
                    for j in range(dim):
                        sr[j] += wi * np.float64(xi[j])
            if need_r64:
                for c in range(k):
                    for i in range(m):
                        r_flat[c * m + i] = wc[i] if label[i] == c else 0.0
        if 0 < n_soft < m:
            # A few soft rows: they join the soft-row buffer, which takes the soft path
            # when full (a loop over a dozen rows runs far slower per row than one over
            # hundreds).
            if n_buf + n_soft > chunk:
                dh, df, dd, dc = _soft_buffer_rows(
                    b_g, n_buf, chunk, b_xw, b_pp, z, su, sd, log_priors, temperature, inv_t,
                    floor, e_cut, single, r_flat, s_work, counts, sums)
                h_sum += dh
                f_sum += df
                d_sum += dd
                conf_sum += dc
                n_buf = 0
            for t in range(n_soft):
                i = soft_index[t]
                b_pp[0, n_buf + t] = amax[i]
                b_pp[1, n_buf + t] = best[i]
                b_pp[2, n_buf + t] = exact[i]
                b_pp[3, n_buf + t] = soft_w[t]
                for j in range(dim):
                    b_xw[n_buf + t, j] = xw[i, j]
                if gap:
                    norms_w[i] = _squared_norm(xw[i])
            for c in range(k):
                gr = g[c]
                if gap:  # the norms and distances from the products
                    cw = gr.dtype.type(center_norms[c])
                    two = gr.dtype.type(2.0)
                    zero = gr.dtype.type(0.0)
                    for t in range(n_soft):
                        i = soft_index[t]
                        b_g[c * chunk + n_buf + t] = max(norms_w[i] + cw - two * gr[i], zero)
                else:
                    for t in range(n_soft):
                        b_g[c * chunk + n_buf + t] = gr[soft_index[t]]
            if gap:
                # The nearest distance as just stored, so that its logit is exactly the
                # largest (the exact distance rounds differently).
                tlp = temperature * log_priors[0]
                for t in range(n_soft):
                    d = np.float64(b_g[label[soft_index[t]] * chunk + n_buf + t])
                    b_pp[1, n_buf + t] = d
                    b_pp[0, n_buf + t] = tlp - d
            n_buf += n_soft
            n_soft = 0
        if gap and n_soft == m:  # a soft chunk: the norms and distances from the products
            for i in range(m):
                norms_w[i] = _squared_norm(xw[i])
            for c in range(k):
                gr = g[c]
                cw = gr.dtype.type(center_norms[c])
                two = gr.dtype.type(2.0)
                zero = gr.dtype.type(0.0)
                for i in range(m):
                    gr[i] = max(norms_w[i] + cw - two * gr[i], zero)
            tlp = temperature * log_priors[0]
            for i in range(m):  # the nearest distance as stored, as for the buffer
                best[i] = np.float64(g[label[i], i])
                amax[i] = tlp - best[i]
        if n_soft:
            dh, df, dd, dc = _soft_rows(g, xw, amax, best, exact, wc, z, su, sd, log_priors,
                                        temperature, inv_t, floor, e_cut, single, r_flat,
                                        s_work, counts, sums)
            h_sum += dh
            f_sum += df
            d_sum += dd
            conf_sum += dc
        if need_r64:
            r = r_flat[: k * m].reshape((k, m))
            xs = x64[:m]
            if n_soft:
                s64 = np.dot(r, xs)
                for c in range(k):
                    for j in range(dim):
                        sums[c, j] += s64[c, j]
            if moment_mode == MOMENTS_FULL:
                # sum_i r_ik x_i x_i^T, corrected about the centers at the end.
                outer = np.empty((m, dim * dim))
                for i in range(m):
                    for a in range(dim):
                        for b in range(dim):
                            outer[i, a * dim + b] = xs[i, a] * xs[i, b]
                q = np.dot(r, outer)
                for c in range(k):
                    for ab in range(dim * dim):
                        moments[c * dim * dim + ab] += q[c, ab]
            else:
                proj = p_flat[: k * m].reshape((k, m))
                np.dot(directions, xs.T, proj)
                for c in range(k):
                    acc = 0.0
                    for i in range(m):
                        v = (proj[c, i] - center_proj[c]) * r[c, i]
                        proj[c, i] = v
                        acc += v
                    proj_sums[c] += acc
                mp = np.dot(proj, xs)
                for c in range(k):
                    for j in range(dim):
                        moments[c * dim + j] += mp[c, j]

    if n_buf:
        dh, df, dd, dc = _soft_buffer_rows(
            b_g, n_buf, chunk, b_xw, b_pp, per_point[6][:chunk], per_point[7][:chunk],
            per_point[8][:chunk], log_priors, temperature, inv_t, floor, e_cut, single, r_flat,
            s_work, counts, sums)
        h_sum += dh
        f_sum += df
        d_sum += dd
        conf_sum += dc

    if moment_mode == MOMENTS_FULL:
        # sum p (x - c)(x - c)^T = sum p x x^T - c S^T - S c^T + N c c^T
        for c in range(k):
            for a in range(dim):
                for b in range(dim):
                    moments[c * dim * dim + a * dim + b] += (
                        -rel_centers[c, a] * sums[c, b] - sums[c, a] * rel_centers[c, b]
                        + counts[c] * rel_centers[c, a] * rel_centers[c, b]
                    )
    elif moment_mode == MOMENTS_POWER:
        for c in range(k):
            for j in range(dim):
                moments[c * dim + j] -= rel_centers[c, j] * proj_sums[c]

    scalars[0] += w_sum
    scalars[1] += f_sum
    scalars[2] += h_sum
    scalars[3] += d_sum
    scalars[4] += j_sum
    scalars[5] += conf_sum
    scalars[6] += bad_rows
