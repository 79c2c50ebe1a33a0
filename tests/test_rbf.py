"""The RBF network: gradients against finite differences, ridge read-out, joint training, Dask."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from sklearn.linear_model import Ridge
from sklearn.utils.estimator_checks import parametrize_with_checks

from dask_softkmeans import RBFNetworkClassifier, RBFNetworkRegressor
from dask_softkmeans.engine import Runner
from dask_softkmeans.errors import InputError
from dask_softkmeans.kernels.layout import RBFLayout
from dask_softkmeans.kernels.rbf import rbf_gradient_block
from dask_softkmeans.rbf_training import rbf_objective

KINDS = ["softmax", "entmax15", "sparsemax"]


@pytest.fixture(scope="module")
def rings():
    """Two classes that no linear model separates: an inner disc and a ring around it."""
    rng = np.random.default_rng(0)
    radius = np.concatenate([rng.uniform(0, 1, 300), rng.uniform(1.6, 2.6, 300)])
    angle = rng.uniform(0, 2 * np.pi, 600)
    x = np.column_stack([radius * np.cos(angle), radius * np.sin(angle)])
    return x, (radius > 1.3).astype(int)


def _objective_parts(x, side, centers, readout, bias, t, task, kind, offset):
    layout = RBFLayout(centers.shape[0], centers.shape[1], readout.shape[1])
    return layout.unpack(rbf_gradient_block(
        x, side, centers, readout, bias, t, offset=offset, task=task, normalization=kind))


@pytest.mark.parametrize("task", ["regression", "classification"])
@pytest.mark.parametrize("kind", KINDS)
def test_gradients_match_finite_differences(task, kind):
    """Every gradient of the loss and of the unsupervised term against central differences."""
    rng = np.random.default_rng(1)
    n, d, k, m = 60, 3, 4, 3
    x = rng.normal(size=(n, d)) + 10.0  # away from the origin: the offset matters
    centers = x[:k] + rng.normal(scale=0.3, size=(k, d))
    y = rng.normal(size=(n, m)) if task == "regression" else rng.integers(0, m, (n, 1))
    side = np.column_stack([rng.uniform(0.5, 2.0, n), y]).astype(float)
    readout, bias = rng.normal(size=(k, m)), rng.normal(size=m)
    t, offset, h = 1.3, x.mean(axis=0), 1e-6
    ref = _objective_parts(x, side, centers, readout, bias, t, task, kind, offset)

    def value(c=centers, w=readout, b=bias, temp=t):
        got = _objective_parts(x, side, c, w, b, temp, task, kind, offset)
        return np.array([float(got.loss), float(got.unsupervised)])

    def central(shift):
        return (value(**shift(h)) - value(**shift(-h))) / (2 * h)

    for i, j in [(0, 0), (2, 1), (3, 2)]:
        def move(e, i=i, j=j):
            c = centers.copy()
            c[i, j] += e
            return {"c": c}
        loss, unsup = central(move)
        assert ref.centers_loss[i, j] == pytest.approx(loss, rel=1e-5, abs=1e-6)
        assert ref.centers_unsupervised[i, j] == pytest.approx(unsup, rel=1e-5, abs=1e-6)

    def move_w(e):
        w = readout.copy()
        w[1, 2] += e
        return {"w": w}

    def move_b(e):
        b = bias.copy()
        b[0] += e
        return {"b": b}

    assert ref.readout[1, 2] == pytest.approx(central(move_w)[0], rel=1e-5, abs=1e-6)
    assert ref.bias[0] == pytest.approx(central(move_b)[0], rel=1e-5, abs=1e-6)
    loss, unsup = central(lambda e: {"temp": t * np.exp(e)})  # d / d log T
    assert float(ref.log_temperature_loss) == pytest.approx(loss, rel=1e-5, abs=1e-6)
    assert float(ref.log_temperature_unsupervised) == pytest.approx(unsup, rel=1e-5, abs=1e-6)


def test_unsupervised_term_is_the_free_energy_in_units_of_t():
    """For softmax: sum_i w_i (-log sum_k exp(-d_ik / T) + (D/2) log T)."""
    rng = np.random.default_rng(2)
    x, centers = rng.normal(size=(50, 2)), rng.normal(size=(3, 2))
    w, t = rng.uniform(0.5, 2, 50), 0.7
    side = np.column_stack([w, rng.normal(size=50)])
    got = _objective_parts(x, side, centers, np.zeros((3, 1)), np.zeros(1), t, "regression",
                           "softmax", np.zeros(2))
    d = ((x[:, None] - centers[None]) ** 2).sum(-1)
    expected = w @ (-np.log(np.exp(-d / t).sum(1)) + np.log(t))
    assert float(got.unsupervised) == pytest.approx(expected, rel=1e-12)


def test_dask_pass_on_a_cluster_equals_the_numpy_pass(client):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(500, 3))
    side = np.column_stack([np.ones(500), rng.integers(0, 3, 500)]).astype(float)
    centers, readout, bias = x[:5].copy(), rng.normal(size=(5, 3)), np.zeros(3)
    args = (centers, readout, bias, 0.8)
    kw = {"offset": x.mean(0), "task": "classification", "normalization": "entmax15"}
    ref = rbf_objective(Runner(x, side), *args, **kw)
    runner = Runner(da.from_array(x, chunks=64), da.from_array(side, chunks=(64, 2)),
                    split_every=3)
    got = rbf_objective(runner, *args, **kw)
    for a, b in zip(ref, got, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-11)


def test_ridge_readout_is_sklearn_ridge_on_the_hidden_layer():
    """The tree-reduced normal equations give scikit-learn's Ridge on H (intercept unpenalised)."""
    rng = np.random.default_rng(4)
    x = rng.uniform(-3, 3, size=(400, 2))
    y = np.sin(x[:, 0]) + 0.5 * x[:, 1] ** 2
    model = RBFNetworkRegressor(n_centers=10, alpha=0.1).fit(x, y)
    h = model.transform(x)
    np.testing.assert_allclose(h.sum(1), 1.0, rtol=1e-12)
    ref = Ridge(alpha=0.1).fit(h, y)
    np.testing.assert_allclose(model.coef_, ref.coef_, rtol=1e-6, atol=1e-8)
    assert model.intercept_ == pytest.approx(ref.intercept_, rel=1e-6)
    np.testing.assert_allclose(model.predict(x), ref.predict(h), rtol=1e-8, atol=1e-8)
    assert model.n_iter_ == 1 and model.score(x, y) > 0.6


def test_joint_training_lowers_the_objective_and_fits_better(rings):
    """From the clustered centers, joint training falls monotonically enough to beat them."""
    x, y = rings
    ridge = RBFNetworkClassifier(n_centers=6).fit(x, y)
    joint = RBFNetworkClassifier(n_centers=6, training="joint", learning_rate=0.05,
                                 max_iter=150).fit(x, y)
    objective = [h["objective"] for h in joint.history_]
    assert min(objective) < 0.5 * objective[0]
    assert not np.allclose(joint.centers_, ridge.centers_)  # the centers moved
    assert joint.score(x, y) >= ridge.score(x, y)
    assert joint.score(x, y) > 0.97
    proba = joint.predict_proba(x)
    np.testing.assert_array_equal(joint.classes_[proba.argmax(1)], joint.predict(x))


def test_learned_temperature_moves_toward_the_mixture_likelihood(rings):
    """With only the unsupervised term, log T follows d/dlogT = D/2 - D_soft/T to its optimum."""
    x, y = rings
    model = RBFNetworkClassifier(n_centers=6, temperature=5.0, training="joint",
                                 learn_temperature=True, free_energy_weight=1.0,
                                 learning_rate=0.05, max_iter=150).fit(x, y)
    temperatures = [h["temperature"] for h in model.history_]
    assert temperatures[0] == pytest.approx(5.0)
    assert model.temperature_ < 1.0  # far too wide a start: it shrinks


@pytest.mark.parametrize("kind", ["entmax15", "sparsemax"])
def test_sparse_hidden_layer(rings, kind):
    x, y = rings
    model = RBFNetworkClassifier(n_centers=6, normalization=kind).fit(x, y)
    h = model.transform(x)
    assert (h == 0).mean() > 0.3
    np.testing.assert_allclose(h.sum(1), 1.0, rtol=1e-12)
    assert model.score(x, y) > 0.9


def test_dask_in_dask_out(rings, client):
    x, y = rings
    ref = RBFNetworkClassifier(n_centers=6, training="joint", max_iter=5).fit(x, y)
    dx, dy = da.from_array(x, chunks=100), da.from_array(y, chunks=100)
    model = RBFNetworkClassifier(n_centers=6, training="joint", max_iter=5).fit(dx, dy)
    np.testing.assert_allclose(model.centers_, ref.centers_, rtol=1e-8, atol=1e-10)
    labels = model.predict(dx)
    assert isinstance(labels, da.Array)
    np.testing.assert_array_equal(labels.compute(), ref.predict(x))


def test_bad_input_is_explained(rings):
    x, y = rings
    with pytest.raises(InputError, match="learn_temperature=True needs training='joint'"):
        RBFNetworkClassifier(learn_temperature=True).fit(x, y)
    with pytest.raises(InputError, match="n_samples=600 should be >= n_centers=700"):
        RBFNetworkClassifier(n_centers=700).fit(x, y)
    with pytest.raises(InputError, match="y has 10 rows but X has 600"):
        RBFNetworkRegressor(n_centers=3).fit(x, y[:10])
    with pytest.raises(InputError, match="NaN or infinity"):
        RBFNetworkRegressor(n_centers=3).fit(x, np.where(y == 1, np.nan, 0.0))
    fitted = RBFNetworkRegressor(n_centers=3).fit(x, y.astype(float))
    with pytest.raises(InputError, match="expecting 2 features"):
        fitted.predict(x[:, :1])


@parametrize_with_checks(
    [RBFNetworkRegressor(n_centers=3), RBFNetworkClassifier(n_centers=3)],
    expected_failed_checks=lambda est: {
        "check_regressors_train": "three RBF units cannot reach R^2 > 0.5 on the check's "
                                  "linear data set; the rest of the check passes"}
    if isinstance(est, RBFNetworkRegressor) else {},
)
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


def test_clustering_may_not_set_the_number_of_centers():
    x = np.random.default_rng(0).normal(size=(60, 2))
    with pytest.raises(InputError, match="give the number of centers as n_centers"):
        RBFNetworkRegressor(n_centers=3, clustering={"n_clusters": 5}).fit(x, x[:, 0])
