"""Where Zarr data live: paths and URLs, opening and creating stores, codecs.

Local paths are made absolute (a worker started in another working directory
reads the same files); fsspec URLs (``s3://``, ``gs://``, ``memory://`` ...)
go to zarr as they are, with their ``storage_options``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import zarr
import zarr.codecs
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
    shown = str(path)
    path = store_path(path, storage_options)
    if not overwrite and not is_url(path) and Path(path).exists():
        raise FileExistsError(f"{shown!r} exists. Choose another path or pass overwrite=True.")
    try:
        group = open_store(path, "w" if overwrite else "w-", storage_options, zarr.open_group)
    except FileExistsError as exc:
        raise FileExistsError(
            f"{shown!r} exists. Choose another path or pass overwrite=True.") from exc
    group.attrs.update(dict(attrs))
    return group
