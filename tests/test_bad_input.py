"""The bad-input catalogue: every refusal names the problem and the fix.

Each case checks the error type, that the message says what was found and how
to fix it, that the user's array is left as it was, and, for Dask input, how
much of the data was read before the refusal: nothing for problems visible in
the metadata, one pass for problems in the values.  A Hypothesis test feeds
random small arrays and asserts a correct fit or one of our documented errors.
"""

from __future__ import annotations

import os
import re
import warnings

import dask
import dask.array as da
import numpy as np
import pytest
import scipy.sparse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sklearn.utils._param_validation import InvalidParameterError

from dask_softkmeans import SoftKMeans
from dask_softkmeans.errors import (
    ChunkingError,
    InputError,
    NonNumericError,
    SoftKMeansError,
)


def _counted(x: np.ndarray, chunks) -> tuple[da.Array, list]:
    """A Dask array over ``x`` that records every block it reads (on this process's schedulers)."""
    reads: list = []

    def read(block: np.ndarray, block_info=None) -> np.ndarray:
        reads.append(block_info[0]["chunk-location"])
        return block

    source = da.from_array(x, chunks=chunks)
    return source.map_blocks(read, dtype=source.dtype, meta=np.empty((0,) * x.ndim, x.dtype)), reads


def _unchanged(before: np.ndarray, after: np.ndarray) -> bool:
    return before.dtype == after.dtype and np.array_equal(before, after, equal_nan=before.dtype.kind == "f")


def _fit_refused(x, k, error, problem, fix, **fit_kwargs):
    with pytest.raises(error) as info:
        SoftKMeans(k, persist=False).fit(x, **fit_kwargs)
    message = str(info.value)
    assert re.search(problem, message), message
    assert re.search(fix, message), message
    return message


RNG = np.random.default_rng(0)
BLOBS = np.vstack([RNG.normal(size=(40, 3)) + c for c in ([0, 0, 0], [8, 0, 0], [0, 8, 0])])


def _with(value, where=(5, 1)):
    x = BLOBS.copy()
    x[where] = value
    return x


# Problems in the metadata: refused before any block is read.
METADATA_CASES = [
    # id, X, n_clusters, error, problem, fix
    ("1-D", BLOBS[:, 0], 2, InputError, r"2-D array.*got 1-D", r"reshape\(-1, 1\)"),
    ("3-D", BLOBS.reshape(12, 10, 3), 2, InputError, r"2-D array.*got 3-D",
     r"reshape\(len\(X\), -1\)"),
    ("no samples", BLOBS[:0], 2, InputError, r"empty: 0 sample", r"at least one sample"),
    ("no features", BLOBS[:, :0], 2, InputError, r"empty: .* 0 feature", r"one feature"),
    ("strings", BLOBS.astype(str), 2, NonNumericError, r"dtype <U.*real numbers", r"astype"),
    ("datetimes", np.zeros((6, 2), "datetime64[s]"), 2, NonNumericError,
     r"datetime64.*real numbers", r"astype"),
    ("complex", BLOBS.astype(complex), 2, NonNumericError, r"Complex data not supported",
     r"np\.hstack\(\[X\.real, X\.imag\]\)"),
    ("fewer samples than clusters", BLOBS[:3], 5, InputError,
     r"n_samples=3 should be >= n_clusters=5", r"n_clusters <= 3"),
]


@pytest.mark.parametrize("kind", ["numpy", "dask"])
@pytest.mark.parametrize(("x", "k", "error", "problem", "fix"),
                         [c[1:] for c in METADATA_CASES], ids=[c[0] for c in METADATA_CASES])
def test_metadata_problems_are_refused_before_reading_data(kind, x, k, error, problem, fix):
    before = x.copy()
    if kind == "numpy":
        _fit_refused(x, k, error, problem, fix)
    else:
        dx, reads = _counted(x, chunks=7)
        _fit_refused(dx, k, error, problem, fix)
        assert reads == []  # not one block read
    assert _unchanged(before, x)


def test_object_arrays_of_non_numbers_are_refused_and_numbers_accepted():
    words = BLOBS.astype(object)
    words[3, 2] = "seven"
    before = words.copy()
    message = _fit_refused(words, 2, NonNumericError, r"not numbers.*'seven'", r"astype\('float64'\)")
    assert "Encode or drop the non-numeric columns" in message
    assert (words == before).all()
    with pytest.raises(TypeError):  # the exception NumPy itself raises for this problem
        SoftKMeans(2).fit(np.array([[{"a": 1}, 1.0]] * 4, dtype=object))
    numbers = BLOBS.astype(object)
    model = SoftKMeans(3).fit(numbers)
    np.testing.assert_allclose(model.cluster_centers_, SoftKMeans(3).fit(BLOBS).cluster_centers_)


def test_ragged_rows_and_sparse_matrices_are_explained():
    _fit_refused([[1.0, 2.0], [3.0]], 1, InputError, r"not a rectangular array",
                 r"same number of features")
    _fit_refused(scipy.sparse.csr_matrix(BLOBS), 2, InputError, r"sparse matrix", r"toarray\(\)")


@pytest.mark.parametrize("kind", ["numpy", "dask"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_infinity_are_found_inside_the_first_pass(kind, bad):
    x = _with(bad, where=(97, 2))
    before = x.copy()
    if kind == "numpy":
        message = _fit_refused(x, 3, InputError, r"NaN or infinity.* in 1 rows", r"Drop or impute")
    else:
        dx, reads = _counted(x, chunks=20)
        message = _fit_refused(dx, 3, InputError, r"NaN or infinity.* in 1 rows", r"Drop or impute")
        # One pass (the first row is read once more, as the origin of the sums): no extra scan.
        assert len(reads) <= dx.numblocks[0] + 1
        assert sorted(set(reads)) == [(i, 0) for i in range(dx.numblocks[0])]
    assert "X[np.isfinite(X).all(axis=1)]" in message
    assert _unchanged(before, x)


@pytest.mark.parametrize("kind", ["numpy", "dask"])
@pytest.mark.parametrize(("x", "problem"), [
    (BLOBS * 1e160, r"so large that squared distances overflow"),
    ((BLOBS * 1e20).astype(np.float32), r"so large that squared distances overflow"),
    (np.array([[1.7e308, 0.0], [-1.7e308, 0.0], [0.0, 1.0]]), r"overflow"),
], ids=["float64", "float32", "near-max"])
def test_values_whose_squared_distances_overflow(kind, x, problem):
    before = x.copy()
    data = x if kind == "numpy" else da.from_array(x, chunks=50)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # NumPy's own note of the overflow
        _fit_refused(data, 2, InputError, problem, r"Rescale X.*divide it by its largest")
    assert _unchanged(before, x)


@pytest.mark.parametrize("kind", ["numpy", "dask"])
@pytest.mark.parametrize("x", [np.full((30, 3), 4.25), np.tile([1.0, -2.0, 3.5], (30, 1))],
                         ids=["constant", "all-duplicate rows"])
def test_one_distinct_point_cannot_make_several_clusters(kind, x):
    before = x.copy()
    if kind == "numpy":
        _fit_refused(x, 3, InputError, r"same point.*n_clusters=3", r"use n_clusters=1")
    else:
        dx, reads = _counted(x, chunks=10)
        _fit_refused(dx, 3, InputError, r"same point.*n_clusters=3", r"use n_clusters=1")
        assert len(reads) <= dx.numblocks[0] + 1  # found by the first pass
    assert _unchanged(before, x)
    model = SoftKMeans(1).fit(x if kind == "numpy" else da.from_array(x, chunks=10))
    np.testing.assert_array_equal(model.cluster_centers_, x[:1])
    assert model.inertia_ == 0.0


def test_constant_columns_are_fine():
    x = BLOBS.copy()
    x[:, 1] = 3.0
    model = SoftKMeans(3).fit(x)
    np.testing.assert_array_equal(model.cluster_centers_[:, 1], 3.0)


@pytest.mark.parametrize("k", [0, -1, 2.5, 2.0, "3", None])
def test_non_positive_or_non_integer_n_clusters(k):
    with pytest.raises(InvalidParameterError) as info:  # a ValueError and a TypeError
        SoftKMeans(k).fit(BLOBS)
    message = str(info.value)
    assert "'n_clusters' parameter of SoftKMeans" in message  # the problem ...
    assert "must be an int in the range [1, inf)" in message  # ... and what to pass
    assert f"Got {k!r} instead" in message


def test_dask_arrays_chunked_along_features_are_rechunked_lazily():
    row_chunks = da.from_array(BLOBS, chunks=(25, 3))
    both = da.from_array(BLOBS, chunks=(25, 1))
    reference = SoftKMeans(3, compute_labels=False).fit(row_chunks)
    model = SoftKMeans(3, compute_labels=False).fit(both)
    np.testing.assert_allclose(model.cluster_centers_, reference.cluster_centers_, rtol=1e-12)
    assert model.predict(both).chunks[0] == both.chunks[0]


@pytest.mark.parametrize("method", ["fit", "predict"])
def test_unknown_chunk_sizes(method):
    x, reads = _counted(BLOBS, chunks=30)
    unknown = x[x[:, 0] > -100]  # boolean indexing: row counts unknown until computed
    model = SoftKMeans(3).fit(BLOBS) if method == "predict" else SoftKMeans(3)
    reads.clear()
    with pytest.raises(ChunkingError) as info:
        getattr(model, method)(unknown)
    assert "unknown chunk sizes" in str(info.value)
    assert "compute_chunk_sizes()" in str(info.value)
    assert reads == []


@pytest.mark.parametrize("kind", ["numpy", "dask"])
@pytest.mark.parametrize("method", ["predict", "predict_proba", "transform", "score"])
def test_a_different_number_of_features_after_fit(kind, method):
    model = SoftKMeans(3).fit(BLOBS)
    wide = np.hstack([BLOBS, BLOBS[:, :1]])
    data = wide if kind == "numpy" else _counted(wide, chunks=30)[0]
    with pytest.raises(InputError) as info:
        getattr(model, method)(data)
    message = str(info.value)
    assert "X has 4 features, but SoftKMeans is expecting 3 features" in message
    assert "Pass data with the same 3 columns" in message


@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.int64, np.uint8, np.uint64])
@pytest.mark.parametrize("kind", ["numpy", "dask"])
def test_integer_input_is_accepted_and_converted(dtype, kind):
    x = np.abs(np.round(BLOBS * 3)).astype(dtype)
    before = x.copy()
    data = x if kind == "numpy" else da.from_array(x, chunks=50)
    model = SoftKMeans(3, compute_labels=False).fit(data)
    reference = SoftKMeans(3, compute_labels=False).fit(x.astype(np.float64))
    assert model.cluster_centers_.dtype == np.float64
    np.testing.assert_allclose(model.cluster_centers_, reference.cluster_centers_, rtol=1e-12)
    labels = model.predict(data)
    np.testing.assert_array_equal(np.asarray(labels), reference.predict(x.astype(np.float64)))
    assert _unchanged(before, x)


def test_bool_and_float16_are_accepted():
    bits = BLOBS > 0
    model = SoftKMeans(2).fit(bits)
    assert np.isfinite(model.cluster_centers_).all()
    half = BLOBS.astype(np.float16)
    before = half.copy()
    model = SoftKMeans(3).fit(half)
    reference = SoftKMeans(3).fit(half.astype(np.float32))
    np.testing.assert_allclose(model.cluster_centers_, reference.cluster_centers_, rtol=1e-12)
    assert _unchanged(before, half)


def test_successful_fits_leave_the_users_array_alone():
    for x in (BLOBS.copy(), BLOBS.astype(np.float32), np.asfortranarray(BLOBS)):
        before = x.copy()
        SoftKMeans(3).fit(x)
        SoftKMeans(3).fit(da.from_array(x, chunks=30))
        assert _unchanged(before, x)


def test_read_only_arrays_are_accepted_and_never_written():
    """Read-only input (a memory map opened with mode='r', a Zarr read) fails on any write."""
    x = BLOBS.astype(np.float32)
    x.setflags(write=False)
    for data in (x, da.from_array(x, chunks=30)):
        model = SoftKMeans(3).fit(data)
        np.testing.assert_array_equal(np.asarray(model.predict(data)), model.labels_)
        np.asarray(model.predict_proba(data))
        np.asarray(model.transform(data))
        model.score(data)


def test_nan_at_predict_is_refused_with_the_fix():
    model = SoftKMeans(3).fit(BLOBS)
    x = _with(np.nan)
    for method in ("predict", "predict_proba", "transform", "score"):
        with pytest.raises(InputError, match=r"NaN or infinity.*Drop or impute"):
            result = getattr(model, method)(da.from_array(x, chunks=30))
            dask.compute(result)
        with pytest.raises(InputError, match=r"NaN or infinity.*Drop or impute"):
            getattr(model, method)(x)
    assert np.isnan(x[5, 1])


# -- Hypothesis: random small arrays get a correct fit or one of our errors --------------------

NUMERIC = ["int8", "int64", "uint16", "bool", "float16", "float32", "float64", "float64"]
OTHER = ["object", "complex128", "<U2"]


def _elements(dtype: str, extreme: bool):
    if dtype.startswith("float"):
        width = {"float16": 16, "float32": 32, "float64": 64}[dtype]
        if extreme:  # the whole range: huge values, subnormals, NaN and infinities
            return st.floats(width=width, allow_nan=True, allow_infinity=True)
        return st.floats(-100, 100, width=width)
    if dtype == "object":
        return st.one_of(st.floats(-100, 100), st.integers(-5, 5), st.none(), st.text(max_size=2))
    return None  # hypothesis' default elements for the dtype


@st.composite
def inputs(draw):
    """Mostly well-formed 2-D numeric arrays (so that many fits run), and every kind of bad one."""
    dtype = draw(st.sampled_from(NUMERIC if draw(st.integers(0, 4)) else OTHER))
    roll = draw(st.integers(0, 9))
    if roll < 7:
        shape = (draw(st.integers(1, 12)), draw(st.integers(1, 4)))
    elif roll == 7:
        shape = draw(hnp.array_shapes(min_dims=2, max_dims=2, min_side=0, max_side=3))
    else:
        shape = draw(hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=5))
    extreme = draw(st.integers(0, 4)) == 0
    x = draw(hnp.arrays(np.dtype(dtype), shape, elements=_elements(dtype, extreme)))
    if x.size and x.dtype.kind == "f" and draw(st.integers(0, 3)) == 0:
        # A few NaN or infinities in random places.
        flat = x.reshape(-1)
        for i in draw(st.lists(st.integers(0, x.size - 1), min_size=1, max_size=3)):
            flat[i] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    as_dask = draw(st.booleans()) and x.dtype != object and x.ndim >= 1 and 0 not in x.shape
    k = draw(st.integers(1, 4))
    chunks = draw(st.integers(1, max(1, x.shape[0]))) if as_dask else None
    return x, k, chunks


#: 60 examples keep the suite fast; SOFTKMEANS_FUZZ_EXAMPLES=1000 runs a long campaign.
FUZZ_EXAMPLES = int(os.environ.get("SOFTKMEANS_FUZZ_EXAMPLES", "60"))


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(inputs())
def test_random_small_arrays_fit_or_get_a_documented_error(case):
    x, k, chunks = case
    before = x.copy()
    data = x if chunks is None else da.from_array(x, chunks=chunks)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fewer distinct points than clusters, overflow notes
        try:
            model = SoftKMeans(k, max_iter=50).fit(data)
        except SoftKMeansError:
            pass  # one of ours: its message is checked case by case above
        else:
            n, d = x.shape
            assert model.cluster_centers_.shape == (k, d)
            assert np.isfinite(model.cluster_centers_).all()
            assert model.labels_.shape == (n,)
            assert ((model.labels_ >= 0) & (model.labels_ < k)).all()
            assert np.isfinite(model.inertia_) and model.inertia_ >= 0
            np.testing.assert_array_equal(np.asarray(model.predict(data)), model.labels_)
    assert before.dtype == x.dtype and before.shape == x.shape
    assert np.array_equal(before, x, equal_nan=x.dtype.kind in "fc")


def test_bad_dask_weights_are_refused_outside_fit_too():
    """score, soft_statistics and partial_fit read Dask weights without fit's first pass."""
    import dask.array as da

    from dask_softkmeans import soft_statistics

    x = np.random.default_rng(0).normal(size=(200, 2))
    w = np.ones(200)
    w[5] = -1.0
    X, W = da.from_array(x, chunks=50), da.from_array(w, chunks=50)
    model = SoftKMeans(2).fit(x)
    centers = model.cluster_centers_.copy()
    for call in (lambda: model.score(X, sample_weight=W),
                 lambda: soft_statistics(X, centers, 1.0, sample_weight=W),
                 lambda: model.partial_fit(X, sample_weight=W)):
        with pytest.raises(InputError, match="sample_weight must be finite and non-negative"):
            call()
    np.testing.assert_array_equal(model.cluster_centers_, centers)
