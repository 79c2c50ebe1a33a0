"""The objective on the array API standard: equal to the NumPy reference, strict, differentiable.

:mod:`dask_softkmeans.kernels.array_api` is one implementation for every array
library; these tests hold it to the NumPy reference and the compiled kernel on
NumPy, run it on ``array-api-strict`` (which refuses anything outside the
standard, NumPy arrays included) and on JAX and PyTorch, whose gradients must give
the analytic gradient ``2 (N_k c_k - S_k)``.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import dask_softkmeans
from dask_softkmeans import fit_temperature, free_energy, soft_statistics
from dask_softkmeans.differentiable import array_statistics
from dask_softkmeans.errors import InputError
from dask_softkmeans.kernels import (
    StatsLayout,
    block_statistics,
    normalize,
    reference_statistics,
)
from dask_softkmeans.kernels import array_api as aa

NORMALIZATIONS = ["softmax", "entmax15", "sparsemax"]


@pytest.fixture
def problem():
    """Three overlapping 3-D clusters away from the origin, uneven priors and weights: every
    statistic is non-trivial and the sparse maps keep several centers per row."""
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(4, 3)) * 2 + 5.0
    x = np.concatenate([c + rng.normal(size=(80, 3)) for c in centers[:3]])
    log_priors = np.log(rng.dirichlet(np.ones(4) * 3))
    weights = rng.uniform(0.5, 2.0, size=x.shape[0])
    return x, centers, log_priors, weights


# -- NumPy: the same numbers as the reference and the compiled kernel ---------------------

@pytest.mark.parametrize("normalization", NORMALIZATIONS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("temperature", [0.0, 0.3, 4.0])
@pytest.mark.parametrize("moments", ["none", "full", "power"])
def test_packed_statistics_equal_the_reference(problem, normalization, dtype, temperature, moments):
    x, centers, log_priors, weights = problem
    directions = np.random.default_rng(1).normal(size=centers.shape) if moments == "power" else None
    kwargs = dict(offset=x.mean(axis=0), log_priors=log_priors, weights=weights, moments=moments,
                  directions=directions, removal=True, normalization=normalization)
    expected = reference_statistics(x.astype(dtype), centers, temperature, **kwargs)
    got = aa.packed_statistics(x.astype(dtype), centers, temperature, **kwargs)
    assert got.dtype == np.float64 and got.shape == expected.shape
    rtol = 1e-10 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=rtol * np.abs(expected).max())


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_packed_statistics_equal_the_compiled_kernel(problem, dtype):
    x, centers, log_priors, weights = problem
    kwargs = dict(offset=x.mean(axis=0), log_priors=log_priors, weights=weights)
    compiled = block_statistics(x.astype(dtype), centers, 0.5, **kwargs)  # NumPy: the numba kernel
    got = aa.packed_statistics(x.astype(dtype), centers, 0.5, **kwargs)
    rtol = 1e-9 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(got, compiled, rtol=rtol, atol=rtol * np.abs(compiled).max())


@pytest.mark.parametrize("normalization", NORMALIZATIONS)
def test_normalize_equals_the_reference(normalization):
    """Rows here, columns there: the same map, with exact zeros in the same places."""
    u = np.random.default_rng(2).normal(size=(200, 6)) * 3
    p, omega = aa.normalize(u, normalization)
    p_ref, omega_ref = normalize(u.T, normalization)
    np.testing.assert_allclose(p, p_ref.T, atol=1e-12)
    np.testing.assert_allclose(omega, omega_ref, atol=1e-12)
    np.testing.assert_array_equal(p == 0, p_ref.T == 0)
    if normalization != "softmax":
        assert (p == 0).any()


def test_nonfinite_rows_are_counted_and_left_out(problem):
    x, centers, _, _ = problem
    bad = x.copy()
    bad[[3, 7]] = np.nan
    bad[11, 0] = np.inf
    stats = StatsLayout(4, 3).unpack(aa.packed_statistics(bad, centers, 0.5))
    clean = StatsLayout(4, 3).unpack(
        aa.packed_statistics(np.delete(x, [3, 7, 11], axis=0), centers, 0.5))
    assert stats.nonfinite == 3
    np.testing.assert_allclose(stats.sums, clean.sums, rtol=1e-12)
    assert stats.weight == clean.weight == x.shape[0] - 3


@pytest.mark.parametrize("normalization", NORMALIZATIONS)
def test_free_energy_of_numpy_equals_soft_statistics(problem, normalization):
    x, centers, log_priors, weights = problem
    stats = soft_statistics(x, centers, 0.7, log_priors=log_priors, sample_weight=weights,
                            normalization=normalization)
    f = free_energy(x, centers, 0.7, normalization=normalization, log_priors=log_priors,
                    sample_weight=weights)
    assert isinstance(f, np.ndarray | np.generic) and np.ndim(f) == 0
    np.testing.assert_allclose(float(f), stats.free_energy, rtol=1e-10)


def test_free_energy_at_zero_temperature_is_the_inertia(problem):
    x, centers, _, _ = problem
    assert float(free_energy(x, centers, 0.0)) == pytest.approx(
        soft_statistics(x, centers, 0.0).inertia, rel=1e-10)


def test_free_energy_bad_input_names_the_problem(problem):
    x, centers, _, _ = problem
    with pytest.raises(InputError, match=r"centers must have shape \(n_clusters, 3\)"):
        free_energy(x, centers[:, :2], 1.0)
    with pytest.raises(InputError, match="temperature must be a finite number >= 0"):
        free_energy(x, centers, -1.0)
    with pytest.raises(InputError, match="temperature must be a finite number >= 0"):
        free_energy(x, centers, np.float32(-1.0))
    with pytest.raises(InputError, match="normalization must be one of"):
        free_energy(x, centers, 1.0, normalization="entmax")
    with pytest.raises(InputError, match=r"log_priors must have shape \(4,\)"):
        free_energy(x, centers, 1.0, log_priors=np.zeros(3))
    with pytest.raises(InputError, match="X must be 2-D"):
        free_energy(x[:, 0], centers, 1.0)


def test_free_energy_is_a_lazy_public_name():
    from dask_softkmeans import differentiable

    assert dask_softkmeans.free_energy is differentiable.free_energy
    assert "free_energy" in dask_softkmeans.__all__ and "free_energy" in dir(dask_softkmeans)


def test_numpy_and_jax_work_without_array_api_compat():
    """The extra is optional: NumPy >= 2.1 and JAX follow the standard by themselves."""
    pytest.importorskip("jax")
    code = ("import sys; sys.modules['array_api_compat'] = None\n"
            "import numpy as np, jax, jax.numpy as jnp\n"
            "from dask_softkmeans import free_energy\n"
            "from dask_softkmeans.kernels import array_api\n"
            "assert array_api.array_api_compat is None\n"
            "x, c = np.array([[0.0], [0.2], [5.0], [5.2]]), np.array([[0.3], [4.9]])\n"
            "f = free_energy(x, c, 0.5, normalization='entmax15')\n"
            "g = jax.grad(free_energy, argnums=1)(jnp.asarray(x), jnp.asarray(c), 0.5)\n"
            "print(float(f), float(g[0, 0]), float(g[1, 0]))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    x, c = np.array([[0.0], [0.2], [5.0], [5.2]]), np.array([[0.3], [4.9]])
    f, g0, g1 = map(float, result.stdout.split())
    assert f == pytest.approx(float(free_energy(x, c, 0.5, normalization="entmax15")), rel=1e-12)
    gradient = soft_statistics(x, c, 0.5).gradient
    assert [g0, g1] == pytest.approx(gradient[:, 0].tolist(), abs=1e-5)  # JAX in float32


# -- array-api-strict: nothing outside the standard ---------------------------------------

@pytest.fixture(params=["2023.12", "2024.12"])
def xps(request):
    """``array_api_strict`` restricted to one version of the standard (2023.12 is the
    oldest with ``cumulative_sum``)."""
    xps = pytest.importorskip("array_api_strict")
    pytest.importorskip("array_api_compat")
    flags = xps.get_array_api_strict_flags()
    xps.set_array_api_strict_flags(api_version=request.param)
    yield xps
    xps.set_array_api_strict_flags(**flags)


@pytest.mark.parametrize("normalization", NORMALIZATIONS)
def test_strict_arrays_end_to_end(xps, problem, normalization):
    x, centers, log_priors, weights = problem
    strict = [xps.asarray(a) for a in (x, centers, log_priors, weights)]
    got = soft_statistics(strict[0], strict[1], 0.7, log_priors=strict[2], sample_weight=strict[3],
                          normalization=normalization)
    expected = soft_statistics(x, centers, 0.7, log_priors=log_priors, sample_weight=weights,
                               normalization=normalization)
    for name, value in got._asdict().items():
        assert type(value) is type(strict[0]), name
        np.testing.assert_allclose(np.from_dlpack(value), getattr(expected, name), rtol=1e-9,
                                   atol=1e-9, err_msg=name)
    f = free_energy(*strict[:2], 0.7, normalization=normalization, log_priors=strict[2],
                    sample_weight=strict[3])
    assert type(f) is type(strict[0]) and f.shape == ()
    assert float(f) == pytest.approx(expected.free_energy, rel=1e-10)
    p = aa.responsibilities(strict[0], strict[1], 0.7, normalization=normalization)
    assert type(p) is type(strict[0]) and p.shape == (x.shape[0], 4)


def test_strict_rows_with_nan_are_refused_with_the_fix(xps, problem):
    x, centers, _, _ = problem
    bad = x.copy()
    bad[[2, 5]] = np.nan
    with pytest.raises(InputError, match="NaN or infinity in 2 rows"):
        soft_statistics(xps.asarray(bad), xps.asarray(centers), 0.5)


def test_a_strict_block_goes_through_the_array_api_kernel(xps, problem):
    """What a Dask array of non-NumPy chunks (CuPy) runs per block: the statistics come back
    packed as a float64 NumPy vector, equal to the reference's."""
    x, centers, log_priors, weights = problem
    kwargs = dict(offset=x.mean(axis=0), log_priors=log_priors, moments="power",
                  directions=np.ones_like(centers) / np.sqrt(3), normalization="entmax15")
    got = block_statistics(xps.asarray(x), centers, 0.4, weights=xps.asarray(weights), **kwargs)
    expected = reference_statistics(x, centers, 0.4, weights=weights, **kwargs)
    assert isinstance(got, np.ndarray) and got.dtype == np.float64
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10 * np.abs(expected).max())


def test_strict_mixed_with_another_library_is_refused(xps, problem):
    jnp = pytest.importorskip("jax.numpy")
    x, centers, _, _ = problem
    with pytest.raises(TypeError, match="cannot be mixed"):
        free_energy(xps.asarray(x), jnp.asarray(centers), 1.0)


# -- JAX: arrays in, arrays out, and the gradients -----------------------------------------

@pytest.fixture
def jax64():
    """JAX with float64 (restored afterwards): gradients are compared to 1e-6.  Set globally,
    not by the ``jax.enable_x64`` context, which holds in this thread only (not in Dask's)."""
    jax = pytest.importorskip("jax")
    before = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield jax
    jax.config.update("jax_enable_x64", before)


@pytest.mark.parametrize("normalization", NORMALIZATIONS)
def test_jax_gradient_in_the_centers_is_the_analytic_one(jax64, problem, normalization):
    jnp = jax64.numpy
    x, centers, log_priors, weights = problem
    stats = soft_statistics(x, centers, 0.7, log_priors=log_priors, sample_weight=weights,
                            normalization=normalization)
    grad = jax64.grad(free_energy, argnums=1)(
        jnp.asarray(x), jnp.asarray(centers), 0.7, normalization=normalization,
        log_priors=jnp.asarray(log_priors), sample_weight=jnp.asarray(weights))
    assert isinstance(grad, jax64.Array)
    np.testing.assert_allclose(np.asarray(grad), stats.gradient,
                               atol=1e-6 * np.abs(stats.gradient).max())


@pytest.mark.parametrize("normalization", NORMALIZATIONS)
def test_jax_gradients_in_the_data_and_log_temperature_match_finite_differences(
        jax64, problem, normalization):
    jnp = jax64.numpy
    x, centers, log_priors, _ = problem
    x = x[:60]

    def f(x_, log_t):
        return free_energy(x_, jnp.asarray(centers), jnp.exp(log_t), normalization=normalization,
                           log_priors=jnp.asarray(log_priors))

    gx, glt = jax64.jit(jax64.grad(f, argnums=(0, 1)))(jnp.asarray(x), jnp.log(0.7))
    f = jax64.jit(f)
    assert bool(jnp.all(jnp.isfinite(gx))) and bool(jnp.isfinite(glt))
    h = 1e-6
    fd_t = (f(jnp.asarray(x), jnp.log(0.7) + h) - f(jnp.asarray(x), jnp.log(0.7) - h)) / (2 * h)
    assert float(glt) == pytest.approx(float(fd_t), rel=1e-5, abs=1e-6)
    for i, j in [(0, 0), (17, 2), (45, 1)]:
        e = np.zeros_like(x)
        e[i, j] = h
        fd = (f(jnp.asarray(x + e), jnp.log(0.7)) - f(jnp.asarray(x - e), jnp.log(0.7))) / (2 * h)
        assert float(gx[i, j]) == pytest.approx(float(fd), rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("normalization", NORMALIZATIONS)
def test_jax_jit_gives_the_eager_value(jax64, problem, normalization):
    jnp = jax64.numpy
    x, centers, log_priors, _ = problem
    args = (jnp.asarray(x), jnp.asarray(centers), jnp.asarray(0.7))

    def f(x_, c, t):
        return free_energy(x_, c, t, normalization=normalization, log_priors=jnp.asarray(log_priors))

    jitted = jax64.jit(jax64.value_and_grad(f, argnums=1))
    value, grad = jitted(*args)
    assert float(value) == pytest.approx(float(f(*args)), rel=1e-12)
    np.testing.assert_allclose(np.asarray(grad), np.asarray(jax64.grad(f, argnums=1)(*args)),
                               rtol=1e-10, atol=1e-10)


def test_jax_statistics_are_jax_arrays(jax64, problem):
    jnp = jax64.numpy
    x, centers, log_priors, weights = problem
    got = soft_statistics(jnp.asarray(x), jnp.asarray(centers), 0.7, log_priors=log_priors,
                          sample_weight=jnp.asarray(weights), normalization="sparsemax")
    expected = soft_statistics(x, centers, 0.7, log_priors=log_priors, sample_weight=weights,
                               normalization="sparsemax")
    for name, value in got._asdict().items():
        assert isinstance(value, jax64.Array) and value.dtype == jnp.float64, name
        np.testing.assert_allclose(np.asarray(value), getattr(expected, name), rtol=1e-9,
                                   atol=1e-9, err_msg=name)


def test_jax_float32_sums_in_float32_without_x64(problem):
    """Without ``jax_enable_x64`` JAX has no float64: the statistics are float32 sums."""
    jax = pytest.importorskip("jax")
    with jax.enable_x64(False):
        jnp = jax.numpy
        x, centers, _, _ = problem
        got = array_statistics(jnp.asarray(x, dtype=jnp.float32), jnp.asarray(centers), 0.7)
        expected = soft_statistics(x.astype(np.float32), centers, 0.7)
        assert got["counts"].dtype == jnp.float32
        np.testing.assert_allclose(np.asarray(got["gradient"]), expected.gradient,
                                   atol=1e-4 * np.abs(expected.gradient).max())


@pytest.mark.parametrize("scheduler", ["sync", "threads"])
def test_dask_array_of_jax_chunks_runs_the_array_api_kernel_per_block(
        jax64, problem, scheduler, monkeypatch):
    """The CPU stand-in for CuPy chunks: the engine maps the array-API kernel over non-NumPy
    blocks and tree-reduces their packed float64 statistics."""
    import dask
    import dask.array as da

    jnp = jax64.numpy
    x, centers, log_priors, _ = problem
    seen = []
    packed = aa.packed_statistics

    def spy(block, *args, **kwargs):
        seen.append(type(block))
        return packed(block, *args, **kwargs)

    monkeypatch.setattr(aa, "packed_statistics", spy)
    chunks = da.from_array(x, chunks=(60, 3)).map_blocks(jnp.asarray, meta=jnp.zeros((0, 3)))
    with dask.config.set(scheduler=scheduler):
        got = soft_statistics(chunks, centers, 0.7, log_priors=log_priors, normalization="entmax15")
    expected = soft_statistics(x, centers, 0.7, log_priors=log_priors, normalization="entmax15")
    assert len(seen) == chunks.numblocks[0] and all(issubclass(t, jax64.Array) for t in seen)
    assert isinstance(got.gradient, np.ndarray)
    np.testing.assert_allclose(got.gradient, expected.gradient, atol=1e-9)
    assert got.free_energy == pytest.approx(expected.free_energy, rel=1e-12)
    with dask.config.set(scheduler=scheduler):
        fit = fit_temperature(chunks, centers, 0.7, normalization="entmax15", max_iter=5)
    np.testing.assert_allclose(
        fit.centers, fit_temperature(x, centers, 0.7, normalization="entmax15", max_iter=5).centers,
        atol=1e-9)


# -- PyTorch: autograd through the same reference (where PyTorch is installed) --------------
# PyTorch is not in the test extra (its Linux wheels bring the CUDA libraries, gigabytes):
# these run where it is installed, as the CuPy tests run where a GPU is.

@pytest.fixture
def torch():
    return pytest.importorskip("torch")


@pytest.mark.parametrize("normalization", NORMALIZATIONS)
def test_torch_gradient_in_the_centers_is_the_analytic_one(torch, problem, normalization):
    x, centers, log_priors, weights = problem
    stats = soft_statistics(x, centers, 0.7, log_priors=log_priors, sample_weight=weights,
                            normalization=normalization)
    c = torch.tensor(centers, requires_grad=True)
    value = free_energy(torch.tensor(x), c, 0.7, normalization=normalization,
                        log_priors=torch.tensor(log_priors), sample_weight=torch.tensor(weights))
    assert isinstance(value, torch.Tensor) and value.ndim == 0
    assert float(value.detach()) == pytest.approx(stats.free_energy, rel=1e-12)
    value.backward()
    np.testing.assert_allclose(c.grad.numpy(), stats.gradient,
                               atol=1e-6 * np.abs(stats.gradient).max())


@pytest.mark.parametrize("normalization", NORMALIZATIONS)
def test_torch_gradients_in_the_data_and_log_temperature_match_finite_differences(
        torch, problem, normalization):
    x, centers, log_priors, _ = problem
    x = x[:60]

    def f(x_, log_t):
        return free_energy(x_, torch.tensor(centers), torch.exp(log_t),
                           normalization=normalization, log_priors=torch.tensor(log_priors))

    xt = torch.tensor(x, requires_grad=True)
    log_t = torch.tensor(np.log(0.7), requires_grad=True)
    f(xt, log_t).backward()
    h = 1e-6
    with torch.no_grad():
        fd_t = (f(torch.tensor(x), log_t + h) - f(torch.tensor(x), log_t - h)) / (2 * h)
        assert float(log_t.grad) == pytest.approx(float(fd_t), rel=1e-5, abs=1e-6)
        for i, j in [(0, 0), (17, 2), (45, 1)]:
            e = np.zeros_like(x)
            e[i, j] = h
            fd = (f(torch.tensor(x + e), log_t) - f(torch.tensor(x - e), log_t)) / (2 * h)
            assert float(xt.grad[i, j]) == pytest.approx(float(fd), rel=1e-5, abs=1e-6)


def test_torch_statistics_are_torch_tensors(torch, problem):
    x, centers, log_priors, weights = problem
    got = soft_statistics(torch.tensor(x), torch.tensor(centers), 0.7, log_priors=log_priors,
                          sample_weight=torch.tensor(weights), normalization="entmax15")
    expected = soft_statistics(x, centers, 0.7, log_priors=log_priors, sample_weight=weights,
                               normalization="entmax15")
    for name, value in got._asdict().items():
        assert isinstance(value, torch.Tensor) and value.dtype == torch.float64, name
        np.testing.assert_allclose(value.numpy(), getattr(expected, name), rtol=1e-9,
                                   atol=1e-9, err_msg=name)


def test_torch_float32_block_sums_in_float64(torch, problem):
    x, centers, log_priors, _ = problem
    kwargs = dict(offset=x.mean(axis=0), log_priors=log_priors)
    got = block_statistics(torch.tensor(x, dtype=torch.float32), centers, 0.4, **kwargs)
    expected = reference_statistics(x.astype(np.float32), centers, 0.4, **kwargs)
    assert isinstance(got, np.ndarray) and got.dtype == np.float64
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


# -- CuPy: a Dask array of GPU chunks (needs a GPU) ----------------------------------------

@pytest.fixture
def cupy():
    cupy = pytest.importorskip("cupy")
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            pytest.skip("no CUDA device")
    except cupy.cuda.runtime.CUDARuntimeError:
        pytest.skip("no CUDA device")
    return cupy


@pytest.mark.parametrize("normalization", NORMALIZATIONS)
def test_dask_array_of_cupy_chunks(cupy, problem, normalization):
    import dask.array as da

    x, centers, log_priors, _ = problem
    chunks = da.from_array(x, chunks=(60, 3)).map_blocks(cupy.asarray)
    got = soft_statistics(chunks, centers, 0.7, log_priors=log_priors, normalization=normalization)
    expected = soft_statistics(x, centers, 0.7, log_priors=log_priors, normalization=normalization)
    np.testing.assert_allclose(got.gradient, expected.gradient, atol=1e-9)
    assert got.free_energy == pytest.approx(expected.free_energy, rel=1e-10)


def test_cupy_block_statistics(cupy, problem):
    x, centers, log_priors, weights = problem
    kwargs = dict(offset=x.mean(axis=0), log_priors=log_priors, normalization="entmax15")
    got = block_statistics(cupy.asarray(x), centers, 0.4, weights=cupy.asarray(weights), **kwargs)
    expected = reference_statistics(x, centers, 0.4, weights=weights, **kwargs)
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10 * np.abs(expected).max())


def test_the_cosine_metric_on_other_array_libraries_is_refused_with_the_fix():
    """Cosine passes normalise NumPy blocks; an array of another library gets a clear error
    naming the metric and the fix, from soft_statistics and from the per-block kernel."""
    from dask_softkmeans.kernels import block_statistics

    xps = pytest.importorskip("array_api_strict")
    x = xps.asarray(np.random.default_rng(0).normal(size=(20, 3)))
    centers = np.eye(3)[:2]
    with pytest.raises(InputError, match=r"metric='cosine'.*Normalise the rows"):
        soft_statistics(x, centers, 1.0, metric="cosine")
    with pytest.raises(InputError, match=r"metric='cosine'.*Normalise the rows"):
        block_statistics(x, centers, 1.0, offset=np.zeros(3), metric="cosine")


def test_bad_weights_and_priors_of_other_libraries_are_refused_as_for_numpy():
    xps = pytest.importorskip("array_api_strict")
    x = xps.asarray(np.random.default_rng(0).normal(size=(3, 2)))
    centers = xps.asarray(np.eye(2))
    with pytest.raises(InputError, match="sample_weight must be finite and non-negative"):
        soft_statistics(x, centers, 1.0, sample_weight=xps.asarray([1.0, -3.0, 1.0]))
    with pytest.raises(InputError, match=r"log_priors .* without NaN"):
        soft_statistics(x, centers, 1.0, log_priors=xps.asarray([0.0, float("nan")]))
