"""dask-softkmeans: annealed soft k-means on Dask, from a laptop to a cluster.

Public API
----------
SoftKMeans
    The scikit-learn estimator.
soft_statistics
    One soft pass over NumPy, Dask or Zarr data: free energy, gradient,
    sufficient statistics.
"""

from ._engine import SoftStatistics, soft_statistics
from .estimator import SoftKMeans

__all__ = ["SoftKMeans", "SoftStatistics", "soft_statistics"]
__version__ = "0.1.0"
