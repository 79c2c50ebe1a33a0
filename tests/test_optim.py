"""Optimisers on the reduced gradient and fit_temperature: EM and gradient methods agree."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from dask_softkmeans import fit_temperature, soft_statistics
from dask_softkmeans.errors import InputError
from dask_softkmeans.kernels import nearest
from dask_softkmeans.optim import OPTIMIZERS, adam, get_optimizer, momentum


@pytest.fixture(scope="module")
def overlapping():
    """Four blobs close enough that at T = 4 every point is shared between clusters."""
    x, _, centers = make_blobs(n_samples=1200, n_features=2, centers=4, cluster_std=1.5,
                               center_box=(-8, 8), random_state=3, return_centers=True)
    start = centers + np.random.default_rng(0).normal(scale=1.0, size=centers.shape)
    return x, start


def test_em_is_a_gradient_step_of_size_one_over_2n():
    """c - g / (2 n) = S / N: the closed-form update is a preconditioned gradient step."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 3))
    c = rng.normal(size=(4, 3))
    stats = soft_statistics(x, c, 0.7)
    total = stats.n_samples
    step, _ = get_optimizer("em").update(stats.gradient / total, (), counts=stats.counts / total)
    np.testing.assert_allclose(c + step, stats.sums / stats.counts[:, None], rtol=1e-12)


def test_registry_names_the_valid_optimizers():
    with pytest.raises(KeyError, match="em, gd, momentum, adam"):
        get_optimizer("lbfgs")
    assert set(OPTIMIZERS) == {"em", "gd", "momentum", "adam"}
    with pytest.raises(ValueError, match="learning_rate must be a finite number > 0"):
        adam(learning_rate=-1.0)
    with pytest.raises(ValueError, match="beta must be"):
        momentum(beta=1.0)
    with pytest.raises(TypeError):
        get_optimizer("adam", step=0.1)


@pytest.mark.parametrize("name", ["em", "gd", "momentum", "adam"])
def test_update_is_pure(name):
    """States are values: an update returns a new state and leaves its inputs alone."""
    opt = get_optimizer(name)
    params = np.ones((3, 2))
    state = opt.init(params)
    gradient = np.full((3, 2), 0.5)
    before = [np.copy(s) for s in state]
    step, new_state = opt.update(gradient, state, counts=np.full(3, 0.3))
    step_again, _ = opt.update(gradient, state, counts=np.full(3, 0.3))
    np.testing.assert_array_equal(step, step_again)
    for old, now in zip(before, state, strict=True):
        np.testing.assert_array_equal(old, now)
    assert np.all(step < 0)  # downhill
    assert new_state is not state or name in ("em", "gd")


@pytest.mark.parametrize("temperature", [4.0, 0.5])
def test_every_optimizer_reaches_the_em_fixed_point(overlapping, temperature):
    x, start = overlapping
    tol = 1e-10
    ref = fit_temperature(x, start, temperature, optimizer="em", tol=tol)
    assert ref.converged
    labels = nearest(x, ref.centers)[0]
    for opt in ("gd", "momentum", adam(learning_rate=0.1)):
        fit = fit_temperature(x, start, temperature, optimizer=opt, tol=tol, max_iter=5000)
        assert fit.converged, opt
        np.testing.assert_allclose(fit.centers, ref.centers, atol=20 * np.sqrt(tol * temperature))
        assert fit.free_energy == pytest.approx(ref.free_energy, rel=1e-9)
        np.testing.assert_array_equal(nearest(x, fit.centers)[0], labels)
    # At the fixed point the reduced gradient vanishes.
    stats = soft_statistics(x, ref.centers, temperature)
    assert np.abs(stats.gradient).max() <= 1e-3 * np.abs(stats.sums).max()


def test_em_never_increases_the_free_energy(overlapping):
    """EM is a majorise-minimise step: F falls at every pass."""
    x, start = overlapping
    fit = fit_temperature(x, start, 2.0, optimizer="em", tol=1e-12, max_iter=50)
    energies = np.array([h["free_energy"] for h in fit.history])
    assert np.all(np.diff(energies) <= 1e-9 * abs(energies[0]))
    assert energies[-1] < energies[0]


@pytest.mark.parametrize("normalization", ["entmax15", "sparsemax"])
def test_sparse_normalizations_have_the_same_fixed_point_equation(overlapping, normalization):
    x, start = overlapping
    ref = fit_temperature(x, start, 3.0, normalization=normalization, tol=1e-10)
    fit = fit_temperature(x, start, 3.0, optimizer=adam(learning_rate=0.1),
                          normalization=normalization, tol=1e-10, max_iter=5000)
    assert ref.converged and fit.converged
    np.testing.assert_allclose(fit.centers, ref.centers, atol=1e-3)


def test_dask_passes_on_a_cluster_give_the_numpy_path(overlapping, client):
    x, start = overlapping
    ref = fit_temperature(x, start, 4.0, optimizer="momentum", tol=1e-12, max_iter=12)
    got = fit_temperature(da.from_array(x, chunks=150), start, 4.0, optimizer="momentum",
                          tol=1e-12, max_iter=12, split_every=3)
    assert got.n_iter == ref.n_iter == 12
    np.testing.assert_allclose(got.centers, ref.centers, rtol=1e-9, atol=1e-9)


def test_bad_input_is_refused_before_any_pass(overlapping):
    x, start = overlapping
    with pytest.raises(KeyError, match="valid names"):
        fit_temperature(x, start, 1.0, optimizer="newton")
    with pytest.raises(InputError, match="temperature must be a finite number >= 0"):
        fit_temperature(x, start, -1.0)
    with pytest.raises(InputError, match="normalization must be one of"):
        fit_temperature(x, start, 1.0, normalization="softermax")
    with pytest.raises(InputError, match="centers must have shape"):
        fit_temperature(x, start[:, :1], 1.0)
    before = start.copy()
    fit_temperature(x, start, 1.0, max_iter=3)
    np.testing.assert_array_equal(start, before)


@pytest.mark.parametrize("name", ["gd", "momentum", "adam"])
def test_soft_kmeans_with_a_gradient_optimizer_finds_the_em_clustering(blobs, name):
    """The annealing with a gradient optimiser (state rebuilt at every split and merge)
    ends at the same Lloyd fixed point as the EM annealing."""
    from dask_softkmeans import SoftKMeans

    x, _, _ = blobs
    ref = SoftKMeans(n_clusters=4).fit(x)
    model = SoftKMeans(n_clusters=4, optimizer=name).fit(x)
    assert model.n_iter_ > ref.n_iter_  # gradient steps are smaller than EM's
    order = np.lexsort(ref.cluster_centers_.T)
    np.testing.assert_allclose(model.cluster_centers_[np.lexsort(model.cluster_centers_.T)],
                               ref.cluster_centers_[order], rtol=1e-12, atol=1e-12)
    assert adjusted_rand_score(ref.labels_, model.labels_) == 1.0
    assert model.inertia_ == pytest.approx(ref.inertia_, rel=1e-12)
