"""SoftKMeans: the scikit-learn contract, determinism, fixed points, quality."""

from __future__ import annotations

import warnings

import dask
import dask.array as da
import numpy as np
import pytest
import zarr
from sklearn.cluster import KMeans
from sklearn.utils.estimator_checks import parametrize_with_checks

from dask_softkmeans import SoftKMeans, soft_statistics
from dask_softkmeans.errors import InputError


@parametrize_with_checks([SoftKMeans(n_clusters=3)])
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


def test_fit_recovers_blobs_like_kmeans(blobs):
    x, _, _ = blobs
    model = SoftKMeans(4).fit(x)
    reference = KMeans(4, n_init=10, random_state=0).fit(x)
    assert model.inertia_ == pytest.approx(reference.inertia_, rel=1e-6)

    def by_first_coordinate(c):
        return c[np.argsort(c[:, 0])]

    np.testing.assert_allclose(by_first_coordinate(model.cluster_centers_),
                               by_first_coordinate(reference.cluster_centers_), rtol=1e-9)
    assert model.labels_.shape == (len(x),)
    assert set(model.labels_) == {0, 1, 2, 3}


def test_final_centers_are_a_lloyd_fixed_point(blobs):
    x, _, _ = blobs
    model = SoftKMeans(4).fit(x)
    labels = model.predict(x)
    means = np.array([x[labels == k].mean(0) for k in range(4)])
    np.testing.assert_allclose(model.cluster_centers_, means, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(labels, model.labels_)
    lloyd = [h for h in model.history_ if h["phase"] == "lloyd"]
    assert lloyd[-1]["shift"] == 0.0


def test_free_energy_bound_at_the_fitted_centers(blobs):
    """J - N T log K <= F_T <= J at every temperature."""
    x, _, _ = blobs
    model = SoftKMeans(4).fit(x)
    for t in (1e-3, 0.1, 1.0, 10.0, 1e3):
        s = soft_statistics(x, model.cluster_centers_, t)
        assert s.inertia - len(x) * t * np.log(4) <= s.free_energy + 1e-9 * s.inertia
        assert s.free_energy <= s.inertia * (1 + 1e-12)


def test_history_records_every_pass(blobs):
    x, _, _ = blobs
    model = SoftKMeans(4).fit(x)
    assert len(model.history_) == model.n_iter_
    keys = {"phase", "temperature", "free_energy", "inertia", "entropy", "shift",
            "n_clusters", "seconds"}
    assert keys <= set(model.history_[0])
    temperatures = [h["temperature"] for h in model.history_]
    assert temperatures == sorted(temperatures, reverse=True)  # it only cools
    assert model.phase_diagram_[0, 1] == 1
    assert model.phase_diagram_[0, 0] == pytest.approx(
        2 * np.linalg.eigvalsh(np.cov(x.T, bias=True))[-1])


def _fit_centers(x, **kw):
    model = SoftKMeans(4, random_state=0, compute_labels=False).fit(x, **kw)
    return model.cluster_centers_


def test_same_centers_across_chunkings_and_schedulers(blobs, tmp_path, client):
    x, _, _ = blobs
    reference = _fit_centers(x)
    store = zarr.create_array(str(tmp_path / "x.zarr"), shape=x.shape, chunks=(300, 3),
                              dtype="float64")
    store[:] = x
    with dask.config.set(scheduler="synchronous"):
        sync = _fit_centers(da.from_array(x, chunks=(123, 3)))
    with dask.config.set(scheduler="threads"):
        threads = _fit_centers(da.from_array(x, chunks=(500, 3)))
    distributed = _fit_centers(str(tmp_path / "x.zarr"))  # the active client
    for other in (sync, threads, distributed):
        np.testing.assert_allclose(other, reference, rtol=1e-9, atol=1e-9)


def test_float32_input_works(blobs):
    x, _, _ = blobs
    model = SoftKMeans(4).fit(x.astype(np.float32))
    np.testing.assert_allclose(model.inertia_, SoftKMeans(4).fit(x).inertia_, rtol=1e-5)


def test_float32_and_float64_input_take_the_same_passes():
    """Overlapping blobs (splits, merges, Lloyd and swaps): float32 rows change only the
    rounding of the distances, not the course of the fit; the statistics are float64 sums
    in both.  Small float64 data run the float32 fit's passes on a float32 copy, then only
    the few passes that finish on the float64 rows (Lloyd's check and the swap probe)."""
    from sklearn.datasets import make_blobs

    x, _ = make_blobs(6000, n_features=2, centers=15, cluster_std=1.0, center_box=(-20, 20),
                      random_state=1)
    fits = [SoftKMeans(15, compute_labels=False).fit(x.astype(dtype))
            for dtype in (np.float64, np.float32)]
    on_copy = [r["phase"] for r in fits[0].history_ if r["data"] == "copy"]
    assert on_copy == [r["phase"] for r in fits[1].history_]
    finish = [r for r in fits[0].history_ if r["data"] == "full"]
    assert all(r["temperature"] == 0 for r in finish)
    phases = [r["phase"] for r in finish]
    assert phases == ["lloyd"] * (len(phases) - 1) + ["swap"] and len(phases) <= 5
    centers = [f.cluster_centers_[np.lexsort(f.cluster_centers_.T[::-1])] for f in fits]
    np.testing.assert_allclose(centers[1], centers[0], rtol=0, atol=1e-5 * np.abs(x).max())
    assert fits[1].inertia_ == pytest.approx(fits[0].inertia_, rel=1e-6)


def test_dask_in_dask_out(blobs):
    x, _, _ = blobs
    dx = da.from_array(x, chunks=500)
    model = SoftKMeans(4).fit(dx)
    labels = model.predict(dx)
    proba = model.predict_proba(dx, temperature=1.0)
    distances = model.transform(dx)
    assert isinstance(labels, da.Array) and isinstance(proba, da.Array)
    assert isinstance(distances, da.Array)
    np.testing.assert_array_equal(labels.compute(), model.predict(x))
    np.testing.assert_allclose(proba.compute().sum(1), 1.0)
    np.testing.assert_allclose(distances.compute(), model.transform(x))
    assert isinstance(model.fit_predict(dx), da.Array)
    assert model.score(dx) == pytest.approx(-model.inertia_, rel=1e-12)


def test_fitted_model_does_not_carry_the_data(blobs):
    import pickle

    x, _, _ = blobs
    model = SoftKMeans(4, compute_labels=False).fit(da.from_array(x, chunks=500))
    assert len(pickle.dumps(model)) < x.nbytes / 4


def test_sample_weight_equals_repeated_rows(blobs):
    x, _, _ = blobs
    w = np.arange(len(x)) % 3
    weighted = SoftKMeans(4, compute_labels=False).fit(x, sample_weight=w)
    repeated = SoftKMeans(4, compute_labels=False).fit(np.repeat(x, w, axis=0))
    np.testing.assert_allclose(weighted.cluster_centers_, repeated.cluster_centers_, rtol=1e-9)


def test_two_blobs_split_at_the_critical_temperature():
    """One distinct center above T_c = 2 lambda_max, two below."""
    rng = np.random.default_rng(0)
    x = np.vstack([rng.normal(size=(500, 2)) * 0.3 + [-3, 0],
                   rng.normal(size=(500, 2)) * 0.3 + [3, 0]])
    model = SoftKMeans(2).fit(x)
    t_c = 2 * np.linalg.eigvalsh(np.cov(x.T, bias=True))[-1]
    diagram = model.phase_diagram_
    assert diagram[0].tolist() == [pytest.approx(t_c), 1]
    assert (diagram[diagram[:, 0] >= t_c, 1] == 1).all()
    assert diagram[-1, 1] == 2
    np.testing.assert_allclose(np.sort(model.cluster_centers_[:, 0]), [-3, 3], atol=0.05)


def test_unbalanced_far_small_clusters_each_get_a_center():
    """Three dense clusters of 2000 points and five sparse far ones of 100 (like `unbalance`)."""
    rng = np.random.default_rng(0)
    dense = [(0, 0), (6, 0), (3, 5)]
    far = [(60, 60), (70, 60), (60, 70), (70, 70), (65, 80)]
    x = np.vstack([rng.normal(size=(2000, 2)) + c for c in dense]
                  + [rng.normal(size=(100, 2)) * 1.5 + c for c in far])
    model = SoftKMeans(8).fit(x)
    truth = np.array(dense + far, dtype=float)
    nearest = ((truth[:, None] - model.cluster_centers_[None]) ** 2).sum(-1).min(1)
    assert nearest.max() < 1.0


def test_deterministic_whatever_the_random_state(blobs):
    x, _, _ = blobs
    a = SoftKMeans(4, random_state=1).fit(x).cluster_centers_
    b = SoftKMeans(4, random_state=2).fit(x).cluster_centers_
    np.testing.assert_array_equal(a, b)


def test_n_init_keeps_the_best_run(blobs):
    x, _, _ = blobs
    one = SoftKMeans(4).fit(x)
    three = SoftKMeans(4, n_init=3, random_state=0).fit(x)
    assert three.inertia_ <= one.inertia_ * (1 + 1e-12)


def test_fewer_distinct_points_than_clusters_warns():
    x = np.repeat([[0.0, 0.0], [1.0, 1.0]], 5, axis=0)
    with pytest.warns(UserWarning, match="distinct clusters"):
        model = SoftKMeans(3).fit(x)
    assert model.cluster_centers_.shape == (3, 2)
    assert model.inertia_ == pytest.approx(0.0)


@pytest.mark.parametrize(
    "x, k, error, message",
    [
        (np.zeros((2, 2)), 3, InputError, "n_samples=2 should be >= n_clusters=3"),
        (np.array([[1.0, np.inf]] * 4), 2, ValueError, "NaN or infinity"),
        (np.array([[1e200, 0.0], [-1e200, 0.0]] * 2), 2, InputError, "overflow"),
    ],
)
def test_bad_input(x, k, error, message):
    with pytest.raises(error, match=message):
        SoftKMeans(k).fit(x)


def test_bad_parameters_are_named():
    with pytest.raises(ValueError, match="n_clusters"):
        SoftKMeans(0).fit(np.zeros((4, 2)))
    with pytest.raises(ValueError, match="cooling"):
        SoftKMeans(2, cooling=1.5).fit(np.zeros((4, 2)))


def test_save_and_load_round_trip(blobs, tmp_path):
    x, _, _ = blobs
    model = SoftKMeans(4).fit(x)
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = SoftKMeans.load(path)
    np.testing.assert_array_equal(loaded.cluster_centers_, model.cluster_centers_)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    assert loaded.get_params() == model.get_params()
    with pytest.raises(FileExistsError):
        model.save(path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(InputError, match="damaged"):
        SoftKMeans.load(path)


def test_predict_refuses_a_different_number_of_features(blobs):
    x, _, _ = blobs
    model = SoftKMeans(4).fit(da.from_array(x, chunks=500))
    with pytest.raises(InputError, match="expecting 3 features"):
        model.predict(da.from_array(x[:, :2], chunks=500))
    with pytest.raises(ValueError, match="3 features"):
        model.predict(x[:, :2])


def test_nan_at_predict_is_refused_for_dask_input(blobs):
    x, _, _ = blobs
    model = SoftKMeans(4).fit(x)
    bad = x.copy()
    bad[7, 1] = np.nan
    with pytest.raises(InputError, match="NaN"):
        model.predict(da.from_array(bad, chunks=500)).compute()
    assert np.isnan(bad[7, 1])  # the user's array is untouched


def test_bad_weights_are_refused_for_dask_input_too(blobs):
    x, _, _ = blobs
    w = np.ones(len(x))
    w[3] = -1.0
    with pytest.raises(InputError, match="sample_weight"):
        SoftKMeans(4).fit(da.from_array(x, chunks=500), sample_weight=w)
    with pytest.raises(InputError, match="sample_weight"):
        SoftKMeans(4).fit(da.from_array(x, chunks=500),
                          sample_weight=da.from_array(w, chunks=500))


def test_float32_overflow_is_explained():
    x = (np.random.default_rng(0).normal(size=(300, 2)) * 1e20).astype(np.float32)
    with pytest.raises(InputError, match="overflow"):
        SoftKMeans(3).fit(x)


def test_max_iter_stop_reports_the_inertia_of_the_returned_centers(blobs):
    x, _, _ = blobs
    with pytest.warns(Warning, match="max_iter"):
        model = SoftKMeans(4, max_iter=1).fit(x)
    assert model.inertia_ == pytest.approx(-model.score(x), rel=1e-12)


def test_save_with_a_random_state_object(blobs, tmp_path):
    x, _, _ = blobs
    model = SoftKMeans(4, random_state=np.random.RandomState(0)).fit(x)
    model.save(tmp_path / "m.npz")
    assert SoftKMeans.load(tmp_path / "m.npz").random_state is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz"]


def test_fewer_distinct_points_than_clusters_warns_as_kmeans_does():
    """Three distinct points, five clusters: each point is a center, the two extra centers
    duplicate two of them, and a ConvergenceWarning says so.  Before, splits of rounding
    error gave centers 1e-8 apart, two empty clusters and no warning."""
    from sklearn.exceptions import ConvergenceWarning

    x = np.repeat(np.eye(3), 50, axis=0)
    with pytest.warns(ConvergenceWarning, match=r"distinct clusters \(3\).*n_clusters \(5\)"):
        model = SoftKMeans(5).fit(x)
    centers = np.round(model.cluster_centers_, 12)
    assert sorted(map(tuple, np.unique(centers, axis=0))) == sorted(map(tuple, np.eye(3)))
    assert model.inertia_ < 1e-20
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        SoftKMeans(3).fit(x)  # as many clusters as points: no warning


def test_auto_sample_grows_with_the_clusters():
    """``sample_size="auto"``: a pass with m centers reads max(10000, 200 m) rows of the
    sample, rounded up to 10000 times a power of two, never more than the sample."""
    from dask_softkmeans.estimator import auto_sample_size, sample_rows

    # The sample: 200 rows per cluster, at least 10000; cut to half the data when that is
    # more, as long as the cut one keeps 10000 rows and 20 per cluster.
    assert auto_sample_size(8, 1_000_000) == 10_000
    assert auto_sample_size(256, 200_000) == 51_200
    assert auto_sample_size(1024, 200_000) == 100_000
    assert auto_sample_size(4096, 200_000) == 100_000
    assert auto_sample_size(5000, 200_000) == 100_000
    assert auto_sample_size(5001, 200_000) is None
    assert auto_sample_size(8, 15_000) is None

    assert sample_rows(1, 60_000) == 10_000
    assert sample_rows(50, 60_000) == 10_000
    assert sample_rows(51, 60_000) == 20_000
    assert sample_rows(200, 60_000) == 40_000
    assert sample_rows(201, 60_000) == 60_000
    assert sample_rows(10**6, 60_000) == 60_000
    assert sample_rows(3, 5_000) == 5_000
    rng = np.random.default_rng(0)
    centers = rng.uniform(-30, 30, (80, 3))
    x = centers[rng.integers(0, 80, 40_000)] + rng.standard_normal((40_000, 3))
    model = SoftKMeans(80, compute_labels=False).fit(x)  # a sample of 16000 rows
    sampled = [r for r in model.history_ if r["data"] == "sample"]
    assert {r["weight"] for r in sampled if r["codevectors"] <= 50} == {10_000}
    assert {r["weight"] for r in sampled if r["codevectors"] > 50} == {16_000}
    assert {r["weight"] for r in sampled if r["temperature"] == 0} == {16_000}
    # An integer sample_size is the sample of every pass at T > 0.
    fixed = SoftKMeans(4, sample_size=12_000, compute_labels=False).fit(x)
    assert {r["weight"] for r in fixed.history_ if r["data"] == "sample"} == {12_000}
