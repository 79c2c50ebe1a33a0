"""Input and output: Zarr arrays (local or fsspec URLs), per-row results, model files.

- :mod:`.stores`: paths, URLs, opening and creating stores, codecs.
- :mod:`.arrays`: open a Zarr array, wrap it as Dask, read row ranges, write per-row results.
- :mod:`.chunk_files`: the direct reader of local chunk files (switchable off).
- :mod:`.retrying`: reads from other stores, their transient errors retried with backoff.
- :mod:`.model_files`: ``.npz`` model files without pickle.
- :mod:`.checkpoint`: the annealing's checkpoints (imported on its own: it knows the annealing).
"""

from __future__ import annotations

from .arrays import (
    BLOCK_BYTES,
    MIN_BLOCKS,
    block_rows,
    open_array,
    open_data,
    read_rows,
    to_dask,
    write_row_blocks,
)
from .model_files import MODEL_FORMAT_VERSION, load_arrays, save_arrays
from .stores import COMPRESSORS, DEFAULT_COMPRESSOR

__all__ = [
    "BLOCK_BYTES",
    "COMPRESSORS",
    "DEFAULT_COMPRESSOR",
    "MIN_BLOCKS",
    "MODEL_FORMAT_VERSION",
    "block_rows",
    "load_arrays",
    "open_array",
    "open_data",
    "read_rows",
    "save_arrays",
    "to_dask",
    "write_row_blocks",
]
