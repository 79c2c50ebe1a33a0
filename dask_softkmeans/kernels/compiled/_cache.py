"""Where numba keeps the compiled kernel: a per-user directory, never the installed package.

numba's default puts the machine code beside the source, in the package's
``__pycache__``: in a read-only installation (a container image built as
root, a shared cluster install) that fails with "cannot cache function ...:
no locator available", and in a writable one it leaves files that pip does
not remove, so the folder outlives an uninstall and shadows a later editable
install as a namespace package.  The kernel's cache goes instead to

1. ``NUMBA_CACHE_DIR``, when it is set and writable (numba's own setting);
2. else the user's cache directory (``platformdirs``: ``~/.cache/dask-softkmeans/numba``
   on Linux, ``$XDG_CACHE_HOME`` honoured);
3. else nowhere: the kernel is compiled in memory, once per process, and a
   :class:`KernelCacheWarning` says so once.

Inside that directory the kernel's files go to a subdirectory named by a digest
of the sources of every module of this package (:func:`source_digest`).
numba checks a cached function against the time stamp of its own file only,
but the driver's machine code inlines every phase it calls: after a phase
module changes (an upgrade, an edit in a checkout), a cache keyed on the
driver alone would keep running the old phase.

numba chooses a function's cache directory when its decorator runs, from
``numba.config.CACHE_DIR``; :func:`kernel_cache` sets that setting only while
the kernel's modules are imported, so the user's own cached functions keep
numba's default.  Workers import the same modules and choose the same way.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import numba
import platformdirs

#: numba's environment variable for its cache directory, honoured first.
ENVIRONMENT = "NUMBA_CACHE_DIR"


class KernelCacheWarning(UserWarning):
    """No writable cache directory: the kernel is compiled in memory in every process."""


def _writable(directory: Path) -> bool:
    """Whether ``directory`` exists or can be made, and a file can be written in it (numba's test)."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=directory).close()
    except OSError:
        return False
    return True


def candidates() -> list[Path]:
    """The cache directories tried, in order: ``NUMBA_CACHE_DIR`` if set, then the user's."""
    chosen = os.environ.get(ENVIRONMENT, "")
    user = platformdirs.user_cache_path("dask-softkmeans", appauthor=False) / "numba"
    return [Path(chosen), user] if chosen else [user]


def cache_directory() -> Path | None:
    """The first writable directory of :func:`candidates`, or None if none is."""
    return next((path for path in candidates() if _writable(path)), None)


def source_digest(package: Path = Path(__file__).parent) -> str:
    """A short digest of the sources of the modules in ``package`` (this one by default)."""
    digest = hashlib.sha256()
    for module in sorted(package.glob("*.py")):
        digest.update(module.name.encode())
        digest.update(module.read_bytes())
    return digest.hexdigest()[:16]


#: Where this process caches the kernel; None: in memory only.
CACHE_DIR: Path | None = cache_directory()

#: Whether the kernel's functions are compiled with ``cache=True``.
CACHING: bool = CACHE_DIR is not None

if not CACHING:
    warnings.warn(
        f"dask-softkmeans: no writable cache directory ({', '.join(map(str, candidates()))}); the "
        f"compiled kernel is built in memory in each process. Set {ENVIRONMENT} to a writable "
        "directory to keep it.", KernelCacheWarning, stacklevel=2)


@contextlib.contextmanager
def kernel_cache() -> Iterator[Path | None]:
    """Point numba's cache at :data:`CACHE_DIR` while the kernel's decorators run.

    Yields
    ------
    Path or None
        The directory of this version of the kernel's sources inside
        :data:`CACHE_DIR`, None when the kernel is not cached.
    """
    previous = numba.config.CACHE_DIR
    directory = None if CACHE_DIR is None else CACHE_DIR / f"kernel-{source_digest()}"
    if directory is not None:
        numba.config.CACHE_DIR = str(directory)
    try:
        yield directory
    finally:
        numba.config.CACHE_DIR = previous
