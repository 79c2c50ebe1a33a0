"""dask-softkmeans: annealed soft k-means on Dask, from a laptop to a cluster.

Public API
----------
SoftKMeans
    The scikit-learn estimator.
soft_statistics
    One soft pass over NumPy, Dask or Zarr data: free energy, gradient,
    sufficient statistics.
fit_temperature
    The centers at one temperature, by EM or a gradient optimiser
    (:mod:`dask_softkmeans.optim`) on the tree-reduced gradient.
RBFNetworkRegressor, RBFNetworkClassifier
    Normalised RBF networks on soft k-means centers, optionally trained jointly.
"""

from ._engine import SoftStatistics, soft_statistics
from ._training import TemperatureFit, fit_temperature
from .estimator import SoftKMeans
from .rbf import RBFNetworkClassifier, RBFNetworkRegressor

__all__ = [
    "RBFNetworkClassifier",
    "RBFNetworkRegressor",
    "SoftKMeans",
    "SoftStatistics",
    "TemperatureFit",
    "fit_temperature",
    "soft_statistics",
]
__version__ = "0.1.0"
