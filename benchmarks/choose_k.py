"""Choosing K: the annealing's phase diagram against scikit-learn's usual ways, in one run.

Run from the repository root::

    python benchmarks/choose_k.py                       # all sets
    python benchmarks/choose_k.py --sets s1 r15 blobs2

For every set: dask-softkmeans ``SoftKMeans(n_clusters="auto", max_clusters=M)``
(K read from the phase diagram: the count that holds over the widest range of
``log T``), the best silhouette of ``KMeans(n_init=10)`` over K = 2..M, and
the lowest BIC of ``GaussianMixture`` over K = 1..M; the K each chose, whether
it is the reference K, and its seconds.  ``M`` is twice the reference K.
The silhouette runs on a 3000-row subsample (seeded) when the set is larger.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _results import add_results_option, recorded
from quality import DEFAULT_DATA, load
from sklearn.cluster import KMeans
from sklearn.datasets import make_blobs
from sklearn.metrics import silhouette_score
from sklearn.mixture import GaussianMixture

from dask_softkmeans import SoftKMeans

SIPU = ["s1", "r15", "unbalance", "a1", "d31"]
BLOBS = {f"blobs{d}": d for d in (2, 4, 8, 16)}


def dataset(name: str) -> tuple[np.ndarray, int]:
    if name in BLOBS:
        x, y = make_blobs(4000, n_features=BLOBS[name], centers=10, cluster_std=1.0,
                          center_box=(-40, 40), random_state=BLOBS[name])
        return x, 10
    x, y = load(name, DEFAULT_DATA)
    return x, len(np.unique(y))


def by_silhouette(x: np.ndarray, most: int) -> int:
    rows = np.random.default_rng(0).permutation(len(x))[:3000]
    scores = {k: silhouette_score(x[rows], KMeans(k, n_init=10, random_state=0)
                                  .fit(x).predict(x[rows])) for k in range(2, most + 1)}
    return max(scores, key=scores.get)


def by_bic(x: np.ndarray, most: int) -> int:
    scores = {k: GaussianMixture(k, random_state=0).fit(x).bic(x) for k in range(1, most + 1)}
    return min(scores, key=scores.get)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sets", nargs="+", default=SIPU + list(BLOBS))
    add_results_option(parser)
    args = parser.parse_args()
    with recorded("choose_k", args.results_dir):
        print(f"{'set':10s} {'K':>3s} {'M':>3s} | {'method':11s} {'chosen':>6s} {'right':>5s} "
              f"{'seconds':>8s}")
        right = {"annealing": 0, "silhouette": 0, "bic": 0}
        for name in args.sets:
            x, k = dataset(name)
            most = 2 * k
            methods = {
                "annealing": lambda x=x, most=most: SoftKMeans(
                    "auto", max_clusters=most).fit(x).n_clusters_,
                "silhouette": lambda x=x, most=most: by_silhouette(x, most),
                "bic": lambda x=x, most=most: by_bic(x, most),
            }
            for method, choose in methods.items():
                start = time.perf_counter()
                chosen = choose()
                seconds = time.perf_counter() - start
                right[method] += chosen == k
                print(f"{name:10s} {k:3d} {most:3d} | {method:11s} {chosen:6d} "
                      f"{'yes' if chosen == k else 'no':>5s} {seconds:8.2f}", flush=True)
        print("right K: " + ", ".join(f"{m} {n}/{len(args.sets)}" for m, n in right.items()))


if __name__ == "__main__":
    main()
