"""Many clusters: the levers on the annealing sample and the swap check, measured one by one.

Run from the repository root::

    python benchmarks/large_k_levers.py --k 1024                      # the defaults
    python benchmarks/large_k_levers.py --k 1024 --rows-per-center 100
    python benchmarks/large_k_levers.py --k 1024 --sample-swaps 0

The data are those of ``benchmarks/large_k.py`` (its ``make_blobs``).  Each lever replaces
one piece of the package in this process before the fit, so that its effect can be
measured without a parameter for it:

- ``--rows-per-center R``: an annealing pass with ``m`` codevectors reads
  ``max(10000, R m)`` rows of the sample, rounded up to a multiple of 10000 (instead of
  200 per codevector rounded up to 10000 times a power of two);
- ``--sample-swaps S``: the swap check on the sample tries at most ``S`` moves (the one
  on the full data keeps its default).

Reported: seconds, the centroid index against the generating partition's means, the
inertia, and the work: row-center pairs read by the annealing passes and by the passes
after it, without second moments and with them, which, unlike the seconds, do not depend
on the load of the machine; and the annealing's passes and row-center pairs by temperature
(with the codevectors of its first pass).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from typing import Any

import numpy as np
from _results import add_results_option, recorded
from large_k import inertia, make_blobs

import dask_softkmeans.annealing as annealing
import dask_softkmeans.estimator as estimator
from dask_softkmeans import SoftKMeans
from dask_softkmeans.metrics import centroid_index


def rows_per_center(per: float) -> None:
    """Replace the growing sample's rule by ``per`` rows per codevector, in steps of 10000."""
    step = estimator.SAMPLE_MIN_ROWS

    def sample_rows(n_centers: int, size: int) -> int:
        rows = max(step, per * n_centers)
        return min(int(-(-rows // step) * step), size)

    estimator.sample_rows = sample_rows


def sample_swaps(count: int) -> None:
    """At most ``count`` moves in the swap check on the sample."""
    swap = annealing.Annealer._swap

    def limited(self: annealing.Annealer, clusters: Any, converged: bool, stats: Any,
                explore: bool) -> Any:
        config = self.config
        if self._source == "sample":
            self.config = dataclasses.replace(config, max_swaps=count)
        try:
            return swap(self, clusters, converged, stats, explore)
        finally:
            self.config = config

    annealing.Annealer._swap = limited


def work(history: list[dict], phases: set[str], moments: bool) -> float:
    """Row-center pairs the passes of ``phases`` carrying second moments (or not) read."""
    return sum(r["weight"] * r["codevectors"] for r in history
               if r["phase"] in phases and r["moments"] == moments)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-samples", type=int, default=200_000)
    parser.add_argument("--n-features", type=int, default=32)
    parser.add_argument("--k", type=int, default=1024)
    parser.add_argument("--alpha", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rows-per-center", type=float, default=None)
    parser.add_argument("--sample-swaps", type=int, default=None)
    add_results_option(parser)
    args = parser.parse_args(argv)
    with recorded("large_k_levers", args.results_dir):
        if args.rows_per_center is not None:
            rows_per_center(args.rows_per_center)
        if args.sample_swaps is not None:
            sample_swaps(args.sample_swaps)
        print(f"rows per center: {args.rows_per_center or 'default'}; "
              f"swaps on the sample: {'default' if args.sample_swaps is None else args.sample_swaps}")
        warm, _ = make_blobs(5_000, args.n_features, 8, args.seed, args.alpha)
        SoftKMeans(8, compute_labels=False).fit(warm)  # loads the compiled kernel
        x, labels = make_blobs(args.n_samples, args.n_features, args.k, args.seed, args.alpha)
        reference = np.array([x[labels == j].mean(0) for j in np.unique(labels)], np.float64)
        start = time.perf_counter()
        model = SoftKMeans(args.k, compute_labels=False).fit(x)
        seconds = time.perf_counter() - start
        history = model.history_
        anneal = [r for r in history if r["phase"] == "anneal"]
        moments = sum(r["moments"] for r in anneal)
        after = {"lloyd", "swap", "fill"}
        print(f"\n{args.n_samples:,} x {args.n_features}, K = {args.k}\n\n"
              "| s | CI | inertia | annealing passes: without moments, with | their row-center "
              "pairs: without, with | passes after | their row-center pairs: without, with |\n"
              "|---|---|---|---|---|---|---|\n"
              f"| {seconds:.1f} | {centroid_index(model.cluster_centers_, reference)} | "
              f"{inertia(x, model.cluster_centers_):.6g} | {len(anneal) - moments}, {moments} | "
              f"{work(history, {'anneal'}, False):.3g}, {work(history, {'anneal'}, True):.3g} | "
              f"{len(history) - len(anneal)} | {work(history, after, False):.3g}, "
              f"{work(history, after, True):.3g} |")
        print("\nThe annealing by temperature:\n\n| T | codevectors | passes | row-center pairs |\n"
              "|---|---|---|---|")
        temperatures: dict[float, list] = {}
        for r in anneal:
            row = temperatures.setdefault(r["temperature"], [r["codevectors"], 0, 0.0])
            row[1] += 1
            row[2] += r["weight"] * r["codevectors"]
        for temperature, (codevectors, passes, pairs) in temperatures.items():
            print(f"| {temperature:.4g} | {codevectors} | {passes} | {pairs:.3g} |")


if __name__ == "__main__":
    main()
