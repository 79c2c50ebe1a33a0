"""One default fit against scikit-learn's ``KMeans(n_init=10)`` over K, on three small real sets.

Standardised digits, wine and breast cancer (scikit-learn's copies), at K = 3 to 20: the
inertia of our default fit as a ratio to ``KMeans(n_init=10, random_state=0)``'s and the
fit's passes, per case, then the totals that a change to the annealing or the swap check
is judged by (passes in all, the worst ratio, the cases above 1, the geometric mean). No
timing: the passes are the cost, and they do not depend on the load.

    python benchmarks/small_sets.py                    # float64, as loaded
    python benchmarks/small_sets.py --dtype float32
    PYTHONPATH=/path/to/other/checkout python benchmarks/small_sets.py   # another version
"""

from __future__ import annotations

import argparse
import math
import warnings

import numpy as np
from _results import add_results_option, recorded
from sklearn.cluster import KMeans
from sklearn.datasets import load_breast_cancer, load_digits, load_wine
from sklearn.preprocessing import StandardScaler

from dask_softkmeans import SoftKMeans

CASES = {
    "digits": (load_digits, (3, 5, 8, 10, 12, 15, 20)),
    "wine": (load_wine, (3, 5, 8, 10)),
    "breast cancer": (load_breast_cancer, (2, 3, 5, 8, 10, 15, 20)),
}


def run(dtype: type) -> None:
    print(f"one default fit per case, {np.dtype(dtype).name} input; the anchor in float64\n")
    print("| set | K | inertia / KMeans(n_init=10) | passes |")
    print("|---|---|---|---|")
    ratios, passes = [], 0
    for name, (loader, ks) in CASES.items():
        x = StandardScaler().fit_transform(loader().data)
        for k in ks:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # KMeans' memory-leak notice on some systems
                anchor = KMeans(k, n_init=10, random_state=0).fit(x).inertia_
            model = SoftKMeans(k).fit(x.astype(dtype))
            ratio = model.inertia_ / anchor
            ratios.append(ratio)
            passes += model.n_iter_
            print(f"| {name} | {k} | {ratio:.5f} | {model.n_iter_} |")
    mean = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
    print(f"\npasses in all {passes}; worst ratio {max(ratios):.5f}; "
          f"above 1 in {sum(r > 1 for r in ratios)} of {len(ratios)}; geometric mean {mean:.5f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    add_results_option(parser)
    args = parser.parse_args()
    with recorded("small_sets", args.results_dir):
        run(np.dtype(args.dtype).type)


if __name__ == "__main__":
    main()
