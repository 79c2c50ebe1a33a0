"""Where Zarr data live: paths and URLs, opening and creating stores, codecs.

Local paths are made absolute (a worker started in another working directory
reads the same files); fsspec URLs (``s3://``, ``gs://``, ``memory://`` ...)
go to zarr as they are, with their ``storage_options``.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import zarr
import zarr.codecs
import zarr.errors
import zarr.storage

from .._typing import PathLike
from ..errors import InputError, MissingDependencyError, StoreNotFoundError

#: Compressors :func:`.write_blobs` and :func:`.write_row_blocks` can use, by name.
#: ``blosc-lz4`` (byte shuffle) decodes faster than ``zstd`` on float data
#: (``benchmarks/out_of_core.py`` measures both) and is the default for per-sample
#: outputs, whose responsibilities are mostly zeros and compress well.
COMPRESSORS: dict[str, Callable[[], Any]] = {
    "blosc-lz4": lambda: zarr.codecs.BloscCodec(cname="lz4", clevel=5, shuffle="shuffle"),
    "zstd": lambda: zarr.codecs.ZstdCodec(level=1),
    "none": lambda: None,
}
DEFAULT_COMPRESSOR = "blosc-lz4"


def is_url(path: str) -> bool:
    return "://" in path


def compressors(name: str) -> Any:
    try:
        codec = COMPRESSORS[name]()
    except KeyError:
        raise InputError(
            f"Unknown compressor {name!r}; choose one of {', '.join(COMPRESSORS)}."
        ) from None
    return None if codec is None else [codec]


def store_path(path: PathLike, storage_options: dict[str, Any] | None) -> str:
    """``path`` as zarr should open it: a URL as it is, a local path made absolute, so
    that workers started elsewhere (another working directory) find the same files.
    ``storage_options`` on a local path are refused (zarr would ignore them)."""
    path = str(path)
    if storage_options and not is_url(path):
        raise InputError(
            f"storage_options apply to fsspec URLs (s3://, gs://, file://, memory://, ...), "
            f"but {path!r} is a local path. Drop storage_options, or write the path as a URL, "
            f"e.g. file://{os.path.abspath(path)}."
        )
    # Not os.path.abspath: it folds "link/.." as text, where the system follows the link.
    return path if is_url(path) else str(Path(path).absolute())


def open_store(path: str, mode: str, storage_options: dict[str, Any] | None, opener: Callable) -> Any:
    """Call a zarr opener, turning a missing fsspec backend into an error that names it."""
    try:
        return opener(store=path, mode=mode, storage_options=storage_options or None)
    except ImportError as exc:
        protocol = path.split("://", 1)[0]
        raise MissingDependencyError(
            f"Opening {path!r} needs the fsspec backend of {protocol}:// ({exc}). Install it, "
            "e.g. `pip install s3fs` for s3://, `pip install gcsfs` for gs://."
        ) from exc


def local_folder(array: zarr.Array) -> Path | None:
    """The folder of an array in zarr's own local store (None for other stores, subclasses
    included: they may read their files another way)."""
    store = array.store
    return Path(store.root, array.path) if type(store) is zarr.storage.LocalStore else None


def absolute(array: zarr.Array) -> zarr.Array:
    """``array`` itself, or, in a local store given by a relative path, the same array
    opened from the absolute path: a worker with another working directory reads it too."""
    folder = local_folder(array)
    if folder is None or Path(array.store.root).is_absolute():
        return array
    store = zarr.storage.LocalStore(Path(array.store.root).absolute(), read_only=True)
    return zarr.open_array(store=store, path=array.path, mode="r")


def check_local_folder(array: zarr.Array, action: str) -> None:
    """Refuse to read or write an array of a local store whose folder this process cannot
    see: zarr would read fill values (zeros) for its chunks, or write them elsewhere."""
    folder = local_folder(array)
    if folder is not None and not folder.is_dir():
        import socket

        raise StoreNotFoundError(
            f"Cannot {action} the Zarr array at {str(folder)!r}: no such folder on "
            f"{socket.gethostname()!r} (pid {os.getpid()}). Every worker must see the data "
            "at the same path: put it on a filesystem they share, or use a URL (s3://, gs://, "
            "...).")


def create_group(path: PathLike, storage_options: dict[str, Any] | None, overwrite: bool,
                  attrs: Mapping[str, Any]) -> zarr.Group:
    """A new group, marked incomplete until :func:`mark_complete` (see :data:`MARKER`)."""
    shown = str(path)
    path = store_path(path, storage_options)
    if not overwrite and not is_url(path) and Path(path).exists():
        raise FileExistsError(_exists_message(shown, path, storage_options))
    try:
        group = open_store(path, "w" if overwrite else "w-", storage_options, zarr.open_group)
    except FileExistsError as exc:
        raise FileExistsError(_exists_message(shown, path, storage_options)) from exc
    group.attrs.update({**dict(attrs), MARKER: {"complete": False}})
    return group


#: The group attribute that says whether the writer of a group finished: created as
#: ``{"complete": False}`` and set to ``{"complete": True}`` only after every chunk is
#: written, so that an interrupted write never leaves a group that looks complete.
#: A group without it (written by something else) counts as complete.
MARKER = "dask_softkmeans"


def mark_complete(group: zarr.Group) -> None:
    """Mark a group made by :func:`create_group` complete: call it after its last write."""
    group.attrs.update({MARKER: {"complete": True}})


def _exists_message(shown: str, path: str, storage_options: dict[str, Any] | None) -> str:
    if is_incomplete(path, storage_options):
        return (f"{shown!r} exists, left incomplete by an interrupted write. Write it again "
                "with overwrite=True, or choose another path.")
    return f"{shown!r} exists. Choose another path or pass overwrite=True."


def is_incomplete(path: str, storage_options: dict[str, Any] | None) -> bool:
    """Whether ``path`` (as :func:`store_path` gives it) holds a group marked incomplete.

    False where it holds no group, or one without the marker."""
    try:
        group = open_store(path, "r", storage_options,
                           functools.partial(zarr.open_group, use_consolidated=False))
    except (FileNotFoundError, PermissionError, zarr.errors.BaseZarrError):
        return False
    marker = group.attrs.get(MARKER)
    return isinstance(marker, dict) and marker.get("complete") is False


def parent_path(path: str) -> str | None:
    """The path or URL of the node holding ``path`` (as :func:`store_path` gives it), or None
    at the top of a filesystem or bucket."""
    if is_url(path):
        protocol, rest = path.split("://", 1)
        rest = rest.rstrip("/")
        return f"{protocol}://{rest.rsplit('/', 1)[0]}" if "/" in rest else None
    parent = Path(path).parent
    return None if parent == Path(path) else str(parent)


def describe(array: zarr.Array) -> str:
    """Where ``array`` is, for a message: its URL or folder (a wrapped store: the store inside)."""
    store = array.store
    while isinstance(store, zarr.storage.WrapperStore):
        store = store._store
    if isinstance(store, zarr.storage.FsspecStore):
        where = store.fs.unstrip_protocol(store.path)
    elif isinstance(store, zarr.storage.LocalStore):
        where = str(store.root)
    else:
        where = repr(store)
    return where.rstrip("/") + (f"/{array.path}" if array.path else "")
