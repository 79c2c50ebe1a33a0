"""The reduction tree of a pass: the same sums on every path, and on the cluster, not the client.

Guarantee: the same data in the same row blocks give bit-identical statistics on the
synchronous and threaded schedulers and on any number of distributed workers, persisted
or streamed, because every path adds the blocks' vectors along one tree over the block
indices.  On a cluster each worker sends only the sums of the largest tree nodes it holds,
so the bytes that reach the client do not grow with the number of blocks.
"""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pytest
import zarr

from dask_softkmeans.engine import Runner
from dask_softkmeans.engine.reduce import (
    combine_nodes,
    covering_nodes,
    fold_nodes,
    level_sizes,
    tree_sum,
)
from dask_softkmeans.inputs import as_data
from dask_softkmeans.kernels import PassParams, StatsLayout


@pytest.mark.parametrize("n_blocks", [1, 2, 7, 8, 9, 64, 65, 300])
@pytest.mark.parametrize("split_every", [2, 3, 8])
def test_any_split_of_the_blocks_between_workers_gives_the_tree_sum(n_blocks, split_every):
    """Blocks shared out at random (interleaved) or in runs: the workers' node sums
    complete to the same bits as the whole tree computed in one place."""
    rng = np.random.default_rng(n_blocks * 10 + split_every)
    parts = [rng.normal(size=6) * 10.0 ** rng.integers(-8, 8) for _ in range(n_blocks)]
    expected = tree_sum(list(parts), split_every)
    for n_workers in (1, 2, 5):
        for owner in (rng.integers(0, n_workers, n_blocks),
                      np.sort(rng.integers(0, n_workers, n_blocks))):
            values = {}
            for worker in np.unique(owner):
                blocks = np.flatnonzero(owner == worker).tolist()
                nodes = covering_nodes(blocks, n_blocks, split_every)
                sums = fold_nodes(nodes, iter(parts[i] for i in blocks), n_blocks, split_every)
                values.update(zip(nodes, sums, strict=True))
            np.testing.assert_array_equal(combine_nodes(values, n_blocks, split_every), expected)


def test_a_run_of_blocks_sends_a_few_nodes_per_level():
    """A worker holding a contiguous run sends at most 2 (split_every - 1) nodes per level."""
    for n_blocks, split_every in [(2048, 8), (8000, 8), (1000, 2)]:
        levels = len(level_sizes(n_blocks, split_every))
        for start, stop in [(0, n_blocks // 2), (n_blocks // 3, n_blocks), (17, n_blocks - 5)]:
            nodes = covering_nodes(range(start, stop), n_blocks, split_every)
            assert len(nodes) <= 2 * (split_every - 1) * levels
            covered = sorted(b for level, j in nodes
                             for b in range(j * split_every**level,
                                            min((j + 1) * split_every**level, n_blocks)))
            assert covered == list(range(start, stop))
    assert covering_nodes(range(1024), 2048, 8) == [(3, 0), (3, 1)]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    rng = np.random.default_rng(3)
    x = (rng.normal(size=(6000, 5)) + rng.integers(0, 4, size=(6000, 1)) * 6).astype(np.float32)
    path = str(tmp_path_factory.mktemp("reduction") / "x.zarr")
    zarr.create_array(path, shape=x.shape, chunks=(250, 5), dtype="float32")[:] = x
    params = PassParams(rng.normal(size=(4, 5)) * 6, 2.0, offset=x.mean(0).astype(float))
    return x, path, params


def _statistics(X, params, passes=2, persist=False):
    runner = Runner(X, persist=persist)
    results = [runner.statistics(params) for _ in range(passes)]
    for other in results[1:]:
        np.testing.assert_array_equal(other, results[0])
    return results[0], runner


def test_bit_identical_on_every_scheduler_and_number_of_workers(data):
    """24 blocks of 250 rows: the synchronous and threaded schedulers, then 1, 2 and 3
    in-process workers with the blocks persisted (holders) and streamed from Zarr (tasks on
    the first pass, readers after): the same bits."""
    from distributed import Client, LocalCluster

    x, path, params = data
    with dask.config.set(scheduler="sync"):
        expected, _ = _statistics(da.from_array(x, chunks=250), params)
    with dask.config.set(scheduler="threads"):
        np.testing.assert_array_equal(_statistics(as_data(path), params)[0], expected)
    for n_workers in (1, 2, 3):
        with LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=False,
                          dashboard_address=None) as cluster, Client(cluster) as client:
            got, runner = _statistics(da.from_array(x, chunks=250), params, persist=True)
            np.testing.assert_array_equal(got, expected)
            assert runner.persisted and 0 < runner.bytes_received < 24 * expected.nbytes
            # Blocks persisted by the caller, wherever the scheduler put them.
            got, _ = _statistics(client.persist(da.from_array(x, chunks=250)), params)
            np.testing.assert_array_equal(got, expected)
            got, runner = _statistics(as_data(path), params, passes=3)
            np.testing.assert_array_equal(got, expected)
            assert runner._source_holders is not None
    # And the total is the statistics of all the data.
    layout = StatsLayout(4, 5)
    assert layout.unpack(expected).weight == len(x)


def test_bytes_to_the_client_do_not_grow_with_the_blocks(client):
    """16 and 512 blocks of the same data persisted on 2 workers, each holding a run of
    blocks: the client receives a few node sums per worker either way, not one vector per
    block."""
    rng = np.random.default_rng(4)
    x = rng.normal(size=(16 * 512, 8))
    params = PassParams(rng.normal(size=(16, 8)), 1.0)
    received = {}
    for n_blocks in (16, 512):
        runner = Runner(da.from_array(x, chunks=len(x) // n_blocks), persist=True)
        vector = runner.statistics(params)
        received[n_blocks] = runner.bytes_received
        per_level = 2 * (runner.split_every - 1) * len(level_sizes(n_blocks, runner.split_every))
        # Two workers, each holding at most a few runs of blocks.
        assert runner.bytes_received <= 4 * per_level * vector.nbytes
    assert received[512] < 512 * vector.nbytes / 8
