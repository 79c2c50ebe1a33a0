"""Progress of a fit, for the command line: a live display on a terminal, log lines elsewhere.

:class:`FitProgress` is the ``callback`` of :meth:`SoftKMeans.fit`: it gets
one record of ``history_`` per pass.  On a terminal it shows a live bar of
the distinct clusters found so far (of ``n_clusters``) with the current
phase, temperature, free energy, inertia and seconds per pass, and prints a
line above it at each phase transition.  When the output is not a terminal
(a log file, a pipe, CI) it prints plain lines instead: one per temperature
(the last pass there, i.e. the equilibrium), or one per pass when verbose.

The distinct clusters come from the annealing's phase records (its
:meth:`FitProgress.on_phase` gets each one as the temperature ends): a split
counts once its halves are confirmed apart at equilibrium, as in
``phase_diagram_``.  A cluster that a later merge absorbs is shown as a merge
line when it happens; ``phase_diagram_`` then leaves that split out altogether
(its counts are those that hold at every lower temperature).
:func:`notice_if_slow` tells about a wait before the fit (the kernel compiling).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import IO, Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text


def format_record(record: dict, index: int | None = None) -> str:
    """One pass as a plain, grep-friendly line."""
    where = {"sample": " on a sample", "copy": " on a float32 copy"}.get(record.get("data"), "")
    number = f"pass {index:<5d} " if index is not None else ""
    return (
        f"{number}{record['phase']:6s} T={record['temperature']:<10.4g} "
        f"clusters={record['n_clusters']:<4d} F={record['free_energy']:<12.6g} "
        f"inertia={record['inertia']:<12.6g} {record['seconds'] * 1e3:8.1f} ms/pass{where}"
    )


def format_phase(row: dict) -> str:
    """One phase record (the end of a temperature) as a transition line."""
    what = []
    if row.get("splits"):
        what.append(f"{row['splits']} split{'s' if row['splits'] > 1 else ''} confirmed")
    if row.get("merges"):
        what.append(f"{row['merges']} merge{'s' if row['merges'] > 1 else ''}")
    return (f"T={row['temperature']:.4g} clusters={row['n_clusters']}"
            + (f" ({', '.join(what)})" if what else ""))


def compact_record(record: dict, index: int) -> str:
    """One pass without padding, to fit an 80-column terminal above the live display."""
    where = {"sample": " (sample)", "copy": " (copy)"}.get(record.get("data"), "")
    return (
        f"pass {index}: {record['phase']} T={record['temperature']:.4g} "
        f"clusters={record['n_clusters']} F={record['free_energy']:.6g} "
        f"inertia={record['inertia']:.6g}{where} {record['seconds'] * 1e3:.1f} ms/pass"
    )


class _TwoLines(Progress):
    """The bar on one line, the current pass's numbers on the next (fits 80 columns)."""

    status = ""

    def get_renderables(self) -> Any:
        yield self.make_tasks_table(self.tasks)
        yield Text(self.status, no_wrap=True, overflow="ellipsis")


class FitProgress:
    """A fit's progress on ``console`` (standard error by default).

    Use it as a context manager around the fit and pass it as ``callback``::

        with FitProgress(n_clusters=8) as progress:
            model.fit(X, callback=progress)

    Parameters
    ----------
    n_clusters : int
        The K of the fit: the bar counts distinct clusters up to it.
    verbose : bool, default=False
        Every pass, not only one line per temperature (plain) or per
        transition (terminal).
    console : rich.console.Console, optional
        Where to write; its ``is_terminal`` chooses the live display or plain
        lines.  Default: standard error.
    """

    def __init__(self, n_clusters: int, *, verbose: bool = False,
                 console: Console | None = None) -> None:
        self.n_clusters = n_clusters
        self.verbose = verbose
        self.console = console if console is not None else Console(stderr=True)
        self.live = self.console.is_terminal
        self.passes = 0
        self._pending: dict | None = None  # plain mode: last pass of the current temperature
        self._phases = False  # whether the annealing reports its phase records
        self._last: dict | None = None
        self._progress: Progress | None = None
        self._task: Any = None

    # -- context ----------------------------------------------------------
    def __enter__(self) -> FitProgress:
        if self.live:
            self._progress = _TwoLines(
                SpinnerColumn(),
                TextColumn("[bold]{task.description:6s}"),
                BarColumn(bar_width=30),
                MofNCompleteColumn(),
                TextColumn("clusters  pass {task.fields[passes]}"),
                TimeElapsedColumn(),
                console=self.console,
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self._progress.start()
            self._task = self._progress.add_task("start", total=self.n_clusters, passes=0)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        elif self._pending is not None:
            self._emit(self._pending)
        self._pending = None

    # -- one pass ---------------------------------------------------------
    def __call__(self, record: dict) -> None:
        self.passes += 1
        if self._progress is not None:
            self._live_update(record)
        else:
            self._plain_update(record)
        self._last = record

    def on_phase(self, row: dict) -> None:
        """The end of a temperature: its distinct clusters (a row of the phase diagram)."""
        self._phases = True
        if self._progress is not None:
            if row.get("splits") or row.get("merges"):
                self._progress.console.print(f"pass {self.passes}: {format_phase(row)}",
                                             markup=False, highlight=False)
            self._progress.update(self._task, completed=min(row["n_clusters"], self.n_clusters))
        elif not self.verbose and self._pending is not None:
            # The equilibrium of this temperature, with the count it ended with.
            self._emit({**self._pending, "n_clusters": row["n_clusters"]})
            self._pending = None
        elif self.verbose and (row.get("splits") or row.get("merges")):
            print(format_phase(row), file=self.console.file, flush=True)

    def _emit(self, record: dict, index: int | None = None) -> None:
        index = index if index is not None else self.passes
        if self._progress is not None:
            self._progress.console.print(compact_record(record, index), markup=False,
                                         highlight=False)
        else:
            print(format_record(record, index), file=self.console.file, flush=True)

    def _plain_update(self, record: dict) -> None:
        if self.verbose:
            self._emit(record)
            return
        pending = self._pending
        if pending is not None and (pending["temperature"] != record["temperature"]
                                    or pending["phase"] != record["phase"]
                                    or pending.get("data") != record.get("data")):
            self._emit(pending, self.passes - 1)
        self._pending = record

    def _live_update(self, record: dict) -> None:
        last = self._last
        changed = last is None or record["phase"] != last["phase"] or (
            not self._phases and record["n_clusters"] != last["n_clusters"])
        if self.verbose or changed:
            self._emit(record)
        where = {"sample": "  (on a sample)", "copy": "  (on a float32 copy)"}.get(
            record.get("data"), "")
        self._progress.status = (
            f"  T={record['temperature']:.4g}  F={record['free_energy']:.6g}  "
            f"inertia={record['inertia']:.6g}  {record['seconds'] * 1e3:.1f} ms/pass{where}")
        self._progress.update(self._task, description=record["phase"], passes=self.passes)
        if not self._phases or record["phase"] != "anneal":
            self._progress.update(self._task, completed=min(record["n_clusters"], self.n_clusters))


@contextmanager
def notice_if_slow(message: str, *, after: float = 2.0, file: IO[str] | None = None) -> Iterator[None]:
    """Print ``message`` if the block is still running ``after`` seconds in, and
    then how long it took: a wait the user should know about, silent when short.

    Parameters
    ----------
    message : str
        What is being waited for, e.g. "Compiling the kernel ...".
    after : float, default=2.0
        Seconds of silence first.
    file : file-like, optional
        Where to write; default standard error (read when the notice is printed).

    Yields
    ------
    None
        The block runs while a timer thread waits to print the notice.
    """
    start = time.perf_counter()
    shown = threading.Event()

    def show() -> None:
        shown.set()
        print(message, file=file or sys.stderr, flush=True)

    timer = threading.Timer(after, show)
    timer.daemon = True
    timer.start()
    ended = "stopped after"
    try:
        yield
        ended = "done in"
    finally:
        timer.cancel()
        timer.join()  # a notice being printed is finished before the next line
        if shown.is_set():
            print(f"  {ended} {time.perf_counter() - start:.1f} s", file=file or sys.stderr,
                  flush=True)
