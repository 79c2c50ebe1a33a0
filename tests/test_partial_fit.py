"""SoftKMeans.partial_fit: per-center steps 1/n_k, converging to the batch solution."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment
from sklearn.datasets import make_blobs

from dask_softkmeans import SoftKMeans
from dask_softkmeans.errors import InputError


def _distance(a: np.ndarray, b: np.ndarray) -> float:
    """Largest distance between matched centers."""
    d = ((a[:, None] - b[None]) ** 2).sum(-1)
    rows, cols = linear_sum_assignment(d)
    return float(np.sqrt(d[rows, cols]).max())


@pytest.fixture(scope="module")
def stream():
    """Stationary data: five blobs, shuffled, read in batches of 200 rows."""
    x, _ = make_blobs(n_samples=30_050, n_features=3, centers=5, cluster_std=1.0,
                      center_box=(-10, 10), random_state=2)
    return x


def test_converges_to_the_batch_solution(stream):
    batch = SoftKMeans(n_clusters=5).fit(stream)
    model = SoftKMeans(n_clusters=5).partial_fit(stream[:50])  # a rough start
    start = _distance(model.cluster_centers_, batch.cluster_centers_)
    errors = []
    for i, first in enumerate(range(50, len(stream), 200)):
        model.partial_fit(stream[first : first + 200])
        if i in (9, 49, 149):
            errors.append(_distance(model.cluster_centers_, batch.cluster_centers_))
    assert start > 0.3
    assert errors[0] < start and errors[1] < errors[0] and errors[2] < errors[1]
    assert errors[-1] < 0.03  # ~1/sqrt(n) of the noise; the blobs' spread is 1
    assert model.counts_.sum() == pytest.approx(len(stream))
    assert model.n_steps_ == 151
    np.testing.assert_allclose(model.weights_, model.counts_ / model.counts_.sum())


def test_one_step_is_a_running_mean(stream):
    """c <- c + (N_b / n) (S_b / N_b - c): the center is the mean of every point given to it."""
    model = SoftKMeans(n_clusters=5).partial_fit(stream[:1000])
    centers, counts = model.cluster_centers_.copy(), model.counts_.copy()
    batch = stream[1000:1400]
    labels = model.predict(batch)
    model.partial_fit(batch)
    for k in range(5):
        mine = batch[labels == k]
        expected = (centers[k] * counts[k] + mine.sum(0)) / (counts[k] + len(mine))
        np.testing.assert_allclose(model.cluster_centers_[k], expected, rtol=1e-12)


def test_batches_of_a_dask_array_and_a_fitted_model(stream):
    """Blocks of a Dask (or Zarr) array as batches; a model from fit() weighs as one batch."""
    x = da.from_array(stream[:4000], chunks=500)
    model = SoftKMeans(n_clusters=5).fit(stream[:500])
    for i in range(1, x.numblocks[0]):
        model.partial_fit(x.blocks[i])
    assert model.n_steps_ == 8
    assert model.counts_.sum() == pytest.approx(4000)
    assert not hasattr(model, "labels_")
    refit = SoftKMeans(n_clusters=5).fit(stream[:500])
    assert _distance(model.cluster_centers_, refit.cluster_centers_) < 0.2


def test_soft_batches_and_bad_batches(stream):
    model = SoftKMeans(n_clusters=5).partial_fit(stream[:500])
    model.partial_fit(stream[500:1000], temperature=0.5)
    assert np.all(np.isfinite(model.cluster_centers_))
    with pytest.raises(InputError, match="expecting 3 features"):
        model.partial_fit(stream[:10, :2])
    bad = stream[1000:1010].copy()
    bad[3, 1] = np.nan
    before = model.cluster_centers_.copy()
    with pytest.raises(InputError, match="NaN or infinity"):
        model.partial_fit(da.from_array(bad, chunks=5))
    np.testing.assert_array_equal(model.cluster_centers_, before)
