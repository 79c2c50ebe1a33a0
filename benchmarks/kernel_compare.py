"""The compiled block kernel of a git revision against the working tree's, in one process.

Run from the repository root::

    python benchmarks/kernel_compare.py 2785882          # the single-file kernel
    python benchmarks/kernel_compare.py HEAD --repeats 15

The revision's kernel is written to a temporary directory and compiled there
(no disk cache): ``dask_softkmeans/_compiled.py`` where the revision has it
(the 20-argument ``soft_block``, with ``chunk_rows`` from that revision's
``_kernels.py``), else the ``dask_softkmeans/kernels/compiled/`` package
(``soft_block(x, weights, centers, settings, out)``, with the working tree's
``chunk_rows``).  An adapter per interface turns one set of arguments into
each kernel's call, so both kernels get the same blocks, the same centers and
offset, one thread, BLAS on one thread; the two alternate, and the table gives
the minimum over the repeats (the least disturbed run on a shared machine) in
ms and ns per point and cluster, the speed-up (old / new: above 1 the working
tree is faster), and the largest relative difference of the reduced
statistics (counts, sums, hard counts, removal costs, moments, scalars).  The
shapes are those of the issue's benchmark (per worker block sizes) and of the
annealing's samples (2-D, K=100), then one each for unequal priors, removal
costs and the two moment statistics.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import inspect
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np
from numba import from_dtype as nb_dtype

ROOT = Path(__file__).resolve().parents[1]
MOMENT_CODES = {"none": 0, "full": 1, "power": 2}


@dataclass(frozen=True)
class Case:
    """A block and a pass: unit-variance blobs around ``clusters`` centers drawn
    N(0, spread^2), or uniform in [-10, 10] for ``spread="box"`` (the blobs of
    ``throughput.py``: at T = 1 nearly every row is one-hot, a few are soft)."""

    rows: int
    features: int
    clusters: int
    dtype: type
    temperature: float
    spread: float | str = 3.0
    priors: bool = False  #: unequal priors
    removal: bool = False
    moments: str = "none"

    def label(self) -> str:
        extra = [name for name, on in (("box", self.spread == "box"), ("priors", self.priors),
                                       ("removal", self.removal),
                                       ("unit spread", self.spread == 1.0)) if on]
        extra += [f"{self.moments} moments"] if self.moments != "none" else []
        more = f" ({', '.join(extra)})" if extra else ""
        return (f"{self.rows // 1000}k x {self.features}, K={self.clusters}, "
                f"{np.dtype(self.dtype).name}{more}")


CASES = [
    Case(200_000, 32, 32, np.float32, 1.0),
    Case(200_000, 32, 32, np.float64, 1.0),
    Case(200_000, 8, 16, np.float32, 1.0),
    Case(200_000, 8, 16, np.float32, 1.0, "box"),
    Case(50_000, 256, 128, np.float32, 1.0),
    Case(20_000, 2, 100, np.float64, 0.3),
    Case(200_000, 32, 32, np.float32, 0.0),
    Case(200_000, 8, 16, np.float32, 0.0, "box"),
    Case(200_000, 32, 32, np.float32, 1.0, "box", priors=True),
    Case(200_000, 16, 16, np.float64, 0.0, removal=True),
    Case(50_000, 8, 8, np.float64, 1.0, moments="full"),
    Case(50_000, 32, 16, np.float32, 1.0, moments="power"),
    # Unit-spread blobs at T = 1: nearly every row soft, a few responsibilities per row
    # above 1e-12 of the row's largest (benchmarks/soft_pass.py).
    Case(200_000, 32, 32, np.float32, 1.0, 1.0),
    Case(200_000, 32, 32, np.float64, 1.0, 1.0),
    Case(50_000, 256, 128, np.float32, 1.0, 1.0),
]


@dataclass
class Pass:
    """One kernel call's inputs, as the wrapper (``kernels/fused.py``) prepares them."""

    x: np.ndarray
    weights: np.ndarray  # empty: 1 per row, the engine's call without sample weights
    offset: np.ndarray  # exact in the block's precision
    rel: np.ndarray
    work: np.ndarray
    norms: np.ndarray
    log_priors: np.ndarray
    directions: np.ndarray
    temperature: float
    moments: str
    removal: bool

    def outputs(self) -> dict[str, np.ndarray]:
        k, d = self.rel.shape
        size = {"none": 0, "full": k * d * d, "power": k * d}[self.moments]
        return {"counts": np.zeros(k), "sums": np.zeros((k, d)), "hard_counts": np.zeros(k),
                "removal": np.zeros(k), "moments": np.zeros(size), "scalars": np.zeros(7)}


def make_pass(case: Case, rng: np.random.Generator) -> Pass:
    k, d = case.clusters, case.features
    centers = (rng.uniform(-10, 10, size=(k, d)) if case.spread == "box"
               else rng.normal(size=(k, d)) * case.spread)
    x = (centers[rng.integers(k, size=case.rows)] + rng.normal(size=(case.rows, d))).astype(case.dtype)
    c = centers + rng.normal(scale=0.3, size=centers.shape)
    offset = c.mean(0).astype(case.dtype).astype(np.float64)
    rel = np.ascontiguousarray(c - offset)
    work = rel.astype(case.dtype)
    priors = np.log(rng.dirichlet(np.full(k, 5.0))) if case.priors else np.zeros(k)
    directions = (np.linalg.qr(rng.normal(size=(d, d)))[0][:k] if case.moments == "power"
                  else np.zeros((0, d)))
    if case.moments == "power" and k > d:
        raise ValueError("power moments need K <= D here")
    return Pass(x, np.empty(0), offset, rel, work,
                np.einsum("ij,ij->i", work, work, dtype=np.float64), priors, directions,
                case.temperature, case.moments, case.removal)


def single_file_kernel(module: ModuleType) -> Callable[[Pass, int, dict], None]:
    """The adapter of the single-file kernel (``_compiled.py``): 19 or 20 arguments."""
    with_labels = "labels" in inspect.signature(module.soft_block.py_func).parameters

    def call(p: Pass, chunk: int, out: dict[str, np.ndarray]) -> None:
        args = (p.x, p.weights, p.offset, p.rel, p.work, p.norms, p.log_priors, p.temperature,
                -60.0, MOMENT_CODES[p.moments], p.directions, p.removal, chunk, out["counts"],
                out["sums"], out["hard_counts"], out["removal"], out["moments"], out["scalars"])
        module.soft_block(*args, *((np.empty(0, np.int32),) if with_labels else ()))

    return call


def package_kernel(module: ModuleType) -> Callable[[Pass, int, dict], None]:
    """The adapter of the ``kernels/compiled`` package: tuples of centers, settings, outputs.

    The compiled entry points are called directly: numba's dispatcher types a named tuple
    by a fingerprint that leaves out its class, so a second package's ``Centers`` would be
    taken for the first one's and match none of its signatures.
    """
    kernel = module.soft_block
    entry = {sig[0].dtype: kernel.overloads[sig].entry_point for sig in kernel.signatures}

    def call(p: Pass, chunk: int, out: dict[str, np.ndarray]) -> None:
        centers = module.Centers(p.offset, p.rel, p.work, p.norms, p.log_priors, p.directions)
        settings = module.Settings(float(p.temperature), -60.0, MOMENT_CODES[p.moments],
                                   bool(p.removal), int(chunk))
        # Typed read-only (a memory map, a Zarr read): views, as the wrapper passes them.
        x, weights = p.x.view(), p.weights.view()
        x.flags.writeable = weights.flags.writeable = False
        entry[nb_dtype(x.dtype)](x, weights, centers, settings, module.Outputs(
            out["counts"], out["sums"], out["hard_counts"], out["removal"], out["moments"],
            out["scalars"], np.empty(0, np.int32)))

    return call


def git_show(rev: str, path: str) -> str | None:
    result = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=ROOT, capture_output=True,
                            text=True)
    return result.stdout if result.returncode == 0 else None


def uncached(source: str) -> str:
    return re.sub(r"cache=\w+", "cache=False", source)


def load_revision(rev: str, directory: Path) -> tuple[Callable, Callable[..., int]]:
    """The revision's kernel (compiled here, uncached) as an adapter, and its ``chunk_rows``."""
    tag = re.sub(r"\W", "_", rev)
    source = git_show(rev, "dask_softkmeans/_compiled.py")
    if source is not None:
        path = directory / f"kernel_{tag}.py"
        path.write_text(uncached(source))
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        namespace: dict[str, Any] = {}
        kernels = git_show(rev, "dask_softkmeans/_kernels.py")
        exec(compile(kernels, f"{rev}:_kernels.py", "exec"), namespace)
        return single_file_kernel(module), namespace["chunk_rows"]
    package = directory / f"kernel_{tag}"
    package.mkdir()
    listing = subprocess.run(["git", "ls-tree", "--name-only", f"{rev}:dask_softkmeans/kernels/compiled"],
                             cwd=ROOT, check=True, capture_output=True, text=True).stdout.split()
    for name in listing:
        if name.endswith(".py"):
            text = git_show(rev, f"dask_softkmeans/kernels/compiled/{name}")
            (package / name).write_text(uncached(text))
    sys.path.insert(0, str(directory))
    from dask_softkmeans.kernels.fused import chunk_rows

    return package_kernel(importlib.import_module(package.name)), chunk_rows


def compare(case: Case, rng: np.random.Generator, kernels: list[tuple[Callable, int]],
            repeats: int) -> tuple[list[float], float]:
    """Minimum times of each kernel over the repeats, and the largest relative difference."""
    p = make_pass(case, rng)
    for call, rows in kernels:  # warm-up
        call(p, rows, p.outputs())
    times: list[list[float]] = [[] for _ in kernels]
    outs: list[dict[str, np.ndarray]] = [{} for _ in kernels]
    for _ in range(repeats):
        for i, (call, rows) in enumerate(kernels):
            outs[i] = p.outputs()
            start = time.perf_counter()
            call(p, rows, outs[i])
            times[i].append(time.perf_counter() - start)
    diff = max((float(np.max(np.abs(outs[1][key] - outs[0][key]) / (np.abs(outs[0][key]) + 1e-9)))
                for key in outs[0] if outs[0][key].size), default=0.0)
    return [min(t) for t in times], diff


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("revision", help="git revision whose kernel is the baseline")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--only", default="",
                        help="run only the cases whose label contains this text, e.g. removal")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from dask_softkmeans.kernels import compiled
    from dask_softkmeans.kernels.fused import chunk_rows

    with tempfile.TemporaryDirectory() as tmp:
        old, old_rows = load_revision(args.revision, Path(tmp))
        new = package_kernel(compiled)
        print(f"command: python benchmarks/kernel_compare.py {args.revision} "
              f"--repeats {args.repeats}" + (f" --only {args.only!r}" if args.only else ""))
        print(f"\n| block | T | {args.revision} ms (ns/pt·cl) | working tree ms (ns/pt·cl) "
              "| speed-up | max rel. diff |")
        print("|---|---|---|---|---|---|")
        rng = np.random.default_rng(0)
        for case in CASES:
            if args.only not in case.label():
                continue
            k, d = case.clusters, case.features
            more = (case.moments,) if case.moments != "none" else ()  # older chunk_rows: (k, d)
            kernels = [(old, old_rows(k, d, *more)), (new, chunk_rows(k, d, case.moments))]
            (before, after), diff = compare(case, rng, kernels, args.repeats)
            per = 1e9 / (case.rows * k)
            print(f"| {case.label()} | {case.temperature:g} | {before * 1e3:.1f} "
                  f"({before * per:.2f}) | {after * 1e3:.1f} ({after * per:.2f}) | "
                  f"{before / after:.2f} | {diff:.0e} |", flush=True)


if __name__ == "__main__":
    main()
