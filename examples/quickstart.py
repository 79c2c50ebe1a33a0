"""Laptop quickstart: Gaussian blobs in a Zarr store, a LocalCluster, a fit, a check.

    python examples/quickstart.py [N_SAMPLES]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import zarr
from distributed import Client, LocalCluster
from sklearn.metrics import adjusted_rand_score

from dask_softkmeans import SoftKMeans
from dask_softkmeans.datasets import write_blobs
from dask_softkmeans.metrics import centroid_index

#: Command-line arguments that make this example run in seconds (tests/test_examples.py).
TEST_ARGS = ["5000"]


def main(n_samples: int = 100_000) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "blobs.zarr"
        write_blobs(path, n_samples=n_samples, n_features=4, n_clusters=5, chunk_rows=20_000)
        group = zarr.open_group(str(path), mode="r")
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                          dashboard_address=None) as cluster, Client(cluster):
            start = time.perf_counter()
            model = SoftKMeans(n_clusters=5).fit(str(path / "X"))  # a Zarr path
            seconds = time.perf_counter() - start
        ari = adjusted_rand_score(group["labels"][:], model.labels_)
        print(f"fit {n_samples} x 4 in {seconds:.2f} s, {model.n_iter_} passes")
        print(f"centroid index vs generating centers: "
              f"{centroid_index(model.cluster_centers_, group['centers'][:])}")
        print(f"adjusted Rand index: {ari:.4f}")
        return ari


if __name__ == "__main__":
    ari = main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
    if ari < 0.99:  # a check you can delete: well-separated blobs are all found
        raise SystemExit(f"adjusted Rand index {ari:.4f} < 0.99: the blobs were not all found")
