"""The per-block kernel against direct float64 formulas, and its properties."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from dask_softkmeans import kernels as _kernels
from dask_softkmeans.kernels import StatsLayout, block_statistics
from dask_softkmeans.kernels import common as _common


def direct(x, c, t, log_priors=None, w=None):
    """Textbook float64 formulas, one point at a time in spirit."""
    x = np.asarray(x, np.float64)
    w = np.ones(len(x)) if w is None else w
    d = ((x[:, None, :] - c[None, :, :]) ** 2).sum(-1)
    lp = np.zeros(len(c)) if log_priors is None else log_priors
    if t == 0:
        p = np.eye(len(c))[d.argmin(1)]
        f = d.min(1)
        h = np.zeros(len(x))
    else:
        a = lp[None, :] - d / t
        m = a.max(1, keepdims=True)
        z = np.exp(a - m).sum(1, keepdims=True)
        p = np.exp(a - m) / z
        f = -t * (m[:, 0] + np.log(z[:, 0]))
        with np.errstate(divide="ignore", invalid="ignore"):
            h = -np.where(p > 0, p * np.log(p), 0.0).sum(1)
    return {
        "counts": p.T @ w, "sums": (p * w[:, None]).T @ x, "free_energy": w @ f,
        "entropy": w @ h, "inertia": w @ d.min(1), "distortion": w @ (p * d).sum(1),
        "hard_counts": np.bincount(d.argmin(1), weights=w, minlength=len(c)),
    }


def stats_of(x, c, t, **kw):
    offset = kw.pop("offset", None)
    v = block_statistics(x, c, t, offset=offset, **kw)
    s = StatsLayout(*c.shape, kw.get("moments", "none")).unpack(v)
    o = np.zeros(c.shape[1]) if offset is None else offset
    return s, s.sums + s.counts[:, None] * o


@pytest.mark.parametrize("temperature", [0.0, 1e-8, 0.3, 5.0, 1e8])
@pytest.mark.parametrize("shift", [0.0, 1e6])
def test_kernel_matches_direct_formula(temperature, shift):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 4)) + shift
    c = x[:5] + rng.normal(scale=0.1, size=(5, 4))
    lp = np.log(rng.dirichlet(np.ones(5)))
    w = rng.uniform(0.5, 2.0, size=500)
    s, sums = stats_of(x, c, temperature, offset=x.mean(0), log_priors=lp, weights=w)
    ref = direct(x, c, temperature, None if temperature == 0 else lp, w)
    np.testing.assert_allclose(s.counts, ref["counts"], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(sums, ref["sums"], rtol=1e-9, atol=1e-6)
    np.testing.assert_allclose(s.inertia, ref["inertia"], rtol=1e-9)
    np.testing.assert_allclose(s.hard_counts, ref["hard_counts"])
    # The direct formula itself loses digits at 1e6: compare F relative to its scale.
    np.testing.assert_allclose(s.free_energy, ref["free_energy"], rtol=1e-9,
                               atol=1e-9 * abs(ref["inertia"]))
    np.testing.assert_allclose(s.entropy, ref["entropy"], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(s.distortion, ref["distortion"], rtol=1e-6, atol=1e-6)
    assert s.weight == pytest.approx(w.sum())


def test_float32_far_from_origin_has_no_cancellation():
    """float32 data at 1e4 with unit spread: the inertia stays exact to float32 input precision."""
    rng = np.random.default_rng(1)
    x = (rng.normal(size=(4000, 8)) + 1e4).astype(np.float32)
    c = np.asarray(x[:3], np.float64)
    s, _ = stats_of(x, c, 0.0, offset=np.asarray(x, np.float64).mean(0))
    ref = direct(np.asarray(x, np.float64), c, 0.0)
    np.testing.assert_allclose(s.inertia, ref["inertia"], rtol=1e-10)
    s32, _ = stats_of(x, c, 1.0, offset=np.asarray(x, np.float64).mean(0))
    ref1 = direct(np.asarray(x, np.float64), c, 1.0)
    np.testing.assert_allclose(s32.counts, ref1["counts"], rtol=1e-4, atol=1e-3)


def test_sub_blocks_do_not_change_the_sums(monkeypatch):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3000, 3))
    c = rng.normal(size=(4, 3))
    whole = block_statistics(x, c, 0.7)
    monkeypatch.setattr(_common, "TEMPORARY_ELEMENTS", 64 * 4)
    assert _kernels.sub_block_rows(4, 3) == 64
    np.testing.assert_allclose(block_statistics(x, c, 0.7), whole, rtol=1e-12)


def test_nonfinite_rows_are_counted_and_skipped():
    x = np.array([[0.0, 0.0], [np.nan, 1.0], [1.0, np.inf], [2.0, 2.0]])
    s, _ = stats_of(x, np.array([[0.0, 0.0]]), 1.0)
    assert s.nonfinite == 2
    assert s.weight == 2


def test_no_denormal_exponents_and_exact_zeros_are_fine():
    """Far clusters at a small T: responsibilities underflow to (almost) zero, no NaN."""
    x = np.array([[0.0], [100.0]])
    s, _ = stats_of(x, np.array([[0.0], [100.0]]), 1e-3)
    np.testing.assert_allclose(s.counts, [1.0, 1.0])
    assert s.entropy == pytest.approx(0.0, abs=1e-20)
    assert np.isfinite(s.free_energy)


@pytest.mark.parametrize("mode", ["full", "power"])
def test_moments_give_the_cluster_covariance(mode):
    rng = np.random.default_rng(3)
    cov = np.array([[4.0, 1.0, 0.0], [1.0, 2.0, 0.0], [0.0, 0.0, 0.5]])
    x = rng.multivariate_normal([5.0, -3.0, 1.0], cov, size=20000)
    c = np.array([[5.2, -3.1, 0.9]])
    v = np.array([[1.0, 0.0, 0.0]])
    s, _ = stats_of(x, c, 1.0, moments=mode, directions=v)
    delta = s.sums / s.counts[:, None] - c
    emp = np.cov(x.T, bias=True)
    if mode == "full":
        got = s.moments[0] / s.counts[0] - np.outer(delta[0], delta[0])
        np.testing.assert_allclose(got, emp, rtol=1e-9, atol=1e-9)
    else:
        got = s.moments[0] / s.counts[0] - delta[0] * (delta[0] @ v[0])
        np.testing.assert_allclose(got, emp @ v[0], rtol=1e-9, atol=1e-9)


@settings(max_examples=60, deadline=None)
@given(
    x=arrays(np.float64, st.tuples(st.integers(1, 30), st.integers(1, 4)),
             elements=st.floats(-1e3, 1e3)),
    k=st.integers(1, 5),
    temperature=st.floats(1e-6, 1e6),
    shift=st.floats(-1e5, 1e5),
)
def test_properties(x, k, temperature, shift):
    """Responsibilities sum to one; a common shift of data and centers changes nothing;
    the Γ-limit bound J - N T log K <= F <= J holds."""
    c = x[np.arange(k) % len(x)] + np.arange(k)[:, None] * 0.5
    p = _kernels.responsibilities(x, c, temperature)
    np.testing.assert_allclose(p.sum(1), 1.0, rtol=1e-12)
    a = StatsLayout(k, x.shape[1]).unpack(block_statistics(x, c, temperature))
    b = StatsLayout(k, x.shape[1]).unpack(
        block_statistics(x + shift, c + shift, temperature, offset=np.full(x.shape[1], shift)))
    scale = 1.0 + abs(float(a.inertia))
    np.testing.assert_allclose(a.counts, b.counts, rtol=1e-6, atol=1e-6 * len(x))
    assert abs(a.inertia - b.inertia) <= 1e-6 * scale
    n = len(x)
    tol = 1e-9 * (scale + n * temperature * np.log(k + 1))
    assert a.inertia - n * temperature * np.log(k) - tol <= a.free_energy <= a.inertia + tol


@settings(max_examples=40, deadline=None)
@given(
    x=arrays(np.float64, st.tuples(st.integers(1, 20), st.integers(1, 3)),
             elements=st.floats(-100, 100)),
    k=st.integers(2, 4),
)
def test_zero_temperature_limit_is_the_hard_assignment(x, k):
    c = np.linspace(-50, 50, k)[:, None] * np.ones(x.shape[1])
    d = ((x[:, None] - c[None]) ** 2).sum(-1)
    order = np.sort(d, axis=1)
    clear = (order[:, 1] - order[:, 0]) > 1e-3  # rows without a near-tie
    p = _kernels.responsibilities(x, c, 1e-7)
    hard = _kernels.responsibilities(x, c, 0.0)
    np.testing.assert_allclose(p[clear], hard[clear], atol=1e-12)
    labels, dmin = _kernels.nearest(x, c)
    np.testing.assert_array_equal(labels[clear], d.argmin(1)[clear])
    np.testing.assert_allclose(dmin, d.min(1), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_features, k", [(3, 5), (32, 32), (32, 17), (100, 7), (8, 1)])
def test_nearest_labels_are_the_nearest_centers(dtype, n_features, k):
    """Each product path of the compiled kernel (few features transposed, float32 tiles,
    the plain product), an odd K and K = 1, several chunks and a partial one, data far
    from the origin centered by the offset as ``predict`` does; near-ties aside."""
    rng = np.random.default_rng(n_features * k)
    c = rng.normal(scale=3.0, size=(k, n_features)) + 1000.0
    x = (c[rng.integers(k, size=5003)] + rng.normal(size=(5003, n_features))).astype(dtype)
    d = ((x.astype(np.float64)[:, None] - c[None]) ** 2).sum(-1)
    order = np.sort(d, axis=1)
    clear = np.ones(len(x), bool) if k == 1 else order[:, 1] - order[:, 0] > 1e-3 * order[:, 1]
    assert clear.mean() > 0.9
    labels = _kernels.nearest_labels(x, c, offset=x.mean(0, dtype=np.float64))
    assert labels.dtype == np.int32 and labels.shape == (len(x),)
    np.testing.assert_array_equal(labels[clear], d.argmin(1)[clear])
    assert _kernels.nearest_labels(x[:0], c).shape == (0,)


@pytest.mark.parametrize("moments", ["none", "power", "full"])
def test_layout_parts_are_where_unpack_finds_them(moments):
    layout = StatsLayout(3, 2, moments)
    vector = np.arange(layout.size, dtype=np.float64)
    views = layout.unpack(vector)
    for name in views._fields:
        part = getattr(views, name)
        np.testing.assert_array_equal(vector[layout.part(name)], part.reshape(-1))
        assert np.shares_memory(part, vector) or part.size == 0  # views, not copies
    assert layout.part(views._fields[-1]).stop == layout.size


def test_pass_params_replace_is_dataclasses_replace():
    """The fast ``replace`` of a pass's parameters gives what :func:`dataclasses.replace`
    gives, validated the same way, and refuses a field that does not exist."""
    import dataclasses

    params = _common.PassParams(np.ones((3, 2)), 2, log_priors=np.log(np.full(3, 1 / 3)),
                                moments="power", directions=np.eye(2)[[0, 1, 0]])
    fast = params.replace(centers=[[0, 1], [2, 3]], temperature=1, directions=np.eye(2))
    slow = dataclasses.replace(params, centers=[[0, 1], [2, 3]], temperature=1,
                               directions=np.eye(2))
    for field in dataclasses.fields(_common.PassParams):
        a, b = getattr(fast, field.name), getattr(slow, field.name)
        assert type(a) is type(b)
        np.testing.assert_array_equal(a, b)
    assert fast.centers.dtype == np.float64 and fast.shape == (2, 2)
    assert params.shape == (3, 2)  # the original is left as it was
    with pytest.raises(TypeError, match="no field 'temprature'"):
        params.replace(temprature=1.0)
    with pytest.raises(ValueError, match="needs directions"):
        params.replace(directions=None)
