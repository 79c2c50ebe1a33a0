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
scatter).  Then (``--kernel-rows``) the whole kernel over a block of such rows, step
by step (the driver's loop cut after each step), beside the kernel itself at T = 1
and at T = 0.  No result file: a diagnostic.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numba as nb
import numpy as np

from dask_softkmeans.kernels import block_statistics, compiled
from dask_softkmeans.kernels.common import LOGIT_FLOOR
from dask_softkmeans.kernels.compiled import _soft
from dask_softkmeans.kernels.compiled._chunk import first_product, prepare_chunk
from dask_softkmeans.kernels.compiled._hard import exact_rows, one_hot_test
from dask_softkmeans.kernels.compiled._math import DRIVER, FASTMATH, product_into
from dask_softkmeans.kernels.compiled._nearest import nearest_centers
from dask_softkmeans.kernels.compiled._plan import (
    BAD_ROWS,
    SWEEP_EQUAL,
    SWEEP_GAP,
    SWEEP_LLOYD,
    allocate,
    make_plan,
)
from dask_softkmeans.kernels.fused import chunk_rows


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
    no_directions, no_moments = np.zeros((0, dim)), np.zeros(0)  # no moments in these passes
    for t in range(chunks):
        g[:] = dist[t]
        am = amax[t]
        if stage >= 5:  # the sparse route: the compare and marks, then (6) the marked rows
            _soft._mark_above(g, am, log_priors, 1.0, np.log(_soft._NEGLIGIBLE_32), marks, su)
            if stage >= 6:
                _soft._sparse_rows(g, marks, (am, -am, -am, w), (z, su, sd), log_priors, 1.0,
                                   1.0, totals)
                _soft._scatter(g, xs[t], marks, z, counts, sums, no_directions, counts,
                               counts, no_moments)
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


@nb.njit(**DRIVER)
def _kernel_steps(x, weights, centers, settings, out, stage):  # pragma: no cover - compiled
    """The driver's loop (:func:`._driver.soft_block`) for blocks whose chunks are all
    soft (equal priors, no moments), cut after ``stage``: 0 the chunk's rows and the first
    product, 1 the nearest centers, 2 the exact nearest distances and the one-hot test,
    3 the compare and marks of the sparse route (the chunks after a gap sweep, one in
    nine, whose distances come in the soft path, take all of it here), 4 the whole soft
    path.  Returns the chunks that were soft as a whole, and all chunks."""
    n, dim = x.shape
    k = centers.work.shape[0]
    plan = make_plan(n, dim, centers.work.itemsize == 4, settings, centers.log_priors)
    work, rows, wrows, _ = allocate(x, centers, plan)
    totals = np.zeros(out.scalars.size)
    log_priors, all_rows, abs_centers = centers.log_priors, work.all_rows, work.abs_centers
    untested = 0
    soft = 0
    chunks = 0
    log_cut = np.log(max(plan.e_cut, _soft._NEGLIGIBLE_32))
    for start in range(0, n, plan.chunk):
        m = min(plan.chunk, n - start)
        chunks += 1
        sweep = SWEEP_GAP if plan.sweep == SWEEP_EQUAL and untested == 0 else plan.sweep
        lean = sweep == SWEEP_LLOYD or sweep == SWEEP_GAP
        totals[BAD_ROWS] += prepare_chunk(x, weights, start, m, work, not lean, rows.norms,
                                          rows.weight)
        g = work.g[: k * m].reshape((k, m))
        first_product(work, centers.work, plan.product, m, g)
        if stage >= 1:
            nearest_centers(sweep, g, m, centers, plan, rows, wrows)
        if stage >= 2:
            if not lean:
                exact_rows(x, start, all_rows, m, rows.weight, rows, abs_centers,
                           out.hard_counts, totals)
            n_soft, untested = one_hot_test(sweep, g, m, log_priors, plan, rows, untested)
            if lean and n_soft:
                exact_rows(x, start, all_rows, m, rows.weight, rows, abs_centers,
                           out.hard_counts, totals)
            soft += 1 if n_soft == m else 0
        if stage == 3 and sweep != SWEEP_GAP:
            marks = work.marks[: ((k + 63) >> 6) * m]
            _soft._mark_above(g, rows.amax, log_priors, plan.temperature, log_cut, marks, rows.su)
        elif stage >= 3:
            _soft.soft_chunk(g, m, work.xw, sweep == SWEEP_GAP, centers, plan, work, rows, wrows,
                             out, totals)
    return soft, chunks


def kernel_steps(x: np.ndarray, centers: np.ndarray, temperature: float, repeats: int) -> None:
    """The whole kernel over a soft block, one thread, step by step, beside the kernel
    itself (``block_statistics``) at ``temperature`` and at T = 0: ns per row, minimum
    over the repeats, taken in turns."""
    from threadpoolctl import threadpool_limits

    k, d = centers.shape
    offset = centers.mean(0).astype(x.dtype).astype(np.float64)
    rel = centers - offset
    work = rel.astype(x.dtype)
    kernel_centers = compiled.Centers(offset=offset, rel=rel, work=work,
                                      norms=np.einsum("ij,ij->i", work, work, dtype=np.float64),
                                      log_priors=np.zeros(k), directions=np.zeros((0, d)))
    settings = compiled.Settings(temperature=temperature, floor=float(LOGIT_FLOOR),
                                 moments=compiled.MOMENTS_NONE, removal=False,
                                 chunk=int(chunk_rows(k, d)))

    def outputs() -> compiled.Outputs:
        return compiled.Outputs(np.zeros(k), np.zeros((k, d)), np.zeros(k), np.zeros(k),
                                np.zeros(0), np.zeros(len(compiled.TOTALS)), np.empty(0, np.int32))

    runs = {f"steps to {s}": (lambda s=s: _kernel_steps(x, np.empty(0), kernel_centers, settings,
                                                          outputs(), s)) for s in range(5)}
    runs["kernel"] = lambda: block_statistics(x, centers, temperature, offset=offset)
    runs["kernel, T = 0"] = lambda: block_statistics(x, centers, 0.0, offset=offset)
    with threadpool_limits(1):
        soft, chunks = _kernel_steps(x, np.empty(0), kernel_centers, settings, outputs(), 4)
        times: dict[str, list[float]] = {name: [] for name in runs}
        for func in runs.values():
            func()
        for _ in range(repeats):
            for name, func in runs.items():
                start = time.perf_counter()
                func()
                times[name].append(time.perf_counter() - start)
    n = len(x)
    print(f"\nThe whole kernel, {n} x {d} float32, K = {k}, T = {temperature:g}, one thread "
          f"({soft} of {chunks} chunks soft as a whole; cumulative ns per row):\n")
    print("| rows, first product | + nearest | + exact nearest, one-hot test | "
          "+ compare, marks | + soft path (whole kernel's loop) | kernel | kernel at T = 0 |")
    print("|---|---|---|---|---|---|---|")
    print("| " + " | ".join(f"{min(t) * 1e9 / n:.1f}" for t in times.values()) + " |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clusters", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--features", type=int, default=32)
    parser.add_argument("--chunks", type=int, default=100)
    parser.add_argument("--chunk-rows", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--kernel-rows", type=int, default=200_000,
                        help="rows of the whole kernel's steps (0: skip them)")
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
    if args.kernel_rows:
        k, d = args.clusters[0], args.features
        rng = np.random.default_rng(k)
        c = rng.normal(size=(k, d))
        x = (c[rng.integers(k, size=args.kernel_rows)]
             + rng.standard_normal((args.kernel_rows, d))).astype(np.float32)
        kernel_steps(x, c, 1.0, args.repeats)


if __name__ == "__main__":
    main()
