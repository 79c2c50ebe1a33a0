"""Shared fixtures: small data, a real LocalCluster, real Zarr stores under tmp_path."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_blobs


@pytest.fixture(scope="session")
def blobs() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Four well-separated 3-D blobs: the clustering is easy and has one right answer."""
    x, y, centers = make_blobs(
        n_samples=2000, n_features=3, centers=4, cluster_std=0.5, center_box=(-20, 20),
        random_state=1, return_centers=True)
    return x, y, centers


@pytest.fixture(scope="module")
def client():
    """A real LocalCluster in this process (threads): where processes do not matter."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as c:
        yield c
