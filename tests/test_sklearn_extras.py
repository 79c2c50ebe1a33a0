"""scikit-learn extras: the default configuration passes every estimator
check, feature names out and ``set_output``, dtypes preserved, exact distances."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from sklearn.utils.estimator_checks import (
    check_sample_weight_equivalence_on_dense_data,
    parametrize_with_checks,
)

from dask_softkmeans import SoftKMeans
from dask_softkmeans.errors import InputError
from dask_softkmeans.kernels.predict import exact_squared_distances

pd = pytest.importorskip("pandas")


@parametrize_with_checks([SoftKMeans()])
def test_default_configuration_passes_every_estimator_check(estimator, check):
    """No check is exempted: the default SoftKMeans() passes them all, the sample weight
    equivalence included (a weight of 2 gives the same model as a repeated row)."""
    check(estimator)


def test_sample_weight_equivalence_regression():
    """Regression: a point on a center was at distance 2e-8, not 0, from the
    expanded norm formula, so weighted and repeated fits differed in transform."""
    check_sample_weight_equivalence_on_dense_data("SoftKMeans", SoftKMeans())


def test_a_point_on_a_center_is_at_distance_zero():
    rng = np.random.default_rng(3)
    centers = rng.normal(5.0, 3.0, (6, 4))
    x = np.concatenate([centers, centers + 1e-9, rng.normal(size=(50, 4))])
    offset = rng.normal(size=4)
    d = exact_squared_distances(x, centers, offset)
    assert np.all(np.diag(d[:6]) == 0.0)
    np.testing.assert_allclose(np.diag(d[6:12]), 4e-18, atol=1e-20)  # (1e-9)^2 * 4
    direct = ((x[:, None, :] - centers[None]) ** 2).sum(-1)
    np.testing.assert_allclose(d, direct, rtol=1e-10, atol=1e-20)
    model = SoftKMeans(2).fit(np.array([[0.0, 1.0], [10.0, 3.0], [0.0, 1.0], [10.0, 3.0]]))
    assert np.all(model.transform(model.cluster_centers_).min(axis=1) == 0.0)


@pytest.fixture(scope="module")
def model(blobs) -> SoftKMeans:
    x, _, _ = blobs
    return SoftKMeans(4).fit(x)


def test_feature_names_out_as_kmeans(model):
    np.testing.assert_array_equal(model.get_feature_names_out(),
                                  ["softkmeans0", "softkmeans1", "softkmeans2", "softkmeans3"])


def test_set_output_pandas(blobs):
    x, _, _ = blobs
    frame = pd.DataFrame(x, columns=["a", "b", "c"], index=np.arange(len(x)) + 100)
    model = SoftKMeans(4).set_output(transform="pandas")
    out = model.fit_transform(frame)
    assert isinstance(out, pd.DataFrame)
    assert list(out.columns) == [f"softkmeans{k}" for k in range(4)]
    pd.testing.assert_index_equal(out.index, frame.index)
    np.testing.assert_allclose(out.to_numpy(), model.set_output(transform="default").transform(frame))


def test_set_output_refuses_to_gather_a_lazy_result(model, blobs):
    x, _, _ = blobs
    model = SoftKMeans(4).fit(x).set_output(transform="pandas")
    with pytest.raises(InputError, match=r"X is lazy.*set_output\(transform='default'\)"):
        model.transform(da.from_array(x, chunks=500))


@pytest.mark.parametrize("lazy", [False, True], ids=["numpy", "dask"])
def test_float32_in_float32_out(model, blobs, lazy):
    x, _, _ = blobs
    x32 = x.astype(np.float32)
    X = da.from_array(x32, chunks=500) if lazy else x32
    distances, proba = model.transform(X), model.predict_proba(X)
    assert distances.dtype == np.float32 and proba.dtype == np.float32
    if lazy:
        distances, proba = distances.compute(), proba.compute()
        assert distances.dtype == np.float32 and proba.dtype == np.float32
    np.testing.assert_allclose(distances, model.transform(x), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(proba, model.predict_proba(x), atol=1e-5)
    assert model.transform(x).dtype == np.float64
    assert model.predict_proba(x).dtype == np.float64


def test_float32_fit_accumulates_in_float64(blobs):
    """Distances are formed in float32, the statistics summed in float64: the centers
    are those of the same values in float64 to float32's rounding, not worse."""
    x, _, _ = blobs
    x32 = x.astype(np.float32)
    model32 = SoftKMeans(4).fit(x32)
    model64 = SoftKMeans(4).fit(x32.astype(np.float64))
    assert model32.cluster_centers_.dtype == np.float64
    np.testing.assert_allclose(model32.cluster_centers_, model64.cluster_centers_, rtol=1e-6)


def test_tags_list_both_preserved_dtypes():
    assert SoftKMeans().__sklearn_tags__().transformer_tags.preserves_dtype == ["float64", "float32"]
