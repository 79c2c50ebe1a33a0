"""Local Zarr paths on a real cluster: a relative path means the caller's working directory,
whatever the workers' own; a worker that cannot see the data's folder stops the fit with an
error instead of reading zeros.  A real ``dask scheduler`` and a real ``dask worker`` started
from another directory, as on a cluster whose workers start in their home directories."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import zarr

from dask_softkmeans import SoftKMeans, datasets, io
from dask_softkmeans.errors import StoreNotFoundError

#: Real worker processes (or scheduler and worker commands) in every test.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def elsewhere_cluster(tmp_path_factory, dask_processes):
    """A scheduler and one single-threaded worker (with its nanny) started from a directory
    that holds no data."""
    directory = tmp_path_factory.mktemp("cluster")
    (directory / "elsewhere").mkdir()
    with dask_processes(directory, ["--host", "127.0.0.1"],
                        [["--host", "127.0.0.1", "--nthreads", "1", "--memory-limit", "1GiB"]],
                        worker_cwd=directory / "elsewhere") as address:
        yield address


def test_relative_paths_are_the_callers_on_a_cluster_started_elsewhere(
        elsewhere_cluster, tmp_path, monkeypatch):
    """Before: the worker found no chunk files at ``blobs.zarr/X`` from its own directory,
    read zeros and the fit stopped with "constant data" (K=1 "fitted" the origin);
    ``write_predictions`` wrote its chunks under the worker's directory."""
    from distributed import Client

    monkeypatch.chdir(tmp_path)
    datasets.write_blobs("blobs.zarr", 3000, 3, 2, chunk_rows=500, center_box=20.0, random_state=1)
    x = zarr.open_array("blobs.zarr/X", mode="r")[:]
    expected = SoftKMeans(2).fit(x)
    with Client(elsewhere_cluster):
        for data in ("blobs.zarr/X", zarr.open_array("blobs.zarr/X", mode="r")):
            model = SoftKMeans(2).fit(data)
            np.testing.assert_allclose(model.cluster_centers_, expected.cluster_centers_,
                                       rtol=1e-6)
        model.write_predictions("blobs.zarr/X", "predictions.zarr")
    labels = zarr.open_array("predictions.zarr/labels", mode="r")[:]
    np.testing.assert_array_equal(labels, expected.labels_)


def test_a_folder_the_reader_cannot_see_is_an_error_not_zeros(tmp_path):
    """The array was opened (its metadata read), then its folder is not there where the
    blocks are read or written, as on a worker without the shared filesystem."""
    datasets.write_blobs(tmp_path / "b.zarr", 100, 2, 2, chunk_rows=50)
    array = zarr.open_array(str(tmp_path / "b.zarr/X"), mode="r")
    out = io.write_row_blocks(io.to_dask(array), lambda b: {"y": b[:, 0]}, {},
                              tmp_path / "out.zarr", {"y": (np.float32, None)})
    np.testing.assert_array_equal(out["y"][:], array[:, 0])
    shutil.move(tmp_path / "b.zarr", tmp_path / "moved.zarr")
    with pytest.raises(StoreNotFoundError, match=r"no such folder.*same path"):
        io.read_rows(array, 0, 10)
    with pytest.raises(StoreNotFoundError, match="no such folder"):
        SoftKMeans(2).fit(array)
    moved = zarr.open_array(str(tmp_path / "moved.zarr/X"), mode="r")
    target = zarr.open_group(str(tmp_path / "out.zarr"), mode="r+")["y"]
    shutil.rmtree(tmp_path / "out.zarr")
    with pytest.raises(StoreNotFoundError, match="Cannot write to"):
        io.arrays._write_block(moved[:50], 0, 50, {"targets": {"y": target},
                                             "func": lambda b: {"y": b[:, 0]}, "params": {}})
