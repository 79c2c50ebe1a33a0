"""Plots of the annealing path (library and CLI): real fits, real PNG files under tmp_path."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import zarr
from click.testing import CliRunner
from sklearn.datasets import make_blobs

from dask_softkmeans import SoftKMeans
from dask_softkmeans.cli import main
from dask_softkmeans.errors import InputError, MissingDependencyError
from dask_softkmeans.plotting import annealing_path, transitions

matplotlib = pytest.importorskip("matplotlib")  # in the test extra: runs in CI
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def blobs2d() -> np.ndarray:
    """Six 2-D blobs, two of them touching: several splits as the temperature falls."""
    return make_blobs(3000, n_features=2, centers=6, cluster_std=0.7, random_state=3)[0]


@pytest.fixture(scope="module")
def model(blobs2d) -> SoftKMeans:
    return SoftKMeans(6).fit(blobs2d)


def _assert_png(path) -> None:
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 10_000


def test_annealing_path_panels_hold_the_history(model, tmp_path):
    out = tmp_path / "path.png"
    figure = model.plot_annealing(out)
    _assert_png(out)
    energy, entropy, clusters = figure.axes
    path = annealing_path(model.history_)
    assert len(path["temperature"]) > 5
    lines = {line.get_label().split(" (")[0].split(":")[0]: line for line in energy.get_lines()}
    assert np.allclose(lines["free energy F"].get_xdata(), path["temperature"])
    assert np.allclose(lines["free energy F"].get_ydata(), path["free_energy"])
    assert np.allclose(lines["inertia J"].get_ydata(), path["inertia"])
    # The bounds of the fit's (mass-constrained) priors hold: J <= F <= J + N T log(1/min pi).
    bound = lines["upper bound of F"].get_ydata()
    assert np.all(path["inertia"] <= path["free_energy"] * (1 + 1e-9))
    assert np.all(path["free_energy"] <= bound * (1 + 1e-9))
    assert np.all(bound > path["inertia"])
    # Integer ticks on the count axis.
    ticks = [t for t in clusters.get_yticks() if clusters.get_ylim()[0] <= t]
    assert all(float(t).is_integer() for t in ticks)
    assert np.allclose(entropy.get_lines()[0].get_ydata(), path["entropy"])
    final = next(line for line in energy.get_lines()
                 if line.get_label().startswith("final inertia"))
    assert np.allclose(final.get_ydata(), model.inertia_)
    step = clusters.get_lines()[0]
    assert np.array_equal(step.get_ydata(), model.phase_diagram_[:, 1])
    for ax in figure.axes:
        assert ax.get_xscale() == "log" and ax.xaxis_inverted()
    # One vertical line per transition, plus the first critical temperature.
    marks = [line for line in clusters.get_lines() if line.get_linestyle() in (":", "--")]
    assert len(marks) == len(transitions(model.phase_diagram_)) + 1
    assert np.isclose(marks[0].get_xdata()[0], model.phase_diagram_[0, 0])


def test_annealing_path_takes_the_last_pass_of_each_temperature():
    history = [
        {"phase": "anneal", "temperature": 4.0, "free_energy": 9.0, "inertia": 8.0,
         "entropy": 1.0, "n_clusters": 2},
        {"phase": "anneal", "temperature": 4.0, "free_energy": 7.0, "inertia": 6.0,
         "entropy": 0.5, "n_clusters": 2},
        {"phase": "anneal", "temperature": 2.0, "free_energy": 5.0, "inertia": 4.0,
         "entropy": 0.25, "n_clusters": 3},
        {"phase": "lloyd", "temperature": 0.0, "free_energy": 3.0, "inertia": 3.0,
         "entropy": 0.0, "n_clusters": 3},
    ]
    path = annealing_path(history)
    assert path["temperature"].tolist() == [4.0, 2.0]
    assert path["free_energy"].tolist() == [7.0, 5.0]
    assert not path["sampled"].any()


def test_passes_on_a_sample_are_scaled_when_their_weight_is_known():
    """Sums over a sample of weight 10 of data of weight 40 are 4x too small."""
    base = {"phase": "anneal", "free_energy": 1.0, "inertia": 2.0, "entropy": 3.0, "n_clusters": 2}
    sampled = [{**base, "temperature": 1.0, "data": "sample"}]
    full = [{**base, "phase": "lloyd", "temperature": 0.0, "data": "full"}]
    path = annealing_path(sampled + full)
    assert path["sampled"].tolist() == [True] and path["inertia"].tolist() == [2.0]
    path = annealing_path([{**sampled[0], "weight": 10.0}, {**full[0], "weight": 40.0}])
    assert path["sampled"].tolist() == [False]
    assert path["free_energy"].tolist() == [4.0] and path["inertia"].tolist() == [8.0]


def test_transitions_are_where_the_cluster_count_grows():
    diagram = np.array([[8.0, 1], [6.0, 2], [5.0, 2], [4.0, 4], [3.0, 3], [2.0, 4]])
    assert transitions(diagram).tolist() == [6.0, 4.0, 2.0]
    assert transitions(np.array([[1.0, 1]])).size == 0


def test_points_and_centers_for_2d_data(model, blobs2d, tmp_path):
    out = tmp_path / "points.png"
    figure = model.plot_annealing(out, X=blobs2d)
    _assert_png(out)
    points = figure.axes[3]
    sample, centers = points.collections
    assert sample.get_offsets().shape == (3000, 2)
    assert np.allclose(centers.get_offsets(), model.cluster_centers_)
    assert "all 3,000 points" in points.get_title()


def test_points_are_sampled_from_a_zarr_store(model, blobs2d, tmp_path):
    from dask_softkmeans.plotting import plot_annealing

    store = tmp_path / "x.zarr"
    array = zarr.create_array(str(store), shape=blobs2d.shape, chunks=(700, 2), dtype="f8")
    array[:] = blobs2d
    figure = plot_annealing(model, X=str(store), max_points=500)
    sample = figure.axes[3].collections[0].get_offsets()
    assert sample.shape == (500, 2)
    rows = {tuple(r) for r in blobs2d.round(12)}
    assert all(tuple(r) in rows for r in np.asarray(sample).round(12))  # real rows of X
    assert "500 of 3,000 points" in figure.axes[3].get_title()


def test_bad_requests_get_clear_errors(model, blobs2d):
    three = np.column_stack([blobs2d, blobs2d[:, 0]])
    model3 = SoftKMeans(3).fit(three[:600])
    with pytest.raises(InputError, match="2-D data only; X has 3 features"):
        model3.plot_annealing(X=three)
    with pytest.raises(InputError, match="fitted on 2"):
        model.plot_annealing(X=three)
    from matplotlib.figure import Figure

    axes = Figure().subplots(2)
    with pytest.raises(InputError, match="ax must hold 3 Axes"):
        model.plot_annealing(ax=axes)
    single = Figure().subplots()
    assert model.plot_annealing(ax=single) is single.get_figure()
    labels = [line.get_label() for line in single.get_lines()]
    assert any(label.startswith("free energy F") for label in labels)
    assert any(label.startswith("inertia J") for label in labels)


def test_one_cluster_has_no_annealing_but_still_plots(blobs2d, tmp_path):
    model = SoftKMeans(1).fit(blobs2d)
    out = tmp_path / "one.png"
    model.plot_annealing(out)
    _assert_png(out)


def test_missing_matplotlib_names_the_extra():
    """A Python where ``import matplotlib`` fails (a None entry in sys.modules blocks it)."""
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "import numpy as np\n"
        "from dask_softkmeans import SoftKMeans\n"
        "from dask_softkmeans.errors import MissingDependencyError\n"
        "m = SoftKMeans(2).fit(np.array([[0.0, 0], [0, 1], [5, 5], [5, 6]]))\n"
        "try:\n    m.plot_annealing()\n"
        "except MissingDependencyError as e:\n"
        "    assert isinstance(e, ImportError); print(e)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert 'pip install "dask-softkmeans[plot]"' in result.stdout
    assert issubclass(MissingDependencyError, ImportError)


def test_cli_plot_without_matplotlib_exits_1_before_writing(model, tmp_path):
    model_path = tmp_path / "model.npz"
    model.save(model_path)
    out = tmp_path / "never.png"
    code = ("import sys; sys.modules['matplotlib'] = None\n"
            "from dask_softkmeans.cli import main\n"
            f"main(['plot', {str(model_path)!r}, {str(out)!r}])\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 1
    assert 'pip install "dask-softkmeans[plot]"' in result.stderr
    assert not out.exists()


def test_cli_plot_writes_a_png(model, blobs2d, tmp_path):
    runner = CliRunner()
    model_path = tmp_path / "model.npz"
    model.save(model_path)
    store = tmp_path / "x.zarr"
    zarr.create_array(str(store), shape=blobs2d.shape, chunks=(1000, 2), dtype="f8")[:] = blobs2d
    out = tmp_path / "annealing.png"
    result = runner.invoke(main, ["plot", str(model_path), str(out), "--data", str(store)])
    assert result.exit_code == 0, result.output
    assert f"Plot written to {out}" in result.output
    _assert_png(out)

    before = out.read_bytes()
    result = runner.invoke(main, ["plot", str(model_path), str(out)])
    assert result.exit_code == 1 and "--overwrite" in result.output
    assert out.read_bytes() == before
    result = runner.invoke(main, ["plot", str(model_path), str(out), "--overwrite"])
    assert result.exit_code == 0, result.output
    _assert_png(out)

    result = runner.invoke(main, ["plot", str(model_path), str(tmp_path / "b.png"),
                                  "--data", str(tmp_path / "missing.zarr")])
    assert result.exit_code == 1 and "No Zarr array" in result.output
    assert not (tmp_path / "b.png").exists()
    result = runner.invoke(main, ["plot", str(tmp_path / "none.npz"), str(tmp_path / "c.png")])
    assert result.exit_code == 1 and "No model file" in result.output
    for bad, message in [("plot.xyz", "unknown suffix '.xyz'"), ("plot", "(no suffix)"),
                         ("missing/plot.png", "does not exist")]:
        result = runner.invoke(main, ["plot", str(model_path), str(tmp_path / bad)])
        assert result.exit_code == 1 and message in result.output, result.output
        assert ".png" in result.output or "Create it" in result.output
    result = runner.invoke(main, ["plot", str(model_path)])  # OUT missing: a usage error
    assert result.exit_code == 2 and "Missing argument 'OUT'" in result.output


def test_chosen_k_is_marked(blobs2d):
    model = SoftKMeans("auto", max_clusters=10).fit(blobs2d)
    figure = model.plot_annealing()
    clusters = figure.axes[2]
    chosen = [line for line in clusters.get_lines() if line.get_label().startswith("chosen K")]
    assert len(chosen) == 1
    assert chosen[0].get_ydata()[0] == model.n_clusters_
    assert f"K = {model.n_clusters_} (chosen" in figure._suptitle.get_text()
