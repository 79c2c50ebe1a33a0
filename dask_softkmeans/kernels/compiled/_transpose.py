"""The tiled first product: ``x C^T`` transposed 16 x 16 at a time in registers.

For float32 blocks with a few dozen features and 16 clusters or more,
OpenBLAS computes the first product faster as ``x C^T`` (rows, K) than as
``C x^T`` (K, rows), the layout the sweeps need; transposing it back pays
only when a 16 x 16 tile goes through vector registers (sixteen vector
loads, four rounds of shuffles, sixteen vector stores).  numba has no
shuffle, so the tile is LLVM IR (:func:`_transpose_tile`), built with
explicit element types and opaque pointers, which llvmlite keeps after its
typed pointers go.  ``benchmarks/kernel_compare.py`` measures this against
the plain product and against a transposition by loops (both slower).

Should llvmlite no longer build the tile, or build a wrong one,
:data:`IR_TRANSPOSE` is false: the kernel then forms the plain product and
is compiled without its disk cache, so that the cache only ever holds the
tiled build.  ``DASK_SOFTKMEANS_IR_TRANSPOSE=0`` in the environment forces
that fallback (for its tests).
"""

from __future__ import annotations

import os

import numba as nb
import numpy as np
from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic

from ._math import PHASE, product_into

#: The side of a tile: sixteen float32 fill one 512-bit register.
TILE = 16

#: The environment variable that, set to ``0``, turns the tiled product off.
ENVIRONMENT = "DASK_SOFTKMEANS_IR_TRANSPOSE"


def _shuffle_rounds(builder: ir.IRBuilder, rows: list[ir.Value]) -> list[ir.Value]:
    """Transpose ``TILE`` row vectors: round ``b`` swaps bit ``b`` of the row index
    with bit ``b`` of the column index, two vectors at a time."""
    lanes = len(rows)
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
    return rows


@intrinsic
def _transpose_tile(typingctx, src, src_at, src_stride, dst, dst_at, dst_stride):  # pragma: no cover
    """Write the transpose of a ``TILE`` x ``TILE`` tile of ``src`` into ``dst``.

    Both are flat arrays; the tile's rows start at ``src_at + r * src_stride``
    and the transpose's at ``dst_at + c * dst_stride``.
    """
    sig = types.void(src, src_at, src_stride, dst, dst_at, dst_stride)

    def codegen(context, builder, signature, args):
        s, s_at, s_stride, d, d_at, d_stride = args
        element = context.get_value_type(signature.args[0].dtype)
        vector = ir.VectorType(element, TILE)
        align = context.get_abi_sizeof(element)
        s_data = context.make_array(signature.args[0])(context, builder, s).data
        d_data = context.make_array(signature.args[3])(context, builder, d).data

        def row(data: ir.Value, at: ir.Value, stride: ir.Value, r: int) -> ir.Value:
            # Element types given explicitly: nothing reads a pointer's pointee type.  Only
            # a typed pointer needs a cast before a vector is stored through it.
            index = builder.add(at, builder.mul(stride, ir.Constant(ir.IntType(64), r)))
            pointer = builder.gep(data, [index], source_etype=element)
            return pointer if pointer.type.is_opaque else builder.bitcast(pointer, vector.as_pointer())

        rows = [builder.load(row(s_data, s_at, s_stride, r), typ=vector, align=align)
                for r in range(TILE)]
        for c, column in enumerate(_shuffle_rounds(builder, rows)):
            builder.store(column, row(d_data, d_at, d_stride, c), align=align)
        return context.get_dummy_value()

    return sig, codegen


@nb.njit(**PHASE)
def _tiled_product(xw, centers_t, gt, g):  # pragma: no cover - compiled
    """``g = C xw^T`` (K, m) as ``gt = xw C^T`` (m, K) transposed by register tiles."""
    m = xw.shape[0]
    k = centers_t.shape[1]
    product_into(xw, centers_t, gt)
    flat_t = gt.reshape(m * k)
    flat = g.reshape(k * m)
    m_tiled = m - m % TILE
    k_tiled = k - k % TILE
    for i0 in range(0, m_tiled, TILE):
        for c0 in range(0, k_tiled, TILE):
            _transpose_tile(flat_t, i0 * k + c0, k, flat, c0 * m + i0, m)
    for c in range(k):  # the edges
        gc = g[c]
        for i in range(m_tiled if c < k_tiled else 0, m):
            gc[i] = gt[i, c]


@nb.njit(**PHASE)
def _loop_product(xw, centers_t, gt, g):  # pragma: no cover - compiled
    """:func:`_tiled_product` with the transposition by plain loops (a gather per element)."""
    product_into(xw, centers_t, gt)
    for c in range(g.shape[0]):
        gc = g[c]
        for i in range(g.shape[1]):
            gc[i] = gt[i, c]


def _tile_works() -> bool:
    """Whether this llvmlite builds :func:`_tiled_product`, and it transposes one tile right."""
    if os.environ.get(ENVIRONMENT, "1") == "0":
        return False
    rng = np.random.default_rng(0)
    xw = rng.normal(size=(TILE, 3)).astype(np.float32)
    centers_t = rng.normal(size=(3, TILE)).astype(np.float32)
    gt = np.empty((TILE, TILE), np.float32)
    g = np.empty((TILE, TILE), np.float32)
    try:
        _tiled_product(xw, centers_t, gt, g)
    except Exception:  # any failure to build the IR: the fallback, never a broken kernel
        return False
    return bool(np.array_equal(g, gt.T))


#: Whether the kernel takes the tiled product (see the module's docstring).
IR_TRANSPOSE = _tile_works()

#: The tiled product the kernel compiles against: the register tiles, or (never
#: chosen by the kernel, but it must compile) the loops.
tiled_product = _tiled_product if IR_TRANSPOSE else _loop_product
