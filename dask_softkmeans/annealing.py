"""Mass-constrained deterministic annealing with splits at phase transitions and merges.

Pure driver logic: it sees the data only through a ``statistics`` callable
that runs one pass (:class:`.PassParams` in, :class:`.BlockStats` out), so the same code
runs over NumPy arrays in memory or Dask arrays on a cluster.

The procedure (mass-constrained deterministic annealing, Rose 1998), in centered
coordinates:

1. One codevector at the mean; the first critical temperature is
   ``T_c = 2 lambda_max(Sigma)``.  Above it the solution is known (every
   center at the mean), so cooling starts just below it.
2. At each temperature, EM passes (``c_k <- c_k + 1.8 (S_k / N_k - c_k)``, an
   over-relaxed EM step with the same fixed point, damped for a cluster whose steps
   oscillate, and ``pi_k = N_k / N``) until
   the largest squared shift is below ``tol * T`` (with 256 codevectors or more, until
   at most one in 256 still moves by that much), or, once K codevectors
   exist, until a pass finds the assignments hard already (step 5).  With a
   sample (see ``Annealer(sample=...)``) these passes run on it.
3. Codevectors closer than ``merge_tol * T`` (squared) merge.  Each cluster's
   own critical temperature ``2 lambda_max(Sigma_k)`` comes from a second-moment
   statistic folded into the pass: the full ``Q_k`` for small D, one
   power-iteration product per cluster otherwise.
4. While fewer than K codevectors exist, the temperature jumps to just below
   the next critical temperature (on a fixed grid, :func:`_grid_below`), and the
   clusters that are unstable there
   split along their principal axis, each half taking half the prior.
5. When K codevectors exist, the temperature falls by ``final_cooling`` per
   step; when the average largest responsibility exceeds ``stop_confidence``,
   Lloyd passes at ``T = 0`` (over-relaxed, safeguarded) run to a fixed point
   (to rounding), then a swap check; with a sample, on it first and then on the
   full data.

Without randomness (``rng=None``) the procedure is deterministic.

With a sparse normalisation (``normalization="entmax15"`` or "sparsemax") the
responsibilities are ``p_i = map(-d_i / T)``, with equal priors in every pass,
and each critical temperature comes from the map's own split statistics (see
:func:`principal_axes`).  Priors are left out because for a sparse map the
mass-constrained update ``pi_k = N_k / N`` is unstable between two coincident
copies: a share ``zeta`` of prior moved from one copy to the other comes back
multiplied by ``sum_i w_i / sum_i q_i > 1`` (``sqrt(2)`` for entmax-1.5 and 2 for
sparsemax on a cluster alone), so one copy takes everything and the split dies.

The geometry (:mod:`.geometry`) says where the centers live.  The steps above
are those of :class:`.Flat` space; on the unit :class:`.Sphere` (cosine
k-means, over unit rows) the mean ``S_k / N_k`` becomes the mean direction
``S_k / ||S_k||``, every center update ends with a radial projection back onto
the sphere, and the covariances and split axes are restricted to each
cluster's tangent space, with ``T_c,k = 2 lambda_max(P_k Sigma_k P_k) / R_k``.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from . import phases as _phases
from ._typing import MomentMode, Normalization
from .geometry import FLAT, Geometry
from .kernels import BlockStats, PassParams
from .optim import Optimizer

#: One pass over the (centered) data: its parameters in, its unpacked statistics out.
StatisticsFn = Callable[[PassParams], BlockStats]

#: Below this many features the full (K, D, D) second moments are cheap; above,
#: one power-iteration product per cluster replaces them.
FULL_MOMENTS_MAX_FEATURES = 8

#: A swap trial's Lloyd passes give up when a pass lowers the inertia by less than this
#: share of what it still lacks to beat the probe's: the move would not pay, or only after
#: passes at that pace that cost more than it could gain (``benchmarks/README.md``).
_STALL = 1e-2

#: Steps per octave of the grid the jumps of the schedule land on (see :func:`_grid_below`).
_GRID = 1024

#: A temperature's EM passes end when at most one codevector in this many still moves by
#: more than the tolerance (see :func:`_settled`).
_LAGGARDS = 256

#: The swap check moves up to one center in this many at once (see :meth:`Annealer._swap`).
_SWAP_BATCH_CLUSTERS = 64

#: A cluster's EM steps oscillate (see :func:`_damped_step`) when each points back along
#: the last to within this cosine.
_OSCILLATION_COSINE = 0.9

#: The first critical temperature of each normalisation over softmax's ``2 lambda_max``:
#: ``8 g'(0)`` over ``2``, with ``g`` the map of two classes (the share of one
#: of two coincident copies of a center), ``g'(0) = 1/4`` (softmax),
#: ``1 / (2 sqrt(2))`` (entmax-1.5), ``1/2`` (sparsemax).  See :func:`principal_axes`.
CRITICAL_FACTOR: dict[str, float] = {"softmax": 1.0, "entmax15": float(np.sqrt(2.0)),
                                     "sparsemax": 2.0}

#: At T = 0 a cluster whose variance is at most this share of the data's largest
#: one has no spread to split (equal points, up to rounding).
_NO_SPREAD = 1e-12


@dataclass(frozen=True)
class AnnealConfig:
    """Parameters of the annealing procedure (see the module docstring)."""

    n_clusters: int
    tol: float = 1e-2
    cooling: float = 0.9
    final_cooling: float = 0.3
    relax: float = 1.8
    #: Damp the EM steps of clusters whose over-relaxed steps oscillate (see
    #: :func:`_damped_step`): the same fixed points in fewer passes.
    damping: bool = True
    lloyd_relax_step: float = 0.5
    lloyd_relax_max: float = 3.0
    split_margin: float = 0.85
    merge_tol: float = 1e-3
    push: float = 0.5
    stop_confidence: float = 0.999
    max_em_iter: int = 100
    axis_tol: float = 1e-2
    max_axis_passes: int = 3
    max_lloyd_iter: int = 300
    max_swaps: int = 20
    start_factor: float = 0.95
    #: Anneal up to ``n_clusters`` codevectors, then keep the count of clusters
    #: read from the phase diagram (:func:`.phases.choose_n_clusters`).
    choose: bool = False


@dataclass
class AnnealResult:
    """What the driver found, in centered coordinates."""

    centers: np.ndarray
    log_priors: np.ndarray
    inertia: float
    temperature: float  # last positive temperature (where assignments froze)
    history: list[dict] = field(default_factory=list)
    phases: list[dict] = field(default_factory=list)
    converged: bool = True


@dataclass
class _Clusters:
    """The codevectors at one moment of the annealing."""

    centers: np.ndarray  # (m, D)
    log_priors: np.ndarray  # (m,)
    directions: np.ndarray  # (m, D) unit principal axes
    variances: np.ndarray  # (m,) largest eigenvalue of each cluster's covariance
    ages: np.ndarray  # (m,) temperatures survived since the cluster appeared
    ids: np.ndarray | None = None  # (m,) stable names, for the phase diagram's links

    @property
    def size(self) -> int:
        return self.centers.shape[0]

    def take(self, index: np.ndarray) -> _Clusters:
        return _Clusters(
            self.centers[index], self.log_priors[index], self.directions[index],
            self.variances[index], self.ages[index],
            None if self.ids is None else self.ids[index],
        )


_CLUSTER_FIELDS = ("centers", "log_priors", "directions", "variances", "ages")


def _same_centers(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal up to rounding: no coordinate differs by more than 1e-12 of the largest."""
    return bool(np.abs(a - b).max(initial=0.0) <= 1e-12 * np.abs(b).max(initial=0.0))


@dataclass
class AnnealState:
    """Everything a run needs to continue where it stopped (a checkpoint's content).

    ``stage`` is "anneal" (about to equilibrate at ``temperature``), "finish"
    (annealing done; Lloyd and swaps on the full data remain).
    """

    stage: str
    clusters: _Clusters
    temperature: float
    last_soft: float
    source: str
    seed: int
    history: list[dict]
    phases: list[dict]
    rng_state: dict | None = None
    lineage: dict | None = None  # the phase diagram's bookkeeping (see Annealer._lineage)

    def to_arrays(self) -> tuple[dict, dict[str, np.ndarray]]:
        """JSON-able metadata and arrays (exact float64: a resumed run is bit-identical)."""
        meta = {
            "stage": self.stage, "temperature": self.temperature, "last_soft": self.last_soft,
            "source": self.source, "seed": self.seed, "history": self.history,
            "phases": self.phases, "rng_state": self.rng_state, "lineage": self.lineage,
        }
        return meta, {name: getattr(self.clusters, name) for name in _CLUSTER_FIELDS}

    @classmethod
    def from_arrays(cls, meta: dict, arrays: dict[str, np.ndarray]) -> AnnealState:
        """Inverse of :meth:`to_arrays`."""
        clusters = _Clusters(*(np.asarray(arrays[name]) for name in _CLUSTER_FIELDS))
        return cls(
            stage=meta["stage"], clusters=clusters, temperature=float(meta["temperature"]),
            last_soft=float(meta["last_soft"]), source=meta["source"], seed=int(meta["seed"]),
            history=list(meta["history"]), phases=list(meta["phases"]),
            rng_state=meta["rng_state"], lineage=meta.get("lineage"),
        )


def moment_mode(n_features: int) -> MomentMode:
    """Which second-moment statistic a pass computes for ``n_features``."""
    return "full" if n_features <= FULL_MOMENTS_MAX_FEATURES else "power"


def _unit(v: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.where(norm > 0, norm, 1.0)


def principal_axes(
    stats: BlockStats, centers: np.ndarray, directions: np.ndarray, mode: MomentMode,
    geometry: Geometry = FLAT, normalization: Normalization = "softmax",
) -> tuple[np.ndarray, np.ndarray]:
    """Half each cluster's critical temperature and its split axis, from one pass.

    In flat space, the largest eigenvalue of the cluster's covariance and its
    axis; on the sphere, of the covariance restricted to the tangent space,
    divided by the mean resultant length (see :meth:`.Sphere.restrict`).
    The moments are about the centers the pass was given; the covariance is
    about the clusters' new means ``S_k / N_k``, hence the ``delta`` terms.
    In "power" mode this is one power-iteration step from ``directions``
    (the Rayleigh quotient, a lower bound that tightens pass by pass).

    With a sparse ``normalization`` (a pass at ``T > 0``), the moments weigh
    each row by its share in a split and are divided by ``split_counts``
    (see :func:`.kernels.reference.split_weights`): ``T_c,k = 2 lambda_max(Q_k / N_a)``,
    which is ``CRITICAL_FACTOR`` times softmax's for a cluster alone.
    """
    tiny = np.finfo(float).tiny
    counts = np.maximum(stats.counts, tiny)
    delta = stats.sums / counts[:, None] - centers
    if normalization != "softmax":
        counts = np.maximum(stats.split_counts, tiny)
    if mode == "full":
        cov = stats.moments / counts[:, None, None] - delta[:, :, None] * delta[:, None, :]
        cov, resultant = geometry.restrict(stats.counts, stats.sums, cov)
        values, vectors = np.linalg.eigh(cov)
        return geometry.half_critical(np.maximum(values[:, -1], 0.0), resultant), vectors[:, :, -1]
    product = stats.moments / counts[:, None] - delta * np.einsum(
        "kd,kd->k", delta, directions)[:, None]
    product, resultant = geometry.restrict(stats.counts, stats.sums, product)
    rayleigh = np.einsum("kd,kd->k", product, directions)
    norm = np.linalg.norm(product, axis=1)
    new = np.where(norm[:, None] > 0, product / np.where(norm > 0, norm, 1)[:, None], directions)
    return geometry.half_critical(np.maximum(rayleigh, 0.0), resultant), new


def _damped_step(step: np.ndarray, previous: np.ndarray) -> np.ndarray:
    """Each cluster's over-relaxed EM step, damped where the steps oscillate.

    A plain EM step takes a cluster alone (few rows shared with others) to its
    fixed point at once; the over-relaxed one overshoots it by ``relax - 1``, and
    the steps that follow alternate in direction, each ``relax - 1`` times as long
    as the last.  Where a cluster's step points back along its previous one and
    is shorter by a ratio ``r`` in ``(-1, 0)``, the steps to come add up to
    ``step / (1 - r)`` (a geometric series, as Aitken's extrapolation reads it):
    the cluster takes that sum at once.  Slow modes (the halves of a split moving
    apart, steps in one direction) keep the over-relaxed step.
    """
    dot = (step * previous).sum(axis=1)
    previous_sq = (previous * previous).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = dot / previous_sq
        cosine = dot / np.sqrt(previous_sq * (step * step).sum(axis=1))
    # NaN (a cluster with no previous step, or none at all) compares False.
    oscillating = (cosine < -_OSCILLATION_COSINE) & (ratio > -1.0)
    if not oscillating.any():
        return step
    damped = step.copy()
    damped[oscillating] /= (1.0 - ratio[oscillating])[:, None]
    return damped


def _grid_below(temperature: float) -> float:
    """The largest temperature ``2 ** (n / _GRID)`` (n an integer) at most ``temperature``.

    The jump to just below the next critical temperature reads it from the passes'
    statistics, whose last digits follow the rounding of float32 passes (the row order
    within a block, repeated rows against weighted ones): on the grid, those digits do
    not reach the schedule, nor the ``temperature_`` the probabilities use.
    """
    return float(2.0 ** (np.floor(np.log2(temperature) * _GRID) / _GRID))


def _settled(shifts: np.ndarray, tolerance: float) -> bool:
    """Whether a temperature's EM passes are done: at most one codevector in
    ``_LAGGARDS`` still moves (squared) by ``tolerance`` or more.

    With fewer codevectors than ``_LAGGARDS``, none may: the largest shift is below the
    tolerance.  With many, the last few to settle (the halves of a split that separate
    late in the passes, each then taking several more passes to settle) go on settling
    in the next temperature's passes, instead of holding every codevector's pass here.
    """
    return int(np.count_nonzero(shifts >= tolerance)) <= shifts.size // _LAGGARDS


def _swap_moves(removal: np.ndarray, gain: np.ndarray, limit: int,
                heirs: np.ndarray | None = None) -> np.ndarray:
    """The swap check's moves, ``(removed, split)`` rows: the center whose removal costs
    least into the split with the largest gain, then, up to ``limit`` moves, the next
    cheapest removals into the next largest gains while each gain exceeds its cost.

    No center is both removed and split, or moved twice.  A removal's cost assumes the
    other centers stay, its points going over to their next nearest: with ``heirs``
    (each center's nearest other center), no center is removed whose heir is removed.
    """
    gain = gain.copy()
    a = int(np.argmin(removal))
    gain[a] = -np.inf
    moves = [(a, int(np.argmax(gain)))]
    if limit > 1:
        used = {a, moves[0][1]}
        kept = set() if heirs is None else {int(heirs[a])}  # heirs of removed centers
        cheap = iter(np.argsort(removal, kind="stable"))
        for j in np.argsort(-gain, kind="stable")[1:]:
            j = int(j)
            if len(moves) >= limit or j in used:
                continue
            a = next(cheap, None)
            while a is not None and (a in used or a in kept
                                     or (heirs is not None and int(heirs[a]) in used)):
                a = next(cheap, None)
            if a is None or not gain[j] > removal[a]:
                break
            a = int(a)
            used.update((a, j))
            if heirs is not None:
                kept.add(int(heirs[a]))
            moves.append((a, j))
    return np.array(moves, dtype=np.intp)


def _nearest_other(centers: np.ndarray, block: int = 512) -> np.ndarray:
    """Each center's nearest other center (by blocks of rows: no K x K array)."""
    norms = (centers * centers).sum(axis=1)
    nearest = np.empty(len(centers), dtype=np.intp)
    for start in range(0, len(centers), block):
        rows = centers[start:start + block]
        # |c|^2 - 2 r.c: the row's own |r|^2 does not change which center is nearest.
        d = rows @ centers.T
        d *= -2.0
        d += norms
        d[np.arange(len(rows)), np.arange(start, start + len(rows))] = np.inf
        nearest[start:start + block] = np.argmin(d, axis=1)
    return nearest


def _random_directions(count: int, n_features: int, seed: int) -> np.ndarray:
    """Deterministic starting vectors for power iteration (never an old eigenvector)."""
    return _unit(np.random.default_rng(seed).standard_normal((count, n_features)))


class Annealer:
    """Runs the annealing procedure against a ``statistics`` callable.

    ``statistics(params)`` returns the :class:`BlockStats` of one pass over the
    (centered) data with the :class:`.PassParams` ``params``.  ``geometry`` is
    where the centers live: :class:`.Flat` (k-means, the default) or
    :class:`.Sphere` (cosine k-means: unit centers, the M-step's mean
    direction, splits in the tangent space); the statistics must then be of
    the unit rows.
    """

    def __init__(
        self,
        statistics: StatisticsFn,
        config: AnnealConfig,
        *,
        n_features: int,
        total_weight: float,
        rng: np.random.Generator | None = None,
        callback: Callable[[dict], None] | None = None,
        sample: tuple[StatisticsFn, float] | None = None,
        sample_label: str = "sample",
        checkpoint: Callable[[AnnealState], None] | None = None,
        optimizer: Optimizer | None = None,
        geometry: Geometry = FLAT,
        normalization: Normalization = "softmax",
        phase_callback: Callable[[dict], None] | None = None,
    ) -> None:
        self.config = config
        # A sparse map's passes take no priors: see the module docstring.
        self.normalization = normalization
        self.geometry = geometry
        # None: the (over-relaxed) EM step.  A gradient optimiser keeps a state
        # per center; it is rebuilt whenever the set of centers changes.
        self.optimizer = optimizer
        self._opt_state: object = None
        self._opt_centers: np.ndarray | None = None
        # The centers the last EM step gave and that step (see _damped_step).
        self._em_centers: np.ndarray | None = None
        self._em_step = np.empty((0, n_features))
        self.n_features = n_features
        # The passes at T > 0 run on the sample when there is one: there only
        # coarse structure exists.  Lloyd, fill and swap run on the full data.
        self._sources = {"full": (statistics, total_weight)}
        if sample is not None:
            self._sources["sample"] = sample
        self._source = "sample" if sample is not None else "full"
        # What the pass records call the sample's rows ("copy": all of them, in float32).
        self._labels = {"full": "full", "sample": sample_label}
        self.mode = moment_mode(n_features)
        self.rng = rng
        self.callback = callback
        self.checkpoint = checkpoint
        self.history: list[dict] = []
        self.phases: list[dict] = []
        self._seed = 0
        # The phase diagram's bookkeeping (see :mod:`.phases`): tentative links
        # between the halves of unconfirmed splits, the next codevector id,
        # the distinct clusters now, and (choosing K) the clusters at the
        # lowest temperature of each count.
        self.phase_callback = phase_callback
        self._links: list[tuple[int, int, int]] = []
        self._next_id = 1
        self._distinct = 1
        self._snapshots: dict[int, dict] = {}
        self._merges: list[tuple[int, int]] = []
        self._distinct_since: dict[int, int] = {0: 0}  # id -> record where it became distinct
        self._alive_ids: set[int] = {0}
        # Each codevector's squared shift to its target in the last pass: see _settled.
        self._last_shifts = np.zeros(0)
        # (statistics, centers, targets) of the last pass: see _targets.
        self._last_targets: tuple[BlockStats, np.ndarray, np.ndarray] | None = None

    # -- one pass, recorded ---------------------------------------------------
    def _pass(self, clusters: _Clusters, temperature: float, phase: str,
              moments: MomentMode = "none", removal: bool = False) -> BlockStats:
        start = time.perf_counter()
        statistics, _ = self._sources[self._source]
        stats = statistics(PassParams(
            clusters.centers, temperature,
            log_priors=(clusters.log_priors if temperature > 0 and self.normalization == "softmax"
                        else None),
            moments=moments,
            directions=clusters.directions if moments == "power" else None,
            removal=removal,
            normalization=self.normalization,
        ))
        means = self.geometry.targets(stats.counts, stats.sums, clusters.centers)
        self._last_targets = (stats, clusters.centers, means)
        self._last_shifts = ((means - clusters.centers) ** 2).sum(axis=1)
        shift = float(self._last_shifts.max())
        record = {
            "phase": phase,
            "data": self._labels[self._source],
            "weight": float(stats.weight),  # samples (or their weight) the pass ran on
            "temperature": float(temperature),
            "free_energy": float(stats.free_energy),
            "inertia": float(stats.inertia),
            "entropy": float(stats.entropy),
            "distortion": float(stats.distortion),
            "shift": shift,
            # Distinct clusters (a split counts once confirmed, see .phases) while
            # annealing; at T = 0 every codevector is a cluster.
            "n_clusters": self._distinct if phase == "anneal" else clusters.size,
            "codevectors": clusters.size,
            "moments": moments != "none",  # the pass measured the principal axes
            "confidence": float(stats.confidence / max(stats.weight, 1e-300)),
            "seconds": time.perf_counter() - start,
        }
        if temperature > 0 and self.normalization == "softmax":
            # The smallest prior: F <= J + weight * T * log(1 / pi_min) (see the plot).
            record["log_prior_min"] = float(clusters.log_priors.min())
        self.history.append(record)
        if self.callback is not None:
            self.callback(record)
        return stats

    def _targets(self, stats: BlockStats, centers: np.ndarray) -> np.ndarray:
        """The M-step targets of a pass's statistics at the centers it was given: those
        :meth:`_pass` computed for its shift when they are of the last pass (the same
        arrays), else computed again (on small data a pass's NumPy calls count)."""
        last = self._last_targets
        if last is not None and last[0] is stats and last[1] is centers:
            return last[2]
        return self.geometry.targets(stats.counts, stats.sums, centers)

    def _update(self, clusters: _Clusters, stats: BlockStats, axes: bool = True) -> _Clusters:
        """EM step at ``T > 0``; clusters without mass are dropped.

        With ``axes``, each cluster's principal axis is updated from the pass's
        second moments; without, the clusters keep the axes they had.
        """
        if axes:
            variances, directions = principal_axes(
                stats, clusters.centers, clusters.directions, self.mode, self.geometry,
                self.normalization)
        else:
            variances, directions = clusters.variances, clusters.directions
        # The pass's own weight: a growing sample reads more rows as clusters appear.
        weight = float(stats.weight)
        alive = stats.counts > 1e-12 * weight
        new = clusters.take(alive)
        counts = stats.counts[alive]
        means = (self._targets(stats, clusters.centers) if counts.size == alive.size
                 else self.geometry.targets(counts, stats.sums[alive], new.centers))
        if self.optimizer is None:
            step = self.config.relax * (means - new.centers)
            # The previous steps are those of the same clusters at the same temperature.
            previous = (self._em_step if self.config.damping and alive.all()
                        and self._em_centers is clusters.centers else None)
            taken = step if previous is None else _damped_step(step, previous)
            new.centers = self.geometry.project(new.centers + taken)
            # A damped cluster's next step starts a new sequence.
            step[(taken != step).any(axis=1)] = np.nan
            self._em_centers, self._em_step = new.centers, step
        else:
            # The gradient of the mean free energy, 2 (n_k c_k - s_k) with n = N / W.
            fractions = counts / weight
            gradient = 2.0 * fractions[:, None] * (new.centers - means)
            if self._opt_centers is not clusters.centers or not alive.all():
                self._opt_state = self.optimizer.init(new.centers)  # split, merge or drop
            step, self._opt_state = self.optimizer.update(
                gradient, self._opt_state, counts=fractions)
            new.centers = self.geometry.project(new.centers + step)
            self._opt_centers = new.centers
        new.log_priors = np.log(counts / counts.sum())
        new.variances, new.directions = variances[alive], directions[alive]
        return new

    # -- the procedure ------------------------------------------------------
    def _save(self, stage: str, clusters: _Clusters, temperature: float, last_soft: float) -> None:
        if self.checkpoint is None:
            return
        self.checkpoint(AnnealState(
            stage=stage, clusters=clusters, temperature=temperature, last_soft=last_soft,
            source=self._source, seed=self._seed, history=self.history, phases=self.phases,
            rng_state=None if self.rng is None else self.rng.bit_generator.state,
            lineage=self._lineage(clusters),
        ))

    def _restore(self, state: AnnealState) -> None:
        self._source, self._seed = state.source, state.seed
        self.history, self.phases = list(state.history), list(state.phases)
        if self.rng is not None and state.rng_state is not None:
            self.rng.bit_generator.state = state.rng_state
        lineage = state.lineage or {}
        self._links = [tuple(link) for link in lineage.get("links", [])]
        self._next_id = int(lineage.get("next_id", state.clusters.size))
        self._distinct = int(lineage.get("distinct", state.clusters.size))
        self._snapshots = {int(n): snap for n, snap in lineage.get("snapshots", {}).items()}
        self._distinct_since = {int(i): int(s)
                                for i, s in lineage.get("distinct_since", {"0": 0}).items()}
        ids = lineage.get("ids")
        state.clusters.ids = np.arange(state.clusters.size) if ids is None else np.asarray(ids)
        self._alive_ids = {int(i) for i in state.clusters.ids}

    def _lineage(self, clusters: _Clusters) -> dict:
        """The phase diagram's bookkeeping as JSON (exact floats) for a checkpoint."""
        return {
            "ids": None if clusters.ids is None else [int(i) for i in clusters.ids],
            "links": [list(link) for link in self._links], "next_id": self._next_id,
            "distinct": self._distinct,
            "distinct_since": {str(i): s for i, s in self._distinct_since.items()},
            "snapshots": {str(n): snap for n, snap in self._snapshots.items()},
        }

    def run(
        self,
        mean: np.ndarray,
        top_variance: float,
        top_axis: np.ndarray,
        state: AnnealState | None = None,
    ) -> AnnealResult:
        """Anneal from one codevector at ``mean`` (centered coordinates, normally 0).

        With ``state`` (a checkpoint), continue from there instead: the passes
        that follow are the ones an uninterrupted run would have made.
        """
        cfg = self.config
        k = cfg.n_clusters
        self._top_variance = top_variance
        factor = CRITICAL_FACTOR[self.normalization]
        t_critical = 2.0 * factor * top_variance
        if state is None:
            start = self.geometry.start(mean.astype(np.float64), top_axis.astype(np.float64))
            clusters = _Clusters(
                centers=start,
                log_priors=np.zeros(1),
                directions=self.geometry.tangent(start, _unit(top_axis[None, :].astype(np.float64))),
                variances=np.array([factor * top_variance], dtype=np.float64),
                ages=np.ones(1, dtype=int),
                ids=np.zeros(1, dtype=np.int64),
            )
            self.phases.append({"temperature": t_critical, "n_clusters": 1, "codevectors": 1,
                                "splits": 0, "merges": 0})
            temperature = cfg.start_factor * t_critical
            last_soft = temperature
            stage = "anneal"
            if k > 1 and top_variance > 0:
                clusters = self._split(clusters, np.array([0]))
        else:
            self._restore(state)
            clusters, stage = state.clusters, state.stage
            temperature, last_soft = state.temperature, state.last_soft
        if stage == "anneal":
            clusters, last_soft = self._anneal(clusters, temperature, last_soft, t_critical)
            self._save("finish", clusters, 0.0, last_soft)
        elif cfg.choose:
            self._choose()  # resumed after the choice: the same K again
        # On the full data after a sample, only the moves the estimates favour are tried:
        # the sample's swap check has tried the others where a trial is cheap.
        clusters, converged, stats = self._finish(clusters, explore="sample" not in self._sources)
        return AnnealResult(
            centers=clusters.centers,
            log_priors=clusters.log_priors,
            inertia=float(stats.inertia),
            temperature=last_soft,
            history=self.history,
            phases=self.phases,
            converged=converged,
        )

    def _anneal(
        self, clusters: _Clusters, temperature: float, last_soft: float, t_critical: float
    ) -> tuple[_Clusters, float]:
        """Cool through the phase transitions until K clusters exist and assignments are hard.

        Ends on the full data: with a sample, its Lloyd passes and swaps come
        last, and the caller's :meth:`_finish` then runs on the full data.
        """
        cfg = self.config
        k = cfg.n_clusters
        while k > 1 and t_critical > 0:
            self._save("anneal", clusters, temperature, last_soft)
            clusters, stats = self._equilibrate(clusters, temperature)
            confidence = float(stats.confidence / stats.weight)
            converged = (_settled(self._last_shifts, cfg.tol * temperature)
                         or confidence > cfg.stop_confidence)
            clusters = self._merge(clusters, temperature)
            if clusters.size < k and not self.history[-1]["moments"]:
                # A merge at K clusters: the splits that follow need fresh axes.
                clusters, stats = self._axes(clusters, temperature)
            last_soft = temperature
            done = clusters.size >= k and confidence > cfg.stop_confidence
            self._record_phase(clusters, temperature, converged, final=done)
            if done:
                break
            clusters.ages += 1
            if clusters.size < k:
                t_max = 2.0 * float(clusters.variances.max())
                if t_max <= 1e-12 * t_critical:
                    break  # nothing left to split: every cluster is a point
                next_t = min(cfg.cooling * temperature, _grid_below(cfg.split_margin * t_max))
                unstable = np.flatnonzero(
                    (cfg.split_margin * 2.0 * clusters.variances >= next_t) & (clusters.ages >= 1)
                )
                order = unstable[np.argsort(-clusters.variances[unstable], kind="stable")]
                clusters = self._split(clusters, order[: k - clusters.size])
            else:
                next_t = cfg.final_cooling * temperature
            if next_t < 1e-12 * t_critical:
                break
            temperature = next_t

        if cfg.choose:
            clusters = self._choose()
        if self._source == "sample":
            # Lloyd and swaps on the sample first: their passes are cheap there,
            # and the full data then start close to their own fixed point.
            clusters = self._finish(clusters, explore=True)[0]
            self._source = "full"
        return clusters, last_soft

    def _record_phase(self, clusters: _Clusters, temperature: float, converged: bool,
                      final: bool) -> None:
        """Resolve the tentative splits after the merges at ``temperature``; one diagram row."""
        merged_away = [b for _, b in self._merges]
        now = {int(i) for i in clusters.ids}
        # Codevectors the EM dropped (no mass left): a tentative half leaves its
        # split; a cluster on its own is lost, as if absorbed.
        dropped = sorted(self._alive_ids - now - set(merged_away))
        since = self._distinct_since
        absorbed = []
        for i in dropped:
            label = _phases.components(sorted(self._alive_ids), self._links)
            if sum(root == label[i] for root in label.values()) == 1:
                absorbed.append(since.get(i, len(self.phases)))
            self._links = _phases.leave(self._links, i)
            self._alive_ids.discard(i)
        self._links, merges = _phases.after_merges(
            [*clusters.ids.tolist(), *merged_away], self._links, self._merges)
        self._merges = []
        # A cluster that a real merge absorbs: the younger of the two.
        for a, b in merges:
            older, younger = sorted((since.get(a, 0), since.get(b, 0)))
            since[a] = older
            absorbed.append(younger)
        self._links, splits = _phases.confirm(
            self._links, clusters.ids, clusters.centers, clusters.log_priors,
            clusters.variances, clusters.directions, temperature, len(self.phases),
            self.config.merge_tol * temperature, converged, final=final)
        for _, b, _ in splits:
            since[b] = len(self.phases)
        label = _phases.components(clusters.ids.tolist(), self._links)
        self._distinct = len(set(label.values()))
        self._alive_ids = set(now)
        # Every codevector carries its cluster's age: the oldest known in its component.
        oldest: dict[int, int] = {}
        for i, root in label.items():
            if i in since:
                oldest[root] = min(oldest.get(root, since[i]), since[i])
        for i, root in label.items():
            since.setdefault(i, oldest.get(root, len(self.phases)))
        row = {"temperature": temperature, "n_clusters": self._distinct,
               "codevectors": clusters.size, "splits": len(splits), "merges": len(merges),
               "absorbed": absorbed}
        self.phases.append(row)
        if self.config.choose:
            self._snapshots[self._distinct] = self._snapshot(clusters, label)
        if self.phase_callback is not None:
            self.phase_callback(row)

    def _snapshot(self, clusters: _Clusters, label: dict[int, int]) -> dict:
        """The distinct clusters now: each component's codevectors, mass-weighted."""
        groups = np.array([label[int(i)] for i in clusters.ids])
        centers, log_priors, directions, variances = [], [], [], []
        for g in np.unique(groups):
            members = np.flatnonzero(groups == g)
            w = np.exp(clusters.log_priors[members])
            heaviest = members[int(np.argmax(w))]
            centers.append(self.geometry.project(
                (w @ clusters.centers[members] / w.sum())[None, :])[0])
            log_priors.append(float(np.logaddexp.reduce(clusters.log_priors[members])))
            directions.append(clusters.directions[heaviest])
            variances.append(float(clusters.variances[members].max()))
        return {"centers": np.asarray(centers).tolist(), "log_priors": log_priors,
                "directions": np.asarray(directions).tolist(), "variances": variances}

    def _choose(self) -> _Clusters:
        """Keep the count read from the phase diagram, at the lowest temperature it held."""
        from dataclasses import replace

        most = self.config.n_clusters
        k = _phases.choose_n_clusters(_phases.diagram(self.phases), most,
                                      _phases.schedule_rows(self.phases, most))
        if k not in self._snapshots:  # never seen as a count: the last one
            k = max(n for n in self._snapshots if n <= self.config.n_clusters)
        self.config = replace(self.config, n_clusters=k, choose=False)
        snap = self._snapshots[k]
        return _Clusters(
            centers=np.asarray(snap["centers"], dtype=np.float64),
            log_priors=np.asarray(snap["log_priors"], dtype=np.float64),
            directions=np.asarray(snap["directions"], dtype=np.float64),
            variances=np.asarray(snap["variances"], dtype=np.float64),
            ages=np.ones(k, dtype=int), ids=np.arange(k),
        )

    def _finish(self, clusters: _Clusters, explore: bool) -> tuple[_Clusters, bool, BlockStats]:
        """Lloyd to a fixed point, K non-empty clusters, then the swap check (all at T = 0);
        ``explore``: see :meth:`_swap`."""
        k = self.config.n_clusters
        # Before a swap check, to where the partition only creeps (the check ends at a
        # fixed point).
        clusters, converged, stats = self._lloyd(clusters, stall=k > 1)
        # Relocate empty clusters and top up to K (rare: data with fewer
        # distinct points than K, or a cluster emptied at T = 0).
        degenerate = False
        for _ in range(k):
            if clusters.size == k and (stats.counts > 0).all():
                break
            clusters, degenerate = self._fill(clusters.take(stats.counts > 0), k)
            clusters, converged, stats = self._lloyd(clusters)
            if degenerate:
                break
        if not degenerate and k > 1:
            clusters, converged, stats = self._swap(clusters, converged, stats, explore)
        return clusters, converged, stats

    def _equilibrate(self, clusters: _Clusters, temperature: float) -> tuple[_Clusters, BlockStats]:
        """EM at one temperature until the squared shifts are below ``tol * T`` (see
        :func:`_settled`).

        Only the split decisions after the temperature read the second moments,
        so once K clusters exist no pass carries them.  Until then, full moments
        (few features: cheap) ride on every pass; power-iteration products
        cost more than the rest of a pass over dense soft rows, so the EM passes
        go without them and, once the centers have settled, :meth:`_axes` runs
        the passes that measure each cluster's principal axis.
        """
        cfg = self.config
        # A gradient optimiser starts afresh at each temperature (a new problem),
        # which also makes the state at a checkpoint complete without it.
        self._opt_centers = None
        self._em_centers = None  # the steps at another temperature are another sequence
        splits = clusters.size < cfg.n_clusters
        # Full moments (few features) cost little and give the axes in one pass: every
        # pass carries them while splits remain.  Power-iteration products do not.
        moments: MomentMode = self.mode if splits and self.mode == "full" else "none"
        for _ in range(cfg.max_em_iter):
            stats = self._pass(clusters, temperature, "anneal", moments)
            clusters = self._update(clusters, stats, axes=moments != "none")
            if (clusters.size >= cfg.n_clusters
                    and float(stats.confidence / stats.weight) > cfg.stop_confidence):
                # The assignments are hard already: the annealing ends here, and
                # Lloyd's cheaper passes take the centers the rest of the way.
                return clusters, stats
            if _settled(self._last_shifts, cfg.tol * temperature):
                break
        if clusters.size < cfg.n_clusters and not self.history[-1]["moments"]:
            # Splits follow (a cluster may also have emptied at K): measure the axes.
            clusters, stats = self._axes(clusters, temperature)
        return clusters, stats

    def _axes(self, clusters: _Clusters, temperature: float) -> tuple[_Clusters, BlockStats]:
        """Passes with second moments at the settled centers: each cluster's principal axis.

        Full moments give it in one pass.  With power-iteration products, each
        pass advances each axis by one step, from the axis of the previous
        temperature (new halves: a fresh vector), and the passes stop when
        the split decisions are settled: every cluster's
        critical-temperature estimate (twice a Rayleigh quotient, which
        converges twice as fast as its vector, and only upwards) is either past
        the next temperature already or moves by less than ``axis_tol * T``;
        at most ``max_axis_passes``.
        Each pass is also an EM step at ``T``.
        """
        cfg = self.config
        for step in range(1 if self.mode == "full" else cfg.max_axis_passes):
            before = clusters.variances
            stats = self._pass(clusters, temperature, "anneal", self.mode)
            alive = stats.counts > 1e-12 * float(stats.weight)
            clusters = self._update(clusters, stats)
            change = np.abs(clusters.variances - before[alive])
            # The split decisions compare T_c = 2 lambda with T.  A Rayleigh
            # quotient only grows with the steps, so a cluster unstable at the
            # next temperature whatever it is (at most cooling * T) stays so.
            critical = 2.0 * clusters.variances
            settled = ((cfg.split_margin * critical >= cfg.cooling * temperature)
                       | (2.0 * change <= cfg.axis_tol * temperature))
            if step > 0 and bool(np.all(settled)):
                break
        return clusters, stats

    def _merge(self, clusters: _Clusters, temperature: float) -> _Clusters:
        """Merge codevectors closer than ``merge_tol * T`` (squared distance), mass-weighted."""
        threshold = self.config.merge_tol * temperature
        centers = clusters.centers
        norms = np.einsum("kd,kd->k", centers, centers)
        gaps = norms[:, None] + norms[None, :] - 2.0 * centers @ centers.T
        # The expanded form can cancel: it only screens (with a margin), the
        # exact test follows.  Row a is scanned when some b > a may be close;
        # a row's center changes only by merges in that row, so the screen of
        # the untouched centers stays valid.
        close = np.triu(gaps < 2.0 * threshold + 1e-9 * norms.max(initial=0.0), k=1)
        rows = np.flatnonzero(close.any(axis=1))
        if len(rows) == 0:
            return clusters
        ids = clusters.ids
        keep = np.ones(clusters.size, dtype=bool)
        centers = clusters.centers.copy()
        log_priors = clusters.log_priors.copy()
        variances = clusters.variances.copy()
        for a in rows:
            b = a + 1
            while keep[a] and b < clusters.size:
                # The next b whose squared distance to the (moving) center a is
                # below the threshold: merges happen in increasing b, as a scan would.
                near = keep[b:] & (np.sum((centers[b:] - centers[a]) ** 2, axis=1) < threshold)
                if not near.any():
                    break
                b += int(np.argmax(near))
                wa, wb = np.exp(log_priors[a]), np.exp(log_priors[b])
                centers[a] = self.geometry.project(
                    ((wa * centers[a] + wb * centers[b]) / (wa + wb))[None, :])[0]
                log_priors[a] = np.log(wa + wb)
                variances[a] = max(variances[a], variances[b])
                keep[b] = False
                if ids is not None:
                    self._merges.append((int(ids[a]), int(ids[b])))
                b += 1
        merged = _Clusters(centers, log_priors, clusters.directions, variances, clusters.ages,
                           ids)
        return merged.take(keep)

    def _split(self, clusters: _Clusters, index: np.ndarray) -> _Clusters:
        """Split each listed cluster in two along its principal axis."""
        if len(index) == 0:
            return clusters
        axis = clusters.directions[index]
        if self.rng is not None:
            # Restarts (n_init > 1) explore other split directions.
            axis = _unit(axis + 0.5 * self.rng.standard_normal(axis.shape))
        # On the sphere each half moves along the tangent space, then back onto the sphere.
        axis = self.geometry.tangent(clusters.centers[index], axis)
        step = self.config.push * np.sqrt(clusters.variances[index])[:, None] * axis
        centers = clusters.centers.copy()
        log_priors = clusters.log_priors.copy()
        ages = clusters.ages.copy()
        centers[index] = self.geometry.project(centers[index] + step)
        log_priors[index] -= np.log(2.0)
        ages[index] = 0
        self._seed += 1
        ids = None
        if clusters.ids is not None:
            # The new halves are tentative until confirmed (see .phases); the
            # first temperature they meet is the next row of the diagram.
            ids = np.concatenate([clusters.ids, self._next_id + np.arange(len(index))])
            self._links += [(int(clusters.ids[i]), self._next_id + n, len(self.phases))
                            for n, i in enumerate(index)]
            self._alive_ids.update(range(self._next_id, self._next_id + len(index)))
            self._next_id += len(index)
        directions = clusters.directions.copy()
        if self.mode == "power":
            # After a split the old axis is often still an eigenvector of each
            # half: restart the power iteration from fresh vectors.
            directions[index] = self.geometry.tangent(centers[index], _random_directions(
                len(index), self.n_features, self._seed))
        return _Clusters(
            centers=np.vstack([centers, self.geometry.project(clusters.centers[index] - step)]),
            log_priors=np.concatenate([log_priors, log_priors[index]]),
            directions=np.vstack([directions, directions[index]]),
            variances=np.concatenate([clusters.variances, clusters.variances[index]]),
            ages=np.concatenate([ages, ages[index]]),
            ids=ids,
        )

    def _lloyd(
        self, clusters: _Clusters, phase: str = "lloyd", target: float | None = None,
        accept: bool = False, stall: bool = False,
    ) -> tuple[_Clusters, bool, BlockStats]:
        """Hard passes until the centers no longer move (a Lloyd fixed point).

        An empty cluster keeps its center (never sent to the origin); the
        caller relocates it.  Returns the clusters, whether a fixed point was
        reached, and the statistics of the last pass.  With ``target`` (a swap
        trial: the inertia it must beat), the passes stop early once the
        inertia is above it and stalls: a pass that lowered it by less than
        ``_STALL`` of the gap left, a pace at which the target is out of reach.
        With ``accept`` too, they stop as soon as the inertia is below it (the
        move pays), after one plain Lloyd step: the caller's later passes take
        the centers the rest of the way.  With ``stall``, they stop once a pass
        lowers the inertia by less than ``_STALL`` of what the passes so far have
        (the partition creeps, a few rows a pass): the swap check that follows
        moves centers anyway, and the Lloyd passes after it reach the fixed point.
        """
        # Over-relaxed Lloyd with a safeguard: the step to the new means is
        # stretched by omega while the inertia keeps falling; a step that
        # raises it is taken back and replaced by the plain step.  Once two
        # passes give the same means (the partition no longer changes), the
        # centers jump exactly onto them, so the end is a fixed point.  "The
        # same" allows for rounding: the sums of one partition differ in the
        # last bits with the chunking and the offset, and the passes must not.
        cfg = self.config
        omega, last = 1.0, None  # last: (inertia, means) at the last accepted centers
        previous = np.inf  # the inertia of the last accepted pass
        first = np.inf  # the inertia of the first pass
        for iteration in range(cfg.max_lloyd_iter):
            stats = self._pass(clusters, 0.0, phase)
            means = self._targets(stats, clusters.centers)
            if last is not None and stats.inertia > last[0]:
                if iteration == cfg.max_lloyd_iter - 1:
                    break
                clusters.centers, omega, last = last[1], 1.0, None
                continue
            inertia = float(stats.inertia)
            if target is not None and inertia > target and previous - inertia < _STALL * (
                    inertia - target):
                return clusters, False, stats
            if accept and target is not None and inertia < target:
                clusters.centers = self.geometry.project(means)
                clusters.log_priors = np.log(
                    np.maximum(stats.counts, 1e-300) / stats.counts.sum())
                return clusters, False, stats
            first = inertia if first == np.inf else first
            creeping = stall and previous - inertia < _STALL * (first - inertia)
            previous = inertia
            if _same_centers(means, clusters.centers):
                clusters.centers = means
                return clusters, True, stats
            if creeping:
                return clusters, False, stats
            if iteration == cfg.max_lloyd_iter - 1:
                break  # keep centers and statistics of the same pass
            settled = last is not None and _same_centers(means, last[1])
            last = (float(stats.inertia), means)
            if settled:
                omega = 1.0
            clusters.centers = self.geometry.project(
                clusters.centers + omega * (means - clusters.centers))
            clusters.log_priors = np.log(np.maximum(stats.counts, 1e-300) / stats.counts.sum())
            omega = min(omega + cfg.lloyd_relax_step, cfg.lloyd_relax_max)
        return clusters, False, stats

    def _swap(
        self, clusters: _Clusters, converged: bool, stats: BlockStats, explore: bool
    ) -> tuple[_Clusters, bool, BlockStats]:
        """Move centers from where they help least to where they help most, at T = 0.

        The center whose removal costs least (the points' second-nearest minus
        nearest distances) moves into the split of the cluster with the largest
        expected gain ``(2/pi) N_j lambda_j``; Lloyd passes follow and the move
        is kept only if the inertia drops.  Stops at the first move that does
        not pay.  A trial that pays stops at its first pass below the probe's
        inertia, not at a fixed point: the next probe starts from there, and
        Lloyd passes after the last move reach the fixed point (fewer passes
        in all; the probes' estimates only choose the moves).

        With many clusters, one trial makes several moves at once (see
        :func:`_swap_moves`: up to one center in ``_SWAP_BATCH_CLUSTERS``, the
        next cheapest removals into the next largest gains while each gain exceeds
        its cost, never removing a center whose points would go to another one
        removed); when they do not pay together, the better half of them, down to
        the best move alone, and later probes move no more than the last trial
        that paid.  The check also stops once a kept move gains less than
        ``_STALL`` of the most a kept move has gained: the moves left would cost
        more passes than they are worth.

        The two estimates only choose the move; the Lloyd passes judge it.  The
        removal cost holds the other centers still, while Lloyd lets them take
        the orphaned points over, and the gain counts one axis of the split
        cluster: both err against the move, the more so the more features
        there are (on standardised real data with many features, moves
        predicted to lose lowered the inertia), so with ``explore`` a prediction
        that the move does not pay is no reason to skip its trial.  Without it
        (the full data, after the sample's swap check has explored), only a move
        whose expected gain exceeds its removal cost is tried: there every
        trial costs Lloyd passes over all the data.
        """
        settle = not converged  # the centers stopped short of their fixed point
        batch = max(1, clusters.size // _SWAP_BATCH_CLUSTERS)
        best = 0.0  # the most a kept move has lowered the inertia
        for _ in range(self.config.max_swaps):
            probe = self._pass(clusters, 0.0, "swap", self.mode, removal=True)
            variances, directions = principal_axes(
                probe, clusters.centers, clusters.directions, self.mode, self.geometry)
            gain = (2.0 / np.pi) * probe.counts * variances
            heirs = _nearest_other(clusters.centers) if batch > 1 else None
            moves = _swap_moves(probe.removal, gain, batch, heirs)
            a, j = moves[0]
            if not gain[j] > 0 or (not explore and gain[j] <= probe.removal[a]):
                break  # nothing to split, or (not exploring) a move predicted to lose
            # Several moves at once; when they do not pay together, the better half of
            # them, down to the best alone, and later probes move no more than that.
            while True:
                tried = moves[:batch]
                trial = clusters.take(np.arange(clusters.size))
                trial.variances, trial.directions = variances.copy(), directions.copy()
                a, j = tried[:, 0], tried[:, 1]
                step = (np.sqrt(2.0 / np.pi) * np.sqrt(variances[j]))[:, None] * directions[j]
                trial.centers = clusters.centers.copy()
                trial.centers[a] = self.geometry.project(clusters.centers[j] - step)
                trial.centers[j] = self.geometry.project(clusters.centers[j] + step)
                trial, trial_converged, trial_stats = self._lloyd(
                    trial, "swap", target=float(probe.inertia), accept=True)
                paid = bool((trial_stats.counts > 0).all() and trial_stats.inertia < probe.inertia)
                if paid or len(tried) == 1:
                    break
                batch = len(tried) // 2
            if not paid:
                break
            gained = float(probe.inertia - trial_stats.inertia)
            clusters, converged, stats = trial, trial_converged, trial_stats
            settle = not trial_converged
            best = max(best, gained)
            if gained < _STALL * best:
                break  # the moves left gain too little for the passes they cost
        if settle:
            clusters, converged, stats = self._lloyd(clusters)
        return clusters, converged, stats

    def _fill(self, clusters: _Clusters, k: int) -> tuple[_Clusters, bool]:
        """Top up to K centers at T = 0 by splitting the clusters with most spread.

        Needed when annealing ends with fewer than K distinct clusters (data
        with fewer distinct points than K, or empty clusters at T = 0).
        """
        while clusters.size < k:
            stats = self._pass(clusters, 0.0, "fill", self.mode)
            variances, directions = principal_axes(
                stats, clusters.centers, clusters.directions, self.mode, self.geometry)
            # A spread of rounding error (equal points, whose variance came out at ~4e-16
            # of the data's) is none: splitting it gave centers 1e-8 apart and empty
            # clusters at the next Lloyd pass, with no warning.
            spread = np.where(variances > _NO_SPREAD * self._top_variance,
                              stats.counts * variances, 0.0)
            j = int(np.argmax(spread))
            if spread[j] <= 0:
                from sklearn.exceptions import ConvergenceWarning  # as KMeans warns

                warnings.warn(
                    f"Number of distinct clusters ({clusters.size}) found smaller than "
                    f"n_clusters ({k}): the data has too few distinct points. "
                    "Some centers are duplicates.", ConvergenceWarning, stacklevel=4)
                extra = clusters.take(np.arange(k - clusters.size) % clusters.size)
                return _Clusters(
                    np.vstack([clusters.centers, extra.centers]),
                    np.concatenate([clusters.log_priors, extra.log_priors]),
                    np.vstack([clusters.directions, extra.directions]),
                    np.concatenate([clusters.variances, extra.variances]),
                    np.concatenate([clusters.ages, extra.ages]),
                ), True
            clusters.variances, clusters.directions = variances, directions
            # Optimal two-means split of a Gaussian: the halves' means at
            # +-sqrt(2/pi) standard deviations along the principal axis.
            step = np.sqrt(2.0 / np.pi) * np.sqrt(variances[j]) * directions[j]
            centers = clusters.centers.copy()
            centers[j] = self.geometry.project(centers[[j]] + step)[0]
            clusters = _Clusters(
                np.vstack([centers, self.geometry.project(clusters.centers[[j]] - step)]),
                np.concatenate([clusters.log_priors, clusters.log_priors[[j]]]),
                np.vstack([clusters.directions, clusters.directions[[j]]]),
                np.concatenate([clusters.variances, clusters.variances[[j]]]),
                np.concatenate([clusters.ages, [0]]),
            )
        return clusters, False
