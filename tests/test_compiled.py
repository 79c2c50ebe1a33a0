"""The compiled block kernel: chunking, threads, exp accuracy, the register
transposition and its fallback, and the futures pass."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import dask
import dask.array as da
import numpy as np
import pytest

from dask_softkmeans import soft_statistics
from dask_softkmeans.engine import Runner
from dask_softkmeans.kernels import (
    PassParams,
    StatsLayout,
    block_statistics,
    compiled,
    fused,
    reference_statistics,
)
from dask_softkmeans.kernels.compiled import _math, _transpose


@pytest.fixture(scope="module")
def blobs32() -> tuple[np.ndarray, np.ndarray]:
    """Five float32 blobs in 6-D with centers off the data: every statistic is non-trivial."""
    rng = np.random.default_rng(5)
    centers = rng.uniform(-6, 6, size=(5, 6))
    x = (centers[rng.integers(5, size=3001)] + rng.normal(size=(3001, 6))).astype(np.float32)
    return x, centers + rng.normal(scale=0.5, size=centers.shape)


def _exp_on(v: np.ndarray) -> np.ndarray:
    """The kernel's inline exp, evaluated through a one-cluster pass: e = exp(v) = Z here."""
    import numba as nb

    @nb.njit
    def run(values):
        out = np.empty_like(values)
        for i in range(values.shape[0]):
            out[i] = _math.exp_nonpositive(values[i])
        return out

    return run(v)


def test_inline_exp_is_accurate_on_the_clipped_range():
    v = np.concatenate([-np.geomspace(1e-300, 60, 20001), [0.0, -0.5 * np.log(2), -60.0]])
    np.testing.assert_allclose(_exp_on(v), np.exp(v), rtol=4e-15, atol=0)


def test_float32_exp_is_accurate_on_the_clipped_range():
    import numba as nb

    @nb.njit
    def run(values):
        out = np.empty_like(values)
        for i in range(values.shape[0]):
            out[i] = _math.exp_nonpositive32(values[i])
        return out

    v = np.concatenate([-np.geomspace(1e-30, 60, 20001), [0.0, -0.5 * np.log(2), -60.0]])
    v = v.astype(np.float32)
    got = run(v)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, np.exp(v.astype(np.float64)), rtol=4e-7, atol=0)


def test_inline_log_is_accurate():
    import numba as nb

    @nb.njit
    def run(values):
        out = np.empty_like(values)
        for i in range(values.shape[0]):
            out[i] = _math.log_positive(values[i])
        return out

    v = np.concatenate([np.geomspace(1e-300, 1e300, 20001), [1.0, np.sqrt(2.0), 2.0, 1e4]])
    np.testing.assert_allclose(run(v), np.log(v), rtol=1e-15, atol=1e-15)
    assert run(np.array([1.0]))[0] == 0.0


@pytest.mark.parametrize("product", ["_tiled_product", "_loop_product"])
@pytest.mark.parametrize("m", [1, 15, 16, 37, 128])
@pytest.mark.parametrize("k", [16, 21, 32, 40])
def test_the_tiled_product_is_the_plain_product_transposed(product, m, k):
    """``x C^T`` transposed 16 x 16 in registers (and the edges by a loop), or by loops
    alone (the fallback), is ``C x^T``."""
    rng = np.random.default_rng(m * 100 + k)
    xw = rng.normal(size=(m, 24)).astype(np.float32)
    centers = rng.normal(size=(k, 24)).astype(np.float32)
    gt = np.empty((m, k), np.float32)
    g = np.full((k, m), np.nan, np.float32)
    getattr(_transpose, product)(xw, np.ascontiguousarray(centers.T), gt, g)
    np.testing.assert_array_equal(g, gt.T)
    np.testing.assert_allclose(g, centers.astype(np.float64) @ xw.T.astype(np.float64),
                               rtol=1e-5, atol=1e-5)


def test_the_register_transposition_builds_here_and_can_be_turned_off(monkeypatch):
    """This llvmlite builds the tile (the kernel uses it); the environment variable, or a
    failure to build it, turns it off instead of breaking the kernel."""
    assert compiled.IR_TRANSPOSE
    assert _transpose.tiled_product is _transpose._tiled_product
    monkeypatch.setenv(_transpose.ENVIRONMENT, "0")
    assert not _transpose._tile_works()
    monkeypatch.delenv(_transpose.ENVIRONMENT)

    def broken(*args):
        raise NotImplementedError("an llvmlite without this IR")

    monkeypatch.setattr(_transpose, "_tiled_product", broken)
    assert not _transpose._tile_works()


def test_the_cache_directory_follows_every_kernel_module(tmp_path):
    """The driver's machine code inlines every phase, while numba checks a cached function
    against its own file only: the cache directory is named by a digest of all the
    kernel's sources, so a changed phase module (an upgrade, an edit) never runs stale code."""
    from pathlib import Path

    from dask_softkmeans.kernels.compiled import _cache

    package = Path(_cache.__file__).parent
    copy = tmp_path / "compiled"
    copy.mkdir()
    for module in package.glob("*.py"):
        (copy / module.name).write_bytes(module.read_bytes())
    assert _cache.source_digest(copy) == _cache.source_digest()
    with open(copy / "_soft.py", "a") as phase:
        phase.write("\n")
    assert _cache.source_digest(copy) != _cache.source_digest()
    if compiled.CACHE_DIR is not None and compiled.soft_block._cache.__class__.__name__ != "NullCache":
        where = Path(compiled.soft_block._cache._cache_path)
        assert where.is_relative_to(compiled.CACHE_DIR / f"kernel-{_cache.source_digest()}")


_FALLBACK_SCRIPT = """
import numpy as np
from dask_softkmeans.kernels import block_statistics, compiled, reference_statistics
from dask_softkmeans.kernels.compiled import _plan

assert not compiled.IR_TRANSPOSE
assert compiled.soft_block._cache.__class__.__name__ == "NullCache"  # never the tiled build's
rng = np.random.default_rng(3)
c = rng.uniform(-10, 10, size=(20, 32))
x = (c[rng.integers(20, size=700)] + rng.normal(size=(700, 32))).astype(np.float32)
for t in (0.0, 1.0, 30.0):
    np.testing.assert_allclose(block_statistics(x, c, t), reference_statistics(x, c, t),
                               rtol=2e-5, atol=2e-3)
print("fallback ok")
"""


@pytest.mark.slow
def test_without_the_register_transposition_the_kernel_takes_the_plain_product(tmp_path):
    """With ``DASK_SOFTKMEANS_IR_TRANSPOSE=0`` (as when llvmlite cannot build the tile) a
    fresh process compiles the kernel without it and without the disk cache; a float32
    block of 32 features and 20 clusters, which would take the tiled product, gives the
    reference statistics.  Slow: a full compilation of the kernel."""
    env = {**os.environ, _transpose.ENVIRONMENT: "0", "NUMBA_CACHE_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", _FALLBACK_SCRIPT], env=env, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "fallback ok" in done.stdout


@pytest.mark.parametrize("n_clusters", [7, 21])
@pytest.mark.parametrize("dim", [2, 8, 9, 20, 64, 100])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_both_product_layouts_match_the_direct_formula(dim, dtype, n_clusters):
    """Few features take the transposed product, more the plain one (float32 with 16
    clusters or more and up to 64 features: ``x C^T`` transposed in tiles), and from 64
    features on these separated blobs (every off-cluster term at the logit floor) the soft
    sums are a scatter of the nonzero responsibilities: all give the textbook soft
    statistics."""
    rng = np.random.default_rng(dim)
    c = rng.normal(scale=2.0, size=(n_clusters, dim))
    x = (c[rng.integers(n_clusters, size=1500)] + rng.normal(size=(1500, dim))).astype(dtype)
    t = 0.9
    s = StatsLayout(n_clusters, dim).unpack(block_statistics(x, c, t))
    x64 = x.astype(np.float64)
    d = ((x64[:, None, :] - c[None]) ** 2).sum(-1)
    a = -d / t
    p = np.exp(a - a.max(1, keepdims=True))
    z = p.sum(1, keepdims=True)
    p /= z
    rtol = 1e-9 if dtype == np.float64 else 2e-5
    np.testing.assert_allclose(s.counts, p.sum(0), rtol=rtol)
    np.testing.assert_allclose(s.sums, p.T @ x64, rtol=rtol, atol=rtol * 1500)
    np.testing.assert_allclose(s.free_energy, (-t * (a.max(1) + np.log(z[:, 0]))).sum(), rtol=rtol)
    np.testing.assert_allclose(s.entropy, -(p * np.log(np.maximum(p, 1e-300))).sum(), rtol=rtol,
                               atol=rtol * 1500)


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-10), (np.float32, 2e-6)])
def test_scattered_soft_sums_do_not_depend_on_the_chunks(monkeypatch, dtype, rtol):
    """Chunks of 1 and 7 rows (scattered sums) against the whole block (dense or scattered)."""
    rng = np.random.default_rng(3)
    c = rng.normal(scale=2.0, size=(5, 70))
    x = (c[rng.integers(5, size=600)] + rng.normal(size=(600, 70))).astype(dtype)
    for t in (0.5, 300.0):  # separated at T = 0.5, every term above the floor at T = 300
        whole = block_statistics(x, c, t, offset=c.mean(0))
        for rows in (1, 7):
            monkeypatch.setattr(fused, "chunk_rows", lambda *a, rows=rows: rows)
            np.testing.assert_allclose(block_statistics(x, c, t, offset=c.mean(0)), whole,
                                       rtol=rtol, atol=rtol * 100)
        monkeypatch.undo()


def test_float32_blocks_match_float64_blocks(blobs32):
    """The float32 path (float32 products and exp) agrees with float64 on the same data."""
    x, c = blobs32
    for temperature in (0.05, 0.7, 40.0):
        s32 = block_statistics(x, c, temperature, offset=c.mean(0))
        s64 = block_statistics(x.astype(np.float64), c, temperature, offset=c.mean(0))
        np.testing.assert_allclose(s32, s64, rtol=2e-5, atol=2e-3)


def test_float32_blocks_take_the_offset_rounded_and_give_sums_about_the_callers():
    """The kernel forms x - offset in float32 for float32 blocks, so it takes the offset
    rounded to float32; far from the origin that rounding moves every point by up to half
    a float32 step (~5e-4 here, ~0.25 on the sums), and the sums come back about the
    caller's offset all the same."""
    rng = np.random.default_rng(11)
    c = 1e4 + rng.uniform(-6, 6, size=(4, 3))
    x = (c[rng.integers(4, size=2000)] + rng.normal(size=(2000, 3))).astype(np.float32)
    offset = c.mean(0) + 1e-4 / 3
    assert np.all(offset.astype(np.float32) != offset)
    for t in (0.0, 0.7):
        s32 = StatsLayout(4, 3).unpack(block_statistics(x, c, t, offset=offset))
        s64 = StatsLayout(4, 3).unpack(block_statistics(x.astype(np.float64), c, t,
                                                        offset=offset))
        np.testing.assert_allclose(s32.counts, s64.counts, rtol=1e-6)
        np.testing.assert_allclose(s32.sums, s64.sums, rtol=0, atol=1e-3)


def test_the_kernel_refuses_an_offset_that_its_precision_cannot_hold(blobs32):
    x, c = blobs32
    k, d = c.shape
    offset = np.full(d, 0.1)  # not a float32
    rel = c - offset
    work = rel.astype(np.float32)
    centers = compiled.Centers(offset, rel, work, (rel ** 2).sum(1), np.zeros(k), np.zeros((0, d)))
    out = compiled.Outputs(np.zeros(k), np.zeros((k, d)), np.zeros(k), np.zeros(k), np.zeros(0),
                           np.zeros(7), np.empty(0, np.int32))
    with pytest.raises(ValueError, match="offset must be exact"):
        compiled.soft_block(x, np.ones(len(x)), centers, compiled.Settings(1.0, -60.0, 0, False, 64),
                            out)


@pytest.mark.parametrize("temperature", [0.0, 0.7, 40.0])
@pytest.mark.parametrize("moments", ["none", "full", "power"])
@pytest.mark.parametrize("dtype, rtol, atol", [(np.float64, 1e-10, 1e-9), (np.float32, 2e-6, 1e-4)])
def test_chunks_of_any_size_give_the_same_sums(blobs32, monkeypatch, temperature, moments, dtype,
                                               rtol, atol):
    """One row at a time, 7 at a time, or the whole block: equal to rounding (float32 products
    and soft sums are rounded per chunk, then accumulated in float64)."""
    x, c = blobs32
    x = x.astype(dtype)
    w = np.random.default_rng(0).uniform(0.5, 2.0, size=len(x))
    directions = np.linalg.qr(np.random.default_rng(1).normal(size=(6, 6)))[0][:5]
    kwargs = {"offset": c.mean(0), "weights": w, "moments": moments, "directions": directions,
              "log_priors": np.log(np.arange(1, 6) / 15.0)}
    whole = block_statistics(x, c, temperature, **kwargs)
    for rows in (1, 7):
        monkeypatch.setattr(fused, "chunk_rows", lambda *a, rows=rows: rows)
        np.testing.assert_allclose(block_statistics(x, c, temperature, **kwargs), whole,
                                   rtol=rtol, atol=atol)


def test_removal_costs_match_second_nearest_minus_nearest(blobs32):
    x, c = blobs32
    s = StatsLayout(*c.shape).unpack(block_statistics(x, c, 0.0, removal=True))
    d = ((np.asarray(x, np.float64)[:, None, :] - c[None]) ** 2).sum(-1)
    order = np.sort(d, axis=1)
    expected = np.bincount(d.argmin(1), weights=order[:, 1] - order[:, 0], minlength=len(c))
    np.testing.assert_allclose(s.removal, expected, rtol=1e-4)


def test_nonfinite_rows_add_nothing_with_weights_and_moments(blobs32):
    x, c = blobs32
    bad = x.copy()
    bad[[3, 100, 2000], [0, 5, 2]] = [np.nan, np.inf, -np.inf]
    keep = np.ones(len(x), bool)
    keep[[3, 100, 2000]] = False
    w = np.linspace(0.5, 1.5, len(x))
    for t in (0.0, 2.0):
        got = StatsLayout(*c.shape, "full").unpack(
            block_statistics(bad, c, t, weights=w, moments="full"))
        ref = StatsLayout(*c.shape, "full").unpack(
            block_statistics(x[keep], c, t, weights=w[keep], moments="full"))
        assert got.nonfinite == 3
        for name in ("weight", "counts", "sums", "free_energy", "entropy", "inertia", "moments"):
            np.testing.assert_allclose(getattr(got, name), getattr(ref, name), rtol=1e-9)


def test_threads_running_the_kernel_at_once_get_the_sequential_results(blobs32):
    """The kernel releases the GIL and shares no buffer between calls."""
    x, c = blobs32
    temperatures = [0.0, 0.5, 1.0, 3.0, 0.0, 9.0, 0.2, 1.5]
    expected = [block_statistics(x, c, t, offset=c.mean(0)) for t in temperatures]
    got: dict[int, np.ndarray] = {}

    def work(i: int) -> None:
        for _ in range(5):
            got[i] = block_statistics(x, c, temperatures[i], offset=c.mean(0))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(temperatures))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, vector in enumerate(expected):
        np.testing.assert_array_equal(got[i], vector)


def test_float32_sums_accumulate_in_float64(blobs32):
    """Sums over many chunks of float32 rows stay at float32 input precision, not worse."""
    x, c = blobs32
    big = np.tile(x, (40, 1))  # 120k rows, ~60 chunks of the kernel
    s = StatsLayout(*c.shape).unpack(block_statistics(big, c, 0.8))
    ref = StatsLayout(*c.shape).unpack(block_statistics(big.astype(np.float64), c, 0.8))
    np.testing.assert_allclose(s.counts, ref.counts, rtol=1e-5)
    np.testing.assert_allclose(s.sums, ref.sums, rtol=1e-5, atol=1e-3)
    assert s.weight == len(big)


def test_a_pass_over_persisted_blocks_runs_as_futures_and_equals_the_graph(blobs32, client):
    """On a client, persisted data run as one task per worker thread; the sums are the
    same tree over the same blocks as the threaded scheduler's, so they are bit-identical."""
    x, c = blobs32
    dx = da.from_array(x, chunks=500)
    with dask.config.set(scheduler="threads"):
        threaded = Runner(dx, persist=True).statistics(PassParams(c, 0.9, offset=c.mean(0)))
    on_cluster = dx.persist()
    runner = Runner(on_cluster)
    assert runner._futures is not None
    np.testing.assert_array_equal(runner.statistics(PassParams(c, 0.9, offset=c.mean(0))), threaded)
    # Other blocks (NumPy in one piece) round the float32 products differently: to float32
    # precision of the terms, so the tolerance is relative to the size of the sums.
    whole = soft_statistics(x, c, 0.9).sums
    np.testing.assert_allclose(soft_statistics(on_cluster, c, 0.9).sums, whole, rtol=1e-6,
                               atol=1e-6 * np.abs(whole).max())


def test_weights_persisted_with_the_data_travel_block_for_block(blobs32, client):
    x, c = blobs32
    x = x.astype(np.float64)
    w = np.arange(len(x)) % 4
    dx = da.from_array(x, chunks=600).persist()
    dw = da.from_array(w.astype(float), chunks=600).persist()
    runner = Runner(dx, dw)
    assert runner._futures is not None
    weighted = StatsLayout(*c.shape).unpack(runner.statistics(PassParams(c, 1.0)))
    copies = StatsLayout(*c.shape).unpack(block_statistics(np.repeat(x, w, axis=0), c, 1.0))
    np.testing.assert_allclose(weighted.sums, copies.sums, rtol=1e-9)
    assert weighted.weight == w.sum()


def test_data_that_are_not_persisted_stream_through_the_graph(blobs32, client):
    x, _ = blobs32
    assert Runner(da.from_array(x, chunks=500))._futures is None


@pytest.mark.parametrize("n_clusters", [6, 20])
@pytest.mark.parametrize("priors", ["equal", "outweighed"])
@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-9), (np.float32, 2e-5)])
def test_one_hot_chunks_match_the_textbook_soft_statistics(monkeypatch, dtype, rtol, priors,
                                                           n_clusters):
    """Separated 32-D blobs at low T: every chunk is one-hot and is summed as hard
    assignments to the largest logit.  With unequal priors, one small enough to outweigh
    the distances sends one cluster's points to other centers (with equal priors the
    kernel tests rows by their nearest two centers instead).  Fourteen rows lie between
    two centers and are soft: three in each of the first three chunks of 7 rows, where
    the 4 others are summed as hard assignments and the soft ones wait in the soft-row
    buffer (7 rows), which takes the soft path when the next chunk's would overflow it
    and at the end; five in the fourth chunk, which is soft as a whole.  Chunks of 1, 7
    and all rows agree with the formula on every statistic.  With 20 clusters, float32
    blocks take the tiled product (16 clusters or more)."""
    rng = np.random.default_rng(11)
    k = n_clusters
    c = rng.uniform(-10, 10, size=(k, 32))
    x = (c[rng.integers(k, size=900)] + rng.normal(size=(900, 32))).astype(dtype)
    t = 1.0
    log_priors = np.log(np.full(k, 1 / k))
    if priors == "outweighed":
        # a_ij = T log pi_j - d_ij is far below another center's (a cluster whose points
        # are not soft then).
        log_priors[0 if k == 6 else 6] = -5000.0
    soft = [0, 1, 2, 7, 8, 9, 14, 15, 16, 21, 22, 23, 24, 25]
    x[soft] = 0.505 * c[1] + 0.495 * c[2]  # rows near halfway between two centers: soft
    x64 = x.astype(np.float64)
    d = ((x64[:, None, :] - c[None]) ** 2).sum(-1)
    a = t * log_priors - d
    u = (a - a.max(1, keepdims=True)) / t
    z = np.exp(u).sum(1)
    p = np.exp(u) / z[:, None]
    assert (np.sort(u, axis=1)[:, -2] > -60).sum() == len(soft)
    assert priors == "equal" or p[:, 0 if k == 6 else 6].max() == 0.0
    for rows in (1, 7, None):
        if rows:
            monkeypatch.setattr(fused, "chunk_rows", lambda *args, rows=rows: rows)
        s = StatsLayout(k, 32).unpack(block_statistics(x, c, t, log_priors=log_priors))
        np.testing.assert_allclose(s.counts, p.sum(0), rtol=rtol, atol=1e-9)
        np.testing.assert_allclose(s.sums, p.T @ x64, rtol=rtol, atol=rtol * 900)
        np.testing.assert_allclose(s.free_energy, (-(a.max(1) + t * np.log(z))).sum(), rtol=rtol)
        np.testing.assert_allclose(s.entropy, -(p * np.log(np.maximum(p, 1e-300))).sum(),
                                   rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(s.distortion, (p * d).sum(), rtol=rtol)
        np.testing.assert_allclose(s.confidence, p.max(1).sum(), rtol=rtol)
        np.testing.assert_allclose(s.inertia, d.min(1).sum(), rtol=rtol)
        np.testing.assert_allclose(s.hard_counts, np.bincount(d.argmin(1), minlength=k))
        monkeypatch.undo()


@pytest.mark.parametrize("shape", [(5, 3), (32, 20), (9, 16)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("temperature, priors, removal", [
    (0.0, False, False), (0.0, False, True), (0.05, False, False), (1.0, False, False),
    (1.0, True, False), (30.0, True, False)])
@pytest.mark.parametrize("moments", ["none", "full", "power"])
def test_every_sweep_of_the_kernel_matches_the_reference(monkeypatch, shape, dtype, temperature,
                                                         priors, removal, moments):
    """Lloyd, removal, unequal-priors, equal-priors and gap sweeps; one-hot, mixed and soft
    chunks (separated blobs with rows halfway between two centers), weights, non-finite
    rows and the moments, in chunks of 7 rows and whole: the NumPy specification."""
    d, k = shape
    rng = np.random.default_rng(d * k)
    c = rng.uniform(-10, 10, size=(k, d))
    x = c[rng.integers(k, size=400)] + rng.normal(size=(400, d))
    x[::37] = 0.51 * c[0] + 0.49 * c[1]
    x[[5, 200], [0, d - 1]] = [np.nan, np.inf]
    x = x.astype(dtype)
    kw = {"offset": c.mean(0), "weights": rng.uniform(0.5, 2.0, size=400), "moments": moments,
          "removal": removal, "log_priors": np.log(rng.dirichlet(np.full(k, 3.0))) if priors else None,
          "directions": np.linalg.qr(rng.normal(size=(d, d)))[0][:k] if moments == "power" and k <= d
          else rng.normal(size=(k, d))}
    want = StatsLayout(k, d, moments).unpack(reference_statistics(x, c, temperature, **kw))
    rtol = 1e-9 if dtype == np.float64 else 2e-4
    for rows in (7, None):
        if rows:
            monkeypatch.setattr(fused, "chunk_rows", lambda *a, rows=rows: rows)
        got = StatsLayout(k, d, moments).unpack(block_statistics(x, c, temperature, **kw))
        for name in ("weight", "counts", "sums", "hard_counts", "removal", "moments", "free_energy",
                     "entropy", "distortion", "inertia", "confidence", "nonfinite"):
            expected = np.asarray(getattr(want, name))
            scale = max(float(np.abs(expected).max(initial=0.0)), 1.0)
            np.testing.assert_allclose(getattr(got, name), expected, rtol=rtol, atol=rtol * scale,
                                       err_msg=name)
        monkeypatch.undo()


def _soft_blobs(k: int, d: int, n: int, dtype: type, seed: int) -> tuple:
    """Blobs of unit noise around centers of unit spread (float32) or 1.3 (float64): at
    T = 1 most rows are soft, and only a few of a row's responsibilities exceed 1e-12 of
    its largest (float32) or the logit floor (float64)."""
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(k, d)) * (1.0 if dtype == np.float32 else 1.3)
    x = (c[rng.integers(k, size=n)] + rng.normal(size=(n, d))).astype(dtype)
    return x, c, rng


@pytest.mark.parametrize("k", [32, 70])
@pytest.mark.parametrize("temperature", [1.0, 300.0])
@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-9), (np.float32, 2e-5)])
def test_soft_sums_at_32_features_match_the_reference(monkeypatch, k, temperature, dtype, rtol):
    """32 features, soft rows: at T = 1 most responsibilities are zero (in float32 also
    those below 2**-40 of the row's largest), and the soft sums are scattered from each
    row's marks (with 70 clusters, two words of marks per row); at T = 300 every one is
    nonzero, and they are the second product.  Weights, unequal priors, a non-finite row,
    in chunks of 7 rows and whole: the NumPy specification."""
    x, c, rng = _soft_blobs(k, 32, 700, dtype, k)
    x[3, 5] = np.nan
    kw = {"offset": c.mean(0), "weights": rng.uniform(0.5, 2.0, size=len(x)),
          "log_priors": np.log(rng.dirichlet(np.full(k, 3.0)))}
    want = StatsLayout(k, 32).unpack(reference_statistics(x, c, temperature, **kw))
    for rows in (7, None):
        if rows:
            monkeypatch.setattr(fused, "chunk_rows", lambda *a, rows=rows: rows)
        got = StatsLayout(k, 32).unpack(block_statistics(x, c, temperature, **kw))
        for name in ("weight", "counts", "sums", "hard_counts", "free_energy", "entropy",
                     "distortion", "inertia", "confidence", "nonfinite"):
            expected = np.asarray(getattr(want, name))
            scale = max(float(np.abs(expected).max(initial=0.0)), 1.0)
            np.testing.assert_allclose(getattr(got, name), expected, rtol=rtol, atol=rtol * scale,
                                       err_msg=name)
        monkeypatch.undo()


@pytest.mark.parametrize("k", [32, 70])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_sparse_route_gives_the_dense_routes_statistics(k, dtype):
    """The same soft rows (weights, some 0; unequal priors; T = 1 in float32, 0.8 in
    float64, whose cut is the logit floor) through the dense
    route (``exp`` of every logit, the totals, the floor, the second product) and the
    sparse one (one compare per logit, then ``exp`` and the scatter of the marked logits
    alone): the marks hold exactly the logits above the cut (with 70 clusters, two words
    a row), few enough that the kernel takes the sparse route, and the counts, sums,
    entropy, free energy, distortion and confidence agree to float tolerance, though the
    sparse route leaves the terms below the cut out of each row's normaliser."""
    from dask_softkmeans.kernels.compiled import _plan, _soft

    x, c, rng = _soft_blobs(k, 32, 300, dtype, 2 * k)
    t = 1.0 if dtype == np.float32 else 0.8
    lp = np.log(rng.dirichlet(np.full(k, 3.0)))
    d = ((x.astype(np.float64)[:, None, :] - c[None]) ** 2).sum(-1).astype(dtype)
    d64 = d.astype(np.float64)
    a = t * lp - d64
    amax = a.max(1)
    best = d64[np.arange(len(x)), a.argmax(1)]
    w = rng.choice([0.0, 1.0, 2.5], size=len(x))
    e_cut = 2.0 * np.exp(-60.0) if dtype == np.float64 else 2.0 ** -40
    log_cut = float(np.log(e_cut))
    words = (k + 63) // 64
    point = (amax, best, best.copy(), w)

    g_dense = np.ascontiguousarray(d.T)  # (K, rows) as the kernel holds them
    z, su, sd = np.zeros(len(x)), np.zeros(len(x)), np.zeros(len(x))
    dense_counts, dense_sums, dense_totals = np.zeros(k), np.zeros((k, 32)), np.zeros(7)
    _soft._exp_sweep(g_dense, amax, z, su, sd, lp, t, 1.0 / t, -60.0)
    _soft._row_totals(len(x), *point, z, su, sd, t, dense_totals)
    _soft._drop_floor(g_dense, z, e_cut, dense_counts)
    _soft._soft_sums(g_dense, x, False, np.zeros(0), np.empty((k, 32), dtype), dense_sums)

    g_sparse = np.ascontiguousarray(d.T)
    marks = np.zeros(words * len(x), np.int64)
    sparse_counts, sparse_sums, sparse_totals = np.zeros(k), np.zeros((k, 32)), np.zeros(7)
    above = _soft._mark_above(g_sparse, amax, lp, t, log_cut, marks, np.empty(len(x)))
    bits = [(marks[(cl // 64) * len(x) + i] >> (cl % 64)) & 1 for cl in range(k) for i in range(len(x))]
    want_marks = d64.T < (t * lp)[:, None] + (-amax - t * log_cut)[None, :]
    np.testing.assert_array_equal(np.reshape(bits, (k, len(x))), want_marks)
    assert above == want_marks.sum() and above * _soft._SPARSE_FACTOR <= k * len(x)
    scratch = (np.zeros(len(x)), np.zeros(len(x)), np.zeros(len(x)))
    _soft._sparse_rows(g_sparse, marks, point, scratch, lp, t, 1.0 / t, sparse_totals)
    g_exp = g_sparse.copy()  # the marked terms' exp, for the scatter with the moments
    _soft._scatter(g_sparse, x, marks, scratch[0], sparse_counts, sparse_sums,
                   np.zeros((0, 32)), np.zeros(k), np.zeros(k), np.zeros(0))

    rtol = 1e-12 if dtype == np.float64 else 1e-6
    np.testing.assert_allclose(sparse_counts, dense_counts, rtol=rtol, atol=rtol * w.sum())
    np.testing.assert_allclose(sparse_sums, dense_sums, rtol=rtol,
                               atol=rtol * np.abs(dense_sums).max())
    for slot in (_plan.H_SUM, _plan.F_SUM, _plan.D_SUM, _plan.CONF_SUM):
        np.testing.assert_allclose(sparse_totals[slot], dense_totals[slot], rtol=rtol,
                                   atol=rtol * w.sum(), err_msg=str(slot))
    assert above > 1.5 * len(x) and dense_totals[_plan.H_SUM] > 0.0  # soft rows

    # With the power moments: the float64 rows' sums, and each marked term's moments.
    x64 = x.astype(np.float64)
    directions = rng.normal(size=(k, 32))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    center_proj = rng.normal(size=k)
    power_counts, power_sums, proj_sums = np.zeros(k), np.zeros((k, 32)), np.zeros(k)
    power_moments = np.zeros(k * 32)
    _soft._scatter(g_exp, x64, marks, scratch[0], power_counts, power_sums, directions,
                   center_proj, proj_sums, power_moments)
    p = g_dense.astype(np.float64)  # the dense route's weighted responsibilities (K, rows)
    proj = (directions @ x64.T - center_proj[:, None]) * p
    np.testing.assert_allclose(power_counts, dense_counts, rtol=rtol, atol=rtol * w.sum())
    np.testing.assert_allclose(power_sums, p @ x64, rtol=rtol, atol=rtol * np.abs(p @ x64).max())
    np.testing.assert_allclose(proj_sums, proj.sum(1), rtol=rtol,
                               atol=rtol * np.abs(proj).sum())
    want = (proj @ x64).ravel()
    np.testing.assert_allclose(power_moments, want, rtol=rtol, atol=rtol * np.abs(want).max())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_soft_chunks_with_power_moments_take_the_sparse_route_and_match_the_reference(dtype):
    """Soft rows with 32 features and few logits above the cut, with power moments (the
    annealing's axis passes at large K): the kernel's sparse route, which adds each marked
    term's moments row by row, gives the NumPy specification's statistics and moments."""
    from dask_softkmeans.kernels.compiled import _soft

    k = 48
    x, c, rng = _soft_blobs(k, 32, 600, dtype, 5)
    t = 1.0 if dtype == np.float32 else 0.8
    kw = {"offset": c.mean(0), "weights": rng.choice([0.0, 1.0, 2.5], size=len(x)),
          "log_priors": np.log(rng.dirichlet(np.full(k, 3.0))), "moments": "power",
          "directions": np.linalg.qr(rng.normal(size=(32, 32)))[0][rng.integers(32, size=k)]}
    # The route's condition, in every chunk of these rows: few enough logits above the cut.
    d = ((x.astype(np.float64)[:, None, :] - c[None]) ** 2).sum(-1)
    a = t * kw["log_priors"] - d
    cut = np.log(2.0 * np.exp(-60.0) if dtype == np.float64 else 2.0 ** -40)
    above = (a - a.max(1, keepdims=True) > t * cut).sum(1)
    rows = fused.chunk_rows(k, 32, "power")
    for start in range(0, len(x), rows):
        chunk = above[start : start + rows]
        assert 1.5 * len(chunk) < chunk.sum() and chunk.sum() * _soft._SPARSE_FACTOR <= k * len(chunk)
    want = StatsLayout(k, 32, "power").unpack(reference_statistics(x, c, t, **kw))
    got = StatsLayout(k, 32, "power").unpack(block_statistics(x, c, t, **kw))
    rtol = 1e-9 if dtype == np.float64 else 2e-4
    for name in ("weight", "counts", "sums", "moments", "free_energy", "entropy", "distortion",
                 "inertia", "confidence"):
        expected = np.asarray(getattr(want, name))
        scale = max(float(np.abs(expected).max(initial=0.0)), 1.0)
        np.testing.assert_allclose(getattr(got, name), expected, rtol=rtol, atol=rtol * scale,
                                   err_msg=name)
