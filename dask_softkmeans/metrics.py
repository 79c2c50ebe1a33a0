"""Measures of clustering quality against reference centers."""

from __future__ import annotations

import numpy as np


def centroid_index(found: np.ndarray, reference: np.ndarray) -> int:
    """Centroid index (Fränti, Rezaei & Zhao 2014): how many clusters a solution misses.

    Map every center of one set to its nearest center of the other and count
    the centers of the other set that received none; CI is the larger count
    of the two directions.  CI = 0 means every reference cluster was found.

    Parameters
    ----------
    found, reference : ndarray of shape (K1, D) and (K2, D)

    Returns
    -------
    int
    """
    found = np.asarray(found, np.float64)
    reference = np.asarray(reference, np.float64)

    def orphans(a: np.ndarray, b: np.ndarray) -> int:
        nearest = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1).argmin(1)
        return int(len(b) - len(np.unique(nearest)))

    return max(orphans(found, reference), orphans(reference, found))
