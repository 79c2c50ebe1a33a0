"""The phase diagram: a split counts only when its halves stay apart at equilibrium.

The diagram, ``history_`` and the settled counts come from one source (the
annealing's phase records); a count never falls as the temperature falls.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_blobs

from dask_softkmeans import SoftKMeans, phases


def triangle(n: int = 300, seed: int = 0) -> np.ndarray:
    """Three unit-variance blobs 20 apart: the data of the report that a split was
    counted before its halves merged back."""
    rng = np.random.default_rng(seed)
    corners = np.array([[0.0, 0.0], [20.0, 0.0], [10.0, 17.32]])
    return np.vstack([c + rng.standard_normal((n, 2)) for c in corners])


def test_components_and_count():
    links = [(0, 1, 1), (1, 2, 2)]
    assert phases.count([0, 1, 2, 3], links) == 2
    label = phases.components([0, 1, 2, 3], links)
    assert label[0] == label[1] == label[2] != label[3]


def test_merge_inside_a_split_is_no_transition():
    links, real = phases.after_merges([0, 1, 2], [(0, 1, 1)], [(0, 1)])
    assert links == [] and real == []


def test_merge_of_two_distinct_clusters_is_real():
    links, real = phases.after_merges([0, 1, 2], [], [(0, 1)])
    assert links == []
    assert real == [(0, 1)]


def test_tentative_half_leaving_its_split_keeps_the_count():
    # 2 is a tentative half of 1 (one cluster {1, 2}); it merges into 0: no merge of
    # clusters, and 1 stays a cluster.
    ids = [0, 1, 2]
    links, real = phases.after_merges(ids, [(1, 2, 1)], [(0, 2)])
    assert real == [] and phases.count([0, 1], links) == 2
    # A hub leaving keeps its partners joined.
    links, real = phases.after_merges([0, 1, 2, 3], [(1, 2, 1), (1, 3, 1)], [(0, 1)])
    assert real == [] and phases.count([0, 2, 3], links) == 2


def _confirm(gap: float, temperature: float, step: int, converged: bool = True,
             variance: float = 1.0):
    centers = np.array([[0.0, 0.0], [gap, 0.0]])
    return phases.confirm(
        [(0, 1, 1)], np.array([0, 1]), centers, np.log([0.5, 0.5]),
        np.array([variance, variance]), np.array([[1.0, 0.0], [1.0, 0.0]]),
        temperature, step, 1e-3 * temperature, converged)


def test_confirm_needs_age_convergence_separation_and_instability():
    assert _confirm(4.0, 1.0, step=2)[1] == [(0, 1, 1)]
    assert _confirm(4.0, 1.0, step=1)[1] == []  # first equilibrium only
    assert _confirm(4.0, 1.0, step=2, converged=False)[1] == []
    assert _confirm(0.01, 1.0, step=2)[1] == []  # within the merge threshold
    # Apart, but above the union's critical temperature: one cluster.
    assert _confirm(0.5, 20.0, step=2)[1] == []


def test_settled_counts_take_out_clusters_lost_later():
    records = [{"temperature": t, "n_clusters": n, "absorbed": a}
               for t, n, a in [(8, 1, []), (4, 2, []), (2, 3, []), (1, 2, [2]), (0.5, 4, [])]]
    assert phases.settled_counts(records).tolist() == [1, 2, 2, 2, 4]
    assert phases.diagram(records)[:, 1].tolist() == [1, 2, 2, 2, 4]


def test_lifetimes_and_choice():
    diagram = np.array([[100.0, 1], [90.0, 2], [80.0, 3], [2.0, 4], [1.5, 8], [0.5, 8]])
    life = phases.lifetimes(diagram)
    assert life[3] == pytest.approx(np.log(40.0))
    assert 8 in life and phases.choose_n_clusters(diagram, 8) == 3
    assert phases.choose_n_clusters(diagram[:2], 8) == 2  # nothing lived: the last count


@pytest.mark.parametrize("tol", [1e-2, 1e-5])
def test_triangle_diagram_never_falls_and_agrees_with_history(tol):
    model = SoftKMeans(8, tol=tol).fit(triangle())
    counts = model.phase_diagram_[:, 1]
    assert np.all(np.diff(counts) >= 0), counts
    # Three clusters hold from their appearance until the blobs' own critical
    # temperature (2 lambda = 2): no count of 4 or more above it.
    assert counts[model.phase_diagram_[:, 0] > 2.2].max() == 3
    rows = model.phase_diagram_
    for record in model.history_:
        if record["phase"] == "anneal":
            above = rows[rows[:, 0] > record["temperature"]]
            assert record["n_clusters"] == int(above[-1, 1])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_many_blobs_diagram_never_falls(seed):
    # Data of the kind of s1 and r15 (15 separated clusters); the sets themselves
    # are in benchmarks/choose_k.py.
    x, _ = make_blobs(1500, centers=15, cluster_std=0.5, center_box=(-20, 20),
                      random_state=seed)
    model = SoftKMeans(15).fit(x)
    assert np.all(np.diff(model.phase_diagram_[:, 1]) >= 0), model.phase_diagram_[:, 1]


def test_rows_of_the_final_cooling_do_not_count():
    records = [{"temperature": t, "n_clusters": n, "codevectors": c}
               for t, n, c in [(100, 1, 2), (90, 2, 3), (80, 3, 4), (60, 3, 5), (2, 5, 7),
                               (0.6, 6, 8), (0.18, 8, 8)]]
    diagram = phases.diagram(records)
    measured = phases.schedule_rows(records, 8)
    assert measured.tolist() == [True] * 5 + [False] * 2
    assert phases.lifetimes(diagram, measured) == pytest.approx(
        {1: np.log(100 / 90), 2: np.log(90 / 80), 3: np.log(80 / 2), 5: np.log(2 / 0.6)})
    assert 6 in phases.lifetimes(diagram)  # without the mask, the final cooling counts
    assert phases.choose_n_clusters(diagram, 8, measured) == 3
