"""Model files: numeric arrays plus JSON metadata in one ``.npz``, never a pickle."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from .._typing import PathLike
from ..errors import ModelFileError, StoreNotFoundError

#: Version of the model file format written by :func:`save_arrays`.
MODEL_FORMAT_VERSION = 1


def save_arrays(path: PathLike, meta: dict[str, Any], arrays: dict[str, np.ndarray],
                *, overwrite: bool = False) -> None:
    """Write a model file: numeric arrays plus JSON metadata in one ``.npz``, atomically.

    The file holds no pickled objects: :func:`load_arrays` reads it with
    ``allow_pickle=False``, so loading never runs code.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{str(path)!r} exists. Choose another path or pass overwrite=True.")
    payload = {"format": "dask-softkmeans-model", "version": MODEL_FORMAT_VERSION, **meta}
    text = json.dumps(payload)  # fails before any file is touched
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            np.savez(f, __meta__=np.array(text), **arrays)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_arrays(path: PathLike) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read a model file written by :func:`save_arrays`; never unpickles, never runs code.

    Raises
    ------
    StoreNotFoundError
        Nothing is stored at ``path``.
    ModelFileError
        ``path`` is not a model file, or it is damaged, truncated, or written
        by a newer version of the format.
    """
    path = Path(path)
    name = repr(str(path))
    if not path.exists():
        raise StoreNotFoundError(f"No model file at {name}. Check the path.")
    if path.is_dir():
        raise ModelFileError(
            f"{name} is a directory, not a model file. Point at the .npz file that "
            "SoftKMeans.save or `dask-softkmeans fit --out` wrote.")
    if not zipfile.is_zipfile(path):
        # A truncated .npz loses its zip directory (at the end), so it lands here too.
        raise ModelFileError(
            f"{name} is not a dask-softkmeans model file: it is not an .npz archive (another "
            "kind of file, or a damaged or truncated one). Check the path, or fit and save the "
            "model again.")
    try:
        with np.load(path, allow_pickle=False) as archive:
            if "__meta__" not in archive.files:
                raise ModelFileError(
                    f"{name} is an .npz archive but not a dask-softkmeans model file (it has no "
                    "model metadata). Check the path; models are written by SoftKMeans.save.")
            text = str(archive["__meta__"])
            arrays = {key: archive[key] for key in archive.files if key != "__meta__"}
        meta = json.loads(text)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
        if isinstance(exc, ModelFileError):
            raise
        # ValueError covers an object (pickled) array: it is refused, not loaded.
        raise ModelFileError(
            f"{name} is a damaged dask-softkmeans model file ({exc}). Fit and save the "
            "model again.") from exc
    if not isinstance(meta, dict) or meta.get("format") != "dask-softkmeans-model":
        raise ModelFileError(
            f"{name} is not a dask-softkmeans model file (its metadata name no model "
            "format). Check the path; models are written by SoftKMeans.save.")
    version = meta.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ModelFileError(
            f"{name} has a damaged format version ({version!r}). Fit and save the model again.")
    if version > MODEL_FORMAT_VERSION:
        raise ModelFileError(
            f"{name} was written by a newer dask-softkmeans (format version "
            f"{version} > {MODEL_FORMAT_VERSION}, the newest this one reads). Upgrade "
            "dask-softkmeans to read it.")
    return meta, arrays

