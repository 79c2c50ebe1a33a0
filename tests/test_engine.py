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
        params = [k for k in graph if str(k).startswith("PassParams-")]
        assert len(params) == 1
        for key, task in graph.items():
            if "pass_statistics" in str(key):
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
    from dask_softkmeans import engine as _engine
    from dask_softkmeans.engine import threads as _threads
    from dask_softkmeans.engine.reduce import sum_vectors
    from dask_softkmeans.kernels import PassParams, block_statistics

    x = np.random.default_rng(0).normal(size=(3 * _threads.LOCAL_BLOCK_ROWS + 7, 3))
    centers = x[:5]
    pooled = _engine.Runner(x).statistics(PassParams(centers, 0.7))
    blocks = [block_statistics(x[i : i + _threads.LOCAL_BLOCK_ROWS], centers, 0.7)
              for i in range(0, len(x), _threads.LOCAL_BLOCK_ROWS)]
    np.testing.assert_array_equal(pooled, sum_vectors(*blocks))


@pytest.mark.parametrize(
    "rows, holders, threads, loads",
    [
        # 10 and 6 equal blocks, as one persist left them: 8 and 8.
        ([5] * 16, [("a",)] * 10 + [("b",)] * 6, {"a": 1, "b": 1}, {"a": 40, "b": 40}),
        # Everything on one worker of three, the others with 2 threads and 1.
        ([6] * 8, [("a",)] * 8, {"a": 1, "b": 2, "c": 1}, {"a": 12, "b": 24, "c": 12}),
        # A block held twice goes to the less busy holder; unheld blocks go anywhere.
        ([4, 4, 4], [("a", "b"), ("a",), ()], {"a": 1, "b": 1}, {"a": 8, "b": 4}),
        # One block: nothing to balance.
        ([7], [("b",)], {"a": 1, "b": 1}, {"b": 7}),
    ],
)
def test_blocks_are_shared_out_by_rows_per_thread(rows, holders, threads, loads):
    from dask_softkmeans.engine.holders import balanced_assignment

    plan = balanced_assignment(rows, holders, threads)
    assert sorted(i for index in plan.values() for i in index) == list(range(len(rows)))
    assert {w: sum(rows[i] for i in index) for w, index in plan.items()} == loads


def _held_blocks(dask_worker) -> int:
    return sum(len(actor._xs) for actor in dask_worker.state.actors.values())


def test_persisted_passes_run_on_balanced_block_holders(client):
    """Data persisted on one worker: the pass runs on both, through one block holder (actor)
    each, and equals the threaded scheduler's pass bit for bit; the holders go when the
    data do."""
    import time

    from distributed import futures_of, wait

    from dask_softkmeans import engine as _engine
    from dask_softkmeans.kernels import PassParams

    rng = np.random.default_rng(5)
    x = rng.normal(size=(4000, 3))
    centers = x[:4] + 0.1
    first, second = sorted(client.scheduler_info()["workers"])
    X = client.persist(da.from_array(x, chunks=500), workers=[first])
    wait(X)
    assert {w for f in futures_of(X) for w in client.who_has(f)[f.key]} == {first}
    with dask.config.set(scheduler="threads"):
        expected = _engine.Runner(da.from_array(x, chunks=500)).statistics(PassParams(centers, 0.5))
    runner = _engine.Runner(X)
    for _ in range(2):  # the holders are made by the first pass and used by the next
        np.testing.assert_array_equal(runner.statistics(PassParams(centers, 0.5)), expected)
    assert client.run(_held_blocks) == {first: 4, second: 4}

    del X, runner  # no garbage collection needed: the holders are released at once
    deadline = time.monotonic() + 10
    while any(client.run(_held_blocks).values()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert client.run(_held_blocks) == {first: 0, second: 0}


def test_block_holders_use_every_thread_of_their_worker_and_the_weights():
    """One worker with 2 threads: its holder runs the blocks on 2 threads; persisted
    weights travel with their blocks; the pass equals the threaded scheduler's bit for bit."""
    from distributed import Client, LocalCluster, wait

    from dask_softkmeans import engine as _engine
    from dask_softkmeans.engine import holders as _holders
    from dask_softkmeans.kernels import PassParams

    rng = np.random.default_rng(6)
    x = rng.normal(size=(3000, 4))
    w = rng.uniform(0.5, 2.0, size=3000)
    centers = x[:3] + 0.1
    with dask.config.set(scheduler="threads"):
        expected = _engine.Runner(da.from_array(x, chunks=400),
                                  da.from_array(w, chunks=400)).statistics(PassParams(centers, 0.3))
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        X, W = client.persist([da.from_array(x, chunks=400), da.from_array(w, chunks=400)])
        wait([X, W])
        runner = _engine.Runner(X, W)
        for _ in range(2):
            np.testing.assert_array_equal(runner.statistics(PassParams(centers, 0.3)), expected)
        assert len(_holders.registry[runner._futures[1][0]].actors) == 1
        (held, threads), = client.run(lambda dask_worker: (
            len(next(iter(dask_worker.state.actors.values()))._blocks),
            next(iter(dask_worker.state.actors.values()))._pool._max_workers)).values()
        assert (held, threads) == (8, 2)


def test_per_sample_results_of_numpy_data_on_the_local_threads(blobs, monkeypatch):
    """With small sub-blocks, NumPy data run as many sub-blocks on the local threads:
    the results equal those of one sub-block, and the same call from inside one of the
    pool's own threads runs there instead of waiting for the pool (which would wait
    forever once every thread of the pool does)."""
    from dask_softkmeans import SoftKMeans
    from dask_softkmeans.engine import threads as _threads
    from dask_softkmeans.kernels import common as _kernels

    x = np.repeat(blobs[0], 10, axis=0)  # 20,000 rows
    model = SoftKMeans(4).fit(blobs[0])
    methods = (model.predict, model.transform, model.predict_proba)
    whole = [method(x) for method in methods]
    monkeypatch.setattr(_kernels, "TEMPORARY_ELEMENTS", 4096)  # 1,024 rows a sub-block
    assert _kernels.sub_block_rows(4, 3) * 10 < len(x)
    for method, expected in zip(methods, whole, strict=True):
        np.testing.assert_allclose(method(x), expected, rtol=1e-12, atol=1e-12)
    pool = _threads.thread_pool()
    inside = [pool.submit(model.predict, x) for _ in range(_threads.LOCAL_THREADS)]
    for future in inside:
        np.testing.assert_array_equal(future.result(timeout=60), whole[0])
