"""Reads from stores that fail now and then: transient errors retried with backoff, then named.

An object store answers some requests with an error that the next try does not
meet: s3fs turns S3's 500 and 503 answers (``InternalError``, ``SlowDown``,
``ServiceUnavailable``) into ``OSError`` once botocore's own retries are spent,
and a dropped connection or a timeout surfaces as botocore's
``EndpointConnectionError`` or ``ConnectionClosedError`` (not ``OSError``s), or
aiohttp's ``ClientError``.  A pass reads every chunk of the data, so one such
answer would end a fit of hours: :func:`read` tries a failing chunk again, a
bounded number of times, waiting longer each time, and then raises a
:class:`.StoreReadError` that names the array, the rows and the chunk.

Errors that another try cannot mend (a missing or forbidden object, a damaged
chunk, a bad codec, a shape error) are raised at once.

Two Dask configuration keys, read at each read, so that a worker uses its own:

``softkmeans.read-retries`` (default 4)
    Tries after the first (0: none).
``softkmeans.read-backoff`` (default ``"0.1s"``)
    The wait before the first retry, doubled before each next one (times a
    random factor between 0.5 and 1, so that workers do not retry in step).
"""

from __future__ import annotations

import random
import sys
import time

import dask.config
import dask.utils
import numpy as np
import zarr

from ..errors import SoftKMeansError, StoreReadError
from .stores import describe

RETRIES_KEY = "softkmeans.read-retries"
BACKOFF_KEY = "softkmeans.read-backoff"
DEFAULT_RETRIES = 4
DEFAULT_BACKOFF = "0.1s"

#: OSErrors that say what is stored, not how the store is doing: never retried.
_LASTING_OS_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError,
                      FileExistsError)


def settings() -> tuple[int, float]:
    """The retries and the first wait in seconds, from this process's Dask configuration."""
    retries = max(0, int(dask.config.get(RETRIES_KEY, DEFAULT_RETRIES)))
    backoff = dask.utils.parse_timedelta(dask.config.get(BACKOFF_KEY, DEFAULT_BACKOFF),
                                         default="seconds")
    return retries, float(backoff)


def is_transient(exc: BaseException) -> bool:
    """Whether another try of the read that raised ``exc`` may succeed.

    The fsspec backends' own exceptions are looked up only where their library is
    imported: an error of a library this process never imported cannot have been raised.
    """
    if isinstance(exc, (SoftKMeansError, *_LASTING_OS_ERRORS)):
        return False
    if isinstance(exc, OSError):  # TimeoutError, ConnectionError, s3fs's 5xx answers
        return True
    botocore = sys.modules.get("botocore.exceptions")
    if botocore is not None and isinstance(
            exc, (botocore.HTTPClientError, botocore.ConnectionError)):
        return True  # connection refused, closed, timed out (s3fs's own retries spent)
    aiohttp = sys.modules.get("aiohttp")
    if aiohttp is not None and isinstance(exc, aiohttp.ClientError):
        status = getattr(exc, "status", None)  # an HTTP answer: only 5xx, 408 and 429 pass
        return (not isinstance(exc, aiohttp.ClientResponseError)
                or status is None or status >= 500 or status in (408, 429))
    return False


def _wait(seconds: float) -> None:
    time.sleep(seconds * random.uniform(0.5, 1.0))


def _chunks(array: zarr.Array, index: int) -> str:
    """The Zarr chunk(s) (or shard(s)) of row chunk ``index`` of a 2-D array, with their keys."""
    shards = getattr(array, "shards", None)
    kind, unit = ("shard", shards) if shards else ("chunk", array.chunks)
    first, last = (index, 0), (index, -(-array.shape[1] // unit[1]) - 1)
    key = array.metadata.encode_chunk_key
    if first == last:
        return f"Zarr {kind} {first} (key {key(first)!r})"
    return f"Zarr {kind}s {first} to {last} (keys {key(first)!r} to {key(last)!r})"


def _failed(array: zarr.Array, start: int, stop: int, which: str, attempts: int,
            exc: BaseException, retries: int, backoff: float) -> StoreReadError:
    return StoreReadError(
        f"Could not read rows {start}:{stop} of the Zarr array at {describe(array)!r}: "
        f"{which} failed {attempts} time{'s' if attempts > 1 else ''} in a row; last error: "
        f"{type(exc).__name__}: {exc}. Check that the store is reachable and not overloaded, "
        f"then run again; to retry longer, raise the Dask configuration {RETRIES_KEY!r} "
        f"(now {retries}) or {BACKOFF_KEY!r} (now {backoff:g} s) where the data are read, "
        "e.g. DASK_SOFTKMEANS__READ_RETRIES=8 in the workers' environment.")


def read(array: zarr.Array, start: int, stop: int) -> np.ndarray:
    """``array[start:stop]`` (``0 <= start <= stop <= len``), transient errors retried.

    The rows are read at once, as zarr reads them (its chunks concurrently).  Should
    that fail with a transient error, they are read again chunk by chunk, each
    chunk tried until it succeeds or its tries are spent: the chunks that read
    well are not fetched again at every retry, and the one that fails is named.

    Raises
    ------
    StoreReadError
        A chunk failed with transient errors ``1 + softkmeans.read-retries`` times.
    """
    try:
        return array[start:stop]
    except Exception as exc:
        if not is_transient(exc):
            raise
        error = exc
    retries, backoff = settings()
    unit = (getattr(array, "shards", None) or array.chunks)[0]
    if retries == 0:
        first, last = start // unit, max(start, stop - 1) // unit
        which = _chunks(array, first) if first == last else f"row chunks {first} to {last}"
        raise _failed(array, start, stop, which, 1, error, retries, backoff) from error
    _wait(backoff)
    out = np.empty((stop - start, *array.shape[1:]), dtype=array.dtype)
    for index in range(start // unit, -(-stop // unit)):
        a, b = max(start, index * unit), min(stop, (index + 1) * unit)
        for attempt in range(2, retries + 2):  # the read of all the rows was the first
            try:
                out[a - start:b - start] = array[a:b]
                break
            except Exception as exc:
                if not is_transient(exc):
                    raise
                if attempt == retries + 1:
                    raise _failed(array, start, stop, _chunks(array, index), attempt, exc,
                                  retries, backoff) from exc
                _wait(backoff * 2 ** (attempt - 1))
    return out
