"""Every command of the command line, on small data in a temporary directory."""

from __future__ import annotations

import json

import click
import numpy as np
import pytest
import zarr
from click.testing import CliRunner

from dask_softkmeans import SoftKMeans
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
    assert "held in the workers' memory" in result.output
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


def test_fit_says_when_the_workers_cannot_hold_the_data(runner, dataset, monkeypatch):
    """With no share of the workers' memory offered to data, they stream from the store at
    each pass, and the summary line says so."""
    from dask_softkmeans.engine import memory as _memory

    monkeypatch.setattr(_memory, "PERSIST_MEMORY_SHARE", 0.0)
    result = runner.invoke(main, ["fit", str(dataset / "X"), "--k", "4", "--workers", "1",
                                  "--quiet"])
    assert result.exit_code == 0, result.output
    assert "read from the store at each pass" in result.output


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
    for command in (["fit", str(dataset)],  # a group, not written by xarray
                    ["predict", str(tmp_path / "m.npz"), str(dataset), str(tmp_path / "p.zarr")]):
        if command[0] == "predict":
            SoftKMeans(2).fit(np.random.default_rng(0).normal(size=(50, 2))).save(command[1])
        result = runner.invoke(main, command)
        assert result.exit_code == 1, result.output
        assert "is a Zarr group" in result.output and f"{dataset}/X" in result.output
        assert "Local cluster" not in result.output  # refused before a cluster starts
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


def test_every_option_is_documented():
    """``--help`` explains every option (a few had only their type and default)."""
    for name, command in main.commands.items():
        bare = [p.name for p in command.params if isinstance(p, click.Option) and not p.help]
        assert not bare, f"{name}: {bare}"


@pytest.mark.parametrize("option", ["--workers", "--threads", "--k", "--n-init"])
def test_counts_below_one_are_refused_before_a_cluster_starts(runner, dataset, option):
    """``--workers 0`` used to start a cluster of no workers and wait forever."""
    result = runner.invoke(main, ["fit", str(dataset / "X"), option, "0"])
    error = next(line for line in result.output.splitlines() if line.startswith("Error"))
    assert result.exit_code == 2 and "Invalid value for" in error and f"'{option}'" in error
    assert "Local cluster" not in result.output


def test_a_scheduler_address_without_a_port_and_a_negative_temperature_are_one_line_errors(
        runner, dataset, tmp_path):
    result = runner.invoke(main, ["fit", str(dataset / "X"), "--scheduler", "127.0.0.1"])
    assert result.exit_code == 1 and "missing port number" in result.output
    assert "Traceback" not in result.output and "Local cluster" not in result.output
    model = tmp_path / "m.npz"
    SoftKMeans(2).fit(np.random.default_rng(0).normal(size=(100, 3))).save(model)
    result = runner.invoke(main, ["predict", str(model), str(dataset / "X"),
                                  str(tmp_path / "out.zarr"), "--temperature", "-1"])
    assert result.exit_code == 1 and "temperature must be a finite number >= 0" in result.output
    assert "Local cluster" not in result.output and not (tmp_path / "out.zarr").exists()
