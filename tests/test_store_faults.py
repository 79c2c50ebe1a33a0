"""Stores that fail: transient read errors retried then named, interrupted writes never
complete-looking, ``storage_options`` where they apply.  Real Zarr stores under
``tmp_path``; the faulty ones wrap a real local store and fail some of its reads."""

from __future__ import annotations

import collections
import errno
import os
import signal
import subprocess
import sys
import time

import dask
import dask.array as da
import numpy as np
import pytest
import zarr
from click.testing import CliRunner
from zarr.storage import LocalStore, WrapperStore

from dask_softkmeans import SoftKMeans, datasets, io
from dask_softkmeans.cli import main
from dask_softkmeans.errors import IncompleteOutputError, InputError, StoreReadError
from dask_softkmeans.io import retrying
from dask_softkmeans.io.stores import MARKER

#: What each faulty store does, by its root: (failures of each chunk key before it reads
#: well, those of some keys, keys that always fail, the exception).  Kept here, not on the
#: store, so that every copy of a store (zarr makes some, tasks unpickle others) follows it.
PLANS: dict[str, tuple[int, dict[str, int], frozenset[str], type[Exception]]] = {}
#: Gets of each (root, key), failed or not.
GETS: collections.Counter = collections.Counter()


class FaultyStore(WrapperStore):
    """A real local store whose chunk reads fail as its plan says, as an object store
    answering 503 would (``OSError``, as s3fs raises it)."""

    async def get(self, key, prototype, byte_range=None):
        root = str(self._store.root)
        GETS[root, key] += 1
        fails, fails_of, broken, error = PLANS.get(root, (0, {}, frozenset(), OSError))
        if key.startswith("c/") and (key in broken or GETS[root, key] <= fails_of.get(key, fails)):
            raise error(errno.EBUSY, f"store busy reading {key}")
        return await self._store.get(key, prototype, byte_range)


def faulty(path, fails: int = 0, *, fails_of: dict[str, int] | None = None,
           broken: tuple[str, ...] = (), error: type[Exception] = OSError) -> zarr.Array:
    """The array at ``path`` read through a :class:`FaultyStore` with a fresh plan: each
    chunk key fails its first ``fails`` reads (``fails_of[key]`` for some), those in
    ``broken`` every read, with ``error``."""
    root = str(path)
    PLANS[root] = (fails, fails_of or {}, frozenset(broken), error)
    for key in [key for key in GETS if key[0] == root]:
        del GETS[key]
    return zarr.open_array(store=FaultyStore(LocalStore(root, read_only=True)), mode="r")


def gets(path, key: str) -> int:
    return GETS[str(path), key]


@pytest.fixture(scope="module")
def data_path(tmp_path_factory):
    """12 Zarr chunks of 500 rows (one block each), 3 features, 3 well-separated blobs."""
    path = tmp_path_factory.mktemp("faults") / "blobs.zarr"
    datasets.write_blobs(path, 6_000, 3, 3, chunk_rows=500, center_box=20.0)
    return path


@pytest.fixture(autouse=True)
def quick_retries():
    """Retries as configured by default, without their waits."""
    with dask.config.set({retrying.BACKOFF_KEY: "1ms"}):
        yield


# -- transient errors --------------------------------------------------------------------
@pytest.mark.parametrize("persist", [False, True])
def test_transient_read_errors_are_retried_and_change_nothing(data_path, persist):
    """Every chunk fails its first two reads: the fit retries them and ends exactly where a
    fit on the clean store ends (streamed: the passes' reads; persisted: the Dask getter)."""
    clean = SoftKMeans(3, persist=persist, compute_labels=False).fit(
        zarr.open_array(str(data_path / "X"), mode="r"))
    model = SoftKMeans(3, persist=persist, compute_labels=False).fit(
        faulty(data_path / "X", fails=2))
    np.testing.assert_array_equal(model.cluster_centers_, clean.cluster_centers_)
    assert model.n_iter_ == clean.n_iter_
    assert all(gets(data_path / "X", f"c/{i}/0") >= 3 for i in range(12))


def test_read_rows_retries_chunk_by_chunk(data_path):
    """After a failed read of rows over four chunks, they are read again one by one: the
    two that fail three times are tried until they read, the others once more."""
    x = zarr.open_array(str(data_path / "X"), mode="r")[:]
    path = data_path / "X"
    array = faulty(path, fails_of={"c/2/0": 3, "c/3/0": 3})
    np.testing.assert_array_equal(io.read_rows(array, 700, 2_300), x[700:2_300])
    assert [gets(path, f"c/{i}/0") for i in range(6)] == [0, 2, 4, 4, 2, 0]


def test_a_chunk_that_always_fails_is_named_after_bounded_retries(data_path):
    path = data_path / "X"
    with dask.config.set({retrying.RETRIES_KEY: 2}):
        with pytest.raises(StoreReadError) as info:
            io.read_rows(faulty(path, broken=("c/3/0",)), 1_400, 2_100)
    message = str(info.value)
    for part in (str(path), "rows 1400:2100", "chunk (3, 0)", "'c/3/0'", "3 times",
                 "OSError", "store busy reading c/3/0", "softkmeans.read-retries' (now 2)"):
        assert part in message
    assert isinstance(info.value, OSError)  # what a caller of a store would catch anyway
    assert gets(path, "c/3/0") == 3 and gets(path, "c/2/0") == 2  # 1 + 2 retries; 2 reads


def test_no_retries_names_the_rows_chunks(data_path):
    path = data_path / "X"
    with dask.config.set({retrying.RETRIES_KEY: 0}), pytest.raises(
            StoreReadError, match=r"row chunks 2 to 4 failed 1 time in a row"):
        io.read_rows(faulty(path, broken=("c/3/0",)), 1_400, 2_100)
    assert gets(path, "c/3/0") == 1


def test_a_fit_on_a_failing_store_raises_the_named_chunk(data_path, client):
    """A chunk that never reads ends the fit with the chunk's name, raised on a worker."""
    with pytest.raises(StoreReadError, match=r"'c/5/0'.* 5 times in a row"):
        SoftKMeans(3, persist=False).fit(faulty(data_path / "X", broken=("c/5/0",)))


@pytest.mark.parametrize("error", [PermissionError, ValueError])
def test_lasting_errors_are_raised_at_once(data_path, error):
    path = data_path / "X"
    with pytest.raises(error, match="store busy"):
        io.read_rows(faulty(path, fails=1, error=error), 0, 500)
    assert gets(path, "c/0/0") == 1


def test_a_damaged_chunk_is_not_retried(tmp_path):
    """A bad codec frame is the data's fault, not the store's: raised after one read."""
    path = tmp_path / "z.zarr"
    array = zarr.create_array(str(path), shape=(100, 2), chunks=(50, 2), dtype="f4",
                              compressors=[zarr.codecs.ZstdCodec()])
    array[:] = 1.0
    (path / "c" / "1" / "0").write_bytes(b"not a zstd frame at all")
    with pytest.raises(Exception) as info:
        io.read_rows(faulty(path), 0, 100)
    assert not isinstance(info.value, StoreReadError)
    assert gets(path, "c/1/0") == 1


def test_transient_errors_of_the_fsspec_backends():
    """The exceptions s3fs and aiohttp raise for passing failures are retried; answers that
    say what is stored are not."""
    botocore = pytest.importorskip("botocore.exceptions")
    aiohttp = pytest.importorskip("aiohttp")
    info = aiohttp.RequestInfo(url="http://host/k", method="GET", headers={}, real_url="http://host/k")
    transient = [
        OSError(errno.EBUSY, "SlowDown"),  # s3fs: a 503 once botocore's retries are spent
        OSError(121, "InternalError"),  # s3fs: a 500
        TimeoutError(), ConnectionResetError(),
        botocore.EndpointConnectionError(endpoint_url="http://host"),
        botocore.ConnectionClosedError(endpoint_url="http://host"),
        botocore.ReadTimeoutError(endpoint_url="http://host"),
        aiohttp.ServerDisconnectedError(),
        aiohttp.ClientResponseError(info, (), status=503),
    ]
    lasting = [FileNotFoundError(), PermissionError(), IsADirectoryError(), ValueError(),
               RuntimeError("codec"), aiohttp.ClientResponseError(info, (), status=403),
               StoreReadError("already retried"), KeyError("c/0/0")]
    assert [retrying.is_transient(exc) for exc in transient] == [True] * len(transient)
    assert [retrying.is_transient(exc) for exc in lasting] == [False] * len(lasting)


# -- interrupted writes ------------------------------------------------------------------
def first_until(block: np.ndarray, *, stop_at: float) -> dict[str, np.ndarray]:
    """Per-row results of a block, or an error for the blocks from row ``stop_at`` on."""
    if block[0, 0] >= stop_at:
        raise RuntimeError(f"interrupted at row {int(block[0, 0])}")
    return {"first": block[:, :1].astype(np.int32)}


def test_an_interrupted_write_is_marked_and_refused(tmp_path):
    x = da.from_array(np.arange(12_000, dtype=np.float64).reshape(6_000, 2) // 2,
                      chunks=(500, 2))
    out = tmp_path / "out.zarr"
    outputs = {"first": (np.int32, 1)}
    with pytest.raises(RuntimeError, match="interrupted at row"):
        io.write_row_blocks(x, first_until, {"stop_at": 3_000.0}, out, outputs)
    assert zarr.open_group(str(out), mode="r").attrs[MARKER] == {"complete": False}
    with pytest.raises(IncompleteOutputError, match=r"interrupted write.*overwrite=True"):
        io.open_array(out / "first")
    with pytest.raises(InputError, match="interrupted write"):
        SoftKMeans(2).fit(str(out / "first"))
    with pytest.raises(FileExistsError, match="left incomplete by an interrupted write"):
        io.write_row_blocks(x, first_until, {"stop_at": np.inf}, out, outputs)
    group = io.write_row_blocks(x, first_until, {"stop_at": np.inf}, out, outputs,
                                overwrite=True)
    assert group.attrs[MARKER] == {"complete": True}
    np.testing.assert_array_equal(io.open_array(out / "first")[:, 0],
                                  np.arange(6_000, dtype=np.int32))


def test_predictions_are_marked_complete_and_read_inside_their_tasks(data_path, tmp_path,
                                                                     client):
    """write_predictions over a Zarr array: one task per block that reads its own rows
    (no read task runs ahead), and a group marked complete at the end."""
    from distributed import get_task_stream

    model = SoftKMeans(3, compute_labels=False).fit(str(data_path / "X"))
    with get_task_stream() as stream:
        out = model.write_predictions(str(data_path / "X"), tmp_path / "p.zarr")
    prefixes = collections.Counter(str(task["key"]).split("-")[0] for task in stream.data)
    assert prefixes == {"_write_block": 12, "dict": 1}  # the blocks' tasks and what they share
    assert out.attrs[MARKER] == {"complete": True}
    x = zarr.open_array(str(data_path / "X"), mode="r")[:]
    np.testing.assert_array_equal(out["labels"][:], model.predict(x))


@pytest.mark.slow
def test_write_blobs_killed_mid_way_leaves_a_group_marked_incomplete(tmp_path):
    """A real interruption: the process writing a dataset is killed after its first chunks."""
    path = tmp_path / "big.zarr"
    code = ("from dask_softkmeans import datasets; datasets.write_blobs("
            f"{str(path)!r}, 50_000_000, 2, 2, chunk_rows=65_536, n_threads=1)")
    proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not (path / "X" / "c" / "1").exists():
            assert proc.poll() is None and time.monotonic() < deadline, "no chunk written"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    with pytest.raises(IncompleteOutputError, match="interrupted write"):
        io.open_array(path / "X")
    with pytest.raises(FileExistsError, match="incomplete"):
        datasets.write_blobs(path, 1_000, 2, 2)
    datasets.write_blobs(path, 1_000, 2, 2, overwrite=True)
    assert io.open_array(path / "X").shape == (1_000, 2)


def test_arrays_written_by_others_are_not_refused(tmp_path):
    """A group without the marker (not written by us) reads as complete."""
    group = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    group.create_array("X", data=np.ones((10, 2)))
    assert io.open_array(tmp_path / "g.zarr" / "X").shape == (10, 2)
    assert io.open_array(f"file://{tmp_path}/g.zarr/X").shape == (10, 2)


# -- storage_options ---------------------------------------------------------------------
def test_storage_options_apply_to_paths_only(data_path):
    x = np.random.default_rng(0).normal(size=(50, 2))
    for X in (x, da.from_array(x)):
        with pytest.raises(InputError, match="storage_options apply to a path or URL"):
            SoftKMeans(2).fit(X, storage_options={"anon": True})
    with pytest.raises(InputError, match="file://"):
        SoftKMeans(2).fit(str(data_path / "X"), storage_options={"anon": True})


def test_fit_takes_storage_options_with_a_url(data_path):
    model = SoftKMeans(3, compute_labels=False).fit(f"file://{data_path}/X",
                                                    storage_options={"auto_mkdir": False})
    expected = SoftKMeans(3, compute_labels=False).fit(str(data_path / "X"))
    np.testing.assert_array_equal(model.cluster_centers_, expected.cluster_centers_)


@pytest.mark.parametrize("command", ["fit", "predict"])
@pytest.mark.parametrize("value, message", [
    ("{not json", "not JSON"), ('["anon"]', "must be a JSON object")])
def test_cli_refuses_storage_options_that_are_not_a_json_object(command, value, message,
                                                                data_path, tmp_path):
    args = (["fit", str(data_path / "X")] if command == "fit" else
            ["predict", str(tmp_path / "m.npz"), str(data_path / "X"), str(tmp_path / "o.zarr")])
    result = CliRunner().invoke(main, [*args, "--storage-options", value])
    assert result.exit_code == 2
    assert "Invalid value for '--storage-options'" in result.output and message in result.output


def test_cli_predict_refuses_storage_options_for_local_paths(data_path, tmp_path):
    SoftKMeans(3).fit(np.random.default_rng(0).normal(size=(50, 3))).save(tmp_path / "m.npz")
    result = CliRunner().invoke(main, [
        "predict", str(tmp_path / "m.npz"), str(data_path / "X"), str(tmp_path / "o.zarr"),
        "--storage-options", '{"anon": true}'])
    assert result.exit_code == 2 and "local paths" in result.output


def test_cli_make_data_refuses_storage_options_for_a_local_path(tmp_path):
    result = CliRunner().invoke(main, [
        "make-data", str(tmp_path / "d.zarr"), "--n-samples", "100",
        "--storage-options", '{"anon": true}'])
    assert result.exit_code == 2 and "local path" in result.output
    assert not (tmp_path / "d.zarr").exists()


def test_cli_make_data_takes_storage_options_with_a_url(tmp_path):
    result = CliRunner().invoke(main, [
        "make-data", f"file://{tmp_path}/d.zarr", "--n-samples", "100", "--chunk-rows", "50",
        "--storage-options", '{"auto_mkdir": true}'])
    assert result.exit_code == 0, result.output
    assert zarr.open_array(str(tmp_path / "d.zarr" / "X"), mode="r").shape == (100, 8)
