"""A pass against the number of blocks, streamed against persisted, and the parts of a pass's cost.

On a LocalCluster of worker processes (default 2 x 1 thread), for float32 Gaussian blobs
(default 1M x 64, K = 256, the statistics pass at T = 1):

1. persisted passes over the same data cut into few and many blocks (default 16 and
   2048), with the bytes of node sums the client received per pass: each worker holds a
   contiguous run of blocks and sends the sums of the largest reduction-tree nodes it
   holds, so the bytes do not grow with the blocks;
2. a streamed pass (``persist=False``, Zarr chunks read and decoded at every pass) against
   the persisted pass over the same 16 blocks;
3. the cost model of a pass (``docs/guide/scale.md`` extrapolates it): the kernel alone in
   one thread (ns per row and cluster), the fixed cost of a pass over almost no data, and
   the bytes read per pass.

Passes of the configurations alternate, and each time is the median of ``--passes``.

    python benchmarks/blocks.py
    python benchmarks/blocks.py --n-samples 200000 --blocks 16 256 --passes 5   # quicker
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import dask.array as da
import numpy as np
from _results import add_results_option, recorded
from distributed import Client, LocalCluster

from dask_softkmeans import datasets
from dask_softkmeans.engine import Runner, single_threaded_blas
from dask_softkmeans.inputs import as_data
from dask_softkmeans.kernels import PassParams, pass_statistics


def _median_passes(runners: dict[str, Runner], params: PassParams, passes: int) -> dict[str, float]:
    """Median seconds per pass of each runner, passes interleaved (the same load for all)."""
    for runner in runners.values():
        runner.statistics(params)  # warm-up: holders made, pages touched
        runner.statistics(params)
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(passes):
        for name, runner in runners.items():
            start = time.perf_counter()
            runner.statistics(params)
            times[name].append(time.perf_counter() - start)
    return {name: float(np.median(t)) for name, t in times.items()}


def _kernel_ns(x: np.ndarray, params: PassParams, repeats: int = 5) -> float:
    """Nanoseconds per row and cluster of the block kernel alone, one thread, best of repeats."""
    with single_threaded_blas():
        pass_statistics(x, None, params)
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            pass_statistics(x, None, params)
            best = min(best, time.perf_counter() - start)
    return best / (x.shape[0] * params.shape[0]) * 1e9


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-samples", type=int, default=1_000_000)
    parser.add_argument("--n-features", type=int, default=64)
    parser.add_argument("--k", type=int, default=256)
    parser.add_argument("--blocks", type=int, nargs="+", default=[16, 2048])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--passes", type=int, default=7)
    add_results_option(parser)
    args = parser.parse_args(argv)
    with recorded("blocks", args.results_dir), tempfile.TemporaryDirectory() as tmp:
        _run(args, Path(tmp))


def _run(args: argparse.Namespace, tmp: Path) -> None:
    n, d, k = args.n_samples, args.n_features, args.k
    few = min(args.blocks)
    path = tmp / "blobs.zarr"
    datasets.write_blobs(path, n, d, k, chunk_rows=-(-n // few), random_state=0)
    rng = np.random.default_rng(1)
    centers = rng.normal(size=(k, d)) * 3
    params = PassParams(centers, 1.0, offset=np.zeros(d))
    vector_bytes = 8 * (k * d + 2 * k + k + 8)
    print(f"{n:,} x {d} float32 ({n * d * 4 / 2**20:.0f} MiB), K = {k}, "
          f"{args.workers} workers x 1 thread, one block's statistics {vector_bytes / 1024:.0f} KiB")

    with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster):
        source = as_data(str(path / "X"))
        runners = {f"persisted, {b} blocks": Runner(source.rechunk({0: -(-n // b)}), persist=True)
                   for b in sorted(args.blocks)}
        runners[f"streamed, {few} blocks"] = Runner(source, persist=False)
        seconds = _median_passes(runners, params, args.passes)
        print("\n| pass | blocks | s per pass (median) | bytes to the client per pass |")
        print("|---|---|---|---|")
        for name, runner in runners.items():
            print(f"| {name.split(',')[0]} | {runner.n_blocks} | {seconds[name]:.3f} | "
                  f"{runner.bytes_received:,} |")
        many = max(args.blocks)
        base = seconds[f"persisted, {few} blocks"]
        print(f"\npersisted {many} blocks / {few} blocks: "
              f"{seconds[f'persisted, {many} blocks'] / base:.2f} (target <= 1.25)")
        print(f"streamed / persisted, {few} blocks: "
              f"{seconds[f'streamed, {few} blocks'] / base:.2f} (target <= 1.3)")

        tiny = Runner(da.ones((64, d), chunks=(32, d), dtype=np.float32), persist=True)
        fixed = _median_passes({"tiny": tiny}, params, args.passes)["tiny"]
    block = np.asarray(source[: -(-n // few)])
    ns = _kernel_ns(block, params)
    print("\n## Cost model of a pass")
    print(f"- kernel alone, one thread: {ns:.3f} ns per row and cluster "
          f"({ns / d * 1e3:.1f} ps per row, cluster and feature)")
    print(f"- fixed cost of a pass (64 rows, persisted): {fixed * 1e3:.1f} ms")
    print(f"- bytes read per streamed pass: {n * d * 4:,} (each Zarr chunk once)")
    compute = n * k * ns * 1e-9 / args.workers
    print(f"- predicted persisted pass: fixed + N K c / workers = "
          f"{(fixed + compute):.3f} s; measured {base:.3f} s")


if __name__ == "__main__":
    main()
