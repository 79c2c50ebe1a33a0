"""Every command of the command line, on small data in a temporary directory."""

from __future__ import annotations

import json

import pytest
import zarr
from click.testing import CliRunner

from dask_softkmeans.cli import main


@pytest.fixture
def runner():
    return CliRunner()


@pytest.fixture
def dataset(runner, tmp_path):
    path = tmp_path / "blobs.zarr"
    result = runner.invoke(main, ["make-data", str(path), "--n-samples", "3000",
                                  "--n-features", "3", "--k", "4", "--chunk-rows", "1000"])
    assert result.exit_code == 0, result.output
    return path


def test_make_data_writes_data_labels_and_centers(dataset):
    group = zarr.open_group(str(dataset), mode="r")
    assert group["X"].shape == (3000, 3) and group["X"].chunks == (1000, 3)
    assert group["labels"].shape == (3000,)
    assert group["centers"].shape == (4, 3)


def test_fit_predict_info(runner, dataset, tmp_path):
    model = tmp_path / "model.npz"
    result = runner.invoke(main, ["fit", str(dataset / "X"), "--k", "4", "--workers", "1",
                                  "--out", str(model)])
    assert result.exit_code == 0, result.output
    assert "Local cluster" in result.output and "dashboard" in result.output
    assert model.exists()
    labels_path = tmp_path / "labels.zarr"
    result = runner.invoke(main, ["predict", str(model), str(dataset / "X"), str(labels_path),
                                  "--workers", "1", "--quiet"])
    assert result.exit_code == 0, result.output
    labels = zarr.open_group(str(labels_path), mode="r")["labels"][:]
    truth = zarr.open_group(str(dataset), mode="r")["labels"][:]
    from sklearn.metrics import adjusted_rand_score

    assert adjusted_rand_score(truth, labels) > 0.99
    result = runner.invoke(main, ["info", str(model)])
    assert result.exit_code == 0
    summary = json.loads(result.output)
    assert summary["params"]["n_clusters"] == 4 and summary["n_features_in"] == 3


def test_outputs_are_not_overwritten_unless_asked(runner, dataset, tmp_path):
    model = tmp_path / "model.npz"
    model.write_bytes(b"precious")
    result = runner.invoke(main, ["fit", str(dataset / "X"), "--k", "2", "--out", str(model)])
    assert result.exit_code != 0 and "--overwrite" in result.output
    assert model.read_bytes() == b"precious"
    result = runner.invoke(main, ["make-data", str(dataset)])
    assert result.exit_code != 0 and "overwrite" in result.output


def test_clear_errors(runner, tmp_path, dataset):
    result = runner.invoke(main, ["fit", str(tmp_path / "missing.zarr")])
    assert result.exit_code == 1 and "No Zarr array" in result.output
    result = runner.invoke(main, ["fit", str(dataset)])
    assert result.exit_code == 1 and "is a Zarr group" in result.output and "/X" in result.output
    result = runner.invoke(main, ["info", str(tmp_path / "nothing.npz")])
    assert result.exit_code == 1 and "No model file" in result.output


def test_demo_runs_end_to_end(runner, tmp_path):
    result = runner.invoke(main, ["demo", "--n-samples", "4000", "--n-features", "2", "--k", "3",
                                  "--workers", "1", "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "centroid index vs generating centers: 0" in result.output
    assert "adjusted Rand index" in result.output


@pytest.mark.parametrize("command", ["demo", "make-data", "fit", "predict", "info", "plot"])
def test_help_everywhere(runner, command):
    result = runner.invoke(main, [command, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output
