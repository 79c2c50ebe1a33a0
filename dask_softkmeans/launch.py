"""Starting clusters: the command line's ``LocalCluster`` and the pieces shared by
the cluster launchers in ``deploy/`` (SLURM, SSH).

The launchers start a cluster with Dask's own tools and then run the
``dask-softkmeans fit`` command against its scheduler; what they share lives
here, so that both build the same command line and read TLS files the same way.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import dask.config

#: Distributed's two most frequent diagnostics, and the lighter values that
#: :func:`local_cluster` starts with.  Every server (scheduler, nanny, worker)
#: checks its event loop's health every 20 ms and every worker samples its
#: threads' stacks every 10 ms.  An idle 2-worker ``LocalCluster`` on a 2-core
#: machine used 91 ms of CPU per second (the process holding the scheduler and
#: the nannies 34, the workers 30 and 27); at these values 26 (13, 7 and 6).
#: With every core busy with a pass, that time is taken from the kernel: a
#: 2-worker pass at 8M x 32 was 9% faster (``benchmarks/pass_anatomy.py``).
#: Both still work: the event loop's warning fires after 3 s without a tick,
#: and the dashboard's profile has ten samples a second.
LIGHT_DIAGNOSTICS: dict[str, str] = {
    "distributed.admin.tick.interval": "500ms",
    "distributed.worker.profile.interval": "100ms",
}


def light_diagnostics() -> dict[str, str]:
    """:data:`LIGHT_DIAGNOSTICS`, less any setting that Dask's configuration has
    changed from distributed's default: a value the user chose is kept."""
    defaults = dask.config.merge(*dask.config.defaults)
    return {key: value for key, value in LIGHT_DIAGNOSTICS.items()
            if dask.config.get(key, None) == dask.config.get(key, None, config=defaults)}


def local_cluster(**kwargs: Any) -> Any:
    """A ``distributed.LocalCluster(**kwargs)`` whose servers run :func:`light_diagnostics`.

    The settings reach the worker processes through their nannies, which copy
    Dask's configuration when they are made; the caller's configuration is
    left as it was.
    """
    from distributed import LocalCluster

    with dask.config.set(light_diagnostics()):
        return LocalCluster(**kwargs)


def tls_files(tls_dir: str) -> dict[str, str]:
    """The CA, certificate and key in ``tls_dir`` (as ``make-certs.sh`` names them), checked to exist."""
    files = {name: str(Path(tls_dir, f"{name}.pem").resolve()) for name in ("ca", "cert", "key")}
    missing = [path for path in files.values() if not Path(path).is_file()]
    if missing:
        raise FileNotFoundError(f"--tls-dir {tls_dir}: missing {', '.join(missing)}; make them "
                                "with deploy/tls/make-certs.sh")
    return files


def fit_command(scheduler_address: str, data: str, fit_args: list[str],
                tls_dir: str | None) -> list[str]:
    """The ``dask-softkmeans fit`` command line run against the cluster's scheduler."""
    executable = shutil.which("dask-softkmeans") or str(Path(sys.executable).with_name("dask-softkmeans"))
    command = [executable, "fit", data, "--scheduler", scheduler_address, *fit_args]
    if tls_dir:
        files = tls_files(tls_dir)
        command += ["--tls-ca-file", files["ca"], "--tls-cert", files["cert"],
                    "--tls-key", files["key"]]
    return command


def split_fit_args(argv: list[str] | None) -> tuple[list[str], list[str]]:
    """``(launcher arguments, fit arguments)``: everything after ``--`` goes to ``fit``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" not in argv:
        return argv, []
    cut = argv.index("--")
    return argv[:cut], argv[cut + 1:]
