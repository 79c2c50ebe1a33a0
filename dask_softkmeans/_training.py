"""Gradient training over NumPy or Dask data: one tree-reduced pass per step.

Dask orchestration like :mod:`._engine` (whose :class:`._engine.Runner` runs
every pass): the per-block mathematics is in :mod:`._kernels`, the update
rules in :mod:`._optim`, and the loops here keep only ``O(K D)`` numbers on
the driver.

- :func:`fit_temperature`: the centers at one fixed temperature, by EM or by
  any gradient optimiser on the reduced gradient ``2 (N_k c_k - S_k)``.
- :func:`rbf_normal_equations` and :func:`rbf_objective`: the passes of the
  RBF network (closed-form read-out; loss, free energy and their gradients).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from . import _kernels
from ._data import ArrayLike, as_data, as_weights
from ._engine import Runner, _check_centers, _statistics_task, check_normalization, check_temperature
from ._kernels import Normalization, RBFBlock, RBFLayout, RBFTask, StatsLayout
from .errors import InputError
from .optim import Optimizer, get_optimizer


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
    centers = _check_centers(centers, data.shape[1]).copy()
    temperature = check_temperature(temperature)
    normalization = check_normalization(normalization)
    optimizer = get_optimizer(optimizer)
    if not (np.isfinite(tol) and tol > 0):
        raise InputError(f"tol must be a finite number > 0; got {tol!r}.")
    if int(max_iter) < 1:
        raise InputError(f"max_iter must be an int >= 1; got {max_iter!r}.")
    if log_priors is not None:
        log_priors = np.asarray(log_priors, np.float64)
        if log_priors.shape != (centers.shape[0],) or np.any(np.isnan(log_priors)):
            raise InputError(
                f"log_priors must have shape ({centers.shape[0]},) without NaN; "
                f"got shape {log_priors.shape}.")
    runner = Runner(data, weights, split_every=split_every, persist=persist)
    layout = StatsLayout(*centers.shape)
    # A fixed origin near the data keeps the distance products away from cancellation.
    offset = centers.mean(axis=0)
    state = optimizer.init(centers)
    history: list[dict] = []
    converged = False
    for _ in range(int(max_iter)):
        stats = layout.unpack(runner.reduce(_statistics_task, {
            "centers": centers, "temperature": temperature, "offset": offset,
            "log_priors": log_priors, "normalization": normalization,
        }))
        if stats.nonfinite > 0:
            raise InputError(
                f"X contains NaN or infinity in {int(stats.nonfinite)} rows. Drop or impute "
                "them first, e.g. X[np.isfinite(X).all(axis=1)].")
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


# -- the RBF network's passes ---------------------------------------------------


def _check_block(x: np.ndarray) -> None:
    if not np.all(np.isfinite(x)):
        raise InputError(
            "X contains NaN or infinity. Drop or impute those rows first, "
            "e.g. X[np.isfinite(X).all(axis=1)].")


def output_block(x: np.ndarray, **kwargs: Any) -> np.ndarray:
    """Network outputs of one block (see :func:`._kernels.rbf_outputs`), for ``map_rows``."""
    _check_block(x)
    return _kernels.rbf_outputs(x, **kwargs)


def hidden_block(x: np.ndarray, **kwargs: Any) -> np.ndarray:
    """Hidden activations of one block (see :func:`._kernels.responsibilities`)."""
    _check_block(x)
    return _kernels.responsibilities(x, **kwargs)


def _normal_task(x: np.ndarray, side: np.ndarray, params: dict[str, Any]) -> np.ndarray:
    _check_block(x)
    return _kernels.rbf_normal_block(x, side, **params)


def _gradient_task(x: np.ndarray, side: np.ndarray, params: dict[str, Any]) -> np.ndarray:
    _check_block(x)
    return _kernels.rbf_gradient_block(x, side, **params)


class NormalEquations(NamedTuple):
    """Tree-reduced ``H1^T W H1`` and ``H1^T W Y`` (``H1 = [H, 1]``) and the total weight."""

    gram: np.ndarray  # (K + 1, K + 1)
    cross: np.ndarray  # (K + 1, M)
    weight: float


def rbf_normal_equations(
    runner: Runner,
    centers: np.ndarray,
    temperature: float,
    *,
    offset: np.ndarray,
    n_outputs: int,
    normalization: Normalization,
    n_classes: int = 0,
) -> NormalEquations:
    """One pass: the normal equations of the linear read-out on the hidden layer.

    ``runner`` carries the per-row side array ``[w, y_1 .. y_M]`` (or
    ``[w, class]`` with ``n_classes = M``, for one-hot targets) in its weight
    slot (see :meth:`._engine.Runner.reduce`).
    """
    k = centers.shape[0]
    vector = runner.reduce(_normal_task, {
        "centers": centers, "temperature": temperature, "offset": offset,
        "normalization": normalization, "n_classes": n_classes})
    gram = vector[1 : 1 + (k + 1) ** 2].reshape(k + 1, k + 1)
    cross = vector[1 + (k + 1) ** 2 :].reshape(k + 1, n_outputs)
    return NormalEquations(gram, cross, float(vector[0]))


def solve_ridge(equations: NormalEquations, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Read-out weights (K, M) and bias (M,) minimising ``sum w ||h W + b - y||^2 + alpha ||W||^2``."""
    k = equations.gram.shape[0] - 1
    penalty = np.full(k + 1, float(alpha))
    penalty[-1] = 0.0  # the bias is not penalised
    a = equations.gram + np.diag(penalty)
    try:
        solution = np.linalg.solve(a, equations.cross)
    except np.linalg.LinAlgError:
        solution = np.linalg.lstsq(a, equations.cross, rcond=None)[0]
    return solution[:k], solution[k]


def rbf_objective(
    runner: Runner,
    centers: np.ndarray,
    readout: np.ndarray,
    bias: np.ndarray,
    temperature: float,
    *,
    offset: np.ndarray,
    task: RBFTask,
    normalization: Normalization,
) -> RBFBlock:
    """One pass: supervised loss, unsupervised term and their gradients, summed over rows."""
    layout = RBFLayout(centers.shape[0], centers.shape[1], readout.shape[1])
    vector = runner.reduce(_gradient_task, {
        "centers": centers, "readout": readout, "bias": bias, "temperature": temperature,
        "offset": offset, "task": task, "normalization": normalization})
    return layout.unpack(vector)
