"""Named type aliases shared across the package (no imports of Dask or scikit-learn)."""

from __future__ import annotations

import os
from typing import Any, Literal

#: What a user may pass as data: a NumPy array (or nested lists), a Dask array, a
#: ``zarr.Array``, or the path or URL of a Zarr array.
ArrayLike = Any

#: A local path or an fsspec URL.
PathLike = str | os.PathLike

#: The second-moment statistic a pass accumulates (see :func:`.kernels.block_statistics`).
MomentMode = Literal["none", "full", "power"]

#: How the logits ``log pi_k - d_ik / T`` become responsibilities.
Normalization = Literal["softmax", "entmax15", "sparsemax"]

#: How closeness is measured: squared Euclidean distance, or the cosine of the angle
#: (rows normalised to unit length, unit centers: spherical k-means).
Metric = Literal["euclidean", "cosine"]

#: The supervised task of an RBF network.
RBFTask = Literal["regression", "classification"]
