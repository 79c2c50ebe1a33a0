"""Embedding-sized rows: one pass and one fit at 200k x 768 float32, K = 256.

Run from the repository root::

    python benchmarks/large_d.py                       # 200k x 768, K = 256, both metrics
    python benchmarks/large_d.py --n-samples 20000 --k 32 --metrics euclidean   # a quick look

Data: float32 Gaussian blobs (unit noise per feature, centers drawn with a spread that keeps
neighbouring blobs apart, unequal sizes), in this process's memory.  Every system runs in
this one process, on all its cores, on the same array:

- pass: one pass with the same centers (the generating ones, perturbed).  Ours:
  ``soft_statistics`` at T = 0 (a Lloyd pass) and at a temperature where the rows are soft
  (T = the mean squared distance to the nearest center, so that every row spreads over
  several centers); scikit-learn: ``KMeans(init=C, n_init=1, max_iter=1).fit`` (one Lloyd
  iteration with its input checks); faiss (optional, ``pip install faiss-cpu``):
  ``Kmeans(niter=1).train`` from the same centers.  Median of ``--repeats`` runs, in turns.
- fit: ``SoftKMeans(K)`` with its defaults (its passes, counted), scikit-learn
  ``KMeans(K, n_init=1)``, faiss ``Kmeans(niter=25)``; each once, the objective of each
  recomputed the same way (the inertia for Euclidean, the sum of ``1 - cos`` for cosine).

For ``cosine`` the anchors are spherical: faiss ``spherical=True``, and scikit-learn's
``KMeans`` on the normalised rows (its centers normalised after the fit: spherical k-means
is not in scikit-learn).  The rows are scaled by random norms first, so that the metric
matters.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import statistics
import time
from typing import Any

import numpy as np
from _results import add_results_option, recorded

from dask_softkmeans import SoftKMeans, soft_statistics


def make_data(n: int, d: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` rows of ``d`` float32 features in ``k`` blobs of unequal sizes, and the centers."""
    rng = np.random.default_rng(seed)
    # Center spread: neighbouring centers about 3 noise radii apart in d dimensions.
    centers = rng.normal(0.0, 3.0 / np.sqrt(2.0), (k, d))
    sizes = rng.multinomial(n, rng.dirichlet(np.full(k, 5.0)))
    labels = np.repeat(np.arange(k), sizes)
    rng.shuffle(labels)
    x = np.empty((n, d), dtype=np.float32)
    for start in range(0, n, 20_000):  # in blocks: a float64 copy of all rows is not needed
        stop = min(n, start + 20_000)
        x[start:stop] = centers[labels[start:stop]] + rng.standard_normal((stop - start, d))
    return x, centers


def objective(x: np.ndarray, centers: np.ndarray, metric: str) -> float:
    """Inertia (Euclidean) or the sum of ``1 - cos`` (cosine) to the nearest center."""
    c = np.asarray(centers, np.float64)
    total = 0.0
    for start in range(0, len(x), 20_000):
        block = np.asarray(x[start : start + 20_000], np.float64)
        if metric == "cosine":
            block = block / np.linalg.norm(block, axis=1, keepdims=True)
            cn = c / np.linalg.norm(c, axis=1, keepdims=True)
            total += float(np.sum(1.0 - np.max(block @ cn.T, axis=1)))
        else:
            d = (np.einsum("ij,ij->i", block, block)[:, None] - 2.0 * block @ c.T
                 + np.einsum("ij,ij->i", c, c)[None, :])
            total += float(np.sum(np.maximum(d.min(axis=1), 0.0)))
    return total


def faiss_module() -> Any:
    try:
        import faiss
    except ImportError:
        return None
    return faiss


def soft_temperature(x: np.ndarray, centers: np.ndarray) -> float:
    """A temperature at which rows are soft: the mean squared distance to the nearest center
    (on a subsample), over 4."""
    sub = np.asarray(x[:: max(1, len(x) // 5000)], np.float64)
    d = (np.einsum("ij,ij->i", sub, sub)[:, None] - 2.0 * sub @ centers.T
         + np.einsum("ij,ij->i", centers, centers)[None, :])
    return float(np.mean(np.sort(d, axis=1)[:, 1] - d.min(axis=1))) / 4.0


def pass_times(x: np.ndarray, centers: np.ndarray, metric: str, repeats: int) -> dict[str, float]:
    """Median seconds of one pass of each system from ``centers``, run in turns."""
    from sklearn.cluster import KMeans

    faiss = faiss_module()
    kwargs = {} if metric == "euclidean" else {"metric": metric}
    c32 = centers.astype(np.float32)
    rows = x
    if metric == "cosine":  # the temperature of the unit rows' distances (at most 4)
        rows = x / np.linalg.norm(x, axis=1, keepdims=True)
    temperature = soft_temperature(rows, centers)
    runs: dict[str, Any] = {
        "ours T=0": lambda: soft_statistics(x, centers, 0.0, **kwargs),
        f"ours T={temperature:.3g} (soft)": lambda: soft_statistics(x, centers, temperature,
                                                                    **kwargs),
        "sklearn iteration": lambda: KMeans(len(centers), init=c32, n_init=1, max_iter=1).fit(x),
    }
    if faiss is not None:
        def faiss_pass() -> None:
            km = faiss.Kmeans(x.shape[1], len(centers), niter=1, spherical=metric == "cosine",
                              max_points_per_centroid=len(x))
            km.train(x, init_centroids=c32)

        runs["faiss iteration"] = faiss_pass
    for run in runs.values():  # warm-up: the kernel loaded, the caches filled
        run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def fits(x: np.ndarray, k: int, metric: str) -> dict[str, tuple[float, float, str]]:
    """Seconds, objective and a note of one fit of each system."""
    from sklearn.cluster import KMeans

    faiss = faiss_module()
    out: dict[str, tuple[float, float, str]] = {}
    kwargs = {} if metric == "euclidean" else {"metric": metric}
    start = time.perf_counter()
    model = SoftKMeans(k, compute_labels=False, **kwargs).fit(x)
    seconds = time.perf_counter() - start
    full = sum(r["weight"] for r in model.history_ if r["data"] == "full") / len(x)
    out["ours"] = (seconds, objective(x, model.cluster_centers_, metric),
                   f"{len(model.history_)} passes, {full:.0f} over all rows")
    rows = x
    if metric == "cosine":
        rows = x / np.linalg.norm(x, axis=1, keepdims=True)
    start = time.perf_counter()
    km = KMeans(k, n_init=1, random_state=0).fit(rows)
    out["sklearn KMeans(n_init=1)"] = (time.perf_counter() - start,
                                       objective(x, km.cluster_centers_, metric),
                                       f"{km.n_iter_} iterations"
                                       + (", on normalised rows" if metric == "cosine" else ""))
    if faiss is not None:
        start = time.perf_counter()
        fk = faiss.Kmeans(x.shape[1], k, niter=25, seed=1, spherical=metric == "cosine")
        fk.train(x)
        out["faiss niter=25"] = (time.perf_counter() - start,
                                 objective(x, fk.centroids, metric), "25 iterations")
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-samples", type=int, default=200_000)
    parser.add_argument("--n-features", type=int, default=768)
    parser.add_argument("--k", type=int, default=256)
    parser.add_argument("--metrics", nargs="+", default=["euclidean", "cosine"],
                        choices=["euclidean", "cosine"])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each pass")
    parser.add_argument("--sections", nargs="+", default=["pass", "fit"], choices=["pass", "fit"])
    parser.add_argument("--seed", type=int, default=0)
    add_results_option(parser)
    args = parser.parse_args(argv)
    with recorded("large_d", args.results_dir):
        x, centers = make_data(args.n_samples, args.n_features, args.k, args.seed)
        print(f"{args.n_samples:,} x {args.n_features} float32, K = {args.k}; faiss "
              f"{'present' if faiss_module() else 'absent (pip install faiss-cpu)'}")
        supported = "metric" in inspect.signature(SoftKMeans).parameters
        for metric in args.metrics:
            if metric != "euclidean" and not supported:
                print(f"\n{metric}: SoftKMeans has no metric parameter here; skipped")
                continue
            data = x
            if metric == "cosine":  # random row norms, so that normalising matters
                scale = np.random.default_rng(args.seed + 1).uniform(0.1, 10.0, len(x))
                data = (x * scale[:, None].astype(np.float32)).astype(np.float32)
            start_centers = centers + np.random.default_rng(args.seed + 2).normal(
                0.0, 0.1, centers.shape)
            if metric == "cosine":
                start_centers /= np.linalg.norm(start_centers, axis=1, keepdims=True)
            print(f"\n## {metric}")
            if "pass" in args.sections:
                times = pass_times(data, start_centers, metric, args.repeats)
                anchor = times["sklearn iteration"]
                print("\n| one pass | s (median) | / sklearn iteration |\n|---|---|---|")
                for name, seconds in times.items():
                    print(f"| {name} | {seconds:.3f} | {seconds / anchor:.2f} |")
            if "fit" in args.sections:
                results = fits(data, args.k, metric)
                anchor_s, anchor_obj, _ = results["sklearn KMeans(n_init=1)"]
                print("\n| fit | s | / sklearn s | objective / sklearn's | |\n|---|---|---|---|---|")
                for name, (seconds, value, note) in results.items():
                    print(f"| {name} | {seconds:.1f} | {seconds / anchor_s:.2f} | "
                          f"{value / anchor_obj:.4f} | {note} |")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
