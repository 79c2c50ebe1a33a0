"""Out of core: data larger than the workers' memory, streamed from Zarr every pass.

Writes Gaussian blobs to a Zarr store chunk by chunk, starts a LocalCluster whose workers'
memory limits add up to less than the data, fits with ``persist="auto"`` (which decides to
stream), and writes labels and responsibilities back to Zarr block by block: at no point
does the whole dataset, or any per-sample output, sit in one process's memory.

    python examples/out_of_core.py [N_SAMPLES] [WORKER_MEMORY] [PERSIST]
    python examples/out_of_core.py 40000000 600MiB      # 2.4 GiB of data, 1.2 GiB of workers
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

#: What the test suite runs: small, and streamed by request (persist=False), since data
#: this small would be held in memory by persist="auto".
TEST_ARGS = ["100000", "1GiB", "false"]


def main(n_samples: int = 40_000_000, worker_memory: str = "600MiB", persist: str = "auto",
         n_features: int = 16, n_clusters: int = 8) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "blobs.zarr"
        start = time.perf_counter()
        group = write_blobs(path, n_samples, n_features, n_clusters)
        x = group["X"]
        print(f"wrote {x.shape[0]} x {x.shape[1]} float32 ({x.nbytes / 2**20:.0f} MiB) "
              f"in {time.perf_counter() - start:.1f} s")
        with LocalCluster(n_workers=2, threads_per_worker=1, memory_limit=worker_memory,
                          dashboard_address=None) as cluster, Client(cluster) as client:
            memory = sum(w["memory_limit"] for w in client.scheduler_info()["workers"].values())
            print(f"workers' memory: {memory / 2**20:.0f} MiB in all")
            start = time.perf_counter()
            persist_param = {"auto": "auto", "true": True, "false": False}[persist]
            model = SoftKMeans(n_clusters, compute_labels=False, persist=persist_param)
            model.fit(str(path / "X"))
            print(f"fit in {time.perf_counter() - start:.1f} s, {model.n_iter_} passes, "
                  f"data {'persisted' if model.persisted_ else 'streamed from Zarr every pass'}")
            start = time.perf_counter()
            out = model.write_predictions(str(path / "X"), Path(tmp) / "predictions.zarr",
                                          what=("labels", "proba"))
            print(f"labels and responsibilities written to Zarr in "
                  f"{time.perf_counter() - start:.1f} s: "
                  + ", ".join(f"{name} {a.shape} {a.dtype}" for name, a in out.arrays()))
        truth = zarr.open_group(str(path), mode="r")["labels"]
        # Compare a slice: the point is that nothing above needed the whole thing in memory.
        rows = min(n_samples, 1_000_000)
        ari = adjusted_rand_score(truth[:rows], out["labels"][:rows])
        print(f"adjusted Rand index on the first {rows} rows: {ari:.4f}")
        if persist == "auto" and x.nbytes > memory / 2 and model.persisted_:
            raise SystemExit("persist='auto' held data larger than half the workers' memory")
        if ari < 0.99:
            raise SystemExit(f"adjusted Rand index {ari:.4f} < 0.99: the blobs were not recovered")
        return ari


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 40_000_000,
         sys.argv[2] if len(sys.argv) > 2 else "600MiB",
         sys.argv[3] if len(sys.argv) > 3 else "auto")
