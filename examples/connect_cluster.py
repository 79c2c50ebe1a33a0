"""Fit on an existing Dask cluster, or on a LocalCluster started here when none is given.

    python examples/connect_cluster.py tcp://scheduler-host:8786   # a running cluster
    python examples/connect_cluster.py                              # a LocalCluster here

The address is the one ``dask scheduler`` prints (``deploy/`` has recipes for
SSH hosts, SLURM, Kubernetes and TLS).  The data are generated lazily *on the
workers* (a Dask array of Gaussian blobs), so nothing travels from this
machine but the small task graph; with real data, point the fit at a Zarr
path or URL every worker can read (a shared file system, ``s3://...``).
The fit uses the active ``Client``: each pass maps a NumPy kernel over the
row blocks where they live and sends back ``O(K·D)`` numbers.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Iterator

import dask.array as da
import numpy as np
from distributed import Client, LocalCluster
from sklearn.metrics import adjusted_rand_score

from dask_softkmeans import SoftKMeans
from dask_softkmeans.metrics import centroid_index

#: Command-line arguments that make this example run in seconds (tests/test_examples.py).
TEST_ARGS = ["--n-samples", "20000", "--workers", "1"]


@contextlib.contextmanager
def connect(address: str | None, workers: int) -> Iterator[Client]:
    """A client of the scheduler at ``address``, or of a LocalCluster started (and stopped) here."""
    if address:
        with Client(address) as client:
            print(f"Connected to {address}")
            yield client
        return
    with LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        print(f"Started a LocalCluster at {cluster.scheduler_address}")
        yield client


def blobs(n_samples: int, centers: np.ndarray, chunk_rows: int, seed: int = 0
          ) -> tuple[da.Array, da.Array]:
    """Lazy Gaussian blobs around ``centers``: every block is generated where it is computed."""
    rng = da.random.default_rng(seed)
    labels = rng.integers(0, len(centers), size=n_samples, chunks=chunk_rows)
    means = labels.map_blocks(lambda block: centers[block], new_axis=1,
                              chunks=(labels.chunks[0], (centers.shape[1],)), dtype=np.float64)
    noise = rng.standard_normal((n_samples, centers.shape[1]), chunks=(chunk_rows, -1))
    return means + noise, labels


def main(address: str | None = None, n_samples: int = 1_000_000, n_clusters: int = 8,
         n_features: int = 8, workers: int = 2) -> int:
    """Fit ``n_clusters`` blobs on the cluster; return the centroid index (0: every blob found)."""
    centers = np.random.default_rng(1).uniform(-10, 10, size=(n_clusters, n_features))
    X, truth = blobs(n_samples, centers, chunk_rows=max(n_samples // 16, 1000))
    with connect(address, workers) as client:
        print(f"  {len(client.scheduler_info()['workers'])} workers, "
              f"dashboard {client.dashboard_link}")
        start = time.perf_counter()
        # compute_labels=False: the labels stay on the cluster as a Dask array (predict below).
        model = SoftKMeans(n_clusters, compute_labels=False).fit(X)
        seconds = time.perf_counter() - start
        labels = model.predict(X)  # lazy, computed by the workers
        sizes = da.bincount(labels, minlength=n_clusters).compute()
        ari = adjusted_rand_score(truth.compute(), labels.compute())
    print(f"Fitted {n_samples:,} x {n_features} in {seconds:.2f} s ({model.n_iter_} passes)")
    missed = centroid_index(model.cluster_centers_, centers)
    print(f"  centroid index vs generating centers: {missed} (0 = all found)")
    print(f"  adjusted Rand index vs true labels:   {ari:.4f}")
    print(f"  cluster sizes: {sizes.tolist()}")
    return missed


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("address", nargs="?", help="scheduler address, e.g. tcp://host:8786")
    parser.add_argument("--n-samples", type=int, default=1_000_000)
    parser.add_argument("--k", dest="n_clusters", type=int, default=8)
    parser.add_argument("--n-features", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2, help="LocalCluster workers (no address)")
    args = parser.parse_args()
    missed = main(args.address, args.n_samples, args.n_clusters, args.n_features, args.workers)
    if missed:  # a check you can delete: every generating center should get a cluster
        raise SystemExit(f"{missed} generating centers got no cluster (centroid index {missed})")
