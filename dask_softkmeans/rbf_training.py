"""The RBF network's passes over whole datasets: normal equations and the training objective.

Orchestration like :mod:`.objective`: :class:`.engine.Runner` runs every
pass; the per-block mathematics is :mod:`.kernels.rbf`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._typing import Normalization, RBFTask
from .engine import Runner
from .kernels.layout import NormalEquations, NormalLayout, RBFBlock, RBFLayout
from .kernels.predict import check_finite
from .kernels.rbf import rbf_gradient_block, rbf_normal_block


def _normal_task(x: np.ndarray, side: np.ndarray, params: dict[str, Any]) -> np.ndarray:
    return rbf_normal_block(check_finite(x), side, **params)


def _gradient_task(x: np.ndarray, side: np.ndarray, params: dict[str, Any]) -> np.ndarray:
    return rbf_gradient_block(check_finite(x), side, **params)


def rbf_normal_equations(
    runner: Runner,
    centers: np.ndarray,
    temperature: float,
    *,
    offset: np.ndarray,
    n_outputs: int,
    normalization: Normalization,
    n_classes: int = 0,
) -> NormalEquations:
    """One pass: the normal equations of the linear read-out on the hidden layer.

    ``runner`` carries the per-row side array ``[w, y_1 .. y_M]`` (or
    ``[w, class]`` with ``n_classes = M``, for one-hot targets) in its weight
    slot (see :meth:`.engine.Runner.reduce`).
    """
    vector = runner.reduce(_normal_task, {
        "centers": centers, "temperature": temperature, "offset": offset,
        "normalization": normalization, "n_classes": n_classes})
    return NormalLayout(centers.shape[0], n_outputs).unpack(vector)


def solve_ridge(equations: NormalEquations, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Read-out weights (K, M) and bias (M,) minimising ``sum w ||h W + b - y||^2 + alpha ||W||^2``."""
    k = equations.gram.shape[0] - 1
    penalty = np.full(k + 1, float(alpha))
    penalty[-1] = 0.0  # the bias is not penalised
    a = equations.gram + np.diag(penalty)
    try:
        solution = np.linalg.solve(a, equations.cross)
    except np.linalg.LinAlgError:
        solution = np.linalg.lstsq(a, equations.cross, rcond=None)[0]
    return solution[:k], solution[k]


def rbf_objective(
    runner: Runner,
    centers: np.ndarray,
    readout: np.ndarray,
    bias: np.ndarray,
    temperature: float,
    *,
    offset: np.ndarray,
    task: RBFTask,
    normalization: Normalization,
) -> RBFBlock:
    """One pass: supervised loss, unsupervised term and their gradients, summed over rows."""
    layout = RBFLayout(centers.shape[0], centers.shape[1], readout.shape[1])
    vector = runner.reduce(_gradient_task, {
        "centers": centers, "readout": readout, "bias": bias, "temperature": temperature,
        "offset": offset, "task": task, "normalization": normalization})
    return layout.unpack(vector)
