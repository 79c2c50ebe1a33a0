"""One way to pack the statistics of a pass into a flat float64 vector.

Every statistic is a sum over rows, so the statistics of a whole array are the
sums of its blocks' statistics: a block kernel returns them packed in one
vector that a tree reduction adds up, and a layout gives the named views back.
:class:`StatsLayout` (the soft k-means pass), :class:`ScanLayout` (the first
pass over the data) and :class:`RBFLayout` (the RBF network's gradient pass)
are the three layouts; they share :class:`PackedLayout`.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import numpy as np

from .._typing import MomentMode


@functools.lru_cache(maxsize=256)
def _slices(layout: PackedLayout) -> tuple[tuple[slice, tuple[int, ...] | None], ...]:
    """``(slice, shape)`` of each part, shape None where the slice has it already (1-D);
    cached per layout, as every pass unpacks more than once."""
    slices, start = [], 0
    for shape in layout.shapes():
        stop = start + math.prod(shape)
        slices.append((slice(start, stop), None if len(shape) == 1 else shape))
        start = stop
    return tuple(slices)


class PackedLayout:
    """Base of the layouts: subclasses give the part shapes and the named-tuple of views."""

    views: ClassVar[type]

    def shapes(self) -> tuple[tuple[int, ...], ...]:
        """Shape of each part, in the order of :attr:`views`' fields."""
        raise NotImplementedError

    @property
    def size(self) -> int:
        """Length of the packed vector."""
        return _slices(self)[-1][0].stop

    def empty(self) -> np.ndarray:
        """A zero vector to accumulate into."""
        return np.zeros(self.size, dtype=np.float64)

    def unpack(self, vector: np.ndarray) -> Any:
        """Named views (not copies) into ``vector``."""
        return self.views(*[vector[part] if shape is None else vector[part].reshape(shape)
                            for part, shape in _slices(self)])

    def part(self, name: str) -> slice:
        """Where the part ``name`` (a field of :attr:`views`) lies in the packed vector."""
        return _slices(self)[self.views._fields.index(name)][0]


class BlockStats(NamedTuple):
    """Named views into a packed soft-pass vector (all float64 sums).

    Sums run over rows, each row counted ``w_i`` times (its sample weight).
    ``sums`` and ``moments`` are relative to the offset and centers the
    kernel was given, see :func:`.block_statistics`.
    """

    weight: np.ndarray  # () total weight
    counts: np.ndarray  # (K,) soft counts N_k
    sums: np.ndarray  # (K, D) soft sums S_k of (x - offset)
    free_energy: np.ndarray  # () sum_i -T log Z_i
    entropy: np.ndarray  # () sum_i -sum_k p_ik log p_ik
    distortion: np.ndarray  # () sum_ik p_ik d_ik
    inertia: np.ndarray  # () sum_i min_k d_ik
    hard_counts: np.ndarray  # (K,)
    confidence: np.ndarray  # () sum_i max_k p_ik
    nonfinite: np.ndarray  # () rows holding NaN or infinity (skipped)
    zero_rows: np.ndarray  # () rows of zeros under metric="cosine" (refused by the caller)
    removal: np.ndarray  # (K,) inertia added if center k were removed (T = 0, on request)
    moments: np.ndarray  # (K, D, D), (K, D) or (0,): see block_statistics
    # (K,) sparse maps at T > 0 with moments: soft count of one of two coincident copies
    # of each center (the ``N_a`` of its critical temperature); 0 otherwise
    split_counts: np.ndarray


@dataclass(frozen=True)
class StatsLayout(PackedLayout):
    """Where each statistic of a soft pass lives in its packed vector."""

    n_clusters: int
    n_features: int
    moments: MomentMode = "none"
    views: ClassVar[type] = BlockStats

    def shapes(self) -> tuple[tuple[int, ...], ...]:
        k, d = self.n_clusters, self.n_features
        moment_shape = {"none": (0,), "full": (k, d, d), "power": (k, d)}[self.moments]
        return ((), (k,), (k, d), (), (), (), (), (k,), (), (), (), (k,), moment_shape, (k,))


@functools.lru_cache(maxsize=256)
def stats_layout(n_clusters: int, n_features: int, moments: MomentMode = "none") -> StatsLayout:
    """The :class:`StatsLayout` of these shapes, built once (every pass unpacks one)."""
    return StatsLayout(n_clusters, n_features, moments)


class ScanStats(NamedTuple):
    """Named views into the packed vector of the first pass (:func:`.scan_statistics`)."""

    weight: np.ndarray  # () total weight of the finite rows
    nonfinite: np.ndarray  # () rows left out: a non-finite value, or a bad weight
    zero_rows: np.ndarray  # () rows of zeros under metric="cosine" (refused by the caller)
    sums: np.ndarray  # (D,) weighted sum of (x - origin)
    gram: np.ndarray  # (D, D) or (0,): weighted sum of (x - origin)(x - origin)^T


@dataclass(frozen=True)
class ScanLayout(PackedLayout):
    """Where each part of :class:`ScanStats` lives; ``gram=False`` leaves the Gram matrix out."""

    n_features: int
    gram: bool = True
    views: ClassVar[type] = ScanStats

    def shapes(self) -> tuple[tuple[int, ...], ...]:
        d = self.n_features
        return ((), (), (), (d,), (d, d) if self.gram else (0,))


class RBFBlock(NamedTuple):
    """Named views into the packed vector of :func:`.rbf_gradient_block` (float64 sums)."""

    weight: np.ndarray  # () total weight W
    loss: np.ndarray  # () sum_i w_i l_i
    unsupervised: np.ndarray  # () sum_i w_i u_i
    correct: np.ndarray  # () weight of rows whose largest output is the label (classification)
    centers_loss: np.ndarray  # (K, D) d(sum w l)/dC
    centers_unsupervised: np.ndarray  # (K, D) d(sum w u)/dC = 2 (N c - S) / T
    readout: np.ndarray  # (K, M) d(sum w l)/dW
    bias: np.ndarray  # (M,) d(sum w l)/db
    log_temperature_loss: np.ndarray  # () d(sum w l)/d log T
    log_temperature_unsupervised: np.ndarray  # () d(sum w u)/d log T


@dataclass(frozen=True)
class RBFLayout(PackedLayout):
    """Where each part of :class:`RBFBlock` lives in the packed vector."""

    n_centers: int
    n_features: int
    n_outputs: int
    views: ClassVar[type] = RBFBlock

    def shapes(self) -> tuple[tuple[int, ...], ...]:
        k, d, m = self.n_centers, self.n_features, self.n_outputs
        return ((), (), (), (), (k, d), (k, d), (k, m), (m,), (), ())


class NormalEquations(NamedTuple):
    """Named views into the packed vector of :func:`.rbf_normal_block`: ``H1^T W H1`` and
    ``H1^T W Y`` (``H1 = [H, 1]``, the hidden layer and a bias column) and the total weight."""

    weight: np.ndarray  # ()
    gram: np.ndarray  # (K + 1, K + 1)
    cross: np.ndarray  # (K + 1, M)


@dataclass(frozen=True)
class NormalLayout(PackedLayout):
    """Where each part of :class:`NormalEquations` lives in the packed vector."""

    n_centers: int
    n_outputs: int
    views: ClassVar[type] = NormalEquations

    def shapes(self) -> tuple[tuple[int, ...], ...]:
        k1 = self.n_centers + 1
        return ((), (k1, k1), (k1, self.n_outputs))
