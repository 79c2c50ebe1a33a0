"""Wall time of ``dask-softkmeans --help``, each run a fresh process, against anchors.

The command line imports scikit-learn, Dask, Zarr and rich only inside its commands, so
that ``--help`` answers at once.  This script times, each in a new process:

- ``python -c pass``: the interpreter starting, the floor of any command;
- ``dask-softkmeans --help``, ``dask-softkmeans fit --help`` and ``python -m
  dask_softkmeans --help``;
- ``python -c "import dask_softkmeans.estimator"`` and ``python -c "import sklearn"``: what
  ``--help`` paid when the command line imported the estimator at the top.

The commands run in turns (the order rotating from turn to turn, after one untimed turn),
so that a change of load lands on all of them alike; each time is the median of
``--repeats`` turns.

    python benchmarks/cli_help.py
    python benchmarks/cli_help.py --repeats 5 --results-dir none   # quicker, no result file
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _results import add_results_option, recorded


def _commands() -> dict[str, list[str]]:
    """Each timed command, by the name it is reported under."""
    python = sys.executable
    script = Path(python).parent / "dask-softkmeans"
    script = str(script) if script.exists() else shutil.which("dask-softkmeans")
    if script is None:
        raise SystemExit("dask-softkmeans is not installed in this environment: "
                         "pip install -e . first.")
    return {
        "python -c pass": [python, "-c", "pass"],
        "dask-softkmeans --help": [script, "--help"],
        "dask-softkmeans fit --help": [script, "fit", "--help"],
        "python -m dask_softkmeans --help": [python, "-m", "dask_softkmeans", "--help"],
        "python -c 'import dask_softkmeans.estimator'":
            [python, "-c", "import dask_softkmeans.estimator"],
        "python -c 'import sklearn'": [python, "-c", "import sklearn"],
    }


def _time(command: list[str]) -> float:
    """Seconds from starting ``command`` in a new process to its exit (status 0 checked)."""
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def _imported_by_help(python: str) -> list[str]:
    """The top-level packages that ``dask-softkmeans --help`` imports besides the standard
    library's, click and dask_softkmeans itself: none is the goal."""
    code = ("import sys\nbefore = set(sys.modules)\nfrom dask_softkmeans.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "names = {m.split('.')[0] for m in set(sys.modules) - before}\n"
            "print(' '.join(sorted(n for n in names - set(sys.stdlib_module_names)\n"
            "      if n not in ('click', 'dask_softkmeans') and not n.startswith('_'))))")
    result = subprocess.run([python, "-c", code], check=True, capture_output=True, text=True)
    return result.stdout.splitlines()[-1].split()  # the last line; the help text comes first


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=15,
                        help="timed turns; each time is the median of them (default 15)")
    add_results_option(parser)
    args = parser.parse_args(argv)
    with recorded("cli_help", args.results_dir):
        _run(args.repeats)


def _run(repeats: int) -> None:
    commands = _commands()
    names = list(commands)
    times: dict[str, list[float]] = {name: [] for name in names}
    for name in names:  # untimed: .pyc files written, files in the page cache
        _time(commands[name])
    for turn in range(repeats):
        shift = turn % len(names)
        for name in names[shift:] + names[:shift]:
            times[name].append(_time(commands[name]))
    floor = statistics.median(times["python -c pass"])
    print(f"Median of {repeats} runs in turns, each a fresh process, seconds.\n")
    print("| command | median s | min s | max s | median minus `python -c pass` |")
    print("|---|---|---|---|---|")
    for name in names:
        median = statistics.median(times[name])
        print(f"| `{name}` | {median:.3f} | {min(times[name]):.3f} | {max(times[name]):.3f} "
              f"| {median - floor:.3f} |")
    help_median = statistics.median(times["dask-softkmeans --help"])
    estimator = statistics.median(times["python -c 'import dask_softkmeans.estimator'"])
    print(f"\n`dask-softkmeans --help`: {help_median:.3f} s, {estimator / help_median:.1f}x faster "
          f"than importing the estimator ({estimator:.3f} s), as --help did before.")
    extra = _imported_by_help(sys.executable)
    print("Packages imported by `--help` besides the standard library, click and "
          f"dask_softkmeans: {', '.join(extra) if extra else 'none'}.")


if __name__ == "__main__":
    main()
