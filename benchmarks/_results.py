"""Dated result files for the benchmark scripts.

A script wraps its work in :func:`recorded`: everything it prints still goes to
the terminal, and a copy lands in ``benchmarks/results/YYYY-MM-DD-<script>.md``
under a header that says when, how (the command) and where (the machine and the
versions) it ran.  A second run on the same day gets ``-2``, ``-3``, ... rather
than replacing the first.  ``--help`` and argument errors write nothing; a run
stopped by an error or Ctrl-C keeps what it printed, marked as unfinished.

Each script adds the option with :func:`add_results_option`::

    args = parser.parse_args(argv)
    with recorded("quality", args.results_dir):
        ...
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import os
import platform
import shlex
import sys
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any, TextIO

RESULTS = Path(__file__).resolve().parent / "results"
VERSIONS = ("dask-softkmeans", "numpy", "dask", "distributed", "zarr", "numba", "scikit-learn")


def add_results_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--results-dir`` (where the dated result file goes; ``none`` to write none)."""
    parser.add_argument(
        "--results-dir", default=str(RESULTS), metavar="DIR",
        help="where to write the dated result file YYYY-MM-DD-<script>.md "
             "(default: benchmarks/results; 'none' writes none)")


def result_path(script: str, directory: Path, day: datetime.date) -> Path:
    """The first free name ``YYYY-MM-DD-<script>[-N].md`` in ``directory``."""
    stem = f"{day.isoformat()}-{script}"
    path, n = directory / f"{stem}.md", 1
    while path.exists():
        n += 1
        path = directory / f"{stem}-{n}.md"
    return path


def _versions() -> str:
    found = []
    for name in VERSIONS:
        with contextlib.suppress(metadata.PackageNotFoundError):
            found.append(f"{name} {metadata.version(name)}")
    return ", ".join(found)


def _load() -> str:
    with contextlib.suppress(OSError):
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    return "unknown"


def header(script: str, argv: list[str], day: datetime.date) -> str:
    """Title, date, command, machine and versions of one run, as Markdown."""
    command = " ".join(["python", f"benchmarks/{script}.py", shlex.join(argv)]).strip()
    return (
        f"# {script}: {day.isoformat()}\n\n"
        f"- command: `{command}`\n"
        f"- started: {datetime.datetime.now().isoformat(timespec='seconds')}\n"
        f"- machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.system()} "
        f"{platform.release()}; Python {platform.python_version()}\n"
        f"- versions: {_versions()}\n"
        f"- load average (1, 5, 15 min) at the start: {_load()}\n\n"
    )


class _Tee(io.TextIOBase):
    """Writes to the terminal's stream and keeps a copy."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.copy = io.StringIO()

    def write(self, text: str) -> int:
        self.copy.write(text)
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


@contextlib.contextmanager
def recorded(script: str, directory: str | os.PathLike | None = RESULTS,
             argv: list[str] | None = None) -> Iterator[Path | None]:
    """Copy what the block prints to a dated Markdown file; yields its path (None: not written).

    ``directory`` None, ``""`` or ``"none"`` turns the file off.  ``argv``
    defaults to ``sys.argv[1:]`` and is written as the command.
    """
    if directory is None or str(directory).lower() in ("", "none"):
        yield None
        return
    argv = sys.argv[1:] if argv is None else argv
    day = datetime.date.today()
    directory = Path(directory)
    path = result_path(script, directory, day)
    head = header(script, argv, day)
    tee, stdout, start = _Tee(sys.stdout), sys.stdout, time.perf_counter()
    sys.stdout = tee
    ending = None
    try:
        yield path
        ending = ""
    except SystemExit:  # --help, an argument error: no result to keep
        raise
    except BaseException as error:
        ending = f"\n**Did not finish**: {type(error).__name__}: {error}\n"
        raise
    finally:
        sys.stdout = stdout
        if ending is not None:
            directory.mkdir(parents=True, exist_ok=True)
            path.write_text(head + tee.copy.getvalue().rstrip("\n") + "\n" + ending
                            + f"\n---\nran for {time.perf_counter() - start:.0f} s; "
                              f"load average at the end: {_load()}\n")
            print(f"result file: {path}", file=sys.stderr)
