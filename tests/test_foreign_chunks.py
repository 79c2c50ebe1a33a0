"""Dask arrays whose chunks are another array library's arrays (CuPy on GPUs, JAX,
``array-api-strict``): a whole fit runs on the chunks' device and gives the NumPy fit.

``array-api-strict`` arrays on its ``device1`` stand in for a GPU: the library
refuses ``np.asarray`` on them, so a block converted to NumPy wholesale (by
``np.asarray``, a NumPy ufunc or the compiled kernel) fails the test, and a
spy on :func:`.array_api.to_numpy`, the one explicit way out, checks that
only small results leave a block.  The CuPy tests run where CuPy and a GPU are.
"""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pytest

from dask_softkmeans import SoftKMeans, soft_statistics
from dask_softkmeans.errors import ChunkingError, InputError
from dask_softkmeans.kernels import array_api as aa

ROWS, BLOCK = 1200, 250


@pytest.fixture(scope="module")
def blobs4() -> np.ndarray:
    """Four 3-D clusters of 300 rows, close enough that the annealing splits and merges."""
    rng = np.random.default_rng(0)
    means = [[0, 0, 0], [3, 0, 0], [0, 3, 1], [2, 2, 2]]
    return np.concatenate([rng.normal(m, 0.3, size=(ROWS // 4, 3)) for m in means])


@pytest.fixture
def xps():
    """``array_api_strict`` with its default flags (restored after the test)."""
    xps = pytest.importorskip("array_api_strict")
    flags = xps.get_array_api_strict_flags()
    yield xps
    xps.set_array_api_strict_flags(**flags)


def on_device1(xps, x: np.ndarray) -> da.Array:
    """``x`` as a Dask array of ``array-api-strict`` chunks on ``device1``: not NumPy, and
    never convertible to NumPy implicitly (as CuPy chunks on a GPU)."""
    device = xps.Device("device1")
    meta = xps.asarray(np.empty((0, x.shape[1]), x.dtype), device=device)
    return da.from_array(x, chunks=(BLOCK, x.shape[1])).map_blocks(
        lambda b: xps.asarray(b, device=device), meta=meta)


@pytest.fixture
def host_copies(monkeypatch) -> list[tuple[int, ...]]:
    """The shapes of every array copied from a block's device to NumPy (by :func:`.to_numpy`)."""
    shapes: list[tuple[int, ...]] = []
    real = aa.to_numpy

    def spy(a):
        shapes.append(tuple(a.shape))
        return real(a)

    monkeypatch.setattr(aa, "to_numpy", spy)
    return shapes


def test_device1_chunks_refuse_numpy(xps, blobs4):
    """The premise of these tests: a chunk on device1 cannot become a NumPy array implicitly."""
    block = on_device1(xps, blobs4).blocks[0].compute()
    with pytest.raises(RuntimeError, match="device"):
        np.asarray(block)


@pytest.mark.parametrize("sample_size", [None, 300], ids=["full-data", "sample"])
def test_fit_on_device_chunks_equals_the_numpy_fit(xps, blobs4, host_copies, sample_size):
    """The default fit (and one with an annealing sample) on device1 chunks: the centers,
    inertia and labels of the fit on NumPy chunks; only small arrays came to the host."""
    expected = SoftKMeans(4, random_state=0, sample_size=sample_size).fit(
        da.from_array(blobs4, chunks=(BLOCK, 3)))
    with dask.config.set(scheduler="threads"):
        model = SoftKMeans(4, random_state=0, sample_size=sample_size).fit(on_device1(xps, blobs4))
        labels = model.labels_.compute()
    assert type(model.cluster_centers_) is np.ndarray and model.cluster_centers_.dtype == np.float64
    np.testing.assert_allclose(model.cluster_centers_, expected.cluster_centers_, rtol=1e-10, atol=1e-10)
    assert model.inertia_ == pytest.approx(expected.inertia_, rel=1e-12)
    assert model.n_iter_ == expected.n_iter_
    np.testing.assert_array_equal(labels, expected.labels_.compute())
    assert host_copies, "the statistics come back through to_numpy"
    # Packed statistics, sampled rows of one block, one row, labels: never a whole block.
    assert max(int(np.prod(s)) for s in host_copies) < BLOCK * 3


def test_per_row_results_on_device_chunks(xps, blobs4):
    """predict, score, transform and predict_proba of device1 chunks equal those of NumPy."""
    model = SoftKMeans(4, random_state=0).fit(blobs4)
    chunks = on_device1(xps, blobs4)
    np.testing.assert_array_equal(model.predict(chunks).compute(), model.predict(blobs4))
    assert model.score(chunks) == pytest.approx(model.score(blobs4), rel=1e-12)
    np.testing.assert_allclose(model.transform(chunks).compute(), model.transform(blobs4),
                               rtol=1e-9, atol=1e-12)
    proba = model.predict_proba(chunks, 0.5, normalization="entmax15").compute()
    np.testing.assert_allclose(proba, model.predict_proba(blobs4, 0.5, normalization="entmax15"),
                               atol=1e-12)


def test_write_predictions_of_device_chunks(xps, blobs4, tmp_path):
    """Labels and responsibilities of device1 chunks written to a Zarr store: those of NumPy."""
    import zarr

    model = SoftKMeans(4, random_state=0).fit(blobs4)
    model.write_predictions(on_device1(xps, blobs4), tmp_path / "out.zarr", what=("labels", "proba"))
    group = zarr.open_group(tmp_path / "out.zarr", mode="r")
    np.testing.assert_array_equal(group["labels"][:], model.predict(blobs4))
    np.testing.assert_allclose(group["proba"][:], model.predict_proba(blobs4), atol=1e-6)


def test_fit_predict_and_partial_fit_on_device_chunks(xps, blobs4):
    """The other fitting entry points take device1 chunks too, with the NumPy results."""
    chunks, numpy_chunks = on_device1(xps, blobs4), da.from_array(blobs4, chunks=(BLOCK, 3))
    np.testing.assert_array_equal(
        SoftKMeans(4, random_state=0).fit_predict(chunks).compute(),
        SoftKMeans(4, random_state=0).fit_predict(numpy_chunks).compute())
    got = SoftKMeans(4, random_state=0).partial_fit(chunks).partial_fit(chunks)
    expected = SoftKMeans(4, random_state=0).partial_fit(numpy_chunks).partial_fit(numpy_chunks)
    np.testing.assert_allclose(got.cluster_centers_, expected.cluster_centers_, rtol=1e-10, atol=1e-12)


def test_soft_statistics_of_device_chunks(xps, blobs4):
    """One soft pass over a Dask array of device1 chunks: NumPy float64 statistics equal to
    those of the NumPy array."""
    centers = blobs4[[0, 400, 800, 1100]]
    got = soft_statistics(on_device1(xps, blobs4), centers, 0.7)
    expected = soft_statistics(blobs4, centers, 0.7)
    assert isinstance(got.sums, np.ndarray) and got.sums.dtype == np.float64
    np.testing.assert_allclose(got.sums, expected.sums, rtol=1e-11)
    np.testing.assert_allclose(got.counts, expected.counts, rtol=1e-11)
    assert got.free_energy == pytest.approx(expected.free_energy, rel=1e-11)


def test_float32_and_weighted_fit_on_a_cluster(xps, blobs4, client):
    """float32 chunks with sample weights, persisted on a LocalCluster (one holder per worker):
    float64 centers equal to the NumPy fit's to float32 tolerance, the same labels."""
    x = blobs4.astype(np.float32)
    weights = np.random.default_rng(1).uniform(0.5, 2.0, size=ROWS)
    expected = SoftKMeans(4, random_state=0).fit(x, sample_weight=weights)
    model = SoftKMeans(4, random_state=0, persist=True).fit(on_device1(xps, x), sample_weight=weights)
    assert model.persisted_ and model.cluster_centers_.dtype == np.float64
    np.testing.assert_allclose(model.cluster_centers_, expected.cluster_centers_, atol=1e-5)
    np.testing.assert_array_equal(model.labels_.compute(), expected.labels_)


def test_integer_chunks_become_float64_on_their_device(xps, blobs4):
    """Integer chunks are converted to float64 by their own library, block by block."""
    x = np.round(blobs4 * 10).astype(np.int32)
    chunks = on_device1(xps, x)
    model = SoftKMeans(4, random_state=0).fit(chunks)
    expected = SoftKMeans(4, random_state=0).fit(x)
    np.testing.assert_allclose(model.cluster_centers_, expected.cluster_centers_, rtol=1e-10)


def test_chunks_split_along_features_are_refused_with_the_fix(xps, blobs4):
    device = xps.Device("device1")
    split = da.from_array(blobs4, chunks=(BLOCK, 2)).map_blocks(
        lambda b: xps.asarray(b, device=device), meta=xps.asarray(np.empty((0, 3)), device=device))
    assert len(split.chunks[1]) == 2
    with pytest.raises(ChunkingError, match=r"rechunk\(\{1: 3\}\)"):
        SoftKMeans(4).fit(split)


def test_cosine_on_device_chunks_is_refused_before_a_pass(xps, blobs4):
    with pytest.raises(InputError, match="cosine"):
        SoftKMeans(4, metric="cosine").fit(on_device1(xps, blobs4))


def test_jax_chunks_fit_equals_the_numpy_fit():
    """A Dask array of JAX arrays (float64 with ``jax_enable_x64``): the NumPy fit's centers
    and labels."""
    jax = pytest.importorskip("jax")
    before = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)  # for every thread, Dask's included
    try:
        rng = np.random.default_rng(0)
        x = np.concatenate([rng.normal(m, 0.3, size=(200, 2)) for m in ([0, 0], [3, 0], [0, 3])])
        chunks = da.from_array(x, chunks=(200, 2)).map_blocks(
            jax.numpy.asarray, meta=jax.numpy.asarray(np.empty((0, 2))))
        model = SoftKMeans(3, random_state=0).fit(chunks)
        labels = model.labels_.compute()
    finally:
        jax.config.update("jax_enable_x64", before)
    expected = SoftKMeans(3, random_state=0).fit(x)
    np.testing.assert_allclose(model.cluster_centers_, expected.cluster_centers_, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(labels, expected.labels_)


def test_torch_chunks_fit_equals_the_numpy_fit(blobs4, host_copies):
    """A Dask array of PyTorch CPU tensors (where PyTorch is installed; it is not in the test
    extra): the fit of the NumPy chunks, and no block copied to NumPy wholesale."""
    torch = pytest.importorskip("torch")
    chunks = da.from_array(blobs4, chunks=(BLOCK, 3)).map_blocks(
        torch.from_numpy, meta=torch.empty((0, 3), dtype=torch.float64))
    model = SoftKMeans(4, random_state=0).fit(chunks)
    expected = SoftKMeans(4, random_state=0).fit(da.from_array(blobs4, chunks=(BLOCK, 3)))
    assert type(model.cluster_centers_) is np.ndarray
    np.testing.assert_allclose(model.cluster_centers_, expected.cluster_centers_, rtol=1e-10, atol=1e-12)
    assert model.n_iter_ == expected.n_iter_
    np.testing.assert_array_equal(model.labels_.compute(), expected.labels_.compute())
    assert max(int(np.prod(s)) for s in host_copies) < BLOCK * 3
    proba = model.predict_proba(chunks).compute()
    np.testing.assert_allclose(proba, expected.predict_proba(blobs4), atol=1e-12)


# -- CuPy on a GPU: where both are present --------------------------------------------------

@pytest.fixture
def cupy():
    cupy = pytest.importorskip("cupy")
    try:
        devices = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CuPy installed, no driver
        pytest.skip(f"no CUDA device: {exc}")
    if devices < 1:
        pytest.skip("no CUDA device")
    return cupy


def test_cupy_chunks_fit_on_the_gpu(cupy, blobs4, host_copies):
    """A Dask array of CuPy chunks: the fit of the NumPy chunks (float64 statistics reduced
    on the host, NumPy centers), labels equal, and no block copied to the host."""
    chunks = da.from_array(blobs4, chunks=(BLOCK, 3)).map_blocks(
        cupy.asarray, meta=cupy.empty((0, 3)))
    model = SoftKMeans(4, random_state=0).fit(chunks)
    expected = SoftKMeans(4, random_state=0).fit(blobs4)
    assert type(model.cluster_centers_) is np.ndarray
    np.testing.assert_allclose(model.cluster_centers_, expected.cluster_centers_, rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(model.labels_.compute(), expected.labels_)
    assert max(int(np.prod(s)) for s in host_copies) < BLOCK * 3


def test_cupy_soft_statistics_float32(cupy, blobs4):
    """float32 CuPy chunks: statistics summed in float64 on the device, equal to NumPy's."""
    x = blobs4.astype(np.float32)
    chunks = da.from_array(x, chunks=(BLOCK, 3)).map_blocks(
        cupy.asarray, meta=cupy.empty((0, 3), np.float32))
    centers = blobs4[[0, 400, 800, 1100]]
    got = soft_statistics(chunks, centers, 0.7)
    expected = soft_statistics(x, centers, 0.7)
    assert got.sums.dtype == np.float64
    np.testing.assert_allclose(got.sums, expected.sums, rtol=1e-5)
