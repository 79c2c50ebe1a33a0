"""The annealing schedule: sampled high-temperature phases, quality beyond the benchmark sets."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.datasets import load_breast_cancer, load_digits, load_iris, load_wine, make_blobs
from sklearn.preprocessing import StandardScaler

from dask_softkmeans import SoftKMeans
from dask_softkmeans.metrics import centroid_index


def by_rows(centers: np.ndarray) -> np.ndarray:
    return centers[np.lexsort(centers.T[::-1])]


@pytest.fixture(scope="module")
def many_blobs() -> tuple[np.ndarray, np.ndarray]:
    """30,000 points in 12 blobs: large enough that the annealing runs on a sample."""
    x, _, centers = make_blobs(30_000, n_features=4, centers=12, cluster_std=1.0,
                               center_box=(-30, 30), random_state=7, return_centers=True)
    return x, centers


def test_sampled_anneal_reaches_the_fit_on_all_data(many_blobs):
    x, centers = many_blobs
    sampled = SoftKMeans(12).fit(x)
    full = SoftKMeans(12, sample_size=None).fit(x)
    data = {r["data"] for r in sampled.history_}
    assert data == {"sample", "full"}
    assert {r["data"] for r in full.history_} == {"full"}
    # T > 0 passes run only on the sample; the full data see Lloyd and the swap check.
    assert all(r["temperature"] == 0 for r in sampled.history_ if r["data"] == "full")
    n_full = sum(r["data"] == "full" for r in sampled.history_)
    assert n_full < len(full.history_) / 2
    assert centroid_index(sampled.cluster_centers_, centers) == 0
    np.testing.assert_allclose(by_rows(sampled.cluster_centers_), by_rows(full.cluster_centers_),
                               rtol=1e-9)
    assert sampled.inertia_ == pytest.approx(full.inertia_, rel=1e-9)


def test_the_full_data_try_only_the_swaps_the_estimates_favour_after_the_sample(many_blobs):
    """The sample's swap check tries every best-ranked move (a trial is cheap there); on
    the full data, where each trial costs Lloyd passes over all the rows, only a move whose
    expected gain exceeds its removal cost is tried: here none, so one probe pass."""
    x, _ = many_blobs
    model = SoftKMeans(12).fit(x)
    swaps = [r["data"] for r in model.history_ if r["phase"] == "swap"]
    assert swaps.count("sample") >= 2  # a probe and a trial's Lloyd passes
    assert swaps.count("full") == 1


def test_sample_does_not_depend_on_the_chunking(many_blobs):
    x, _ = many_blobs
    fits = [SoftKMeans(12, compute_labels=False).fit(da.from_array(x, chunks=(rows, 4)))
            for rows in (3000, 7000)]
    np.testing.assert_allclose(fits[0].cluster_centers_, fits[1].cluster_centers_, rtol=1e-9)
    assert [r["phase"] for r in fits[0].history_] == [r["phase"] for r in fits[1].history_]


def test_sample_size_is_honoured(many_blobs):
    x, _ = many_blobs
    model = SoftKMeans(12, sample_size=2000).fit(x)
    assert any(r["data"] == "sample" for r in model.history_)
    # A sample as large as the data is no sample.
    whole = SoftKMeans(12, sample_size=len(x)).fit(x)
    assert {r["data"] for r in whole.history_} == {"full"}


def test_small_far_clusters_survive_sampling():
    """Six dense blobs hold 97% of the points; five small ones far away hold 0.6% each."""
    rng = np.random.default_rng(0)
    dense = rng.normal(size=(6, 2)) * 4
    far = np.array([[60, 0], [60, 15], [75, 0], [75, 15], [67, 30]], dtype=float)
    x = np.vstack([c + rng.normal(size=(4850, 2)) for c in dense]
                  + [c + rng.normal(size=(180, 2)) for c in far])
    model = SoftKMeans(11, compute_labels=False).fit(x)
    assert any(r["data"] == "sample" for r in model.history_)
    for c in far:
        assert np.min(np.linalg.norm(model.cluster_centers_ - c, axis=1)) < 0.5


def test_high_dimension_uses_the_power_statistic():
    """D = 60 > 8 features: critical temperatures come from one power-iteration product per cluster."""
    x, _, centers = make_blobs(4000, n_features=60, centers=10, cluster_std=2.0,
                               center_box=(-10, 10), random_state=3, return_centers=True)
    model = SoftKMeans(10).fit(x)
    assert centroid_index(model.cluster_centers_, centers) == 0


@pytest.mark.parametrize("loader", [load_iris, load_wine])
def test_standardised_real_data_no_worse_than_kmeans(loader):
    x = StandardScaler().fit_transform(loader().data)
    k = 3
    model = SoftKMeans(k).fit(x)
    reference = KMeans(k, n_init=10, random_state=0).fit(x)
    assert model.inertia_ <= reference.inertia_ * 1.001


def test_standardised_digits_as_good_as_ten_kmeans_restarts():
    """Many features: the swap check tries its best move even when the estimates say it
    loses (they hold the other centers still and count one axis of the split), and the
    Lloyd passes find that it pays; skipping such moves left the inertia above KMeans'."""
    x = StandardScaler().fit_transform(load_digits().data)
    model = SoftKMeans(10).fit(x)
    reference = KMeans(10, n_init=10, random_state=0).fit(x)
    assert model.inertia_ <= reference.inertia_
    assert any(r["phase"] == "swap" for r in model.history_)


def test_standardised_breast_cancer_five_clusters_as_good_as_kmeans():
    """30 features, K = 5: the same swap check, on data the digits test does not see."""
    x = StandardScaler().fit_transform(load_breast_cancer().data)
    model = SoftKMeans(5).fit(x)
    reference = KMeans(5, n_init=10, random_state=0).fit(x)
    assert model.inertia_ <= reference.inertia_


def test_over_relaxed_lloyd_reaches_the_same_fixed_point_in_fewer_passes():
    """Overlapping blobs: plain Lloyd creeps for dozens of passes; the stretched steps do not."""
    from dask_softkmeans.annealing import AnnealConfig, Annealer, _Clusters
    from dask_softkmeans.engine import Runner
    from dask_softkmeans.kernels import PassParams
    from dask_softkmeans.objective import run_pass

    x, _ = make_blobs(20_000, n_features=2, centers=12, cluster_std=2.5, center_box=(-20, 20),
                      random_state=4)
    runner = Runner(x)

    def statistics(params):
        return run_pass(runner, params)

    start = x[np.random.default_rng(0).choice(len(x), 12, replace=False)]
    results = {}
    for step in (0.0, 0.5):
        config = AnnealConfig(n_clusters=12, lloyd_relax_step=step)
        annealer = Annealer(statistics, config, n_features=2, total_weight=len(x))
        clusters = _Clusters(start.copy(), np.zeros(12), np.eye(2)[np.zeros(12, int)],
                             np.ones(12), np.ones(12, int))
        clusters, converged, stats = annealer._lloyd(clusters)
        assert converged
        results[step] = (by_rows(clusters.centers), float(stats.inertia), len(annealer.history))
    (_, plain_j, plain_n), (fast, fast_j, fast_n) = results[0.0], results[0.5]
    assert fast_n < plain_n
    assert fast_j <= plain_j * 1.001
    # An exact fixed point: one more plain pass moves nothing.
    stats = statistics(PassParams(fast, 0.0))
    np.testing.assert_array_equal(stats.sums / stats.counts[:, None], fast)


def test_swap_moves_pair_cheap_removals_with_large_gains_and_never_orphan_an_heir():
    from dask_softkmeans.annealing import _swap_moves

    removal = np.array([5.0, 1.0, 3.0, 2.0, 9.0, 0.5])
    gain = np.array([10.0, 0.0, 7.0, 2.5, 8.0, 0.0])
    # One move: the cheapest removal into the largest gain, whatever they predict.
    np.testing.assert_array_equal(_swap_moves(removal, gain, 1), [[5, 0]])
    np.testing.assert_array_equal(_swap_moves(removal, np.zeros(6), 1)[0], [5, 0])
    # More: the next cheapest into the next largest while the gain exceeds the cost, no
    # center twice (3 would be split next, but it is removed already).
    np.testing.assert_array_equal(_swap_moves(removal, gain, 4), [[5, 0], [1, 4], [3, 2]])
    np.testing.assert_array_equal(_swap_moves(removal, gain, 2), [[5, 0], [1, 4]])
    # 1's points go over to 5, which is removed: 1 stays, and 5's heir 2 is not removed.
    heirs = np.array([1, 5, 3, 2, 0, 2])
    np.testing.assert_array_equal(_swap_moves(removal, gain, 4, heirs), [[5, 0], [3, 4]])
    np.testing.assert_array_equal(gain, [10.0, 0.0, 7.0, 2.5, 8.0, 0.0])  # unchanged


def test_nearest_other_center_by_blocks():
    from dask_softkmeans.annealing import _nearest_other

    centers = np.random.default_rng(3).standard_normal((700, 5))
    d = ((centers[:, None] - centers[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    np.testing.assert_array_equal(_nearest_other(centers, block=64), d.argmin(axis=1))


@pytest.mark.parametrize("batch", [True, False])
def test_the_swap_check_moves_many_centers_at_once(batch, monkeypatch):
    """256 blobs on a grid, four adjacent pairs each under one center and the four freed
    centers doubling other blobs: one trial makes the four moves (two probes in all, the
    second finding nothing to gain); one move at a time takes a probe each."""
    from dask_softkmeans import annealing
    from dask_softkmeans.annealing import AnnealConfig, Annealer, _Clusters
    from dask_softkmeans.engine import Runner
    from dask_softkmeans.objective import run_pass

    if not batch:
        monkeypatch.setattr(annealing, "_SWAP_BATCH_CLUSTERS", 10**6)
    grid = np.stack(np.meshgrid(np.arange(16.0), np.arange(16.0)), -1).reshape(-1, 2) * 10.0
    x = grid[np.repeat(np.arange(256), 40)] + np.random.default_rng(0).standard_normal((10240, 2))
    truth = grid - x.mean(0)
    x -= x.mean(0)
    start = truth.copy()
    for n in range(4):
        a, b, c = 2 * n, 2 * n + 1, 100 + 10 * n  # a and b side by side; c elsewhere
        start[a] = (truth[a] + truth[b]) / 2.0
        start[b] = truth[c] + [0.3, 0.0]
    assert centroid_index(start, truth) == 4
    runner = Runner(x)
    annealer = Annealer(lambda params: run_pass(runner, params), AnnealConfig(n_clusters=256),
                        n_features=2, total_weight=len(x))
    clusters = _Clusters(start, np.full(256, -np.log(256)), np.eye(2)[np.zeros(256, int)],
                         np.ones(256), np.ones(256, int))
    clusters, converged, stats = annealer._finish(clusters, explore=True)
    probes = sum(r["phase"] == "swap" and r["moments"] for r in annealer.history)
    assert converged and centroid_index(clusters.centers, truth) == 0
    assert probes == (2 if batch else 5)
    # An exact fixed point.
    np.testing.assert_allclose(stats.sums / stats.counts[:, None], clusters.centers, rtol=1e-12)


def test_schedule_jumps_land_on_a_grid_that_rounding_does_not_move():
    from dask_softkmeans.annealing import _GRID, _grid_below

    for t in (1e-6, 0.19858, 0.7355143145, 3.0, 12345.678):  # none on the grid
        snapped = _grid_below(t)
        assert snapped <= t < snapped * 2.0 ** (1.0 / _GRID) * (1 + 1e-12)
        # float32-level noise in the estimate does not move the jump.
        assert _grid_below(t * (1.0 + 6e-8)) == snapped == _grid_below(t * (1.0 - 6e-8))
    assert _grid_below(2.0) == 2.0 and _grid_below(1.0) == 1.0


def test_em_passes_settle_with_a_few_laggards_only_among_many_codevectors():
    from dask_softkmeans.annealing import _LAGGARDS, _settled

    # Fewer codevectors than _LAGGARDS: every shift below the tolerance, as a maximum.
    few = np.full(_LAGGARDS - 1, 0.5)
    assert _settled(few, 1.0)
    few[7] = 1.0
    assert not _settled(few, 1.0)
    # Many: one in _LAGGARDS may still move; one more may not.
    many = np.full(4 * _LAGGARDS, 0.5)
    many[:4] = 3.0
    assert _settled(many, 1.0)
    many[4] = 3.0
    assert not _settled(many, 1.0)


def test_damped_step_sums_an_oscillation_and_keeps_every_other_step():
    from dask_softkmeans.annealing import _damped_step

    previous = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 2.0], [np.nan, np.nan]])
    step = np.array([
        [-0.8, 0.0],  # overshoots back, shorter: the series sums to step / 1.8
        [0.5, 0.0],  # the same direction (a slow mode): kept
        [-1.2, 0.0],  # back and longer (not a converging series): kept
        [1.2, -1.0],  # back at a wide angle: kept
        [1.0, 1.0],  # no previous step: kept
    ])
    damped = _damped_step(step, previous)
    np.testing.assert_allclose(damped[0], [-0.8 / 1.8, 0.0])
    np.testing.assert_array_equal(damped[1:], step[1:])
    assert not np.shares_memory(damped, step)
    np.testing.assert_array_equal(step[0], [-0.8, 0.0])  # the caller's steps unchanged


def test_damped_em_reaches_the_same_fixed_point_in_fewer_passes():
    """Clusters alone: the over-relaxed EM step overshoots each one's fixed point and the
    steps alternate for a dozen passes; damped, the same fixed point in a few."""
    from dask_softkmeans.annealing import AnnealConfig, Annealer, _Clusters
    from dask_softkmeans.engine import Runner
    from dask_softkmeans.objective import run_pass

    x, _, truth = make_blobs(20_000, n_features=3, centers=10, cluster_std=1.0,
                             center_box=(-60, 60), random_state=2, return_centers=True)
    runner = Runner(x)
    start = truth + np.random.default_rng(1).normal(0.0, 1.5, truth.shape)
    results = {}
    for damping in (False, True):
        # Never hard enough to end the annealing: the EM runs to its own tolerance.
        config = AnnealConfig(n_clusters=10, damping=damping, stop_confidence=2.0)
        annealer = Annealer(lambda params: run_pass(runner, params), config, n_features=3,
                            total_weight=len(x))
        clusters = _Clusters(start.copy(), np.full(10, -np.log(10)), np.eye(3)[np.zeros(10, int)],
                             np.ones(10), np.ones(10, int))
        clusters, _ = annealer._equilibrate(clusters, 1.0)
        results[damping] = (clusters.centers, len(annealer.history))
    (plain, plain_n), (damped, damped_n) = results[False], results[True]
    assert damped_n <= plain_n / 2
    # Both within the tolerance (10^-2 T, squared) of the same fixed point.
    np.testing.assert_allclose(damped, plain, atol=0.2)


def test_lloyd_before_the_swap_check_stops_where_the_partition_creeps():
    """Overlapping blobs: Lloyd creeps to its fixed point, a few rows a pass.  Stopped at
    the creep, the passes end early and short of it; the swap check's closing passes then
    reach a fixed point all the same."""
    from dask_softkmeans.annealing import AnnealConfig, Annealer, _Clusters
    from dask_softkmeans.engine import Runner
    from dask_softkmeans.kernels import PassParams
    from dask_softkmeans.objective import run_pass

    x, _ = make_blobs(20_000, n_features=2, centers=12, cluster_std=2.5, center_box=(-20, 20),
                      random_state=4)
    runner = Runner(x)

    def statistics(params):
        return run_pass(runner, params)

    start = x[np.random.default_rng(0).choice(len(x), 12, replace=False)]

    def clusters():
        return _Clusters(start.copy(), np.zeros(12), np.eye(2)[np.zeros(12, int)],
                         np.ones(12), np.ones(12, int))

    runs = {}
    for stall in (False, True):
        annealer = Annealer(statistics, AnnealConfig(n_clusters=12), n_features=2,
                            total_weight=len(x))
        _, converged, stats = annealer._lloyd(clusters(), stall=stall)
        runs[stall] = (converged, float(stats.inertia), len(annealer.history))
    (full_done, full_j, full_n), (stall_done, stall_j, stall_n) = runs[False], runs[True]
    assert full_done and not stall_done
    assert stall_n < full_n
    assert stall_j <= full_j * 1.01  # the creep lowers the inertia by little

    annealer = Annealer(statistics, AnnealConfig(n_clusters=12), n_features=2,
                        total_weight=len(x))
    final, converged, _ = annealer._finish(clusters(), explore=True)
    assert converged and annealer.history[-1]["phase"] == "lloyd"
    stats = statistics(PassParams(final.centers, 0.0))
    np.testing.assert_array_equal(stats.sums / stats.counts[:, None], final.centers)


@pytest.mark.parametrize("n_features", [2, 12])
def test_second_moments_only_in_the_axis_passes_while_splits_remain(n_features):
    """While fewer than K clusters exist, full moments (small D) ride on every pass; with
    power-iteration products (larger D) the EM passes go without, and a few passes after
    them measure the axes the split decisions read.  Once K clusters exist, no EM pass
    at T > 0 has any."""
    from dask_softkmeans.annealing import AnnealConfig, Annealer, moment_mode
    from dask_softkmeans.engine import Runner
    from dask_softkmeans.objective import run_pass

    x, _, centers = make_blobs(6000, n_features=n_features, centers=8, cluster_std=1.0,
                               center_box=(-20, 20), random_state=5, return_centers=True)
    x = x - x.mean(0)
    runner = Runner(x)
    calls = []

    def statistics(params):
        calls.append(params)
        return run_pass(runner, params)

    config = AnnealConfig(n_clusters=8)
    annealer = Annealer(statistics, config, n_features=n_features, total_weight=len(x))
    cov = np.cov(x.T)
    values, vectors = np.linalg.eigh(cov)
    result = annealer.run(np.zeros(n_features), float(values[-1]), vectors[:, -1])
    assert centroid_index(result.centers, centers - centers.mean(0)) <= 1
    mode = moment_mode(n_features)
    anneal = [(p, r) for p, r in zip(calls, annealer.history, strict=True)
              if r["phase"] == "anneal"]
    assert [r["moments"] for _, r in anneal] == [p.moments != "none" for p, _ in anneal]
    by_temperature: dict[float, list] = {}
    for params, record in anneal:
        by_temperature.setdefault(record["temperature"], []).append((params, record))
    measured = 0
    for passes in by_temperature.values():
        flags = [p.moments for p, _ in passes]
        n = sum(f != "none" for f in flags)
        if passes[0][1]["codevectors"] >= 8:
            # None, unless a merge or an emptied cluster leaves fewer than K: then the
            # splits that follow need fresh axes, measured after the EM passes.
            assert flags == ["none"] * (len(flags) - n) + [mode] * n
            assert n <= (1 if mode == "full" else config.max_axis_passes)
        elif mode == "full":
            assert flags == ["full"] * len(flags)
            measured += 1
        else:  # the passes with moments come last
            assert 1 <= n <= config.max_axis_passes
            assert flags == ["none"] * (len(flags) - n) + ["power"] * n
            measured += 1
    assert measured >= 2


def test_small_float64_data_anneal_on_a_float32_copy_and_finish_on_the_data():
    """Float64 data too small for a sample: the passes at T > 0 run on a float32 copy of
    all the rows (their weight is the data's), Lloyd and the swap check end on the data,
    so the centers are a Lloyd fixed point of the float64 rows."""
    x, _, centers = make_blobs(3000, n_features=12, centers=8, cluster_std=1.5,
                               center_box=(-20, 20), random_state=5, return_centers=True)
    x = x + 1e5  # far from the origin: the copy is of the centered rows
    model = SoftKMeans(8).fit(x)
    copy = [r for r in model.history_ if r["data"] == "copy"]
    assert copy and all(r["weight"] == len(x) for r in copy)
    assert all(r["temperature"] == 0 for r in model.history_ if r["data"] == "full")
    assert model.history_[-1]["data"] == "full"
    means = np.array([x[model.labels_ == k].mean(axis=0) for k in range(8)])
    np.testing.assert_allclose(model.cluster_centers_, means, rtol=0, atol=1e-9)
    assert centroid_index(model.cluster_centers_ - 1e5, centers) == 0
    exact = SoftKMeans(8, sample_size=None).fit(x)
    assert {r["data"] for r in exact.history_} == {"full"}
    assert model.inertia_ == pytest.approx(exact.inertia_, rel=1e-9)
    # Dask input (no copy: its passes run on the blocks) reaches the same centers.
    chunked = SoftKMeans(8, compute_labels=False).fit(da.from_array(x, chunks=(700, 12)))
    assert {r["data"] for r in chunked.history_} == {"full"}
    np.testing.assert_allclose(by_rows(chunked.cluster_centers_), by_rows(model.cluster_centers_),
                               rtol=1e-12)


def test_float32_data_and_the_cosine_metric_need_no_copy():
    x, _ = make_blobs(2000, n_features=12, centers=6, random_state=2)
    for model in (SoftKMeans(6).fit(x.astype(np.float32)),
                  SoftKMeans(6, metric="cosine").fit(x)):
        assert {r["data"] for r in model.history_} == {"full"}


def test_a_swap_trial_that_stalls_short_of_its_target_stops_early():
    """A trial's Lloyd passes give up once they stall above the inertia they must beat;
    one that reaches it runs to the same fixed point as without a target."""
    from dask_softkmeans.annealing import AnnealConfig, Annealer, _Clusters
    from dask_softkmeans.engine import Runner
    from dask_softkmeans.objective import run_pass

    x = StandardScaler().fit_transform(load_digits().data)
    runner = Runner(x)

    def lloyd(target, accept=False):
        annealer = Annealer(lambda params: run_pass(runner, params), AnnealConfig(n_clusters=10),
                            n_features=64, total_weight=len(x))
        clusters = _Clusters(x[:10].copy(), np.zeros(10), np.eye(64)[np.zeros(10, int)],
                             np.ones(10), np.ones(10, int))
        clusters, converged, stats = annealer._lloyd(clusters, "swap", target=target,
                                                     accept=accept)
        return by_rows(clusters.centers), converged, float(stats.inertia), len(annealer.history)

    free = lloyd(None)
    assert free[1]
    stalled = lloyd(0.9 * free[2])
    assert not stalled[1] and stalled[3] < free[3] and stalled[2] > 0.9 * free[2]
    reached = lloyd(1.001 * free[2])
    np.testing.assert_array_equal(reached[0], free[0])
    assert reached[1:] == free[1:]
    # Accepting, the passes stop at the first below the target: short of the fixed point.
    accepted = lloyd(1.001 * free[2], accept=True)
    assert not accepted[1] and accepted[2] < 1.001 * free[2] and accepted[3] < free[3]
    # Still above it (it is reached only further on), accepting changes nothing.
    np.testing.assert_array_equal(lloyd(0.9 * free[2], accept=True)[0], stalled[0])


def test_the_swap_check_ends_at_a_fixed_point_after_trials_stopped_at_their_target():
    """The swap check's trials stop at their first pass below the probe's inertia; Lloyd
    passes after the last move bring the fit to a fixed point (float32 digits: no copy,
    every move is tried on the data)."""
    x = StandardScaler().fit_transform(load_digits().data).astype(np.float32)
    model = SoftKMeans(10).fit(x)
    phases = [r["phase"] for r in model.history_]
    probes = sum(r["phase"] == "swap" and r["moments"] for r in model.history_)
    assert probes >= 3  # moves were tried, and some kept
    assert phases[-1] == "lloyd"
    means = np.array([x[model.labels_ == k].astype(np.float64).mean(axis=0) for k in range(10)])
    np.testing.assert_allclose(model.cluster_centers_, means, rtol=0, atol=1e-5)
    ten = KMeans(10, n_init=10, random_state=0).fit(x.astype(np.float64))
    assert model.inertia_ <= 1.002 * ten.inertia_
