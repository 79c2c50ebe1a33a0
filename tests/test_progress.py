"""Fit progress: a live display on a terminal, plain log lines elsewhere, and the CLI's switches."""

from __future__ import annotations

import io
import itertools
import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner
from rich.console import Console
from sklearn.datasets import make_blobs

from dask_softkmeans import SoftKMeans, estimator
from dask_softkmeans.cli import main
from dask_softkmeans.cli.progress import FitProgress, format_record, notice_if_slow
from dask_softkmeans.engine import load_kernel

LINE = re.compile(r"^pass \d+ +\w+ +T=\S+ +clusters=\d+ +F=\S+ +inertia=\S+ +[\d.]+ ms/pass")
COMPACT = re.compile(r"^pass \d+: \w+ T=\S+ clusters=\d+ F=\S+ inertia=\S+( \([^)]*\))? [\d.]+ ms/pass")


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    """Five separated 3-D blobs: several phase transitions, a fit in well under a second."""
    return make_blobs(4000, n_features=3, centers=5, cluster_std=0.6, random_state=3)[0]


def _fit(data: np.ndarray, console: Console, verbose: bool = False) -> tuple[SoftKMeans, str]:
    with FitProgress(5, verbose=verbose, console=console) as progress:
        model = SoftKMeans(5).fit(data, callback=progress)
    assert progress.passes == model.n_iter_
    return model, console.file.getvalue()


def test_plain_lines_one_per_temperature(data):
    """Not a terminal: one line per (phase, temperature) run, showing its last pass."""
    model, out = _fit(data, Console(file=io.StringIO()))
    lines = out.splitlines()
    runs = [list(g) for _, g in itertools.groupby(
        model.history_, key=lambda r: (r["phase"], r["temperature"]))]
    assert len(lines) == len(runs) > 3
    assert all(LINE.match(line) for line in lines), lines[:3]
    assert "\x1b[" not in out  # no terminal control codes in a log
    counts = dict(model.phase_diagram_.tolist())
    for line, run in zip(lines, runs, strict=True):
        last = run[-1]
        if last["phase"] == "anneal":
            # The equilibrium of a temperature with the count it ended with: the diagram's.
            last = {**last, "n_clusters": int(counts[last["temperature"]])}
        assert line == format_record(last, model.history_.index(run[-1]) + 1)


def test_plain_lines_every_pass_when_verbose(data):
    model, out = _fit(data, Console(file=io.StringIO()), verbose=True)
    passes = [line for line in out.splitlines() if line.startswith("pass ")]
    assert len(passes) == model.n_iter_
    assert passes[-1].startswith(f"pass {model.n_iter_} ")
    # and a line at each temperature where splits were confirmed
    transitions = [line for line in out.splitlines() if not line.startswith("pass ")]
    assert len(transitions) == len(np.unique(model.phase_diagram_[:, 1])) - 1
    assert all(re.match(r"T=\S+ clusters=\d+ \(\d+ splits? confirmed\)$", t) for t in transitions)


def test_live_display_on_a_terminal(data):
    """A terminal gets the live bar (control codes, K of K clusters) and a line per transition."""
    console = Console(file=io.StringIO(), force_terminal=True, width=80)
    model, out = _fit(data, console)
    assert "\x1b[" in out
    assert "5/5" in out and "clusters" in out
    assert "lloyd" in out and f"pass {model.n_iter_}" in out
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "\n", out).splitlines()
    printed = [line for line in text if COMPACT.match(line)]
    changes = sum(1 for a, b in itertools.pairwise([None, *model.history_])
                  if a is None or a["phase"] != b["phase"])
    assert len(printed) == changes
    # One line per temperature whose splits were confirmed, with the diagram's count.
    counts = dict(model.phase_diagram_.tolist())
    splits = [re.search(r"T=(\S+) clusters=(\d+) \(\d+ splits? confirmed", line) for line in text]
    splits = [m for m in splits if m]
    assert len(splits) == len(np.unique(model.phase_diagram_[:, 1])) - 1
    temps = np.array(list(counts))
    for m in splits:
        t = temps[np.argmin(abs(np.log(temps / float(m.group(1)))))]
        assert int(m.group(2)) == counts[t]


@pytest.fixture
def dataset(tmp_path):
    runner = CliRunner()
    path = tmp_path / "blobs.zarr"
    result = runner.invoke(main, ["make-data", str(path), "--n-samples", "3000",
                                  "--n-features", "3", "--k", "4", "--chunk-rows", "1000"])
    assert result.exit_code == 0, result.output
    return path / "X"


@pytest.fixture(scope="module")
def scheduler():
    """A real scheduler with a dashboard, in this process (threads): the CLI connects to it."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                      dashboard_address=":0") as cluster:
        yield cluster.scheduler_address


def test_cli_progress_quiet_and_verbose(dataset, scheduler):
    """Progress goes to standard error as log lines under a runner (not a terminal)."""
    runner = CliRunner()
    common = ["fit", str(dataset), "--k", "4", "--scheduler", scheduler]
    result = runner.invoke(main, common)
    assert result.exit_code == 0, result.output
    progress = result.stderr.splitlines()
    assert progress and all(LINE.match(line) for line in progress)
    assert "Fitted 4 clusters" in result.stdout
    assert f"Connected to {scheduler}, dashboard http" in result.stdout
    passes = int(re.search(r"(\d+) passes", result.stdout).group(1))
    assert len(progress) < passes

    result = runner.invoke(main, [*common, "--verbose"])
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    # deterministic fit: same passes, plus a line per temperature where splits were confirmed
    assert sum(line.startswith("pass ") for line in lines) == passes
    assert all(LINE.match(line) or re.match(r"T=\S+ clusters=\d+ \(", line) for line in lines)

    result = runner.invoke(main, [*common, "--quiet"])
    assert result.exit_code == 0, result.output
    assert result.stderr == "" and "dashboard" not in result.stdout
    assert result.stdout.startswith("Fitted 4 clusters")


def test_passes_on_a_sample_are_marked(data):
    """Sums over the in-memory sample are not comparable with the full data's: say so."""
    console = Console(file=io.StringIO())
    with FitProgress(5, verbose=True, console=console) as progress:
        model = SoftKMeans(5, sample_size=1000).fit(data, callback=progress)
    lines = [line for line in console.file.getvalue().splitlines() if line.startswith("pass ")]
    sampled = [r.get("data") == "sample" for r in model.history_]
    assert any(sampled) and not all(sampled)
    assert [line.endswith(" on a sample") for line in lines] == sampled


def test_a_slow_wait_is_announced_while_it_lasts_and_timed():
    out = io.StringIO()
    with notice_if_slow("Waiting for the thing...", after=0.1, file=out):
        deadline = time.perf_counter() + 30
        while not out.getvalue() and time.perf_counter() < deadline:
            time.sleep(0.05)
        during = out.getvalue()
        time.sleep(0.2)
    assert during == "Waiting for the thing...\n"  # printed while the block still ran
    done = re.fullmatch(r"Waiting for the thing\.\.\.\n  done in ([\d.]+) s\n", out.getvalue())
    assert done and float(done.group(1)) >= 0.3


def test_a_short_wait_prints_nothing_and_a_failed_one_says_it_stopped():
    out = io.StringIO()
    with notice_if_slow("Waiting...", after=0.5, file=out):
        pass
    with pytest.raises(KeyError), notice_if_slow("Waiting...", after=0.5, file=out):
        raise KeyError("x")
    assert out.getvalue() == ""  # the timers were cancelled and joined
    with pytest.raises(KeyError), notice_if_slow("Waiting...", after=0.05, file=out):
        time.sleep(0.3)
        raise KeyError("x")
    assert re.fullmatch(r"Waiting\.\.\.\n  stopped after [\d.]+ s\n", out.getvalue())


@pytest.mark.parametrize("with_client", [False, True])
def test_verbose_fit_announces_a_slow_kernel_load_before_its_first_pass(
        data, monkeypatch, capsys, request, with_client):
    """What numba's compile into an empty cache looks like to ``SoftKMeans(verbose=1)``:
    the real load, made 2.2 s slower here, is announced before the first pass's line and
    timed; the workers of the active client load the kernel in the same wait."""
    client = request.getfixturevalue("client") if with_client else None
    loads = []

    def slow_load(client=None):
        loads.append(client)
        time.sleep(2.2)
        load_kernel(client)

    monkeypatch.setattr(estimator, "load_kernel", slow_load)
    SoftKMeans(5, verbose=1).fit(data)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"[SoftKMeans] {estimator.COMPILING}"
    assert re.fullmatch(r"  done in 2\.\d s", lines[1])
    assert lines[2].startswith("[SoftKMeans] ") and "ms" in lines[2]  # the first pass
    assert loads == [client]
    SoftKMeans(5).fit(data)
    assert capsys.readouterr().out == ""  # silent unless verbose


@pytest.mark.slow
def test_first_run_says_the_kernel_compiles_and_times_the_fit_without_it(tmp_path):
    """A new installation, as a new user's first command meets it: numba's cache empty.

    The kernel is loaded here and on the workers before the fit: no pass pays for
    compiling it (first pass on the sample, here) or for loading it (~0.6 s in a
    fresh worker process, at the first pass over the data).
    """
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    result = subprocess.run(
        [sys.executable, "-m", "dask_softkmeans.cli", "demo", "--n-samples", "20000", "--verbose"],
        capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr
    notice = re.search(r"^Compiling the kernel with numba .*\.\.\.\n  done in ([\d.]+) s$",
                       result.stderr, re.MULTILINE)
    assert notice, result.stderr
    fitted = float(re.search(r"^Fitted in ([\d.]+) s", result.stdout, re.MULTILINE).group(1))
    assert fitted < float(notice.group(1)) / 2
    passes = re.findall(r"^pass \d+ .* ([\d.]+) ms/pass( on a sample)?$", result.stderr,
                        re.MULTILINE)
    sample = [float(ms) for ms, on_sample in passes if on_sample]
    full = [float(ms) for ms, on_sample in passes if not on_sample]
    assert sample and full, result.stderr
    assert sample[0] < 1000 and max(full) < 100, passes  # warm: ~4 ms; loading: ~230
