"""Streamed against persisted passes, and the decode speed of the compressors we can write.

For each compressor, writes Gaussian blobs to Zarr with ``write_blobs``, measures how fast
one thread reads (decodes) the whole array, through zarr and as a pass reads it
(``io.read_rows``, straight from the chunk files), then times soft passes (the fit's statistics pass,
K clusters at T = 1) on a LocalCluster: streamed from the store (``persist=False``: every
pass reads and decodes each chunk once) and persisted (``persist=True``: the blocks sit in
the workers' memory).  The target is a streamed pass at most 1.5x a persisted one.  The store
lies in the OS page cache after writing, so "streamed" measures decode + Dask, not the disk.

    python benchmarks/out_of_core.py [--n-samples 2000000 --n-features 32 --k 32 --passes 5]
    python benchmarks/out_of_core.py --mmap-threshold-mib 64
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from pathlib import Path

import dask
import numpy as np
import zarr
from _results import add_results_option, recorded
from distributed import Client, LocalCluster

from dask_softkmeans import datasets, io
from dask_softkmeans.engine import Runner
from dask_softkmeans.inputs import as_data
from dask_softkmeans.kernels import PassParams


def _directory_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _read_speeds(array: zarr.Array) -> tuple[float, float]:
    """MB/s of one thread reading (decoding) every chunk into memory, best of 3: through
    zarr (``array[a:b]``), and as a pass reads it (``io.read_rows``: from the chunk files)."""
    speeds = []
    for read in (lambda a, b: array[a:b], lambda a, b: io.read_rows(array, a, b)):
        best = float("inf")
        with zarr.config.set({"async.concurrency": 1, "threading.max_workers": 1}):
            for _ in range(3):
                start = time.perf_counter()
                for i in range(0, array.shape[0], array.chunks[0]):
                    read(i, i + array.chunks[0])
                best = min(best, time.perf_counter() - start)
        speeds.append(array.nbytes / best / 1e6)
    return speeds[0], speeds[1]


def _pass_seconds(runners: list[Runner], centers: np.ndarray, passes: int) -> list[float]:
    """Median seconds per pass of each runner, passes interleaved so that both see the same load."""
    for runner in runners:
        runner.statistics(PassParams(centers, 1.0))  # warm-up: imports and first compilation on the workers
    times: list[list[float]] = [[] for _ in runners]
    for _ in range(passes):
        for runner, runner_times in zip(runners, times, strict=True):
            start = time.perf_counter()
            runner.statistics(PassParams(centers, 1.0))
            runner_times.append(time.perf_counter() - start)
    return [float(np.median(t)) for t in times]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-samples", type=int, default=2_000_000)
    parser.add_argument("--n-features", type=int, default=32)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--chunk-rows", type=int, default=65_536)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--passes", type=int, default=5)
    parser.add_argument("--compressors", default="blosc-lz4,zstd,none")
    parser.add_argument(
        "--mmap-threshold-mib", type=int, default=0,
        help="Set MALLOC_MMAP_THRESHOLD_ in the workers' environment (0: Dask's default "
             "environment, whose MALLOC_TRIM_THRESHOLD_ makes glibc mmap, fault in and unmap "
             "every buffer of a block, which slows decoding).")
    add_results_option(parser)
    args = parser.parse_args(argv)
    with recorded("out_of_core", args.results_dir, argv):
        _run(args, argv)


def _run(args: argparse.Namespace, argv: list[str] | None) -> None:
    environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ"))
    if args.mmap_threshold_mib:
        environ["MALLOC_MMAP_THRESHOLD_"] = str(args.mmap_threshold_mib * 2**20)

    command = " ".join(["python benchmarks/out_of_core.py",
                        shlex.join(sys.argv[1:] if argv is None else argv)]).strip()
    rows = []
    with tempfile.TemporaryDirectory() as tmp, dask.config.set(
        {"distributed.nanny.pre-spawn-environ": environ}
    ), LocalCluster(
        n_workers=args.workers, threads_per_worker=1, dashboard_address=None
    ) as cluster, Client(cluster):
        for name in args.compressors.split(","):
            path = Path(tmp) / f"{name}.zarr"
            start = time.perf_counter()
            group = datasets.write_blobs(path, args.n_samples, args.n_features, args.k,
                                   chunk_rows=args.chunk_rows, compressor=name)
            write_seconds = time.perf_counter() - start
            x = group["X"]
            ratio = x.nbytes / _directory_bytes(path / "X")
            decode = _read_speeds(x)
            centers = group["centers"][:]
            runners = [Runner(as_data(x), persist=False), Runner(as_data(x), persist=True)]
            streamed, persisted = _pass_seconds(runners, centers, args.passes)
            del runners
            rows.append((name, write_seconds, ratio, decode, streamed, persisted))

    print(f"{args.n_samples} x {args.n_features} float32 "
          f"({args.n_samples * args.n_features * 4 / 1e6:.0f} MB), K={args.k}, "
          f"{args.workers} workers x 1 thread, median of {args.passes} interleaved passes, "
          f"MALLOC_MMAP_THRESHOLD_={environ.get('MALLOC_MMAP_THRESHOLD_', 'unset')}\n")
    print("| compressor | write s | ratio | 1-thread read MB/s, zarr | same, from the chunk files "
          "| streamed pass s | persisted pass s | streamed / persisted |")
    print("|---|---|---|---|---|---|---|---|")
    for name, write_seconds, ratio, (zarr_read, direct), streamed, persisted in rows:
        print(f"| {name} | {write_seconds:.2f} | {ratio:.3f} | {zarr_read:.0f} | {direct:.0f} "
              f"| {streamed:.3f} | {persisted:.3f} | {streamed / persisted:.2f} |")
    print(f"\ncommand: {command}")


if __name__ == "__main__":
    main()
