"""Many clusters: fit time and centroid index against K, ours against scikit-learn and faiss.

Run from the repository root::

    python benchmarks/large_k.py                      # 200k x 32, K = 256 and 1024
    python benchmarks/large_k.py --ks 256             # one K
    python benchmarks/large_k.py --long               # also K = 4096, and 1M x 64 at K = 1024

Data: float32 Gaussian blobs of unit noise, as many blobs as clusters asked for, with
unbalanced sizes (Dirichlet shares, concentration ``--alpha``) and centers uniform in a box of
side ``2 * 6 * K ** (1 / D)`` (so that the density of centers stays the same as K grows);
deterministic for a given ``--seed``.  Every system runs in this one process, on all its
cores, on the same NumPy array, once per K:

- ours: ``SoftKMeans(K)`` with its defaults (``compute_labels=False``), after a small fit
  that loads the compiled kernel;
- scikit-learn ``KMeans(K, n_init=1, random_state=0)``;
- faiss ``Kmeans(niter=25, seed=1)`` (optional: ``pip install faiss-cpu``; skipped when
  absent).

Reported per system: seconds, the centroid index (CI) against the generating partition's
means (0: every blob found), and the inertia as a ratio to scikit-learn's.  For ours, the
passes split by where they ran (the annealing sample, the full data) and by phase, with the
rows per pass and the seconds each part took.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import time
from collections import defaultdict
from typing import Any

import numpy as np
from _results import add_results_option, recorded
from sklearn.cluster import KMeans

from dask_softkmeans import SoftKMeans
from dask_softkmeans.kernels import nearest
from dask_softkmeans.metrics import centroid_index


def make_blobs(n: int, d: int, k: int, seed: int, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """``n`` float32 rows in ``k`` unit-noise blobs of Dirichlet sizes, and their labels."""
    rng = np.random.default_rng(seed)
    side = 2.0 * 6.0 * k ** (1.0 / d)
    centers = rng.uniform(-side / 2.0, side / 2.0, (k, d))
    sizes = rng.multinomial(n, rng.dirichlet(np.full(k, alpha)))
    labels = np.repeat(np.arange(k), sizes)
    rng.shuffle(labels)
    x = np.empty((n, d), dtype=np.float32)
    for start in range(0, n, 50_000):  # in blocks: no float64 copy of all rows
        stop = min(n, start + 50_000)
        x[start:stop] = centers[labels[start:stop]] + rng.standard_normal((stop - start, d))
    return x, labels


def inertia(x: np.ndarray, centers: np.ndarray) -> float:
    """Sum of squared distances to the nearest center, computed the same way for every system."""
    return float(nearest(x, np.asarray(centers, np.float64), offset=x.mean(0))[1].sum())


def faiss_module() -> Any:
    try:
        import faiss
    except ImportError:
        return None
    return faiss


def our_passes(history: list[dict]) -> list[str]:
    """Table rows by data source, phase and second moments: passes, mean rows per pass,
    seconds."""
    groups: dict[tuple[str, str, str], list[dict]] = defaultdict(list)
    for record in history:
        # Records written before passes said whether they carried moments count as "?".
        moments = {True: "yes", False: "no"}.get(record.get("moments"), "?")
        groups[(record["data"], record["phase"], moments)].append(record)
    rows = []
    for (data, phase, moments), records in groups.items():
        seconds = sum(r["seconds"] for r in records)
        mean_rows = sum(r["weight"] for r in records) / len(records)
        rows.append(f"| {data} | {phase} | {moments} | {len(records)} | {mean_rows:,.0f} | "
                    f"{seconds:.1f} | {1e3 * seconds / len(records):.0f} |")
    return rows


def final_creep(history: list[dict]) -> str:
    """The Lloyd passes over all rows after the last swap pass: how many, their seconds,
    how many the safeguard took back (the stretched step raised the inertia), and what
    they gained (the first one's inertia above the last one's, relative)."""
    last_swap = max((i for i, r in enumerate(history) if r["phase"] == "swap"), default=-1)
    tail = [r for r in history[last_swap + 1:] if r["phase"] == "lloyd" and r["data"] != "sample"]
    if not tail:
        return "No Lloyd passes over all rows after the swap check."
    back = sum(later["inertia"] > earlier["inertia"] for earlier, later in itertools.pairwise(tail))
    gained = tail[0]["inertia"] / tail[-1]["inertia"] - 1.0
    seconds = sum(r["seconds"] for r in tail)
    return (f"After the swap check: {len(tail)} Lloyd passes over all rows, "
            f"{seconds:.1f} s, {back} of them taken back (a stretched step that raised the "
            f"inertia); the first of them {gained:.2e} above the final inertia (relative).")


def run_k(x: np.ndarray, labels: np.ndarray, k: int, systems: list[str]) -> None:
    reference = np.array([x[labels == j].mean(0) for j in np.unique(labels)], np.float64)
    results: dict[str, tuple[float, np.ndarray, str]] = {}
    start = time.perf_counter()
    model = SoftKMeans(k, compute_labels=False).fit(x)
    results["ours (SoftKMeans defaults)"] = (
        time.perf_counter() - start, model.cluster_centers_, f"{len(model.history_)} passes")
    history = model.history_
    anchor = "ours (SoftKMeans defaults)"
    if "sklearn" in systems:
        start = time.perf_counter()
        km = KMeans(k, n_init=1, random_state=0).fit(x)
        anchor = "sklearn KMeans(n_init=1)"
        results[anchor] = (time.perf_counter() - start, km.cluster_centers_,
                           f"{km.n_iter_} iterations")
    faiss = faiss_module() if "faiss" in systems else None
    if faiss is not None:
        start = time.perf_counter()
        fk = faiss.Kmeans(x.shape[1], k, niter=25, seed=1)
        fk.train(x)
        results["faiss niter=25"] = (time.perf_counter() - start, fk.centroids, "25 iterations")
    anchor_s, anchor_j = results[anchor][0], inertia(x, results[anchor][1])
    print(f"\n## {x.shape[0]:,} x {x.shape[1]}, K = {k} ({len(reference)} blobs)\n")
    print(f"| system | s | / {anchor} s | CI | inertia / {anchor}'s | |\n"
          "|---|---|---|---|---|---|")
    for name, (seconds, centers, note) in results.items():
        ci = centroid_index(np.asarray(centers, np.float64), reference)
        print(f"| {name} | {seconds:.1f} | {seconds / anchor_s:.2f} | {ci} | "
              f"{inertia(x, centers) / anchor_j:.4f} | {note} |")
    print("\nOur passes:\n\n| data | phase | second moments | passes | mean rows per pass | s "
          "| ms per pass |\n|---|---|---|---|---|---|---|")
    print("\n".join(our_passes(history)))
    print("\n" + final_creep(history))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-samples", type=int, default=200_000)
    parser.add_argument("--n-features", type=int, default=32)
    parser.add_argument("--ks", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--alpha", type=float, default=2.0,
                        help="Dirichlet concentration of the blob sizes (smaller: more unequal)")
    parser.add_argument("--long", action="store_true",
                        help="also K = 4096 at the default shape, and 1M x 64 at K = 1024")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--systems", nargs="+", default=["sklearn", "faiss"],
                        choices=["sklearn", "faiss"],
                        help="anchors beside our fit (ours always runs)")
    add_results_option(parser)
    args = parser.parse_args(argv)
    with recorded("large_k", args.results_dir):
        print(f"faiss {'present' if faiss_module() else 'absent (pip install faiss-cpu)'}; "
              f"Dirichlet concentration {args.alpha}, seed {args.seed}")
        warm, _ = make_blobs(5_000, args.n_features, 8, args.seed, args.alpha)
        SoftKMeans(8, compute_labels=False).fit(warm)  # loads the compiled kernel
        shapes = [(args.n_samples, args.n_features, k) for k in args.ks]
        if args.long:
            shapes += [(args.n_samples, args.n_features, 4096), (1_000_000, 64, 1024)]
        for n, d, k in shapes:
            x, labels = make_blobs(n, d, k, args.seed, args.alpha)
            run_k(x, labels, k, args.systems)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
