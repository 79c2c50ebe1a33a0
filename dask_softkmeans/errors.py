"""Exceptions raised by dask-softkmeans.

Every error subclasses the built-in exception a user would catch anyway
(``ValueError``, ``FileNotFoundError``, ...), and its message says what was
found and how to fix it.
"""

from __future__ import annotations


class SoftKMeansError(Exception):
    """Base class of every error raised by dask-softkmeans."""


class InputError(SoftKMeansError, ValueError):
    """The data given to a function cannot be clustered as it is."""


class NonNumericError(InputError, TypeError):
    """The data are not real numbers (strings, objects, dates, complex numbers).

    Also a ``TypeError``, the exception NumPy raises for the same problem.
    """


class ModelFileError(InputError):
    """A model file cannot be read: not a model, damaged, truncated or from a newer version."""


class ChunkingError(InputError):
    """A Dask array is chunked in a way the passes cannot use."""


class StoreNotFoundError(SoftKMeansError, FileNotFoundError):
    """A Zarr path or URL does not hold an array."""


class MissingDependencyError(SoftKMeansError, ImportError):
    """An optional dependency (an extra such as ``plot``) is not installed."""


class CheckpointError(InputError):
    """A checkpoint cannot be used: it exists and resuming was not asked, or it is for other data."""


class WorkerMemoryError(SoftKMeansError, MemoryError):
    """A worker's memory limit cannot hold what one pass needs (the kernel, a block, temporaries)."""


class StoreReadError(SoftKMeansError, OSError):
    """A Zarr chunk could not be read, even after retrying: the store failed every time.

    Raised by :func:`dask_softkmeans.io.read_rows` once the transient errors of a
    store (an object store's 5xx answers, timeouts, dropped connections) outlast
    its retries; the message names the array, the rows and the chunk.
    """


class IncompleteOutputError(InputError):
    """A Zarr group was left incomplete by an interrupted write: its arrays are not all written."""
