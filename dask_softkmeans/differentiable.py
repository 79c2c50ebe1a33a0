"""The free energy as a differentiable function of arrays of any library: a layer of a deep model.

:func:`free_energy` is written against the Python array API standard
(:mod:`.kernels.array_api`), so ``jax.grad``, ``jax.jit`` or
``torch.autograd`` differentiate it like any function of their own arrays:
its gradient in the centers is the ``2 (N_k c_k - S_k)`` that
:func:`.soft_statistics` reduces over whole datasets, and it has gradients
in the data (an embedding being trained), in the temperature and in the
log-priors.  :func:`array_statistics` is the pass of :func:`.soft_statistics`
for such arrays, held in memory.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._typing import Normalization
from .errors import InputError
from .kernels import array_api as aa
from .validation import check_normalization, check_temperature

#: An array of any library that follows the array API standard.
Array = Any


def _check_shapes(X: Array, centers: Array, log_priors: Array | None,
                  sample_weight: Array | None) -> None:
    """Shape checks on metadata only (they hold for traced arrays too)."""
    if len(X.shape) != 2:
        raise InputError(f"X must be 2-D (n_samples, n_features); got shape {tuple(X.shape)}. "
                         "Reshape it, e.g. X.reshape(-1, 1) for a single feature.")
    if len(centers.shape) != 2 or centers.shape[1] != X.shape[1] or centers.shape[0] == 0:
        raise InputError(f"centers must have shape (n_clusters, {X.shape[1]}) to match X; "
                         f"got shape {tuple(centers.shape)}.")
    if log_priors is not None and tuple(log_priors.shape) != (centers.shape[0],):
        raise InputError(f"log_priors must have shape ({centers.shape[0]},), one per center; "
                         f"got shape {tuple(log_priors.shape)}.")
    if sample_weight is not None and tuple(sample_weight.shape) != (X.shape[0],):
        raise InputError(f"sample_weight must have shape ({X.shape[0]},), one per row of X; "
                         f"got shape {tuple(sample_weight.shape)}.")


def _as_arrays(xp: Any, *arrays: Any) -> list[Array | None]:
    """Lists, NumPy arrays and numbers given with another library's arrays, as its arrays."""
    return [None if a is None else a if aa.is_array_api_obj(a) and aa.namespace(a) is xp
            else xp.asarray(a) for a in arrays]


def _common_float(xp: Any, X: Array, centers: Array) -> tuple[Array, Array]:
    """``X`` and ``centers`` in one real floating dtype (the wider of the two)."""
    X, centers = aa.floating(X, xp), aa.floating(centers, xp)
    dtype = xp.result_type(X.dtype, centers.dtype)
    return xp.astype(X, dtype), xp.astype(centers, dtype)


def free_energy(
    X: Array,
    centers: Array,
    temperature: Any,
    *,
    normalization: Normalization = "softmax",
    log_priors: Array | None = None,
    sample_weight: Array | None = None,
) -> Array:
    """The free energy ``F_T = -T sum_i log Z_i`` as a differentiable scalar of the input's library.

    ``Z_i = sum_k pi_k exp(-||x_i - c_k||^2 / T)``.  With a sparse
    normalisation the free energy is the regularised objective of
    :func:`.soft_statistics`, ``sum_i [sum_k p_ik (d_ik - T log pi_k) - T Omega(p_i)]``
    (``Omega`` the Tsallis or Gini entropy, see :func:`.kernels.normalize`).
    For every normalisation the gradient in the centers is
    ``dF/dc_k = 2 (N_k c_k - S_k)`` (the responsibilities maximise the
    regularised objective, so their own derivatives drop out).

    Written against the Python array API standard: NumPy, JAX, CuPy, PyTorch
    or ``array-api-strict`` arrays in, a 0-d array of the same library out,
    computed in the inputs' floating dtype on their device.  Every operation
    is one that automatic differentiation follows, and it runs under
    ``jax.jit``.

    Parameters
    ----------
    X : array of shape (n_samples, n_features)
        Data or an embedding; integer dtypes become the library's default float.
    centers : array of shape (n_clusters, n_features)
    temperature : float or 0-d array
        ``T > 0``.  A Python number is checked (and ``T = 0`` gives the
        k-means inertia, ``sum_i min_k d_ik``); an array is not, so that it
        can be traced, e.g. ``exp(log_T)`` to learn the temperature.
    normalization : {"softmax", "entmax15", "sparsemax"}, default="softmax"
    log_priors : array of shape (n_clusters,), optional
        ``log pi_k``; equal priors by default.
    sample_weight : array of shape (n_samples,), optional
        A row of weight ``w`` counts ``w`` times.

    Returns
    -------
    0-d array
        The library of ``X`` and ``centers`` (lists and NumPy arrays given
        with another library's arrays are converted to it).

    Examples
    --------
    >>> import numpy as np
    >>> from dask_softkmeans import free_energy
    >>> X = np.array([[0.0], [0.2], [5.0], [5.2]])
    >>> round(float(free_energy(X, np.array([[0.1], [5.1]]), 0.0)), 6)  # T = 0: the inertia
    0.04

    With JAX, ``jax.grad(free_energy, argnums=1)(X, centers, T)`` is
    ``2 (N_k c_k - S_k)``.
    """
    normalization = check_normalization(normalization)
    xp = aa.namespace(X, centers, log_priors, sample_weight, temperature)
    X, centers, log_priors, sample_weight = _as_arrays(xp, X, centers, log_priors, sample_weight)
    _check_shapes(X, centers, log_priors, sample_weight)
    X, centers = _common_float(xp, X, centers)
    if log_priors is not None:
        log_priors = xp.astype(log_priors, X.dtype)
    hard = False
    if isinstance(temperature, int | float | np.generic):
        temperature = check_temperature(temperature)
        hard = temperature == 0 or not math.isfinite(1.0 / temperature)
    if hard:
        rows = xp.min(aa.squared_distances(X, centers), axis=-1)
    else:
        rows = aa.row_free_energy(X, centers, temperature, log_priors=log_priors,
                                  normalization=normalization)
    if sample_weight is None:
        return xp.sum(rows)
    return xp.sum(xp.astype(sample_weight, rows.dtype) * rows)


def array_statistics(
    X: Array,
    centers: Array,
    temperature: float,
    *,
    log_priors: Array | None = None,
    sample_weight: Array | None = None,
    normalization: Normalization = "softmax",
) -> dict[str, Array]:
    """The fields of :class:`.SoftStatistics` for an in-memory array of any array-API library.

    What :func:`.soft_statistics` returns for JAX, CuPy, PyTorch or
    ``array-api-strict`` input: arrays of that library (scalars as 0-d
    arrays), summed in float64 where the library has it.  The parameters are
    those of :func:`.soft_statistics`; ``temperature`` must be a number.
    """
    normalization = check_normalization(normalization)
    temperature = check_temperature(temperature)
    xp = aa.namespace(X, centers, log_priors, sample_weight)
    X, centers, log_priors, sample_weight = _as_arrays(xp, X, centers, log_priors, sample_weight)
    _check_shapes(X, centers, log_priors, sample_weight)
    # As the NumPy path (check_log_priors, as_weights), before the pass.
    if log_priors is not None and bool(xp.any(xp.isnan(log_priors))):
        raise InputError(f"log_priors must have shape ({centers.shape[0]},) without NaN; it "
                         "holds NaN. Pass finite log-priors (or -inf for a prior of 0).")
    if sample_weight is not None:
        bad = int(xp.sum(xp.astype(~xp.isfinite(sample_weight) | (sample_weight < 0), xp.int32)))
        if bad:
            raise InputError(f"sample_weight must be finite and non-negative; found {bad} bad "
                             "values. Fix or drop those samples.")
    acc = aa.accumulation_dtype(xp, aa.device_of(X))
    centers = xp.astype(centers, acc)
    if X.shape[0] == 0:
        raise InputError("X has no rows: at least one sample is needed.")
    # Centering on the centers' mean keeps the products away from cancellation.
    offset = xp.mean(centers, axis=0)
    stats = aa.block_statistics(X, centers, temperature, offset=offset, log_priors=log_priors,
                                weights=sample_weight, normalization=normalization)
    if bool(stats.nonfinite > 0):
        raise InputError(
            f"X holds NaN or infinity in {int(stats.nonfinite)} rows. Remove or impute them "
            "first, e.g. X[xp.all(xp.isfinite(X), axis=1)].")
    sums = stats.sums + stats.counts[:, None] * offset
    return dict(
        counts=stats.counts,
        sums=sums,
        free_energy=stats.free_energy,
        entropy=stats.entropy,
        distortion=stats.distortion,
        inertia=stats.inertia,
        hard_counts=stats.hard_counts,
        gradient=2.0 * (stats.counts[:, None] * centers - sums),
        n_samples=stats.weight,
    )
