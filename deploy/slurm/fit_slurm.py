"""Fit on a SLURM cluster: dask-jobqueue submits the Dask workers as batch jobs.

Run it where jobs can be submitted (a login node, or a small job of its own): it starts the
scheduler here, keeps ``--jobs`` worker jobs running, and runs ``dask-softkmeans fit`` against
that scheduler.  Arguments after ``--`` go to ``dask-softkmeans fit`` unchanged::

    python deploy/slurm/fit_slurm.py /shared/blobs.zarr/X --jobs 4 --cores 16 --memory 64GiB \\
        --walltime 02:00:00 --queue normal --account myproject --scratch '$TMPDIR' \\
        -- --k 32 --out model.npz
    python deploy/slurm/fit_slurm.py /shared/blobs.zarr/X --dry-run ...   # print the job script

Workers retire themselves ``--lifetime-margin`` before the walltime (``dask worker
--lifetime``), staggered so they do not all leave at once; their data move to other workers and
replacement jobs are submitted, so a fit longer than one walltime goes on.  With ``--tls-dir``
(``ca.pem``, ``cert.pem``, ``key.pem`` on a shared filesystem, e.g. from
``deploy/tls/make-certs.sh``) every connection is TLS.  Needs ``pip install dask-jobqueue``.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from typing import Any

from dask_softkmeans.launch import fit_command, split_fit_args, tls_files

_WALLTIME = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")


def walltime_seconds(walltime: str) -> int:
    """Seconds in a SLURM time limit: ``M``, ``M:S``, ``H:M:S``, ``D-H``, ``D-H:M``, ``D-H:M:S``."""
    match = _WALLTIME.match(walltime.strip())
    if not match:
        raise ValueError(f"walltime {walltime!r} is not a SLURM time limit such as 02:00:00 or 1-12:00")
    days, first, second, third = (int(g) if g is not None else None for g in match.groups())
    if days is not None:  # D-H, D-H:M, D-H:M:S
        hours, minutes, seconds = first, second or 0, third or 0
    elif third is not None:  # H:M:S
        hours, minutes, seconds = first, second, third
    else:  # M or M:S
        hours, minutes, seconds = 0, first, second or 0
    return (((days or 0) * 24 + hours) * 60 + minutes) * 60 + seconds


def lifetime_args(walltime: str, margin_s: int = 300) -> list[str]:
    """``dask worker`` arguments that retire a worker before SLURM kills its job.

    The lifetime is the walltime less ``margin_s`` (time to hand its data over) less a stagger
    of up to a tenth of the walltime (at most 10 minutes), so that workers started together do
    not all retire in the same minute.
    """
    total = walltime_seconds(walltime)
    stagger = min(total // 10, 600)
    lifetime = total - margin_s - stagger
    if lifetime < 60:
        raise ValueError(
            f"walltime {walltime} leaves {lifetime} s of work once {margin_s} s of margin and "
            f"{stagger} s of stagger are taken off; ask for a longer --walltime or a smaller "
            "--lifetime-margin")
    return ["--lifetime", f"{lifetime}s", "--lifetime-stagger", f"{stagger}s"]


def cluster_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments of ``dask_jobqueue.SLURMCluster`` for the parsed command line."""
    kwargs: dict[str, Any] = {
        "cores": args.cores,
        "processes": args.processes,
        "memory": args.memory,
        "walltime": args.walltime,
        "queue": args.queue,
        "account": args.account,
        # spill to the node's local disk, not to the shared filesystem
        "local_directory": args.scratch,
        "worker_extra_args": lifetime_args(args.walltime, args.lifetime_margin),
        "job_extra_directives": args.sbatch,
        "job_script_prologue": args.prologue,
        "interface": args.interface,
        "python": args.python,
        "scheduler_options": {"dashboard_address": args.dashboard_address},
    }
    if args.tls_dir:
        from distributed import Security

        files = tls_files(args.tls_dir)
        kwargs["security"] = Security(
            tls_ca_file=files["ca"], require_encryption=True,
            **{f"tls_{role}_{part}": files[part] for role in ("scheduler", "worker", "client")
               for part in ("cert", "key")})
        kwargs["protocol"] = "tls://"
    return {key: value for key, value in kwargs.items() if value is not None}


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    argv, fit_args = split_fit_args(argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", help="Zarr array to fit, on a filesystem every node sees, or a URL")
    parser.add_argument("--jobs", type=int, default=2, help="worker jobs kept running (default 2)")
    parser.add_argument("--cores", type=int, default=8, help="cores per job (default 8)")
    parser.add_argument("--processes", type=int, default=1,
                        help="worker processes per job; cores are shared among them (default 1)")
    parser.add_argument("--memory", default="32GiB", help="memory per job (default 32GiB)")
    parser.add_argument("--walltime", default="01:00:00", help="per job (default 01:00:00)")
    parser.add_argument("--lifetime-margin", type=int, default=300,
                        help="seconds before the walltime at which workers retire (default 300)")
    parser.add_argument("--queue", help="SLURM partition")
    parser.add_argument("--account", help="SLURM account")
    parser.add_argument("--scratch", default="$TMPDIR",
                        help="node-local spill directory, expanded on the node (default $TMPDIR)")
    parser.add_argument("--sbatch", action="append", default=[], metavar="DIRECTIVE",
                        help="extra #SBATCH directive, e.g. --sbatch=--constraint=skylake")
    parser.add_argument("--prologue", action="append", default=[], metavar="LINE",
                        help="shell line run before the worker, e.g. 'source ~/venv/bin/activate'")
    parser.add_argument("--interface", help="network interface of the workers, e.g. ib0")
    parser.add_argument("--python", help="python on the compute nodes (default: this one)")
    parser.add_argument("--dashboard-address", default=":8787")
    parser.add_argument("--tls-dir", help="directory with ca.pem, cert.pem, key.pem: TLS everywhere")
    parser.add_argument("--dry-run", action="store_true", help="print the job script and exit")
    return parser.parse_args(argv), fit_args


def main(argv: list[str] | None = None) -> int:
    args, fit_args = parse_args(argv)
    from dask_jobqueue import SLURMCluster

    with SLURMCluster(**cluster_kwargs(args)) as cluster:
        if args.dry_run:
            print(cluster.job_script())
            return 0
        # adapt, not scale: a job that ends (lifetime, walltime, preemption) is replaced
        cluster.adapt(minimum_jobs=args.jobs, maximum_jobs=args.jobs)
        print(f"Scheduler {cluster.scheduler_address}, dashboard {cluster.dashboard_link}",
              flush=True)
        return subprocess.call(fit_command(cluster.scheduler_address, args.data, fit_args,
                                           args.tls_dir))


if __name__ == "__main__":
    sys.exit(main())
