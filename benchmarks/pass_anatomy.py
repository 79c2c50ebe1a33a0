"""Where the time of a pass on a ``LocalCluster`` goes, and what distributed costs at rest.

For each configuration (distributed's defaults and the lightened diagnostics that
``dask-softkmeans fit`` starts its own cluster with, ``dask_softkmeans.launch``; in the
order defaults, light, light, defaults), on a cluster of single-threaded worker
processes holding persisted Gaussian blobs:

1. **At rest**: CPU time per second of the client's process (which holds the
   scheduler and the nannies) and of each worker, over ``--idle`` seconds of nothing.
2. **A pass**: ``soft_statistics(X, C, T=1)`` repeated ``--passes`` times.  Each
   worker logs the start, wall time and thread CPU time of its block holder's call
   (``BlockHolder.run``, wrapped on the workers for this benchmark); the clocks are
   the machine's monotonic clock, shared by the processes.  Medians over the passes:

   - ``pass``: the call of ``soft_statistics``, as the caller sees it;
   - ``to workers``: until the later of the workers starts its share;
   - ``kernel CPU``: the holder's thread CPU time (mean of the workers; then per
     worker, whose difference is part of the wait for the slower worker);
   - ``off core``: the holder's wall time minus its CPU time (the thread waiting
     for a core that other threads and processes hold), mean of the workers;
   - ``slower worker``: how much later the last worker finished than the first;
   - ``back``: from the last worker's end until the caller has the result;
   - CPU time per second of each process while the passes ran.

3. **The kernel alone** (``--workers`` 2 only): the same block kernel over the same
   blocks with no Dask at all, by one process over all of them and by two processes
   over half of them each, started together (a pass ends when the slower one ends),
   in turns: one pass of the one, one of the two, ``--passes`` times; one thread each,
   BLAS on one thread.  The speed-up is what the machine gives two single-threaded
   processes at that moment: the ceiling of the 2-workers-against-1 speed-up before
   any of distributed's costs.

Run from the repository root::

    python benchmarks/pass_anatomy.py                     # 8M x 32, K=32, 2 workers
    python benchmarks/pass_anatomy.py --rows 2000000 --workers 1
    python benchmarks/pass_anatomy.py --kernel-only       # part 3 alone
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import add_results_option, recorded
from throughput import (
    BLOCKS_PER_WORKER,
    block_rows,
    build,
    cluster,
    make_block,
    start_centers,
    true_centers,
)

from dask_softkmeans import soft_statistics
from dask_softkmeans.launch import LIGHT_DIAGNOSTICS


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux ``/proc``)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_rates(pids: list[int], seconds: float | None = None,
              during: Any = None) -> tuple[list[float], float]:
    """CPU milliseconds per second of each process, over ``seconds`` of rest or ``during()``."""
    before, start = [cpu_seconds(p) for p in pids], time.perf_counter()
    if during is None:
        time.sleep(seconds)
    else:
        during()
    wall = time.perf_counter() - start
    return [(cpu_seconds(p) - b) / wall * 1e3 for p, b in zip(pids, before, strict=True)], wall


def _log_holder_calls() -> None:
    """On a worker: record (start, wall, thread CPU) of every block holder's call."""
    from dask_softkmeans.engine.holders import BlockHolder

    if hasattr(BlockHolder, "calls"):
        return
    run = BlockHolder.run
    calls: list[tuple[float, float, float]] = []

    def logged(self: Any, task: Any, params: Any) -> Any:
        start, cpu = time.perf_counter(), time.thread_time()
        try:
            return run(self, task, params)
        finally:
            calls.append((start, time.perf_counter() - start, time.thread_time() - cpu))

    BlockHolder.run = logged
    BlockHolder.calls = calls


def _holder_calls() -> list[tuple[float, float, float]]:
    from dask_softkmeans.engine.holders import BlockHolder

    return list(BlockHolder.calls)


def anatomy(rows: int, features: int, k: int, workers: int, passes: int, idle: float,
            light: bool) -> dict[str, Any]:
    """One cluster (``light``: :func:`dask_softkmeans.launch.local_cluster`): its CPU at
    rest, then the median parts of ``passes`` soft passes over persisted blobs."""
    lc, client = cluster(workers, light)
    try:
        worker_pids = list(client.run(os.getpid).values())
        pids = [os.getpid(), *worker_pids]
        rest, _ = cpu_rates(pids, idle)
        _, X = build(rows, features, k, client, workers, local=False)
        client.run(_log_holder_calls)
        centers = start_centers(features, k)
        for _ in range(3):  # the holders are made, the kernel loaded
            soft_statistics(X, centers, 1.0)
        marks: list[tuple[float, float]] = []

        def run_passes() -> None:
            for _ in range(passes):
                start = time.perf_counter()
                soft_statistics(X, centers, 1.0)
                marks.append((start, time.perf_counter()))

        busy, _ = cpu_rates(pids, during=run_passes)
        logs = [calls[-passes:] for calls in client.run(_holder_calls).values()]
    finally:
        client.close()
        lc.close()
    parts = []
    for i, (start, end) in enumerate(marks):
        calls = [log[i] for log in logs]
        finishes = [s + w for s, w, _ in calls]
        parts.append([
            end - start,
            max(s for s, _, _ in calls) - start,
            np.mean([c for _, _, c in calls]),
            np.mean([w - c for _, w, c in calls]),
            max(finishes) - min(finishes),
            end - max(finishes)])
    names = ["pass", "to workers", "kernel CPU", "off core", "slower worker", "back"]
    return {"parts": dict(zip(names, np.median(np.array(parts), axis=0) * 1e3, strict=True)),
            "kernel": [float(np.median([c for _, _, c in log])) * 1e3 for log in logs],
            "rest": rest, "busy": busy}


def _kernel_process(role: str, first: int, count: int, rows: int, features: int, k: int,
                    passes: int, barrier: Any, results: Any) -> None:
    """One process of :func:`kernel_alone`: blocks ``first .. first + count - 1``; times
    its passes in the turns of ``role`` ("one" or "two")."""
    import traceback

    from dask_softkmeans.engine import single_threaded_blas
    from dask_softkmeans.kernels import PassParams, pass_statistics

    try:
        sizes = block_rows(rows, BLOCKS_PER_WORKER * 2)
        centers = true_centers(features, k)
        blocks = [make_block(i, sizes[i], centers) for i in range(first, first + count)]
        start_at = start_centers(features, k)
        # The parameters Runner.statistics gives the block kernel for soft_statistics(X, C, 1.0).
        params = PassParams(start_at, 1.0, offset=start_at.mean(axis=0))

        def one_pass() -> None:
            for block in blocks:
                pass_statistics(block, None, params)

        one_pass()  # the kernel loaded (and SciPy's BLAS with it), the pages touched
        times = []
        with single_threaded_blas():  # as Dask's worker processes run BLAS
            for i in range(passes):
                for turn in ("one", "two") if i % 2 == 0 else ("two", "one"):
                    barrier.wait(timeout=600)
                    if turn == role:
                        start = time.perf_counter()
                        one_pass()
                        times.append(time.perf_counter() - start)
        results.put((role, times))
    except BaseException:
        barrier.abort()  # the other processes stop waiting for this one
        results.put(("error", traceback.format_exc()))
        raise


def kernel_alone(rows: int, features: int, k: int, passes: int) -> tuple[float, float, float]:
    """The block kernel alone over the blocks that ``build`` makes for 2 workers: one
    process over all of them, and two over half each, started together, in turns (the
    order of the two turns alternates from pass to pass).

    Returns the median pass (ms) of each (a two-process pass ends when the slower
    process does) and the median of the turns' speed-ups.
    """
    import multiprocessing
    import queue

    context = multiprocessing.get_context("spawn")
    n_blocks = len(block_rows(rows, BLOCKS_PER_WORKER * 2))
    half = n_blocks // 2
    barrier, results = context.Barrier(3), context.Queue()
    jobs = [("one", 0, n_blocks), ("two", 0, half), ("two", half, n_blocks - half)]
    processes = [context.Process(target=_kernel_process, args=(
        role, first, count, rows, features, k, passes, barrier, results))
        for role, first, count in jobs]
    times: dict[str, list[list[float]]] = {"one": [], "two": []}
    try:
        for process in processes:
            process.start()
        while sum(map(len, times.values())) < len(processes):
            try:
                role, got = results.get(timeout=5)
            except queue.Empty:
                if any(p.exitcode not in (None, 0) for p in processes):
                    raise RuntimeError("a process of kernel_alone died") from None
                continue
            if role == "error":
                raise RuntimeError(f"a process of kernel_alone failed:\n{got}")
            times[role].append(got)
    finally:
        for process in processes:
            process.join(timeout=10)
            if process.is_alive():
                process.terminate()
    one = np.array(times["one"][0])
    two = np.max(np.array(times["two"]), axis=0)
    return float(np.median(one)) * 1e3, float(np.median(two)) * 1e3, float(np.median(one / two))


def print_kernel_alone(rows: int, features: int, k: int, passes: int) -> None:
    one, two, speedup = kernel_alone(rows, features, k, passes)
    print(f"the kernel alone, no Dask, in turns (median pass, ms): 1 process over all the "
          f"blocks {one:.1f}, 2 processes over half each {two:.1f}; median speed-up of the "
          f"turns {speedup:.2f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=8_000_000)
    parser.add_argument("--features", type=int, default=32)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--passes", type=int, default=15)
    parser.add_argument("--idle", type=float, default=10.0, help="Seconds at rest.")
    parser.add_argument("--kernel-only", action="store_true",
                        help="Only the kernel alone, without Dask (part 3).")
    add_results_option(parser)
    args = parser.parse_args(argv)
    with recorded("pass_anatomy", args.results_dir, argv):
        _run(args, argv)


def _run(args: argparse.Namespace, argv: list[str] | None) -> None:
    command = " ".join(["python benchmarks/pass_anatomy.py",
                        shlex.join(sys.argv[1:] if argv is None else argv)]).strip()
    print(f"command: {command}")
    if args.kernel_only:
        print(f"{args.rows / 1e6:g}M x {args.features}, K={args.k}, soft pass at T=1, "
              f"{args.passes} passes in turns")
        print_kernel_alone(args.rows, args.features, args.k, args.passes)
        return
    print(f"{args.rows / 1e6:g}M x {args.features}, K={args.k}, {args.workers} single-threaded "
          f"worker processes, soft pass at T=1, medians of {args.passes} passes (ms)\n")
    # Defaults, light, light, defaults: a load that drifts steadily lands on both alike.
    results = [(name, anatomy(args.rows, args.features, args.k, args.workers, args.passes,
                              args.idle, name == "light"))
               for name in ("defaults", "light", "light", "defaults")]
    names = list(results[0][1]["parts"])
    print("| configuration | " + " | ".join(names) + " | kernel CPU per worker | CPU ms/s at "
          "rest: this process, workers | CPU ms/s in passes: this process, workers |")
    print("|---" * (len(names) + 4) + "|")
    for name, r in results:
        kernel = ", ".join(f"{v:.1f}" for v in r["kernel"])
        rates = [", ".join(f"{v:.0f}" for v in r[key]) for key in ("rest", "busy")]
        print(f"| {name} | " + " | ".join(f"{v:.1f}" for v in r["parts"].values())
              + f" | {kernel} | {rates[0]} | {rates[1]} |")
    print("\nlight: " + ", ".join(f"{key} {value}" for key, value in LIGHT_DIAGNOSTICS.items()))
    print("this process: the caller, the scheduler and the nannies (a LocalCluster's)")
    if args.workers == 2:
        print()
        print_kernel_alone(args.rows, args.features, args.k, args.passes)


if __name__ == "__main__":
    main()
