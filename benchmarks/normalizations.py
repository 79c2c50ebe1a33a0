"""Softmax against the sparse maps (entmax-1.5, sparsemax) in the fit, on the 12 SIPU sets.

Run from the repository root::

    python benchmarks/normalizations.py                    # all sets, then digits
    python benchmarks/normalizations.py --sets s1 a1 --no-digits

For every set and every ``SoftKMeans(normalization=...)``: the centroid index
(CI, 0 = every reference cluster found), the inertia as a ratio to the
reference partition's, the passes over the data (``n_iter_``: annealing,
Lloyd and swap passes; the annealing's run on a sample when the set is large)
and the seconds of the fit (median of ``--repeat`` runs, interleaved with
scikit-learn ``KMeans(n_init=10)``, whose median time is the anchor: the
ratio is what to compare across machines).

Then the cost of one pass against K at a fixed small support (the sparse
pass's work after the distances follows the support), and the digits RBF
example (``examples/rbf_network.py``'s network on scikit-learn's 8x8 digits,
ridge read-out): the same network with each map as its clustering's and its
hidden layer's, held-out accuracy.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from _results import add_results_option, recorded
from quality import DEFAULT_DATA, SETS, inertia, load
from sklearn.cluster import KMeans

from dask_softkmeans import SoftKMeans
from dask_softkmeans.metrics import centroid_index

NORMALIZATIONS = ("softmax", "entmax15", "sparsemax")


def run_set(name: str, root: Path, repeat: int) -> list[dict]:
    """One row per normalisation of one SIPU set."""
    x, y = load(name, root)
    labels = np.unique(y)
    reference = np.array([x[y == k].mean(0) for k in labels])
    k = len(labels)
    ref_inertia = inertia(x, reference)
    fits: dict[str, list] = {n: [] for n in NORMALIZATIONS}
    anchor = []
    for _ in range(repeat):
        for normalization in NORMALIZATIONS:
            model = SoftKMeans(k, normalization=normalization, compute_labels=False)
            start = time.perf_counter()
            model.fit(x)
            fits[normalization].append((model, time.perf_counter() - start))
        start = time.perf_counter()
        KMeans(k, n_init=10, random_state=0).fit(x)
        anchor.append(time.perf_counter() - start)
    anchor_s = float(np.median(anchor))
    rows = []
    for normalization, runs in fits.items():
        model = runs[0][0]  # deterministic: every run gives the same centers
        seconds = float(np.median([s for _, s in runs]))
        rows.append({
            "set": name, "normalization": normalization,
            "ci": centroid_index(model.cluster_centers_, reference),
            "inertia": inertia(x, model.cluster_centers_) / ref_inertia,
            "passes": model.n_iter_, "seconds": seconds, "vs_sklearn": seconds / anchor_s,
        })
    return rows


def digits(repeat: int, splits: int) -> list[dict]:
    """Held-out accuracy of the digits RBF network (``examples/rbf_network.py``: 40 centers,
    ridge read-out, pixels / 16) with each map as both the clustering's and the hidden
    layer's, mean over ``splits`` stratified 70/30 splits."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    from dask_softkmeans import RBFNetworkClassifier

    x, y = load_digits(return_X_y=True)
    x = x / 16.0
    rows = []
    for normalization in NORMALIZATIONS:
        accuracy, times = [], []
        for split in range(splits):
            x_train, x_test, y_train, y_test = train_test_split(
                x, y, test_size=0.3, random_state=split, stratify=y)
            for _ in range(repeat):
                net = RBFNetworkClassifier(40, normalization=normalization,
                                           clustering={"normalization": normalization})
                start = time.perf_counter()
                net.fit(x_train, y_train)
                times.append(time.perf_counter() - start)
            accuracy.append(net.score(x_test, y_test))
        rows.append({"normalization": normalization, "accuracy": float(np.mean(accuracy)),
                     "spread": float(np.std(accuracy)), "seconds": float(np.median(times))})
    return rows


def pass_costs(repeat: int) -> list[dict]:
    """Seconds of one pass (moments included, as in the annealing) on blobs, N = 20000, D = 16,
    at a temperature where a row's support holds one to a few centers, against K: the sparse
    pass, the dense NumPy reference of the same map, and the compiled softmax pass."""
    from dask_softkmeans.kernels import block_statistics, reference_statistics, sparse_statistics

    rng = np.random.default_rng(0)
    rows = []
    for k in (16, 64, 256):
        centers = rng.uniform(-20, 20, size=(k, 16))
        x = centers[rng.integers(0, k, 20000)] + rng.normal(size=(20000, 16))
        directions = rng.normal(size=(k, 16))
        kw = {"moments": "power", "directions": directions}
        temperature = 4.0
        for normalization in ("entmax15", "sparsemax"):
            timings = {}
            for name, fn in (("sparse", sparse_statistics), ("reference", reference_statistics)):
                runs = []
                for _ in range(repeat):
                    start = time.perf_counter()
                    fn(x, centers, temperature, normalization=normalization, **kw)
                    runs.append(time.perf_counter() - start)
                timings[name] = float(np.median(runs))
            runs = []
            for _ in range(repeat):
                start = time.perf_counter()
                block_statistics(x, centers, temperature, **kw)
                runs.append(time.perf_counter() - start)
            from dask_softkmeans.kernels.reference import responsibilities

            support = float((responsibilities(x[:2000], centers, temperature,
                                              normalization=normalization) > 0).sum(1).mean())
            rows.append({"k": k, "normalization": normalization, "support": support,
                         **timings, "softmax": float(np.median(runs))})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="*", default=SETS)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--repeat", type=int, default=1,
                        help="timed runs of every fit (median reported)")
    parser.add_argument("--no-digits", action="store_true", help="skip the digits RBF network")
    parser.add_argument("--splits", type=int, default=5, help="digits train/test splits")
    parser.add_argument("--no-pass", action="store_true", help="skip the cost of one pass")
    add_results_option(parser)
    args = parser.parse_args()
    with recorded("normalizations", args.results_dir):
        _run(args)


def _run(args: argparse.Namespace) -> None:
    start = time.perf_counter()
    for normalization in NORMALIZATIONS:  # compile / load the kernels before timing
        SoftKMeans(2, normalization=normalization).fit(
            np.random.default_rng(0).normal(size=(100, 2)))
    print(f"kernel load and first tiny fits: {time.perf_counter() - start:.2f} s (not in the table)")
    print()
    print("| set | normalization | CI | inertia / reference | passes | s per fit | "
          "s / sklearn n_init=10 s |")
    print("|---|---|---|---|---|---|---|")
    found = {n: 0 for n in NORMALIZATIONS}
    for name in args.sets:
        for row in run_set(name, args.data, args.repeat):
            found[row["normalization"]] += row["ci"] == 0
            print(f"| {row['set']} | {row['normalization']} | {row['ci']} | "
                  f"{row['inertia']:.4f} | {row['passes']} | {row['seconds']:.2f} | "
                  f"{row['vs_sklearn']:.2f} |", flush=True)
    print()
    print("sets with CI = 0: " + ", ".join(
        f"{n} {found[n]}/{len(args.sets)}" for n in NORMALIZATIONS))
    if not args.no_pass:
        print()
        print("| K | map | mean support | sparse pass s | dense NumPy reference s | "
              "reference / sparse | compiled softmax pass s |")
        print("|---|---|---|---|---|---|---|")
        for row in pass_costs(max(args.repeat, 3)):
            print(f"| {row['k']} | {row['normalization']} | {row['support']:.2f} | "
                  f"{row['sparse']:.3f} | {row['reference']:.3f} | "
                  f"{row['reference'] / row['sparse']:.1f} | {row['softmax']:.3f} |", flush=True)
    if not args.no_digits:
        print()
        print(f"| digits RBF network (40 centers, ridge), map | held-out accuracy, mean of "
              f"{args.splits} splits | spread | s per fit |")
        print("|---|---|---|---|")
        for row in digits(args.repeat, args.splits):
            print(f"| {row['normalization']} | {row['accuracy']:.4f} | {row['spread']:.4f} | "
                  f"{row['seconds']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
