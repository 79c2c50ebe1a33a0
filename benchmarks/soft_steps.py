"""Where the soft path's time goes: the kernel's own steps over chunks of rows, one thread.

Run from the repository root::

    python benchmarks/soft_steps.py                    # K = 32 and 128, 32 features
    python benchmarks/soft_steps.py --clusters 32 --features 64

Float32 rows of unit-spread blobs (``soft_pass.py``'s data; T = 1), their distances
computed once in NumPy and cut into chunks as the kernel holds them (K, rows): 128
rows (``--chunk-rows``), the kernel's chunk for float32 rows of up to 64 features.
Cumulative ns per row, minimum over the repeats, taken in turns.  The dense route:
copying the distances in, then :func:`_soft._exp_sweep` (``exp`` of all K logits),
:func:`_soft._row_totals`, :func:`_soft._drop_floor`, and the soft sums as the second
product (BLAS, one thread, then added to the float64 sums).  The sparse route, which
the kernel takes where at most one logit in eight is above the cut: copying in and
:func:`_soft._mark_above` (one compare per logit, the bit marks), then
:func:`_soft._sparse_rows` (``exp`` of the marked logits, the row totals, the
scatter).  No result file: a diagnostic.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numba as nb
import numpy as np

from dask_softkmeans.kernels.compiled import _soft
from dask_softkmeans.kernels.compiled._math import FASTMATH, product_into


@nb.njit(fastmath=FASTMATH)
def _steps(dist, amax, xs, stage):  # pragma: no cover - compiled
    chunks, k, m = dist.shape
    dim = xs.shape[2]
    g = np.empty((k, m), np.float32)
    z, su, sd, w = np.zeros(m), np.zeros(m), np.zeros(m), np.ones(m)
    counts, totals, sums = np.zeros(k), np.zeros(7), np.zeros((k, dim))
    s_work = np.empty((k, dim), np.float32)
    marks = np.zeros(((k + 63) // 64) * m, np.int64)
    log_priors = np.zeros(k)
    for t in range(chunks):
        g[:] = dist[t]
        am = amax[t]
        if stage >= 5:  # the sparse route: the compare and marks, then (6) the marked rows
            _soft._mark_above(g, am, log_priors, 1.0, np.log(_soft._NEGLIGIBLE_32), marks, su)
            if stage >= 6:
                _soft._sparse_rows(g, xs[t], marks, (am, -am, -am, w), log_priors, 1.0, 1.0,
                                   counts, sums, totals)
            continue
        if stage >= 1:
            _soft._exp_sweep(g, am, z, su, sd, log_priors, 1.0, 1.0, -60.0)
        if stage >= 2:
            _soft._row_totals(m, am, -am, -am, w, z, su, sd, 1.0, totals)
        if stage >= 3:
            _soft._drop_floor(g, z, _soft._NEGLIGIBLE_32, counts)
        if stage >= 4:
            product_into(g, xs[t], s_work)
            for c in range(k):
                for j in range(dim):
                    sums[c, j] += np.float64(s_work[c, j])
    return totals[0] + counts[0] + sums[0, 0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clusters", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--features", type=int, default=32)
    parser.add_argument("--chunks", type=int, default=100)
    parser.add_argument("--chunk-rows", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"command: python benchmarks/soft_steps.py --clusters {' '.join(map(str, args.clusters))} "
          f"--features {args.features} --chunk-rows {args.chunk_rows}; load average {load}")
    print("\n| K | rows per chunk | nonzero per row | copy | + exp sweep | + row totals | + drop floor | "
          "+ second product | sparse: copy, compare, marks | + marked rows |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for k in args.clusters:
        rng = np.random.default_rng(k)
        d = args.features
        c = rng.normal(size=(k, d))
        rows = args.chunk_rows
        n = rows * args.chunks
        x = c[rng.integers(k, size=n)] + rng.standard_normal((n, d))
        dist = ((x[:, None, :] - c[None]) ** 2).sum(-1)
        u = -(dist - dist.min(1, keepdims=True))
        nonzero = float((np.exp(np.maximum(u, -60.0)) > _soft._NEGLIGIBLE_32).sum(1).mean())
        chunked = np.ascontiguousarray(dist.astype(np.float32).reshape(-1, rows, k).transpose(0, 2, 1))
        amax = np.ascontiguousarray(-dist.astype(np.float32).min(1).astype(np.float64).reshape(-1, rows))
        xs = np.ascontiguousarray(x.astype(np.float32).reshape(-1, rows, d))
        runs = list(range(7))
        for s in runs:
            _steps(chunked, amax, xs, s)
        times: list[list[float]] = [[] for _ in runs]
        for _ in range(args.repeats):
            for r, s in enumerate(runs):
                start = time.perf_counter()
                _steps(chunked, amax, xs, s)
                times[r].append(time.perf_counter() - start)
        cells = " | ".join(f"{min(t) * 1e9 / n:.1f}" for t in times)
        print(f"| {k} | {rows} | {nonzero:.1f} | {cells} |", flush=True)


if __name__ == "__main__":
    main()
