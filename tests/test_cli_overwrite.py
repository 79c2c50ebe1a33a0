"""The command line never overwrites an output unless asked.

Every command that writes (make-data, fit --out, predict, plot, demo --dir)
refuses an existing output before doing any work, says which flag replaces
it, and leaves the existing output byte for byte as it was.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr
from click.testing import CliRunner

from dask_softkmeans import SoftKMeans, datasets
from dask_softkmeans.cli import main


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def dataset(tmp_path) -> Path:
    path = tmp_path / "blobs.zarr"
    datasets.write_blobs(path, 600, 2, 3, chunk_rows=200)
    return path


@pytest.fixture
def model_file(dataset, tmp_path) -> Path:
    path = tmp_path / "model.npz"
    SoftKMeans(3).fit(zarr.open_group(str(dataset), mode="r")["X"][:]).save(path)
    return path


def _tree(path: Path) -> dict[str, bytes]:
    """Every file under ``path`` (or ``path`` itself) with its bytes."""
    if path.is_file():
        return {path.name: path.read_bytes()}
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def _refused(result, output: Path, before: dict[str, bytes], flag: str | None = "--overwrite"):
    assert result.exit_code == 1, result.output
    assert "exists" in result.output
    if flag:
        assert flag in result.output
    assert "Local cluster" not in result.output  # refused before starting any work
    assert _tree(output) == before


def test_make_data(runner, dataset):
    before = _tree(dataset)
    result = runner.invoke(main, ["make-data", str(dataset), "--n-samples", "50"])
    _refused(result, dataset, before)
    result = runner.invoke(main, ["make-data", str(dataset), "--n-samples", "50", "--overwrite"])
    assert result.exit_code == 0, result.output
    assert zarr.open_group(str(dataset), mode="r")["X"].shape == (50, 8)


def test_make_data_in_the_library(dataset):
    before = _tree(dataset)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        datasets.write_blobs(dataset, 50)
    assert _tree(dataset) == before


def test_fit_out(runner, dataset, model_file):
    before = _tree(model_file)
    args = ["fit", str(dataset / "X"), "--k", "3", "--workers", "1", "--out", str(model_file)]
    _refused(runner.invoke(main, args), model_file, before)
    result = runner.invoke(main, [*args, "--overwrite", "--k", "2"])
    assert result.exit_code == 0, result.output
    assert SoftKMeans.load(model_file).n_clusters == 2


def test_fit_out_in_a_missing_directory_is_refused_before_the_fit(runner, dataset, tmp_path):
    out = tmp_path / "no" / "such" / "model.npz"
    result = runner.invoke(main, ["fit", str(dataset / "X"), "--out", str(out)])
    assert result.exit_code == 1
    assert "does not exist" in result.output and "Local cluster" not in result.output


def test_predict_out(runner, dataset, model_file, tmp_path):
    out = tmp_path / "labels.zarr"
    zarr.create_array(str(out), shape=(3,), dtype="int32")[:] = [7, 7, 7]
    before = _tree(out)
    args = ["predict", str(model_file), str(dataset / "X"), str(out), "--workers", "1", "--quiet"]
    _refused(runner.invoke(main, args), out, before)
    result = runner.invoke(main, [*args, "--overwrite"])
    assert result.exit_code == 0, result.output
    labels = zarr.open_group(str(out), mode="r")["labels"][:]
    assert labels.shape == (600,) and set(np.unique(labels)) <= {0, 1, 2}


def test_plot_out(runner, model_file, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "path.png"
    out.write_bytes(b"an older plot")
    _refused(runner.invoke(main, ["plot", str(model_file), str(out)]), out, _tree(out))


def test_demo_does_not_replace_a_dataset_in_its_directory(runner, dataset):
    before = _tree(dataset)
    result = runner.invoke(main, ["demo", "--n-samples", "100", "--dir", str(dataset.parent),
                                  "--workers", "1"])
    assert result.exit_code == 1, result.output
    assert "exists" in result.output and "another --dir" in result.output
    assert _tree(dataset) == before
