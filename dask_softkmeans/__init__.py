"""dask-softkmeans: annealed soft k-means on Dask, from a laptop to a cluster.

Public API
----------
SoftKMeans
    The scikit-learn estimator.
soft_statistics
    One soft pass over NumPy, Dask or Zarr data: free energy, gradient,
    sufficient statistics.
free_energy
    The free energy as a differentiable scalar of NumPy, JAX, CuPy, PyTorch
    or array-api-strict arrays (``jax.grad`` gives ``2 (N_k c_k - S_k)``).
fit_temperature
    The centers at one temperature, by EM or a gradient optimiser
    (:mod:`dask_softkmeans.optim`) on the tree-reduced gradient.
RBFNetworkRegressor, RBFNetworkClassifier
    Normalised RBF networks on soft k-means centers, optionally trained jointly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .differentiable import free_energy
    from .estimator import SoftKMeans
    from .objective import SoftStatistics, TemperatureFit, fit_temperature, soft_statistics
    from .rbf import RBFNetworkClassifier, RBFNetworkRegressor

__all__ = [
    "RBFNetworkClassifier",
    "RBFNetworkRegressor",
    "SoftKMeans",
    "SoftStatistics",
    "TemperatureFit",
    "fit_temperature",
    "free_energy",
    "soft_statistics",
]
__version__ = "0.1.0"

#: Where each public name lives.  They are imported on first use, so that a
#: Dask worker unpickling a pass's task (``dask_softkmeans.kernels``,
#: ``dask_softkmeans.engine``) does not import scikit-learn and its dependencies.
_LAZY = {"SoftKMeans": ".estimator", "SoftStatistics": ".objective",
         "soft_statistics": ".objective", "fit_temperature": ".objective",
         "TemperatureFit": ".objective", "free_energy": ".differentiable",
         "RBFNetworkRegressor": ".rbf", "RBFNetworkClassifier": ".rbf"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from importlib import import_module

        value = getattr(import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
