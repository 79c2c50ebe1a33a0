"""Shared fixtures: small data, a real LocalCluster, real Zarr stores under tmp_path, real
``dask scheduler`` and ``dask worker`` processes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import make_blobs

BIN = Path(sys.executable).parent  # the virtual environment's scripts: dask, dask-softkmeans
START_TIMEOUT = 60  # seconds for the scheduler file to appear, and for the workers to join


def _stop(processes: list[subprocess.Popen]) -> None:
    """SIGTERM each process group we started (a worker's nanny has a child), then SIGKILL."""
    for proc in reversed(processes):  # workers before the scheduler
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    for proc in processes:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the group may outlive its leader
        proc.wait(timeout=10)


def process_logs(directory: Path) -> str:
    """The tails of the logs of the processes :func:`dask_processes` started in ``directory``."""
    return "\n".join(f"--- {path.name}\n{path.read_text()[-3000:]}"
                     for path in sorted(directory.glob("*.log")))


@contextlib.contextmanager
def _dask_processes(directory: Path, scheduler: list[str], workers: list[list[str]],
                    worker_cwd: Path | None = None, security: object = None) -> Iterator[str]:
    """A real ``dask scheduler`` (arguments ``scheduler``) and one ``dask worker`` per item
    of ``workers`` (its arguments), each in a session of its own, logging to
    ``directory/NAME.log``, the workers run from ``worker_cwd``.  Yields the scheduler's
    address, read from its scheduler file (``--port 0``: no race for a free port), once
    every worker has joined (a client with ``security`` waits for them).  Every process
    is stopped on the way out, whatever the test did."""
    scheduler_file = directory / "scheduler.json"
    commands = {
        "scheduler": [str(BIN / "dask"), "scheduler", "--port", "0", "--no-dashboard",
                      "--scheduler-file", str(scheduler_file),
                      # a safety net should pytest itself be killed: orphans exit on their own
                      "--idle-timeout", "300s", *scheduler],
        **{f"worker-{i}": [str(BIN / "dask"), "worker", "--scheduler-file", str(scheduler_file),
                           "--no-dashboard", "--name", f"worker-{i}", "--death-timeout", "60",
                           "--local-directory", str(directory / f"worker-{i}"), *args]
           for i, args in enumerate(workers)},
    }
    processes: list[subprocess.Popen] = []
    try:
        for name, command in commands.items():
            with open(directory / f"{name}.log", "w") as log:
                processes.append(subprocess.Popen(
                    command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                    cwd=None if name == "scheduler" else worker_cwd))
        deadline = time.monotonic() + START_TIMEOUT
        while not scheduler_file.exists() and time.monotonic() < deadline:
            assert processes[0].poll() is None, process_logs(directory)
            time.sleep(0.2)
        assert scheduler_file.exists(), "scheduler did not start:\n" + process_logs(directory)
        address = json.loads(scheduler_file.read_text())["address"]
        from distributed import Client

        with Client(address, security=security, timeout=START_TIMEOUT) as client:
            try:
                client.wait_for_workers(len(workers), timeout=START_TIMEOUT)
            except TimeoutError:
                pytest.fail("workers did not join:\n" + process_logs(directory))
        yield address
    finally:
        _stop(processes)


@pytest.fixture(scope="session")
def dask_processes():
    """:func:`_dask_processes`: start real scheduler and worker processes for a test."""
    return _dask_processes


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
