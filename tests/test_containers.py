"""The containers users have: xarray DataArray and Dataset, Zarr groups
written by xarray, pandas and Dask DataFrames; lazy input stays lazy.

Laziness is shown with real Dask collections whose blocks count their own
computations: nothing is computed by ``predict``, ``transform`` or
``predict_proba`` until ``compute``, and a fit reads no more than a fit on
the same Dask array does.
"""

from __future__ import annotations

import collections
import threading

import dask.array as da
import numpy as np
import pytest

from dask_softkmeans import SoftKMeans
from dask_softkmeans.errors import InputError

xr = pytest.importorskip("xarray")
pd = pytest.importorskip("pandas")
dd = pytest.importorskip("dask.dataframe")

NAMES = ["a", "b", "c"]
ROWS_PER_BLOCK = 500


class _Counter:
    """Counts the computations of each block; Dask tokenizes it by identity."""

    def __init__(self) -> None:
        self.calls: collections.Counter[int] = collections.Counter()
        self._lock = threading.Lock()

    def add(self, key: int) -> None:
        with self._lock:
            self.calls[key] += 1

    def __dask_tokenize__(self) -> tuple[str, int]:
        return ("counter", id(self))


def _count_block(b: np.ndarray, counter: _Counter, block_info: dict | None = None) -> np.ndarray:
    counter.add(block_info[0]["chunk-location"][0])
    return b.copy()


def _count_partition(part: pd.DataFrame, counter: _Counter) -> pd.DataFrame:
    counter.add(int(part.index[0]))
    return part.copy()


class Counted:
    """A Dask array over ``x`` whose blocks count how often they are computed."""

    def __init__(self, x: np.ndarray, rows: int = ROWS_PER_BLOCK) -> None:
        self.counter = _Counter()
        self.calls = self.counter.calls
        self.array = da.from_array(x, chunks=(rows, x.shape[1])).map_blocks(
            _count_block, self.counter, dtype=x.dtype)
        self.n_blocks = self.array.numblocks[0]

    @property
    def total(self) -> int:
        return sum(self.calls.values())


class CountedFrame:
    """A Dask DataFrame over ``x`` whose partitions count how often they are computed."""

    def __init__(self, x: np.ndarray, npartitions: int = 4) -> None:
        self.counter = _Counter()
        self.calls = self.counter.calls
        base = dd.from_pandas(pd.DataFrame(x, columns=NAMES), npartitions=npartitions)
        self.frame = base.map_partitions(_count_partition, self.counter, meta=base._meta)
        self.npartitions = npartitions

    @property
    def total(self) -> int:
        return sum(self.calls.values())


@pytest.fixture(scope="module")
def data(blobs) -> np.ndarray:
    x, _, _ = blobs
    return x


@pytest.fixture(scope="module")
def reference(data) -> SoftKMeans:
    """The model fitted on the NumPy array itself: every container must give the same."""
    return SoftKMeans(4).fit(data)


def assert_lazy_outputs(model: SoftKMeans, X, counted, data: np.ndarray, reference: SoftKMeans):
    """predict, transform and predict_proba return Dask arrays and compute nothing until
    compute; then each block is read once per output, and the values are NumPy's."""
    before = counted.total
    labels, distances, proba = model.predict(X), model.transform(X), model.predict_proba(X)
    assert all(isinstance(out, da.Array) for out in (labels, distances, proba))
    assert counted.total == before, "a block was computed before compute"
    np.testing.assert_array_equal(labels.compute(), reference.predict(data))
    assert counted.total == before + counted_blocks(counted)
    np.testing.assert_allclose(distances.compute(), reference.transform(data), rtol=1e-9)
    np.testing.assert_allclose(proba.compute(), reference.predict_proba(data), atol=1e-9)


def counted_blocks(counted) -> int:
    return counted.n_blocks if isinstance(counted, Counted) else counted.npartitions


def assert_same_model(model: SoftKMeans, reference: SoftKMeans) -> None:
    np.testing.assert_allclose(model.cluster_centers_, reference.cluster_centers_, rtol=1e-9)
    assert model.inertia_ == pytest.approx(reference.inertia_, rel=1e-9)


# -- xarray DataArray ---------------------------------------------------------------

def test_dask_backed_data_array_stays_lazy(data, reference):
    counted = Counted(data)
    X = xr.DataArray(counted.array, dims=("sample", "feature"), coords={"feature": NAMES})
    model = SoftKMeans(4).fit(X)
    assert_same_model(model, reference)
    assert list(model.feature_names_in_) == NAMES
    assert isinstance(model.labels_, da.Array)
    assert_lazy_outputs(model, X, counted, data, reference)


def test_fit_on_a_data_array_reads_what_a_fit_on_its_dask_array_reads(data):
    """No extra pass, nothing gathered: the same block reads as the bare Dask array."""
    bare, wrapped = Counted(data), Counted(data)
    SoftKMeans(4, persist=False).fit(bare.array)
    SoftKMeans(4, persist=False).fit(xr.DataArray(wrapped.array, dims=("sample", "feature")))
    assert wrapped.calls == bare.calls
    assert bare.total > 0


def test_numpy_backed_data_array_gives_numpy(data, reference):
    X = xr.DataArray(data, dims=("sample", "feature"), coords={"feature": NAMES})
    model = SoftKMeans(4).fit(X)
    assert_same_model(model, reference)
    assert list(model.feature_names_in_) == NAMES
    assert isinstance(model.predict(X), np.ndarray)
    np.testing.assert_array_equal(model.predict(X), reference.predict(data))


def test_data_array_without_string_coordinates_has_no_feature_names(data):
    model = SoftKMeans(4).fit(xr.DataArray(data, dims=("sample", "feature")))
    assert not hasattr(model, "feature_names_in_")


def test_a_data_array_that_is_not_2d_is_refused(data):
    X = xr.DataArray(data.reshape(2, 1000, 3), dims=("run", "sample", "feature"))
    with pytest.raises(InputError, match=r"must be 2-D .*stack"):
        SoftKMeans(4).fit(X)


# -- xarray Dataset and Zarr groups written by xarray ---------------------------------

def dataset(columns: dict[str, object], n: int) -> xr.Dataset:
    """A Dataset as xarray users write one: 1-D variables along ``time``, a coordinate,
    and a variable that is not a feature."""
    variables = {name: ("time", column) for name, column in columns.items()}
    variables["station"] = ("time", np.zeros(n, dtype=np.int64))
    return xr.Dataset(variables, coords={"time": np.arange(n) * 10.0})


def test_dask_backed_dataset_stays_lazy_and_variables_choose_the_features(data, reference):
    counted = Counted(data)
    ds = dataset({name: counted.array[:, j] for j, name in enumerate(NAMES)}, len(data))
    model = SoftKMeans(4).fit(ds, variables=NAMES)
    assert_same_model(model, reference)
    assert list(model.feature_names_in_) == NAMES
    # The other methods take the same variables by name, whatever the Dataset's order.
    reordered = ds[["station", "c", "a", "b"]]
    assert_lazy_outputs(model, reordered, counted, data, reference)


def test_dataset_defaults_to_every_data_variable_never_coordinates(data):
    ds = xr.Dataset({name: ("time", data[:, j]) for j, name in enumerate(NAMES)},
                    coords={"time": np.arange(len(data)), "lat": ("time", np.ones(len(data)))})
    model = SoftKMeans(4).fit(ds)
    assert list(model.feature_names_in_) == NAMES
    assert model.n_features_in_ == 3


def test_dataset_errors_name_the_variables(data):
    ds = dataset({name: data[:, j] for j, name in enumerate(NAMES)}, len(data))
    with pytest.raises(InputError, match=r"no data variable 'temperature'.*'a', 'b', 'c'"):
        SoftKMeans(4).fit(ds, variables=["a", "temperature"])
    ds2 = ds.assign(grid=(("time", "level"), np.zeros((len(data), 2))))
    with pytest.raises(InputError, match=r"1-D variable.*'grid' \('time', 'level'\)"):
        SoftKMeans(4).fit(ds2)
    with pytest.raises(InputError, match="variables choose data variables"):
        SoftKMeans(4).fit(data, variables=NAMES)


def test_zarr_group_written_by_xarray_is_fitted_by_path(tmp_path, data, reference):
    ds = dataset({name: data[:, j] for j, name in enumerate(NAMES)}, len(data))
    path = tmp_path / "weather.zarr"
    ds.chunk({"time": 250}).to_zarr(path, consolidated=False)
    model = SoftKMeans(4).fit(path, variables=NAMES)
    assert_same_model(model, reference)
    assert list(model.feature_names_in_) == NAMES
    labels = model.predict(str(path))  # the fitted variables, by name
    assert isinstance(labels, da.Array)
    np.testing.assert_array_equal(labels.compute(), reference.predict(data))
    zarr = pytest.importorskip("zarr")
    group = zarr.open_group(path, mode="r")
    np.testing.assert_array_equal(model.predict(group).compute(), reference.predict(data))


def test_the_command_line_fits_and_predicts_a_zarr_group_by_its_variables(tmp_path, data,
                                                                        reference):
    """``fit --variables`` on a group written by xarray; the model file keeps the feature
    names, so ``predict`` on the group reads the same variables, by name (here the group
    has one more variable, and its variables in another order)."""
    import zarr
    from click.testing import CliRunner

    from dask_softkmeans.cli import main

    columns = {name: data[:, j] for j, name in enumerate(NAMES)}
    path = tmp_path / "weather.zarr"
    dataset({"extra": np.zeros(len(data)), **dict(reversed(columns.items()))}, len(data)).chunk(
        {"time": 250}).to_zarr(path, consolidated=False)
    runner = CliRunner()
    model_path = tmp_path / "m.npz"
    result = runner.invoke(main, ["fit", str(path), "--variables", ",".join(NAMES), "--k", "4",
                                  "--workers", "1", "-q", "--out", str(model_path)])
    assert result.exit_code == 0, result.output
    model = SoftKMeans.load(model_path)
    assert list(model.feature_names_in_) == NAMES
    assert_same_model(model, reference)
    result = runner.invoke(main, ["predict", str(model_path), str(path), str(tmp_path / "p.zarr"),
                                  "--workers", "1", "-q"])
    assert result.exit_code == 0, result.output
    labels = zarr.open_group(tmp_path / "p.zarr", mode="r")["labels"][:]
    np.testing.assert_array_equal(labels, reference.predict(data))
    zarr.create_array(tmp_path / "x.zarr", data=data)
    result = runner.invoke(main, ["fit", str(tmp_path / "x.zarr"), "--variables", "a", "-q"])
    assert result.exit_code == 2 and "is an array. Drop --variables" in result.output


def test_a_zarr_array_path_still_refuses_variables(tmp_path, data):
    zarr = pytest.importorskip("zarr")
    zarr.create_array(tmp_path / "x.zarr", data=data)
    with pytest.raises(InputError, match=r"is an array\. Drop variables"):
        SoftKMeans(4).fit(tmp_path / "x.zarr", variables=NAMES)


# -- pandas and Dask DataFrames --------------------------------------------------------

def test_pandas_dataframe_names_and_numpy_results(data, reference):
    frame = pd.DataFrame(data, columns=NAMES)
    copy = frame.copy()
    model = SoftKMeans(4).fit(frame)
    assert_same_model(model, reference)
    assert list(model.feature_names_in_) == NAMES
    assert isinstance(model.predict(frame), np.ndarray)
    pd.testing.assert_frame_equal(frame, copy)  # nothing the user gave is modified


def test_dask_dataframe_stays_lazy(data, reference):
    counted = CountedFrame(data)
    model = SoftKMeans(4).fit(counted.frame)
    assert_same_model(model, reference)
    assert list(model.feature_names_in_) == NAMES
    labels = model.predict(counted.frame)
    # Rows per partition are not counted for a lazy result: that would read the data.
    assert np.isnan(labels.chunks[0]).all() and len(labels.chunks[0]) == counted.npartitions
    assert_lazy_outputs(model, counted.frame, counted, data, reference)
    # The result lines up with the DataFrame's partitions and index.
    out = counted.frame.assign(label=labels).compute()
    np.testing.assert_array_equal(out["label"].to_numpy(), reference.predict(data))


def test_fit_on_a_dask_dataframe_counts_rows_then_reads_as_the_dask_array(data):
    """Finding the rows per partition computes each partition once (its length only is
    kept); the fit's passes then read it as they read a Dask array of the same blocks."""
    counted = CountedFrame(data)
    SoftKMeans(4, persist=False).fit(counted.frame)
    bare = Counted(data, rows=len(data) // counted.npartitions)
    SoftKMeans(4, persist=False).fit(bare.array)
    assert bare.n_blocks == counted.npartitions
    assert sorted(counted.calls.values()) == sorted(v + 1 for v in bare.calls.values())


def test_non_numeric_columns_are_refused_before_any_work(data):
    frame = pd.DataFrame(data, columns=NAMES).assign(site=["x"] * len(data))
    counted = CountedFrame(data)
    lazy = counted.frame.assign(site="x")
    for X in (frame, lazy):
        with pytest.raises(InputError, match=r"not numeric: 'site'.*select_dtypes"):
            SoftKMeans(4).fit(X)
    assert counted.total == 0


def test_predict_with_other_columns_is_refused(data):
    counted = CountedFrame(data)
    model = SoftKMeans(4).fit(counted.frame)
    other = counted.frame.rename(columns={"c": "d"})
    with pytest.raises(InputError, match="feature names should match"):
        model.predict(other)


def test_lazy_sample_weights_from_containers(data, reference):
    """Weights may come as a DataArray or a Dask Series; a weight of 2 is a repeated row."""
    w = np.ones(len(data))
    model = SoftKMeans(4).fit(xr.DataArray(da.from_array(data, chunks=(500, 3))),
                              sample_weight=xr.DataArray(da.from_array(w, chunks=500)))
    assert_same_model(model, reference)
    frame = dd.from_pandas(pd.DataFrame(data, columns=NAMES), npartitions=4)
    model = SoftKMeans(4).fit(frame, sample_weight=dd.from_pandas(pd.Series(w), npartitions=4))
    assert_same_model(model, reference)


def test_fit_predict_takes_the_variables_of_fit(tmp_path, data, reference):
    ds = dataset({name: data[:, j] for j, name in enumerate(NAMES)}, len(data))
    path = tmp_path / "weather.zarr"
    ds.chunk({"time": 250}).to_zarr(path, consolidated=False)
    for compute_labels in (True, False):
        model = SoftKMeans(4, compute_labels=compute_labels)
        labels = model.fit_predict(path, variables=NAMES)
        assert list(model.feature_names_in_) == NAMES
        np.testing.assert_array_equal(np.asarray(labels), reference.predict(data))
