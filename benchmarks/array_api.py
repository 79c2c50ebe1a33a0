"""One block's statistics: the compiled kernel against the array-API code, on NumPy and JAX.

Run from the repository root::

    python benchmarks/array_api.py
    python benchmarks/array_api.py --rows 100000 --features 16 --clusters 32 --repeats 5

For one block of Gaussian blobs (float64) at one temperature, the minimum
over the repeats (the least disturbed run on a shared machine) of:

- ``block_statistics`` on NumPy: the compiled (numba) kernel, the engine's
  path for NumPy blocks (softmax);
- ``packed_statistics`` on NumPy: the array-API code, every statistic;
- ``free_energy`` and its gradient in the centers under ``jax.jit`` on the
  CPU (float64): what a JAX model pays for the clustering layer;
- ``soft_statistics`` of a JAX array: the array-API statistics in JAX,
  dispatched operation by operation (not jitted).

JAX uses its own threads; the others run NumPy's BLAS as configured.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np


def best(fn: Callable[[], object], repeats: int) -> float:
    """Seconds of the fastest of ``repeats`` calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--features", type=int, default=16)
    parser.add_argument("--clusters", type=int, default=32)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)

    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    from dask_softkmeans import free_energy, soft_statistics
    from dask_softkmeans.kernels import array_api, block_statistics

    rng = np.random.default_rng(0)
    centers = rng.normal(scale=4.0, size=(args.clusters, args.features))
    x = centers[rng.integers(args.clusters, size=args.rows)] + rng.normal(
        size=(args.rows, args.features))
    t = args.temperature
    offset = x.mean(axis=0)
    xj, cj = jnp.asarray(x), jnp.asarray(centers)
    value_and_grad = jax.jit(jax.value_and_grad(free_energy, argnums=1))

    rows = {
        "compiled kernel, NumPy (block_statistics)":
            lambda: block_statistics(x, centers, t, offset=offset),
        "array-API code, NumPy (packed_statistics)":
            lambda: array_api.packed_statistics(x, centers, t, offset=offset),
        "free_energy + grad, JAX jit, CPU":
            lambda: jax.block_until_ready(value_and_grad(xj, cj, t)),
        "soft_statistics of a JAX array (eager)":
            lambda: jax.block_until_ready(soft_statistics(xj, cj, t).counts),
    }
    n = args.rows * args.clusters
    print(f"{args.rows} rows x {args.features} features, K = {args.clusters}, T = {t}, float64, "
          f"best of {args.repeats}")
    print(f"{'path':<46} {'ms':>9} {'ns / (row, center)':>20}")
    for name, fn in rows.items():
        seconds = best(fn, args.repeats)
        print(f"{name:<46} {seconds * 1e3:>9.1f} {seconds * 1e9 / n:>20.2f}")


if __name__ == "__main__":
    main()
