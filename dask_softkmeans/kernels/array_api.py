"""The per-block mathematics on the Python array API standard: one code for every array library.

The same convention as :mod:`.reference` (``d_ik = ||x_i - c_k||^2``,
``p_ik = pi_k exp(-d_ik / T) / Z_i``, ``F = -T sum_i log Z_i``, and for the
sparse normalisations ``f_i = sum_k p_ik (d_ik - T log pi_k) - T Omega(p_i)``),
written once against the standard's functions (``sort``, ``cumulative_sum``,
``where``, ``matmul``, ...) so that it runs on NumPy, JAX, CuPy, PyTorch or
``array-api-strict`` arrays and returns arrays of the same library, on the same
device.  Rows are laid out ``(n, K)`` here: reductions run over the last axis,
as deep-learning code expects.

Two uses:

- a differentiable objective (:func:`row_free_energy`): every operation is one
  that automatic differentiation (``jax.grad``, ``torch.autograd``) follows, and
  the sparse thresholds are recomputed from their support so that no gradient
  goes through a sort;
- the statistics of a block that is not a NumPy array (:func:`block_statistics`,
  :func:`packed_statistics`), e.g. a CuPy chunk of a Dask array: the same sums
  as :func:`.reference_statistics`, packed as :class:`.StatsLayout` in float64.

The compiled kernel (:mod:`.fused`) stays the fast path for NumPy blocks.  The
namespace of an array comes from ``array-api-compat`` when it is installed (the
``array-api`` extra: PyTorch, CuPy and NumPy < 2.1 need it), and otherwise from
the array's own ``__array_namespace__`` (NumPy >= 2.1, JAX, ``array-api-strict``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from .._typing import MomentMode, Normalization
from ..errors import MissingDependencyError
from ..validation import NORMALIZATIONS
from .common import LOGIT_FLOOR, SPARSE_LOGIT_FLOOR, sub_block_rows
from .layout import ScanLayout, StatsLayout

#: An array of any library that follows the array API standard.
Array = Any

try:  # the optional extra: wraps the libraries that do not follow the standard natively
    import array_api_compat
except ImportError:  # tests/test_array_api.py hides it in a subprocess
    array_api_compat = None


def is_array_api_obj(x: Any) -> bool:
    """Whether ``x`` is an array of a library that follows (or is wrapped to follow) the standard."""
    if array_api_compat is not None:
        return bool(array_api_compat.is_array_api_obj(x))
    return isinstance(x, np.ndarray) or hasattr(x, "__array_namespace__")


def is_foreign_array(x: Any) -> bool:
    """Whether ``x`` is an array-API array that is neither NumPy nor Dask: JAX, CuPy, PyTorch,
    ``array-api-strict`` ...  (those take the array-API path instead of the compiled kernel)."""
    if isinstance(x, np.ndarray | np.generic):
        return False
    module = type(x).__module__.split(".")[0]
    return module != "dask" and is_array_api_obj(x)


def _own_namespace(x: Array) -> Any:
    if array_api_compat is not None:
        return array_api_compat.array_namespace(x)
    if isinstance(x, np.ndarray | np.generic):
        if not hasattr(np, "cumulative_sum"):
            raise MissingDependencyError(
                f"NumPy {np.__version__} does not follow the array API standard (NumPy >= 2.1 "
                'does). Install array-api-compat: pip install "dask-softkmeans[array-api]".')
        return np
    if hasattr(x, "__array_namespace__"):
        return x.__array_namespace__()
    raise MissingDependencyError(
        f"Arrays of type {type(x).__module__}.{type(x).__name__} need array-api-compat to be "
        'used through the array API standard: pip install "dask-softkmeans[array-api]".')


def namespace(*arrays: Any) -> Any:
    """The array API namespace shared by ``arrays``.

    ``None``, Python numbers and NumPy arrays (or lists) give way to the one
    other library present: they are converted into its arrays.  Arrays of two
    different non-NumPy libraries are refused.
    """
    foreign = {}
    for a in arrays:
        if a is None or isinstance(a, int | float | list | tuple):
            continue
        if isinstance(a, np.ndarray | np.generic):
            continue
        xp = _own_namespace(a)
        foreign[getattr(xp, "__name__", repr(xp))] = xp
    if len(foreign) > 1:
        raise TypeError(
            f"Arrays of different libraries ({', '.join(sorted(foreign))}) cannot be mixed; "
            "convert them to one library first.")
    if foreign:
        return next(iter(foreign.values()))
    return _own_namespace(np.empty(0))


def device_of(x: Array) -> Any:
    """The device that holds ``x`` (the standard's ``x.device``)."""
    if array_api_compat is not None:
        return array_api_compat.device(x)
    return x.device


def accumulation_dtype(xp: Any, device: Any = None) -> Any:
    """float64 where the library and device have it, float32 otherwise (JAX without
    ``jax_enable_x64``, some GPUs): the dtype statistics are summed in."""
    info = getattr(xp, "__array_namespace_info__", None)
    if info is not None:
        floats = info().dtypes(kind="real floating", device=device)
        if "float64" in floats:
            return floats["float64"]
        return info().default_dtypes(device=device)["real floating"]
    return xp.float64


def floating(x: Array, xp: Any) -> Array:
    """``x`` as a real floating array: float32 and float64 stay, other dtypes become the
    library's default floating dtype."""
    if xp.isdtype(x.dtype, "real floating"):
        return x
    info = getattr(xp, "__array_namespace_info__", None)
    dtype = (info().default_dtypes(device=device_of(x))["real floating"] if info is not None
             else xp.float64)
    return xp.astype(x, dtype)


def _sum_squares(a: Array, xp: Any) -> Array:
    return xp.sum(a * a, axis=-1)


def squared_distances(x: Array, centers: Array, *, offset: Array | None = None) -> Array:
    """``(n, K)`` squared distances ``||x_i - c_k||^2`` in the dtype of ``x`` and ``centers``.

    Both are shifted by ``offset`` (by default the centers' mean) before the
    products ``||x||^2 - 2 x.c + ||c||^2``, which cancel badly far from the
    origin; the shift changes no distance.  Negative rounding is clipped to 0.

    Parameters
    ----------
    x : array of shape (n, D)
    centers : array of shape (K, D)
    offset : array of shape (D,), optional

    Returns
    -------
    array of shape (n, K)
    """
    xp = namespace(x, centers)
    if offset is None:
        offset = xp.mean(centers, axis=0)
    x = x - offset
    c = centers - offset
    d = _sum_squares(x, xp)[:, None] - 2.0 * (x @ xp.matrix_transpose(c)) + _sum_squares(c, xp)[None, :]
    return xp.clip(d, min=0.0)


def _check_normalization(normalization: str) -> None:
    if normalization not in NORMALIZATIONS:
        raise KeyError(
            f"Unknown normalization {normalization!r}; valid names: {', '.join(NORMALIZATIONS)}.")


def normalize(u: Array, normalization: Normalization = "softmax") -> tuple[Array, Array]:
    """Normalise ``(n, K)`` logits row by row; return ``p`` and the regulariser ``Omega(p)``.

    The array-API twin of :func:`.reference.normalize` (which works on the
    transposed ``(K, n)`` layout): softmax with the Shannon entropy,
    entmax-1.5 with the Tsallis entropy ``(4/3)(1 - sum p^1.5)``, sparsemax
    with ``(1 - sum p^2) / 2``.  The sparse thresholds ``tau`` are found by a
    sort, then recomputed from the support alone, so that derivatives of
    ``p`` never pass through the sort.

    Parameters
    ----------
    u : array of shape (n, K)
        Logits; a per-row constant may be added (it cancels).
    normalization : {"softmax", "entmax15", "sparsemax"}

    Returns
    -------
    p : array of shape (n, K)
        Non-negative, every row sums to 1; the dtype of ``u``.
    omega : array of shape (n,)
    """
    _check_normalization(normalization)
    xp = namespace(u)
    u = u - xp.max(u, axis=-1, keepdims=True)
    if normalization == "softmax":
        u = xp.clip(u, min=LOGIT_FLOOR)
        e = xp.exp(u)
        z = xp.sum(e, axis=-1, keepdims=True)
        p = e / z
        # -sum p log p with log p = u - log z: never 0 * log 0.
        return p, xp.log(z[:, 0]) - xp.sum(p * u, axis=-1)
    u = xp.clip(u, min=SPARSE_LOGIT_FLOOR)
    support = _support(u, normalization, xp)
    inside = xp.astype(support, u.dtype)
    size = xp.sum(inside, axis=-1, keepdims=True)
    if normalization == "sparsemax":
        tau = (xp.sum(inside * u, axis=-1, keepdims=True) - 1.0) / size
        p = xp.clip(u - tau, min=0.0)
        p = p / xp.sum(p, axis=-1, keepdims=True)
        return p, 0.5 * (1.0 - xp.sum(p * p, axis=-1))
    half = u / 2.0
    mean = xp.sum(inside * half, axis=-1, keepdims=True) / size
    spread = xp.sum(inside * (half - mean) ** 2, axis=-1, keepdims=True)
    # sum over the support of (half - tau)^2 = 1 gives tau = mean - sqrt((1 - spread) / size).
    tau = mean - xp.sqrt(xp.clip((1.0 - spread) / size, min=0.0))
    r = xp.clip(half - tau, min=0.0)
    # Rounding leaves the sum a few ulps off 1; rescaling keeps the zeros exact.
    scale = xp.sum(r * r, axis=-1, keepdims=True)
    r = r / xp.sqrt(scale)
    p = r * r
    # sum p^1.5 = sum r^3: no power of 0 whose derivative is undefined.
    return p, (4.0 / 3.0) * (1.0 - xp.sum(p * r, axis=-1))


def _support(u: Array, normalization: Normalization, xp: Any) -> Array:
    """``(n, K)`` booleans: the logits that get a positive weight (sort-based test)."""
    n_clusters = u.shape[-1]
    rank = xp.arange(1, n_clusters + 1, dtype=u.dtype, device=device_of(u))
    top = -xp.sort(-u, axis=-1)
    if normalization == "sparsemax":
        cumulative = xp.cumulative_sum(top, axis=-1)
        inside = 1.0 + rank * top > cumulative
    else:
        half = top / 2.0
        mean = xp.cumulative_sum(half, axis=-1) / rank
        mean_sq = xp.cumulative_sum(half * half, axis=-1) / rank
        delta = (1.0 - rank * (mean_sq - mean * mean)) / rank
        tau = mean - xp.sqrt(xp.clip(delta, min=0.0))
        inside = tau <= half
    size = xp.sum(xp.astype(inside, u.dtype), axis=-1, keepdims=True)
    # The smallest logit in the support; ties at it are in or out together.
    last = xp.sum(xp.where(rank == size, top, xp.zeros_like(top)), axis=-1, keepdims=True)
    return u >= last


def _logits(d: Array, temperature: Any, log_priors: Array | None, xp: Any) -> Array:
    """``log pi_k - d_ik / T`` shifted by the row's nearest distance (nothing changes)."""
    gap = d - xp.min(d, axis=-1, keepdims=True)
    u = gap * (-1.0 / temperature)
    if log_priors is not None:
        u = u + log_priors
    return u


def row_free_energy(
    x: Array,
    centers: Array,
    temperature: Any,
    *,
    log_priors: Array | None = None,
    normalization: Normalization = "softmax",
    offset: Array | None = None,
) -> Array:
    """``(n,)`` free energy of each row: ``-T log Z_i`` (softmax) or
    ``sum_k p_ik (d_ik - T log pi_k) - T Omega(p_i)`` (sparse normalisations).

    Differentiable in ``x``, ``centers``, ``temperature`` and ``log_priors``;
    by the envelope theorem the derivative in ``c_k`` of their sum is
    ``2 (N_k c_k - S_k)`` for every normalisation.  ``temperature`` must be
    positive (a Python number or a 0-d array, possibly traced).
    """
    xp = namespace(x, centers, log_priors)
    d = squared_distances(x, centers, offset=offset)
    dmin = xp.min(d, axis=-1)
    u = _logits(d, temperature, log_priors, xp)
    if normalization == "softmax":
        top = xp.max(u, axis=-1, keepdims=True)
        shifted = xp.clip(u - top, min=LOGIT_FLOOR)
        log_z = top[:, 0] + xp.log(xp.sum(xp.exp(shifted), axis=-1))
        return dmin - temperature * log_z
    p, omega = normalize(u, normalization)
    # sum_k p (d - T log pi) - T Omega = d_min - T (p . u + Omega), with u from d - d_min.
    return dmin - temperature * (xp.sum(p * u, axis=-1) + omega)


def responsibilities(
    x: Array,
    centers: Array,
    temperature: float,
    *,
    log_priors: Array | None = None,
    normalization: Normalization = "softmax",
) -> Array:
    """``(n, K)`` responsibilities ``p_ik`` in the dtype of the inputs; one-hot at ``T = 0``."""
    xp = namespace(x, centers, log_priors)
    d = squared_distances(x, centers)
    if _is_hard(temperature):
        return _one_hot(xp.argmin(d, axis=-1), d.shape[-1], d.dtype, xp, device_of(d))
    return normalize(_logits(d, temperature, log_priors, xp), normalization)[0]


def split_weights(u: Array, p: Array, normalization: Normalization) -> tuple[Array, Array]:
    """``(n, K)`` twin of :func:`.reference.split_weights`: the share ``q`` of one of two
    coincident copies of each center, and the row weights ``sqrt(q)`` or ``1[q > 0]``."""
    xp = namespace(u)
    columns = []
    for k in range(u.shape[-1]):
        doubled = normalize(xp.concat([u, u[:, k : k + 1]], axis=-1), normalization)[0]
        columns.append(xp.where(p[:, k] > 0, doubled[:, k], xp.zeros_like(doubled[:, k])))
    q = xp.stack(columns, axis=-1)
    if normalization == "sparsemax":
        return q, xp.astype(q > 0, q.dtype)
    return q, xp.sqrt(q)


def _is_hard(temperature: Any) -> bool:
    """``T = 0``, or so small that ``1 / T`` overflows: hard assignments (concrete ``T`` only)."""
    if not isinstance(temperature, int | float | np.generic):
        return False
    return temperature == 0 or not np.isfinite(1.0 / float(temperature))


def _one_hot(labels: Array, n_clusters: int, dtype: Any, xp: Any, device: Any) -> Array:
    ks = xp.arange(n_clusters, device=device)
    return xp.astype(labels[:, None] == ks[None, :], dtype)


class ArrayStats(NamedTuple):
    """The statistics of one block, as arrays of the block's library (the fields of
    :class:`.BlockStats`, same meaning, summed in :func:`accumulation_dtype`)."""

    weight: Array
    counts: Array
    sums: Array
    free_energy: Array
    entropy: Array
    distortion: Array
    inertia: Array
    hard_counts: Array
    confidence: Array
    nonfinite: Array
    zero_rows: Array  # always 0: these passes are Euclidean (cosine is refused before)
    removal: Array
    moments: Array
    split_counts: Array


def block_statistics(
    x: Array,
    centers: Array,
    temperature: float,
    *,
    offset: Array | None = None,
    log_priors: Array | None = None,
    weights: Array | None = None,
    moments: MomentMode = "none",
    directions: Array | None = None,
    removal: bool = False,
    normalization: Normalization = "softmax",
) -> ArrayStats:
    """Every statistic of :func:`.reference_statistics`, for a block of any array library.

    The parameters mean what they mean there.  ``centers``, ``offset``,
    ``log_priors`` and ``directions`` may be NumPy arrays (the parameters of
    a pass): they are moved to the block's library and device.  Distances are
    formed in the block's precision, everything after them (and each row's
    nearest distance, recomputed directly) in :func:`accumulation_dtype`.
    Rows holding NaN or infinity are counted in ``nonfinite`` and weigh 0.

    Returns
    -------
    ArrayStats
        Arrays of the block's library, on its device.
    """
    _check_normalization(normalization)
    xp = namespace(x)
    dev = device_of(x)
    acc = accumulation_dtype(xp, dev)
    x = floating(x, xp)
    work = x.dtype

    def param(a: Any, dtype: Any = acc) -> Array | None:
        return None if a is None else xp.asarray(a, dtype=dtype, device=dev)

    centers = param(centers)
    n_clusters, n_features = centers.shape
    offset = xp.zeros(n_features, dtype=acc, device=dev) if offset is None else param(offset)
    log_priors = param(log_priors)
    rel_centers = centers - offset
    centers_work = xp.astype(rel_centers, work)
    hard = _is_hard(temperature)
    if moments == "power":
        if directions is None:
            raise ValueError("moments='power' needs directions of shape (K, D).")
        directions = param(directions)
        center_proj = xp.sum(rel_centers * directions, axis=-1)
    zero = xp.zeros((), dtype=acc, device=dev)
    totals = dict(weight=zero, free_energy=zero, entropy=zero, distortion=zero, inertia=zero,
                  confidence=zero, nonfinite=zero, zero_rows=zero,
                  counts=xp.zeros(n_clusters, dtype=acc, device=dev),
                  hard_counts=xp.zeros(n_clusters, dtype=acc, device=dev),
                  removal=xp.zeros(n_clusters, dtype=acc, device=dev),
                  split_counts=xp.zeros(n_clusters, dtype=acc, device=dev),
                  sums=xp.zeros((n_clusters, n_features), dtype=acc, device=dev),
                  moments=xp.zeros({"none": (0,), "full": (n_clusters, n_features, n_features),
                                    "power": (n_clusters, n_features)}[moments],
                                   dtype=acc, device=dev))
    rows = sub_block_rows(n_clusters, n_features * n_features if moments == "full" else n_features)
    for start in range(0, x.shape[0], rows):
        stop = min(start + rows, x.shape[0])  # the standard leaves slices past the end undefined
        xb = x[start:stop, :]
        n = xb.shape[0]
        finite = xp.all(xp.isfinite(xb), axis=-1)
        w = xp.ones(n, dtype=acc, device=dev) if weights is None else param(weights[start:stop])
        # Non-finite rows weigh 0 and hold zeros: shapes stay fixed (no boolean indexing).
        w = xp.where(finite, w, xp.zeros_like(w))
        xb = xp.where(finite[:, None], xb, xp.zeros_like(xb))
        x64 = xp.astype(xb, acc) - offset
        d = squared_distances(xp.astype(x64, work), centers_work,
                              offset=xp.zeros(n_features, dtype=work, device=dev))
        labels = xp.argmin(d, axis=-1)
        # The nearest distance again, directly in the accumulation dtype: the expanded
        # product cancels when clusters are far apart relative to their size.
        diff = x64 - xp.take(rel_centers, labels, axis=0)
        dmin = xp.sum(diff * diff, axis=-1)
        d = xp.astype(d, acc)
        gap = d - xp.min(d, axis=-1, keepdims=True)
        one_hot = _one_hot(labels, n_clusters, acc, xp, dev)
        totals["nonfinite"] = totals["nonfinite"] + xp.sum(xp.astype(~finite, acc))
        totals["weight"] = totals["weight"] + xp.sum(w)
        totals["hard_counts"] = totals["hard_counts"] + w @ one_hot
        totals["inertia"] = totals["inertia"] + w @ dmin
        if hard:
            resp, omega = one_hot, xp.zeros(n, dtype=acc, device=dev)
            row_distortion = row_free = dmin
            if removal and n_clusters > 1:
                second = xp.sort(gap, axis=-1)[:, 1]
                totals["removal"] = totals["removal"] + (w * second) @ one_hot
        else:
            u = gap * (-1.0 / temperature)
            if log_priors is not None:
                u = u + log_priors
            resp, omega = normalize(u, normalization)
            row_distortion = xp.sum(resp * gap, axis=-1) + dmin
            row_free = row_distortion - temperature * omega
            if log_priors is not None:
                row_free = row_free - temperature * (resp @ log_priors)
        resp_w = resp * w[:, None]
        totals["entropy"] = totals["entropy"] + w @ omega
        totals["free_energy"] = totals["free_energy"] + w @ row_free
        totals["distortion"] = totals["distortion"] + w @ row_distortion
        totals["confidence"] = totals["confidence"] + w @ xp.max(resp, axis=-1)
        counts = xp.sum(resp_w, axis=0)
        sums = xp.matrix_transpose(resp_w) @ x64
        totals["counts"] = totals["counts"] + counts
        totals["sums"] = totals["sums"] + sums
        if not hard and normalization != "softmax" and moments != "none":
            # The sparse maps weigh the moments by each row's share in a split.
            share, split = split_weights(u, resp, normalization)
            totals["split_counts"] = totals["split_counts"] + w @ share
            resp_w = split * w[:, None]
            counts, sums = xp.sum(resp_w, axis=0), xp.matrix_transpose(resp_w) @ x64
        if moments == "full":
            outer = xp.reshape(x64[:, :, None] * x64[:, None, :], (n, n_features * n_features))
            q = xp.reshape(xp.matrix_transpose(resp_w) @ outer, (n_clusters, n_features, n_features))
            # sum p (x - c)(x - c)^T = sum p x x^T - c S^T - S c^T + N c c^T
            cs = rel_centers[:, :, None] * sums[:, None, :]
            q = q - cs - xp.permute_dims(cs, (0, 2, 1))
            q = q + counts[:, None, None] * rel_centers[:, :, None] * rel_centers[:, None, :]
            totals["moments"] = totals["moments"] + q
        elif moments == "power":
            proj = directions @ xp.matrix_transpose(x64) - center_proj[:, None]
            proj = proj * xp.matrix_transpose(resp_w)
            totals["moments"] = (totals["moments"] + proj @ x64
                                 - rel_centers * xp.sum(proj, axis=1)[:, None])
    return ArrayStats(**totals)


def to_numpy(a: Array) -> np.ndarray:
    """``a`` copied to a NumPy array on the host: the only way results leave a block's device.

    By DLPack, asking for a host copy (``device="cpu"``, DLPack 1.0: CuPy >= 13,
    PyTorch, JAX, ``array-api-strict``); where the producer cannot copy across
    devices, the array is first moved to its library's CPU device with the
    standard's ``to_device``; CuPy's ``.get()`` for older CuPy.  Callers pass
    only small arrays (packed statistics, sampled rows, per-row results).
    """
    if isinstance(a, np.ndarray):
        return a
    try:
        return np.from_dlpack(a, device="cpu", copy=None)
    except (TypeError, BufferError, RuntimeError, AttributeError, ValueError):
        pass
    if type(a).__module__.split(".")[0] == "cupy":
        return a.get()
    if array_api_compat is not None:
        return np.from_dlpack(array_api_compat.to_device(a, "cpu"))
    return np.from_dlpack(a)


def numpy_dtype(dtype: Any) -> np.dtype:
    """The NumPy dtype that matches another library's dtype (``array_api_strict.float32``,
    ``torch.float32`` -> ``float32``; JAX and CuPy dtypes already are NumPy's)."""
    try:
        return np.dtype(dtype)
    except TypeError:
        return np.dtype(str(dtype).rsplit(".", 1)[-1])


def astype_named(x: Array, name: str) -> Array:
    """``x`` converted to the dtype of its own library called ``name`` (e.g. "float64")."""
    xp = namespace(x)
    return xp.astype(x, getattr(xp, name))


def take_rows(x: Array, index: np.ndarray) -> np.ndarray:
    """The rows ``index`` of a block, gathered on its device, then copied to the host as NumPy:
    a sample leaves the device, the block does not."""
    xp = namespace(x)
    rows = xp.take(x, xp.asarray(index, dtype=xp.int64, device=device_of(x)), axis=0)
    return to_numpy(rows)


def nearest_labels(x: Array, centers: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """Nearest center of each row of a block of any library, as NumPy int32 on the host.

    Distances are formed as in :func:`block_statistics` (relative to ``offset``,
    in the block's precision), so the labels are those of the fit's Lloyd
    passes; only the ``(n,)`` labels leave the device.
    """
    xp = namespace(x)
    dev = device_of(x)
    acc = accumulation_dtype(xp, dev)
    x = floating(x, xp)
    n_clusters, n_features = np.shape(centers)
    centers = xp.asarray(np.asarray(centers, np.float64) - offset, dtype=acc, device=dev)
    offset = xp.asarray(offset, dtype=acc, device=dev)
    centers_work = xp.astype(centers, x.dtype)
    zero = xp.zeros(n_features, dtype=x.dtype, device=dev)
    rows = sub_block_rows(n_clusters, n_features)
    parts = []
    for start in range(0, x.shape[0], rows):
        xb = xp.astype(xp.astype(x[start : min(start + rows, x.shape[0]), :], acc) - offset, x.dtype)
        d = squared_distances(xb, centers_work, offset=zero)
        parts.append(xp.astype(xp.argmin(d, axis=-1), xp.int32))
    if not parts:
        return np.empty(0, np.int32)
    return np.asarray(to_numpy(xp.concat(parts)), dtype=np.int32)


def host_squared_distances(x: Array, centers: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """``(n, K)`` float64 squared distances of a block of any library, as NumPy on the host.

    Formed in :func:`accumulation_dtype` relative to ``offset``; the per-row
    outputs of ``transform`` (which have the size of their result, not of the data).
    """
    xp = namespace(x)
    dev = device_of(x)
    acc = accumulation_dtype(xp, dev)
    x64 = xp.astype(floating(x, xp), acc) - xp.asarray(offset, dtype=acc, device=dev)
    c = xp.asarray(np.asarray(centers, np.float64) - offset, dtype=acc, device=dev)
    d = squared_distances(x64, c, offset=xp.zeros(c.shape[1], dtype=acc, device=dev))
    return np.asarray(to_numpy(d), dtype=np.float64)


def block_responsibilities(x: Array, centers: np.ndarray, temperature: float, *,
                           offset: np.ndarray, log_priors: np.ndarray | None = None,
                           normalization: Normalization = "softmax") -> np.ndarray:
    """``(n, K)`` float64 responsibilities of a block of any library, as NumPy on the host
    (the per-row outputs of ``predict_proba``)."""
    xp = namespace(x)
    dev = device_of(x)
    acc = accumulation_dtype(xp, dev)
    x64 = xp.astype(floating(x, xp), acc) - xp.asarray(offset, dtype=acc, device=dev)
    c = xp.asarray(np.asarray(centers, np.float64) - offset, dtype=acc, device=dev)
    lp = None if log_priors is None else xp.asarray(log_priors, dtype=acc, device=dev)
    p = responsibilities(x64, c, temperature, log_priors=lp, normalization=normalization)
    return np.asarray(to_numpy(p), dtype=np.float64)


def all_finite(x: Array) -> bool:
    """Whether a block of any library holds no NaN and no infinity (one boolean leaves it)."""
    xp = namespace(x)
    return bool(xp.all(xp.isfinite(x)))


def packed_scan(x: Array, origin: np.ndarray, *, weights: Array | None = None,
                gram: bool = True) -> np.ndarray:
    """The first pass's statistics (:func:`.reference.scan_statistics`) of a block of any
    library, packed as :class:`.ScanLayout` in one float64 NumPy vector.

    Sums and the Gram matrix are formed on the block's device in
    :func:`accumulation_dtype`; rows with a non-finite value or a non-finite
    or negative weight weigh 0 and are counted in ``nonfinite``.
    """
    xp = namespace(x)
    dev = device_of(x)
    acc = accumulation_dtype(xp, dev)
    x = floating(x, xp)
    n_features = x.shape[1]
    origin = xp.asarray(origin, dtype=acc, device=dev)
    zero = xp.zeros((), dtype=acc, device=dev)
    weight = nonfinite = zero
    sums = xp.zeros(n_features, dtype=acc, device=dev)
    gram_sum = xp.zeros((n_features, n_features) if gram else (0,), dtype=acc, device=dev)
    rows = sub_block_rows(1, n_features)
    for start in range(0, x.shape[0], rows):
        stop = min(start + rows, x.shape[0])
        xb = x[start:stop, :]
        finite = xp.all(xp.isfinite(xb), axis=-1)
        nonfinite = nonfinite + xp.sum(xp.astype(~finite, acc))
        if weights is None:
            w = xp.ones(stop - start, dtype=acc, device=dev)
        else:
            w = xp.asarray(weights[start:stop], dtype=acc, device=dev)
            good = xp.isfinite(w) & (w >= 0)
            nonfinite = nonfinite + xp.sum(xp.astype(~good, acc))
            finite = finite & good
        w = xp.where(finite, w, xp.zeros_like(w))
        # Non-finite rows hold zeros and weigh 0: shapes stay fixed (no boolean indexing).
        xb = xp.astype(xp.where(finite[:, None], xb, xp.zeros_like(xb)), acc) - origin
        weight = weight + xp.sum(w)
        sums = sums + w @ xb
        if gram:
            gram_sum = gram_sum + xp.matrix_transpose(xb * w[:, None]) @ xb
    parts = [weight, nonfinite, zero, sums, gram_sum]
    out = np.asarray(to_numpy(xp.concat([xp.reshape(p, (-1,)) for p in parts])), dtype=np.float64)
    layout = ScanLayout(n_features, gram)
    if out.shape != (layout.size,):  # the parts and the layout are defined together
        raise AssertionError(f"packed {out.shape} for a layout of size {layout.size}")
    return out


def packed_statistics(x: Array, centers: np.ndarray, temperature: float, **kwargs: Any) -> np.ndarray:
    """:func:`block_statistics` packed as :class:`.StatsLayout` in one float64 NumPy vector.

    The block's library packs its statistics into one array on its device,
    so that one ``O(K D)`` transfer brings them to the host, where the
    engine's tree reduction adds them up in float64.
    """
    stats = block_statistics(x, centers, temperature, **kwargs)
    xp = namespace(x)
    flat = xp.concat([xp.reshape(part, (-1,)) for part in stats])
    out = np.asarray(to_numpy(flat), dtype=np.float64)
    layout = StatsLayout(*np.shape(centers), kwargs.get("moments", "none"))
    if out.shape != (layout.size,):  # the parts and the layout are defined together
        raise AssertionError(f"packed {out.shape} for a layout of size {layout.size}")
    return out
