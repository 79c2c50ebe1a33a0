"""Cosine k-means: ``SoftKMeans(metric="cosine")``, spherical k-means as the T -> 0 limit of a
von Mises-Fisher mixture.

Rows are scaled to unit length inside the per-block work, centers are unit
vectors, the M-step is the mean direction, and the first critical temperature
is ``2 lambda_max(P S P) / R``.  Everything else (schedulers, chunking, Zarr,
model files, the command line) must work as for the Euclidean metric.
"""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pytest
import zarr
from click.testing import CliRunner
from sklearn.metrics import adjusted_rand_score
from sklearn.utils._param_validation import InvalidParameterError

from dask_softkmeans import SoftKMeans, soft_statistics
from dask_softkmeans.cli import main
from dask_softkmeans.engine import Runner
from dask_softkmeans.errors import CheckpointError, InputError
from dask_softkmeans.io.checkpoint import result_parameters
from dask_softkmeans.objective import GRAM_MAX_FEATURES, summarize


def directions(n: int, d: int, k: int, spread: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows around ``k`` random unit directions (Gaussian noise of ``spread`` per unit of
    length), then scaled by random lengths in [0.1, 10]: only their directions cluster."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((k, d))
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    labels = rng.integers(k, size=n)
    x = centers[labels] + spread * rng.standard_normal((n, d)) / np.sqrt(d)
    x *= rng.uniform(0.1, 10.0, size=(n, 1)) / np.linalg.norm(x, axis=1, keepdims=True)
    return x, labels


def cosines(x: np.ndarray, centers: np.ndarray) -> np.ndarray:
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    return unit @ centers.T


def spherical_lloyd(x: np.ndarray, k: int, seed: int, iterations: int = 100) -> float:
    """Sum of 1 - cos of spherical k-means from k-means++ seeding on the unit rows."""
    rng = np.random.default_rng(seed)
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    centers = [unit[rng.integers(len(unit))]]
    for _ in range(k - 1):
        gap = np.maximum(1.0 - (unit @ np.array(centers).T).max(axis=1), 0.0)
        centers.append(unit[rng.choice(len(unit), p=gap / gap.sum())])
    centers = np.array(centers)
    for _ in range(iterations):
        labels = (unit @ centers.T).argmax(axis=1)
        sums = np.array([unit[labels == j].sum(axis=0) if (labels == j).any() else centers[j]
                         for j in range(k)])
        new = sums / np.linalg.norm(sums, axis=1, keepdims=True)
        if np.allclose(new, centers, rtol=0, atol=1e-12):
            break
        centers = new
    return float((1.0 - (unit @ centers.T).max(axis=1)).sum())


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    """1500 rows in 5-D around 4 directions, lengths 0.1 to 10: easy, one right answer."""
    return directions(1500, 5, 4, 0.3, seed=3)[0]


@pytest.fixture(scope="module")
def model(x) -> SoftKMeans:
    return SoftKMeans(4, metric="cosine").fit(x)


@pytest.mark.parametrize(("d", "k", "spread"), [(5, 4, 0.35), (16, 6, 0.6)],
                         ids=["full moments", "power moments"])
def test_finds_the_directions_and_meets_the_restarts(d, k, spread):
    """Every generating direction found (where the Euclidean fit, misled by the row lengths,
    is not), and an objective within 0.1% of the best of ten spherical k-means restarts."""
    x, truth = directions(3000, d, k, spread, seed=d)
    model = SoftKMeans(k, metric="cosine").fit(x)
    assert adjusted_rand_score(truth, model.labels_) > 0.95
    assert adjusted_rand_score(truth, SoftKMeans(k).fit(x).labels_) < 0.8
    best = min(spherical_lloyd(x, k, seed) for seed in range(10))
    assert model.inertia_ <= 1.001 * best


def test_centers_are_unit_and_the_methods_are_cosines(x, model):
    centers = model.cluster_centers_
    np.testing.assert_allclose(np.linalg.norm(centers, axis=1), 1.0, rtol=0, atol=1e-15)
    cos = cosines(x, centers)
    np.testing.assert_array_equal(model.predict(x), cos.argmax(axis=1))
    np.testing.assert_array_equal(model.labels_, cos.argmax(axis=1))
    np.testing.assert_allclose(model.transform(x), 1.0 - cos, rtol=0, atol=1e-12)
    assert model.inertia_ == pytest.approx((1.0 - cos.max(axis=1)).sum(), rel=1e-12)
    assert model.score(x) == pytest.approx(-model.inertia_, rel=1e-12)
    weights = np.arange(len(x)) % 3
    assert model.score(x, sample_weight=weights) == pytest.approx(
        -(weights * (1.0 - cos.max(axis=1))).sum(), rel=1e-12)
    # Von Mises-Fisher responsibilities of concentration 2 / T.
    t = 0.3
    logits = np.log(model.weights_) + 2.0 * cos / t
    want = np.exp(logits - logits.max(axis=1, keepdims=True))
    want /= want.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(model.predict_proba(x, temperature=t), want, rtol=0, atol=1e-12)
    # Each center is the mean direction of its cluster (a fixed point of spherical Lloyd).
    sums = np.array([(x[model.labels_ == j] / np.linalg.norm(x[model.labels_ == j], axis=1,
                                                              keepdims=True)).sum(axis=0)
                     for j in range(4)])
    np.testing.assert_allclose(centers, sums / np.linalg.norm(sums, axis=1, keepdims=True),
                               rtol=0, atol=1e-12)


def test_the_row_lengths_do_not_matter_and_the_data_is_not_modified(x, model):
    scales = np.random.default_rng(0).uniform(1e-3, 1e3, size=(len(x), 1))
    scaled = x * scales
    kept = scaled.copy()
    other = SoftKMeans(4, metric="cosine").fit(scaled)
    np.testing.assert_array_equal(scaled, kept)
    np.testing.assert_allclose(other.cluster_centers_, model.cluster_centers_, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(other.labels_, model.labels_)


def test_float32_data(x, model):
    single = SoftKMeans(4, metric="cosine").fit(x.astype(np.float32))
    np.testing.assert_allclose(single.cluster_centers_, model.cluster_centers_, rtol=0, atol=1e-5)
    assert single.transform(x.astype(np.float32)).dtype == np.float32
    np.testing.assert_array_equal(single.predict(x.astype(np.float32)), model.labels_)


def test_any_chunking_scheduler_or_store_gives_the_same_fit(x, model, client, tmp_path):
    """Dask chunks on the threaded scheduler and on a LocalCluster, a Zarr array held in the
    workers' memory and one streamed from the store at every pass (out of core): the fit of
    the NumPy array, to float tolerance; the same blocks on two schedulers, to the bit."""
    path = str(tmp_path / "x.zarr")
    store = zarr.create_array(path, shape=x.shape, chunks=(128, 5), dtype="float64")
    store[:] = x
    dx = da.from_array(x, chunks=(97, 5))
    with dask.config.set(scheduler="threads"):
        threaded = SoftKMeans(4, metric="cosine").fit(dx)
    runs = {
        "threads, rows of 97": threaded,
        "LocalCluster, rows of 97": SoftKMeans(4, metric="cosine").fit(dx),
        "Zarr held in memory": SoftKMeans(4, metric="cosine", persist=True).fit(path),
        "Zarr streamed": SoftKMeans(4, metric="cosine", persist=False).fit(path),
    }
    np.testing.assert_array_equal(runs["LocalCluster, rows of 97"].cluster_centers_,
                                  threaded.cluster_centers_)
    assert not runs["Zarr streamed"].persisted_
    for name, fitted in runs.items():
        try:
            np.testing.assert_allclose(fitted.cluster_centers_, model.cluster_centers_,
                                       rtol=0, atol=1e-9)
            assert fitted.inertia_ == pytest.approx(model.inertia_, rel=1e-9)
            np.testing.assert_array_equal(np.asarray(fitted.labels_), model.labels_)
        except AssertionError as exc:
            raise AssertionError(f"{name} differs from the NumPy fit") from exc
    lazy = model.predict(path)
    assert isinstance(lazy, da.Array)
    np.testing.assert_array_equal(lazy.compute(), model.labels_)


def test_rows_of_zeros_are_refused_in_the_first_pass_with_the_fix(x):
    bad = x.copy()
    bad[[5, 700, 1200]] = 0.0
    # The first pass (the scan) finds them: no other pass runs.
    runner = Runner(bad)
    with pytest.raises(InputError, match=r"3 rows whose values are all zero") as info:
        summarize(runner, 4, "cosine")
    assert runner.n_passes == 1
    assert "Drop or replace zero rows; cosine is undefined for them" in str(info.value)
    for data in (bad, da.from_array(bad, chunks=(400, 5))):
        with pytest.raises(InputError, match="3 rows whose values are all zero"):
            SoftKMeans(4, metric="cosine").fit(data)
    SoftKMeans(4).fit(bad)  # the Euclidean metric has nothing against the origin
    with pytest.raises(InputError, match="Drop or replace zero rows"):
        SoftKMeans(4, metric="cosine").fit(x).predict(bad)
    with pytest.raises(InputError, match="3 rows whose values are all zero"):
        soft_statistics(bad, np.eye(5)[:2], 0.5, metric="cosine")
    nan = x.copy()
    nan[3, 1] = np.nan
    with pytest.raises(InputError, match=r"NaN or infinity .* in 1 rows"):
        SoftKMeans(4, metric="cosine").fit(nan)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_rows_of_one_direction_cannot_be_split(dtype):
    """Positive multiples of one row differ only by rounding once scaled to unit length."""
    rows = (np.array([[1.0, 2.0, 3.0]]) * np.arange(1, 41)[:, None]).astype(dtype)
    with pytest.raises(InputError, match=r"points in the same direction.*positive multiples"):
        SoftKMeans(2, metric="cosine").fit(rows)
    one = SoftKMeans(1, metric="cosine").fit(rows)
    np.testing.assert_allclose(one.cluster_centers_[0], [1, 2, 3] / np.sqrt(14.0), atol=1e-6)


@pytest.mark.parametrize(("dtype", "tiny", "huge"), [(np.float64, 1e-170, 1e170),
                                                    (np.float32, 1e-22, 1e22)])
def test_tiny_and_huge_rows_are_directions_too(x, model, dtype, tiny, huge):
    """Row lengths whose squares under- or overflow the data's precision are not zero rows."""
    scaled = (x * np.where(np.arange(len(x)) % 2 == 0, tiny, huge)[:, None]).astype(dtype)
    np.testing.assert_array_equal(model.predict(scaled), model.labels_)


def test_an_unknown_metric_is_refused_with_the_choices():
    with pytest.raises(InvalidParameterError, match="'metric' parameter") as info:
        SoftKMeans(2, metric="manhattan").fit(np.eye(3))
    assert "'cosine'" in str(info.value) and "'euclidean'" in str(info.value)
    with pytest.raises(InputError, match="metric must be one of 'euclidean', 'cosine'"):
        soft_statistics(np.eye(3), np.eye(3)[:2], 1.0, metric="manhattan")


def _split_free_energy(unit_rows: np.ndarray, temperature: float, eps: float) -> float:
    """Free energy of two half-weight centers normalise(c0 +- eps u), minus that of one at c0."""
    mean = unit_rows.mean(axis=0)
    c0 = mean / np.linalg.norm(mean)
    projector = np.eye(len(c0)) - np.outer(c0, c0)
    second = unit_rows.T @ unit_rows / len(unit_rows)
    u = np.linalg.eigh(projector @ second @ projector)[1][:, -1]
    pair = np.array([c0 + eps * u, c0 - eps * u])
    split = soft_statistics(unit_rows, pair, temperature, log_priors=np.log([0.5, 0.5]),
                            metric="cosine")
    one = soft_statistics(unit_rows, c0[None, :], temperature, metric="cosine")
    return split.free_energy - one.free_energy


def test_the_first_critical_temperature_on_the_sphere(x):
    """T_c = 2 lambda_max(P S P) / R: a tiny symmetric split lowers the free energy just
    below it and raises it just above; the fit starts from it."""
    unit_rows = x / np.linalg.norm(x, axis=1, keepdims=True)
    mean = unit_rows.mean(axis=0)
    resultant = np.linalg.norm(mean)
    c0 = mean / resultant
    projector = np.eye(5) - np.outer(c0, c0)
    second = unit_rows.T @ unit_rows / len(unit_rows)
    t_critical = 2.0 * np.linalg.eigvalsh(projector @ second @ projector)[-1] / resultant
    summary = summarize(Runner(x), 4, "cosine")
    assert 2.0 * summary.top_variance == pytest.approx(t_critical, rel=1e-10)
    assert abs(summary.top_axis @ c0) < 1e-12
    np.testing.assert_allclose(summary.offset, mean, rtol=0, atol=1e-14)
    for eps in (1e-3, 1e-2):
        assert _split_free_energy(unit_rows, 0.97 * t_critical, eps) < 0
        assert _split_free_energy(unit_rows, 1.03 * t_critical, eps) > 0
    # The second-order term: n eps^2 (R - 2 lambda / T) at T = T_c / 2.
    eps = 1e-4
    want = len(x) * eps**2 * (resultant - 2.0 * resultant)
    assert _split_free_energy(unit_rows, 0.5 * t_critical, eps) == pytest.approx(want, rel=1e-3)
    fitted = SoftKMeans(4, metric="cosine").fit(x)
    assert fitted.phase_diagram_[0, 0] == pytest.approx(t_critical, rel=1e-10)
    assert fitted.phase_diagram_[0, 1] == 1


def test_the_critical_temperature_by_power_iteration_above_the_gram_limit():
    """Beyond GRAM_MAX_FEATURES the scan skips the D x D matrix: power iteration on the
    tangent space finds the same T_c."""
    d = GRAM_MAX_FEATURES + 8
    x, _ = directions(300, d, 3, 0.8, seed=9)
    unit_rows = x / np.linalg.norm(x, axis=1, keepdims=True)
    mean = unit_rows.mean(axis=0)
    resultant = np.linalg.norm(mean)
    c0 = mean / resultant
    centered = unit_rows - mean
    tangent = centered - np.outer(centered @ c0, c0)
    top = np.linalg.svd(tangent, compute_uv=False)[0] ** 2 / len(x)
    summary = summarize(Runner(x), 3, "cosine")
    assert summary.top_variance == pytest.approx(top / resultant, rel=1e-3)
    assert abs(summary.top_axis @ c0) < 1e-10


def test_soft_statistics_on_the_sphere(x, model):
    t = 0.2
    stats = soft_statistics(x, 3.0 * model.cluster_centers_, t, metric="cosine")  # any lengths
    unit_rows = x / np.linalg.norm(x, axis=1, keepdims=True)
    cos = unit_rows @ model.cluster_centers_.T
    logits = 2.0 * cos / t
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(stats.counts, p.sum(axis=0), rtol=1e-10)
    np.testing.assert_allclose(stats.sums, p.T @ unit_rows, rtol=0, atol=1e-9)
    assert stats.inertia == pytest.approx(2.0 * model.inertia_, rel=1e-10)
    # The Riemannian gradient: tangent to the sphere at each center.
    np.testing.assert_allclose(np.einsum("kd,kd->k", stats.gradient, model.cluster_centers_),
                               0.0, atol=1e-9)
    hard = soft_statistics(x, model.cluster_centers_, 0.0, metric="cosine")
    assert np.abs(hard.gradient).max() < 1e-9  # the fitted centers are its fixed point


def test_save_load_partial_fit_and_checkpoints_keep_the_metric(x, model, tmp_path):
    model.save(tmp_path / "model.npz")
    loaded = SoftKMeans.load(tmp_path / "model.npz")
    assert loaded.metric == "cosine"
    np.testing.assert_array_equal(loaded.predict(x), model.labels_)
    np.testing.assert_array_equal(loaded.transform(x), model.transform(x))
    loaded.partial_fit(x[:300])
    np.testing.assert_allclose(np.linalg.norm(loaded.cluster_centers_, axis=1), 1.0, atol=1e-15)
    # The fitted metric, not a parameter set after the fit, decides the per-sample results.
    changed = SoftKMeans.load(tmp_path / "model.npz").set_params(metric="euclidean")
    np.testing.assert_array_equal(changed.transform(x), model.transform(x))

    checkpointed = SoftKMeans(4, metric="cosine", checkpoint=tmp_path / "ckpt").fit(x)
    np.testing.assert_array_equal(checkpointed.cluster_centers_, model.cluster_centers_)
    # Another metric scans other statistics (of the unit rows), and is another parameter.
    with pytest.raises(CheckpointError, match="was written for other data"):
        SoftKMeans(4, checkpoint=tmp_path / "ckpt").fit(x, resume=True)
    assert result_parameters(model.get_params())["metric"] == "cosine"
    resumed = SoftKMeans(4, metric="cosine", checkpoint=tmp_path / "ckpt").fit(x, resume=True)
    np.testing.assert_array_equal(resumed.cluster_centers_, model.cluster_centers_)


def test_command_line_fit_metric_cosine_and_predict(x, model, tmp_path):
    path = str(tmp_path / "x.zarr")
    zarr.create_array(path, shape=x.shape, chunks=(250, 5), dtype="float64")[:] = x
    out = str(tmp_path / "model.npz")
    result = CliRunner().invoke(main, ["fit", path, "--k", "4", "--metric", "cosine",
                                       "--workers", "1", "--out", out, "-q"])
    assert result.exit_code == 0, result.output
    fitted = SoftKMeans.load(out)
    assert fitted.metric == "cosine"
    np.testing.assert_allclose(fitted.cluster_centers_, model.cluster_centers_, rtol=0, atol=1e-9)
    result = CliRunner().invoke(main, ["predict", out, path, str(tmp_path / "pred.zarr"),
                                       "--distances", "--workers", "1", "-q"])
    assert result.exit_code == 0, result.output
    group = zarr.open_group(str(tmp_path / "pred.zarr"), mode="r")
    np.testing.assert_array_equal(group["labels"][:], model.labels_)
    np.testing.assert_allclose(group["distances"][:], model.transform(x), rtol=0, atol=1e-6)
    result = CliRunner().invoke(main, ["fit", path, "--metric", "manhattan"])
    assert result.exit_code == 2 and "'manhattan' is not one of 'euclidean', 'cosine'" in result.output


def test_directions_that_cancel_out_still_give_a_unit_center():
    """No mean direction (the unit rows sum to zero): every unit center is as good, and the
    fit returns one (never the zero vector), with its objective N."""
    x = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    model = SoftKMeans(1, metric="cosine").fit(x)
    assert np.linalg.norm(model.cluster_centers_[0]) == pytest.approx(1.0)
    assert model.inertia_ == pytest.approx(4.0)
    np.testing.assert_allclose(model.transform(x).sum(), 4.0)


def test_a_saved_model_keeps_the_metric_and_k_it_was_fitted_with(tmp_path):
    x = np.random.default_rng(1).normal(size=(200, 4))
    model = SoftKMeans(3, metric="cosine").fit(x)
    model.set_params(metric="euclidean", n_clusters=5)  # for the next fit, not this one
    assert model.summary()["params"]["metric"] == "cosine"
    assert model.summary()["params"]["n_clusters"] == 3
    model.save(tmp_path / "m.npz")
    loaded = SoftKMeans.load(tmp_path / "m.npz")
    assert loaded.score(x) == pytest.approx(model.score(x), rel=1e-12)


def test_cosine_on_chunks_of_another_array_library_is_refused_before_any_pass():
    jnp = pytest.importorskip("jax.numpy")
    x = da.from_array(np.random.default_rng(0).normal(size=(100, 3)), chunks=50)
    model = SoftKMeans(2, metric="cosine")
    with pytest.raises(InputError, match=r"metric='cosine' is computed for NumPy data"):
        model.fit(x.map_blocks(jnp.asarray))
    assert not hasattr(model, "history_")
