"""What a worker process uses before any data: fresh, then with the compiled kernel loaded.

One worker process of a ``LocalCluster`` (``processes=True``), its resident memory
read with psutil right after it starts and after :func:`dask_softkmeans.engine.load_kernel`,
and the heavy modules it then holds.  Run twice: as installed, and with xarray hidden
from the workers (a module named ``xarray`` on their path that refuses to import), since
``dask.array`` imports xarray, and with it pandas and pyarrow, wherever it is installed.

    python benchmarks/worker_memory.py
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from _results import add_results_option, recorded

MODULES = ("numba", "scipy", "xarray", "pandas", "pyarrow", "sklearn")


def _measure() -> None:
    """In this process: start one worker, print its memory fresh and with the kernel."""
    from distributed import Client, LocalCluster

    from dask_softkmeans.engine import load_kernel

    def rss(dask_worker=None):
        import psutil

        held = [name for name in MODULES if name in sys.modules]
        return psutil.Process().memory_info().rss / 2**20, held

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        (fresh, _), = client.run(rss).values()
        load_kernel(client)
        (loaded, held), = client.run(rss).values()
    print(f"{fresh:.0f}\t{loaded:.0f}\t{', '.join(held) or '-'}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="worker processes per case")
    add_results_option(parser)
    args = parser.parse_args(argv)
    with recorded("worker_memory", args.results_dir), tempfile.TemporaryDirectory() as hide:
        Path(hide, "xarray.py").write_text("raise ImportError('hidden by worker_memory.py')\n")
        cases = {"as installed": {}, "xarray hidden": {"PYTHONPATH": hide}}
        print("| case | fresh worker, MiB | after loading the kernel, MiB | heavy modules held |")
        print("|---|---|---|---|")
        for case, env in cases.items():
            for _ in range(args.repeats):
                out = subprocess.run(
                    [sys.executable, __file__, "--measure"], env=dict(os.environ, **env),
                    capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
                fresh, loaded, held = out.split("\t")
                print(f"| {case} | {fresh} | {loaded} | {held} |")


if __name__ == "__main__":
    if sys.argv[1:] == ["--measure"]:
        _measure()
    else:
        main()
