"""One soft pass on a GPU: Dask of CuPy chunks against a fused PyTorch reference, and the roofline.

Run from the repository root, on a machine with an NVIDIA GPU, CuPy and PyTorch::

    python benchmarks/gpu_pass.py
    python benchmarks/gpu_pass.py --rows 10000000 --features 32 --clusters 32 --repeats 5

For ``rows x features`` float32 Gaussian blobs made on the GPU and ``clusters``
centers at one temperature, the median over the repeats (after one warm-up) of:

- ``block kernel``: the array-API block statistics (what each Dask task runs on
  a CuPy chunk: responsibilities, every statistic summed in float64, packed and
  copied to the host) over the chunks in turn, timed with CUDA events;
- ``soft_statistics``: the same pass through Dask (a Dask array of CuPy chunks,
  the threaded scheduler, the float64 reduction tree on the host), wall time;
- ``PyTorch fused``: the reference a GPU user would write, in float32:
  ``d = |x|^2 - 2 x c^T + |c|^2`` (one matmul; the row norms ``|x|^2`` computed
  once, outside the timing, as the data do not change between passes),
  ``p = softmax(-d / T)``, ``N = p.sum(0)``, ``S = p^T x`` (one matmul), timed
  with CUDA events;
- ``roofline``: the bytes a pass must read (``rows x features x 4``, the data
  once) over the GPU's memory bandwidth (from its clock and bus width, or
  ``--bandwidth-gbs``).

The counts and sums of the two are compared (float32 tolerance).  Without
CuPy, PyTorch or a CUDA device the script says which is missing and exits
without writing a result file.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from _results import add_results_option, recorded


def missing_requirements() -> str | None:
    """Why this machine cannot run the benchmark (None: it can)."""
    try:
        import cupy
    except ImportError:
        return "CuPy is not installed (pip install cupy-cuda12x)"
    try:
        import torch
    except ImportError:
        return "PyTorch is not installed (pip install torch)"
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return "CuPy sees no CUDA device"
    except Exception as exc:  # installed without a driver
        return f"CuPy sees no CUDA device ({exc})"
    if not torch.cuda.is_available():
        return "PyTorch sees no CUDA device"
    return None


def peak_bandwidth(cupy: Any) -> float:
    """Bytes per second of the current GPU's memory: 2 transfers per clock x bus width."""
    props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
    return 2.0 * props["memoryClockRate"] * 1e3 * props["memoryBusWidth"] / 8.0


def cuda_timed(fn: Callable[[], Any], repeats: int, cupy: Any) -> list[float]:
    """Seconds of each of ``repeats`` calls of ``fn`` (after a warm-up), by CUDA events on
    the current stream (the work ``fn`` queues is included, not only its launch)."""
    fn()
    times = []
    for _ in range(repeats):
        start, stop = cupy.cuda.Event(), cupy.cuda.Event()
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(cupy.cuda.get_elapsed_time(start, stop) / 1e3)
    return times


def wall_timed(fn: Callable[[], Any], repeats: int) -> list[float]:
    """Wall seconds of each of ``repeats`` calls (after a warm-up); ``fn`` must return only
    once its work is done (``soft_statistics`` returns NumPy)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def our_block_pass(chunks: list[Any], centers: np.ndarray, temperature: float,
                   offset: np.ndarray) -> np.ndarray:
    """The statistics of every chunk by the array-API block kernel, summed in float64 on the
    host: the work of a Dask pass without Dask."""
    from dask_softkmeans.kernels import block_statistics

    total = None
    for chunk in chunks:
        part = block_statistics(chunk, centers, temperature, offset=offset)
        total = part if total is None else total + part
    return total


def torch_pass(x: Any, x_norms: Any, centers: Any, temperature: float) -> tuple[Any, Any]:
    """Fused float32 soft pass in PyTorch: counts ``N_k`` and sums ``S_k`` (``x_norms``:
    the ``(n, 1)`` squared row norms)."""
    import torch

    d = x_norms - 2.0 * (x @ centers.T) + (centers * centers).sum(1)
    p = torch.softmax(-d / temperature, dim=1)
    return p.sum(0), p.T @ x


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--features", type=int, default=32)
    parser.add_argument("--clusters", type=int, default=32)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--chunk-rows", type=int, default=1_000_000,
                        help="rows per CuPy chunk of the Dask array (default 1,000,000)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--bandwidth-gbs", type=float, default=None,
                        help="memory bandwidth in GB/s for the roofline (default: from the GPU)")
    add_results_option(parser)
    args = parser.parse_args(argv)
    why = missing_requirements()
    if why is not None:
        print(f"gpu_pass.py: skipped, {why}. It needs an NVIDIA GPU with CuPy and PyTorch.",
              file=sys.stderr)
        return 0

    import cupy
    import dask
    import dask.array as da
    import torch

    from dask_softkmeans import soft_statistics

    with recorded("gpu_pass", args.results_dir):
        rng = cupy.random.default_rng(0)
        centers_gpu = rng.standard_normal((args.clusters, args.features), dtype=cupy.float32) * 4
        labels = rng.integers(0, args.clusters, size=args.rows)
        x = centers_gpu[labels] + rng.standard_normal((args.rows, args.features), dtype=cupy.float32)
        del labels
        centers = cupy.asnumpy(centers_gpu).astype(np.float64)
        offset = centers.mean(axis=0)
        t = args.temperature
        chunks = [x[i : i + args.chunk_rows] for i in range(0, args.rows, args.chunk_rows)]
        dx = da.from_array(x, chunks=(args.chunk_rows, args.features), asarray=False)
        xt = torch.from_dlpack(x)  # the same memory, no copy
        ct = torch.from_dlpack(centers_gpu)
        xt_norms = (xt * xt).sum(1, keepdim=True)
        bandwidth = (args.bandwidth_gbs * 1e9 if args.bandwidth_gbs else peak_bandwidth(cupy))
        read = args.rows * args.features * 4
        roofline = read / bandwidth
        name = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)["name"]
        name = name.decode() if isinstance(name, bytes) else name
        print(f"{name}; {args.rows} rows x {args.features} features float32, K = {args.clusters}, "
              f"T = {t}, chunks of {args.chunk_rows} rows; median of {args.repeats}")
        print(f"roofline: {read / 1e9:.2f} GB read once at {bandwidth / 1e9:.0f} GB/s = "
              f"{roofline * 1e3:.2f} ms")

        with dask.config.set(scheduler="threads"):
            timings = {
                "block kernel, CuPy chunks (array API)":
                    cuda_timed(lambda: our_block_pass(chunks, centers, t, offset), args.repeats, cupy),
                "soft_statistics, Dask of CuPy chunks":
                    wall_timed(lambda: soft_statistics(dx, centers, t), args.repeats),
                "PyTorch fused reference, fp32":
                    cuda_timed(lambda: torch_pass(xt, xt_norms, ct, t), args.repeats, cupy),
            }
            ours = soft_statistics(dx, centers, t)
        counts, sums = (a.double().cpu().numpy() for a in torch_pass(xt, xt_norms, ct, t))
        reference = timings["PyTorch fused reference, fp32"]
        print(f"{'path':<42} {'ms / pass':>10} {'x PyTorch':>10} {'x roofline':>11}")
        for path, seconds in timings.items():
            ms = statistics.median(seconds)
            print(f"{path:<42} {ms * 1e3:>10.2f} {ms / statistics.median(reference):>10.2f} "
                  f"{ms / roofline:>11.2f}")
        counts_err = np.max(np.abs(ours.counts - counts)) / args.rows
        sums_err = np.max(np.abs(ours.sums - sums)) / max(np.max(np.abs(ours.sums)), 1e-300)
        print(f"statistics against PyTorch's: counts {counts_err:.1e} of the rows, sums "
              f"{sums_err:.1e} of the largest (float32 reference)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
