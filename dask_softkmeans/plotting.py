"""Pictures of a fit: the annealing path and, for 2-D data, the points and centers.

matplotlib is an optional dependency (``pip install "dask-softkmeans[plot]"``);
it is imported only when a plot is drawn.  Figures are built with
``matplotlib.figure.Figure``, not ``pyplot``, so drawing needs no display and
leaves pyplot's global state alone.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dask.array as da
import numpy as np

from ._typing import ArrayLike
from .errors import InputError, MissingDependencyError
from .inputs import as_data

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from .estimator import SoftKMeans

#: At most this many points are drawn in the points panel (a uniform sample).
MAX_POINTS = 5_000


def require_matplotlib() -> Any:
    """Import matplotlib, or raise :class:`MissingDependencyError` saying how to install it."""
    try:
        import matplotlib
    except ImportError as exc:
        raise MissingDependencyError(
            'Plotting needs matplotlib, which is not installed. Install it with: '
            'pip install "dask-softkmeans[plot]"'
        ) from exc
    return matplotlib


def check_image_path(path: str | os.PathLike) -> None:
    """Fail before any drawing on a path matplotlib cannot write: no or unknown suffix, no folder."""
    from matplotlib.backend_bases import FigureCanvasBase

    path = Path(path)
    formats = FigureCanvasBase.get_supported_filetypes()
    suffix = path.suffix.lower().lstrip(".")
    if suffix not in formats:
        raise InputError(
            f"Cannot tell the image format of {str(path)!r}"
            + (f" (unknown suffix '.{suffix}')" if suffix else " (no suffix)")
            + f". End the name with one of: {', '.join('.' + f for f in sorted(formats))}.")
    if not path.parent.is_dir():
        raise InputError(f"The folder {str(path.parent)!r} does not exist. Create it first.")


def annealing_path(history: Sequence[dict]) -> dict[str, np.ndarray]:
    """The equilibrium of each temperature: the last pass at each ``T > 0``.

    Parameters
    ----------
    history : list of dict
        ``SoftKMeans.history_``: one record per pass.

    Returns
    -------
    dict of ndarray
        ``temperature``, ``free_energy``, ``inertia``, ``entropy`` and
        ``n_clusters`` (codevectors at that pass), one entry per temperature,
        in the order visited (falling temperature), and ``sampled`` (bool):
        whether that pass ran on a sample of the data (``"data": "sample"``).
        Sums over a sample are scaled to the whole data when the records
        carry the ``weight`` the pass ran on; otherwise they are left as they
        are, and ``sampled`` says which they are.
    """
    last: dict[float, dict] = {}
    full_weight = None
    for record in history:
        if record["temperature"] > 0:
            last[record["temperature"]] = record  # dicts keep the order of first visit
        if record.get("data", "full") == "full" and record.get("weight"):
            full_weight = float(record["weight"])
    records = list(last.values())
    keys = ("temperature", "free_energy", "inertia", "entropy", "n_clusters")
    path = {key: np.array([r[key] for r in records], dtype=np.float64) for key in keys}
    # The bound F <= J + W T log(1 / pi_min) of the fit's priors (NaN where a
    # record predates the field).
    path["prior_bound"] = np.array(
        [r["inertia"] - r.get("weight", np.nan) * r["temperature"] * r.get("log_prior_min", np.nan)
         for r in records], dtype=np.float64)
    path["sampled"] = np.array([r.get("data") == "sample" for r in records], dtype=bool)
    if full_weight is not None and all(r.get("weight") for r in records):
        scale = full_weight / np.array([float(r["weight"]) for r in records])
        for key in ("free_energy", "inertia", "entropy", "prior_bound"):
            path[key] *= scale
        path["sampled"][:] = False  # now on the scale of the whole data
    return path


def transitions(phase_diagram: np.ndarray) -> np.ndarray:
    """Temperatures at which the number of distinct clusters grew (rows of ``phase_diagram_``)."""
    diagram = np.asarray(phase_diagram, dtype=np.float64).reshape(-1, 2)
    if len(diagram) < 2:
        return np.empty(0)
    grew = diagram[1:, 1] > diagram[:-1, 1]
    return diagram[1:, 0][grew]


def _sample(model: SoftKMeans, X: ArrayLike, max_points: int, seed: int) -> tuple[np.ndarray, int]:
    data = as_data(X)
    if data.shape[1] != model.n_features_in_:
        raise InputError(
            f"X has {data.shape[1]} features, but the model was fitted on "
            f"{model.n_features_in_}. Pass the data the model was fitted on."
        )
    if data.shape[1] != 2:
        raise InputError(
            f"The points panel draws 2-D data only; X has {data.shape[1]} features. "
            "Leave X out (--data on the command line) to plot the annealing path alone."
        )
    n = data.shape[0]
    if n > max_points:
        index = np.sort(np.random.default_rng(seed).choice(n, size=max_points, replace=False))
        data = data[index]
    if isinstance(data, da.Array):
        data = data.compute()
    return np.asarray(data, dtype=np.float64), n


def _mark_transitions(axes: Sequence[Axes], temps: np.ndarray, t_critical: float | None) -> None:
    """Vertical lines on every panel; only the first panel's legend names them."""
    for j, ax in enumerate(axes):
        if t_critical is not None:
            ax.axvline(t_critical, color="tab:red", linestyle="--", linewidth=1.0,
                       label="first critical T" if j == 0 else None)
        for i, t in enumerate(temps):
            ax.axvline(t, color="0.55", linestyle=":", linewidth=0.9,
                       label="phase transition (clusters split)" if i == 0 and j == 0 else None)


def _sample_note(path: dict[str, np.ndarray]) -> str:
    """Label suffix when some passes summed over a sample only (not comparable with T = 0)."""
    if not path["sampled"].any():
        return ""
    return " (on a sample)" if path["sampled"].all() else " (partly on a sample)"


def _energy_scale(ax: Axes, *series: np.ndarray) -> None:
    """Log scale when every energy is positive: the low-temperature end stays readable."""
    values = np.concatenate([np.ravel(s) for s in series])
    if len(values) and np.all(values > 0):
        ax.set_yscale("log")


def _draw_path(model: SoftKMeans, axes: Sequence[Axes]) -> None:
    """Energies, entropy and distinct clusters against temperature (log axis, cooling to the right)."""
    path = annealing_path(model.history_)
    diagram = np.asarray(model.phase_diagram_, dtype=np.float64).reshape(-1, 2)
    diagram = diagram[diagram[:, 0] > 0]
    ax_energy, ax_entropy, ax_clusters = axes
    final = float(model.inertia_)
    ax_energy.axhline(final, color="k", linestyle="-.", linewidth=1.0,
                      label=f"final inertia (T = 0): {final:.4g}")
    if len(path["temperature"]) == 0 and len(diagram) == 0:
        # K = 1 or constant data: no temperature above zero was visited.
        for ax in axes:
            ax.text(0.5, 0.5, "no annealing: Lloyd passes at T = 0 only",
                    transform=ax.transAxes, ha="center", va="center")
        ax_energy.legend(loc="best", fontsize="small")
        return
    t = path["temperature"]
    on = _sample_note(path)
    _draw_energies(ax_energy, path, on)
    _energy_scale(ax_energy, path["free_energy"], path["inertia"], np.array([final]))
    ax_entropy.plot(t, path["entropy"], "o-", markersize=3, color="tab:green",
                    label=f"entropy H{on}")
    ax_entropy.set_ylabel("entropy")
    if len(diagram):
        ax_clusters.step(diagram[:, 0], diagram[:, 1], where="post", color="tab:purple",
                         label="distinct clusters (splits confirmed at equilibrium)")
        ax_clusters.plot(diagram[:, 0], diagram[:, 1], "o", markersize=3, color="tab:purple")
        _mark_chosen(model, ax_clusters, diagram)
    from matplotlib.ticker import MaxNLocator

    ax_clusters.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax_clusters.set_ylabel("distinct clusters")
    ax_clusters.set_xlabel("temperature T (log scale; cooling runs left to right)")
    t_critical = float(diagram[0, 0]) if len(diagram) else None
    _mark_transitions(axes, transitions(model.phase_diagram_), t_critical)
    for ax in axes:
        ax.set_xscale("log")
        if not ax.xaxis_inverted():
            ax.invert_xaxis()
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(loc="best", fontsize="small")
    for ax in axes[:-1]:
        ax.tick_params(labelbottom=False)


def _draw_energies(ax: Axes, path: dict[str, np.ndarray], on: str) -> None:
    """F, J and the bounds that hold for the fit's (mass-constrained) priors.

    With priors summing to one, ``Z_i = sum_k pi_k exp(-d_ik / T)`` is at most
    ``exp(-min_k d_ik / T)`` and at least ``pi_k* exp(-d_ik* / T)`` for the
    nearest ``k*``, so ``J <= F <= J + T sum_i log(1 / pi_k*(i))
    <= J + W T log(1 / pi_min)``.  (``F <= J`` holds for equal unnormalised
    weights, ``pi_k = 1``, which the fit does not use.)
    """
    t = path["temperature"]
    ax.plot(t, path["free_energy"], "o-", markersize=3,
            label=f"free energy F{on} (J <= F with the fit's priors)")
    ax.plot(t, path["inertia"], "s-", markersize=3, label=f"inertia J{on}: lower bound of F")
    bound = path.get("prior_bound")
    if bound is not None and np.isfinite(bound).any():
        ax.plot(t, bound, "--", linewidth=1.0, color="0.4",
                label="upper bound of F: J + N T log(1/min prior)")
    ax.set_ylabel("energy")


def _mark_chosen(model: SoftKMeans, ax: Axes, diagram: np.ndarray) -> None:
    """With n_clusters="auto": the chosen K and the temperatures over which it held."""
    if getattr(model, "n_clusters", None) != "auto":
        return
    k = int(model.cluster_centers_.shape[0])
    held = diagram[diagram[:, 1] == k, 0]
    ax.axhline(k, color="tab:orange", linewidth=1.0,
               label=f"chosen K = {k} (widest log-T range)")
    if len(held):
        lower = diagram[diagram[:, 0] < held.min(), 0]
        ax.axvspan(held.max(), lower.max() if len(lower) else held.min(), color="tab:orange",
                   alpha=0.12)


def _draw_points(model: SoftKMeans, ax: Axes, X: ArrayLike, max_points: int, seed: int) -> None:
    points, n = _sample(model, X, max_points, seed)
    labels = model.predict(points)
    ax.scatter(points[:, 0], points[:, 1], c=labels, cmap="tab20", s=4, alpha=0.6,
               linewidths=0, rasterized=True)
    centers = model.cluster_centers_
    ax.scatter(centers[:, 0], centers[:, 1], marker="X", s=90, c="k", edgecolors="w",
               linewidths=1.0, label=f"{len(centers)} centers")
    shown = len(points)
    ax.set_title(f"{shown:,} of {n:,} points (a uniform sample)" if shown < n
                 else f"all {n:,} points")
    ax.set_xlabel("x0")
    ax.set_ylabel("x1")
    ax.legend(loc="best", fontsize="small")


def plot_annealing(
    model: SoftKMeans,
    path: str | os.PathLike | None = None,
    ax: Axes | Sequence[Axes] | None = None,
    X: ArrayLike | None = None,
    *,
    max_points: int = MAX_POINTS,
    seed: int = 0,
) -> Figure:
    """Draw the annealing path of a fitted model and, for 2-D data, its points and centers.

    The path shows, against the temperature on a log axis (cooling runs left
    to right): the free energy ``F`` and the inertia ``J`` at the end of each
    temperature, with the final inertia at ``T = 0``; the entropy ``H``; and
    the number of distinct clusters (``phase_diagram_``).  The first critical
    temperature is a dashed red line, each phase transition (a temperature at
    which clusters split) a dotted grey one.

    Parameters
    ----------
    model : SoftKMeans
        A fitted model (or one read with :meth:`SoftKMeans.load`).
    path : str or path-like, optional
        Write the figure there; the format follows the suffix (``.png``,
        ``.pdf``, ``.svg``, ...).
    ax : Axes or sequence of Axes, optional
        Where to draw.  Default: a new figure.  A sequence of three Axes gets
        the three panels (energies, entropy, clusters), plus a fourth for the
        points when ``X`` is given.  A single Axes gets the energy panel only,
        with the transitions marked.
    X : array-like, Dask array, zarr.Array or path of shape (n_samples, 2), optional
        The data, for the points panel: a uniform sample of at most
        ``max_points`` rows coloured by nearest center, and the centers.
        Only 2-D data can be drawn.
    max_points : int, default=5000
        Largest number of points drawn.
    seed : int, default=0
        Seeds the sample of points.

    Returns
    -------
    matplotlib.figure.Figure
        The figure drawn into.

    Raises
    ------
    MissingDependencyError
        matplotlib is not installed.
    InputError
        ``X`` is not 2-D data of the model's number of features, ``ax``
        holds the wrong number of Axes, or ``path`` has no known image
        suffix or its folder does not exist (checked before drawing).
    """
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(model)
    require_matplotlib()
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    if path is not None:
        check_image_path(path)

    if ax is None:
        figure = Figure(figsize=(13 if X is not None else 8, 9), layout="constrained")
        if X is not None:
            grid = figure.add_gridspec(3, 2, width_ratios=(1.1, 1))
            first = figure.add_subplot(grid[0, 0])
            axes = [first, figure.add_subplot(grid[1, 0], sharex=first),
                    figure.add_subplot(grid[2, 0], sharex=first), figure.add_subplot(grid[:, 1])]
        else:
            axes = list(figure.subplots(3, 1, sharex=True))
        chosen = " (chosen from the phase diagram)" if model.n_clusters == "auto" else ""
        figure.suptitle(f"SoftKMeans annealing path: K = {model.cluster_centers_.shape[0]}"
                        f"{chosen}, {model.n_iter_} passes")
    elif isinstance(ax, Axes):
        if X is not None:
            raise InputError("A single Axes holds the energy panel only; pass four Axes "
                             "(or none) to draw the points of X too.")
        axes = [ax]
        figure = ax.get_figure()
    else:
        axes = list(ax)
        wanted = 4 if X is not None else 3
        if len(axes) != wanted:
            raise InputError(f"ax must hold {wanted} Axes (energies, entropy, clusters"
                             f"{', points' if X is not None else ''}); got {len(axes)}.")
        figure = axes[0].get_figure()

    if len(axes) == 1:
        _draw_energy_only(model, axes[0])
    else:
        _draw_path(model, axes[:3])
    if X is not None:
        _draw_points(model, axes[3], X, max_points, seed)
    if path is not None:
        figure.savefig(os.fspath(path), dpi=110)
    return figure


def _draw_energy_only(model: SoftKMeans, ax: Axes) -> None:
    """One panel: free energy and inertia against temperature, transitions marked."""
    path = annealing_path(model.history_)
    on = _sample_note(path)
    _draw_energies(ax, path, on)
    ax.axhline(float(model.inertia_), color="k", linestyle="-.", linewidth=1.0,
               label="final inertia (T = 0)")
    diagram = np.asarray(model.phase_diagram_, dtype=np.float64).reshape(-1, 2)
    positive = diagram[diagram[:, 0] > 0]
    _mark_transitions([ax], transitions(model.phase_diagram_),
                      float(positive[0, 0]) if len(positive) else None)
    if len(path["temperature"]):
        ax.set_xscale("log")
        if not ax.xaxis_inverted():
            ax.invert_xaxis()
    ax.set_xlabel("temperature T")
    ax.set_ylabel("energy")
    _energy_scale(ax, path["free_energy"], path["inertia"], np.array([float(model.inertia_)]))
    ax.legend(loc="best", fontsize="small")
