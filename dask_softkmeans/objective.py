"""The smooth objective over whole datasets: one pass, a fit at one temperature, the data's scan.

Each function here runs passes through :class:`.engine.Runner` and keeps only
``O(K D)`` numbers: the public :func:`soft_statistics` (the free energy, its
gradient and the sufficient statistics, for use inside larger models) and
:func:`fit_temperature` (EM or a gradient optimiser at one temperature), and
the passes the estimator builds on (:func:`summarize`, :func:`centered_statistics`,
:func:`online_step`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from ._typing import ArrayLike, Metric, Normalization
from .differentiable import array_statistics
from .engine import Runner
from .errors import InputError
from .geometry import sphere_half_critical, sphere_spread, unit
from .inputs import as_data, as_weights
from .kernels import BlockStats, PassParams, stats_layout, working_dtype
from .kernels.array_api import is_foreign_array
from .optim import Optimizer, get_optimizer
from .validation import (
    check_centers,
    check_log_priors,
    check_metric,
    check_normalization,
    check_positive,
    check_split_every,
    check_temperature,
    foreign_metric_error,
    nonfinite_error,
    zero_rows_error,
)

#: Above this many features the scan skips the D x D Gram matrix and the
#: largest covariance eigenvalue comes from power iteration instead.
GRAM_MAX_FEATURES = 1024


def run_pass(runner: Runner, params: PassParams) -> BlockStats:
    """One soft pass of ``runner`` with ``params``, unpacked; refused if rows were not finite
    (or, under ``metric="cosine"``, all zero)."""
    stats = stats_layout(*params.shape, params.moments).unpack(runner.statistics(params))
    if stats.nonfinite > 0:
        raise nonfinite_error(stats.nonfinite)
    if stats.zero_rows > 0:
        raise zero_rows_error(stats.zero_rows)
    return stats


def centered_statistics(runner: Runner, offset: np.ndarray,
                        metric: Metric = "euclidean") -> Callable[[PassParams], BlockStats]:
    """Passes of ``runner`` whose centers (and results) are relative to ``offset``: the
    annealing works in coordinates centered on the data mean (of the unit rows under
    ``metric="cosine"``, whose passes scale every row to unit length)."""

    def statistics(params: PassParams) -> BlockStats:
        return run_pass(runner, params.replace(
            centers=params.centers + offset, offset=offset, metric=metric))

    return statistics


class TemperatureFit(NamedTuple):
    """Result of :func:`fit_temperature`.

    Attributes
    ----------
    centers : ndarray of shape (K, D)
        The centers of the last pass.
    free_energy : float
        ``F_T`` at ``centers`` (for the chosen normalisation).
    n_iter : int
        Passes over the data.
    converged : bool
        Whether every center ended within ``sqrt(tol * scale)`` of its
        fixed point ``S_k / N_k``.
    history : list of dict
        Per pass: ``free_energy``, ``shift`` (largest squared distance of a
        center to ``S_k / N_k``), ``gradient_norm`` (of the mean objective).
    """

    centers: np.ndarray
    free_energy: float
    n_iter: int
    converged: bool
    history: list[dict]


def fit_temperature(
    X: ArrayLike,
    centers: ArrayLike,
    temperature: float,
    *,
    optimizer: str | Optimizer = "em",
    log_priors: ArrayLike | None = None,
    sample_weight: ArrayLike | None = None,
    normalization: Normalization = "softmax",
    tol: float = 1e-4,
    max_iter: int = 1000,
    split_every: int = 8,
    persist: bool | str = False,
    callback: Callable[[dict], None] | None = None,
) -> TemperatureFit:
    """Minimise the free energy ``F_T`` over the centers at one temperature.

    Every step is one pass over the data (a map over its row blocks and a
    tree reduction of ``N_k`` and ``S_k``), then the optimiser's update on
    the driver with the gradient of the mean objective
    ``g_k = 2 (N_k c_k - S_k) / W``.  ``optimizer="em"`` is the closed-form
    step ``c_k = S_k / N_k``, itself a gradient step of size ``W / (2 N_k)``;
    "gd", "momentum" and "adam" are gradient optimisers on the same
    gradient (see :mod:`dask_softkmeans.optim`).  All share the fixed points
    ``c_k = S_k / N_k``: the stopping test, the same for all of them, is that
    every center is within ``sqrt(tol * scale)`` of it, ``scale`` being ``T``
    (or, at ``T = 0``, the mean distortion per unit weight).  Priors stay as
    given.

    Parameters
    ----------
    X : array-like, Dask array, zarr.Array or path of shape (n_samples, n_features)
    centers : array-like of shape (n_clusters, n_features)
        Starting centers (not modified).
    temperature : float
        ``T >= 0``.
    optimizer : {"em", "gd", "momentum", "adam"} or Optimizer, default="em"
        A registry name (default hyperparameters) or an optimiser built with
        its factory, e.g. ``dask_softkmeans.optim.adam(learning_rate=0.1)``.
    log_priors : array-like of shape (n_clusters,), optional
        ``log pi_k``, held fixed; equal priors by default.
    sample_weight : array-like of shape (n_samples,), optional
    normalization : {"softmax", "entmax15", "sparsemax"}, default="softmax"
    tol : float, default=1e-4
    max_iter : int, default=1000
        Largest number of passes.
    split_every : int, default=8
    persist : bool or "auto", default=False
        Hold Dask data in (cluster) memory for the passes.
    callback : callable, optional
        Called with each pass's history record.

    Returns
    -------
    TemperatureFit

    Examples
    --------
    >>> import numpy as np
    >>> from dask_softkmeans import fit_temperature
    >>> X = np.array([[0.0], [0.2], [5.0], [5.2]])
    >>> fit = fit_temperature(X, [[1.0], [4.0]], 0.01, optimizer="momentum")
    >>> fit.centers.round(3).ravel().tolist(), fit.converged
    ([0.1, 5.1], True)
    """
    data = as_data(X)
    weights = as_weights(sample_weight, data)
    centers = check_centers(centers, data.shape[1]).copy()
    temperature = check_temperature(temperature)
    normalization = check_normalization(normalization)
    optimizer = get_optimizer(optimizer)
    tol = check_positive("tol", tol)
    max_iter = check_positive("max_iter", max_iter, integer=True)
    log_priors = check_log_priors(log_priors, centers.shape[0])
    runner = Runner(data, weights, split_every=check_split_every(split_every), persist=persist)
    # A fixed origin near the data keeps the distance products away from cancellation.
    offset = centers.mean(axis=0)
    state = optimizer.init(centers)
    history: list[dict] = []
    converged = False
    for _ in range(max_iter):
        stats = run_pass(runner, PassParams(centers, temperature, offset=offset,
                                            log_priors=log_priors, normalization=normalization))
        total = float(stats.weight)
        fractions = stats.counts / total
        sums = stats.sums + stats.counts[:, None] * offset
        gradient = 2.0 * (fractions[:, None] * centers - sums / total)
        alive = stats.counts > 1e-12 * total
        targets = sums[alive] / stats.counts[alive, None]
        shift = float(np.max(np.sum((targets - centers[alive]) ** 2, axis=1), initial=0.0))
        record = {"free_energy": float(stats.free_energy), "shift": shift,
                  "gradient_norm": float(np.linalg.norm(gradient))}
        history.append(record)
        if callback is not None:
            callback(record)
        scale = temperature if temperature > 0 else float(stats.distortion) / total
        if shift <= tol * scale:
            converged = True
            break
        step, state = optimizer.update(gradient, state, counts=fractions)
        centers = centers + step
    return TemperatureFit(centers, history[-1]["free_energy"], len(history), converged, history)


class SoftStatistics(NamedTuple):
    """Statistics of one soft pass over the data, in the data's coordinates.

    Attributes
    ----------
    counts : ndarray of shape (K,)
        Soft counts ``N_k = sum_i w_i p_ik``.
    sums : ndarray of shape (K, D)
        Soft sums ``S_k = sum_i w_i p_ik x_i``.
    free_energy : float
        ``F_T = -T sum_i w_i log Z_i`` (the inertia at ``T = 0``).
    entropy : float
        ``H = -sum_ik w_i p_ik log p_ik``.
    distortion : float
        ``D = sum_ik w_i p_ik d_ik``.
    inertia : float
        Hard k-means objective ``J = sum_i w_i min_k d_ik``.
    hard_counts : ndarray of shape (K,)
        Weight of the points whose nearest center is ``k``.
    gradient : ndarray of shape (K, D)
        ``dF/dc_k = 2 (N_k c_k - S_k)``.
    n_samples : float
        Total weight (the number of samples when unweighted).
    """

    counts: np.ndarray
    sums: np.ndarray
    free_energy: float
    entropy: float
    distortion: float
    inertia: float
    hard_counts: np.ndarray
    gradient: np.ndarray
    n_samples: float


def soft_statistics(
    X: ArrayLike,
    centers: ArrayLike,
    temperature: float,
    *,
    log_priors: ArrayLike | None = None,
    sample_weight: ArrayLike | None = None,
    split_every: int = 8,
    normalization: Normalization = "softmax",
    metric: Metric = "euclidean",
) -> SoftStatistics:
    """One soft pass: the smooth objective, its gradient and the sufficient statistics.

    This is the pass the annealed fit repeats, made public so that the
    objective can be used inside a larger model.  For a Dask or Zarr ``X``
    the kernel is mapped over the row blocks and the statistics are
    tree-reduced in float64 on the active scheduler; only ``O(K D)`` numbers
    reach the caller.  An in-memory array of another array-API library (JAX,
    CuPy, PyTorch, ``array-api-strict``) is computed by the array-API
    reference in that library, and every field comes back as its arrays
    (scalars 0-d), see :func:`.differentiable.array_statistics`.

    Parameters
    ----------
    X : array-like, Dask array, zarr.Array or path of shape (n_samples, n_features)
    centers : array-like of shape (n_clusters, n_features)
    temperature : float
        ``T >= 0``; ``T = 0`` gives the hard k-means statistics.
    log_priors : array-like of shape (n_clusters,), optional
        ``log pi_k``; equal priors by default.
    sample_weight : array-like of shape (n_samples,), optional
    split_every : int, default=8
        Inputs per node of the tree reduction.
    normalization : {"softmax", "entmax15", "sparsemax"}, default="softmax"
        "softmax" is the Gaussian RBF layer; the sparse ones give exact zeros
        at low temperatures.  For those, ``free_energy`` is
        ``sum_i [sum_k p_ik (d_ik - T log pi_k) - T Omega(p_i)]`` and ``entropy``
        the sum of the regulariser ``Omega`` (see :func:`.kernels.normalize`);
        ``gradient`` is still its exact derivative ``2 (N_k c_k - S_k)``.
    metric : {"euclidean", "cosine"}, default="euclidean"
        "cosine": the von Mises-Fisher mixture of concentration ``2 / T``.
        The rows are scaled to unit length inside each block task (``X`` is
        never modified; a row of zeros is an error) and ``centers`` to unit
        length here, so that ``d_ik = ||x_i/||x_i|| - c_k||^2 = 2 - 2 cos(x_i, c_k)``
        in every statistic: ``counts``, ``sums`` (of the unit rows),
        ``free_energy``, ``distortion`` and ``inertia`` (twice the sum of the
        cosine distances ``1 - cos``).  ``gradient`` is then the Riemannian
        gradient on the sphere, ``2 (N_k c_k - S_k)`` projected on the plane
        tangent at ``c_k``: ``-2 (S_k - (S_k . c_k) c_k)``, zero at the mean
        direction ``c_k = S_k / ||S_k||``.

    Returns
    -------
    SoftStatistics

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0.0, 0.0], [0.0, 1.0], [10.0, 0.0]])
    >>> stats = soft_statistics(X, [[0.0, 0.5], [10.0, 0.0]], temperature=0.0)
    >>> stats.counts.tolist(), round(stats.inertia, 3)
    ([2.0, 1.0], 0.5)
    """
    if is_foreign_array(X):
        if check_metric(metric) != "euclidean":
            raise foreign_metric_error(metric, X)
        return SoftStatistics(**array_statistics(
            X, centers, temperature, log_priors=log_priors, sample_weight=sample_weight,
            normalization=normalization))
    data = as_data(X)
    weights = as_weights(sample_weight, data)
    centers = check_centers(centers, data.shape[1])
    temperature = check_temperature(temperature)
    normalization = check_normalization(normalization)
    metric = check_metric(metric)
    log_priors = check_log_priors(log_priors, centers.shape[0])
    if metric == "cosine":
        if not np.all(np.linalg.norm(centers, axis=1) > 0):
            raise InputError("centers contain a zero vector, which has no direction for "
                             "metric='cosine'. Give every center a nonzero entry.")
        centers = unit(centers)
    runner = Runner(data, weights, split_every=check_split_every(split_every))
    # Centering on the centers' mean keeps the products away from cancellation.
    offset = centers.mean(axis=0)
    stats = run_pass(runner, PassParams(centers, temperature, offset=offset,
                                        log_priors=log_priors, normalization=normalization,
                                        metric=metric))
    sums = stats.sums + stats.counts[:, None] * offset
    gradient = 2.0 * (stats.counts[:, None] * centers - sums)
    if metric == "cosine":
        gradient -= centers * np.einsum("kd,kd->k", gradient, centers)[:, None]
    return SoftStatistics(
        counts=stats.counts.copy(),
        sums=sums,
        free_energy=float(stats.free_energy),
        entropy=float(stats.entropy),
        distortion=float(stats.distortion),
        inertia=float(stats.inertia),
        hard_counts=stats.hard_counts.copy(),
        gradient=gradient,
        n_samples=float(stats.weight),
    )



class DataSummary(NamedTuple):
    """What the first pass over the data tells the annealing."""

    offset: np.ndarray  #: (D,) the weighted mean: the origin of the centered coordinates
    top_variance: float  #: the largest eigenvalue of the covariance
    top_axis: np.ndarray  #: (D,) its unit eigenvector
    total_weight: float  #: the number of samples, or their total weight


def summarize(runner: Runner, n_clusters: int, metric: Metric = "euclidean") -> DataSummary:
    """First pass: mean, largest covariance eigenvalue and its axis, total weight.

    Non-finite values (and bad weights) are found here, inside the pass, not
    by an extra one; data that cannot be split into ``n_clusters`` clusters
    are refused with the reason.  Under ``metric="cosine"`` the pass is over
    the rows scaled to unit length (rows of zeros are counted in it and
    refused), ``offset`` is the mean ``m`` of the unit rows, and
    ``top_variance`` is half the first critical temperature on the sphere,
    ``lambda_max(P Sigma P) / ||m||`` (see :func:`.geometry.sphere_spread`),
    with ``top_axis`` orthogonal to the mean direction.
    """
    origin = runner.first_row()
    if metric == "cosine":
        origin = unit(origin)  # any point near the data keeps the sums from cancelling
    n_features = runner.n_features
    gram = n_features <= GRAM_MAX_FEATURES
    scan = runner.scan(origin, gram=gram, metric=metric)
    total_weight = float(scan.weight)
    if scan.nonfinite:
        raise nonfinite_error(scan.nonfinite, what="Input X", extra=(
            " (or sample_weight a non-finite or negative weight)"))
    if scan.zero_rows:
        raise zero_rows_error(scan.zero_rows, what="Input X")
    if total_weight <= 0:
        raise InputError("sample_weight sums to zero: at least one sample needs a positive weight.")
    mean_rel = scan.sums / total_weight
    offset = origin + mean_rel
    if gram:
        with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported below
            cov = scan.gram / total_weight - np.outer(mean_rel, mean_rel)
        # Squared distances reach ~4 trace(cov); they must fit the working dtype.
        limit = np.finfo(working_dtype(runner.dtype)).max / 16
        if not np.all(np.isfinite(cov)) or np.trace(cov) > limit:
            raise InputError(
                "The values of X are so large that squared distances overflow. "
                "Rescale X, e.g. divide it by its largest absolute value.")
        if metric == "cosine":
            top_variance, top_axis = sphere_spread(cov, offset)
        else:
            values, vectors = np.linalg.eigh(cov)
            top_variance, top_axis = float(max(values[-1], 0.0)), vectors[:, -1]
    elif metric == "cosine":
        # The top eigenvector of P Sigma P, P the projector off the mean direction.
        normal = unit(offset)
        value, top_axis = power_iteration(runner, offset, metric=metric, normal=normal)
        resultant = float(np.linalg.norm(offset))
        top_variance = float(sphere_half_critical(np.array([value]), np.array([resultant]))[0])
    else:
        top_variance, top_axis = power_iteration(runner, offset)
    if metric == "cosine" and top_variance <= (8.0 * np.finfo(working_dtype(runner.dtype)).eps) ** 2:
        # Unit rows are rounded to the working precision: a spread of that order is
        # rows pointing the same way (positive multiples of one row), not structure.
        top_variance = 0.0
    if top_variance == 0.0 and n_clusters > 1:
        # Every row equals the first: no temperature splits the one cluster.
        same, rows = (("points in the same direction", "rows that are positive multiples of one "
                       "another") if metric == "cosine" else ("is the same point",
                                                              "all-duplicate rows"))
        raise InputError(
            f"Every sample of X (with positive weight) {same}: constant data or "
            f"{rows} cannot be split into n_clusters={n_clusters} clusters. "
            "Check the data (constant columns are fine, identical rows are not), or use "
            "n_clusters=1.")
    return DataSummary(offset, top_variance, top_axis, total_weight)


def power_iteration(runner: Runner, offset: np.ndarray, passes: int = 20, *,
                    metric: Metric = "euclidean",
                    normal: np.ndarray | None = None) -> tuple[float, np.ndarray]:
    """Largest covariance eigenvalue and its axis by power iteration, one pass per step.

    With a unit ``normal``, of the covariance restricted to the hyperplane
    orthogonal to it (``P Sigma P``, ``P = I - n n^T``).
    """
    axis = np.random.default_rng(0).standard_normal(runner.n_features)
    if normal is not None:
        axis -= normal * (normal @ axis)
    axis /= np.linalg.norm(axis)
    value = new_value = 0.0
    for _ in range(passes):
        stats = run_pass(runner, PassParams(offset[None, :], 1.0, offset=offset, moments="power",
                                            directions=axis[None, :], metric=metric))
        product = stats.moments[0] / stats.counts[0]
        if normal is not None:
            product -= normal * (normal @ product)
        new_value = float(product @ axis)
        axis = product / max(np.linalg.norm(product), 1e-300)
        if abs(new_value - value) <= 1e-4 * new_value:
            break
        value = new_value
    return max(new_value, 0.0), axis


def online_step(centers: np.ndarray, running_counts: np.ndarray, counts: np.ndarray,
                sums: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One batch of online k-means: new centers and running counts (nothing modified in place).

    With the batch's soft counts ``N_k^b`` and sums ``S_k^b`` and the running
    counts ``n_k <- n_k + N_k^b``,
    ``c_k <- c_k + (N_k^b / n_k) (S_k^b / N_k^b - c_k) = c_k - g_k^b / (2 n_k)``:
    a gradient step on the batch's free energy with the per-center step size
    ``1 / (2 n_k)`` (MacQueen's rule; each center is the running mean of the
    points assigned to it).
    """
    running = running_counts + counts
    fresh = counts > 0
    step = np.zeros_like(counts)
    seen = running > 0
    step[seen] = counts[seen] / running[seen]
    new = centers.copy()
    new[fresh] += step[fresh, None] * (sums[fresh] / counts[fresh, None] - new[fresh])
    return new, running
