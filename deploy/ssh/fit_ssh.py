"""Fit on machines you can reach by SSH: ``distributed.SSHCluster`` starts the scheduler on
the first host and workers on the others, then ``dask-softkmeans fit`` runs against it.

Every host needs the same Python environment (same dask, distributed, numpy, dask-softkmeans
versions) at the same path, and the data at the same path or URL.  Arguments after ``--`` go
to ``dask-softkmeans fit`` unchanged::

    python deploy/ssh/fit_ssh.py /shared/blobs.zarr/X --hosts node0 node1 node2 \\
        --nthreads 8 --memory-limit 30GiB --scratch /local/scratch -- --k 32 --out model.npz
    python deploy/ssh/fit_ssh.py ... --dry-run    # print the SSHCluster arguments and exit

With ``--tls-dir`` (``ca.pem``, ``cert.pem``, ``key.pem`` at the same path on every host, e.g.
from ``deploy/tls/make-certs.sh``) the scheduler listens on tls:// and every connection is
mutually authenticated: SSHCluster passes this process's Dask configuration to the remote
scheduler and workers, so the TLS settings are set there.  Needs ``pip install asyncssh``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from typing import Any

from dask_softkmeans.launch import fit_command, split_fit_args, tls_files


def tls_config(tls_dir: str) -> dict[str, Any]:
    """Dask configuration for TLS in every role, inherited by the remote processes."""
    files = tls_files(tls_dir)
    config: dict[str, Any] = {"distributed.comm.require-encryption": True,
                              "distributed.comm.tls.ca-file": files["ca"]}
    for role in ("scheduler", "worker", "client"):
        config[f"distributed.comm.tls.{role}.cert"] = files["cert"]
        config[f"distributed.comm.tls.{role}.key"] = files["key"]
    return config


def cluster_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments of ``distributed.SSHCluster`` for the parsed command line."""
    if len(args.hosts) < 2:
        raise ValueError("--hosts needs the scheduler's host and at least one worker host "
                         "(repeat the first to run a worker next to the scheduler)")
    connect: dict[str, Any] = {}
    if args.ssh_user:
        connect["username"] = args.ssh_user
    if args.ssh_key:
        connect["client_keys"] = [args.ssh_key]
    return {
        "hosts": args.hosts,
        "connect_options": connect,
        "worker_options": {"n_workers": args.nworkers, "nthreads": args.nthreads,
                           "memory_limit": args.memory_limit,
                           # spill to a local disk of each host
                           "local_directory": args.scratch},
        "scheduler_options": {"port": args.port, "dashboard_address": args.dashboard_address,
                              "protocol": "tls" if args.tls_dir else "tcp"},
        "remote_python": args.remote_python or sys.executable,
    }


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    argv, fit_args = split_fit_args(argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", help="Zarr array to fit, at the same path on every host, or a URL")
    parser.add_argument("--hosts", nargs="+", required=True,
                        help="scheduler host, then worker hosts (repeat a host for more workers)")
    parser.add_argument("--nworkers", type=int, default=1, help="worker processes per host")
    parser.add_argument("--nthreads", type=int, default=4, help="threads per worker process")
    parser.add_argument("--memory-limit", default="auto", help="memory per worker process")
    parser.add_argument("--scratch", default=None, help="local spill directory on every host")
    parser.add_argument("--port", type=int, default=8786, help="scheduler port")
    parser.add_argument("--dashboard-address", default=":8787")
    parser.add_argument("--ssh-user", help="remote user name (default: as ssh would pick)")
    parser.add_argument("--ssh-key", help="private key file for SSH")
    parser.add_argument("--remote-python", help="python on the hosts (default: this one's path)")
    parser.add_argument("--tls-dir", help="directory with ca.pem, cert.pem, key.pem: TLS everywhere")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the SSHCluster arguments and Dask configuration, and exit")
    return parser.parse_args(argv), fit_args


def main(argv: list[str] | None = None) -> int:
    args, fit_args = parse_args(argv)
    kwargs = cluster_kwargs(args)
    config = tls_config(args.tls_dir) if args.tls_dir else {}
    if args.dry_run:
        print(json.dumps({"SSHCluster": kwargs, "dask.config": config}, indent=2))
        return 0
    import dask
    from distributed import SSHCluster

    with dask.config.set(config), SSHCluster(**kwargs) as cluster:
        print(f"Scheduler {cluster.scheduler_address}, dashboard {cluster.dashboard_link}",
              flush=True)
        return subprocess.call(fit_command(cluster.scheduler_address, args.data, fit_args,
                                           args.tls_dir))


if __name__ == "__main__":
    sys.exit(main())
