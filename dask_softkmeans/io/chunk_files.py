"""Zarr chunks read straight from their files, bypassing zarr's codec pipeline.

For the common layout of our data (zarr's own local store, no sharding,
chunks holding all the features, little-endian values, no filter, raw or one
blosc or zstd codec) a chunk's file is read, or decoded, straight into the
result, with no intermediate copy (``benchmarks/out_of_core.py`` measures a
streamed pass with and without it).  Anything else, or a chunk whose file is
missing or not what it should be, is left to zarr.

The reader can be switched off with the Dask configuration key
``softkmeans.direct-read`` (environment: ``DASK_SOFTKMEANS__DIRECT_READ=false``),
on the workers as well as here.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, NamedTuple

import dask.config
import numcodecs
import numpy as np
import zarr
import zarr.codecs

from .stores import local_folder


def enabled() -> bool:
    """Whether chunks may be read from their files (the ``softkmeans.direct-read`` setting)."""
    value = dask.config.get("softkmeans.direct-read", True)
    if isinstance(value, str):
        return value.strip().lower() not in ("0", "false", "no", "off")
    return bool(value)


class _ChunkFiles(NamedTuple):
    """Where the chunks of a 2-D Zarr array lie as files, and how to decode one."""

    root: Path  #: the array's folder
    rows: int  #: rows per chunk (every chunk holds all the features)
    codec: Any  #: a numcodecs codec that decodes a stored chunk; None: stored raw


def _big_endian(dtype: Any) -> bool:
    """Whether a data type in Zarr metadata is big-endian (zarr >= 3.1: a ``ZDType``; 3.0: NumPy's)."""
    return getattr(dtype, "endianness", None) == "big" or getattr(dtype, "byteorder", "") == ">"


def _chunk_files(array: zarr.Array) -> _ChunkFiles | None:
    """How to read ``array``'s chunks straight from their files, or None where zarr must.

    Only zarr's own local store (``zarr.storage.LocalStore``), no sharding, every
    chunk holding all the features, little-endian values stored in C order
    with no filter and either no compressor or one blosc or zstd codec.
    """
    if (local_folder(array) is None or array.ndim != 2
            or array.chunks[1] != array.shape[1] or sys.byteorder != "little"
            or _big_endian(array.metadata.dtype)):
        return None
    meta = array.metadata
    if meta.zarr_format == 3:
        first, *rest = meta.codecs
        if (not isinstance(first, zarr.codecs.BytesCodec) or len(rest) > 1
                or getattr(first.endian, "value", None) == "big"):
            return None
        stored = rest[0] if rest else None
        codecs = {zarr.codecs.BloscCodec: numcodecs.Blosc, zarr.codecs.ZstdCodec: numcodecs.Zstd}
        if stored is not None and type(stored) not in codecs:
            return None
        codec = None if stored is None else codecs[type(stored)]()  # frames describe themselves
    else:
        if meta.filters or meta.order != "C" or not isinstance(
                meta.compressor, (type(None), numcodecs.Blosc, numcodecs.Zstd)):
            return None
        codec = meta.compressor
    return _ChunkFiles(local_folder(array), array.chunks[0], codec)


def _frame_bytes(codec: Any, stored: bytes) -> int | None:
    """How many bytes a blosc or zstd frame decodes to, from its header (None: unknown).

    Blosc (1.x format): ``nbytes``, bytes 4-8.  Zstandard (RFC 8878, 3.1.1): the magic
    number, the frame header descriptor, then the window descriptor (unless single
    segment), the dictionary ID and the frame content size, whose widths the descriptor
    gives.
    """
    if isinstance(codec, numcodecs.Blosc):
        return int.from_bytes(stored[4:8], "little") if len(stored) >= 16 else None
    if len(stored) < 5 or stored[:4] != b"\x28\xb5\x2f\xfd":
        return None
    descriptor = stored[4]
    single_segment = (descriptor >> 5) & 1
    size_bytes = (single_segment, 2, 4, 8)[descriptor >> 6]
    at = 5 + (1 - single_segment) + (0, 1, 2, 4)[descriptor & 3]
    if size_bytes == 0 or len(stored) < at + size_bytes:
        return None
    size = int.from_bytes(stored[at : at + size_bytes], "little")
    return size + 256 if size_bytes == 2 else size


def _read_chunk(files: _ChunkFiles, array: zarr.Array, chunk: int, first: int,
                out: np.ndarray) -> bool:
    """Rows ``first:first + len(out)`` of chunk ``chunk`` into ``out``; False if its file is
    missing (a chunk never written holds the fill value) or not what it should be."""
    path = files.root / array.metadata.encode_chunk_key((chunk, 0))
    try:
        f = open(path, "rb", buffering=0)
    except FileNotFoundError:
        return False
    with f:
        row_bytes = out.itemsize * out.shape[1]
        if files.codec is None:
            if os.fstat(f.fileno()).st_size != files.rows * row_bytes:
                return False
            f.seek(first * row_bytes)
            return f.readinto(memoryview(out).cast("B")) == out.nbytes
        stored = f.read()
    try:
        if len(out) == files.rows:
            # Straight into place, no copy of the chunk; the codecs fill ``out`` only as
            # far as the frame goes, so a frame of another size is zarr's to report.
            if _frame_bytes(files.codec, stored) != out.nbytes:
                return False
            files.codec.decode(stored, out=out)
            return True
        # An edge chunk (stored whole) or a range that starts or ends inside a chunk.
        whole = np.frombuffer(files.codec.decode(stored), dtype=out.dtype)
    except MemoryError:
        raise
    except Exception:  # a damaged chunk: zarr reads it again and reports it its own way
        return False
    if whole.size != files.rows * out.shape[1]:
        return False
    out[...] = whole.reshape(files.rows, out.shape[1])[first : first + len(out)]
    return True


def read_direct(array: zarr.Array, start: int, stop: int) -> np.ndarray | None:
    """Rows ``start:stop`` (within bounds) read from the chunk files, or None where zarr must
    read them all; a chunk whose file cannot be used is read by zarr alone."""
    files = _chunk_files(array) if stop > start and enabled() else None
    if files is None:
        return None
    out = np.empty((stop - start, array.shape[1]), dtype=array.dtype)
    for chunk in range(start // files.rows, (stop - 1) // files.rows + 1):
        lo, hi = max(start, chunk * files.rows), min(stop, (chunk + 1) * files.rows)
        target = out[lo - start : hi - start]
        if not _read_chunk(files, array, chunk, lo - chunk * files.rows, target):
            target[...] = array[lo:hi]
    return out
