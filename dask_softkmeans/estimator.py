"""The scikit-learn estimator :class:`SoftKMeans`."""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from numbers import Integral, Real
from typing import Any

import dask.array as da
import numpy as np
import zarr
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    ClusterMixin,
    TransformerMixin,
    _fit_context,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils._set_output import _get_output_config
from sklearn.utils.validation import check_is_fitted, validate_data

from . import io, phases
from ._typing import ArrayLike
from .annealing import AnnealConfig, Annealer, AnnealResult, AnnealState
from .engine import Runner, active_client, load_kernel, map_rows, single_threaded_blas
from .errors import InputError, ModelFileError
from .geometry import FLAT, Sphere, unit
from .inputs import as_data, as_features, as_weights, is_dask_frame, is_pandas_frame
from .io.checkpoint import Checkpoint, fingerprint, result_parameters
from .kernels import BlockStats, PassParams, sub_block_rows
from .kernels.array_api import is_foreign_array
from .kernels.predict import (
    PREDICTION_OUTPUTS,
    check_finite,
    distances_block,
    labels_block,
    predictions_block,
    proba_block,
)
from .objective import DataSummary, centered_statistics, online_step, run_pass, summarize
from .optim import OPTIMIZERS, get_optimizer
from .validation import (
    METRICS,
    NORMALIZATIONS,
    check_in_memory,
    check_normalization,
    check_temperature,
    feature_count_error,
    foreign_metric_error,
)

#: ``sample_size="auto"``: the annealing at T > 0 runs on an in-memory sample, see
#: :func:`auto_sample_size`; a pass with ``m`` centers reads only the first
#: ``sample_rows(m, ...)`` rows of it (shuffled): the structure the annealing
#: resolves grows with ``m``.
SAMPLE_MIN_ROWS = 10_000
SAMPLE_ROWS_PER_CLUSTER = 200
SAMPLE_MAX_SHARE = 0.5
#: A sample cut to ``SAMPLE_MAX_SHARE`` of the data still needs this many rows per cluster:
#: with fewer the annealing loses clusters faster than the swap checks that follow (on the
#: sample, then on all the rows, several moves a trial with many clusters) put them back.
SAMPLE_MIN_ROWS_PER_CLUSTER = 20


def auto_sample_size(n_clusters: int, n_samples: int) -> int | None:
    """Rows of the ``sample_size="auto"`` sample (None: anneal on all the data).

    ``max(SAMPLE_MIN_ROWS, SAMPLE_ROWS_PER_CLUSTER * K)``, cut to
    ``SAMPLE_MAX_SHARE`` of the data when it is more; None when the cut
    sample has fewer than ``SAMPLE_MIN_ROWS`` rows or fewer than
    ``SAMPLE_MIN_ROWS_PER_CLUSTER`` per cluster (small data: all of it is cheap).
    """
    size = max(SAMPLE_MIN_ROWS, SAMPLE_ROWS_PER_CLUSTER * n_clusters)
    if size <= SAMPLE_MAX_SHARE * n_samples:
        return size
    size = int(SAMPLE_MAX_SHARE * n_samples)
    if size < max(SAMPLE_MIN_ROWS, SAMPLE_MIN_ROWS_PER_CLUSTER * n_clusters):
        return None
    return size


def sample_rows(n_centers: int, size: int) -> int:
    """Rows of a ``size``-row sample that a pass with ``n_centers`` centers reads.

    ``SAMPLE_ROWS_PER_CLUSTER`` per center, at least ``SAMPLE_MIN_ROWS``,
    rounded up to ``SAMPLE_MIN_ROWS`` times a power of two (few distinct
    prefixes, each one a :class:`.Runner`), at most ``size``.
    """
    rows = SAMPLE_MIN_ROWS
    while rows < SAMPLE_ROWS_PER_CLUSTER * n_centers and rows < size:
        rows *= 2
    return min(rows, size)


def _growing_sample(
    x: np.ndarray, w: np.ndarray | None, offset: np.ndarray, metric: str
) -> Callable[[PassParams], BlockStats]:
    """Statistics over the first :func:`sample_rows` rows of the shuffled sample ``x``.

    How many rows a pass reads depends only on its number of centers, so the
    fit stays deterministic (and a resumed fit reads what the first one did).
    """
    # The sample comes sorted by row index: shuffled, each prefix is a uniform sample too.
    order = np.random.default_rng(0).permutation(x.shape[0])
    x = x[order]
    w = None if w is None else w[order]
    passes: dict[int, Callable[[PassParams], BlockStats]] = {}

    def statistics(params: PassParams) -> BlockStats:
        rows = sample_rows(params.centers.shape[0], x.shape[0])
        if rows not in passes:
            passes[rows] = centered_statistics(
                Runner(x[:rows], None if w is None else w[:rows]), offset, metric)
        return passes[rows](params)

    return statistics

#: ``n_clusters="auto"`` anneals with at most this ``tol``: the phase diagram it
#: reads K from needs equilibria (at the default ``tol`` splits near a transition
#: are judged before their halves have settled; see benchmarks/choose_k.py).
CHOOSE_K_TOL = 1e-4

#: Float64 in-memory data of at most this many bytes, annealed on all of them, anneal
#: on a float32 copy (see ``SoftKMeans._working_copy``).
WORKING_COPY_MAX_BYTES = 64 << 20

#: What ``verbose`` and the command line say while numba compiles the kernel
#: (an empty cache: the first fit of an installation), printed after 2 s.
COMPILING = "Compiling the kernel with numba (once per installation)..."



class SoftKMeans(ClassNamePrefixFeaturesOutMixin, ClusterMixin, TransformerMixin, BaseEstimator):
    """Annealed soft k-means on NumPy, Dask and Zarr arrays, xarray and DataFrames.

    Soft assignments ``p_ik = pi_k exp(-||x_i - c_k||^2 / T) / Z_i`` at a
    temperature ``T`` smooth the k-means objective into the free energy
    ``F_T = -T sum_i log Z_i``; hard k-means is its ``T -> 0`` limit.  The fit
    starts at the first critical temperature ``2 lambda_max(cov X)``, cools
    through the phase transitions, splitting each cluster when it becomes
    unstable and merging coincident ones (mass-constrained deterministic
    annealing), and ends with Lloyd passes at ``T = 0`` until the centers are a
    Lloyd fixed point.

    Each pass maps a compiled kernel over the row blocks of the data and
    tree-reduces ``O(K D)`` statistics in float64; the data never travel to
    the driver.  The active ``distributed.Client`` is used when there is one,
    the threaded scheduler otherwise; NumPy input runs in this process.

    Data may also be an xarray ``DataArray`` (samples x features) or
    ``Dataset`` (one 1-D data variable per feature; see ``variables`` in
    :meth:`fit`), a Zarr group written by xarray (or its path), or a pandas or
    Dask DataFrame of numeric columns.  Lazy (Dask-backed) input stays lazy:
    :meth:`predict`, :meth:`transform` and :meth:`predict_proba` return Dask
    arrays whose row chunks follow its chunks (a Dask DataFrame's partitions,
    row counts unknown), and nothing is computed until you ask.  In-memory
    input gives NumPy arrays (``set_output(transform="pandas")`` makes
    :meth:`transform` return a DataFrame).  Float32 data give float32
    distances and responsibilities; the statistics are accumulated in float64.

    With ``n_init=1`` (the default) the fit uses no randomness: the same data
    give the same centers whatever ``random_state``.

    With ``metric="cosine"`` the same procedure clusters directions
    (spherical k-means as the ``T -> 0`` limit of a von Mises-Fisher
    mixture): each row is scaled to unit length inside the per-block work
    (your array is never modified), the centers are unit vectors, and as
    ``||x - c||^2 = 2 - 2 x.c`` on the unit sphere the responsibilities are
    ``p_ik ~ pi_k exp(2 cos(x_i, c_k) / T)`` (concentration ``2 / T``); each
    center is its cluster's mean direction ``S_k / ||S_k||``.  See the cosine
    guide in the documentation for the critical temperatures on the sphere.

    Parameters
    ----------
    n_clusters : int or "auto", default=8
        Number of clusters K.  "auto": anneal up to ``max_clusters``
        codevectors (or hard assignments), read K from the phase diagram (the
        count of at least 2 that holds over the widest range of ``log T``, see
        :func:`dask_softkmeans.phases.choose_n_clusters` and the guide "Phase
        diagram and choosing K"), and end with Lloyd passes for that K;
        ``n_clusters_`` says which.  The annealing then runs with ``tol`` at
        most ``1e-4`` (its phase diagram needs equilibria): more passes than
        a fit of a given K.
    max_clusters : int or None, default=None
        With ``n_clusters="auto"`` (and only then), the most clusters the
        annealing makes; it must exceed the K you expect: the count
        ``max_clusters`` itself is never chosen (the annealing stopped there).
        With ``n_init > 1`` the restarts compete only at the K of the first,
        deterministic run.
    metric : {"euclidean", "cosine"}, default="euclidean"
        "euclidean": k-means on the squared distances.  "cosine": spherical
        k-means on the angles between rows (their lengths do not matter; a row
        of zeros is an error): unit centers, :meth:`predict` the center of
        largest cosine similarity, :meth:`transform` the cosine distances
        ``1 - cos``, ``inertia_`` and :meth:`score` sums of cosine distances.
    normalization : {"softmax", "entmax15", "sparsemax"}, default="softmax"
        How the fit turns ``-d_ik / T`` into responsibilities: "softmax" (the
        Gaussian mixture, with the clusters' priors), or the sparse maps
        "entmax15" (entmax-1.5) and "sparsemax", which give exact zeros to far
        centers and take equal priors.  Each map has its own critical
        temperatures (``2 sqrt(2) lambda_max`` and ``4 lambda_max`` for the data
        as one cluster, against softmax's ``2 lambda_max``; see the theory page
        of the documentation).  :meth:`predict_proba` and
        :meth:`write_predictions` use the same map by default.
    n_init : int, default=1
        Number of annealing runs; the one with the lowest inertia is kept.
        The first is deterministic, the others perturb the split directions
        with ``random_state``.
    tol : float, default=1e-2
        At temperature ``T`` the EM passes stop when every center moves less
        than ``sqrt(tol * T)``: the tolerance follows the scale of the data.
        The structure found at ``T > 0`` only seeds the Lloyd passes and the
        swap check at ``T = 0``, which run to an exact fixed point, so a loose
        tolerance here costs no final accuracy (see ``benchmarks/quality.py``).
    cooling : float, default=0.9
        Geometric cooling factor while fewer than K clusters exist (the
        temperature also jumps to just below the next critical temperature);
        once all K exist it cools by 0.3 per step to hard assignments.
    max_iter : int, default=300
        Largest number of passes of each Lloyd run at ``T = 0`` (the final
        one and each trial move of the swap check).
    random_state : int, RandomState instance or None, default=None
        Seeds the restarts when ``n_init > 1``.
    persist : "auto" or bool, default="auto"
        Hold Dask or Zarr data in (cluster) memory for the passes: "auto"
        does so when each worker's share of them (by threads) fits in half
        of its memory limit (its host's memory without one, this machine's
        without a client) less what its process uses already, decided at
        each fit; otherwise every pass streams them from their source,
        reading each Zarr chunk once per pass.  ``persisted_`` says which.
    sample_size : "auto", int or None, default="auto"
        Rows of an in-memory uniform sample on which the annealing at
        ``T > 0`` runs; the Lloyd passes and the swap check at ``T = 0`` then
        run on all the data, so the final centers are a Lloyd fixed point of
        the full data.  At high temperatures only coarse structure exists and
        a sample resolves it at a fraction of the cost.  "auto" takes
        ``max(10000, 200 * n_clusters)`` rows, cut to half the data when that
        is more (all the data when the cut sample would have fewer than 10000
        rows or 20 per cluster), and a pass with ``m`` centers reads only
        ``max(10000, 200 * m)`` of them (rounded up to 10000 times a power of
        two): the structure resolved so far needs no more.  An integer is the
        sample of every pass; None anneals on all the data.  The sample is
        drawn with a fixed seed, so the fit stays deterministic.  When
        "auto" takes all the data and they are a float64 NumPy array of at
        most 64 MiB (Euclidean metric), the "sample" is a float32 copy of all
        the rows instead: the passes at ``T > 0``, a first Lloyd fixed point
        and the swap trials run on it (float32 passes cost less), and Lloyd
        and the swap check then finish on the float64 data.
    split_every : int, default=8
        Inputs per node of the tree reduction.
    compute_labels : bool, default=True
        Set ``labels_`` after the fit.  For NumPy input the labels are
        computed then (one more pass, in memory).  For Dask or Zarr input
        ``labels_`` is a lazy Dask array of the labels, as :meth:`predict`
        returns: nothing of size ``n_samples`` is computed or gathered until
        you ask (``model.labels_.compute()``, or ``.to_zarr(...)`` to write
        them out of core); computing it reads the data once more, block by
        block.  False leaves ``labels_`` unset.
    checkpoint : str, path or None, default=None
        Directory where the driver's state (centers, priors, temperature,
        history, restart seeds, parameters and a fingerprint of the data) is
        written atomically at each temperature.  ``fit(X, resume=True)``
        continues an interrupted fit from it and ends with the same result as
        an uninterrupted one; without ``resume`` an existing checkpoint is an
        error (it is never overwritten).
    verbose : int, default=0
        Print one line per pass when positive, and, when the kernel takes
        more than 2 s to load (numba compiling it into an empty cache: the
        first fit of an installation), a line that says
        so before the first pass and one with the time it took.
    optimizer : {"em", "gd", "momentum", "adam"}, default="em"
        The center update of the passes at ``T > 0``: "em" is the closed-form
        step ``S_k / N_k`` (over-relaxed), a gradient step of size
        ``1 / (2 N_k)`` on ``dF/dc_k = 2 (N_k c_k - S_k)``; the others are
        gradient optimisers of :mod:`dask_softkmeans.optim` (default
        hyperparameters) on the same tree-reduced gradient, their state
        rebuilt at each temperature and whenever clusters split, merge or
        vanish.  They share the
        fixed points; the Lloyd passes at ``T = 0`` are the same for all.

    Attributes
    ----------
    cluster_centers_ : ndarray of shape (n_clusters_, n_features)
    n_clusters_ : int
        Number of clusters fitted: ``n_clusters``, or the K read from the
        phase diagram with ``n_clusters="auto"``.
    labels_ : ndarray or dask.array.Array of shape (n_samples,)
        Nearest center of each training sample (if ``compute_labels``): NumPy
        for NumPy input, a lazy Dask array for Dask or Zarr input (it is left
        out when the model is pickled: it would carry the data's graph).
    inertia_ : float
        Sum of squared distances of the samples to their nearest center
        (weighted by ``sample_weight``); with ``metric="cosine"``, sum of the
        cosine distances ``1 - cos(x_i, c_k)`` to the most similar center
        (the history's values, like the temperature, are in squared distances
        of the unit rows, ``2 - 2 cos``: twice as large).
    weights_ : ndarray of shape (n_clusters,)
        Cluster masses (priors ``pi_k``) at the end of the fit.
    temperature_ : float
        Last positive temperature of the annealing, where assignments froze;
        :meth:`predict_proba` uses it by default.
    n_iter_ : int
        Passes recorded in ``history_`` for the kept run (annealing, Lloyd,
        fill and swap); the first scan pass and the ``labels_`` pass are not
        counted.
    history_ : list of dict
        One record per pass: phase, data, weight, temperature, free_energy,
        inertia, entropy, distortion, shift, n_clusters (the phase diagram's
        count while annealing), codevectors (the centers the pass used),
        moments (whether it measured the principal axes), confidence, seconds,
        and at T > 0 of a softmax fit log_prior_min (the smallest log prior).
        Phases: "anneal" (EM at T > 0), "lloyd" (T = 0), "fill" (topping up to
        K clusters) and "swap" (trial moves of a center at T = 0, kept only
        when they lower the inertia).  ``data`` is "sample" for passes over the
        in-memory sample (see ``sample_size``), "copy" for passes over the
        float32 copy of small float64 data (see ``sample_size``) and "full"
        otherwise; ``weight``
        is the number (total weight) of samples the pass ran on, so sums such
        as the free energy scale to the full data by ``n_samples / weight``.
    phase_diagram_ : ndarray of shape (n_temperatures, 2)
        Distinct clusters against temperature: ``[T, n_clusters]`` rows,
        starting with the first critical temperature.  A split counts once
        its halves are confirmed apart at equilibrium, and only the counts
        that hold at every lower temperature are kept, so the count never
        falls as ``T`` falls (see :mod:`dask_softkmeans.phases`).  The
        ``n_clusters`` of ``history_``'s annealing passes are these counts.
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of the features, set when ``X`` has string names: DataFrame
        columns, Dataset variables, a DataArray's feature coordinate.
    persisted_ : bool
        Whether this fit held the data in (cluster) memory (see ``persist``);
        False for NumPy input and when every pass streamed the data.

    Examples
    --------
    >>> import numpy as np
    >>> from dask_softkmeans import SoftKMeans
    >>> X = np.array([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [5.1, 5.0]])
    >>> model = SoftKMeans(n_clusters=2).fit(X)
    >>> sorted(model.cluster_centers_[:, 0].round(2).tolist())
    [0.05, 5.05]
    """

    _parameter_constraints: dict = {
        "n_clusters": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "max_clusters": [Interval(Integral, 2, None, closed="left"), None],
        "metric": [StrOptions(set(METRICS))],
        "normalization": [StrOptions(set(NORMALIZATIONS))],
        "n_init": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="neither")],
        "cooling": [Interval(Real, 0, 1, closed="neither")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
        "persist": [StrOptions({"auto"}), "boolean"],
        "sample_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left"), None],
        "split_every": [Interval(Integral, 2, None, closed="left")],
        "compute_labels": ["boolean"],
        "verbose": ["verbose"],
        "checkpoint": [str, os.PathLike, None],
        "optimizer": [StrOptions(set(OPTIMIZERS))],
    }

    def __init__(
        self,
        n_clusters: int | str = 8,
        *,
        max_clusters: int | None = None,
        metric: str = "euclidean",
        normalization: str = "softmax",
        n_init: int = 1,
        tol: float = 1e-2,
        cooling: float = 0.9,
        max_iter: int = 300,
        random_state: Any = None,
        persist: bool | str = "auto",
        sample_size: int | str | None = "auto",
        split_every: int = 8,
        compute_labels: bool = True,
        verbose: int = 0,
        checkpoint: str | os.PathLike | None = None,
        optimizer: str = "em",
    ) -> None:
        self.n_clusters = n_clusters
        self.max_clusters = max_clusters
        self.metric = metric
        self.normalization = normalization
        self.n_init = n_init
        self.tol = tol
        self.cooling = cooling
        self.max_iter = max_iter
        self.random_state = random_state
        self.persist = persist
        self.sample_size = sample_size
        self.split_every = split_every
        self.compute_labels = compute_labels
        self.verbose = verbose
        self.checkpoint = checkpoint
        self.optimizer = optimizer

    # -- input ----------------------------------------------------------------
    def _data(self, X: ArrayLike, *, reset: bool,
              storage_options: dict[str, Any] | None = None,
              variables: Sequence[str] | None = None,
              lazy: bool = False) -> np.ndarray | da.Array:
        """Validate X; in-memory arrays go through scikit-learn's own checks.

        Containers are unwrapped without computing anything; a Dataset or Zarr
        group of a model fitted with names gives the same variables by name.
        ``lazy``: a Dask DataFrame's rows per partition are left unknown (for
        results returned as Dask arrays) instead of counted.
        """
        fitted = None if reset else getattr(self, "feature_names_in_", None)
        lazy = lazy and is_dask_frame(X)  # a Dask array of unknown chunk sizes is refused
        X, names = as_features(X, variables=variables, storage_options=storage_options,
                               unknown_rows=lazy, fitted_names=None if fitted is None else list(fitted))
        if isinstance(X, (da.Array, zarr.Array)) or (names is not None and not is_pandas_frame(X)):
            data = as_data(X, unknown_rows=lazy)
            self._check_names(names, reset=reset)
            if reset:
                self.n_features_in_ = data.shape[1]
        else:
            # Our checks first, so that every refusal says how to fix it.
            shape = check_in_memory(X)
            if not reset and shape[1] != self.n_features_in_:
                raise feature_count_error(shape[1], self.n_features_in_, type(self).__name__)
            # float16 widens to float32, as for Dask and Zarr input (scikit-learn would
            # pick the first dtype listed for it).
            half = getattr(X, "dtype", None) == np.float16
            data = as_data(validate_data(
                self, X, reset=reset, dtype=[np.float32, np.float64] if half else
                [np.float64, np.float32], ensure_all_finite=False, accept_sparse=False),
                storage_options=storage_options)  # refused: they apply to a path only
        if not reset and data.shape[1] != self.n_features_in_:
            raise feature_count_error(data.shape[1], self.n_features_in_, type(self).__name__)
        if reset and data.shape[0] < self._most_clusters:  # a known count: fit never has NaN chunks
            name = "max_clusters" if self.n_clusters == "auto" else "n_clusters"
            raise InputError(
                f"n_samples={data.shape[0]} should be >= {name}={self._most_clusters}: each "
                f"cluster needs a sample. Use {name} <= {data.shape[0]}, or pass more samples."
            )
        return data

    @property
    def _most_clusters(self) -> int:
        """The annealing's K: ``n_clusters``, or ``max_clusters`` when choosing K."""
        return self.max_clusters if self.n_clusters == "auto" else self.n_clusters

    def _check_k(self) -> None:
        """The pair n_clusters / max_clusters, before any work (each alone is validated
        declaratively by ``_parameter_constraints``)."""
        if self.n_clusters == "auto" and self.max_clusters is None:
            raise InputError(
                "n_clusters='auto' reads K from the annealing up to max_clusters clusters: "
                "set max_clusters (more than the K you expect), e.g. "
                "SoftKMeans(n_clusters='auto', max_clusters=20).")
        if self.n_clusters != "auto" and self.max_clusters is not None:
            raise InputError(
                f"max_clusters={self.max_clusters} applies only with n_clusters='auto', but "
                f"n_clusters={self.n_clusters}. Set n_clusters='auto' to choose K, or leave "
                "max_clusters=None.")

    @property
    def n_clusters_(self) -> int:
        """Number of clusters fitted (``n_clusters``, or the K chosen with "auto")."""
        check_is_fitted(self)
        return int(self.cluster_centers_.shape[0])

    def _check_names(self, names: list[str] | None, *, reset: bool) -> None:
        """Set or check ``feature_names_in_`` as scikit-learn does for DataFrames."""
        fitted = getattr(self, "feature_names_in_", None)
        if reset:
            if names is not None:
                self.feature_names_in_ = np.asarray(names, dtype=object)
            elif fitted is not None:
                del self.feature_names_in_
            return
        name = type(self).__name__
        if fitted is None and names is not None:
            warnings.warn(f"X has feature names, but {name} was fitted without feature names",
                          UserWarning, stacklevel=3)
        elif fitted is not None and names is None:
            warnings.warn(f"X does not have valid feature names, but {name} was fitted with "
                          "feature names", UserWarning, stacklevel=3)
        elif fitted is not None and list(fitted) != list(names):
            raise InputError(
                f"The feature names should match those that were passed during fit: fitted "
                f"with {list(fitted)}, got {list(names)}. Select the same features in the "
                "same order.")

    @property
    def _n_features_out(self) -> int:
        """Columns of :meth:`transform` (one distance per center), for
        ``get_feature_names_out``: ``softkmeans0``, ``softkmeans1``, ..."""
        return self.cluster_centers_.shape[0]

    # -- fit ------------------------------------------------------------------
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(
        self,
        X: ArrayLike,
        y: Any = None,
        sample_weight: ArrayLike | None = None,
        *,
        callback: Callable[[dict], None] | None = None,
        resume: bool = False,
        storage_options: dict[str, Any] | None = None,
        variables: Sequence[str] | None = None,
    ) -> SoftKMeans:
        """Anneal from the first critical temperature down to a Lloyd fixed point.

        Parameters
        ----------
        X : array-like, Dask array, zarr.Array, path, xarray or DataFrame
            Shape (n_samples, n_features).  A path is a Zarr array or a Zarr
            group written by xarray; see the class docstring for containers.
        y : ignored
        sample_weight : array-like of shape (n_samples,), optional
            A sample of weight ``w`` counts as ``w`` copies of itself.
        callback : callable, optional
            Called after every pass with that pass's record of ``history_``
            (progress displays use it).
        resume : bool, default=False
            Continue from the checkpoint in ``checkpoint`` (start afresh when
            there is none).  The data and the parameters must be those of the
            interrupted fit; the first pass over the data checks it.
        storage_options : dict, optional
            fsspec options for a URL ``X`` (``s3://...``: ``endpoint_url``, ``key``,
            ``secret``, ``anon``, ...); the workers open the data with them too.
            An error with any ``X`` but a path or URL.
        variables : sequence of str, optional
            For an xarray ``Dataset`` or a Zarr group: the data variables to use
            as features, in this order (default: every data variable;
            coordinates never).  They become ``feature_names_in_``, and the
            other methods select the same variables by name.  An error with
            any other ``X``.

        Returns
        -------
        self
        """
        self._check_k()
        if resume and self.checkpoint is None:
            raise InputError(
                "resume=True needs the checkpoint directory of the interrupted fit: set "
                "SoftKMeans(checkpoint=DIR).")
        data = self._data(X, reset=True, storage_options=storage_options, variables=variables)
        if self.metric != "euclidean" and is_foreign_array(getattr(data, "_meta", data)):
            raise foreign_metric_error(self.metric, data._meta)  # before any pass
        weights = as_weights(sample_weight, data)
        if self.checkpoint is not None and not resume:
            # Refuse before the first pass; data and parameters are checked after it.
            Checkpoint(self.checkpoint, {}, {}).load(resume=False)
        # Nothing of an earlier fit or partial_fit may outlive this one.
        for name in ("labels_", "counts_", "n_steps_", "_counts_centers"):
            self.__dict__.pop(name, None)
        notice = contextlib.nullcontext()
        if self.verbose:  # the wait of a first compile is announced, not left in a pass
            from .cli.progress import notice_if_slow

            notice = notice_if_slow(f"[SoftKMeans] {COMPILING}", file=sys.stdout)
        with notice:
            load_kernel(active_client())
        runner = Runner(data, weights, split_every=self.split_every, persist=self.persist)
        self.persisted_ = runner.persisted
        # BLAS on one thread from the scan on, not only in the passes: the driver's
        # products and eigendecompositions are small, and a multi-threaded LAPACK call
        # on a busy machine waits for its threads (the scan's eigendecomposition then
        # cost a large share of a fit on small data with many features).
        with single_threaded_blas():
            summary = summarize(runner, self._most_clusters, self.metric)
            best = self._anneal(runner, summary, data, callback, resume)
        if not best.converged:
            warnings.warn(
                f"Lloyd passes did not reach a fixed point in max_iter={self.max_iter} "
                "passes; increase max_iter.", ConvergenceWarning, stacklevel=2)
        self.cluster_centers_ = best.centers + summary.offset
        self.inertia_ = best.inertia
        if self.metric == "cosine":
            # Unit up to one rounding; the passes sum squared distances 2 - 2 cos.
            self.cluster_centers_ = unit(self.cluster_centers_)
            self.inertia_ = best.inertia / 2.0
        self.weights_ = np.exp(best.log_priors - np.logaddexp.reduce(best.log_priors))
        self.temperature_ = float(best.temperature)
        self.n_iter_ = len(best.history)
        # One source for the diagram, the history, the summary and the plot: the
        # settled counts (a split whose cluster a later merge absorbs is none).
        self.history_ = phases.settle_history(best.history, best.phases)
        self.phase_diagram_ = phases.diagram(best.phases)
        self._offset = summary.offset
        self._fitted_metric = self.metric
        self._fitted_normalization = self.normalization
        if self.compute_labels:
            # NumPy in, NumPy out; for Dask or Zarr data a lazy Dask array (nothing of
            # size n_samples is gathered here).
            self.labels_ = self._labels(data)
        return self

    def _anneal(self, runner: Runner, summary: DataSummary, data: Any,
                callback: Callable[[dict], None] | None, resume: bool) -> AnnealResult:
        """The ``n_init`` annealing runs (from a checkpoint when resuming); the best result."""
        statistics = centered_statistics(runner, summary.offset, self.metric)
        sample = self._sample(runner, summary.offset)
        sample_label = "sample"
        if sample is None:
            sample = self._working_copy(runner, data, summary)
            sample_label = "copy"
        geometry = Sphere(summary.offset) if self.metric == "cosine" else FLAT
        choose = self.n_clusters == "auto"
        config = AnnealConfig(n_clusters=self._most_clusters, cooling=self.cooling,
                              tol=min(self.tol, CHOOSE_K_TOL) if choose else self.tol,
                              max_lloyd_iter=self.max_iter, choose=choose)
        store = saved = None
        if self.checkpoint is not None:
            store = Checkpoint(
                self.checkpoint,
                fingerprint(data, summary.offset, summary.top_variance, summary.total_weight),
                result_parameters(self.get_params()))
            saved = store.load(resume)
        if saved is None:
            rng = check_random_state(self.random_state)
            # The first run is deterministic; the others perturb the split directions.
            seeds = [None] + [int(rng.randint(2**31)) for _ in range(self.n_init - 1)]
            first, best = 0, None
        else:
            seeds, first, best = saved.seeds, saved.run, saved.best
        for run in range(first, self.n_init):

            def save(state: AnnealState, run: int = run, best: AnnealResult | None = best) -> None:
                store.write(run, seeds, state, best)

            annealer = Annealer(
                statistics, config, n_features=runner.n_features,
                total_weight=summary.total_weight,
                rng=None if seeds[run] is None else np.random.default_rng(seeds[run]),
                callback=callback or (self._report if self.verbose else None),
                sample=sample, sample_label=sample_label, checkpoint=None if store is None else save,
                optimizer=None if self.optimizer == "em" else get_optimizer(self.optimizer),
                geometry=geometry, normalization=self.normalization,
                phase_callback=getattr(callback, "on_phase", None),
            )
            state = saved.state if saved is not None and run == saved.run else None
            result = annealer.run(np.zeros(runner.n_features), summary.top_variance,
                                  summary.top_axis, state=state)
            # Choosing K, a restart competes only at the K of the first (deterministic)
            # run: inertias of different K do not compare.
            if best is None or (result.inertia < best.inertia
                                and result.centers.shape == best.centers.shape):
                best = result
            if store is not None:
                store.write(run + 1, seeds, None, best)
        return best

    def _sample(
        self, runner: Runner, offset: np.ndarray
    ) -> tuple[Callable[..., Any], float] | None:
        """Statistics over an in-memory sample for the passes at T > 0 (None: no sampling)."""
        n_samples = runner.n_samples
        if self.sample_size is None:
            return None
        size = self.sample_size
        if size == "auto":
            size = auto_sample_size(self._most_clusters, n_samples)
            if size is None:
                return None
        if size >= n_samples:
            return None
        x, w = runner.sample(max(int(size), self._most_clusters))
        x = check_finite(x)
        weight = float(x.shape[0] if w is None else w.sum())
        if weight <= 0:
            return None
        if self.sample_size != "auto":
            return centered_statistics(Runner(x, w), offset, self.metric), weight
        return _growing_sample(x, w, offset, self.metric), weight

    def _working_copy(
        self, runner: Runner, data: Any, summary: DataSummary
    ) -> tuple[Callable[..., Any], float] | None:
        """Statistics over a float32 copy of small float64 in-memory data, for the passes
        at T > 0 and the first Lloyd passes and swap trials (None: no copy).

        The compiled kernel's float32 passes cost less than its float64 ones, and the
        annealing needs no more precision than float32 gives; the copy is of the
        centered rows (``x - offset``), so no precision is lost to a far offset.  The
        last Lloyd passes and the swap check then run on the data themselves, from
        the copy's fixed point, so the result is a Lloyd fixed point of the float64 data.
        """
        if (self.sample_size != "auto" or self.metric != "euclidean"
                or not isinstance(data, np.ndarray) or data.dtype != np.float64
                or data.nbytes > WORKING_COPY_MAX_BYTES):
            return None
        x, w = runner.all_rows()
        with np.errstate(over="ignore"):
            x = (x - summary.offset).astype(np.float32)
        if not np.isfinite(x).all():
            return None  # beyond float32, or not finite: the passes over the data say which
        return (centered_statistics(Runner(x, w), np.zeros(runner.n_features), self.metric),
                summary.total_weight)

    @property
    def _metric(self) -> str:
        """The metric of the fitted model (the parameter may have been set since)."""
        return self.__dict__.get("_fitted_metric", "euclidean")

    @property
    def _normalization(self) -> str:
        """The normalisation of the fitted model (the parameter may have been set since)."""
        return self.__dict__.get("_fitted_normalization", "softmax")

    def _map_priors(self, normalization: str) -> np.ndarray | None:
        """Log priors of responsibilities by ``normalization``: the fit's own ``weights_``,
        except for a sparse map of a sparse fit, whose passes took equal priors."""
        if normalization != "softmax" and self._normalization != "softmax":
            return None
        return self._log_priors()

    @property
    def _inertia_scale(self) -> float:
        """Cosine distance ``1 - cos`` per squared distance of unit rows ``2 - 2 cos``."""
        return 0.5 if self._metric == "cosine" else 1.0

    def _log_priors(self) -> np.ndarray:
        return np.log(np.maximum(self.weights_, 1e-300))

    def _report(self, record: dict) -> None:
        print(
            f"[SoftKMeans] {record['phase']:6s} T={record['temperature']:.4g} "
            f"K={record['n_clusters']} F={record['free_energy']:.6g} "
            f"J={record['inertia']:.6g} shift={record['shift']:.3g} "
            f"{record['seconds'] * 1e3:.0f} ms"
        )

    # -- per-sample results --------------------------------------------------
    def _labels(self, data: np.ndarray | da.Array) -> np.ndarray | da.Array:
        return map_rows(
            data, labels_block, n_outputs=None, dtype=np.int32,
            centers=self.cluster_centers_, offset=self._offset, metric=self._metric)

    def predict(self, X: ArrayLike) -> np.ndarray | da.Array:
        """Index of the nearest center of each sample, int32 (a lazy Dask array for lazy input).

        With ``metric="cosine"``, the center of largest cosine similarity.
        """
        check_is_fitted(self)
        return self._labels(self._data(X, reset=False, lazy=True))

    def fit_predict(
        self, X: ArrayLike, y: Any = None, sample_weight: ArrayLike | None = None, *,
        storage_options: dict[str, Any] | None = None, variables: Sequence[str] | None = None,
    ) -> np.ndarray | da.Array:
        """Fit, then return the labels of ``X`` (a lazy Dask array for Dask or Zarr input).

        ``storage_options`` and ``variables`` are those of :meth:`fit`.
        """
        self.fit(X, sample_weight=sample_weight, storage_options=storage_options,
                 variables=variables)
        if self.compute_labels:
            return self.labels_
        if storage_options:  # the labels of a URL are read with the same options
            X = io.open_data(X, storage_options=storage_options)
        return self.predict(X)

    def partial_fit(
        self,
        X: ArrayLike,
        y: Any = None,
        sample_weight: ArrayLike | None = None,
        *,
        temperature: float = 0.0,
    ) -> SoftKMeans:
        """Update the centers with one more batch (streaming, e.g. blocks of a Zarr array).

        The first call on an unfitted model runs :meth:`fit` on the batch.
        Each later batch costs one pass at ``temperature`` (hard assignments at
        the default 0) that gives the batch's soft counts ``N_k^b`` and sums
        ``S_k^b``; then, with the running counts ``n_k <- n_k + N_k^b``,

            c_k <- c_k + (N_k^b / n_k) (S_k^b / N_k^b - c_k) = c_k - g_k^b / (2 n_k),

        a gradient step on the batch's free energy (``g^b = 2 (N^b c - S^b)``)
        with the per-center step size ``1 / (2 n_k)``: each center is the
        running mean of the points assigned to it (MacQueen's rule, the
        per-center rate of scikit-learn's ``MiniBatchKMeans``).  The steps
        shrink like ``1 / n_k`` (a Robbins-Monro schedule), so on stationary
        data the centers settle at a fixed point of the objective over the
        whole stream.  A model fitted with :meth:`fit` starts with the counts
        of the first batch, i.e. it weighs as much as one batch.

        Parameters
        ----------
        X : array-like, Dask array, zarr.Array or path of shape (n_samples, n_features)
            One batch.
        y : ignored
        sample_weight : array-like of shape (n_samples,), optional
        temperature : float, default=0.0
            Temperature of the batch pass (0: hard k-means assignments), with the
            fit's ``normalization``.

        Returns
        -------
        self

        Attributes set
        --------------
        counts_ : ndarray of shape (n_clusters,)
            Running (soft) counts ``n_k``.
        n_steps_ : int
            Batches seen by :meth:`partial_fit` (the first, fitted, included).
        ``inertia_`` becomes the last batch's inertia with the centers it was
        assigned to; ``labels_`` is removed (it no longer describes one data set).
        """
        temperature = check_temperature(temperature)
        if not hasattr(self, "cluster_centers_"):
            self.fit(X, sample_weight=sample_weight)
            data = self._data(X, reset=False)
            weight = float(data.shape[0]) if sample_weight is None else float(
                np.sum(as_weights(sample_weight, data)))
            self.counts_ = self.weights_ * weight
            self._counts_centers = self.cluster_centers_
            self.n_steps_ = 1
            return self
        data = self._data(X, reset=False)
        runner = Runner(data, as_weights(sample_weight, data), split_every=self.split_every)
        stats = run_pass(runner, PassParams(
            self.cluster_centers_, temperature, offset=self._offset,
            log_priors=self._map_priors(self._normalization) if temperature > 0 else None,
            normalization=self._normalization, metric=self._metric))
        if getattr(self, "_counts_centers", None) is not self.cluster_centers_:
            # Fitted by fit() (or refitted since the last batch): the fitted
            # centers count as one earlier batch of this batch's weight.
            self.counts_ = self.weights_ * float(stats.weight)
            self.n_steps_ = 1
        sums = stats.sums + stats.counts[:, None] * self._offset
        centers, self.counts_ = online_step(self.cluster_centers_, self.counts_, stats.counts, sums)
        if self._metric == "cosine":
            centers = unit(centers)  # the running mean direction
        self.cluster_centers_ = centers
        self._counts_centers = centers
        self.weights_ = self.counts_ / self.counts_.sum()
        self.inertia_ = float(stats.inertia) * self._inertia_scale
        self.n_steps_ += 1
        if hasattr(self, "labels_"):
            del self.labels_
        return self

    def predict_proba(
        self, X: ArrayLike, temperature: float | None = None, *, normalization: str | None = None
    ) -> np.ndarray | da.Array:
        """Responsibilities ``p_ik`` at ``temperature`` (default ``temperature_``), shape (n, K).

        ``normalization`` is "softmax" (the Gaussian RBF layer), or "entmax15"
        or "sparsemax": sparse responsibilities with exact zeros, stable as
        ``T -> 0`` (see :func:`dask_softkmeans.kernels.normalize`); by default
        the fit's own (``normalization``).  The priors are the fit's: ``weights_``,
        or equal ones for a sparse map of a model fitted with a sparse map.  With
        ``metric="cosine"``, the von Mises-Fisher responsibilities
        ``p_ik ~ pi_k exp(2 cos(x_i, c_k) / T)``.
        """
        check_is_fitted(self)
        normalization = check_normalization(
            self._normalization if normalization is None else normalization)
        data = self._data(X, reset=False, lazy=True)
        temperature = self.temperature_ if temperature is None else check_temperature(temperature)
        return map_rows(
            data, proba_block, n_outputs=self.n_clusters_, dtype=data.dtype, out_dtype=data.dtype,
            centers=self.cluster_centers_, temperature=temperature, offset=self._offset,
            log_priors=self._map_priors(normalization), normalization=normalization,
            metric=self._metric)

    def transform(self, X: ArrayLike) -> np.ndarray | da.Array:
        """Euclidean distances to every center, shape (n, K), in the data's float dtype.

        With ``metric="cosine"``, the cosine distances ``1 - cos(x_i, c_k)``.
        A lazy Dask array for lazy input.  A point on a center is at distance 0
        exactly (see :func:`dask_softkmeans.kernels.predict.exact_squared_distances`).
        """
        check_is_fitted(self)
        data = self._data(X, reset=False, lazy=True)
        if isinstance(data, da.Array) and _get_output_config("transform", self)["dense"] != "default":
            raise InputError(
                "set_output(transform=...) asks for an in-memory container, but X is lazy: "
                "wrapping the result would compute it all into this process. Use "
                "set_output(transform='default') for a Dask array, or pass in-memory data.")
        return map_rows(
            data, distances_block, n_outputs=self.n_clusters_, dtype=data.dtype, out_dtype=data.dtype,
            centers=self.cluster_centers_, offset=self._offset, metric=self._metric)

    def write_predictions(
        self,
        X: ArrayLike,
        path: str | os.PathLike,
        *,
        what: tuple[str, ...] | list[str] = ("labels",),
        temperature: float | None = None,
        normalization: str | None = None,
        overwrite: bool = False,
        storage_options: dict[str, Any] | None = None,
    ) -> zarr.Group:
        """Write per-sample results of ``X`` to a new Zarr group, out of core.

        One task per row block of ``X`` reads the block once, computes every
        requested output and writes it to Zarr arrays whose chunks are the
        blocks (for a Zarr input, whole Zarr chunks of ``X``); nothing is
        gathered on the driver, so ``X`` may be larger than any memory.

        Parameters
        ----------
        X : array-like, Dask array, zarr.Array or path of shape (n_samples, n_features)
        path : str or os.PathLike
            Local path or fsspec URL of the group to create.
        what : sequence of {"labels", "proba", "distances"}, default=("labels",)
            ``labels``: int32 (n_samples,), as :meth:`predict`; ``proba``:
            float32 (n_samples, n_clusters), as :meth:`predict_proba`;
            ``distances``: float32 (n_samples, n_clusters), as :meth:`transform`.
        temperature : float, optional
            Temperature of ``proba``; ``temperature_`` by default.
        normalization : {"softmax", "entmax15", "sparsemax"}, optional
            Map of ``proba``, as in :meth:`predict_proba`; the fit's by default.
        overwrite : bool, default=False
            Replace an existing group at ``path``.
        storage_options : dict, optional
            fsspec options for a URL ``path``.

        Returns
        -------
        zarr.Group
            The group, opened read-only; its arrays are named as in ``what``.
        """
        check_is_fitted(self)
        what = tuple(dict.fromkeys([what] if isinstance(what, str) else what))
        unknown = [name for name in what if name not in PREDICTION_OUTPUTS]
        if unknown or not what:
            raise InputError(
                f"what must name outputs among {', '.join(PREDICTION_OUTPUTS)}; got {what!r}.")
        temperature = self.temperature_ if temperature is None else check_temperature(temperature)
        normalization = check_normalization(
            self._normalization if normalization is None else normalization)
        data = self._data(X, reset=False)
        if not isinstance(data, da.Array):
            rows = sub_block_rows(self.n_clusters_, data.shape[1])
            data = da.from_array(data, chunks=(rows * 8, data.shape[1]))
        params = {
            "what": what, "centers": self.cluster_centers_, "offset": self._offset,
            "temperature": temperature, "log_priors": self._map_priors(normalization),
            "normalization": normalization, "metric": self._metric,
        }
        outputs = {name: (PREDICTION_OUTPUTS[name][0],
                          self.n_clusters_ if PREDICTION_OUTPUTS[name][1] else None)
                   for name in what}
        attrs = {"written_by": "dask_softkmeans.SoftKMeans.write_predictions",
                 "temperature": float(temperature), "normalization": normalization}
        return io.write_row_blocks(data, predictions_block, params, path, outputs, attrs=attrs,
                                   overwrite=overwrite, storage_options=storage_options)

    def score(self, X: ArrayLike, y: Any = None, sample_weight: ArrayLike | None = None) -> float:
        """Opposite of the inertia of ``X`` with the fitted centers (higher is better).

        With ``metric="cosine"``, minus the sum of the cosine distances
        ``w_i (1 - cos(x_i, c_k))`` to the most similar centers.
        """
        check_is_fitted(self)
        data = self._data(X, reset=False)
        runner = Runner(data, as_weights(sample_weight, data), split_every=self.split_every)
        stats = run_pass(runner, PassParams(self.cluster_centers_, 0.0, offset=self._offset,
                                            metric=self._metric))
        return -float(stats.inertia) * self._inertia_scale

    # -- model files ---------------------------------------------------------
    _SAVED_ARRAYS = ("cluster_centers_", "weights_", "phase_diagram_", "_offset")

    def plot_annealing(
        self, path: str | os.PathLike | None = None, ax: Any = None, X: ArrayLike | None = None
    ) -> Any:
        """Plot the annealing path (and, for 2-D ``X``, the points and centers).

        Free energy, inertia, entropy and distinct clusters against the
        temperature on a log axis, phase transitions marked; needs matplotlib
        (``pip install "dask-softkmeans[plot]"``).  See
        :func:`dask_softkmeans.plotting.plot_annealing` for the parameters.

        Returns
        -------
        matplotlib.figure.Figure
        """
        from .plotting import plot_annealing

        return plot_annealing(self, path=path, ax=ax, X=X)

    def summary(self) -> dict[str, Any]:
        """Parameters and fitted scalars as a JSON-ready dict."""
        check_is_fitted(self)
        params = self.get_params()
        if params.get("checkpoint") is not None:
            params["checkpoint"] = os.fspath(params["checkpoint"])
        if not isinstance(params["random_state"], int | None):
            params["random_state"] = None  # a generator object has no JSON form
        # What the fitted arrays are, even after set_params(metric=..., n_clusters=...).
        params["metric"] = self._metric
        params["normalization"] = self._normalization
        if params["n_clusters"] != "auto" or params["max_clusters"] is None:
            params["n_clusters"], params["max_clusters"] = self.n_clusters_, None
        return {
            "params": params,
            "n_clusters": self.n_clusters_,
            "n_features_in": int(self.n_features_in_),
            "inertia": float(self.inertia_),
            "temperature": float(self.temperature_),
            "n_iter": int(self.n_iter_),
            "persisted": getattr(self, "persisted_", None),
            "cluster_sizes": (self.weights_ / self.weights_.sum()).round(6).tolist(),
        }

    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> None:
        """Write the fitted model to ``path`` (an ``.npz`` file of arrays plus JSON).

        The file holds no pickle and no training data; :meth:`load` reads it
        back.  Existing files are kept unless ``overwrite=True``.
        """
        meta = self.summary()
        meta["history"] = self.history_
        names = getattr(self, "feature_names_in_", None)
        meta["feature_names"] = None if names is None else [str(n) for n in names]
        arrays = {name.strip("_"): getattr(self, name) for name in self._SAVED_ARRAYS}
        io.save_arrays(path, meta, arrays, overwrite=overwrite)

    @classmethod
    def load(cls, path: str | os.PathLike) -> SoftKMeans:
        """Read a model written by :meth:`save` (never unpickles, never runs code)."""
        meta, arrays = io.load_arrays(path)
        try:
            model = cls(**meta["params"])
            model._validate_params()  # JSON values, never code: refuse what fit would
            for name in cls._SAVED_ARRAYS:
                setattr(model, name, _loaded_array(arrays[name.strip("_")], name))
            model.n_features_in_ = int(meta["n_features_in"])
            model.inertia_ = float(meta["inertia"])
            model.temperature_ = float(meta["temperature"])
            model.n_iter_ = int(meta["n_iter"])
            model.history_ = list(meta["history"])
            model.persisted_ = meta.get("persisted")
            model._fitted_metric = model.metric
            model._fitted_normalization = model.normalization
            names = meta.get("feature_names")  # absent from files written before names were kept
            if names is not None:
                if len(names) != model.n_features_in_ or not all(isinstance(n, str) for n in names):
                    raise ValueError("feature_names must be one string per feature")
                model.feature_names_in_ = np.asarray(names, dtype=object)
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFileError(
                f"{str(path)!r} lacks part of a model or holds an invalid value ({exc}); it "
                "is damaged. Fit and save the model again.") from exc
        # An int n_clusters is the fitted count (see summary); "auto" keeps it beside.
        k = model.n_clusters if model.n_clusters != "auto" else meta.get("n_clusters")
        if not isinstance(k, int):
            raise ModelFileError(
                f"{str(path)!r} was fitted with n_clusters='auto' but does not say how many "
                "clusters it chose; it is damaged. Fit and save the model again.")
        d = model.n_features_in_
        shapes = {"cluster_centers_": (k, d), "weights_": (k,), "_offset": (d,)}
        wrong = [name for name, shape in shapes.items() if getattr(model, name).shape != shape]
        if model.phase_diagram_.ndim != 2 or model.phase_diagram_.shape[1:] != (2,):
            wrong.append("phase_diagram_")
        if wrong:
            raise ModelFileError(
                f"{str(path)!r} holds arrays of the wrong shape ({', '.join(wrong)}) for "
                f"n_clusters={k}, n_features={d}; it is damaged. Fit and save the model again.")
        return model

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        if isinstance(state.get("labels_"), da.Array):
            # A lazy labels_ carries the graph of the training data: never pickled.
            state = {key: value for key, value in state.items() if key != "labels_"}
        return state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags


def _loaded_array(array: np.ndarray, name: str) -> np.ndarray:
    """A saved array as float64, refused unless it holds finite real numbers."""
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"{name} has dtype {array.dtype}, not real numbers")
    array = array.astype(np.float64)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} holds NaN or infinity")
    return array
