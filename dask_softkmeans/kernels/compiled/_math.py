"""Scalar mathematics of the kernel's loops: ``exp``, ``log`` and squared distances.

numba's ``math.exp`` and ``math.log`` are calls to the C library, one value
at a time, and a call stops the vectorisation of the loop around it.  These
are polynomials evaluated in registers instead, with ``2**t`` and the
exponent read and written as bits; they are inlined into the loops.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np
from numba.core import types
from numba.core.cpu import CPUTargetOptions
from numba.extending import intrinsic

from ._cache import CACHING

#: Allowed: reassociate (vectorised sums and minima), fused multiply-add,
#: ignore the sign of zero.  Not allowed: assuming no NaN or infinity (the
#: non-finite rows must still be recognised) or approximate division.
FASTMATH = {"reassoc", "contract", "nsz"}

#: Options of the kernel's driver: compiled once, cached on disk (where :mod:`._cache`
#: found a writable directory), no GIL.
DRIVER = {"nogil": True, "cache": CACHING, "fastmath": FASTMATH, "error_model": "numpy"}

#: Options of its phases, called (not inlined) once or a few times per chunk: those of
#: the driver and, where numba allows, no reference counting (``_nrt=False``).  numba
#: counts references to every array a function receives, in a tuple or not, with
#: atomic operations that calls and loops in between keep it from pruning: dozens
#: per chunk.  A phase therefore allocates no array and returns none; the driver
#: allocates everything and outlives every call.  Without the option (a numba that
#: lost it), the phases count references, slower.
PHASE = DRIVER | {"forceinline": False} | ({"_nrt": False} if hasattr(CPUTargetOptions, "_nrt") else {})

def _product_signatures() -> list[types.Type]:
    """``a b`` with ``b`` C- or F-contiguous (a transposed row block), float32 or float64."""
    return [types.void(types.Array(t, 2, "C"), types.Array(t, 2, layout), types.Array(t, 2, "C"))
            for t in (types.float32, types.float64) for layout in ("C", "F")]


# Compiled here, eagerly, and never again: numba's ``np.dot`` needs reference counting,
# and a function compiled while a phase compiles would inherit the phase's ``_nrt``.
@nb.njit(_product_signatures(), **(DRIVER | {"forceinline": True}))
def product_into(a, b, out):  # pragma: no cover - compiled
    """``out = a b`` by BLAS, for the phases."""
    np.dot(a, b, out)


#: Options of the steps of a phase, inlined into it; they take arrays, not tuples.
STEP = {"inline": "always", "fastmath": FASTMATH, "error_model": "numpy"}

FLOAT64_MAX = 1.7976931348623157e308

_LOG2E = 1.4426950408889634
_LN2_HI = 0.6931471803691238  # ln 2 rounded to 32 significant bits
_LN2_LO = 1.9082149292705877e-10  # ln 2 - _LN2_HI
_MANTISSA_BITS = (1 << 52) - 1
_EXPONENT_ONE = 1023 << 52
_SQRT2 = 1.4142135623730951

_LOG2E_32 = np.float32(_LOG2E)
_LN2_HI_32 = np.float32(0.693145751953125)  # ln 2 rounded to 16 significant bits
_LN2_LO_32 = np.float32(1.428606765330187e-06)  # ln 2 - _LN2_HI_32
_HALF_32 = np.float32(0.5)
_EXP_TAYLOR_32 = tuple(np.float32(1.0 / math.factorial(j)) for j in range(8))


@intrinsic
def float64_from_bits(typingctx, bits):  # pragma: no cover - compiled
    """Reinterpret an int64 as the float64 with the same bits (an LLVM ``bitcast``)."""

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.float64))

    return types.float64(types.int64), codegen


@intrinsic
def bits_from_float64(typingctx, value):  # pragma: no cover - compiled
    """Reinterpret a float64 as the int64 with the same bits (an LLVM ``bitcast``)."""

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.int64))

    return types.int64(types.float64), codegen


@intrinsic
def float32_from_bits(typingctx, bits):  # pragma: no cover - compiled
    """Reinterpret an int32 as the float32 with the same bits (an LLVM ``bitcast``)."""

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.float32))

    return types.float32(types.int32), codegen


@nb.njit(inline="always", fastmath=FASTMATH)
def exp_nonpositive(v: float) -> float:  # pragma: no cover - compiled
    """``exp(v)`` for ``v`` in ``[-700, 0]``, to ~2e-15 relative.

    ``v = t ln 2 + r`` with integer ``t`` and ``|r| <= ln(2) / 2`` (Cody-Waite:
    ``ln 2`` in two parts so that ``t * _LN2_HI`` is exact), ``exp(r)`` by its
    Taylor polynomial of degree 13, and ``2**t`` written into the exponent bits.
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
    return p * float64_from_bits((np.int64(t) + 1023) << 52)


@nb.njit(inline="always", fastmath=FASTMATH)
def exp_nonpositive32(v: np.float32) -> np.float32:  # pragma: no cover - compiled
    """``exp(v)`` in float32 for float32 ``v`` in ``[-80, 0]``, to ~3e-7 relative.

    The scheme of :func:`exp_nonpositive` with a Taylor polynomial of degree
    7, all in float32 (``np.floor`` keeps the type, ``math.floor`` would
    return an integer and promote the rest to float64): twice the SIMD lanes
    and half the polynomial.  For float32 blocks, whose responsibilities are
    float32 anyway.
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
    return p * float32_from_bits((np.int32(t) + np.int32(127)) << np.int32(23))


@nb.njit(inline="always", fastmath=FASTMATH)
def log_positive(z: float) -> float:  # pragma: no cover - compiled
    """``log(z)`` for a positive normal float64, to ~1e-16 absolute near 1.

    ``z = 2**e m`` with ``m`` in ``[sqrt(1/2), sqrt(2))`` from the bits, then
    ``log m = 2 atanh(s)``, ``s = (m - 1) / (m + 1)``, ``|s| <= 0.172``, by its
    series to ``s**21`` (next term below 3e-17 relative).
    """
    bits = bits_from_float64(z)
    e = (bits >> 52) - 1023
    m = float64_from_bits((bits & _MANTISSA_BITS) | _EXPONENT_ONE)
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


@nb.njit(inline="always", fastmath=FASTMATH)
def squared_norm(row: np.ndarray) -> float:  # pragma: no cover - compiled
    """``|row|^2``, summed in float64."""
    acc = 0.0
    for j in range(row.size):
        v = np.float64(row[j])
        acc += v * v
    return acc


@nb.njit(inline="always", fastmath=FASTMATH, error_model="numpy")
def exact_distance(xi: np.ndarray, center: np.ndarray) -> float:  # pragma: no cover - compiled
    """``|xi - center|^2`` in float64 from the row itself: the expanded product
    cancels when clusters are far apart relative to their size."""
    acc = 0.0
    for j in range(xi.size):
        v = np.float64(xi[j]) - center[j]
        acc += v * v
    return acc
