"""Out of core: Zarr from paths and fsspec URLs, chunk-aligned blocks, one read per chunk per
pass, the persist decision, per-sample outputs written to Zarr, data generated chunk by chunk.

Real Zarr stores under tmp_path (and fsspec's in-process memory filesystem), a real
in-process LocalCluster; reads are counted by a store wrapper around the real store.
"""

from __future__ import annotations

import collections
import re
import time
import tracemalloc
import uuid

import dask.array as da
import numcodecs
import numpy as np
import pytest
import zarr
import zarr.codecs
from click.testing import CliRunner
from zarr.storage import LocalStore, WrapperStore

from dask_softkmeans import SoftKMeans, datasets, io
from dask_softkmeans.cli import main
from dask_softkmeans.engine import Runner, load_kernel, memory_for_data, should_persist
from dask_softkmeans.engine.memory import PERSIST_MEMORY_SHARE, _memory_in_use
from dask_softkmeans.errors import InputError, MissingDependencyError, StoreNotFoundError
from dask_softkmeans.inputs import as_data
from dask_softkmeans.io import chunk_files
from dask_softkmeans.kernels import PassParams
from dask_softkmeans.kernels.predict import labels_block as _labels_block

#: Reads per (store root, key), shared by the copies of a store that tasks unpickle
#: (the cluster here runs in this process, so every copy counts into this one dict).
READS: collections.Counter = collections.Counter()


class CountingStore(WrapperStore):
    """A real store that counts the reads of each key (chunk keys look like ``c/3/0``)."""

    async def get(self, key, prototype, byte_range=None):
        READS[str(self._store.root), key] += 1
        return await self._store.get(key, prototype, byte_range)

    def clear(self) -> None:
        for k in [k for k in READS if k[0] == str(self._store.root)]:
            del READS[k]

    def chunk_reads(self) -> dict[str, int]:
        return {key: n for (root, key), n in READS.items()
                if root == str(self._store.root) and key.startswith("c/")}


def workers_hold_nothing(client, timeout: float = 10.0, but: frozenset = frozenset()) -> bool:
    """True once no worker holds a key but those in ``but`` (results are released just
    after a compute returns)."""
    deadline = time.monotonic() + timeout
    while any(set(keys) - but for keys in client.has_what().values()):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def counted(path) -> tuple[zarr.Array, CountingStore]:
    store = CountingStore(LocalStore(str(path), read_only=True))
    store.clear()
    return zarr.open_array(store=store, mode="r"), store


@pytest.fixture(scope="module")
def blobs_path(tmp_path_factory):
    """20 Zarr chunks of 1,000 rows, 4 features, 3 well-separated blobs."""
    path = tmp_path_factory.mktemp("ooc") / "blobs.zarr"
    datasets.write_blobs(path, 20_000, 4, 3, chunk_rows=1_000, center_box=20.0)
    return path


# -- opening ---------------------------------------------------------------------------------
def test_file_url_and_storage_options_reach_fsspec(tmp_path):
    """storage_options are passed to the filesystem: auto_mkdir=False cannot create folders."""
    url = f"file://{tmp_path}/new/folder/b.zarr"
    with pytest.raises(FileNotFoundError):
        datasets.write_blobs(url, 100, 3, 2, storage_options={"auto_mkdir": False})
    datasets.write_blobs(url, 1_000, 3, 2, chunk_rows=100, storage_options={"auto_mkdir": True})
    x = io.open_array(url + "/X", storage_options={"auto_mkdir": True})
    np.testing.assert_array_equal(x[:], zarr.open_array(f"{tmp_path}/new/folder/b.zarr/X")[:])


def test_memory_url_end_to_end():
    """fsspec's memory:// filesystem: write, fit, and write predictions, all by URL."""
    root = f"memory://{uuid.uuid4().hex}"
    datasets.write_blobs(f"{root}/b.zarr", 3_000, 2, 2, chunk_rows=500, center_box=20.0)
    model = SoftKMeans(2, persist=False).fit(f"{root}/b.zarr/X")
    out = model.write_predictions(f"{root}/b.zarr/X", f"{root}/pred.zarr")
    truth = zarr.open_group(f"{root}/b.zarr", mode="r")["labels"][:]
    labels = out["labels"][:]
    assert len(set(zip(truth, labels, strict=True))) == 2  # the partition is recovered


def test_cloud_url_routes_to_its_fsspec_backend():
    """No network needed: s3:// reaches fsspec, whose missing backend is named with its fix."""
    pytest.importorskip("fsspec")
    try:
        import s3fs  # noqa: F401
    except ImportError:
        with pytest.raises(MissingDependencyError, match="s3fs"):
            io.open_array("s3://bucket/data.zarr/X", storage_options={"anon": True})
    else:  # pragma: no cover - only where s3fs is installed
        pytest.skip("s3fs installed: its error would need the network")


def test_storage_options_on_a_local_path_are_refused(blobs_path):
    with pytest.raises(InputError, match="file://"):
        io.open_array(blobs_path / "X", storage_options={"anon": True})


def test_missing_path_and_group_get_clear_errors(blobs_path, tmp_path):
    with pytest.raises(StoreNotFoundError, match="make-data"):
        io.open_array(tmp_path / "missing.zarr")
    with pytest.raises(InputError, match=r"group, not an array.*blobs.zarr/X"):
        io.open_array(blobs_path)


@pytest.mark.parametrize(("shape", "dtype", "message"), [
    ((10,), "float32", "2-D"),
    ((4, 5, 6), "float32", "2-D"),
    ((10, 3), str, "real numbers|numeric|dtype"),
])
def test_bad_arrays_are_refused_on_open(tmp_path, shape, dtype, message):
    path = tmp_path / "bad.zarr"
    zarr.create_array(str(path), shape=shape, dtype=dtype)
    with pytest.raises(InputError, match=message):
        io.open_array(path)
    with pytest.raises(InputError, match=message):
        SoftKMeans(2).fit(str(path))


# -- blocks aligned with chunks and shards ---------------------------------------------------
def test_blocks_are_whole_chunks_with_all_features(tmp_path):
    """Zarr chunks split the features; Dask blocks join whole row chunks and all features."""
    z = zarr.create_array(str(tmp_path / "a.zarr"), shape=(10_000, 6), chunks=(300, 2), dtype="f4")
    z[:] = np.arange(60_000, dtype="f4").reshape(10_000, 6)
    x = io.to_dask(z)
    assert x.chunks[1] == (6,)
    assert all(c % 300 == 0 for c in x.chunks[0][:-1])
    np.testing.assert_array_equal(x.compute(), z[:])


def test_small_chunks_are_joined_and_large_ones_kept(tmp_path):
    z = zarr.create_array(str(tmp_path / "a.zarr"), shape=(256_000, 4), chunks=(1_000, 4), dtype="f4")
    joined = io.to_dask(z, block_bytes=8 * 1_000 * 4 * 4)  # room for 8 chunks per block
    assert joined.chunks[0][0] == 8_000
    assert io.to_dask(z, block_bytes=1).chunks[0][0] == 1_000  # never split a chunk
    # Joining stops while there are MIN_BLOCKS blocks, for parallelism.
    assert io.to_dask(z, block_bytes=10**12).numblocks[0] >= io.MIN_BLOCKS


def test_sharded_array_is_read_shard_by_shard(tmp_path):
    z = zarr.create_array(str(tmp_path / "s.zarr"), shape=(8_000, 6), chunks=(250, 3),
                          shards=(1_000, 6), dtype="f4")
    z[:] = np.random.default_rng(0).standard_normal((8_000, 6)).astype("f4")
    x = as_data(z)
    assert x.chunks == ((1_000,) * 8, (6,))
    np.testing.assert_array_equal(x.compute(), z[:])


# -- chunks read straight from their files ---------------------------------------------------
#: name: (keywords of zarr.create_array besides the shape, read from the chunk files?)
LAYOUTS: dict[str, tuple[dict, bool]] = {
    "v3 raw": ({"dtype": "f4", "compressors": None}, True),
    "v3 blosc-lz4": ({"dtype": "f4", "compressors": zarr.codecs.BloscCodec(cname="lz4")}, True),
    "v3 zstd with checksum, float64": (
        {"dtype": "f8", "compressors": zarr.codecs.ZstdCodec(level=1, checksum=True)}, True),
    "v3 int16": ({"dtype": "i2", "compressors": None}, True),
    "v2 raw": ({"dtype": "<f4", "compressors": None, "zarr_format": 2}, True),
    "v2 zstd, float64": ({"dtype": "<f8", "zarr_format": 2}, True),
    "v2 blosc": ({"dtype": "<f4", "compressors": numcodecs.Blosc(), "zarr_format": 2}, True),
    "v3 gzip": ({"dtype": "f4", "compressors": zarr.codecs.GzipCodec()}, False),
    "v3 big-endian": ({"dtype": "f4", "compressors": None,
                       "serializer": zarr.codecs.BytesCodec(endian="big")}, False),
    "v2 big-endian": ({"dtype": ">f4", "compressors": None, "zarr_format": 2}, False),
    "v2 Fortran order": ({"dtype": "<f4", "compressors": None, "zarr_format": 2,
                          "order": "F"}, False),
    "v3 split features": ({"dtype": "f4", "chunks": (20, 2)}, False),
    "v3 sharded": ({"dtype": "f4", "chunks": (10, 5), "shards": (20, 5)}, False),
}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_read_rows_equals_zarr_whatever_the_layout(tmp_path, layout):
    """Ranges inside one chunk, across chunks, ending in the partial last chunk, empty; the
    layouts zarr knows better are read by zarr."""
    keywords, direct = LAYOUTS[layout]
    x = np.random.default_rng(0).normal(scale=100.0, size=(103, 5))
    path = str(tmp_path / "a.zarr")
    zarr.create_array(path, shape=x.shape, **{"chunks": (20, 5), **keywords})[:] = x
    z = zarr.open_array(path, mode="r")
    assert (chunk_files._chunk_files(z) is not None) == direct
    for start, stop in [(0, 103), (0, 20), (20, 60), (5, 17), (15, 45), (90, 103), (101, 103),
                        (40, 40), (60, 20), (95, 500), (-8, 103), (-50, -30)]:
        got, want = io.read_rows(z, start, stop), z[start:stop]
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(io.to_dask(z)[7:95, 1:4].compute(), z[7:95, 1:4])


@pytest.mark.parametrize("compressors", [None, zarr.codecs.BloscCodec()])
def test_read_rows_leaves_missing_and_damaged_chunks_to_zarr(tmp_path, compressors):
    """A chunk never written reads as the fill value; a truncated one fails as zarr fails."""
    path = tmp_path / "a.zarr"
    z = zarr.create_array(str(path), shape=(60, 3), chunks=(20, 3), dtype="f4", fill_value=7.0,
                          compressors=compressors)
    z[:20], z[40:] = 1.0, 2.0
    assert not (path / "c" / "1" / "0").exists()
    np.testing.assert_array_equal(io.read_rows(z, 10, 50), [[1.0] * 3] * 10 + [[7.0] * 3] * 20
                                  + [[2.0] * 3] * 10)
    chunk = path / "c" / "2" / "0"
    chunk.write_bytes(chunk.read_bytes()[: chunk.stat().st_size // 2])
    with pytest.raises(Exception) as theirs:
        z[40:60]
    with pytest.raises(type(theirs.value), match=re.escape(str(theirs.value))):
        io.read_rows(z, 40, 60)


@pytest.mark.parametrize("codec", [numcodecs.Blosc(), numcodecs.Zstd(),
                                   numcodecs.Zstd(level=3, checksum=True)], ids=repr)
def test_a_whole_chunk_whose_frame_is_short_is_left_to_zarr(tmp_path, codec):
    """A valid frame of 10 rows where the chunk has 20: decoded into place, it used to fill
    half the rows and leave the rest as whatever memory held."""
    compressors = (zarr.codecs.BloscCodec() if isinstance(codec, numcodecs.Blosc)
                   else zarr.codecs.ZstdCodec())
    path = tmp_path / "a.zarr"
    z = zarr.create_array(str(path), shape=(40, 3), chunks=(20, 3), dtype="f8",
                          compressors=compressors)
    z[:] = 1.0
    assert chunk_files._frame_bytes(codec, (path / "c" / "0" / "0").read_bytes()) == 20 * 3 * 8
    (path / "c" / "0" / "0").write_bytes(codec.encode(np.full((10, 3), 2.0)))
    with pytest.raises(Exception) as theirs:
        z[0:20]
    with pytest.raises(type(theirs.value), match=re.escape(str(theirs.value))):
        io.read_rows(z, 0, 20)


def test_a_relative_path_through_a_link_and_up_opens_what_the_system_opens(tmp_path,
                                                                          monkeypatch):
    """``link/../data.zarr`` is ``real/data.zarr`` when ``link`` points at ``real/sub``;
    folding the ``..`` as text gave ``./data.zarr``, which does not exist."""
    (tmp_path / "real" / "sub").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "real" / "sub")
    datasets.write_blobs(tmp_path / "real" / "data.zarr", 100, 2, 2, chunk_rows=50)
    monkeypatch.chdir(tmp_path)
    np.testing.assert_array_equal(io.open_array("link/../data.zarr/X")[:],
                                  zarr.open_array("real/data.zarr/X", mode="r")[:])


# -- one read of each chunk per pass ------------------------------------------------------------
@pytest.fixture
def chunk_file_reads(monkeypatch):
    """Reads of chunks straight from their files (``io.chunk_files._read_chunk``), by chunk key; the
    cluster runs in this process, so its threads count here too."""
    reads: collections.Counter = collections.Counter()
    read = chunk_files._read_chunk

    def counting(files, array, chunk, first, out):
        reads[f"c/{chunk}/0"] += 1
        return read(files, array, chunk, first, out)

    monkeypatch.setattr(chunk_files, "_read_chunk", counting)
    return reads


@pytest.mark.parametrize("reader", ["zarr", "chunk files"])
@pytest.mark.parametrize("path", ["zarr source", "graph"])
def test_streamed_passes_read_each_chunk_once_per_pass(blobs_path, client, path, reader,
                                                       chunk_file_reads):
    """Opened from Zarr, a pass runs one task per worker thread that reads its blocks; any
    other Dask array, one task per block with the read fused in.  Both read each chunk once,
    through the store (a wrapped store is zarr's to read) or straight from the chunk files."""
    if reader == "zarr":
        array, store = counted(blobs_path / "X")
        clear, reads = store.clear, store.chunk_reads
    else:
        array = zarr.open_array(str(blobs_path / "X"), mode="r")
        assert chunk_files._chunk_files(array) is not None
        clear, reads = chunk_file_reads.clear, lambda: dict(chunk_file_reads)
    x = as_data(array)
    if path == "graph":
        x = x.copy()  # the same blocks and reads, without the source tag
    runner = Runner(x, persist=False)
    assert not runner.persisted
    assert (runner._source is not None) == (path == "zarr source")
    centers = np.array([[0.0] * 4, [1.0] * 4, [-1.0] * 4])
    clear()
    results = []
    for passes in (1, 2, 3):
        results.append(runner.statistics(PassParams(centers, 1.0)))
        assert reads() == {f"c/{i}/0": passes for i in range(20)}
    # From the second pass on, a Zarr source is read by one holder (actor) per worker.
    assert (runner._source_holders is not None) == (path == "zarr source")
    np.testing.assert_array_equal(results[0], results[1])
    np.testing.assert_array_equal(results[0], results[2])
    # Nothing stays in the workers' memory between passes: the holders keep only the
    # Zarr array and their row ranges.
    holders = runner._source_holders
    assert workers_hold_nothing(client, but=frozenset(
        () if holders is None else (f.key for f in holders.futures)))


def test_persisted_data_are_read_once_for_all_passes(blobs_path, client):
    array, store = counted(blobs_path / "X")
    runner = Runner(as_data(array), persist=True)
    assert runner.persisted
    for _ in range(3):
        runner.statistics(PassParams(np.zeros((2, 4)), 1.0))
    assert store.chunk_reads() == {f"c/{i}/0": 1 for i in range(20)}
    del runner


def test_a_streamed_fit_reads_every_chunk_equally(blobs_path, client):
    """Over a whole fit, chunk reads differ only by the first chunk's extra origin row."""
    array, store = counted(blobs_path / "X")
    model = SoftKMeans(3, persist=False, compute_labels=False).fit(array)
    assert model.persisted_ is False and model.summary()["persisted"] is False
    reads = store.chunk_reads()
    others = {reads[f"c/{i}/0"] for i in range(1, 20)}
    assert len(others) == 1 and reads["c/0/0"] - others.pop() in (0, 1)


# -- persist decision ------------------------------------------------------------------------
def test_labels_of_a_zarr_fit_are_lazy_and_read_like_a_pass(blobs_path, client):
    """``labels_`` of a fit on Zarr data is a lazy Dask array: the fit itself reads each
    chunk once (persisted) and gathers nothing of size n_samples; computing ``labels_``
    reads each chunk once more, one task per block reading its own rows (no read tasks
    that run ahead and wait in worker memory)."""
    from distributed import get_task_stream

    array, store = counted(blobs_path / "X")
    model = SoftKMeans(3, persist=True).fit(array)
    assert model.persisted_
    assert store.chunk_reads() == {f"c/{i}/0": 1 for i in range(20)}
    assert isinstance(model.labels_, da.Array) and model.labels_.dtype == np.int32
    with get_task_stream() as stream:
        labels = model.labels_.compute()
    assert store.chunk_reads() == {f"c/{i}/0": 2 for i in range(20)}
    blocks = [task for task in stream.data if isinstance(task["key"], tuple)]
    assert {task["key"][0].rsplit("-", 1)[0] for task in blocks} == {"softkmeans-rows"}
    assert len(blocks) == len(model.labels_.chunks[0])
    np.testing.assert_array_equal(labels, model.predict(array[:]))
    np.testing.assert_array_equal(labels, _labels_block(array[:], model.cluster_centers_,
                                                        model._offset))


def test_a_streamed_fit_sets_lazy_labels(blobs_path, client):
    """A streamed fit (``persist=False``) leaves ``labels_`` lazy too, equal to ``predict``."""
    array, _ = counted(blobs_path / "X")
    model = SoftKMeans(3, persist=False).fit(array)
    assert not model.persisted_ and isinstance(model.labels_, da.Array)
    np.testing.assert_array_equal(model.labels_.compute(), model.predict(array[:]))


def test_fit_predict_on_dask_returns_the_lazy_labels(blobs_path, client):
    """``fit_predict`` on a Dask array returns ``labels_``: a Dask array in X's row blocks."""
    array, store = counted(blobs_path / "X")
    X = io.to_dask(array)
    model = SoftKMeans(3, persist=True)
    labels = model.fit_predict(X)
    assert labels is model.labels_
    assert isinstance(labels, da.Array) and labels.chunks == (X.chunks[0],)
    assert store.chunk_reads() == {f"c/{i}/0": 1 for i in range(20)}
    np.testing.assert_array_equal(labels.compute(), model.predict(array[:]))


def test_persist_auto_counts_the_memory_the_process_uses(client):
    """In-process workers share this process: half of their limits, less its resident memory."""
    import gc

    import psutil

    gc.collect()  # no other test's garbage freed between the readings
    limits = sum(w["memory_limit"] for w in client.scheduler_info()["workers"].values())
    rss = psutil.Process().memory_info().rss
    room = memory_for_data()
    assert abs(room - (PERSIST_MEMORY_SHARE * limits - rss)) < 64 * 2**20
    held = np.ones(512 * 2**20, dtype=np.uint8)  # 512 MiB in use, pages touched
    assert abs(room - memory_for_data() - held.nbytes) < 128 * 2**20
    del held
    small = da.zeros((room // 16, 1), chunks=(room // 64 + 1, 1))
    large = da.zeros((room // 4, 1), chunks=(room // 16 + 1, 1))  # twice the room
    assert should_persist(small, "auto") and not should_persist(large, "auto")
    assert should_persist(large, True) and not should_persist(small, False)
    assert not should_persist(np.zeros((4, 1)), True)  # NumPy is in memory already
    with pytest.raises(InputError, match="persist"):
        should_persist(small, "sometimes")


@pytest.mark.slow
def test_persist_auto_leaves_room_for_what_workers_load():
    """Worker processes of 1 GiB with the compiled kernel loaded (~210 MiB each, numba's
    compiler ~130 MiB of it): data of 450 MiB on one worker took less than half its limit,
    were persisted, and the worker went past distributed's pause threshold.  They stream."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, memory_limit="1GiB",
                      dashboard_address=None) as cluster, Client(cluster) as c:
        load_kernel(c)
        (used,) = (row.used for row in c.run(_memory_in_use).values())
        room = memory_for_data()
        assert used > 100 * 2**20
        assert abs(room - (PERSIST_MEMORY_SHARE * 2**30 - used)) < 32 * 2**20
        data = da.zeros((450 * 2**20 // 8, 1), chunks=(2**22, 1))
        assert data.nbytes < PERSIST_MEMORY_SHARE * 2**30
        assert not should_persist(data, "auto")
        assert should_persist(data[: room // 16], "auto")


def test_persist_auto_counts_a_host_without_limits_once():
    """Three in-process workers without a memory limit share this machine's memory: it
    counts once (each worker counted all of it, 1.5x the machine's memory in all)."""
    from distributed import Client, LocalCluster
    from distributed.system import MEMORY_LIMIT

    with LocalCluster(n_workers=3, threads_per_worker=1, processes=False, memory_limit=0,
                      dashboard_address=None) as cluster, Client(cluster):
        assert memory_for_data() <= PERSIST_MEMORY_SHARE * MEMORY_LIMIT


def test_persist_auto_fits_the_data_on_the_smallest_worker():
    """Blocks are shared out by worker threads: with a 768 MiB worker beside a 4 GiB one,
    the data must fit twice the small worker's room, not the sum of both rooms."""
    from distributed import Client, Nanny, Scheduler, SpecCluster

    spec = {name: {"cls": Nanny, "options": {"nthreads": 1, "memory_limit": limit}}
            for name, limit in (("small", "768MiB"), ("large", "4GiB"))}
    with SpecCluster(workers=spec, scheduler={"cls": Scheduler, "options": {
            "dashboard_address": None}}) as cluster, Client(cluster) as c:
        c.wait_for_workers(2)
        rows = {row.limit: row for row in c.run(_memory_in_use).values()}
        rooms = {limit: PERSIST_MEMORY_SHARE * limit - row.used for limit, row in rows.items()}
        small, large = rooms[768 * 2**20], rooms[4 * 2**30]
        room = memory_for_data()
        assert abs(room - 2 * small) < 32 * 2**20
        assert room < small + large - 1024 * 2**20


@pytest.mark.parametrize(("persist", "expected"), [("auto", True), (True, True), (False, False)])
def test_fit_reports_its_persist_decision(blobs_path, client, persist, expected, tmp_path):
    model = SoftKMeans(3, persist=persist, compute_labels=False).fit(str(blobs_path / "X"))
    assert model.persisted_ is expected
    assert model.summary()["persisted"] is expected
    model.save(tmp_path / "m.npz")
    assert SoftKMeans.load(tmp_path / "m.npz").summary()["persisted"] is expected
    assert SoftKMeans(3).fit(np.random.default_rng(0).random((50, 2))).persisted_ is False


# -- per-sample outputs written out of core ------------------------------------------------------
@pytest.fixture(scope="module")
def model(blobs_path):
    return SoftKMeans(3).fit(str(blobs_path / "X"))


def test_write_predictions_matches_the_in_memory_methods(blobs_path, model, client, tmp_path):
    array, store = counted(blobs_path / "X")
    out = model.write_predictions(array, tmp_path / "p.zarr",
                                  what=("labels", "proba", "distances"), temperature=2.0)
    # One read of each chunk for all three outputs, nothing left on the workers.
    assert store.chunk_reads() == {f"c/{i}/0": 1 for i in range(20)}
    assert workers_hold_nothing(client)
    x = zarr.open_array(str(blobs_path / "X"))[:]
    labels, proba, distances = out["labels"], out["proba"], out["distances"]
    assert (labels.dtype, proba.dtype, distances.dtype) == (np.int32, np.float32, np.float32)
    # Chunk-aligned with the input blocks.
    assert labels.chunks == (as_data(array).chunks[0][0],)
    assert proba.chunks == (as_data(array).chunks[0][0], 3)
    np.testing.assert_array_equal(labels[:], model.predict(x))
    np.testing.assert_allclose(proba[:], model.predict_proba(x, temperature=2.0), atol=1e-6)
    np.testing.assert_allclose(distances[:], model.transform(x), rtol=1e-6)
    assert out.attrs["temperature"] == 2.0


def test_write_predictions_from_numpy_and_irregular_dask(model, blobs_path, tmp_path):
    x = zarr.open_array(str(blobs_path / "X"))[:]
    out = model.write_predictions(x, tmp_path / "n.zarr", what="labels")
    np.testing.assert_array_equal(out["labels"][:], model.predict(x))
    irregular = da.from_array(x, chunks=((5_000, 7_000, 8_000), (4,)))
    out = model.write_predictions(irregular, tmp_path / "i.zarr", what=["distances"])
    np.testing.assert_allclose(out["distances"][:], model.transform(x), rtol=1e-6)
    assert list(out.array_keys()) == ["distances"]


def test_write_predictions_refuses_bad_requests_before_any_work(model, blobs_path, tmp_path):
    with pytest.raises(InputError, match="labels, proba, distances"):
        model.write_predictions(str(blobs_path / "X"), tmp_path / "a.zarr", what=("scores",))
    assert not (tmp_path / "a.zarr").exists()
    model.write_predictions(str(blobs_path / "X"), tmp_path / "b.zarr")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        model.write_predictions(str(blobs_path / "X"), tmp_path / "b.zarr")
    model.write_predictions(str(blobs_path / "X"), tmp_path / "b.zarr", overwrite=True)


def test_cli_predict_writes_requested_outputs(model, blobs_path, tmp_path):
    model.save(tmp_path / "m.npz")
    out = tmp_path / "out.zarr"
    result = CliRunner().invoke(main, [
        "predict", str(tmp_path / "m.npz"), str(blobs_path / "X"), str(out),
        "--proba", "--distances", "--temperature", "0.5", "--workers", "1", "--quiet"])
    assert result.exit_code == 0, result.output
    group = zarr.open_group(str(out), mode="r")
    assert sorted(group.array_keys()) == ["distances", "labels", "proba"]
    x = zarr.open_array(str(blobs_path / "X"))[:]
    np.testing.assert_array_equal(group["labels"][:], model.predict(x))
    np.testing.assert_allclose(group["proba"][:], model.predict_proba(x, temperature=0.5),
                               atol=1e-6)


# -- data generation -----------------------------------------------------------------------
def test_write_blobs_memory_is_a_few_chunks_whatever_the_size(tmp_path):
    """Peak traced memory of 64 chunks is that of 4 chunks: the data never sit in memory whole."""
    chunk_rows, n_features = 4_096, 16
    chunk_bytes = chunk_rows * n_features * 4
    peaks = []
    for n_chunks in (4, 64):
        tracemalloc.start()
        datasets.write_blobs(tmp_path / f"{n_chunks}.zarr", n_chunks * chunk_rows, n_features, 4,
                       chunk_rows=chunk_rows, n_threads=2)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    assert peaks[1] < 2 * peaks[0] + chunk_bytes
    assert peaks[1] < 8 * chunk_bytes  # 64 chunks would be 64 x chunk_bytes


def test_write_blobs_is_reproducible_and_records_its_compressor(tmp_path):
    one = datasets.write_blobs(tmp_path / "a.zarr", 10_000, 3, 4, chunk_rows=1_000, n_threads=1)
    four = datasets.write_blobs(tmp_path / "b.zarr", 10_000, 3, 4, chunk_rows=1_000, n_threads=4,
                          compressor="zstd")
    lz4 = datasets.write_blobs(tmp_path / "d.zarr", 10_000, 3, 4, chunk_rows=1_000,
                         compressor="blosc-lz4")
    for other in (four, lz4):
        np.testing.assert_array_equal(one["X"][:], other["X"][:])
        np.testing.assert_array_equal(one["labels"][:], other["labels"][:])
    assert one.attrs["compressor"] == datasets.DEFAULT_DATA_COMPRESSOR == "none"
    assert one["X"].compressors == ()
    assert "zstd" in str(four["X"].compressors[0]).lower()
    assert "blosc" in str(lz4["X"].compressors[0]).lower()
    assert one["labels"].dtype == np.int32 and one["centers"].shape == (4, 3)
    with pytest.raises(InputError, match="blosc-lz4, zstd, none"):
        datasets.write_blobs(tmp_path / "c.zarr", 10, 2, 2, compressor="gzip")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        datasets.write_blobs(tmp_path / "a.zarr", 10, 2, 2)


def test_per_sample_methods_on_a_zarr_path_read_inside_their_own_tasks(blobs_path, client):
    """``predict``, ``transform`` and ``predict_proba`` of a Zarr path: one task per block
    that reads its own rows (as the passes read), never a read task that runs ahead; each
    chunk read once per call; the values those of the in-memory data."""
    array, store = counted(blobs_path / "X")
    model = SoftKMeans(3, compute_labels=False).fit(array[:])
    data = array[:]
    for method in ("predict", "transform", "predict_proba"):
        before = store.chunk_reads()
        result = getattr(model, method)(array)
        assert isinstance(result, da.Array)
        layers = result.__dask_graph__().layers
        assert len(layers) == 1 and next(iter(layers)).startswith("softkmeans-rows-")
        np.testing.assert_allclose(result.compute(), getattr(model, method)(data), rtol=1e-6)
        after = store.chunk_reads()
        assert {key: after[key] - before.get(key, 0) for key in after} == {
            f"c/{i}/0": 1 for i in range(20)}


def test_the_sample_of_a_zarr_array_is_read_inside_the_tasks_that_keep_its_rows(
        blobs_path, client):
    """The annealing's sample of streamed Zarr data: one task per block that reads the block
    and keeps only the sampled rows (a block is never a task's result, which could wait in a
    worker's memory, or spill, while other reads run ahead); each chunk read once; the rows
    those of the in-memory data, whatever the chunking."""
    from dask_softkmeans.engine.runner import _source_take

    array, store = counted(blobs_path / "X")
    x = as_data(array)
    streamed, in_memory = Runner(x), Runner(array[:])
    def stored(dask_worker):  # bytes of task results the worker's tasks read from memory
        return dask_worker.data.cumulative_metrics.get(("memory-read", "bytes"), 0)

    store.clear()
    before = sum(client.run(stored).values())
    rows, weights = streamed.sample(5_000, seed=3)
    # Only the kept rows were task results: each part once, and the joined rows once
    # (Dask joins them in a task, then sends them to the client); never the blocks.
    assert sum(client.run(stored).values()) - before <= 3 * rows.nbytes
    assert weights is None and rows.dtype == array.dtype
    np.testing.assert_array_equal(rows, in_memory.sample(5_000, seed=3)[0])
    assert store.chunk_reads() == {f"c/{i}/0": 1 for i in range(20)}

    index = np.array([5, 999, 1_000, 7_777, 19_999])  # blocks 0, 1, 7 and 19 only
    taken = _source_take(x, x.zarr_source, index)
    assert [layer.split("-")[1] for layer in taken.__dask_graph__().layers] == ["take"]
    assert taken.chunks[0] == (2, 1, 1, 1)
    np.testing.assert_array_equal(taken.compute(), array[:][index])
