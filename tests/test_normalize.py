"""Sparse responsibilities (entmax-1.5, sparsemax) against brute force and their properties."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from dask_softkmeans import SoftKMeans, soft_statistics
from dask_softkmeans.errors import InputError
from dask_softkmeans.kernels import normalize, normalize_vjp, responsibilities

KINDS = ["softmax", "entmax15", "sparsemax"]


def brute_force(u: np.ndarray, kind: str) -> np.ndarray:
    """The sparse maps by trying every support: the one whose KKT conditions hold.

    sparsemax: p_S = u_S - tau with sum p_S = 1.  entmax-1.5: p_S = (u_S/2 - tau)^2
    with sum p_S = 1, tau below every u_S/2.  Off the support the logit must not
    exceed the threshold.
    """
    k = len(u)
    for size in range(1, k + 1):
        for support in itertools.combinations(range(k), size):
            s = np.array(support)
            if kind == "sparsemax":
                tau = (u[s].sum() - 1.0) / size
                p_s = u[s] - tau
                off = u
            else:
                h = u[s] / 2.0
                # size tau^2 - 2 tau sum h + sum h^2 - 1 = 0, the root below min h.
                b, c = h.sum(), (h * h).sum() - 1.0
                disc = b * b - size * c
                if disc < 0:
                    continue
                tau = (b - np.sqrt(disc)) / size
                if np.any(h - tau < 0):
                    continue
                p_s = (h - tau) ** 2
                off = u / 2.0
            outside = np.setdiff1d(np.arange(k), s)
            if np.all(p_s > 0) and np.all(off[outside] <= tau + 1e-12):
                p = np.zeros(k)
                p[s] = p_s
                return p
    raise AssertionError("no support satisfies the KKT conditions")


def regulariser(p: np.ndarray, kind: str) -> float:
    if kind == "softmax":
        q = p[p > 0]
        return float(-(q * np.log(q)).sum())
    if kind == "entmax15":
        return float(4.0 / 3.0 * (1.0 - np.sum(p**1.5)))
    return float(0.5 * (1.0 - np.sum(p * p)))


@pytest.mark.parametrize("kind", ["entmax15", "sparsemax"])
def test_sparse_maps_match_brute_force(kind):
    rng = np.random.default_rng(0)
    u = rng.normal(scale=1.5, size=(6, 300))
    p, omega = normalize(u, kind)
    for j in range(u.shape[1]):
        np.testing.assert_allclose(p[:, j], brute_force(u[:, j], kind), atol=1e-12)
        assert omega[j] == pytest.approx(regulariser(p[:, j], kind), abs=1e-12)
    assert (p == 0).sum() > 0.2 * p.size  # exact zeros, many of them


@settings(max_examples=80, deadline=None)
@given(u=arrays(np.float64, st.tuples(st.integers(1, 7), st.integers(1, 5)),
                elements=st.floats(-50, 50)),
       kind=st.sampled_from(KINDS), seed=st.integers(0, 1000))
def test_each_map_maximises_its_regularised_objective(u, kind, seed):
    """p = argmax_{q in simplex} q.u + Omega(q): no random point of the simplex does better,
    rows are non-negative and sum to one."""
    p, omega = normalize(u, kind)
    assert np.all(p >= 0)
    np.testing.assert_allclose(p.sum(axis=0), 1.0, rtol=1e-12)
    best = np.einsum("kn,kn->n", p, u) + omega
    q = np.random.default_rng(seed).dirichlet(np.ones(u.shape[0]), size=(20, u.shape[1]))
    for trial in q:
        value = np.einsum("nk,kn->n", trial, u) + np.array(
            [regulariser(t, kind) for t in trial])
        assert np.all(value <= best + 1e-9 * (1 + np.abs(best)))


@pytest.mark.parametrize("kind", KINDS)
def test_vjp_matches_finite_differences(kind):
    rng = np.random.default_rng(1)
    u = rng.normal(scale=1.5, size=(5, 8))
    g = rng.normal(size=u.shape)
    p, _ = normalize(u, kind)
    got = normalize_vjp(p, g, kind)
    h = 1e-6
    numeric = np.zeros_like(u)
    for i, j in itertools.product(range(u.shape[0]), range(u.shape[1])):
        up, down = u.copy(), u.copy()
        up[i, j] += h
        down[i, j] -= h
        numeric[i, j] = ((normalize(up, kind)[0] - normalize(down, kind)[0])[:, j] @ g[:, j]) / (2 * h)
    np.testing.assert_allclose(got, numeric, atol=1e-7)


@pytest.mark.parametrize("kind", KINDS)
def test_stable_as_the_temperature_goes_to_zero(kind):
    """T from 10 down to the smallest float: finite, rows sum to 1, then the hard assignment."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(200, 3))
    c = rng.normal(size=(5, 3))
    hard = responsibilities(x, c, 0.0)
    with np.errstate(all="raise"):
        for t in [10.0, 1.0, 1e-2, 1e-8, 1e-100, 1e-300, 5e-324]:
            p = responsibilities(x, c, t, normalization=kind)
            assert np.all(np.isfinite(p))
            np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-12)
    if kind == "softmax":
        # Softmax is never exactly sparse: the clipped logits leave exp(-60) ~ 1e-26.
        np.testing.assert_allclose(p, hard, atol=1e-20)
        return
    np.testing.assert_array_equal(p, hard)
    # The sparse maps are exactly hard already at a moderate temperature.
    d = ((x[:, None] - c[None]) ** 2).sum(-1)
    gap = np.sort(d, axis=1)[:, 1] - d.min(axis=1)
    t = 0.4 * gap.min()  # sparsemax: zero below u_max - 1; entmax-1.5: below u_max - 2
    np.testing.assert_array_equal(responsibilities(x, c, t, normalization=kind), hard)


@pytest.mark.parametrize("kind", ["entmax15", "sparsemax"])
def test_soft_statistics_gradient_is_the_free_energy_derivative(kind):
    """F = sum_i min_p [sum p d - T Omega(p)]: by the envelope theorem dF/dc = 2 (N c - S)."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(400, 2)) + np.repeat(rng.normal(scale=3, size=(4, 2)), 100, axis=0)
    c = x[[0, 100, 200, 300]] + 0.2
    t = 2.0
    stats = soft_statistics(x, c, t, normalization=kind)
    p = responsibilities(x, c, t, normalization=kind)
    np.testing.assert_allclose(stats.counts, p.sum(axis=0), rtol=1e-10)
    d = ((x[:, None] - c[None]) ** 2).sum(-1)
    omega = np.array([regulariser(row, kind) for row in p])
    assert stats.free_energy == pytest.approx(np.sum((p * d).sum(1) - t * omega), rel=1e-9)
    h = 1e-6
    for k, j in [(0, 0), (3, 1)]:
        up, down = c.copy(), c.copy()
        up[k, j] += h
        down[k, j] -= h
        numeric = (soft_statistics(x, up, t, normalization=kind).free_energy
                   - soft_statistics(x, down, t, normalization=kind).free_energy) / (2 * h)
        assert stats.gradient[k, j] == pytest.approx(numeric, rel=1e-5, abs=1e-5)


def test_predict_proba_offers_the_sparse_maps(blobs):
    x, _, _ = blobs
    model = SoftKMeans(n_clusters=4).fit(x)
    soft = model.predict_proba(x, temperature=50.0)
    for kind in ("entmax15", "sparsemax"):
        p = model.predict_proba(x, temperature=50.0, normalization=kind)
        np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-12)
        assert (p == 0).mean() > (soft == 0).mean()
        np.testing.assert_array_equal(p.argmax(axis=1), soft.argmax(axis=1))
    with pytest.raises(InputError, match="normalization must be one of"):
        model.predict_proba(x, normalization="argmax")
