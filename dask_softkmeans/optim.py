"""Optimisers on the tree-reduced gradient: pure ``init``/``update`` pairs (optax style).

One pass gives the gradient of the free energy with respect to every center,

    dF/dc_k = 2 (N_k c_k - S_k),     N_k = sum_i p_ik,  S_k = sum_i p_ik x_i.

The optimisers here see the gradient of the *mean* objective, ``g = (1/W) dF/dC``
(``W`` the total sample weight), and the mass fractions ``n_k = N_k / W``, so
that their step sizes do not depend on the size of the data.

- ``em``: ``c_k <- c_k - g_k / (2 n_k) = S_k / N_k``.  The closed-form fixed
  point is a gradient step with the per-cluster step size ``1 / (2 n_k)``,
  the inverse of the free energy's curvature ``2 n_k`` in the T -> 0 limit
  (a diagonal Newton step).  It needs no step size and decreases ``F``
  monotonically (it is the EM / majorise-minimise step).  ``SoftKMeans``
  over-relaxes it during the annealing (step ``1.8 / (2 n_k)``): the same
  fixed point in fewer passes, without the monotonicity guarantee.
- ``gd``: ``c <- c - lr g`` (one step size for every cluster).
- ``momentum``: heavy ball, ``v <- beta v + g``, ``c <- c - lr v``.
- ``adam``: Kingma & Ba (2015) with bias correction; ``lr`` is a distance in
  the units of the data (Adam's steps are about ``lr`` per coordinate).

Every member of the family stops where ``g = 0``, i.e. at ``c_k = S_k / N_k``:
they share their fixed points, and differ only in the path.

Each optimiser is a pair of pure functions ``init(params) -> state`` and
``update(gradient, state, counts=None) -> (step, new_state)``; the caller adds
``step`` to the parameters.  States are NamedTuples returned fresh, never
modified.  Parameters may be any array (the RBF network trains a flat vector);
``em`` alone needs ``counts`` and (K, D) centers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np


class EmptyState(NamedTuple):
    """State of the optimisers that keep none (``em``, ``gd``)."""


class MomentumState(NamedTuple):
    """Heavy-ball velocity."""

    velocity: np.ndarray


class AdamState(NamedTuple):
    """Adam's step count and moment estimates."""

    count: int
    mu: np.ndarray
    nu: np.ndarray


class Optimizer(NamedTuple):
    """A named pair of pure functions; see the module docstring."""

    name: str
    init: Callable[[np.ndarray], Any]
    update: Callable[..., tuple[np.ndarray, Any]]
    hyperparameters: dict[str, float]


def _positive(name: str, value: float, upper: float | None = None) -> float:
    value = float(value)
    if not np.isfinite(value) or value <= 0 or (upper is not None and value >= upper):
        bound = f" and < {upper}" if upper is not None else ""
        raise ValueError(f"{name} must be a finite number > 0{bound}; got {value!r}.")
    return value


def em() -> Optimizer:
    """The closed-form (EM) update ``c_k = S_k / N_k`` as a preconditioned gradient step."""

    def init(params: np.ndarray) -> EmptyState:
        return EmptyState()

    def update(gradient: np.ndarray, state: EmptyState, counts: np.ndarray | None = None):
        if counts is None:
            raise ValueError("The 'em' optimiser needs the mass fractions counts = N_k / W.")
        counts = np.asarray(counts, np.float64)
        # An empty cluster has a zero gradient: it stays where it is.
        safe = np.where(counts > 0, counts, 1.0)
        return -gradient / (2.0 * safe[:, None]), state

    return Optimizer("em", init, update, {})


def gradient_descent(learning_rate: float = 0.5) -> Optimizer:
    """Plain gradient descent ``c <- c - lr g`` on the mean objective."""
    lr = _positive("learning_rate", learning_rate)

    def init(params: np.ndarray) -> EmptyState:
        return EmptyState()

    def update(gradient: np.ndarray, state: EmptyState, counts: np.ndarray | None = None):
        return -lr * gradient, state

    return Optimizer("gd", init, update, {"learning_rate": lr})


def momentum(learning_rate: float = 0.5, beta: float = 0.9) -> Optimizer:
    """Heavy-ball momentum: ``v <- beta v + g``, ``c <- c - lr v``."""
    lr = _positive("learning_rate", learning_rate)
    beta = _positive("beta", beta, upper=1.0)

    def init(params: np.ndarray) -> MomentumState:
        return MomentumState(np.zeros_like(params, dtype=np.float64))

    def update(gradient: np.ndarray, state: MomentumState, counts: np.ndarray | None = None):
        velocity = beta * state.velocity + gradient
        return -lr * velocity, MomentumState(velocity)

    return Optimizer("momentum", init, update, {"learning_rate": lr, "beta": beta})


def adam(
    learning_rate: float = 0.01, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-12
) -> Optimizer:
    """Adam with bias correction; ``learning_rate`` is in the units of the parameters."""
    lr = _positive("learning_rate", learning_rate)
    beta1 = _positive("beta1", beta1, upper=1.0)
    beta2 = _positive("beta2", beta2, upper=1.0)
    eps = _positive("eps", eps)

    def init(params: np.ndarray) -> AdamState:
        zeros = np.zeros_like(params, dtype=np.float64)
        return AdamState(0, zeros, zeros.copy())

    def update(gradient: np.ndarray, state: AdamState, counts: np.ndarray | None = None):
        count = state.count + 1
        mu = beta1 * state.mu + (1.0 - beta1) * gradient
        nu = beta2 * state.nu + (1.0 - beta2) * gradient * gradient
        mu_hat = mu / (1.0 - beta1**count)
        nu_hat = nu / (1.0 - beta2**count)
        return -lr * mu_hat / (np.sqrt(nu_hat) + eps), AdamState(count, mu, nu)

    return Optimizer(
        "adam", init, update, {"learning_rate": lr, "beta1": beta1, "beta2": beta2, "eps": eps})


#: String-keyed registry of optimiser factories.
OPTIMIZERS: dict[str, Callable[..., Optimizer]] = {
    "em": em,
    "gd": gradient_descent,
    "momentum": momentum,
    "adam": adam,
}


def get_optimizer(optimizer: str | Optimizer, **hyperparameters: float) -> Optimizer:
    """An :class:`Optimizer` from its registry name (with hyperparameters) or as given.

    Raises
    ------
    KeyError
        For an unknown name; the message lists the valid ones.
    TypeError
        For an unknown hyperparameter of the named optimiser.
    """
    if isinstance(optimizer, Optimizer):
        if hyperparameters:
            raise TypeError("Hyperparameters go to the factory, e.g. adam(learning_rate=0.1).")
        return optimizer
    try:
        factory = OPTIMIZERS[optimizer]
    except (KeyError, TypeError):
        raise KeyError(
            f"Unknown optimizer {optimizer!r}; valid names: {', '.join(OPTIMIZERS)}."
        ) from None
    return factory(**hyperparameters)
