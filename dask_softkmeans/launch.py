"""Pieces shared by the cluster launchers in ``deploy/`` (SLURM, SSH).

The launchers start a cluster with Dask's own tools and then run the
``dask-softkmeans fit`` command against its scheduler; what they share lives
here, so that both build the same command line and read TLS files the same way.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path


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
