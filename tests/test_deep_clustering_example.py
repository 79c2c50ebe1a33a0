"""``examples/deep_clustering_jax.py`` at a small size: free_energy inside a JAX model, on CPU."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "deep_clustering_jax.py"


@pytest.fixture(scope="module")
def example():
    pytest.importorskip("jax")
    pytest.importorskip("optax")
    spec = importlib.util.spec_from_file_location("deep_clustering_jax", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cluster_accuracy_matches_clusters_to_classes(example):
    y = np.array([0, 0, 1, 1, 2, 2])
    assert example.cluster_accuracy(y, np.array([2, 2, 0, 0, 1, 1])) == 1.0
    assert example.cluster_accuracy(y, np.array([0, 0, 0, 0, 1, 1])) == pytest.approx(4 / 6)


@pytest.mark.parametrize("normalization", ["softmax", "entmax15"])
def test_the_example_runs_small(example, normalization, capsys):
    results = example.main([*example.TEST_ARGS, "--normalization", normalization])
    assert len(results) == 3 and any(normalization in name for name in results)
    for name, values in results.items():
        assert values.shape == (1, 2), name
        accuracy, nmi = values[0]
        assert 0.3 <= accuracy <= 1.0 and 0.0 < nmi <= 1.0, (name, accuracy, nmi)
    assert "accuracy" in capsys.readouterr().out
