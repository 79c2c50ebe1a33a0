"""Starting clusters: the command line's ``LocalCluster`` and the pieces shared by
the cluster launchers in ``deploy/`` (SLURM, SSH).

The launchers start a cluster with Dask's own tools and then run the
``dask-softkmeans fit`` command against its scheduler; what they share lives
here, so that both build the same command line and read TLS files the same way.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dask.config

if TYPE_CHECKING:
    from distributed import LocalCluster

#: Distributed's two most frequent diagnostics, and the lighter values that
#: :func:`local_cluster` starts with.  Every server (scheduler, nanny, worker)
#: checks its event loop's health every 20 ms, and every worker samples its
#: threads' stacks for the dashboard's profile every 10 ms.  With every core
#: busy with a pass, that CPU time is taken from the kernel
#: (``benchmarks/pass_anatomy.py`` measures both, at rest and in a pass).  At
#: these values both still work, more coarsely: the dashboard's event-loop
#: interval reads ~500 ms, the "event loop was unresponsive" warning (3 s
#: between ticks) can fire for a block of 2.5 s, and the profile has ten
#: samples a second (distributed's own test suite runs its servers with a
#: 500 ms tick).
LIGHT_DIAGNOSTICS: dict[str, str] = {
    "distributed.admin.tick.interval": "500ms",
    "distributed.worker.profile.interval": "100ms",
}


def light_diagnostics() -> dict[str, str]:
    """:data:`LIGHT_DIAGNOSTICS`, less the settings the user chose.

    A setting counts as chosen when Dask's configuration files or ``DASK_*``
    environment variables name it (``DASK_DISTRIBUTED__ADMIN__TICK__INTERVAL=20ms``
    keeps distributed's own value), or when it differs from distributed's
    default in this process (``dask.config.set``).
    """
    defaults = dask.config.merge(*dask.config.defaults)
    files_and_environment = dask.config.collect()
    return {key: value for key, value in LIGHT_DIAGNOSTICS.items()
            if dask.config.get(key, None, config=files_and_environment) is None
            and dask.config.get(key, None) == dask.config.get(key, None, config=defaults)}


def local_cluster(**kwargs: Any) -> LocalCluster:
    """A ``distributed.LocalCluster(**kwargs)`` whose servers run :func:`light_diagnostics`.

    The scheduler, the nannies and the workers started here read the settings
    when they are made (a worker process gets them from its nanny, restarts
    included); the caller's configuration is left as it was.  Workers added
    later with ``scale`` or ``adapt`` start with the caller's configuration:
    wrap those calls in ``dask.config.set(light_diagnostics())`` to keep them
    alike.

    Raises
    ------
    TypeError
        With ``asynchronous=True``: such a cluster makes its workers when it is
        awaited, after this function has restored the configuration.
    """
    from distributed import LocalCluster

    if kwargs.get("asynchronous"):
        raise TypeError("local_cluster starts a synchronous LocalCluster. For an asynchronous "
                        "one, create and await it inside "
                        "dask.config.set(dask_softkmeans.launch.light_diagnostics()).")
    with dask.config.set(light_diagnostics()):
        return LocalCluster(**kwargs)


#: What stands for the dashboard's link where bokeh, which draws the dashboard, is missing.
NO_DASHBOARD = "needs bokeh: pip install 'dask-softkmeans[dashboard]'"


def dashboard_link(client: Any) -> str:
    """The dashboard link of a cluster started in this environment, or how to get one.

    distributed draws the dashboard with bokeh, an optional dependency (the
    ``dashboard`` extra); without it the link opens a page that only says so.

    Parameters
    ----------
    client : distributed.Client
        A client of a cluster whose scheduler runs in this environment (a ``LocalCluster``).

    Returns
    -------
    str
        ``client.dashboard_link``, or :data:`NO_DASHBOARD` when bokeh is not installed.
    """
    if importlib.util.find_spec("bokeh") is None:
        return NO_DASHBOARD
    return client.dashboard_link


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
