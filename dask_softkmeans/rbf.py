"""Normalised RBF networks whose hidden layer is the soft k-means layer.

The responsibilities ``p_ik`` at a temperature ``T`` are a normalised
Gaussian RBF layer (width ``sigma^2 = T / 2``), so clustering and a
downstream linear model are one network:

    h_i = normalize(-||x_i - c_k||^2 / T)     (softmax, entmax15 or sparsemax)
    o_i = h_i W + b

Training, over NumPy or Dask data, one tree-reduced pass per step:

1. the centers come from an annealed :class:`~dask_softkmeans.SoftKMeans`
   fit, and ``T`` (by default) is the mean squared distance of the data to
   their nearest center;
2. the read-out ``(W, b)`` solves the ridge normal equations
   ``(H1^T H1 + alpha I') [W; b] = H1^T Y`` (``H1 = [H, 1]``), whose
   ``(K+1)^2`` and ``(K+1) M`` sums are tree-reduced over the row blocks;
3. optionally (``training="readout"`` or ``"joint"``), gradient descent on

       (1/W_tot) sum_i w_i [ l_i + lambda (f_i / T + (D/2) log T) ] + alpha ||W||^2 / (2 W_tot)

   with ``l_i`` the squared error (regression, on standardised targets) or
   the cross-entropy of ``softmax(o_i)`` (classification), and
   ``f_i = sum_k p_ik d_ik - T Omega(p_i)`` the free energy of the row
   (``-T log sum_k exp(-d_ik / T)`` for softmax).  ``f_i / T + (D/2) log T``
   is the negative log-likelihood, up to constants, of an equal-weight
   Gaussian mixture of variance ``T / 2``: its center gradient is the
   clustering gradient ``2 (N_k c_k - S_k) / T``, and its ``(D/2) log T`` term
   keeps a learned temperature finite (``F_T`` alone falls as ``T`` rises).
   "readout" trains ``(W, b)`` with the centers fixed; "joint" trains the
   centers too, and ``log T`` with ``learn_temperature=True``.
"""

from __future__ import annotations

import os
import warnings
from numbers import Integral, Real
from typing import Any

import dask
import dask.array as da
import numpy as np
import zarr
from sklearn.base import (
    BaseEstimator,
    ClassifierMixin,
    RegressorMixin,
    TransformerMixin,
    _fit_context,
)
from sklearn.exceptions import DataConversionWarning
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from ._typing import ArrayLike
from .engine import Runner, map_rows
from .errors import InputError
from .estimator import SoftKMeans
from .inputs import as_data, as_weights
from .kernels.predict import outputs_block, proba_block
from .optim import OPTIMIZERS, get_optimizer
from .rbf_training import rbf_normal_equations, rbf_objective, solve_ridge
from .validation import NORMALIZATIONS


def _class_index(labels: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Position of each label in the sorted ``classes`` (one Dask block)."""
    return np.searchsorted(classes, labels)


class _RBFNetwork(BaseEstimator):
    """Shared fit and forward pass of the RBF estimators (see the module docstring)."""

    _task: str = "regression"

    _parameter_constraints: dict = {
        "n_centers": [Interval(Integral, 1, None, closed="left")],
        "temperature": [StrOptions({"auto"}), Interval(Real, 0, None, closed="neither")],
        "normalization": [StrOptions(set(NORMALIZATIONS))],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "training": [StrOptions({"ridge", "readout", "joint"})],
        "learn_temperature": ["boolean"],
        "free_energy_weight": [Interval(Real, 0, None, closed="left")],
        "optimizer": [StrOptions(set(OPTIMIZERS) - {"em"})],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "clustering": [dict, None],
        "persist": [StrOptions({"auto"}), "boolean"],
        "split_every": [Interval(Integral, 2, None, closed="left")],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        n_centers: int = 32,
        *,
        temperature: float | str = "auto",
        normalization: str = "softmax",
        alpha: float = 1e-3,
        training: str = "ridge",
        learn_temperature: bool = False,
        free_energy_weight: float = 0.01,
        optimizer: str = "adam",
        learning_rate: float = 0.01,
        max_iter: int = 300,
        tol: float = 1e-6,
        n_iter_no_change: int = 20,
        clustering: dict | None = None,
        persist: bool | str = "auto",
        split_every: int = 8,
        verbose: int = 0,
    ) -> None:
        self.n_centers = n_centers
        self.temperature = temperature
        self.normalization = normalization
        self.alpha = alpha
        self.training = training
        self.learn_temperature = learn_temperature
        self.free_energy_weight = free_energy_weight
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.max_iter = max_iter
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.clustering = clustering
        self.persist = persist
        self.split_every = split_every
        self.verbose = verbose

    # -- input ----------------------------------------------------------------
    def _data(self, X: ArrayLike, *, reset: bool) -> np.ndarray | da.Array:
        if isinstance(X, (da.Array, zarr.Array, str, os.PathLike)):
            data = as_data(X)
            if reset:
                self.n_features_in_ = data.shape[1]
        else:
            shape = getattr(X, "shape", None)
            if not reset and shape is not None and len(shape) == 2 and shape[1] != self.n_features_in_:
                raise InputError(
                    f"X has {shape[1]} features, but {type(self).__name__} is expecting "
                    f"{self.n_features_in_} features as input.")
            data = as_data(validate_data(
                self, X, reset=reset, dtype=[np.float64, np.float32], accept_sparse=False))
        if not reset and data.shape[1] != self.n_features_in_:
            raise InputError(
                f"X has {data.shape[1]} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input.")
        return data

    def _targets(self, y: Any, data: np.ndarray | da.Array) -> np.ndarray | da.Array:
        """Targets as a float 2-D array with the rows of ``data`` (class indices for classifiers)."""
        raise NotImplementedError

    # -- fit ------------------------------------------------------------------
    def _fit(self, X: ArrayLike, y: Any, sample_weight: ArrayLike | None) -> None:
        if self.learn_temperature and self.training != "joint":
            raise InputError(
                "learn_temperature=True needs training='joint' (the temperature is "
                f"trained with the centers); got training={self.training!r}.")
        if y is None:
            raise InputError(
                f"{type(self).__name__} requires y to be passed, but the target y is None.")
        reserved = sorted({"n_clusters", "compute_labels"} & set(self.clustering or {}))
        if reserved:
            raise InputError(
                f"clustering={self.clustering!r} sets {', '.join(reserved)}, which the network "
                "sets itself: give the number of centers as n_centers and drop these keys.")
        data = self._data(X, reset=True)
        n_samples = data.shape[0]
        if n_samples < self.n_centers:
            raise InputError(
                f"n_samples={n_samples} should be >= n_centers={self.n_centers}. "
                f"Use n_centers <= {n_samples}, or pass more samples.")
        if not isinstance(y, da.Array) and not isinstance(data, da.Array):
            y = np.asarray(y)
        if y.shape[0] != n_samples:
            raise InputError(
                f"y has {y.shape[0]} rows but X has {n_samples}: they need one target per sample.")
        weights = as_weights(sample_weight, data)
        targets = self._targets(y, data)
        unit = np.ones(n_samples) if weights is None else weights
        if isinstance(data, da.Array):
            unit = da.asarray(unit).rechunk((data.chunks[0],))
            targets = da.asarray(targets).rechunk((data.chunks[0], targets.shape[1]))
            side = da.concatenate([unit[:, None], targets], axis=1).astype(np.float64)
            side = side.rechunk({1: side.shape[1]})  # one block per row block of X
        else:
            side = np.column_stack([unit, targets]).astype(np.float64)

        clustering = {"compute_labels": False, "persist": self.persist,
                      "split_every": self.split_every, **(self.clustering or {})}
        self.clustering_ = SoftKMeans(n_clusters=self.n_centers, **clustering).fit(
            data, sample_weight=weights)
        centers = self.clustering_.cluster_centers_.copy()
        total_weight = float(n_samples if weights is None else dask.compute(weights.sum())[0])
        if self.temperature == "auto":
            temperature = max(self.clustering_.inertia_ / total_weight, np.finfo(float).tiny)
        else:
            temperature = float(self.temperature)
        self._offset = centers.mean(axis=0)
        runner = Runner(data, side, split_every=self.split_every, persist=self.persist)
        n_outputs = self._n_outputs
        equations = rbf_normal_equations(
            runner, centers, temperature, offset=self._offset, n_outputs=n_outputs,
            normalization=self.normalization,
            n_classes=n_outputs if self._task == "classification" else 0)
        readout, bias = solve_ridge(equations, self.alpha)
        self.history_: list[dict] = []
        if self.training != "ridge":
            centers, readout, bias, temperature = self._descend(
                runner, centers, readout, bias, temperature)
        self.centers_ = centers
        self.temperature_ = float(temperature)
        self._readout, self._bias = readout, bias
        self.n_iter_ = 1 + len(self.history_)

    def _descend(
        self, runner: Runner, centers: np.ndarray, readout: np.ndarray, bias: np.ndarray,
        temperature: float,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        """Gradient descent from the ridge solution; returns the best parameters seen."""
        shapes = [centers.shape, readout.shape, bias.shape, ()]
        sizes = [int(np.prod(s, dtype=int)) for s in shapes]

        def unflatten(theta: np.ndarray) -> list[np.ndarray]:
            parts = np.split(theta, np.cumsum(sizes)[:-1])
            return [p.reshape(s) for p, s in zip(parts, shapes, strict=True)]

        theta = np.concatenate([centers.ravel(), readout.ravel(), bias.ravel(),
                                [np.log(temperature)]])
        train_centers = self.training == "joint"
        optimizer = get_optimizer(self.optimizer, learning_rate=self.learning_rate)
        state = optimizer.init(theta)
        lam = self.free_energy_weight
        best, best_theta, stale = np.inf, theta, 0
        for _ in range(self.max_iter):
            c, w_out, b, log_t = unflatten(theta)
            t = float(np.exp(log_t))
            blk = rbf_objective(
                runner, c, w_out, b, t, offset=self._offset, task=self._task,
                normalization=self.normalization)
            total = float(blk.weight)
            ridge = 0.5 * self.alpha * float(np.sum(w_out * w_out))
            objective = (float(blk.loss) + lam * float(blk.unsupervised) + ridge) / total
            record = {"objective": objective, "loss": float(blk.loss) / total,
                      "free_energy": float(blk.unsupervised) / total, "temperature": t}
            if self._task == "classification":
                record["accuracy"] = float(blk.correct) / total
            self.history_.append(record)
            if self.verbose:
                print(f"[{type(self).__name__}] " + " ".join(
                    f"{k}={v:.6g}" for k, v in record.items()))
            if objective < best - self.tol * abs(best if np.isfinite(best) else objective):
                best, best_theta, stale = objective, theta, 0
            else:
                stale += 1
                if stale >= self.n_iter_no_change:
                    break
            grad_c = (blk.centers_loss + lam * blk.centers_unsupervised) / total
            grad_w = (blk.readout + self.alpha * w_out) / total
            grad_b = blk.bias / total
            grad_t = (blk.log_temperature_loss + lam * blk.log_temperature_unsupervised) / total
            gradient = np.concatenate([
                grad_c.ravel() if train_centers else np.zeros(sizes[0]),
                grad_w.ravel(), grad_b.ravel(),
                [float(grad_t) if self.learn_temperature else 0.0]])
            step, state = optimizer.update(gradient, state)
            theta = theta + step
        c, w_out, b, log_t = unflatten(best_theta)
        return c, w_out, b, float(np.exp(log_t))

    # -- forward pass -----------------------------------------------------------
    def _outputs(self, X: ArrayLike) -> np.ndarray | da.Array:
        check_is_fitted(self)
        data = self._data(X, reset=False)
        return map_rows(
            data, outputs_block, n_outputs=self._readout.shape[1], dtype=np.float64,
            centers=self.centers_, temperature=self.temperature_, offset=self._offset,
            normalization=self.normalization, readout=self._readout, bias=self._bias)

    def transform(self, X: ArrayLike) -> np.ndarray | da.Array:
        """The hidden layer: normalised RBF activations, shape (n_samples, n_centers)."""
        check_is_fitted(self)
        data = self._data(X, reset=False)
        return map_rows(
            data, proba_block, n_outputs=self.n_centers, dtype=np.float64,
            centers=self.centers_, temperature=self.temperature_, offset=self._offset,
            normalization=self.normalization)


_PARAMETERS_DOC = """
    Parameters
    ----------
    n_centers : int, default=32
        Hidden units K (clusters of the annealed fit).
    temperature : "auto" or float, default="auto"
        ``T`` of the hidden layer (RBF width ``sigma^2 = T / 2``); "auto" is
        the mean squared distance of the training data to their nearest center.
    normalization : {"softmax", "entmax15", "sparsemax"}, default="softmax"
        "softmax" is the Gaussian RBF layer; the sparse ones give exact zeros.
    alpha : float, default=1e-3
        Ridge penalty ``alpha ||W||^2`` on the read-out weights (not the bias).
    training : {"ridge", "readout", "joint"}, default="ridge"
        "ridge": closed-form read-out on the clustered centers.  "readout":
        then gradient descent on the read-out alone.  "joint": gradient
        descent on the centers and the read-out together.
    learn_temperature : bool, default=False
        With ``training="joint"``, also train ``log T``.
    free_energy_weight : float, default=0.01
        ``lambda``, the weight of the free-energy term (in units of ``T``,
        plus ``(D/2) log T``) in the training objective.
    optimizer : {"adam", "momentum", "gd"}, default="adam"
        Gradient optimiser of :mod:`dask_softkmeans.optim` (one pass per step).
    learning_rate : float, default=0.01
    max_iter : int, default=300
        Largest number of gradient passes.
    tol : float, default=1e-6
        A pass improves when the objective falls by more than ``tol`` times
        its best value; training stops after ``n_iter_no_change`` passes
        without improvement and keeps the best parameters seen.
    n_iter_no_change : int, default=20
    clustering : dict, optional
        Parameters of the :class:`~dask_softkmeans.SoftKMeans` that places the
        centers (``n_clusters`` is ``n_centers``).
    persist : "auto" or bool, default="auto"
        Hold Dask or Zarr data in (cluster) memory for the passes.
    split_every : int, default=8
        Inputs per node of the tree reductions.
    verbose : int, default=0
        Print one line per gradient pass when positive.

    Attributes
    ----------
    centers_ : ndarray of shape (n_centers, n_features)
    temperature_ : float
    clustering_ : SoftKMeans
        The annealed fit that placed the starting centers.
    n_iter_ : int
        Passes over the data after the clustering: one for the normal
        equations, plus one per gradient step (none with ``training="ridge"``).
    history_ : list of dict
        Per gradient pass: objective, loss, free_energy (the unsupervised
        term per unit weight), temperature (and accuracy for classifiers).
    n_features_in_ : int
"""


class RBFNetworkRegressor(RegressorMixin, TransformerMixin, _RBFNetwork):
    __doc__ = """Normalised RBF network regressor on soft k-means centers (NumPy, Dask, Zarr).

    The hidden layer is the soft k-means responsibility layer at temperature
    ``T``; the linear read-out is fitted by tree-reduced ridge normal
    equations, and optionally trained jointly with the centers (see
    :mod:`dask_softkmeans.rbf`).  Targets are standardised for training;
    ``coef_`` and ``intercept_`` are in their units.
""" + _PARAMETERS_DOC + """    coef_ : ndarray of shape (n_centers,) or (n_centers, n_outputs)
    intercept_ : float or ndarray of shape (n_outputs,)

    Examples
    --------
    >>> import numpy as np
    >>> from dask_softkmeans.rbf import RBFNetworkRegressor
    >>> X = np.linspace(0, 6, 200)[:, None]
    >>> model = RBFNetworkRegressor(n_centers=12).fit(X, np.sin(X[:, 0]))
    >>> bool(model.score(X, np.sin(X[:, 0])) > 0.99)
    True
    """

    _task = "regression"

    def _targets(self, y: Any, data: np.ndarray | da.Array) -> np.ndarray | da.Array:
        if not isinstance(y, da.Array):
            try:
                y = np.asarray(y, dtype=np.float64)
            except (TypeError, ValueError) as exc:
                raise InputError(f"y must hold numbers for regression ({exc}).") from exc
            if not np.all(np.isfinite(y)):
                raise InputError("y contains NaN or infinity; every target must be finite.")
        self._single_output = y.ndim == 1
        y2 = y[:, None] if y.ndim == 1 else y
        if y2.ndim != 2:
            raise InputError(f"y must be 1-D or 2-D; got shape {tuple(y.shape)}.")
        mean, scale = dask.compute(y2.mean(axis=0), y2.std(axis=0))
        self._y_mean = np.asarray(mean, np.float64)
        scale = np.asarray(scale, np.float64)
        self._y_scale = np.where(scale > 0, scale, 1.0)
        self._n_outputs = y2.shape[1]
        return (y2 - self._y_mean) / self._y_scale

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: ArrayLike, y: Any, sample_weight: ArrayLike | None = None) -> RBFNetworkRegressor:
        """Place the centers by annealed soft k-means, then fit the read-out (and train)."""
        self._fit(X, y, sample_weight)
        return self

    @property
    def coef_(self) -> np.ndarray:
        check_is_fitted(self)
        coef = self._readout * self._y_scale
        return coef[:, 0] if self._single_output else coef

    @property
    def intercept_(self) -> float | np.ndarray:
        check_is_fitted(self)
        intercept = self._bias * self._y_scale + self._y_mean
        return float(intercept[0]) if self._single_output else intercept

    def predict(self, X: ArrayLike) -> np.ndarray | da.Array:
        """Network outputs in the units of ``y`` (Dask array for Dask input)."""
        out = self._outputs(X) * self._y_scale + self._y_mean
        return out[:, 0] if self._single_output else out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags


class RBFNetworkClassifier(ClassifierMixin, TransformerMixin, _RBFNetwork):
    __doc__ = """Normalised RBF network classifier on soft k-means centers (NumPy, Dask, Zarr).

    The hidden layer is the soft k-means responsibility layer at temperature
    ``T``; the read-out is first the tree-reduced ridge solution on one-hot
    targets, and with ``training="readout"`` or ``"joint"`` it (and the
    centers) are trained on the cross-entropy of ``softmax(o)`` (see
    :mod:`dask_softkmeans.rbf`).  :meth:`predict_proba` is ``softmax(o)``:
    calibrated after gradient training, not after the ridge read-out alone.
""" + _PARAMETERS_DOC + """    classes_ : ndarray of shape (n_classes,)

    Examples
    --------
    >>> import numpy as np
    >>> from dask_softkmeans.rbf import RBFNetworkClassifier
    >>> X = np.array([[0.0, 0.0], [0.2, 0.1], [5.0, 5.0], [5.1, 4.8]])
    >>> RBFNetworkClassifier(n_centers=2).fit(X, [0, 0, 1, 1]).predict(X).tolist()
    [0, 0, 1, 1]
    """

    _task = "classification"

    def _targets(self, y: Any, data: np.ndarray | da.Array) -> np.ndarray | da.Array:
        if isinstance(y, da.Array):
            if y.ndim != 1:
                raise InputError(f"y must be 1-D (one label per sample); got shape {y.shape}.")
            self.classes_ = np.unique(da.unique(y).compute())
            index = y.map_blocks(_class_index, self.classes_, dtype=np.intp)
        else:
            y = np.asarray(y)
            if y.ndim == 2 and y.shape[1] == 1:
                warnings.warn(
                    "A column-vector y was passed when a 1d array was expected; it was "
                    "flattened. Pass y.ravel() to silence this warning.",
                    DataConversionWarning, stacklevel=3)
                y = y[:, 0]
            if y.ndim != 1:
                raise InputError(f"y must be 1-D (one label per sample); got shape {y.shape}.")
            check_classification_targets(y)
            self.classes_, index = np.unique(y, return_inverse=True)
        self._n_outputs = len(self.classes_)
        return index.astype(np.float64)[:, None]

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: ArrayLike, y: Any, sample_weight: ArrayLike | None = None) -> RBFNetworkClassifier:
        """Place the centers by annealed soft k-means, then fit the read-out (and train)."""
        self._fit(X, y, sample_weight)
        return self

    def decision_function(self, X: ArrayLike) -> np.ndarray | da.Array:
        """Read-out scores, shape (n_samples, n_classes); (n_samples,) for two classes."""
        out = self._outputs(X)
        return out[:, 1] - out[:, 0] if len(self.classes_) == 2 else out

    def predict_proba(self, X: ArrayLike) -> np.ndarray | da.Array:
        """``softmax`` of the read-out scores, shape (n_samples, n_classes)."""
        out = self._outputs(X)
        shifted = out - out.max(axis=1, keepdims=True)
        e = np.exp(shifted)
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, X: ArrayLike) -> np.ndarray | da.Array:
        """The class with the largest score (Dask array for Dask input)."""
        out = self._outputs(X)
        index = out.argmax(axis=1)
        if isinstance(index, da.Array):
            return index.map_blocks(lambda i: self.classes_[i], dtype=self.classes_.dtype)
        return self.classes_[index]
