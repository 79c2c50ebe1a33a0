"""The compiled block kernel of a git revision against the working tree's, in one process.

Run from the repository root::

    python benchmarks/kernel_compare.py c16d109          # the kernel before the speed work
    python benchmarks/kernel_compare.py HEAD --repeats 15

``dask_softkmeans/_compiled.py`` of the revision is written to a temporary
file and compiled there (no disk cache); each kernel runs with the rows per
chunk its own revision chose (``chunk_rows`` of that revision's
``_kernels.py``).  Both kernels get the same blocks, one thread, BLAS on one
thread; the two alternate, and the table gives the minimum over the repeats
(the least disturbed run on a shared machine) in ms and ns per point and
cluster, the speed-up, and the largest relative difference of the reduced
statistics (counts, sums, scalars).  The shapes are those of the issue's
benchmark (per worker block sizes) and of the annealing's samples (2-D, K=100).
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

#: (rows, features, clusters, dtype, temperature, spread of the centers): unit-variance
#: blobs around centers drawn N(0, spread^2), or uniform in [-10, 10] for "box" (the
#: blobs of ``throughput.py``: at T = 1 nearly every row is one-hot, a few are soft).
CASES = [
    (200_000, 32, 32, np.float32, 1.0, 3.0),
    (200_000, 32, 32, np.float64, 1.0, 3.0),
    (200_000, 8, 16, np.float32, 1.0, 3.0),
    (200_000, 8, 16, np.float32, 1.0, "box"),
    (50_000, 256, 128, np.float32, 1.0, 3.0),
    (20_000, 2, 100, np.float64, 0.3, 3.0),
    (200_000, 32, 32, np.float32, 0.0, 3.0),
    (200_000, 8, 16, np.float32, 0.0, "box"),
]


def load_revision(rev: str, directory: Path) -> tuple[ModuleType, Any]:
    """The revision's kernel module (compiled here, uncached) and its ``chunk_rows``."""
    source = subprocess.run(["git", "show", f"{rev}:dask_softkmeans/_compiled.py"], cwd=ROOT,
                            check=True, capture_output=True, text=True).stdout
    path = directory / f"kernel_{rev.replace('/', '_')}.py"
    path.write_text(source.replace("cache=True", "cache=False"))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    kernels = subprocess.run(["git", "show", f"{rev}:dask_softkmeans/_kernels.py"], cwd=ROOT,
                             check=True, capture_output=True, text=True).stdout
    namespace: dict[str, Any] = {}
    exec(compile(kernels, f"{rev}:_kernels.py", "exec"), namespace)
    return module, namespace["chunk_rows"]


def one_run(module: ModuleType, chunk: int, x: np.ndarray, c: np.ndarray,
            t: float) -> tuple[float, dict[str, np.ndarray]]:
    """One call of ``soft_block`` on the whole block; its time and outputs."""
    n, d = x.shape
    k = c.shape[0]
    offset = c.mean(0).astype(x.dtype).astype(np.float64)  # exact in the block's precision
    rel = np.ascontiguousarray(c - offset)
    work = rel.astype(x.dtype)
    norms = np.einsum("ij,ij->i", work, work, dtype=np.float64)
    out = {"counts": np.zeros(k), "sums": np.zeros((k, d)), "scalars": np.zeros(7)}
    args = (x, np.ones(n), offset, rel, work, norms, np.zeros(k), float(t), -60.0, 0,
            np.zeros((0, d)), False, chunk, out["counts"], out["sums"], np.zeros(k),
            np.zeros(k), np.zeros(0), out["scalars"])
    if "labels" in inspect.signature(module.soft_block.py_func).parameters:  # newer kernels
        args += (np.empty(0, np.int32),)
    start = time.perf_counter()
    module.soft_block(*args)
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("revision", help="git revision whose kernel is the baseline")
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from dask_softkmeans import _compiled, _kernels

    with tempfile.TemporaryDirectory() as tmp:
        old, old_rows = load_revision(args.revision, Path(tmp))
        print(f"command: python benchmarks/kernel_compare.py {args.revision} "
              f"--repeats {args.repeats}")
        print(f"\n| block | T | {args.revision} ms (ns/pt·cl) | working tree ms (ns/pt·cl) "
              "| speed-up | max rel. diff |")
        print("|---|---|---|---|---|---|")
        rng = np.random.default_rng(0)
        for n, d, k, dtype, t, spread in CASES:
            centers = (rng.uniform(-10, 10, size=(k, d)) if spread == "box"
                       else rng.normal(size=(k, d)) * spread)
            x = (centers[rng.integers(k, size=n)] + rng.normal(size=(n, d))).astype(dtype)
            c = centers + rng.normal(scale=0.3, size=centers.shape)
            kernels = [(old, old_rows(k, d)), (_compiled, _kernels.chunk_rows(k, d))]
            for module, rows in kernels:  # warm-up
                one_run(module, rows, x, c, t)
            times: list[list[float]] = [[], []]
            outs: list[dict[str, np.ndarray]] = [{}, {}]
            for _ in range(args.repeats):
                for i, (module, rows) in enumerate(kernels):
                    elapsed, outs[i] = one_run(module, rows, x, c, t)
                    times[i].append(elapsed)
            before, after = min(times[0]), min(times[1])
            diff = max(float(np.max(np.abs(outs[1][key] - outs[0][key])
                                    / (np.abs(outs[0][key]) + 1e-9))) for key in outs[0])
            per = 1e9 / (n * k)
            where = " (box)" if spread == "box" else ""
            print(f"| {n // 1000}k x {d}, K={k}, {np.dtype(dtype).name}{where} | {t:g} | "
                  f"{before * 1e3:.1f} ({before * per:.2f}) | {after * 1e3:.1f} "
                  f"({after * per:.2f}) | {before / after:.2f} | {diff:.0e} |", flush=True)


if __name__ == "__main__":
    main()
