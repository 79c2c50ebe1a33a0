"""Choosing K from the phase diagram: SoftKMeans(n_clusters="auto", max_clusters=M)."""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from click.testing import CliRunner
from sklearn.utils._param_validation import InvalidParameterError

from dask_softkmeans import SoftKMeans
from dask_softkmeans.cli import main
from dask_softkmeans.metrics import centroid_index


def blobs(seed: int = 0, k: int = 4, d: int = 2, n: int = 200) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = rng.uniform(-30, 30, (k, d))
    x = np.vstack([c + rng.standard_normal((n, d)) for c in centers])
    return x, centers


def test_auto_finds_the_blobs_and_ends_at_a_lloyd_fixed_point():
    x, centers = blobs()
    model = SoftKMeans("auto", max_clusters=10).fit(x)
    assert model.n_clusters_ == 4
    assert model.cluster_centers_.shape == (4, 2)
    assert centroid_index(model.cluster_centers_, centers) == 0
    assert model.history_[-1]["phase"] in ("lloyd", "swap")
    assert model.predict(x).max() == 3
    assert model.predict_proba(x).shape == (len(x), 4)


def test_auto_out_of_core(tmp_path):
    x, _ = blobs(1)
    store = zarr.open_array(str(tmp_path / "x.zarr"), mode="w", shape=x.shape, chunks=(150, 2),
                            dtype="f8")
    store[:] = x
    lazy = SoftKMeans("auto", max_clusters=10).fit(str(tmp_path / "x.zarr"))
    eager = SoftKMeans("auto", max_clusters=10).fit(x)
    assert lazy.n_clusters_ == eager.n_clusters_ == 4
    np.testing.assert_allclose(np.sort(lazy.cluster_centers_, axis=0),
                               np.sort(eager.cluster_centers_, axis=0), rtol=1e-9)


def test_auto_model_file_round_trip(tmp_path):
    model = SoftKMeans("auto", max_clusters=10).fit(blobs(2)[0])
    model.save(tmp_path / "m.npz")
    loaded = SoftKMeans.load(tmp_path / "m.npz")
    assert loaded.n_clusters == "auto" and loaded.max_clusters == 10
    assert loaded.n_clusters_ == model.n_clusters_


@pytest.mark.parametrize("params, match", [
    ({"n_clusters": "auto"}, "set max_clusters"),
    ({"n_clusters": 4, "max_clusters": 10}, "applies only with n_clusters='auto'"),
])
def test_bad_pairs_are_refused_before_any_work(params, match):
    with pytest.raises(ValueError, match=match):
        SoftKMeans(**params).fit(np.zeros((3, 2)))  # the data would fail later


@pytest.mark.parametrize("value", [0, 1, -3, 2.5])
def test_max_clusters_constraint(value):
    with pytest.raises(InvalidParameterError, match="max_clusters"):
        SoftKMeans("auto", max_clusters=value).fit(blobs()[0])


def test_too_few_samples_for_max_clusters():
    with pytest.raises(ValueError, match="max_clusters=50"):
        SoftKMeans("auto", max_clusters=50).fit(blobs(n=5)[0])


def test_cli_auto(tmp_path):
    x, _ = blobs(3)
    zarr.open_array(str(tmp_path / "x.zarr"), mode="w", shape=x.shape, chunks=(200, 2),
                    dtype="f8")[:] = x
    runner = CliRunner()
    result = runner.invoke(main, ["fit", str(tmp_path / "x.zarr"), "--n-clusters", "auto",
                                  "--max-clusters", "10", "--workers", "1", "--quiet",
                                  "--out", str(tmp_path / "m.npz")])
    assert result.exit_code == 0, result.output
    assert SoftKMeans.load(tmp_path / "m.npz").n_clusters_ == 4
    result = runner.invoke(main, ["fit", str(tmp_path / "x.zarr"), "--n-clusters", "4",
                                  "--max-clusters", "10", "--out", str(tmp_path / "n.npz")])
    assert result.exit_code != 0 and "--max-clusters" in result.output


class _Interrupt(Exception):
    """Raised from a pass callback: the driver stops mid-fit, as if killed."""


@pytest.mark.parametrize("where", ["annealing", "after the choice"])
def test_auto_resumes_from_a_checkpoint(tmp_path, where):
    x, _ = blobs(4, k=5, d=3)
    params = {"n_clusters": "auto", "max_clusters": 10}
    reference = SoftKMeans(**params).fit(x)
    anneal = sum(r["phase"] == "anneal" for r in reference.history_)
    stop_at = anneal // 2 if where == "annealing" else anneal + 1
    assert stop_at < len(reference.history_)
    seen = []

    def callback(record: dict) -> None:
        seen.append(record)
        if len(seen) == stop_at:
            raise _Interrupt

    with pytest.raises(_Interrupt):
        SoftKMeans(**params, checkpoint=tmp_path / "ck").fit(x, callback=callback)
    resumed = SoftKMeans(**params, checkpoint=tmp_path / "ck").fit(x, resume=True)
    assert resumed.n_clusters_ == reference.n_clusters_ == 5
    np.testing.assert_allclose(resumed.cluster_centers_, reference.cluster_centers_, rtol=1e-12)
    np.testing.assert_array_equal(resumed.phase_diagram_, reference.phase_diagram_)
