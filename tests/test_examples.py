"""The examples run, at a small size."""

from __future__ import annotations

import runpy
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_quickstart():
    module = runpy.run_path(str(EXAMPLES / "quickstart.py"))
    assert module["main"](5_000) > 0.99
