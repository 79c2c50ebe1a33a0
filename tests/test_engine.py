"""One pass over NumPy, Dask and Zarr data: the public soft_statistics."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pytest
import zarr

from dask_softkmeans import soft_statistics
from dask_softkmeans.errors import ChunkingError, InputError


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1000, 3)) + np.repeat(rng.normal(scale=5, size=(4, 3)), 250, axis=0)
    return x, x[[0, 250, 500, 750]] + 0.3


def test_dask_and_zarr_give_the_numpy_statistics(data, tmp_path):
    x, c = data
    ref = soft_statistics(x, c, 2.0)
    store = zarr.create_array(str(tmp_path / "x.zarr"), shape=x.shape, chunks=(128, 3),
                              dtype="float64")
    store[:] = x
    for other in (da.from_array(x, chunks=(97, 3)), store, str(tmp_path / "x.zarr")):
        got = soft_statistics(other, c, 2.0, split_every=3)
        for name in ("counts", "sums", "gradient", "hard_counts"):
            np.testing.assert_allclose(getattr(got, name), getattr(ref, name), rtol=1e-12,
                                       atol=1e-9)
        for name in ("free_energy", "entropy", "inertia", "distortion"):
            assert getattr(got, name) == pytest.approx(getattr(ref, name), rel=1e-12)


def test_gradient_is_the_derivative_of_the_free_energy(data):
    """dF/dc = 2 (N c - S), checked against central finite differences."""
    x, c = data
    t = 3.0
    stats = soft_statistics(x, c, t)
    h = 1e-5
    for k, j in [(0, 0), (2, 1), (3, 2)]:
        up, down = c.copy(), c.copy()
        up[k, j] += h
        down[k, j] -= h
        numeric = (soft_statistics(x, up, t).free_energy
                   - soft_statistics(x, down, t).free_energy) / (2 * h)
        assert stats.gradient[k, j] == pytest.approx(numeric, rel=1e-5, abs=1e-4)


def test_sample_weight_counts_as_copies(data):
    x, c = data
    w = np.arange(len(x)) % 3
    weighted = soft_statistics(da.from_array(x, chunks=200), c, 1.0,
                               sample_weight=da.from_array(w.astype(float), chunks=333))
    copies = soft_statistics(np.repeat(x, w, axis=0), c, 1.0)
    np.testing.assert_allclose(weighted.sums, copies.sums, rtol=1e-10)
    assert weighted.free_energy == pytest.approx(copies.free_energy, rel=1e-10)
    assert weighted.n_samples == pytest.approx(w.sum())


def test_graph_holds_the_centers_once_and_does_not_grow(data, monkeypatch):
    """One key carries the parameters; block tasks refer to it; passes build equal graphs."""
    import pickle

    x, _ = data
    centers = np.random.default_rng(0).normal(size=(64, 3))  # 1.5 kB of float64
    dx = da.from_array(x, chunks=100).persist()
    sizes = []
    original = dask.compute

    def spy(*args, **kwargs):
        graph = dict(args[0].__dask_graph__())
        sizes.append(len(graph))
        params = [k for k in graph if str(k).startswith("dict-")]
        assert len(params) == 1
        for key, task in graph.items():
            if "_statistics_task" in str(key):
                assert len(pickle.dumps(task)) < 1000  # no copy of the centers
        return original(*args, **kwargs)

    monkeypatch.setattr(dask, "compute", spy)
    for _ in range(3):
        soft_statistics(dx, centers, 1.0)
    assert len(sizes) == 3 and len(set(sizes)) == 1


def test_runs_on_a_distributed_cluster(data, client):
    x, c = data
    got = soft_statistics(da.from_array(x, chunks=128), c, 0.5)
    ref = soft_statistics(x, c, 0.5)
    np.testing.assert_allclose(got.sums, ref.sums, rtol=1e-12)


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros(5), "2-D"),
        (np.zeros((2, 2, 2)), "2-D"),
        (np.zeros((0, 3)), "empty"),
        (np.array([["a", "b"]]), "real numbers"),
        (np.array([[1.0, np.nan, 0.0]]), "NaN"),
    ],
)
def test_bad_input_is_refused_with_a_fix(bad, message):
    with pytest.raises(InputError, match=message):
        soft_statistics(bad, np.zeros((1, bad.shape[-1] if bad.ndim > 1 else 1)), 1.0)


def test_bad_centers_and_temperature_and_chunks():
    x = np.zeros((4, 2))
    with pytest.raises(InputError, match="shape"):
        soft_statistics(x, np.zeros((2, 3)), 1.0)
    with pytest.raises(InputError, match="temperature"):
        soft_statistics(x, np.zeros((2, 2)), -1.0)
    unknown = da.from_array(np.zeros((10, 2)), chunks=5)
    unknown = unknown[unknown[:, 0] > -1]
    with pytest.raises(ChunkingError, match="compute_chunk_sizes"):
        soft_statistics(unknown, np.zeros((2, 2)), 1.0)


def test_feature_chunks_are_rechunked_not_refused(data):
    x, c = data
    got = soft_statistics(da.from_array(x, chunks=(100, 1)), c, 1.0)
    assert got.counts.sum() == pytest.approx(len(x))


def test_integer_input_is_converted():
    got = soft_statistics(np.array([[0, 0], [2, 0]]), [[1.0, 0.0]], 0.0)
    assert got.inertia == pytest.approx(2.0)


def test_split_every_below_two_is_refused(data):
    x, c = data
    with pytest.raises(InputError, match="split_every"):
        soft_statistics(da.from_array(x, chunks=100), c, 1.0, split_every=1)


def test_in_memory_passes_do_not_depend_on_the_thread_count():
    """Fixed-size row blocks summed in order: the same sums on a 1-core and a 64-core machine."""
    from dask_softkmeans import _engine
    from dask_softkmeans._kernels import block_statistics

    x = np.random.default_rng(0).normal(size=(3 * _engine.LOCAL_BLOCK_ROWS + 7, 3))
    centers = x[:5]
    pooled = _engine.Runner(x).statistics(centers, 0.7)
    blocks = [block_statistics(x[i : i + _engine.LOCAL_BLOCK_ROWS], centers, 0.7)
              for i in range(0, len(x), _engine.LOCAL_BLOCK_ROWS)]
    np.testing.assert_array_equal(pooled, _engine._sum_vectors(*blocks))
