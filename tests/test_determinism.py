"""Determinism: same parameters, same result, whatever the chunking and the scheduler.

With the same row blocks the reduction tree is the same, so every scheduler
(synchronous, threads, a distributed cluster) gives bit-for-bit the same fit.
Other chunkings, NumPy input and Zarr input sum in another order and agree to
float tolerance.
"""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pytest
import zarr

from dask_softkmeans import SoftKMeans

PARAMS = [
    {"n_clusters": 4, "n_init": 3, "random_state": 7},  # restarts draw from random_state
    {"n_clusters": 4, "sample_size": 600},  # annealing on a sample drawn by global row index
]
IDS = ["n_init=3", "sampled"]


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    """Four blobs of unequal size and spread, 1500 x 3."""
    rng = np.random.default_rng(11)
    centers = np.array([[0, 0, 0], [6, 0, 0], [0, 7, 0], [3, 3, 8]], dtype=float)
    sizes, spreads = [600, 400, 300, 200], [1.0, 0.7, 1.3, 0.5]
    return np.vstack([c + s * rng.normal(size=(n, 3)) for c, n, s in zip(centers, sizes, spreads,
                                                                           strict=True)])


def _fit(data, params) -> SoftKMeans:
    return SoftKMeans(**params).fit(data)


def _same(a: SoftKMeans, b: SoftKMeans, rtol: float) -> None:
    if rtol == 0:
        np.testing.assert_array_equal(a.cluster_centers_, b.cluster_centers_)
        assert a.inertia_ == b.inertia_ and a.n_iter_ == b.n_iter_
    else:
        np.testing.assert_allclose(a.cluster_centers_, b.cluster_centers_, rtol=rtol, atol=rtol)
        assert a.inertia_ == pytest.approx(b.inertia_, rel=rtol)
    np.testing.assert_array_equal(a.labels_, b.labels_)


@pytest.mark.parametrize("params", PARAMS, ids=IDS)
def test_same_blocks_give_identical_fits_on_every_scheduler(x, params, client):
    dx = da.from_array(x, chunks=(200, 3))
    with dask.config.set(scheduler="synchronous"):
        sync = _fit(dx, params)
    with dask.config.set(scheduler="threads"):
        threads = _fit(dx, params)
    on_cluster = _fit(dx, params)  # the module's distributed client
    _same(threads, sync, rtol=0)
    _same(on_cluster, sync, rtol=0)


@pytest.mark.parametrize("params", PARAMS, ids=IDS)
def test_other_chunkings_and_sources_agree_to_float_tolerance(x, params, client, tmp_path):
    reference = _fit(x, params)
    _same(_fit(x.copy(), params), reference, rtol=0)  # NumPy twice: identical
    store = zarr.create_array(str(tmp_path / "x.zarr"), shape=x.shape, chunks=(128, 3),
                              dtype="float64")
    store[:] = x
    with dask.config.set(scheduler="threads"):
        runs = {
            "rows of 97": _fit(da.from_array(x, chunks=(97, 3)), params),
            "one block": _fit(da.from_array(x, chunks=x.shape), params),
            "chunked along features": _fit(da.from_array(x, chunks=(300, 1)), params),
        }
    runs["Zarr path on the cluster"] = _fit(str(tmp_path / "x.zarr"), params)
    for name, model in runs.items():
        try:
            _same(model, reference, rtol=1e-9)
        except AssertionError as exc:
            raise AssertionError(f"{name} differs from the NumPy fit") from exc


def test_a_different_random_state_only_matters_for_restarts(x):
    one = SoftKMeans(4, random_state=1).fit(x)
    other = SoftKMeans(4, random_state=2).fit(x)
    _same(one, other, rtol=0)  # n_init=1 uses no randomness at all
