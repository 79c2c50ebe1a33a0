"""One default fit against scikit-learn's ``KMeans(n_init=10)`` on real data with many features.

Run from the repository root::

    python benchmarks/highdim.py                 # every case
    python benchmarks/highdim.py --cases digits a3 --repeat 9
    python benchmarks/highdim.py --cases digits --anatomy --repeat 9   # where a fit's time goes
    python benchmarks/highdim.py --cases digits --fit-cpu --repeat 7   # our fit's CPU time alone
    python benchmarks/highdim.py --cases digits --fit-cpu --against ../other-checkout

Each case is a data set (standardised to zero mean and unit variance per
feature, as such data are clustered in practice; the SIPU set ``a3`` as it is),
a number of clusters and an input dtype.  For each, dask-softkmeans' default
fit (``SoftKMeans(K)``, deterministic) and ``KMeans(K, n_init=10,
random_state=0)`` run ``--repeat`` times in turns, after the compiled kernel
was loaded; it prints the inertia of ours as a ratio to KMeans' (both
recomputed in float64 the same way), the passes, the median seconds of each
and their ratio, and whether both ratios are at most 1.  scikit-learn's
OpenMP loop slows down several-fold when another process is busy on a small
machine, far more than our fit does, so each turn also times ``KMeans(n_init=10)``
with its threads limited to one: ours over that is the ratio a busy machine
does not flatter.  The cases run in
float64 and float32 (the fits of both dtypes in turns) end with the ratio of
our float64 fit's median time to our float32 fit's.
"""

from __future__ import annotations

import argparse
import gzip
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from _results import add_results_option, recorded
from sklearn import datasets
from sklearn.cluster import KMeans
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from dask_softkmeans import SoftKMeans
from dask_softkmeans.kernels import nearest

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "sipu"


def _standardised(loader: Callable[..., object]) -> Callable[[Path], np.ndarray]:
    def load(_: Path) -> np.ndarray:
        return StandardScaler().fit_transform(loader().data)  # type: ignore[attr-defined]

    return load


def _sipu(name: str) -> Callable[[Path], np.ndarray]:
    def load(root: Path) -> np.ndarray:
        with gzip.open(root / f"{name}.data.gz") as f:
            return np.loadtxt(f)

    return load


#: name -> (loader, n_clusters, input dtypes).  The scikit-learn sets ship with
#: it (no download); K is the number of classes, and 5 for breast cancer as a
#: second, harder K on the same data.
CASES: dict[str, tuple[Callable[[Path], np.ndarray], int, tuple[type, ...]]] = {
    "digits": (_standardised(datasets.load_digits), 10, (np.float64, np.float32)),
    "wine": (_standardised(datasets.load_wine), 3, (np.float64,)),
    "breast-cancer": (_standardised(datasets.load_breast_cancer), 2, (np.float64,)),
    "breast-cancer-k5": (_standardised(datasets.load_breast_cancer), 5, (np.float64,)),
    "a3": (_sipu("a3"), 50, (np.float64, np.float32)),
}


def inertia(x: np.ndarray, centers: np.ndarray) -> float:
    """Sum of squared distances to the nearest center, in float64, the same for both systems."""
    x = np.asarray(x, np.float64)
    return float(nearest(x, centers, offset=x.mean(0))[1].sum())


def run_case(name: str, root: Path, repeat: int) -> list[dict]:
    """One row per input dtype of the case."""
    loader, k, dtypes = CASES[name]
    data = loader(root)
    xs = [np.ascontiguousarray(data, dtype=dtype) for dtype in dtypes]
    ours: list[list[float]] = [[] for _ in xs]
    theirs: list[list[float]] = [[] for _ in xs]
    single: list[list[float]] = [[] for _ in xs]
    centers: list[dict[str, np.ndarray]] = [{} for _ in xs]
    passes = [0 for _ in xs]
    # In turns (each dtype, each system), so that a change of load on the shared
    # machine lands on all of them; KMeans gets the same input as ours.
    for _ in range(repeat):
        for i, x in enumerate(xs):
            start = time.perf_counter()
            model = SoftKMeans(k).fit(x)
            ours[i].append(time.perf_counter() - start)
            centers[i]["ours"], passes[i] = model.cluster_centers_, model.n_iter_
            start = time.perf_counter()
            anchor = KMeans(k, n_init=10, random_state=0).fit(x)
            theirs[i].append(time.perf_counter() - start)
            centers[i]["kmeans"] = anchor.cluster_centers_
            with threadpool_limits(1):  # its OpenMP loop on one thread
                start = time.perf_counter()
                KMeans(k, n_init=10, random_state=0).fit(x)
                single[i].append(time.perf_counter() - start)
    rows = []
    for i, x in enumerate(xs):
        seconds, anchor_seconds = float(np.median(ours[i])), float(np.median(theirs[i]))
        single_seconds = float(np.median(single[i]))
        rows.append({
            "case": name, "shape": f"{x.shape[0]} x {x.shape[1]}", "k": k,
            "dtype": x.dtype.name, "passes": passes[i],
            "inertia": inertia(data, centers[i]["ours"]) / inertia(data, centers[i]["kmeans"]),
            "seconds": seconds, "anchor": anchor_seconds, "time": seconds / anchor_seconds,
            "single": seconds / single_seconds,
        })
    return rows


class _Timed:
    """Wraps ``module.name`` so that the CPU seconds spent inside it add up (a measurement
    of a real call, undone by :meth:`restore`)."""

    def __init__(self, module: object, name: str) -> None:
        self.module, self.name, self.real, self.seconds = module, name, getattr(module, name), 0.0

        def timed(*args: object, **kwargs: object) -> object:
            start = time.process_time()
            try:
                return self.real(*args, **kwargs)
            finally:
                self.seconds += time.process_time() - start

        setattr(module, name, timed)

    def restore(self) -> None:
        setattr(self.module, self.name, self.real)


def anatomy(name: str, root: Path, repeat: int) -> None:
    """Where the CPU time of our fit goes, per input dtype: the compiled kernel's calls
    (with numba's dispatch), the Python around them (kernels.block_statistics and the
    packing), the driver (annealing, objective, engine); the passes by phase; one pass's
    block_statistics time (kernel and the Python around it) in each mode the fit uses."""
    from dask_softkmeans.annealing import moment_mode
    from dask_softkmeans.engine import runner
    from dask_softkmeans.kernels import block_statistics, compiled

    loader, k, dtypes = CASES[name]
    data = loader(root)
    print(f"### {name}: CPU ms per fit, median of {repeat}")
    print()
    print("| dtype | fit | kernel calls | Python around the kernel | driver | passes "
          "(anneal / lloyd / swap; on a sample or float32 copy) "
          "| block_statistics µs per pass: T > 0 plain / T > 0 with "
          f"moments ({moment_mode(data.shape[1])}) / T = 0 removal |")
    print("|---|---|---|---|---|---|---|")
    for dtype in dtypes:
        x = np.ascontiguousarray(data, dtype=dtype)
        model = SoftKMeans(k).fit(x)
        phases = [sum(h["phase"] == p for h in model.history_) for p in ("anneal", "lloyd", "swap")]
        # Passes over an in-memory sample, or over the float32 copy of small float64 data
        # (recorded as data="copy").
        on_sample = sum(h["data"] != "full" for h in model.history_)
        fits, kernels, blocks = [], [], []
        kernel, block = _Timed(compiled, "soft_block"), _Timed(runner, "pass_statistics")
        try:
            for _ in range(repeat):
                kernel.seconds = block.seconds = 0.0
                start = time.process_time()
                SoftKMeans(k).fit(x)
                fits.append(time.process_time() - start)
                kernels.append(kernel.seconds)
                blocks.append(block.seconds)
        finally:
            kernel.restore()
            block.restore()
        centers, offset = model.cluster_centers_, x.mean(axis=0, dtype=np.float64)
        t = float(np.median([h["temperature"] for h in model.history_ if h["temperature"] > 0]))
        mode = moment_mode(x.shape[1])
        directions = np.random.default_rng(0).normal(size=centers.shape)
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        calls = {
            "plain": {"temperature": t},
            "moments": {"temperature": t, "moments": mode, "directions": directions},
            "hard": {"temperature": 0.0, "removal": True},
        }
        per_pass = {}
        for kind, kwargs in calls.items():
            block_statistics(x, centers, offset=offset, **kwargs)
            runs = []
            for _ in range(repeat):
                start = time.process_time()
                for _ in range(20):
                    block_statistics(x, centers, offset=offset, **kwargs)
                runs.append((time.process_time() - start) / 20)
            per_pass[kind] = float(np.median(runs)) * 1e6
        fit, kern, blk = (float(np.median(v)) * 1e3 for v in (fits, kernels, blocks))
        print(f"| {x.dtype.name} | {fit:.1f} | {kern:.1f} | {blk - kern:.1f} | {fit - blk:.1f} "
              f"| {sum(phases)} ({' / '.join(map(str, phases))}; {on_sample}) "
              f"| {per_pass['plain']:.0f} / {per_pass['moments']:.0f} / {per_pass['hard']:.0f} |",
              flush=True)
    print()


def fit_cpu(name: str, root: Path, repeat: int) -> None:
    """CPU milliseconds of one default fit per input dtype, smallest and median of ``repeat``
    (the dtypes in turns): run it in alternate processes on two checkouts of the package
    (``PYTHONPATH``) to compare them under the same load."""
    loader, k, dtypes = CASES[name]
    data = loader(root)
    xs = [np.ascontiguousarray(data, dtype=dtype) for dtype in dtypes]
    for x in xs:
        SoftKMeans(k).fit(x)  # the kernel loaded
    seconds: list[list[float]] = [[] for _ in xs]
    for _ in range(repeat):
        for i, x in enumerate(xs):
            start = time.process_time()
            SoftKMeans(k).fit(x)
            seconds[i].append(time.process_time() - start)
    print(f"{name} CPU ms per fit (smallest / median of {repeat}): " + ", ".join(
        f"{x.dtype.name} {1e3 * min(s):.1f} / {1e3 * float(np.median(s)):.1f}"
        for x, s in zip(xs, seconds, strict=True)), flush=True)


def fit_cpu_against(names: list[str], root: Path, repeat: int, rounds: int,
                    other: Path) -> None:
    """:func:`fit_cpu` in alternate processes, this checkout's package and the one under
    ``other`` (a checkout's root, put first on ``PYTHONPATH``), ``rounds`` times each."""
    import os
    import subprocess
    import sys

    here = Path(__file__).resolve()
    mine = str(here.parents[1])
    for round_ in range(rounds):
        for label, path in (("other", str(other.resolve())), ("this", mine)):
            env = {**os.environ, "PYTHONPATH": path}
            out = subprocess.run(
                [sys.executable, str(here), "--fit-cpu", "--results-dir", "none", "--repeat",
                 str(repeat), "--data", str(root), "--cases", *names],
                env=env, check=True, capture_output=True, text=True).stdout
            for line in out.splitlines():
                if "CPU ms" in line:
                    print(f"round {round_ + 1}, {label} ({path}): {line}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    parser.add_argument("--repeat", type=int, default=7,
                        help="timed fits of each system per case, in turns (median reported)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="directory of the SIPU sets (a3.data.gz)")
    parser.add_argument("--anatomy", action="store_true",
                        help="instead of the comparison: where the CPU time of our fit goes "
                             "(kernel, the Python around it, the driver), per dtype")
    parser.add_argument("--fit-cpu", action="store_true",
                        help="instead of the comparison: CPU ms of our default fit alone, "
                             "per dtype (smallest and median)")
    parser.add_argument("--against", type=Path, default=None,
                        help="with --fit-cpu: another checkout's root; both packages' fits "
                             "run in alternate processes, --rounds times")
    parser.add_argument("--rounds", type=int, default=5)
    add_results_option(parser)
    args = parser.parse_args()
    with recorded("highdim", args.results_dir):
        if args.anatomy:
            for name in args.cases:
                anatomy(name, args.data, args.repeat)
        elif args.fit_cpu and args.against is not None:
            fit_cpu_against(args.cases, args.data, args.repeat, args.rounds, args.against)
        elif args.fit_cpu:
            for name in args.cases:
                fit_cpu(name, args.data, args.repeat)
        else:
            _run(args)


def _run(args: argparse.Namespace) -> None:
    # Load the compiled kernel (both precisions) once before timing: paid once per process.
    start = time.perf_counter()
    for dtype in (np.float32, np.float64):
        SoftKMeans(2).fit(np.random.default_rng(0).normal(size=(100, 2)).astype(dtype))
    print(f"kernel load and first tiny fits: {time.perf_counter() - start:.2f} s "
          "(not in the table)")
    print(f"{args.repeat} fits of each system per case, in turns; seconds are medians")
    print()
    print("| case | n x D | K | dtype | inertia / KMeans(n_init=10) | passes | s ours "
          "| s KMeans(n_init=10) | time / KMeans(n_init=10) | time / KMeans one thread "
          "| both <= 1 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    precision = []
    for name in args.cases:
        rows = run_case(name, args.data, args.repeat)
        for row in rows:
            ok = "yes" if row["inertia"] <= 1.0 and row["time"] <= 1.0 else "no"
            print(f"| {name} | {row['shape']} | {row['k']} | {row['dtype']} "
                  f"| {row['inertia']:.4f} | {row['passes']} | {row['seconds']:.3f} "
                  f"| {row['anchor']:.3f} | {row['time']:.2f} | {row['single']:.2f} | {ok} |",
                  flush=True)
        if len(rows) == 2:
            precision.append(f"{name} {rows[0]['seconds'] / rows[1]['seconds']:.2f}")
    if precision:
        print()
        print("our float64 fit seconds / our float32 fit seconds:", ", ".join(precision))


if __name__ == "__main__":
    main()
