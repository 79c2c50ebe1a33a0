"""Per-row results of one block: labels, distances, responsibilities, network outputs.

Each function refuses a block holding NaN or infinity (the per-sample methods
cannot skip a row as the passes do: every row needs an answer) and otherwise
calls the maths of :mod:`.reference`, :mod:`.fused` or :mod:`.rbf`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..validation import nonfinite_error
from .common import sub_block_rows
from .fused import nearest_labels
from .rbf import rbf_outputs
from .reference import responsibilities, squared_distances

#: Per-sample outputs of :func:`predictions_block`: dtype and whether there is
#: one column per cluster.
PREDICTION_OUTPUTS: dict[str, tuple[type, bool]] = {
    "labels": (np.int32, False), "proba": (np.float32, True), "distances": (np.float32, True)}


def check_finite(x: np.ndarray) -> np.ndarray:
    """``x``, refused when it holds NaN or infinity (raised when the block is computed)."""
    if not np.all(np.isfinite(x)):
        raise nonfinite_error()
    return x


def labels_block(x: np.ndarray, centers: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """Nearest center of each row, int32 (see :func:`.nearest_labels`)."""
    return nearest_labels(check_finite(x), centers, offset=offset)


def distances_block(x: np.ndarray, centers: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """Euclidean distances to every center, ``(n, K)`` float64."""
    return np.sqrt(squared_distances(check_finite(x), centers, offset=offset))


def proba_block(x: np.ndarray, **kwargs: Any) -> np.ndarray:
    """Responsibilities ``(n, K)`` (see :func:`.responsibilities` for the keywords)."""
    return responsibilities(check_finite(x), **kwargs)


def outputs_block(x: np.ndarray, **kwargs: Any) -> np.ndarray:
    """RBF network outputs ``(n, M)`` (see :func:`.rbf_outputs` for the keywords)."""
    return rbf_outputs(check_finite(x), **kwargs)


def predictions_block(
    x: np.ndarray, what: tuple[str, ...], centers: np.ndarray, offset: np.ndarray,
    temperature: float, log_priors: np.ndarray, normalization: str = "softmax",
) -> dict[str, np.ndarray]:
    """Several per-sample outputs of one block (names of :data:`PREDICTION_OUTPUTS`).

    The same functions as the estimator's ``predict``, ``predict_proba`` and
    ``transform`` compute them, on sub-blocks so that temporaries stay small.
    """
    n_clusters = centers.shape[0]
    out = {name: np.empty((x.shape[0],) + ((n_clusters,) if PREDICTION_OUTPUTS[name][1] else ()),
                          dtype=PREDICTION_OUTPUTS[name][0]) for name in what}
    step = sub_block_rows(n_clusters, x.shape[1])
    for start in range(0, x.shape[0], step):
        part = x[start : start + step]
        if "labels" in out:
            out["labels"][start : start + step] = labels_block(part, centers, offset)
        if "proba" in out:
            out["proba"][start : start + step] = proba_block(
                part, centers=centers, temperature=temperature, offset=offset,
                log_priors=log_priors, normalization=normalization)
        if "distances" in out:
            out["distances"][start : start + step] = distances_block(part, centers, offset)
    return out
