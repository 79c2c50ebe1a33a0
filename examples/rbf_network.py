"""Soft k-means inside a larger model: an RBF network on scikit-learn's digits.

    python examples/rbf_network.py [--centers 40] [--splits 5] [--max-iter 600] [--dask]

The hidden layer of the network is the soft k-means responsibility layer at
temperature T (a normalised Gaussian RBF layer).  Held-out accuracy of:

- logistic regression on the raw pixels (the baseline);
- the RBF network on the annealed soft k-means centers, read-out by the
  tree-reduced ridge normal equations (training="ridge");
- the same centers, read-out trained by gradient descent on the cross-entropy
  (training="readout": the same loss and budget as the joint row, centers fixed);
- centers and read-out trained jointly on cross-entropy + lambda x free energy
  (training="joint"), and with a learned temperature as well.

Each row is the mean (and spread) over ``--splits`` stratified 70/30 splits.
With ``--dask`` the data are chunked Dask arrays and every pass is a map over
the blocks and a tree reduction (threaded scheduler); the numbers are the same.
"""

from __future__ import annotations

import argparse
import time

import dask.array as da
import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

from dask_softkmeans import RBFNetworkClassifier

#: Arguments that make the example finish in seconds (tests/test_examples.py).
TEST_ARGS = ["--centers", "12", "--splits", "1", "--max-iter", "40"]


def main(argv: list[str] | None = None) -> dict[str, list[float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--centers", type=int, default=40, help="hidden units K")
    parser.add_argument("--splits", type=int, default=5, help="train/test splits to average")
    parser.add_argument("--max-iter", type=int, default=600, help="gradient passes")
    parser.add_argument("--learning-rate", type=float, default=0.03)
    parser.add_argument("--free-energy-weight", type=float, default=0.1)
    parser.add_argument("--dask", action="store_true", help="chunked Dask arrays")
    args = parser.parse_args(argv)

    X, y = load_digits(return_X_y=True)
    X = X / 16.0  # pixels in [0, 1]
    gradient = {"max_iter": args.max_iter, "learning_rate": args.learning_rate,
                "free_energy_weight": args.free_energy_weight}
    models = {
        "logistic regression, raw pixels": lambda: LogisticRegression(max_iter=5000),
        "RBF, clustered centers, ridge read-out": lambda: RBFNetworkClassifier(args.centers),
        "RBF, clustered centers, trained read-out": lambda: RBFNetworkClassifier(
            args.centers, training="readout", **gradient),
        "RBF, joint (centers + read-out)": lambda: RBFNetworkClassifier(
            args.centers, training="joint", **gradient),
        "RBF, joint + learned T": lambda: RBFNetworkClassifier(
            args.centers, training="joint", learn_temperature=True, **gradient),
    }
    scores: dict[str, list[float]] = {name: [] for name in models}
    train: dict[str, list[float]] = {name: [] for name in models}
    seconds: dict[str, float] = dict.fromkeys(models, 0.0)
    temperature: dict[str, list[float]] = {name: [] for name in models}
    passes: dict[str, list[int]] = {name: [] for name in models}
    for split in range(args.splits):
        X_train, X_test, y_train, y_test = train_test_split(
            X, y, test_size=0.3, random_state=split, stratify=y)
        for name, make in models.items():
            model = make()
            fit_X, fit_y = X_train, y_train
            if args.dask and isinstance(model, RBFNetworkClassifier):
                fit_X = da.from_array(X_train, chunks=(256, X.shape[1]))
                fit_y = da.from_array(y_train, chunks=256)
            start = time.perf_counter()
            model.fit(fit_X, fit_y)
            seconds[name] += time.perf_counter() - start
            scores[name].append(float(np.mean(np.asarray(model.predict(X_test)) == y_test)))
            train[name].append(float(np.mean(np.asarray(model.predict(X_train)) == y_train)))
            if isinstance(model, RBFNetworkClassifier):
                temperature[name].append(model.temperature_)
                passes[name].append(model.n_iter_)

    print(f"digits, {args.splits} splits (70/30), K={args.centers} centers, "
          f"{args.max_iter} gradient passes, lr={args.learning_rate}, "
          f"lambda={args.free_energy_weight}{', Dask arrays' if args.dask else ''}")
    print("| model | test accuracy | spread | train accuracy | final T | passes | s per fit |")
    print("|---|---|---|---|---|---|---|")
    for name in models:
        t = f"{np.mean(temperature[name]):.3f}" if temperature[name] else "–"
        n = f"{np.mean(passes[name]):.0f}" if passes[name] else "–"
        print(f"| {name} | {np.mean(scores[name]):.4f} | ±{np.std(scores[name]):.4f} | "
              f"{np.mean(train[name]):.4f} | {t} | {n} | {seconds[name] / args.splits:.1f} |")
    if np.mean(scores["RBF, clustered centers, ridge read-out"]) < 0.7:
        raise SystemExit("The clustered-centers RBF network scored below 0.7: something broke.")
    return scores


if __name__ == "__main__":
    main()
