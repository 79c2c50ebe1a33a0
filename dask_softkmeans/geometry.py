"""Where the centers live: anywhere (Euclidean k-means) or on the unit sphere (cosine k-means).

The annealing driver works in coordinates centered on an ``offset`` (the
data's mean) and sees the geometry only through the methods of one object:
:class:`Flat` for ``metric="euclidean"`` (every method the identity of the
Euclidean procedure, so its results are unchanged) and :class:`Sphere` for
``metric="cosine"``.

On the unit sphere ``||x - c||^2 = 2 - 2 x.c`` for unit rows and centers, so
the E-step is the Euclidean one on unit rows; the responsibilities
``p_ik ~ pi_k exp(2 x_i.c_k / T)`` are those of a von Mises-Fisher mixture of
concentration ``kappa = 2 / T``.  What changes is the M-step (the mean
direction ``S_k / ||S_k||`` instead of the mean ``S_k / N_k``) and the
critical temperatures (see :func:`sphere_spread`).

Pure NumPy: nothing here imports Dask.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: The first critical temperature on the sphere, ``2 lambda / R``, grows without
#: bound as the mean resultant length R falls to 0 (directions that cancel out,
#: where one cluster is never stable).  Squared distances between unit vectors
#: are at most 4, so above twice that every temperature gives nearly the same
#: responsibilities: annealing starts there at the latest.
SPHERE_MAX_TEMPERATURE = 8.0

#: Mean resultant lengths below this are taken as 0: the directions cancel out and
#: there is no mean direction.
RESULTANT_FLOOR = 1e-12


def unit(v: np.ndarray) -> np.ndarray:
    """``v`` scaled to unit length along its last axis (zero vectors left as they are)."""
    norm = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.where(norm > 0, norm, 1.0)


@dataclass(frozen=True)
class Flat:
    """Centers anywhere in R^D: the M-step target of a cluster is its mean ``S_k / N_k``."""

    def project(self, centers: np.ndarray) -> np.ndarray:
        """The nearest admissible centers: ``centers`` themselves."""
        return centers

    def targets(self, counts: np.ndarray, sums: np.ndarray, centers: np.ndarray) -> np.ndarray:
        """Fixed points of the M-step, ``S_k / N_k``; a cluster without mass keeps its center."""
        means = sums / np.maximum(counts, 1e-300)[:, None]
        filled = counts > 0
        return means if filled.all() else np.where(filled[:, None], means, centers)

    def tangent(self, centers: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        """Directions along which ``centers`` may move: every direction."""
        return vectors

    def start(self, mean: np.ndarray, axis: np.ndarray) -> np.ndarray:
        """The first center ``(1, D)``: the data's mean."""
        return mean[None, :]

    def restrict(self, counts: np.ndarray, sums: np.ndarray, spread: np.ndarray,
                 ) -> tuple[np.ndarray, np.ndarray | None]:
        """Covariances ``(K, D, D)`` or products ``cov_k v_k`` ``(K, D)`` as they are (no
        mean resultant lengths: see :meth:`half_critical`)."""
        return spread, None

    def half_critical(self, values: np.ndarray, resultant: np.ndarray | None) -> np.ndarray:
        """Half the clusters' critical temperatures: the largest covariance eigenvalues."""
        return values


@dataclass(frozen=True)
class Sphere:
    """Unit-norm centers, in coordinates centered on ``offset`` (the mean of the unit rows).

    A center ``c`` of the driver is the unit vector ``c + offset``.
    """

    offset: np.ndarray

    def project(self, centers: np.ndarray) -> np.ndarray:
        """Each center moved radially onto the unit sphere (the retraction after a step)."""
        return unit(centers + self.offset) - self.offset

    def targets(self, counts: np.ndarray, sums: np.ndarray, centers: np.ndarray) -> np.ndarray:
        """Fixed points of the M-step, the mean directions ``S_k / ||S_k||`` (the von
        Mises-Fisher maximum likelihood); a cluster without mass, or whose directions
        cancel out (no mean direction: every unit center is as good), keeps its center."""
        means = sums / np.maximum(counts, 1e-300)[:, None]
        resultant = np.linalg.norm(means + self.offset, axis=1)
        defined = (counts > 0) & (resultant > RESULTANT_FLOOR)
        return np.where(defined[:, None], self.project(means), centers)

    def start(self, mean: np.ndarray, axis: np.ndarray) -> np.ndarray:
        """The first center ``(1, D)``: the data's mean direction, or the principal axis
        ``axis`` when the directions cancel out (then every unit center is as good)."""
        if np.linalg.norm(mean + self.offset) > RESULTANT_FLOOR:
            return self.project(mean[None, :])
        return unit(axis[None, :]) - self.offset

    def tangent(self, centers: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        """``vectors`` with their radial component at each center removed, unit length."""
        normals = unit(centers + self.offset)
        return unit(vectors - normals * np.einsum("kd,kd->k", vectors, normals)[:, None])

    def restrict(self, counts: np.ndarray, sums: np.ndarray, spread: np.ndarray,
                 ) -> tuple[np.ndarray, np.ndarray]:
        """Covariances or products restricted to each cluster's tangent space, and the mean
        resultant lengths ``R_k = ||S_k|| / N_k``.

        With ``c_k`` the cluster's mean direction and ``P_k = I - c_k c_k^T``, a
        covariance ``C`` becomes ``P_k C P_k`` and a product ``C v`` (``v`` tangent)
        becomes ``P_k C v``.
        """
        means = sums / np.maximum(counts, 1e-300)[:, None] + self.offset
        normals = unit(means)
        if spread.ndim == 3:
            cn = np.einsum("kij,kj->ki", spread, normals)
            ncn = np.einsum("ki,ki->k", normals, cn)
            spread = (spread - normals[:, :, None] * cn[:, None, :]
                      - cn[:, :, None] * normals[:, None, :]
                      + ncn[:, None, None] * normals[:, :, None] * normals[:, None, :])
        else:
            spread = spread - normals * np.einsum("kd,kd->k", spread, normals)[:, None]
        return spread, np.linalg.norm(means, axis=1)

    def half_critical(self, values: np.ndarray, resultant: np.ndarray | None) -> np.ndarray:
        """Half the clusters' critical temperatures ``lambda_k / R_k`` (see :func:`sphere_spread`),
        at most ``SPHERE_MAX_TEMPERATURE / 2``."""
        return sphere_half_critical(values, resultant)


#: The geometry of Euclidean k-means (it holds nothing: one object serves every fit).
FLAT = Flat()

#: What the annealing driver accepts as a geometry.
Geometry = Flat | Sphere


def sphere_half_critical(values: np.ndarray, resultant: np.ndarray) -> np.ndarray:
    """``lambda / R``: half the critical temperatures on the sphere of clusters whose
    tangent covariances have the largest eigenvalues ``values`` and whose mean resultant
    lengths are ``resultant``; at most ``SPHERE_MAX_TEMPERATURE / 2``."""
    cap = SPHERE_MAX_TEMPERATURE / 2.0
    # lambda / R without dividing by a vanishing R: capped wherever lambda >= cap R.
    ratio = np.where(values >= cap * resultant, cap, values / np.where(resultant > 0, resultant, 1.0))
    return np.where(values > 0, ratio, 0.0)


def sphere_spread(covariance: np.ndarray, mean: np.ndarray) -> tuple[float, np.ndarray]:
    """Half the first critical temperature of unit rows, and its split axis.

    Parameters
    ----------
    covariance : ndarray of shape (D, D)
        Covariance of the unit rows.
    mean : ndarray of shape (D,)
        Their mean ``m``; ``R = ||m||`` is the mean resultant length.

    Returns
    -------
    half_critical : float
        ``T_c / 2`` with ``T_c = 2 lambda_max(P S P) / R`` (at most
        :data:`SPHERE_MAX_TEMPERATURE` / 2).
    axis : ndarray of shape (D,)
        Its unit eigenvector, orthogonal to the mean direction ``c0 = m / R``
        (to the top eigenvector of the covariance when ``R = 0``).

    Notes
    -----
    One cluster sits at ``c0 = m / R``, with free energy ``F_0 = n (2 - 2R)``.
    Split it symmetrically, ``c_pm = (c0 +- eps u) / sqrt(1 + eps^2)`` with
    ``u`` a unit vector orthogonal to ``c0`` and each half of prior 1/2.
    Then ``x.c_pm = (1 - eps^2/2) x.c0 +- eps x.u + O(eps^3)``, so with
    ``d_i,pm = 2 - 2 x_i.c_pm`` (the odd powers of ``eps`` cancel between the halves)

        F = -T sum_i log[(exp(-d_i,+ / T) + exp(-d_i,- / T)) / 2]
          = sum_i (2 - 2 (1 - eps^2/2) x_i.c0) - T sum_i log cosh(2 eps x_i.u / T) + O(eps^4)
          = F_0 + n eps^2 R - (2 eps^2 / T) sum_i (x_i.u)^2 + O(eps^4)
          = F_0 + n eps^2 (R - (2 / T) u^T P S P u) + O(eps^4),

    with ``S = (1/n) sum_i x_i x_i^T`` the second moment of the unit rows and
    ``P = I - c0 c0^T`` (``u = P u``).  The single cluster is unstable when the
    bracket can be negative: below ``T_c = 2 lambda_max(P S P) / R``, with ``u``
    the top eigenvector.  As ``P m = 0``, ``P S P = P Sigma P`` (``Sigma`` the
    covariance): the Euclidean ``T_c = 2 lambda_max(Sigma)`` restricted to the
    tangent space and divided by ``R``, the price of the curvature.
    """
    resultant = float(np.linalg.norm(mean))
    if resultant > 0:
        direction = mean / resultant
    else:
        direction = np.linalg.eigh(covariance)[1][:, -1]
    projector = np.eye(len(mean)) - np.outer(direction, direction)
    values, vectors = np.linalg.eigh(projector @ covariance @ projector)
    top = max(float(values[-1]), 0.0)
    half = float(sphere_half_critical(np.array([top]), np.array([resultant]))[0])
    return half, vectors[:, -1]
