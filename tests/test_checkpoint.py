"""Checkpoint and resume: an interrupted fit continues to the result of an uninterrupted one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import make_blobs

from dask_softkmeans import SoftKMeans, datasets, io
from dask_softkmeans.errors import CheckpointError, InputError

CLI = [sys.executable, "-m", "dask_softkmeans.cli"]


class Interrupt(Exception):
    """Raised from a progress callback: the driver stops mid-fit, as if killed."""


def interrupt_after(passes: int):
    seen = []

    def callback(record: dict) -> None:
        seen.append(record)
        if len(seen) == passes:
            raise Interrupt

    return callback


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    """Six 3-D blobs: enough temperatures for an interruption in the middle."""
    return make_blobs(3000, n_features=3, centers=6, random_state=0)[0]


@pytest.mark.parametrize(("n_init", "stop_at"), [(1, 7), (1, 25), (2, 45)])
def test_resumed_fit_equals_uninterrupted(data, tmp_path, n_init, stop_at):
    params = {"n_clusters": 6, "n_init": n_init, "random_state": 0}
    reference = SoftKMeans(**params).fit(data)
    assert len(reference.history_) * n_init > stop_at  # the interruption is mid-fit
    with pytest.raises(Interrupt):
        SoftKMeans(**params, checkpoint=tmp_path).fit(data, callback=interrupt_after(stop_at))
    resumed = SoftKMeans(**params, checkpoint=tmp_path).fit(data, resume=True)
    np.testing.assert_allclose(resumed.cluster_centers_, reference.cluster_centers_, rtol=1e-12,
                               atol=0)
    assert resumed.inertia_ == pytest.approx(reference.inertia_, rel=1e-12)
    assert len(resumed.history_) == len(reference.history_)
    np.testing.assert_array_equal(resumed.phase_diagram_, reference.phase_diagram_)
    np.testing.assert_array_equal(resumed.labels_, reference.labels_)


def test_resume_of_a_finished_fit_makes_no_pass(data, tmp_path):
    model = SoftKMeans(6, checkpoint=tmp_path).fit(data)
    passes = []
    again = SoftKMeans(6, checkpoint=tmp_path).fit(data, resume=True, callback=passes.append)
    assert passes == []
    np.testing.assert_array_equal(again.cluster_centers_, model.cluster_centers_)


def test_resume_without_checkpoint_starts_afresh(data, tmp_path):
    directory = tmp_path / "new" / "dir"
    model = SoftKMeans(6, checkpoint=directory).fit(data, resume=True)
    np.testing.assert_allclose(model.cluster_centers_, SoftKMeans(6).fit(data).cluster_centers_,
                               rtol=1e-12)
    assert (directory / "checkpoint.npz").exists()


def test_existing_checkpoint_is_never_overwritten(data, tmp_path):
    with pytest.raises(Interrupt):
        SoftKMeans(6, checkpoint=tmp_path).fit(data, callback=interrupt_after(10))
    path = tmp_path / "checkpoint.npz"
    before = path.read_bytes()
    with pytest.raises(CheckpointError, match=r"interrupted fit .*resume=True .*not touched"):
        SoftKMeans(6, checkpoint=tmp_path).fit(data)
    assert path.read_bytes() == before


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"n_clusters": 5}, r"other parameters \(n_clusters: 6 in the checkpoint, 5 now\)"),
        ({"tol": 1e-3}, r"other parameters \(tol"),
        ({"rows": 2500}, r"other data \(.*shape: \[3000, 3\] in the checkpoint, \[2500, 3\] now"),
        ({"shift": 1e-3}, r"other data \(mean"),
    ],
)
def test_resume_on_other_data_or_parameters_is_refused(data, tmp_path, change, match):
    with pytest.raises(Interrupt):
        SoftKMeans(6, checkpoint=tmp_path).fit(data, callback=interrupt_after(10))
    x = data[: change.pop("rows", len(data))] + change.pop("shift", 0.0)
    with pytest.raises(CheckpointError, match=match):
        SoftKMeans(**{"n_clusters": 6, **change}, checkpoint=tmp_path).fit(x, resume=True)


def test_damaged_checkpoint_and_file_path_are_refused(data, tmp_path):
    (tmp_path / "checkpoint.npz").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"not a readable checkpoint.*Move it away"):
        SoftKMeans(6, checkpoint=tmp_path).fit(data, resume=True)
    with pytest.raises(CheckpointError, match="is a file; it must be a directory"):
        SoftKMeans(6, checkpoint=tmp_path / "checkpoint.npz").fit(data)


def _checkpoint_passes(directory: Path) -> int:
    try:
        meta, _ = io.load_arrays(directory / "checkpoint.npz")
    except Exception:  # not written yet
        return 0
    state = meta["checkpoint"]["state"]
    return len(state["history"]) if state and state["stage"] == "anneal" else 0


@pytest.mark.slow
def test_killed_driver_process_resumes_from_the_command_line(tmp_path):
    """A real driver process is killed (SIGKILL) mid-fit; ``fit --resume`` finishes it."""
    datasets.write_blobs(tmp_path / "blobs.zarr", 8000, 2, 8, chunk_rows=1000, random_state=3)
    data = str(tmp_path / "blobs.zarr" / "X")
    common = [*CLI, "fit", data, "--k", "8", "--workers", "1", "--quiet"]
    subprocess.run([*common, "--out", str(tmp_path / "reference.npz")], check=True, timeout=300)

    checkpoint = tmp_path / "checkpoint"
    process = subprocess.Popen([*common, "--checkpoint", str(checkpoint)], start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while _checkpoint_passes(checkpoint) < 5 and process.poll() is None:
            assert time.monotonic() < deadline, "the fit never wrote a checkpoint"
            time.sleep(0.01)
        assert process.poll() is None, "the fit ended before it could be killed"
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # the driver and its local cluster
        process.wait()
    killed_at = _checkpoint_passes(checkpoint)
    assert killed_at >= 5

    result = subprocess.run(
        [*common, "--checkpoint", str(checkpoint), "--resume", "--out", str(tmp_path / "m.npz")],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    resumed, reference = SoftKMeans.load(tmp_path / "m.npz"), SoftKMeans.load(tmp_path / "reference.npz")
    assert len(resumed.history_) == len(reference.history_) > killed_at
    np.testing.assert_allclose(resumed.cluster_centers_, reference.cluster_centers_, rtol=1e-12)

    again = subprocess.run([*common, "--checkpoint", str(checkpoint)], capture_output=True,
                           text=True, timeout=300)
    assert again.returncode == 1 and "--resume" in again.stderr


def test_cli_resume_needs_a_checkpoint_directory(tmp_path):
    result = subprocess.run([*CLI, "fit", str(tmp_path / "x.zarr"), "--resume"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "--resume needs --checkpoint DIR" in result.stderr


def test_resume_with_a_gradient_optimizer(data, tmp_path):
    params = {"n_clusters": 6, "optimizer": "adam"}
    reference = SoftKMeans(**params).fit(data)
    with pytest.raises(Interrupt):
        SoftKMeans(**params, checkpoint=tmp_path).fit(data, callback=interrupt_after(15))
    resumed = SoftKMeans(**params, checkpoint=tmp_path).fit(data, resume=True)
    np.testing.assert_allclose(resumed.cluster_centers_, reference.cluster_centers_, rtol=1e-12)
    assert len(resumed.history_) == len(reference.history_)


def test_resume_without_a_checkpoint_directory_is_refused(data):
    with pytest.raises(InputError, match=r"resume=True needs the checkpoint directory"):
        SoftKMeans(6).fit(data, resume=True)


def test_a_checkpoint_missing_its_state_is_damaged(data, tmp_path):
    io.save_arrays(tmp_path / "checkpoint.npz", {"checkpoint": {"run": 0}}, {})
    with pytest.raises(CheckpointError, match=r"damaged checkpoint.*Move it away"):
        SoftKMeans(6, checkpoint=tmp_path).fit(data, resume=True)


def test_model_with_a_path_checkpoint_saves(data, tmp_path):
    model = SoftKMeans(6, checkpoint=tmp_path / "ck").fit(data)
    model.save(tmp_path / "m.npz")
    assert SoftKMeans.load(tmp_path / "m.npz").checkpoint == str(tmp_path / "ck")


def test_refit_drops_labels_of_the_earlier_fit(data):
    model = SoftKMeans(6).fit(data)
    model.set_params(compute_labels=False).fit(data[:100])
    assert not hasattr(model, "labels_")
