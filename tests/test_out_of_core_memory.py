"""Streaming a Zarr array twice the size of all the workers' memory limits together.

Real worker processes with real memory limits (the nanny restarts a worker that passes 95%
of its limit): 2 workers x 512 MiB = 1 GiB against 2 GiB of float32 data written by
``write_blobs``.  The limits are larger than the issue's example (2 x 300 MiB for 1.2 GB)
because a bare worker process here already takes ~210 MiB (dask.array imports pydata
sparse and numba, installed beside the dev dependencies), so a 300 MiB worker pauses at
80% before it has run anything.  The test runs a whole fit (``persist="auto"``, which
chooses to stream) and compares it with the same fit on the data in memory.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import zarr
from test_out_of_core import workers_hold_nothing

from dask_softkmeans import SoftKMeans, datasets
from dask_softkmeans.inputs import as_data

WORKER_MEMORY = 512 * 2**20
N_SAMPLES, N_FEATURES, N_CLUSTERS = 2**22, 128, 4  # 2 GiB of float32


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    path = tmp_path_factory.mktemp("big") / "blobs.zarr"
    datasets.write_blobs(path, N_SAMPLES, N_FEATURES, N_CLUSTERS, chunk_rows=32_768, n_threads=2)
    yield path
    shutil.rmtree(path)  # 2 GiB: do not leave it to pytest's retention of old tmp dirs


def test_a_whole_fit_streams_in_workers_half_the_data_size(big):
    from distributed import Client, LocalCluster

    x = as_data(str(big / "X"))
    group = zarr.open_group(str(big), mode="r")
    with LocalCluster(n_workers=2, threads_per_worker=1, memory_limit=WORKER_MEMORY,
                      processes=True, dashboard_address=None) as cluster, Client(cluster) as client:
        limits = [w["memory_limit"] for w in client.scheduler_info()["workers"].values()]
        assert sum(limits) <= x.nbytes / 2
        pids = client.run(lambda: __import__("os").getpid())

        streamed = SoftKMeans(N_CLUSTERS, persist="auto", compute_labels=False).fit(
            str(big / "X"))
        assert streamed.persisted_ is False
        full_passes = sum(r["data"] == "full" for r in streamed.history_)
        assert full_passes >= 3  # Lloyd and the swap check stream the whole array

        # No worker was restarted (same addresses, same processes) ...
        assert client.run(lambda: __import__("os").getpid()) == pids
        # ... none spilled to disk, and none holds any data after the passes.
        def spilled(dask_worker):
            metrics = dask_worker.data.cumulative_metrics
            return len(dask_worker.data.slow), metrics.get(("disk-write", "count"), 0)

        assert set(client.run(spilled).values()) == {(0, 0)}
        assert workers_hold_nothing(client)

    in_memory = SoftKMeans(N_CLUSTERS, compute_labels=False).fit(group["X"][:])
    np.testing.assert_allclose(streamed.cluster_centers_, in_memory.cluster_centers_, rtol=1e-6)
    assert streamed.inertia_ == pytest.approx(in_memory.inertia_, rel=1e-6)
    assert [r["phase"] for r in streamed.history_] == [r["phase"] for r in in_memory.history_]
