"""Data far larger than the cluster, and workers too small for a pass.

Real worker processes with real memory limits (the nanny restarts a worker that passes 95%
of its limit, and a worker pauses at 80%): 2 workers x 512 MiB = 1 GiB against 4 GiB of
float32 data written by ``write_blobs``, fitted with the default parameters
(``persist="auto"``, which chooses to stream; ``compute_labels=True``, which leaves a lazy
``labels_``) and compared with the same fit on the data in memory.  Then 2 workers x 300
MiB, which cannot hold the compiled kernel, a block and a pass's temporaries below their
pause threshold: the fit must fail at once with an error that says so.
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
N_SAMPLES, N_FEATURES, N_CLUSTERS = 2**23, 128, 4  # 4 GiB of float32


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    path = tmp_path_factory.mktemp("big") / "blobs.zarr"
    datasets.write_blobs(path, N_SAMPLES, N_FEATURES, N_CLUSTERS, chunk_rows=32_768, n_threads=2)
    yield path
    shutil.rmtree(path)  # 2 GiB: do not leave it to pytest's retention of old tmp dirs


@pytest.mark.slow
def test_a_whole_fit_with_defaults_streams_data_four_times_the_workers_memory(big):
    from distributed import Client, LocalCluster

    x = as_data(str(big / "X"))
    group = zarr.open_group(str(big), mode="r")
    with LocalCluster(n_workers=2, threads_per_worker=1, memory_limit=WORKER_MEMORY,
                      processes=True, dashboard_address=None) as cluster, Client(cluster) as client:
        limits = [w["memory_limit"] for w in client.scheduler_info()["workers"].values()]
        assert sum(limits) * 4 <= x.nbytes
        pids = client.run(lambda: __import__("os").getpid())

        streamed = SoftKMeans(N_CLUSTERS).fit(str(big / "X"))
        assert streamed.persisted_ is False
        labels = streamed.labels_  # lazy: usable, read block by block when asked
        first, last = labels.blocks[0].compute(), labels.blocks[-1].compute()
        full_passes = sum(r["data"] == "full" for r in streamed.history_)
        assert full_passes >= 3  # Lloyd and the swap check stream the whole array

        # No worker was restarted (same addresses, same processes) ...
        assert client.run(lambda: __import__("os").getpid()) == pids
        # ... none spilled a block of data to disk, and none holds any data after the
        # passes.  Where xarray is installed (Dask's arrays import it, with pandas and
        # pyarrow) a worker holding the kernel sits near distributed's 60% target, so
        # the small statistics of a pass may be spilled on their way to the reduction.
        block_bytes = x.chunks[0][0] * N_FEATURES * x.dtype.itemsize

        def spilled(dask_worker):
            metrics = dask_worker.data.cumulative_metrics
            return len(dask_worker.data.slow), metrics.get(("disk-write", "bytes"), 0)

        for left_on_disk, spilled_bytes in client.run(spilled).values():
            assert left_on_disk == 0
            assert spilled_bytes < block_bytes
        assert workers_hold_nothing(client)

    data = group["X"][:]
    in_memory = SoftKMeans(N_CLUSTERS, compute_labels=False).fit(data)
    np.testing.assert_array_equal(first, in_memory.predict(data[: len(first)]))
    np.testing.assert_array_equal(last, in_memory.predict(data[len(data) - len(last) :]))
    del data
    np.testing.assert_allclose(streamed.cluster_centers_, in_memory.cluster_centers_, rtol=1e-6)
    assert streamed.inertia_ == pytest.approx(in_memory.inertia_, rel=1e-6)
    assert [r["phase"] for r in streamed.history_] == [r["phase"] for r in in_memory.history_]


@pytest.mark.slow
def test_workers_too_small_for_a_pass_fail_at_once_with_the_reason(tmp_path):
    """2 x 300 MiB workers: a worker holding the kernel already sits near its 80% pause
    threshold, and would pause for good at its first block; where xarray is installed
    (Dask's arrays then import it, with pandas and pyarrow) loading the kernel takes it past
    the nanny's 95% and it is lost.  Either way the fit refuses before its first pass,
    naming the worker, its limit and the fix, within 30 s."""
    import time

    from distributed import Client, LocalCluster

    from dask_softkmeans.errors import WorkerMemoryError

    path = tmp_path / "blobs.zarr"
    datasets.write_blobs(path, 400_000, 32, 4, chunk_rows=200_000)
    with LocalCluster(n_workers=2, threads_per_worker=1, memory_limit=300 * 2**20,
                      processes=True, dashboard_address=None) as cluster, Client(cluster):
        start = time.perf_counter()
        with pytest.raises(WorkerMemoryError, match=r"Worker tcp://\S+ has a memory limit of "
                           r"300\.00 MiB.*(pass needs|loaded the compiled kernel).*Give the "
                           r"workers more memory"):
            SoftKMeans(4).fit(str(path / "X"))
        assert time.perf_counter() - start < 30
