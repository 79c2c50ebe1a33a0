"""A soft pass whose rows really are soft, against scikit-learn's Lloyd iteration.

Run from the repository root::

    python benchmarks/soft_pass.py                      # 1M x 32 and 8M x 32, K = 32
    python benchmarks/soft_pass.py --rows 1000000 --repeats 12

The data: K = 32 Gaussian blobs of unit noise whose centers have unit spread
(each coordinate N(0, 1)), float32, made block by block from a seed as in
``throughput.py`` (in this process's memory for scikit-learn, persisted on a
``LocalCluster`` of 2 single-threaded worker processes for ours).  At T = 1
nearly every row of these blobs is soft (its second-largest logit is above the
logit floor), but most of a row's responsibilities are negligible: the script
reports both (on a sample, in float64), and the same for blobs whose centers
fill a box of side ``2 K^(1/D) 6``, which at T = 1 are one-hot (the hard path,
``throughput.py``'s pass).

Timed in turns (``throughput.interleaved_medians``): ours,
``soft_statistics(X, C, 1.0)`` on the persisted array, and scikit-learn's Lloyd
iteration (``lloyd_iter_chunked_dense`` on both cores, as ``throughput.py``
times it), from the true centers, and ours at T = 0 (the one-hot pass) on the same
array.  The ratio of the medians is the target; the machine is shared, so the load
average before and after each shape is printed, and the soft pass over our own T = 0
pass, a ratio of two runs of one kernel on the same workers, is printed beside.
With ``--kernel`` the block kernel alone is timed too, on the in-memory rows, one
thread, BLAS on one thread, against scikit-learn's iteration on one thread and
against itself at T = 0.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from functools import partial
from typing import Any

import dask
import dask.array as da
import numpy as np
from _results import add_results_option, recorded
from throughput import BLOCKS_PER_WORKER, block_rows, cluster, interleaved_medians, make_block

from dask_softkmeans import soft_statistics
from dask_softkmeans.kernels import block_statistics

N_CLUSTERS, N_FEATURES, TEMPERATURE = 32, 32, 1.0


def unit_centers(d: int, k: int, seed: int = 0) -> np.ndarray:
    """Blob centers with unit spread: every coordinate N(0, 1)."""
    return np.random.default_rng([seed, d, k, 7]).normal(size=(k, d))


def box_centers(d: int, k: int, seed: int = 0) -> np.ndarray:
    """Blob centers uniform in a box of side ``2 k^(1/d) 6``."""
    half = k ** (1 / d) * 6
    return np.random.default_rng([seed, d, k, 8]).uniform(-half, half, size=(k, d))


def softness(x: np.ndarray, centers: np.ndarray, temperature: float, floor: float = -60.0,
             negligible: float = 1e-12) -> tuple[float, float, float]:
    """The fraction of rows that are not one-hot (second-largest shifted logit above the
    floor), the mean number of responsibilities per row above ``negligible`` of the row's
    largest, and above the floor; float64, equal priors."""
    x64 = x.astype(np.float64)
    d = (x64 * x64).sum(1)[:, None] + (centers * centers).sum(1)[None] - 2 * x64 @ centers.T
    u = -(d - d.min(1, keepdims=True)) / temperature
    second = np.sort(u, axis=1)[:, -2]
    return (float((second > floor).mean()), float((u > np.log(negligible)).sum(1).mean()),
            float((u > floor).sum(1).mean()))


def build(n: int, centers: np.ndarray, client: Any, n_workers: int) -> tuple[np.ndarray, da.Array]:
    """The rows in memory here and persisted on the workers (made there, the same numbers)."""
    sizes = block_rows(n, BLOCKS_PER_WORKER * n_workers)
    d = centers.shape[1]
    here = np.concatenate([make_block(i, r, centers) for i, r in enumerate(sizes)])
    parts = [da.from_delayed(dask.delayed(make_block)(i, r, centers), (r, d), np.float32)
             for i, r in enumerate(sizes)]
    persisted = client.persist(da.concatenate(parts))
    from distributed import wait

    wait(persisted)
    return here, persisted


def sklearn_iteration(x: np.ndarray, centers: np.ndarray, threads: int | None) -> Any:
    """One iteration of scikit-learn's Lloyd loop (its private loop body), as
    ``throughput.py`` times it; ``threads`` None: all cores."""
    from sklearn.cluster._k_means_lloyd import lloyd_iter_chunked_dense
    from sklearn.utils._openmp_helpers import _openmp_effective_n_threads

    c = centers.astype(x.dtype)
    new, weight_in = np.empty_like(c), np.empty(len(c), x.dtype)
    labels, shift = np.empty(len(x), np.int32), np.empty(len(c), x.dtype)
    sw = np.ones(len(x), x.dtype)
    n_threads = threads or _openmp_effective_n_threads()
    return lambda: lloyd_iter_chunked_dense(x, sw, c, new, weight_in, labels, shift, n_threads)


def load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def kernel_alone(x: np.ndarray, centers: np.ndarray, repeats: int) -> dict[str, float]:
    """The block kernel on the in-memory rows (one thread) and scikit-learn's iteration on
    one thread, in turns; BLAS is on one thread (threadpoolctl)."""
    from threadpoolctl import threadpool_limits

    offset = centers.mean(0)
    with threadpool_limits(1):
        return interleaved_medians(
            {"kernel": partial(block_statistics, x, centers, TEMPERATURE, offset=offset),
             "sklearn_1": sklearn_iteration(x, centers, 1),
             "kernel_hard": partial(block_statistics, x, centers, 0.0, offset=offset)}, repeats)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 8_000_000])
    parser.add_argument("--repeats", type=int, default=8, help="timed runs per median")
    parser.add_argument("--kernel", action="store_true",
                        help="also the block kernel alone against scikit-learn on one thread")
    add_results_option(parser)
    args = parser.parse_args(argv)
    with recorded("soft_pass", args.results_dir, argv):
        _run(args, argv)


def _run(args: argparse.Namespace, argv: list[str] | None) -> None:
    print("command: python benchmarks/soft_pass.py " + " ".join(sys.argv[1:] if argv is None
                                                                 else argv))
    d, k = N_FEATURES, N_CLUSTERS
    centers = unit_centers(d, k)
    sample = make_block(0, 20_000, centers)
    box = box_centers(d, k)
    print("\n| blobs (K = 32, 32-D, unit noise), T = 1 | rows not one-hot | "
          "responsibilities > 1e-12 of the row's largest, per row | above the floor, per row |")
    print("|---|---|---|---|")
    for name, c in (("centers of unit spread (this benchmark)", centers),
                    ("centers in a box of side 2 K^(1/D) 6", box)):
        hot, big, above = softness(make_block(0, 20_000, c), c, TEMPERATURE)
        print(f"| {name} | {hot:.3f} | {big:.2f} | {above:.2f} |")
    del sample
    rows = []
    lc, client = cluster(2)
    try:
        for n in args.rows:
            before = load()
            x, X = build(n, centers, client, 2)
            turns = {"ours": partial(soft_statistics, X, centers, TEMPERATURE),
                     "sklearn": sklearn_iteration(x, centers, None),
                     "ours_hard": partial(soft_statistics, X, centers, 0.0)}
            start = time.perf_counter()
            row = interleaved_medians(turns, args.repeats)
            row.update(shape=f"{n / 1e6:g}M x {d}, K={k}", seconds=time.perf_counter() - start,
                       load=f"{before} / {load()}")
            if args.kernel:
                row.update(kernel_alone(x, centers, max(args.repeats // 2, 3)))
            rows.append(row)
            print(f"{row['shape']}: ours {row['ours']:.3f} s, sklearn {row['sklearn']:.3f} s, "
                  f"ratio {row['ours'] / row['sklearn']:.2f}, ours at T = 0 {row['ours_hard']:.3f} s "
                  f"(load {row['load']})", flush=True)
            client.cancel(X)
            del x, X
    finally:
        client.close()
        lc.close()
    print("\n| shape | ours, soft pass (T = 1), s | sklearn Lloyd iteration, s | ours / sklearn"
          " | ours at T = 0, s | soft / T = 0"
          + (" | kernel alone, s | sklearn 1 thread, s | kernel / sklearn 1 thread"
             " | kernel at T = 0, s | kernel soft / T = 0" if args.kernel else "")
          + " | load average before / after |")
    print("|---|---|---|---|---|---" + ("|---|---|---|---|---" if args.kernel else "") + "|---|")
    for r in rows:
        extra = (f" | {r['kernel']:.3f} | {r['sklearn_1']:.3f} | {r['kernel'] / r['sklearn_1']:.2f}"
                 f" | {r['kernel_hard']:.3f} | {r['kernel'] / r['kernel_hard']:.2f}"
                 if args.kernel else "")
        print(f"| {r['shape']} | {r['ours']:.3f} | {r['sklearn']:.3f} | "
              f"**{r['ours'] / r['sklearn']:.2f}** | {r['ours_hard']:.3f} | "
              f"{r['ours'] / r['ours_hard']:.2f}{extra} | {r['load']} |")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
