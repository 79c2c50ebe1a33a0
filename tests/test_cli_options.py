"""The command line matches the estimator.

Every parameter of ``SoftKMeans().get_params()`` is an option of ``fit``,
named as in the estimator, with its default, checked by its constraints, and
its value reaches the fitted model; or it is listed in :data:`EXCLUDED` with
the reason.  Every command takes the same ``-q``/``-v``; ``python -m
dask_softkmeans`` works; ``--help`` imports none of the heavy dependencies.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import numpy as np
import pytest
import zarr
from click.testing import CliRunner

from dask_softkmeans import SoftKMeans, datasets, io
from dask_softkmeans.cli import (
    COMPRESSOR_NAMES,
    DEFAULT_DATA_COMPRESSOR,
    METRIC_NAMES,
    NORMALIZATION_NAMES,
    OPTIMIZER_NAMES,
    fit,
    main,
    make_data,
)
from dask_softkmeans.optim import OPTIMIZERS
from dask_softkmeans.validation import METRICS, NORMALIZATIONS

PARAMETERS = SoftKMeans().get_params()

#: Parameters that are not options of ``fit``: the value fit always uses, and why.
EXCLUDED = {
    "compute_labels": (False, "fit writes a model file, which holds no labels; `predict` "
                              "writes the labels of any data out of core, so fit never "
                              "computes them"),
    "verbose": (0, "the command's own -v/--verbose flag prints every pass (and -q nothing) "
                   "through its progress display; the estimator's printing would repeat "
                   "each line"),
}

#: For every other parameter: the option's arguments and the value the model must get,
#: each different from the default so that reaching the model is seen.
NON_DEFAULT = {
    "n_clusters": (["--n-clusters", "auto"], "auto"),
    "max_clusters": (["--max-clusters", "6"], 6),
    "metric": (["--metric", "cosine"], "cosine"),
    "normalization": (["--normalization", "entmax15"], "entmax15"),
    "n_init": (["--n-init", "2"], 2),
    "random_state": (["--random-state", "7"], 7),
    "tol": (["--tol", "0.05"], 0.05),
    "cooling": (["--cooling", "0.8"], 0.8),
    "max_iter": (["--max-iter", "50"], 50),
    "persist": (["--persist", "false"], False),
    "sample_size": (["--sample-size", "500"], 500),
    "split_every": (["--split-every", "4"], 4),
    "optimizer": (["--optimizer", "gd"], "gd"),
    "checkpoint": (["--checkpoint", "CHECKPOINT"], "CHECKPOINT"),
}

#: Invalid values, refused by the estimator's own constraints as usage errors.
INVALID = {
    "n_clusters": "0", "n_init": "0", "random_state": "-1", "tol": "0", "cooling": "1",
    "max_iter": "0", "persist": "maybe", "sample_size": "0", "split_every": "1",
    "optimizer": "sgd", "metric": "manhattan", "max_clusters": "1",
    "normalization": "tsallis",
}

#: Enough arguments for each command to reach its body.
ARGUMENTS = {"make-data": ["data.zarr"], "fit": ["data.zarr/X"], "predict": ["m.npz", "X", "out"],
             "info": ["m.npz"], "plot": ["m.npz", "plot.png"], "demo": []}


def _option(command: click.Command, name: str) -> click.Option | None:
    return next((p for p in command.params if isinstance(p, click.Option) and p.name == name),
                None)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory) -> tuple[dict, Path]:
    """One fit through the command line with every option at a non-default value: the
    parameters of the model it wrote, and its directory."""
    tmp = tmp_path_factory.mktemp("options")
    datasets.write_blobs(tmp / "blobs.zarr", 600, 2, 3, chunk_rows=200)
    arguments = [argument.replace("CHECKPOINT", str(tmp / "checkpoint"))
                 for args, _ in NON_DEFAULT.values() for argument in args]
    result = CliRunner().invoke(main, ["fit", str(tmp / "blobs.zarr" / "X"), *arguments,
                                       "--workers", "1", "--out", str(tmp / "model.npz"), "-q"])
    assert result.exit_code == 0, result.output
    return SoftKMeans.load(tmp / "model.npz").get_params(), tmp


@pytest.mark.parametrize("name", sorted(PARAMETERS))
def test_every_parameter_is_an_option_or_excluded_with_a_reason(name, fitted):
    params, tmp = fitted
    if name in EXCLUDED:
        value, reason = EXCLUDED[name]
        assert reason and params[name] == value
        return
    option = _option(fit, name)
    assert option is not None, f"fit has no option for SoftKMeans's {name!r}"
    assert f"--{name.replace('_', '-')}" in option.opts  # named as in the estimator
    assert option.default == PARAMETERS[name], "the option's default is not the estimator's"
    assert name in NON_DEFAULT, f"give {name!r} a non-default value in NON_DEFAULT"
    expected = NON_DEFAULT[name][1]
    if name == "checkpoint":
        expected = str(tmp / "checkpoint")
    assert params[name] == expected and type(params[name]) is type(expected)


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_values_are_the_estimators_errors_on_one_line(name, tmp_path):
    flag = f"--{name.replace('_', '-')}"
    result = CliRunner().invoke(main, ["fit", str(tmp_path / "unused.zarr"), flag, INVALID[name]])
    assert result.exit_code == 2, result.output
    error = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(error) == 1 and "Invalid value for" in error[0] and flag in error[0]
    assert "Traceback" not in result.output and "Local cluster" not in result.output


@pytest.mark.parametrize(("arguments", "name", "value"), [
    (["--persist", "auto"], "persist", "auto"),
    (["--persist", "true"], "persist", True),
    (["--persist", "no"], "persist", False),
    (["--sample-size", "none"], "sample_size", None),
    (["--sample-size", "AUTO"], "sample_size", "auto"),
    (["--sample-size", "1000"], "sample_size", 1000),
    (["--random-state", "0"], "random_state", 0),
    (["--k", "5"], "n_clusters", 5),
    (["--n-clusters", "5"], "n_clusters", 5),
])
def test_options_parse_to_the_types_the_estimator_takes(arguments, name, value):
    params = fit.make_context("fit", ["data", *arguments]).params
    assert params[name] == value and type(params[name]) is type(value)


def test_make_data_names_its_blobs_and_seed_as_fit_does_with_the_old_names_as_aliases():
    for arguments in (["--k", "5", "--seed", "3"], ["--n-clusters", "5", "--random-state", "3"]):
        params = make_data.make_context("make-data", ["data.zarr", *arguments]).params
        assert params["n_clusters"] == 5 and params["random_state"] == 3
    assert "--n-clusters" in _option(main.commands["demo"], "n_clusters").opts


def test_the_names_written_out_for_help_are_the_registries():
    assert OPTIMIZER_NAMES == tuple(OPTIMIZERS)
    assert METRIC_NAMES == METRICS
    assert NORMALIZATION_NAMES == NORMALIZATIONS
    assert set(COMPRESSOR_NAMES) == set(io.COMPRESSORS)
    assert DEFAULT_DATA_COMPRESSOR == datasets.DEFAULT_DATA_COMPRESSOR
    assert _option(make_data, "compressor").default == datasets.DEFAULT_DATA_COMPRESSOR


# -- --quiet and --verbose -------------------------------------------------------------

@pytest.mark.parametrize("command", sorted(main.commands))
def test_every_command_takes_the_same_quiet_and_verbose(command):
    options = {name: _option(main.commands[command], name) for name in ("quiet", "verbose")}
    reference = {name: _option(fit, name) for name in options}
    for name, option in options.items():
        assert option is not None and option.is_flag, f"{command} lacks --{name}"
        assert option.opts == reference[name].opts and option.help == reference[name].help
    result = CliRunner().invoke(main, [command, *ARGUMENTS[command], "-q", "-v"])
    assert result.exit_code == 2 and "contradict" in result.output


def test_make_data_quiet_and_verbose(tmp_path):
    runner = CliRunner()
    base = ["make-data", "--n-samples", "300", "--n-features", "2", "--k", "2",
            "--chunk-rows", "100"]
    result = runner.invoke(main, [*base, str(tmp_path / "q.zarr"), "-q"])
    assert result.exit_code == 0 and result.output == ""
    assert zarr.open_group(str(tmp_path / "q.zarr"), mode="r")["X"].shape == (300, 2)
    result = runner.invoke(main, [*base, str(tmp_path / "v.zarr"), "--verbose"])
    assert result.exit_code == 0, result.output
    assert "Wrote 300 x 2" in result.output and "3 row blocks of 100 rows" in result.output


def test_info_verbose_adds_the_history(tmp_path):
    model = SoftKMeans(2).fit(np.random.default_rng(0).normal(size=(100, 2)))
    model.save(tmp_path / "m.npz")
    quiet = json.loads(CliRunner().invoke(main, ["info", str(tmp_path / "m.npz"), "-q"]).output)
    verbose = json.loads(CliRunner().invoke(main, ["info", str(tmp_path / "m.npz"), "-v"]).output)
    assert "history" not in quiet and len(verbose["history"]) == model.n_iter_


# -- python -m, and a --help that imports nothing heavy --------------------------------

def _python(code_or_module: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *code_or_module], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def test_python_m_runs_the_command_line(tmp_path):
    result = _python(["-m", "dask_softkmeans", "--help"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Usage: python -m dask_softkmeans" in result.stdout and "make-data" in result.stdout
    result = _python(["-m", "dask_softkmeans", "make-data", "d.zarr", "--n-samples", "50",
                      "--n-features", "2", "-q"], tmp_path)
    assert result.returncode == 0 and result.stdout == "", result.stderr
    assert zarr.open_group(str(tmp_path / "d.zarr"), mode="r")["X"].shape == (50, 2)
    result = _python(["-m", "dask_softkmeans", "fit", "d.zarr/X", "--tol", "0"], tmp_path)
    assert result.returncode == 2 and "Invalid value for '--tol'" in result.stderr
    assert _python(["-m", "dask_softkmeans.cli", "info", "--help"], tmp_path).returncode == 0


HEAVY = ("sklearn", "dask", "distributed", "zarr", "numpy", "rich", "numba")


@pytest.mark.parametrize("arguments", [["--help"], ["fit", "--help"], ["--version"]])
def test_help_imports_no_heavy_dependency(arguments, tmp_path):
    """``--help`` took seconds when the command line imported scikit-learn, Dask and Zarr
    at the top; ``benchmarks/cli_help.py`` measures the time."""
    code = ("import sys\nfrom dask_softkmeans.cli import main\n"
            f"try:\n    main({arguments!r})\nexcept SystemExit:\n    pass\n"
            f"print([m for m in {HEAVY!r} if m in sys.modules])")
    result = _python(["-c", code], tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_the_package_imports_its_public_names_on_first_use(tmp_path):
    code = ("import sys\nimport dask_softkmeans as d\nheavy = 'sklearn' in sys.modules\n"
            "assert set(d.__all__) <= set(dir(d)), dir(d)\n"
            "from dask_softkmeans import SoftKMeans\n"
            "assert all(getattr(d, name) is not None for name in d.__all__)\n"
            "print(heavy, SoftKMeans.__name__)")
    result = _python(["-c", code], tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "SoftKMeans"]
