"""Per-block mathematics of the normalised RBF network.  No Dask here.

Hidden layer ``h_ik = p_ik`` (the responsibilities at temperature ``T``, equal
priors), output ``o_i = h_i W + b``.  Per row, the objective adds a supervised
loss ``l_i(o_i)`` and the free energy in units of ``T`` plus the Gaussian
normalisation, ``u_i = f_i / T + (D/2) log T`` with
``f_i = sum_k p_ik d_ik - T Omega(p_i)`` (for softmax
``u_i = -log sum_k exp(-d_ik / T) + (D/2) log T``: the negative
log-likelihood, up to constants, of an equal-weight Gaussian mixture of
variance ``T/2``).  Its gradient in the centers is ``2 (N_k c_k - S_k) / T``,
the clustering gradient; the ``(D/2) log T`` term only keeps a learned ``T``
finite.
"""

from __future__ import annotations

import numpy as np

from .._typing import Normalization, RBFTask
from .common import sub_block_rows
from .layout import NormalLayout, RBFLayout
from .reference import normalize, normalize_vjp, pairwise_distances, responsibilities


def _rbf_hidden(
    x64: np.ndarray, centers: np.ndarray, temperature: float, normalization: Normalization
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Shifted distances ``d - min_k d`` (K, n), ``min_k d`` (n,), activations ``p`` and ``Omega(p)``."""
    d = pairwise_distances(x64, centers, np.einsum("ij,ij->i", centers, centers))
    labels = d.argmin(axis=0)
    columns = np.arange(d.shape[1])
    # The nearest distance directly: the expanded product cancels far from the origin.
    diff = x64 - centers[labels]
    dmin = np.einsum("ij,ij->i", diff, diff)
    d -= d[labels, columns][None, :]
    p, omega = normalize(d * (-1.0 / temperature), normalization)
    return d, dmin, p, omega


def rbf_normal_block(
    x: np.ndarray,
    side: np.ndarray,
    centers: np.ndarray,
    temperature: float,
    *,
    offset: np.ndarray,
    normalization: Normalization = "softmax",
    n_classes: int = 0,
) -> np.ndarray:
    """Weighted normal equations of the linear read-out on one row block.

    ``side`` holds ``[w_i, y_i1 .. y_iM]`` rows, or ``[w_i, class_i]`` when
    ``n_classes > 0`` (the targets are then the one-hot rows, ``M = n_classes``).
    Returns the float64 sums packed as :class:`.NormalLayout` ``(K, M)``.
    """
    centers = np.asarray(centers, np.float64) - offset
    n_centers = centers.shape[0]
    n_outputs = n_classes if n_classes else side.shape[1] - 1
    layout = NormalLayout(n_centers, n_outputs)
    out = layout.empty()
    acc = layout.unpack(out)
    acc.weight[...] = side[:, 0].sum()
    rows = sub_block_rows(n_centers, x.shape[1])
    for start in range(0, x.shape[0], rows):
        x64 = np.asarray(x[start : start + rows], np.float64) - offset
        s = np.asarray(side[start : start + rows], np.float64)
        p = _rbf_hidden(x64, centers, temperature, normalization)[2]
        h1 = np.vstack([p, np.ones((1, p.shape[1]))])  # (K + 1, n)
        hw = h1 * s[:, 0][None, :]
        acc.gram[...] += hw @ h1.T
        if n_classes:
            acc.cross[...] += np.stack([
                np.bincount(s[:, 1].astype(np.intp), weights=row, minlength=n_classes)
                for row in hw])
        else:
            acc.cross[...] += hw @ s[:, 1:]
    return out


def rbf_gradient_block(
    x: np.ndarray,
    side: np.ndarray,
    centers: np.ndarray,
    readout: np.ndarray,
    bias: np.ndarray,
    temperature: float,
    *,
    offset: np.ndarray,
    task: RBFTask,
    normalization: Normalization = "softmax",
) -> np.ndarray:
    """Loss, unsupervised term and their gradients on one row block, packed (see :class:`RBFLayout`).

    ``side`` holds ``[w_i, y_i...]`` rows: targets for "regression" (loss
    ``||o - y||^2 / 2``), the class index for "classification" (cross-entropy
    of ``softmax(o)``).  All gradients are sums over the rows, in float64.
    """
    centers = np.asarray(centers, np.float64) - offset
    readout = np.asarray(readout, np.float64)
    bias = np.asarray(bias, np.float64)
    n_centers, n_features = centers.shape
    layout = RBFLayout(n_centers, n_features, readout.shape[1])
    out = np.zeros(layout.size)
    acc = layout.unpack(out)
    rows = sub_block_rows(max(n_centers, readout.shape[1]), n_features)
    half_log_t = 0.5 * n_features * np.log(temperature)
    for start in range(0, x.shape[0], rows):
        x64 = np.asarray(x[start : start + rows], np.float64) - offset
        s = np.asarray(side[start : start + rows], np.float64)
        w = s[:, 0]
        n = x64.shape[0]
        d, dmin, p, omega = _rbf_hidden(x64, centers, temperature, normalization)
        output = p.T @ readout + bias  # (n, M)
        if task == "regression":
            grad_out = output - s[:, 1:]
            loss = 0.5 * np.einsum("nm,nm->n", grad_out, grad_out)
        else:
            labels = s[:, 1].astype(np.intp)
            shifted = output - output.max(axis=1, keepdims=True)
            log_proba = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
            loss = -log_proba[np.arange(n), labels]
            grad_out = np.exp(log_proba)
            grad_out[np.arange(n), labels] -= 1.0
            acc.correct[...] += w @ (output.argmax(axis=1) == labels)
        grad_out *= w[:, None]
        grad_logits = normalize_vjp(p, readout @ grad_out.T, normalization)  # (K, n)
        # u_ik = -d_ik / T: du/dc_k = 2 (x_i - c_k) / T, du/dlog T = d_ik / T.
        acc.centers_loss[...] += (2.0 / temperature) * (
            grad_logits @ x64 - grad_logits.sum(axis=1)[:, None] * centers)
        acc.log_temperature_loss[...] += np.einsum("kn,kn->", grad_logits, d) / temperature
        acc.readout[...] += p @ grad_out
        acc.bias[...] += grad_out.sum(axis=0)
        acc.loss[...] += w @ loss
        # The unsupervised term, with the nearest distance put back into d.
        row_distortion = np.einsum("kn,kn->n", p, d) + dmin
        acc.unsupervised[...] += w @ (row_distortion / temperature - omega) + w.sum() * half_log_t
        pw = p * w[None, :]
        counts = pw.sum(axis=1)
        acc.centers_unsupervised[...] += (2.0 / temperature) * (
            counts[:, None] * centers - pw @ x64)
        acc.log_temperature_unsupervised[...] += w @ (0.5 * n_features - row_distortion / temperature)
        acc.weight[...] += w.sum()
    return out


def rbf_outputs(
    x: np.ndarray,
    centers: np.ndarray,
    temperature: float,
    *,
    offset: np.ndarray,
    normalization: Normalization,
    readout: np.ndarray,
    bias: np.ndarray,
) -> np.ndarray:
    """``(n, M)`` network outputs ``o = h W + b`` of the rows of ``x``."""
    hidden = responsibilities(x, centers, temperature, offset=offset, normalization=normalization)
    return hidden @ readout + bias
