"""Per-pass throughput and full fits: dask-softkmeans against scikit-learn, faiss and dask-ml.

Run from the repository root::

    python benchmarks/throughput.py            # the issue's shapes (several minutes)
    python benchmarks/throughput.py --quick    # small shapes (about a minute)
    python benchmarks/throughput.py --sections pass fixed   # some sections only

Every system runs in this one process on the same data: Gaussian blobs
(float32, unit spread), built block by block from a seed, once in this
process's memory (for scikit-learn and faiss) and once persisted on a
``LocalCluster`` of 2 single-threaded worker processes (for dask-softkmeans
and dask-ml); the blocks are identical.  Times are medians of ``--repeats``
runs (default 5) after one warm-up run; ratios come from the same run, which
is what to compare on a shared machine.  The passes whose ratios are targets
(scikit-learn's Lloyd iteration and our three passes) run in turns of a few
runs each, so that a change of load lands on all of them alike.

Sections:

- ``pass``: one pass per system at each shape.  scikit-learn: one Lloyd
  iteration (``lloyd_iter_chunked_dense``, the loop body of ``KMeans``, on
  all cores) and, as a second column, ``KMeans(init=C, n_init=1,
  max_iter=1).fit`` (what a user timing one iteration gets: input checks,
  centering, the final assignment).  faiss: ``Kmeans(niter=1).train`` on all
  rows.  dask-ml: ``KMeans(init=C, max_iter=1).fit`` on the persisted array.
  Ours: ``soft_statistics(X, C, T)`` on the persisted array, at T = 1 (a
  soft pass; these blobs are far apart against T = 1, so nearly every chunk
  is one-hot and summed without exp), at a temperature where every chunk
  is soft (:func:`dense_temperature`), and at T = 0 (a Lloyd pass); and the
  peak memory of the workers.
- ``fixed``: the fixed cost of a pass, a pass over 16 tiny blocks minus
  their kernel time, on the cluster and on the threaded scheduler.
- ``scaling``: our soft pass at the largest shape on 2, then 1, then 2 workers
  (one cluster up at a time, each timed in turns with scikit-learn's iteration;
  the speed-up compares the 1-worker pass with the mean of the two 2-worker
  phases, so that a load that drifts steadily cancels); first with
  distributed's default configuration, then with its diagnostics lightened
  as the command line starts its own cluster (``dask_softkmeans.launch``).
- ``predict``: per-sample results on NumPy data in this process, at the fit's
  shape, for a ``SoftKMeans`` fitted there and scikit-learn's ``KMeans`` with
  the same centers: ``predict``, ``transform`` (the distances) and our
  ``predict_proba``, in turns.
- ``fit``: full fits: ``SoftKMeans`` (with its count of passes over the full
  data; the workers have loaded the compiled kernel first, a once-per-process
  cost that ``fixed`` reports), scikit-learn ``KMeans(n_init=10)``, dask-ml
  ``KMeans()``; inertia of each recomputed the same way.

faiss (``pip install faiss-cpu``) and dask-ml (``pip install dask-ml``) are
optional: a missing one is reported and skipped.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import sys
import time
import warnings
from collections.abc import Callable
from functools import partial
from typing import Any

import dask
import dask.array as da
import numpy as np
from _results import add_results_option, recorded
from threadpoolctl import threadpool_info

from dask_softkmeans import SoftKMeans, soft_statistics
from dask_softkmeans.kernels import block_statistics, nearest
from dask_softkmeans.launch import LIGHT_DIAGNOSTICS, local_cluster

FULL = {
    "shapes": [(1_000_000, 32, 32), (4_000_000, 8, 16), (200_000, 256, 128), (8_000_000, 32, 32)],
    "scaling": (8_000_000, 32, 32),
    "fit": (1_000_000, 32, 32),
    "daskml_max_rows": 4_000_000,  # larger: dask-ml's pass is too slow to repeat, skipped
}
QUICK = {
    "shapes": [(100_000, 32, 32), (400_000, 8, 16), (20_000, 256, 128)],
    "scaling": (800_000, 32, 32),
    "fit": (100_000, 32, 32),
    "daskml_max_rows": 400_000,
}
BLOCKS_PER_WORKER = 8
TIMED_PER_TURN = 2  # see interleaved_medians


# -- data -------------------------------------------------------------------
def true_centers(n_features: int, n_clusters: int, seed: int = 0) -> np.ndarray:
    """Blob centers in a box of side 20, so that unit-spread blobs overlap a little."""
    return np.random.default_rng([seed, n_features, n_clusters]).uniform(
        -10, 10, size=(n_clusters, n_features))


def make_block(index: int, rows: int, centers: np.ndarray, seed: int = 0) -> np.ndarray:
    """Rows of block ``index``: the same numbers wherever they are made."""
    rng = np.random.default_rng([seed, index])
    labels = rng.integers(len(centers), size=rows)
    x = rng.standard_normal((rows, centers.shape[1]), dtype=np.float32)
    x += centers.astype(np.float32)[labels]
    return x


def block_rows(n: int, n_blocks: int) -> list[int]:
    base = -(-n // n_blocks)
    return [min(base, n - i * base) for i in range(n_blocks) if n - i * base > 0]


def local_data(n: int, d: int, k: int, n_workers: int) -> np.ndarray:
    """In memory here, the rows that :func:`build` persists on ``n_workers`` workers."""
    centers = true_centers(d, k)
    sizes = block_rows(n, BLOCKS_PER_WORKER * n_workers)
    return np.concatenate([make_block(i, r, centers) for i, r in enumerate(sizes)])


def build(n: int, d: int, k: int, client: Any, n_workers: int,
          local: bool = True) -> tuple[np.ndarray | None, da.Array]:
    """The data in memory here (unless ``local`` is false) and persisted on the
    cluster's workers (made there)."""
    centers = true_centers(d, k)
    sizes = block_rows(n, BLOCKS_PER_WORKER * n_workers)
    here = local_data(n, d, k, n_workers) if local else None
    parts = [da.from_delayed(dask.delayed(make_block)(i, r, centers), (r, d), np.float32)
             for i, r in enumerate(sizes)]
    distributed = client.persist(da.concatenate(parts))
    from distributed import wait

    wait(distributed)
    return here, distributed


def start_centers(d: int, k: int) -> np.ndarray:
    """The given centers of a pass: the true ones, perturbed."""
    return true_centers(d, k) + np.random.default_rng(1).normal(scale=0.5, size=(k, d))


# -- timing -----------------------------------------------------------------
def dense_temperature(centers: np.ndarray) -> float:
    """A temperature at which the responsibilities of these blobs are soft everywhere.

    At T = 1 the unit-spread blobs are far apart against T: every row's other
    logits sit at the floor and the kernel sums the chunk as hard assignments
    (no exp, no second product).  At a twentieth of the median squared
    distance between centers, a row's two largest logits are at most ~20
    apart (the floor is 60) for most rows: every chunk takes the dense path.
    """
    d2 = ((centers[:, None, :] - centers[None, :, :]) ** 2).sum(-1)
    return float(np.median(d2[np.triu_indices(len(centers), 1)]) / 20.0)


def median_time(func: Callable[[], Any], repeats: int) -> float:
    func()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def interleaved_medians(funcs: dict[str, Callable[[], Any]], repeats: int) -> dict[str, float]:
    """Median time of each function over ``repeats`` runs, taken in turns, so that a
    change of load on the shared machine lands on all of them alike: their ratios are
    what counts.

    A turn is one untimed run then ``TIMED_PER_TURN`` timed runs back to back, as the
    passes of a fit run: a pass of ours right after scikit-learn's measured ~25% slower
    (its OpenMP threads keep spinning for a while), and one after a pause was slower too
    (idle workers wake up).
    """
    times: dict[str, list[float]] = {name: [] for name in funcs}
    for _ in range(-(-repeats // TIMED_PER_TURN)):
        for name, func in funcs.items():
            func()
            for _ in range(TIMED_PER_TURN):
                start = time.perf_counter()
                func()
                times[name].append(time.perf_counter() - start)
    return {name: float(np.median(t)) for name, t in times.items()}


def cluster(n_workers: int, light: bool = False) -> tuple[Any, Any]:
    """A ``LocalCluster`` of ``n_workers`` single-threaded processes and its client;
    ``light``: with distributed's diagnostics lightened, as the command line starts one."""
    from distributed import Client, LocalCluster

    start = local_cluster if light else LocalCluster
    lc = start(n_workers=n_workers, threads_per_worker=1, processes=True,
               dashboard_address=None, memory_limit="8GiB")
    return lc, Client(lc)


def _peak_rss() -> int:
    """Peak resident memory of this process (bytes).

    ``VmHWM`` where Linux has it: ``ru_maxrss`` survives ``exec`` and would
    count the parent's memory at the time it started the worker.
    """
    with contextlib.suppress(OSError):
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def peak_worker_memory(client: Any) -> list[int]:
    """Peak resident memory (bytes) of each worker process so far."""
    return sorted(client.run(_peak_rss).values())


def optional(name: str) -> Any:
    try:
        return __import__(name)
    except ImportError:
        print(f"note: {name} is not installed; its columns are skipped "
              f"(pip install {'faiss-cpu' if name == 'faiss' else 'dask-ml'}).")
        return None


# -- systems: one pass ------------------------------------------------------
def sklearn_lloyd_pass(x: np.ndarray, centers: np.ndarray) -> Callable[[], Any] | None:
    """One iteration of scikit-learn's Lloyd loop on all cores (its private loop body)."""
    try:
        from sklearn.cluster._k_means_lloyd import lloyd_iter_chunked_dense
        from sklearn.utils._openmp_helpers import _openmp_effective_n_threads
    except ImportError:
        return None
    c = centers.astype(x.dtype)
    new, weight_in = np.empty_like(c), np.empty(len(c), x.dtype)
    labels, shift = np.empty(len(x), np.int32), np.empty(len(c), x.dtype)
    sw = np.ones(len(x), x.dtype)
    threads = _openmp_effective_n_threads()
    return lambda: lloyd_iter_chunked_dense(x, sw, c, new, weight_in, labels, shift, threads)


def sklearn_fit_one(x: np.ndarray, centers: np.ndarray) -> Callable[[], Any]:
    from sklearn.cluster import KMeans

    model = KMeans(len(centers), init=centers.astype(x.dtype), n_init=1, max_iter=1)
    return lambda: model.fit(x)


def faiss_pass(faiss: Any, x: np.ndarray, centers: np.ndarray) -> Callable[[], Any]:
    k = len(centers)
    init = np.ascontiguousarray(centers, np.float32)

    def run() -> None:
        km = faiss.Kmeans(x.shape[1], k, niter=1, verbose=False, seed=0,
                          max_points_per_centroid=len(x) // k + 1, min_points_per_centroid=1)
        km.train(x, init_centroids=init)
    return run


def daskml_pass(X: da.Array, centers: np.ndarray) -> Callable[[], Any]:
    from dask_ml.cluster import KMeans

    model = KMeans(n_clusters=len(centers), init=centers.astype(np.float32), max_iter=1, n_init=1)
    return lambda: model.fit(X)


# -- sections ---------------------------------------------------------------
def section_pass(config: dict, repeats: int, faiss: Any, dask_ml: Any) -> list[dict]:
    lc, client = cluster(2)
    rows = []
    try:
        for n, d, k in config["shapes"]:
            x, X = build(n, d, k, client, 2)
            c = start_centers(d, k)
            row: dict[str, Any] = {"shape": f"{n // 1000}k x {d}, K={k}" if n < 10**6
                                   else f"{n // 10**6}M x {d}, K={k}"}
            # The passes whose ratios are the targets run in turns.
            turns = {"ours_soft": partial(soft_statistics, X, c, 1.0),
                     "ours_dense": partial(soft_statistics, X, c, dense_temperature(c)),
                     "ours_lloyd": partial(soft_statistics, X, c, 0.0)}
            lloyd = sklearn_lloyd_pass(x, c)
            if lloyd:
                turns["sklearn"] = lloyd
            row.update(interleaved_medians(turns, repeats))
            row.setdefault("sklearn", np.nan)
            row["sklearn_fit1"] = median_time(sklearn_fit_one(x, c), repeats)
            row["faiss"] = median_time(faiss_pass(faiss, x, c), repeats) if faiss else np.nan
            if dask_ml and n <= config["daskml_max_rows"]:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    row["daskml"] = median_time(daskml_pass(X, c), repeats)
            else:
                row["daskml"] = np.nan
            row["peak_worker_mb"] = max(peak_worker_memory(client)) / 2**20
            row["data_per_worker_mb"] = X.nbytes / 2 / 2**20
            rows.append(row)
            print_pass_row(row)
            client.cancel(X)
            del x, X
    finally:
        client.close()
        lc.close()
    return rows


def tiny_pass_costs(repeats: int) -> tuple[float, float]:
    """(pass time, kernel time) for 16 blocks of 256 x 32 rows, K = 32."""
    x = make_block(0, 16 * 256, true_centers(32, 32))
    c = start_centers(32, 32)
    X = da.from_array(x, chunks=(256, 32))
    kernel = median_time(lambda: [block_statistics(x[i : i + 256], c, 1.0)
                                  for i in range(0, len(x), 256)], repeats)
    X = X.persist()
    return median_time(lambda: soft_statistics(X, c, 1.0), max(repeats, 15)), kernel


def kernel_start_seconds() -> tuple[float, float]:
    """Seconds to compile the numba kernel into an empty cache, then to load it, in fresh processes."""
    import subprocess
    import tempfile

    code = ("import time; t = time.perf_counter(); from dask_softkmeans.kernels import compiled; "
            "print(time.perf_counter() - t)")
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        run = [sys.executable, "-c", code]
        cold = float(subprocess.run(run, env=env, capture_output=True, text=True,
                                    check=True).stdout)
        warm = float(subprocess.run(run, env=env, capture_output=True, text=True,
                                    check=True).stdout)
    return cold, warm


def section_fixed(repeats: int) -> dict:
    cold, warm = kernel_start_seconds()
    with dask.config.set(scheduler="threads"):
        threaded, kernel = tiny_pass_costs(repeats)
    lc, client = cluster(2)
    try:
        on_cluster, kernel2 = tiny_pass_costs(repeats)
    finally:
        client.close()
        lc.close()
    # The kernel time splits over the 2 workers (or 2 threads).
    return {"cluster": on_cluster - kernel2 / 2, "threaded": threaded - kernel / 2,
            "kernel": kernel2, "compile": cold, "load": warm}


def section_scaling(config: dict, repeats: int) -> dict:
    """The soft pass on 2, then 1, then 2 workers, one cluster up at a time, each
    phase timed in turns with scikit-learn's iteration; first with distributed's
    default configuration, then again with its diagnostics lightened
    (:data:`dask_softkmeans.launch.LIGHT_DIAGNOSTICS`, as ``dask-softkmeans fit``
    starts its own cluster).

    With both clusters up at once an idle 1-worker cluster (scheduler, nanny and
    worker waking up on a machine whose two cores run the 2-worker pass) made that
    pass 5-15% slower in a probe (0.24 s alone, 0.26-0.31 s beside it); one cluster
    after the other, the load moved in between (1.5x to 2.05x in three runs of one
    day).  The 2-1-2 order cancels a load that drifts steadily.
    """
    n, d, k = config["scaling"]
    c = start_centers(d, k)
    x = local_data(n, d, k, 2)  # the rows of the 2-worker phases
    lloyd = sklearn_lloyd_pass(x, c)
    out: dict[str, Any] = {"shape": f"{n / 1e6:g}M x {d}, K={k}"}
    for light in (False, True):
        phases = []
        for workers in (2, 1, 2):
            lc, client = cluster(workers, light)
            try:
                _, X = build(n, d, k, client, workers, local=False)
                funcs: dict[str, Callable[[], Any]] = {
                    "ours": partial(soft_statistics, X, c, 1.0)}
                if lloyd:
                    funcs["sklearn"] = lloyd
                times = interleaved_medians(funcs, repeats)
                phases.append({
                    "workers": workers, "ours": times["ours"],
                    "sklearn": times.get("sklearn", np.nan),
                    "mem": max(peak_worker_memory(client)) / 2**20,
                    "data": X.nbytes / workers / 2**20})
                del X
            finally:
                client.close()
                lc.close()
        two = [phases[0], phases[2]]
        out["light" if light else "default"] = {
            "phases": phases, "w1": phases[1]["ours"],
            "w2": float(np.mean([p["ours"] for p in two])),
            "sklearn": float(np.mean([p["sklearn"] for p in two]))}
    del x
    return out


def section_predict(config: dict, repeats: int) -> dict:
    from sklearn.cluster import KMeans

    n, d, k = config["fit"]
    x = local_data(n, d, k, 2)
    model = SoftKMeans(n_clusters=k, compute_labels=False).fit(x)
    # The same centers: one Lloyd iteration from them leaves them where they are.
    sk = KMeans(n_clusters=k, init=model.cluster_centers_, n_init=1, max_iter=1).fit(x)
    times = interleaved_medians({
        "ours_predict": lambda: model.predict(x),
        "sklearn_predict": lambda: sk.predict(x),
        "ours_transform": lambda: model.transform(x),
        "sklearn_transform": lambda: sk.transform(x),
        "ours_proba": lambda: model.predict_proba(x),
    }, repeats)
    agree = float(np.mean(model.predict(x) == sk.predict(x)))
    return {"shape": f"{n / 1e6:g}M x {d}, K={k}", "agree": agree, **times}


def section_fit(config: dict, dask_ml: Any) -> dict:
    from sklearn.cluster import KMeans

    n, d, k = config["fit"]
    out: dict[str, Any] = {"shape": f"{n / 1e6:g}M x {d}, K={k}"}
    lc, client = cluster(2)
    try:
        x, X = build(n, d, k, client, 2)
        offset = x.mean(0, dtype=np.float64)

        def inertia(centers: np.ndarray) -> float:
            return float(nearest(x, centers, offset=offset)[1].sum())

        # Each worker loads the compiled kernel once in its life (the "fixed" section
        # reports that cost); a long-running cluster has paid it before any fit.
        client.run(lambda: __import__("dask_softkmeans.kernels.compiled"))
        start = time.perf_counter()
        model = SoftKMeans(n_clusters=k, compute_labels=False).fit(X)
        out["ours"] = time.perf_counter() - start
        out["ours_full_passes"] = sum(1 for h in model.history_ if h.get("data") == "full")
        out["ours_passes"] = len(model.history_)
        out["ours_inertia"] = inertia(model.cluster_centers_)
        out["ours_peak_worker_mb"] = max(peak_worker_memory(client)) / 2**20

        start = time.perf_counter()
        sk = KMeans(n_clusters=k, n_init=10, random_state=0).fit(x)
        out["sklearn10"] = time.perf_counter() - start
        out["sklearn10_inertia"] = inertia(sk.cluster_centers_)
        if dask_ml:
            from dask_ml.cluster import KMeans as DaskKMeans

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                start = time.perf_counter()
                dm = DaskKMeans(n_clusters=k, random_state=0).fit(X)
                out["daskml"] = time.perf_counter() - start
            out["daskml_iter"] = int(dm.n_iter_)
            out["daskml_inertia"] = inertia(np.asarray(dm.cluster_centers_))
    finally:
        client.close()
        lc.close()
    return out


# -- output -----------------------------------------------------------------
def fmt(v: float, unit: str = "s") -> str:
    return "—" if v is None or not np.isfinite(v) else f"{v:.3f} {unit}".strip()


def ratio(a: float, b: float) -> str:
    return "—" if not (np.isfinite(a) and np.isfinite(b)) or b == 0 else f"{a / b:.2f}"


def print_pass_row(r: dict) -> None:
    print(f"  {r['shape']}: sklearn {fmt(r['sklearn'])} (fit max_iter=1 {fmt(r['sklearn_fit1'])}), "
          f"faiss {fmt(r['faiss'])}, dask-ml {fmt(r['daskml'])}, ours soft {fmt(r['ours_soft'])}, "
          f"dense {fmt(r['ours_dense'])}, ours T=0 {fmt(r['ours_lloyd'])}; "
          f"peak worker memory {r['peak_worker_mb']:.0f} MiB "
          f"(data {r['data_per_worker_mb']:.0f} MiB per worker)", flush=True)


def print_tables(passes: list[dict], fixed: dict | None, scaling: dict | None,
                 fit: dict | None, predict: dict | None = None) -> None:
    if passes:
        print("\n### One pass (seconds; ratios = ours / theirs, < 1 means we are faster)\n")
        print("| shape | sklearn Lloyd iter | sklearn fit(max_iter=1) | faiss | dask-ml | "
              "ours soft (T=1) | ours soft, dense T | ours T=0 | soft / sklearn iter | "
              "dense / sklearn iter | soft / sklearn fit1 | dask-ml / soft | "
              "peak worker MiB (data) |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for r in passes:
            print(f"| {r['shape']} | {fmt(r['sklearn'], '')} | {fmt(r['sklearn_fit1'], '')} | "
                  f"{fmt(r['faiss'], '')} | {fmt(r['daskml'], '')} | {fmt(r['ours_soft'], '')} | "
                  f"{fmt(r['ours_dense'], '')} | {fmt(r['ours_lloyd'], '')} | "
                  f"{ratio(r['ours_soft'], r['sklearn'])} | {ratio(r['ours_dense'], r['sklearn'])} | "
                  f"{ratio(r['ours_soft'], r['sklearn_fit1'])} | "
                  f"{ratio(r['daskml'], r['ours_soft'])} | "
                  f"{r['peak_worker_mb']:.0f} ({r['data_per_worker_mb']:.0f}) |")
    if fixed:
        print(f"\n### Fixed cost of a pass (16 blocks of 256 x 32, K=32, minus kernel time "
              f"{fixed['kernel'] * 1e3:.1f} ms / 2)\n")
        print(f"- LocalCluster, 2 single-threaded worker processes: {fixed['cluster'] * 1e3:.1f} ms")
        print(f"- threaded scheduler, no cluster: {fixed['threaded'] * 1e3:.1f} ms")
        print(f"- once per machine, the numba kernel's compilation into an empty cache: "
              f"{fixed['compile']:.1f} s; once per process, loading it from the cache: "
              f"{fixed['load']:.2f} s")
    if scaling:
        print(f"\n### Workers, {scaling['shape']} (soft pass, T=1; one cluster at a time, "
              f"2, 1, then 2 workers)")
        for name, title in (("default", "distributed's default configuration"),
                            ("light", "diagnostics lightened as `dask-softkmeans fit` starts "
                             "its cluster: " + ", ".join(f"{key} {value}" for key, value
                                                         in LIGHT_DIAGNOSTICS.items()))):
            s = scaling[name]
            print(f"\n{title}:\n")
            for p in s["phases"]:
                print(f"- {p['workers']} worker{'s' if p['workers'] > 1 else ''}: "
                      f"{fmt(p['ours'])} (scikit-learn's iteration in turns: "
                      f"{fmt(p['sklearn'])}; peak {p['mem']:.0f} MiB per worker, "
                      f"data {p['data']:.0f} MiB)")
            print(f"- speed-up 2 vs 1: {ratio(s['w1'], s['w2'])} (1 worker against the mean "
                  f"of the two 2-worker phases); soft pass on 2 workers / sklearn Lloyd "
                  f"iteration: {ratio(s['w2'], s['sklearn'])}")
    if predict:
        p = predict
        print(f"\n### Per-sample results on NumPy data, {p['shape']} (seconds; ratios = ours / "
              f"scikit-learn's, same centers)\n")
        print(f"- predict: ours {fmt(p['ours_predict'])}, scikit-learn "
              f"{fmt(p['sklearn_predict'])}, ratio {ratio(p['ours_predict'], p['sklearn_predict'])}"
              f"; labels equal on {p['agree']:.6f} of the rows")
        print(f"- transform: ours {fmt(p['ours_transform'])}, scikit-learn "
              f"{fmt(p['sklearn_transform'])}, ratio "
              f"{ratio(p['ours_transform'], p['sklearn_transform'])}")
        print(f"- predict_proba (ours only): {fmt(p['ours_proba'])}")
    if fit:
        f = fit
        print(f"\n### Full fit, {f['shape']}\n")
        print(f"- ours (SoftKMeans, 2x1 LocalCluster): {fmt(f['ours'])}, "
              f"{f['ours_full_passes']} passes over the full data ({f['ours_passes']} in all), "
              f"inertia {f['ours_inertia']:.6g}, peak worker {f['ours_peak_worker_mb']:.0f} MiB")
        print(f"- scikit-learn KMeans(n_init=10): {fmt(f['sklearn10'])}, inertia "
              f"{f['sklearn10_inertia']:.6g}; ours / sklearn time {ratio(f['ours'], f['sklearn10'])}, "
              f"inertia ratio {f['ours_inertia'] / f['sklearn10_inertia']:.4f}")
        if "daskml" in f:
            print(f"- dask-ml KMeans(): {fmt(f['daskml'])} ({f['daskml_iter']} iterations), inertia "
                  f"{f['daskml_inertia']:.6g}; dask-ml / ours time {ratio(f['daskml'], f['ours'])}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small shapes (about a minute)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per median (>= 5)")
    parser.add_argument("--sections", nargs="+",
                        default=["pass", "fixed", "scaling", "predict", "fit"],
                        choices=["pass", "fixed", "scaling", "predict", "fit"])
    add_results_option(parser)
    args = parser.parse_args(argv)
    with recorded("throughput", args.results_dir, argv):
        _run(args, argv)


def _run(args: argparse.Namespace, argv: list[str] | None) -> None:
    config = QUICK if args.quick else FULL
    print("command: python benchmarks/throughput.py " + " ".join(sys.argv[1:] if argv is None
                                                                  else argv))
    blas = ", ".join(sorted({f"{i['internal_api']} {i['num_threads']} threads"
                             for i in threadpool_info()}))
    print(f"machine: {os.cpu_count()} CPUs; {blas}")
    faiss = optional("faiss") if "pass" in args.sections else None
    dask_ml = optional("dask_ml") if {"pass", "fit"} & set(args.sections) else None
    passes = (section_pass(config, args.repeats, faiss, dask_ml)
              if "pass" in args.sections else [])
    fixed = section_fixed(args.repeats) if "fixed" in args.sections else None
    scaling = section_scaling(config, args.repeats) if "scaling" in args.sections else None
    predict = section_predict(config, args.repeats) if "predict" in args.sections else None
    fit = section_fit(config, dask_ml) if "fit" in args.sections else None
    print_tables(passes, fixed, scaling, fit, predict)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
