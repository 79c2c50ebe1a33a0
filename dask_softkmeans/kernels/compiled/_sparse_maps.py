"""Compiled row loop of the sparse maps' passes (entmax-1.5, sparsemax), after the distances.

:func:`.sparse_maps.sparse_statistics` forms the distances by BLAS, as the
reference does, and hands each sub-block's gaps ``d_ik - min_k d_ik`` here.
Per row, this loop keeps the logits that can be in the support (within 1 of
the largest, after halving for entmax-1.5), sorts only those, finds the
threshold, and accumulates every statistic over the support alone, the split
shares of :func:`.reference.split_weights` included (one threshold search
over the sorted candidates with ``z_k`` doubled, per support member).
"""

from __future__ import annotations

import numba as nb
import numpy as np

from ._cache import CACHING

#: Compiled on first use, cached on disk where :mod:`._cache` found a directory, no GIL.
_OPTIONS = {"nogil": True, "cache": CACHING, "error_model": "numpy"}

#: Candidates of a row sorted by insertion up to this many, by ``np.sort`` above.
_INSERTION_MAX = 32

#: Same value as :data:`..common.SPARSE_LOGIT_FLOOR` (numba reads module globals as constants).
_FLOOR = -3.0


@nb.njit(**_OPTIONS)
def _threshold(top: np.ndarray, length: int, entmax: bool) -> float:
    """Threshold of the first ``length`` values of ``top`` (decreasing), as
    :func:`.sparse_maps._thresholds` finds it: the support is the count of the ranks that
    pass the test, and ``tau`` the one of the last rank of the support (a second sweep,
    so that nothing is allocated)."""
    support = 0
    cumulative = 0.0
    squares = 0.0
    for j in range(length):
        value = top[j]
        cumulative += value
        rank = j + 1.0
        if entmax:
            squares += value * value
            mean = cumulative / rank
            delta = (1.0 - rank * (squares / rank - mean * mean)) / rank
            if mean - np.sqrt(max(delta, 0.0)) <= value:
                support += 1
        elif 1.0 + rank * value > cumulative:
            support += 1
    cumulative = 0.0
    squares = 0.0
    for j in range(support):
        cumulative += top[j]
        squares += top[j] * top[j]
    rank = float(support)
    if not entmax:
        return (cumulative - 1.0) / rank
    mean = cumulative / rank
    delta = (1.0 - rank * (squares / rank - mean * mean)) / rank
    return mean - np.sqrt(max(delta, 0.0))


@nb.njit(**_OPTIONS)
def _power(value: float, entmax: bool) -> float:
    value = max(value, 0.0)
    return value * value if entmax else value


@nb.njit(**_OPTIONS)
def sparse_rows(
    gap: np.ndarray, dmin: np.ndarray, w: np.ndarray, x64: np.ndarray, priors: np.ndarray,
    use_priors: bool, temperature: float, entmax: bool, moments: int,
    rel_centers: np.ndarray, directions: np.ndarray,
    counts: np.ndarray, sums: np.ndarray, moment_sums: np.ndarray, split_counts: np.ndarray,
    scalars: np.ndarray,
) -> None:
    """Add one sub-block's statistics into the output arrays.

    ``gap`` is ``(K, n)`` float64; ``moments`` 0 (none), 1 (full: ``moment_sums``
    ``(K, D, D)``) or 2 (power: ``(K, D)`` along ``directions``); ``scalars`` takes
    entropy, free energy, distortion and confidence, in that order.
    """
    n_clusters, n = gap.shape
    n_features = x64.shape[1]
    z = np.empty(n_clusters)
    candidates = np.empty(n_clusters, np.int64)
    values = np.empty(n_clusters)
    doubled = np.empty(n_clusters + 1)
    top = np.empty(n_clusters)
    support = np.empty(n_clusters, np.int64)
    p = np.empty(n_clusters)
    y = np.empty(n_features)
    inv_t = 1.0 / temperature
    for i in range(n):
        largest = -np.inf
        for k in range(n_clusters):
            u = -gap[k, i] * inv_t
            if use_priors:
                u += priors[k]
            z[k] = u
            largest = max(largest, u)
        count = 0
        for k in range(n_clusters):
            value = max(z[k] - largest, _FLOOR)
            if entmax:
                value *= 0.5
            z[k] = value
            if value > -1.0:
                candidates[count] = k
                values[count] = value
                count += 1
        # Sorted in decreasing order: by insertion when there are few candidates (the
        # temperatures that matter), else by a library sort.
        if count <= _INSERTION_MAX:
            for j in range(count):
                value = values[j]
                r = j
                while r > 0 and top[r - 1] < value:
                    top[r] = top[r - 1]
                    r -= 1
                top[r] = value
        else:
            top[:count] = np.sort(values[:count])[::-1]
        tau = _threshold(top, count, entmax)
        size = 0
        total = 0.0
        for j in range(count):
            k = candidates[j]
            share = _power(z[k] - tau, entmax)
            if share > 0:
                support[size] = k
                p[size] = share
                total += share
                size += 1
        wi = w[i]
        omega_sum = 0.0
        distortion = dmin[i]
        prior_term = 0.0
        best = 0.0
        for m in range(size):
            k = support[m]
            pk = p[m] / total
            p[m] = pk
            omega_sum += pk * np.sqrt(pk) if entmax else pk * pk
            distortion += pk * gap[k, i]
            if use_priors:
                prior_term += pk * priors[k]
            best = max(best, pk)
            counts[k] += wi * pk
            for a in range(n_features):
                sums[k, a] += wi * pk * x64[i, a]
        omega = (4.0 / 3.0) * (1.0 - omega_sum) if entmax else 0.5 * (1.0 - omega_sum)
        scalars[0] += wi * omega
        scalars[1] += wi * (distortion - temperature * omega - temperature * prior_term)
        scalars[2] += wi * distortion
        scalars[3] += wi * best
        if moments == 0:
            continue
        for m in range(size):
            k = support[m]
            zk = z[k]
            # The sorted candidates with z_k inserted once more, before the first smaller value.
            j = 0
            while j < count and top[j] > zk:
                doubled[j] = top[j]
                j += 1
            doubled[j] = zk
            for r in range(j, count):
                doubled[r + 1] = top[r]
            q = _power(zk - _threshold(doubled, count + 1, entmax), entmax)
            split_counts[k] += wi * q
            weight = wi * (np.sqrt(q) if entmax else (1.0 if q > 0 else 0.0))
            for a in range(n_features):
                y[a] = x64[i, a] - rel_centers[k, a]
            if moments == 1:
                for a in range(n_features):
                    for b in range(n_features):
                        moment_sums[k, a * n_features + b] += weight * y[a] * y[b]
            else:
                projection = 0.0
                for a in range(n_features):
                    projection += y[a] * directions[k, a]
                for a in range(n_features):
                    moment_sums[k, a] += weight * projection * y[a]
