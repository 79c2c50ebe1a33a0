"""Model files: damaged, truncated, newer or foreign files get a clear error; no unpickling.

Every file here is real, written under ``tmp_path``: the good one by
``SoftKMeans.save``, the bad ones by cutting, flipping or rewriting it, or by
writing something that is not a model at all.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import zarr
from click.testing import CliRunner

from dask_softkmeans import SoftKMeans
from dask_softkmeans.cli import main
from dask_softkmeans.errors import InputError, ModelFileError, StoreNotFoundError
from dask_softkmeans.io import MODEL_FORMAT_VERSION


class _Trap:
    """Unpickling this creates ``marker``: proof that a loader ran code from a file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.fixture(scope="module")
def fitted():
    x = np.random.default_rng(0).normal(size=(300, 2)) + np.repeat([[0, 0], [6, 0], [0, 6]], 100, 0)
    return SoftKMeans(3).fit(x), x


@pytest.fixture
def saved(fitted, tmp_path) -> Path:
    path = tmp_path / "model.npz"
    fitted[0].save(path)
    return path


def _parts(path: Path) -> tuple[dict, dict]:
    with np.load(path, allow_pickle=False) as archive:
        meta = json.loads(str(archive["__meta__"]))
        arrays = {k: archive[k] for k in archive.files if k != "__meta__"}
    return meta, arrays


def _rewrite(path: Path, meta, arrays: dict, **extra) -> Path:
    text = meta if isinstance(meta, str) else json.dumps(meta)
    with open(path, "wb") as f:
        np.savez(f, __meta__=np.array(text), **arrays, **extra)
    return path


def _refused(path, *phrases: str) -> str:
    with pytest.raises(ModelFileError) as info:
        SoftKMeans.load(path)
    message = str(info.value)
    assert str(path) in message
    for phrase in phrases:
        assert phrase in message, message
    return message


def test_round_trip_reproduces_the_model(fitted, saved):
    model, x = fitted
    loaded = SoftKMeans.load(saved)
    np.testing.assert_array_equal(loaded.cluster_centers_, model.cluster_centers_)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    np.testing.assert_array_equal(loaded.predict_proba(x), model.predict_proba(x))
    assert loaded.get_params() == model.get_params()
    assert loaded.history_ == json.loads(json.dumps(model.history_))


@pytest.mark.parametrize("keep", [0, 10, 200, 0.5, -22, -1])
def test_truncated_files(saved, keep):
    data = saved.read_bytes()
    cut = int(len(data) * keep) if isinstance(keep, float) else keep
    saved.write_bytes(data[:cut])
    _refused(saved, "not an .npz archive", "truncated", "fit and save the model again")


def test_a_flipped_byte_is_caught_by_the_checksums(saved):
    data = bytearray(saved.read_bytes())
    at = data.index("dask-softkmeans-model".encode("utf-32-le"))  # in the metadata member
    data[at + 3] ^= 0x20
    saved.write_bytes(bytes(data))
    _refused(saved, "damaged", "Bad CRC-32", "Fit and save the model again")


def test_a_newer_format_version_asks_for_an_upgrade(saved):
    meta, arrays = _parts(saved)
    _rewrite(saved, {**meta, "version": MODEL_FORMAT_VERSION + 1}, arrays)
    _refused(saved, f"format version {MODEL_FORMAT_VERSION + 1} > {MODEL_FORMAT_VERSION}",
             "Upgrade dask-softkmeans")


@pytest.mark.parametrize("version", ["1", None, 0, True, 1.5])
def test_a_garbled_format_version(saved, version):
    meta, arrays = _parts(saved)
    _rewrite(saved, {**meta, "version": version}, arrays)
    _refused(saved, "damaged format version")


@pytest.mark.parametrize("content", [b"", b"centers: 1 2 3\n", b"PK\x03\x04 not really"],
                         ids=["empty", "text", "zip magic only"])
def test_files_that_are_not_models(tmp_path, content):
    path = tmp_path / "model.npz"
    path.write_bytes(content)
    _refused(path, "not a dask-softkmeans model file", "Check the path")


def test_other_npz_archives_and_directories_are_not_models(tmp_path, saved):
    other = tmp_path / "other.npz"
    np.savez(other, cluster_centers=np.zeros((3, 2)))
    _refused(other, "not a dask-softkmeans model file", "no model metadata")
    meta, arrays = _parts(saved)
    _refused(_rewrite(tmp_path / "list.npz", [1, 2], arrays), "not a dask-softkmeans model file")
    _refused(_rewrite(tmp_path / "alien.npz", {**meta, "format": "sklearn"}, arrays),
             "not a dask-softkmeans model file")
    _refused(_rewrite(tmp_path / "json.npz", "{not json", arrays), "damaged", "Expecting")
    zarr.create_array(str(tmp_path / "x.zarr"), shape=(4, 2), dtype="f8")
    _refused(tmp_path / "x.zarr", "is a directory, not a model file", ".npz file")
    with pytest.raises(StoreNotFoundError, match="No model file"):
        SoftKMeans.load(tmp_path / "missing.npz")


@pytest.mark.parametrize(("change", "phrase"), [
    (lambda m, a: ({**m, "params": {**m["params"], "bogus": 1}}, a), "unexpected keyword"),
    (lambda m, a: ({**m, "params": {**m["params"], "n_clusters": "three"}}, a), "n_clusters"),
    (lambda m, a: ({**m, "params": {**m["params"], "n_clusters": 5}}, a), "wrong shape"),
    (lambda m, a: ({**m, "n_features_in": "x"}, a), "invalid literal"),
    (lambda m, a: ({k: v for k, v in m.items() if k != "history"}, a), "'history'"),
    (lambda m, a: (m, {k: v for k, v in a.items() if k != "offset"}), "'offset'"),
    (lambda m, a: (m, {**a, "cluster_centers": np.full((3, 2), np.nan)}), "NaN or infinity"),
    (lambda m, a: (m, {**a, "cluster_centers": np.array([["a", "b"]] * 3)}), "not real numbers"),
    (lambda m, a: (m, {**a, "weights": np.ones(7)}), "weights_"),
    (lambda m, a: (m, {**a, "phase_diagram": np.ones(4)}), "phase_diagram_"),
], ids=["unknown param", "invalid param", "K does not match", "bad scalar", "no history",
        "missing array", "NaN centers", "string centers", "wrong weights", "wrong diagram"])
def test_inconsistent_contents_are_refused(saved, change, phrase):
    meta, arrays = change(*_parts(saved))
    _rewrite(saved, meta, arrays)
    message = _refused(saved, phrase, "Fit and save the model again")
    assert "damaged" in message


def test_loading_never_unpickles(tmp_path, saved):
    armed = tmp_path / "armed"
    pickle.loads(pickle.dumps(_Trap(armed)))
    assert armed.exists()  # the trap works when something does unpickle it

    marker = tmp_path / "ran"
    trap = np.empty(1, dtype=object)
    trap[0] = _Trap(marker)
    # 1. an object array inside an otherwise valid model file
    meta, arrays = _parts(saved)
    with open(saved, "wb") as f:
        np.savez(f, __meta__=np.array(json.dumps(meta)), trap=trap, **arrays)
    _refused(saved, "damaged", "Object arrays cannot be loaded")
    # 2. the trap as the centers
    with open(saved, "wb") as f:
        np.savez(f, __meta__=np.array(json.dumps(meta)), **{**arrays, "cluster_centers": trap})
    _refused(saved, "damaged")
    # 3. a plain pickle, and an .npy of objects, under a model's name
    (tmp_path / "pickle.npz").write_bytes(pickle.dumps(_Trap(marker)))
    _refused(tmp_path / "pickle.npz", "not a dask-softkmeans model file")
    with open(tmp_path / "objects.npz", "wb") as f:
        np.save(f, trap, allow_pickle=True)
    _refused(tmp_path / "objects.npz", "not a dask-softkmeans model file")
    assert not marker.exists()


def test_model_file_errors_are_input_errors(saved):
    saved.write_bytes(b"")
    with pytest.raises(InputError):  # and so ValueError, for callers that catch that
        SoftKMeans.load(saved)


def test_the_cli_reports_a_damaged_model_in_one_line(saved, tmp_path):
    saved.write_bytes(saved.read_bytes()[:300])
    result = CliRunner().invoke(main, ["info", str(saved)])
    assert result.exit_code == 1
    assert "not an .npz archive" in result.output and "Traceback" not in result.output


def test_save_refuses_to_overwrite_and_writes_atomically(fitted, saved):
    model, _ = fitted
    before = saved.read_bytes()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        model.save(saved)
    assert saved.read_bytes() == before
    model.save(saved, overwrite=True)
    assert SoftKMeans.load(saved).n_clusters == 3
    assert sorted(p.name for p in saved.parent.iterdir()) == ["model.npz"]  # no temporary left
