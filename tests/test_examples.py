"""The examples run, at a small size.

Every ``examples/*.py`` is run as a script, ``python examples/NAME.py *TEST_ARGS``,
where ``TEST_ARGS`` is a list of strings the example defines at module level:
the command-line arguments that make it finish in seconds.  A script passes
when it exits with status 0, so an example should end with a check of its
result that raises ``SystemExit`` with a message when the result is wrong.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SCRIPTS = sorted(EXAMPLES.glob("*.py"))


def test_args(script: Path) -> list[str]:
    """``TEST_ARGS`` of an example, read from its source without running it."""
    for node in ast.parse(script.read_text()).body:
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == "TEST_ARGS" for t in targets):
                value = ast.literal_eval(node.value)
                assert isinstance(value, list) and all(isinstance(v, str) for v in value)
                return value
    raise AssertionError(
        f"examples/{script.name} defines no TEST_ARGS. Add a module-level "
        "TEST_ARGS = [...]: the command-line arguments that make it run in seconds.")


test_args.__test__ = False  # a helper, not a test


def run_example(script: Path, *args: str, timeout: float = 240) -> str:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "MPLBACKEND": "Agg"}
    result = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True,
                            timeout=timeout, cwd=script.parent, env=env)
    assert result.returncode == 0, (
        f"examples/{script.name} exited with {result.returncode}\n"
        f"stdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}")
    return result.stdout


def test_there_are_examples():
    assert {"quickstart.py", "connect_cluster.py"} <= {s.name for s in SCRIPTS}


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS, ids=[s.stem for s in SCRIPTS])
def test_example_runs_as_a_script(script):
    run_example(script, *test_args(script))


@pytest.mark.slow
def test_connect_cluster_to_a_running_scheduler():
    """The address given on the command line is used: the fit runs on that scheduler's worker."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, protocol="tcp://",
                      dashboard_address=None) as cluster:
        address = cluster.scheduler_address
        out = run_example(EXAMPLES / "connect_cluster.py", address, "--n-samples", "8000")
        executed = sum(w.state.executed_count for w in cluster.workers.values())
    assert f"Connected to {address}" in out and "1 workers" in out
    assert re.search(r"centroid index vs generating centers: 0\b", out)
    assert executed > 0  # the work ran on this cluster's worker
