"""The sparse maps (entmax-1.5, sparsemax) in the fit: kernel, critical temperatures, estimator.

The critical temperatures are held to a brute-force scan: two coincident
copies of a cluster, pulled apart by +-eps, grow under repeated EM updates
exactly below the temperature the statistics of one pass predict.
"""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from click.testing import CliRunner
from distributed import Client, LocalCluster
from sklearn.datasets import make_blobs
from test_checkpoint import Interrupt, interrupt_after

from dask_softkmeans import SoftKMeans
from dask_softkmeans.annealing import CRITICAL_FACTOR, principal_axes
from dask_softkmeans.cli import main
from dask_softkmeans.errors import CheckpointError
from dask_softkmeans.kernels import (
    StatsLayout,
    block_statistics,
    normalize,
    reference_statistics,
    sparse_statistics,
)
from dask_softkmeans.kernels.reference import split_weights

SPARSE = ("entmax15", "sparsemax")
MAPS = ("softmax", *SPARSE)


# -- kernel ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def block() -> tuple[np.ndarray, np.ndarray]:
    """Rows of three overlapping groups far from the origin, and five centers among them."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2500, 3)) * [3.0, 1.0, 0.5] + 100.0
    x[:800] += 5.0
    return x, 100.0 + rng.normal(size=(5, 3)) * 2.0


@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.parametrize("normalization", SPARSE)
@pytest.mark.parametrize("moments", ["none", "full", "power"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sparse_pass_equals_the_reference_in_every_statistic(block, normalization, moments, dtype,
                                                            compiled):
    """The compiled row loop (the default) and the vectorised NumPy one."""
    x, centers = block
    rng = np.random.default_rng(1)
    kw = {"offset": x.mean(0), "log_priors": np.log(rng.dirichlet(np.ones(5))),
          "weights": rng.uniform(0.0, 2.0, len(x)), "moments": moments,
          "directions": rng.normal(size=(5, 3)), "normalization": normalization}
    layout = StatsLayout(5, 3, moments)
    want = layout.unpack(reference_statistics(x.astype(dtype), centers, 2.0, **kw))
    got = layout.unpack(sparse_statistics(x.astype(dtype), centers, 2.0, compiled=compiled, **kw))
    routed = layout.unpack(block_statistics(x.astype(dtype), centers, 2.0, **kw))
    for name in want._fields:
        scale = max(float(np.abs(getattr(want, name)).max(initial=0.0)), 1e-300)
        np.testing.assert_allclose(getattr(got, name), getattr(want, name), rtol=0,
                                   atol=1e-10 * scale, err_msg=name)
        if compiled:  # the engine's pass is the compiled one
            np.testing.assert_array_equal(getattr(routed, name), getattr(got, name), err_msg=name)
    assert (want.split_counts > 0).any() == (moments != "none")


@pytest.mark.parametrize("normalization", SPARSE)
def test_sparse_pass_is_a_sum_over_its_rows(block, normalization):
    """Any split of the rows into blocks gives the same statistics (a tree reduction's premise)."""
    x, centers = block
    kw = {"moments": "full", "normalization": normalization}
    whole = sparse_statistics(x, centers, 1.5, **kw)
    parts = sum(sparse_statistics(part, centers, 1.5, **kw)
                for part in np.array_split(x, [7, 900, 901]))
    np.testing.assert_allclose(parts, whole, rtol=1e-12, atol=1e-9)


def test_sparse_pass_skips_non_finite_rows_and_refuses_softmax(block):
    x, centers = block
    bad = x.copy()
    bad[3, 1] = np.nan
    stats = StatsLayout(5, 3).unpack(sparse_statistics(bad, centers, 1.0))
    clean = StatsLayout(5, 3).unpack(sparse_statistics(np.delete(x, 3, axis=0), centers, 1.0))
    assert stats.nonfinite == 1
    np.testing.assert_allclose(stats.sums, clean.sums, rtol=1e-12)
    with pytest.raises(KeyError, match="entmax15"):
        sparse_statistics(x, centers, 1.0, normalization="softmax")


@pytest.mark.parametrize(("normalization", "slope"), [
    ("softmax", 0.25), ("entmax15", 1.0 / (2.0 * np.sqrt(2.0))), ("sparsemax", 0.5)])
def test_two_class_slope_gives_the_critical_factor(normalization, slope):
    """g'(0) of the two-class map of the logit difference: T_c = 8 g'(0) lambda."""
    h = 1e-6
    p = normalize(np.array([[h], [-h]]), normalization)[0]
    assert (p[0, 0] - 0.5) / (2 * h) == pytest.approx(slope, rel=1e-6)
    assert 2.0 * CRITICAL_FACTOR[normalization] == pytest.approx(8.0 * slope)


@pytest.mark.parametrize("normalization", SPARSE)
def test_split_share_of_a_lone_cluster(normalization):
    """One center: every row has p = 1, and one of two copies gets q = 1/2."""
    u = np.zeros((1, 4))
    q, w = split_weights(u, np.ones((1, 4)), normalization)
    np.testing.assert_allclose(q, 0.5)
    np.testing.assert_allclose(w, 1.0 if normalization == "sparsemax" else np.sqrt(0.5))


# -- critical temperatures against a brute-force scan ----------------------------------------


def _em(x: np.ndarray, centers: np.ndarray, log_priors: np.ndarray | None, temperature: float,
        normalization: str, steps: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Plain EM updates, with the priors the fit uses (softmax: pi = N / N; sparse: none)."""
    for _ in range(steps):
        d = ((x[None, :, :] - centers[:, None, :]) ** 2).sum(-1)
        u = -d / temperature
        if log_priors is not None:
            u = u + log_priors[:, None]
        p = normalize(u, normalization)[0]
        counts = p.sum(1)
        centers = (p @ x) / counts[:, None]
        if log_priors is not None:
            log_priors = np.log(counts / counts.sum())
    return centers, log_priors


def _growth(x, centers, k, temperature, normalization, axis, eps=1e-6) -> float:
    """Per-update growth of the distance between two copies of center k pulled apart by +-eps."""
    softmax = normalization == "softmax"
    priors = np.log(np.full(len(centers), 1.0 / len(centers))) if softmax else None
    centers, priors = _em(x, centers, priors, temperature, normalization, 200)
    centers = np.vstack([centers, centers[k]])
    if softmax:
        priors = np.append(priors, priors[k] - np.log(2.0))
        priors[k] -= np.log(2.0)
    centers, priors = _em(x, centers, priors, temperature, normalization, 200)
    centers[k] += eps * axis
    centers[-1] -= eps * axis
    gaps = []
    for _ in range(6):
        centers, priors = _em(x, centers, priors, temperature, normalization, 1)
        gaps.append(np.linalg.norm(centers[k] - centers[-1]))
    return gaps[-1] / gaps[-2]


def _predicted(x, centers, k, temperature, normalization) -> float:
    """T_c of center k from the statistics of one pass at the EM equilibrium at ``temperature``."""
    softmax = normalization == "softmax"
    priors = np.log(np.full(len(centers), 1.0 / len(centers))) if softmax else None
    centers, priors = _em(x, centers, priors, temperature, normalization, 200)
    stats = StatsLayout(*centers.shape, "full").unpack(block_statistics(
        x, centers, temperature, moments="full", log_priors=priors, normalization=normalization))
    half, _ = principal_axes(stats, centers, np.zeros_like(centers), "full",
                             normalization=normalization)
    return 2.0 * float(half[k])


def _crossing(f, low: float, high: float, steps: int = 14) -> float:
    """Where ``f`` changes sign in [low, high] (it must), by bisection."""
    f_low = f(low)
    assert (f_low > 0) != (f(high) > 0)
    for _ in range(steps):
        mid = 0.5 * (low + high)
        f_mid = f(mid)
        if (f_mid > 0) == (f_low > 0):
            low, f_low = mid, f_mid
        else:
            high = mid
    return 0.5 * (low + high)


@pytest.mark.parametrize("normalization", MAPS)
def test_first_critical_temperature_matches_a_brute_force_scan(normalization):
    """One cluster at the data mean splits below 2 lambda (softmax), 2 sqrt(2) lambda
    (entmax-1.5), 4 lambda (sparsemax): the fit's first phase transition."""
    x = np.random.default_rng(1).normal(size=(300, 2)) * [2.0, 0.7]
    covariance = np.cov(x.T, bias=True)
    values, vectors = np.linalg.eigh(covariance)
    mean = x.mean(0)[None, :]
    found = _crossing(lambda t: _growth(x, mean, 0, t, normalization, vectors[:, -1]) - 1.0,
                      0.5 * values[-1], 10.0 * values[-1])
    derived = 2.0 * CRITICAL_FACTOR[normalization] * values[-1]
    assert found == pytest.approx(derived, rel=0.01)
    model = SoftKMeans(2, normalization=normalization, compute_labels=False).fit(x)
    assert model.phase_diagram_[0, 0] == pytest.approx(derived, rel=1e-9)


@pytest.mark.parametrize(("normalization", "low", "high"), [
    ("softmax", 2.0, 6.0), ("entmax15", 3.0, 8.0), ("sparsemax", 5.0, 9.0)])
def test_critical_temperature_among_clusters_matches_a_brute_force_scan(normalization, low, high):
    """An elongated group beside a round one, overlapping at the transition: the split of
    the elongated one, found by the scan and predicted by one pass's statistics (between
    ``low`` and ``high``: above them the two groups share one center)."""
    rng = np.random.default_rng(1)
    x = np.vstack([rng.normal(size=(300, 2)) * [1.5, 0.5],
                   rng.normal(size=(200, 2)) * 0.5 + [0.0, 4.0]])
    start = np.array([[0.0, 0.0], [0.0, 4.0]])
    found = _crossing(
        lambda t: _growth(x, start, 0, t, normalization, np.array([1.0, 0.0])) - 1.0, low, high)
    predicted = _crossing(lambda t: _predicted(x, start, 0, t, normalization) - t, low, high)
    assert found == pytest.approx(predicted, rel=0.03)


# -- the estimator ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def blobs() -> np.ndarray:
    """Five separated 2-D blobs of different sizes."""
    return make_blobs(2000, centers=[[0, 0], [10, 0], [0, 10], [10, 10], [5, 20]],
                      cluster_std=[1.0, 0.6, 1.2, 0.8, 1.0], random_state=0)[0]


def test_default_is_softmax(blobs):
    model = SoftKMeans(5).fit(blobs)
    assert model.normalization == "softmax"
    assert (model.predict_proba(blobs[:50]) > 0).all()  # softmax has no exact zeros


@pytest.mark.parametrize("normalization", SPARSE)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sparse_fit_finds_the_blobs(blobs, normalization, dtype):
    x = blobs.astype(dtype)
    model = SoftKMeans(5, normalization=normalization).fit(x)
    reference = SoftKMeans(5).fit(blobs)
    order = np.lexsort(model.cluster_centers_.T), np.lexsort(reference.cluster_centers_.T)
    np.testing.assert_allclose(model.cluster_centers_[order[0]],
                               reference.cluster_centers_[order[1]], rtol=1e-5, atol=1e-5)
    assert any(r["normalization"] == normalization for r in [model.summary()["params"]])
    proba = model.predict_proba(x, temperature=1.0)  # the fit's map by default: exact zeros
    assert proba.dtype == dtype and (proba == 0).any()
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-5)
    dense = model.predict_proba(x, temperature=1.0, normalization="softmax")
    assert (dense > 0).all()


def test_bad_normalization_is_refused_before_any_work(blobs):
    with pytest.raises(ValueError, match=r"'normalization' parameter of SoftKMeans must be"):
        SoftKMeans(5, normalization="entmax").fit(blobs)


def test_sparse_fit_out_of_core_on_a_cluster_equals_in_memory(blobs, tmp_path):
    store = zarr.open_array(tmp_path / "x.zarr", mode="w", shape=blobs.shape, chunks=(300, 2),
                            dtype=np.float64)
    store[:] = blobs
    expected = SoftKMeans(5, normalization="entmax15", sample_size=None).fit(blobs)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False) as cluster, \
            Client(cluster):
        model = SoftKMeans(5, normalization="entmax15", sample_size=None, persist=False).fit(
            str(tmp_path / "x.zarr"))
        group = model.write_predictions(str(tmp_path / "x.zarr"), tmp_path / "out.zarr",
                                        what=("labels", "proba"), temperature=1.0)
    np.testing.assert_allclose(model.cluster_centers_, expected.cluster_centers_, rtol=1e-9,
                               atol=1e-9)
    assert group.attrs["normalization"] == "entmax15"
    np.testing.assert_allclose(group["proba"][:], model.predict_proba(blobs, temperature=1.0),
                               rtol=1e-5, atol=1e-6)


def test_model_file_keeps_the_map(blobs, tmp_path):
    model = SoftKMeans(5, normalization="sparsemax").fit(blobs)
    model.save(tmp_path / "m.npz")
    loaded = SoftKMeans.load(tmp_path / "m.npz")
    assert loaded.normalization == "sparsemax"
    np.testing.assert_array_equal(loaded.predict_proba(blobs, temperature=2.0),
                                  model.predict_proba(blobs, temperature=2.0))


def test_checkpoint_resumes_a_sparse_fit_and_refuses_another_map(blobs, tmp_path):
    reference = SoftKMeans(5, normalization="entmax15").fit(blobs)
    with pytest.raises(Interrupt):
        SoftKMeans(5, normalization="entmax15", checkpoint=tmp_path).fit(
            blobs, callback=interrupt_after(12))
    with pytest.raises(CheckpointError, match=r"normalization: 'entmax15' in the checkpoint"):
        SoftKMeans(5, checkpoint=tmp_path).fit(blobs, resume=True)
    resumed = SoftKMeans(5, normalization="entmax15", checkpoint=tmp_path).fit(blobs, resume=True)
    np.testing.assert_allclose(resumed.cluster_centers_, reference.cluster_centers_, rtol=1e-12)
    assert len(resumed.history_) == len(reference.history_)


def test_cli_fit_and_predict_with_a_sparse_map(blobs, tmp_path):
    store = zarr.open_array(tmp_path / "x.zarr", mode="w", shape=blobs.shape, chunks=(500, 2),
                            dtype=np.float64)
    store[:] = blobs
    runner = CliRunner()
    result = runner.invoke(main, ["fit", str(tmp_path / "x.zarr"), "--k", "5", "--normalization",
                                  "sparsemax", "--out", str(tmp_path / "m.npz"), "--workers",
                                  "1", "-q"])
    assert result.exit_code == 0, result.output
    assert SoftKMeans.load(tmp_path / "m.npz").normalization == "sparsemax"
    for extra, zeros in (([], True), (["--normalization", "softmax"], False)):
        out = tmp_path / f"out{len(extra)}.zarr"
        result = runner.invoke(main, ["predict", str(tmp_path / "m.npz"), str(tmp_path / "x.zarr"),
                                      str(out), "--proba", "--temperature", "2", *extra,
                                      "--workers", "1", "-q"])
        assert result.exit_code == 0, result.output
        proba = zarr.open_group(out, mode="r")["proba"][:]
        assert bool((proba == 0).any()) is zeros


@pytest.mark.parametrize("normalization", SPARSE)
def test_cosine_fit_with_a_sparse_map(normalization):
    """Directions around four axes, lengths random: the same unit centers as softmax."""
    rng = np.random.default_rng(3)
    axes = np.eye(4)
    x = np.repeat(axes, 150, axis=0) + 0.15 * rng.normal(size=(600, 4))
    x *= rng.uniform(0.5, 3.0, size=(600, 1))
    model = SoftKMeans(4, metric="cosine", normalization=normalization).fit(x)
    np.testing.assert_allclose(np.linalg.norm(model.cluster_centers_, axis=1), 1.0, rtol=1e-9)
    assert sorted(np.argmax(model.cluster_centers_, axis=1).tolist()) == [0, 1, 2, 3]
    np.testing.assert_array_equal(np.sort(np.bincount(model.labels_)), [150, 150, 150, 150])


def test_partial_fit_at_a_temperature_uses_the_fits_map(blobs):
    """A soft batch step of a sparse model: the counts and sums of that map, equal priors."""
    model = SoftKMeans(5, normalization="entmax15").fit(blobs[:1000])
    centers, weights = model.cluster_centers_.copy(), model.weights_.copy()
    batch = blobs[1000:]
    stats = StatsLayout(5, 2).unpack(block_statistics(
        batch, centers, 20.0, offset=model._offset, normalization="entmax15"))
    counts = weights * stats.weight + stats.counts
    sums = stats.sums + stats.counts[:, None] * model._offset
    expected = centers + (sums - stats.counts[:, None] * centers) / counts[:, None]
    model.partial_fit(batch, temperature=20.0)
    np.testing.assert_allclose(model.cluster_centers_, expected, rtol=1e-9, atol=1e-9)
