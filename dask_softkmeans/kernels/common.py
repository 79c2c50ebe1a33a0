"""Constants and small helpers shared by the reference and the compiled kernels."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .._typing import Metric, MomentMode, Normalization

#: The sparse normalisations give exactly zero weight to a logit this far
#: (or further) below the row's largest one: sparsemax below 1, entmax-1.5
#: below 2.  Clipping there changes nothing and keeps huge logits (T -> 0) finite.
SPARSE_LOGIT_FLOOR = -3.0

#: Shifted logits below this are clipped before ``exp``: ``exp(-60)`` is
#: ~1e-26, negligible against the row's largest term (which is 1), and the
#: clip keeps ``exp`` out of the denormal range, where it is much slower.
LOGIT_FLOOR = -60.0

#: Rows per sub-block are chosen so that one ``(K, rows)`` temporary holds
#: about this many elements, whatever the chunk size (8 MiB in float32).
TEMPORARY_ELEMENTS = 1 << 21


def working_dtype(dtype: np.dtype) -> type:
    """The dtype of the distance products: float32 stays float32, the rest float64."""
    return np.float32 if np.dtype(dtype) == np.float32 else np.float64


def sub_block_rows(n_clusters: int, n_features: int) -> int:
    """Rows per sub-block so that temporaries stay under a fixed budget."""
    return max(64, TEMPORARY_ELEMENTS // max(n_clusters, n_features, 1))


def float_block(x: np.ndarray) -> np.ndarray:
    """``x`` as a float32 or float64 array (other dtypes become float64), never copied otherwise."""
    x = np.asarray(x)
    return x if x.dtype in (np.float32, np.float64) else x.astype(np.float64)


def unit_rows(x: np.ndarray) -> tuple[np.ndarray, int]:
    """Rows scaled to unit length, in the block's float dtype, and how many rows are all zero.

    The input is never modified.  Norms are taken in the block's precision
    (the result's); rows whose squared norm under- or overflows there are
    rescaled by their largest value, in float64, so that only rows of zeros
    count as zero.  Zero rows are left as they are (the caller refuses them);
    rows holding NaN or infinity come out non-finite, as they went in.
    """
    x = float_block(x)
    squares = np.einsum("ij,ij->i", x, x)
    info = np.finfo(x.dtype)
    # Zero, under- or overflowed, or NaN: a second look, in float64.
    odd = ~((squares > info.tiny) & (squares <= info.max))
    norms = np.sqrt(squares, out=squares)
    zeros = 0
    if odd.any():
        rows = x[odd].astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            scale = np.max(np.abs(rows), axis=1)
            scaled = rows / scale[:, None]
            exact = scale * np.sqrt(np.einsum("ij,ij->i", scaled, scaled))
        zero = scale == 0
        zeros = int(np.count_nonzero(zero))
        exact[zero] = 1.0
        norms[odd] = exact
    with np.errstate(invalid="ignore"):
        return x / norms[:, None], zeros


@dataclass(frozen=True, eq=False)
class PassParams:
    """The parameters of one pass: everything a block kernel needs besides the block.

    Built once per pass by the driver and shipped once to the workers (one
    key of the graph, or one argument of an actor call); every block of the
    pass reads it.

    Attributes
    ----------
    centers : ndarray of shape (K, D)
        Float64 centers, in the coordinates of the data.
    temperature : float
        ``T >= 0``; ``T = 0`` gives hard (Lloyd) assignments.
    offset : ndarray of shape (D,), optional
        Subtracted from rows and centers before any product (the data mean),
        so that data far from the origin suffer no cancellation.
    log_priors : ndarray of shape (K,), optional
        ``log pi_k``; equal priors when omitted.  Ignored at ``T = 0``.
    moments : {"none", "full", "power"}
        The second-moment statistic, see :func:`.block_statistics`.
    directions : ndarray of shape (K, D), optional
        Unit vectors of the "power" moments.
    removal : bool
        At ``T = 0``, also the inertia each center's removal would add.
    normalization : {"softmax", "entmax15", "sparsemax"}
    metric : {"euclidean", "cosine"}
        "cosine": every row is scaled to unit length inside the block task
        before anything else (see :func:`unit_rows`); rows of zeros are
        counted in ``zero_rows``.
    """

    centers: np.ndarray
    temperature: float
    offset: np.ndarray | None = None
    log_priors: np.ndarray | None = None
    moments: MomentMode = "none"
    directions: np.ndarray | None = None
    removal: bool = False
    normalization: Normalization = "softmax"
    metric: Metric = "euclidean"
    #: Set by __post_init__: (K, D).
    shape: tuple[int, int] = field(init=False)

    def __post_init__(self) -> None:
        centers = np.asarray(self.centers, np.float64)
        object.__setattr__(self, "centers", centers)
        object.__setattr__(self, "temperature", float(self.temperature))
        object.__setattr__(self, "shape", (int(centers.shape[0]), int(centers.shape[1])))
        if self.moments == "power" and self.directions is None:
            raise ValueError("moments='power' needs directions of shape (K, D).")

    def replace(self, **changes: object) -> PassParams:
        """These parameters with ``changes``: :func:`dataclasses.replace` without its
        per-field introspection, which costs more than the rest of a small block's pass."""
        unknown = changes.keys() - self.__dict__.keys()
        if unknown:
            raise TypeError(f"PassParams has no field {sorted(unknown)[0]!r}.")
        params = object.__new__(PassParams)
        params.__dict__.update(self.__dict__)
        params.__dict__.update(changes)
        params.__post_init__()
        return params
