"""The phase diagram of an annealing run, and the number of clusters read from it.

Pure bookkeeping over the codevectors of :mod:`.annealing`: nothing here runs a
pass or moves a center.

**Distinct clusters.**  A split makes two codevectors, but they are one
cluster until the split is *confirmed*: its halves are joined by a tentative
link.  The distinct clusters are the connected components of the codevectors
under these links.  A link is confirmed (removed, the halves become two
clusters) at the end of a temperature when

* the halves have been through at least one full temperature after the one
  where they were first equilibrated (a split that is not real drifts back
  slowly near its critical temperature, and one equilibration at a loose
  tolerance does not show it),
* the EM passes at that temperature converged (not stopped by the pass limit),
* the halves are farther apart than the merge threshold, and
* the two together would be unstable as one cluster at that temperature:
  ``T < 2 lambda`` for a lower bound ``lambda`` of the union's variance along
  the line through the halves (each half's largest variance times the squared
  cosine of its axis with the line, mass-weighted, plus the spread of the two
  means).  Above that temperature the merged state
  is the stable one (Rose 1998, the critical temperature ``2 lambda_max``),
  and the halves, however far apart the EM left them, are one cluster.

A tentative link whose halves merge back vanishes without a trace; a
tentative half that merges into another cluster leaves its split, and the
count is unchanged.  A merge of two distinct clusters (or a cluster that
loses its mass) lowers the count at that record, labelled as a merge; the
diagram (:func:`diagram`) then keeps, at each temperature, the count that
holds at every lower one, so the split that made the lost cluster is no
transition and the count never falls as ``T`` falls.

**Choosing K.**  :func:`choose_n_clusters` returns the count whose lifetime
(the range of ``log T`` over which the diagram shows it, before the final
cooling) is largest.  It is
the persistence criterion of scale-space clustering (Witkin 1983; Leung,
Zhang and Xu 2000, where a cluster count that "lives" over the widest range of
scales is the most natural one), read on the temperature axis of deterministic
annealing (Rose 1998: each phase transition is a scale at which a cluster
resolves into more).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

#: A tentative link: the ids of the two halves and the index of the temperature
#: at which they were first equilibrated.
Link = tuple[int, int, int]


def components(ids: Sequence[int], links: Sequence[Link]) -> dict[int, int]:
    """Component label (the smallest id in it) of each codevector id."""
    parent = {int(i): int(i) for i in ids}

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b, _ in links:
        if a in parent and b in parent:
            ra, rb = root(a), root(b)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
    return {i: root(i) for i in parent}


def count(ids: Sequence[int], links: Sequence[Link]) -> int:
    """Distinct clusters: connected components of the codevectors under the links."""
    return len(set(components(ids, links).values()))


def after_merges(
    ids: Sequence[int], links: Sequence[Link], merges: Sequence[tuple[int, int]]
) -> tuple[list[Link], list[tuple[int, int]]]:
    """Links after codevector ``b`` merged into ``a`` for each ``(a, b)``, and the real merges.

    ``ids`` are the codevectors before the merges.  A merge inside one
    component is a tentative split undone: its link vanishes.  Across two
    components, a codevector that is a tentative half (its component has
    other members) leaves its split, which is void, and joins the other
    cluster: the count is unchanged.  Only when both are distinct clusters on
    their own is the merge real: counted, and the count falls by one.
    """
    links = [(int(a), int(b), int(step)) for a, b, step in links]
    alive = {int(i) for i in ids}
    real: list[tuple[int, int]] = []

    def relabel(old: int, new: int) -> None:
        nonlocal links
        links = [(new if a == old else a, new if b == old else b, step) for a, b, step in links]
        links = [link for link in links if link[0] != link[1]]

    for a, b in merges:
        a, b = int(a), int(b)
        label = components(sorted(alive), links)
        size = {r: sum(1 for v in label.values() if v == r) for r in set(label.values())}
        if label[a] != label[b]:
            if size[label[b]] > 1:
                links = leave(links, b)
            elif size[label[a]] > 1:
                links = leave(links, a)
            else:
                real.append((a, b))
        relabel(b, a)
        alive.discard(b)
    return links, real


def leave(links: list[Link], i: int) -> list[Link]:
    """Links without codevector ``i``; its partners stay joined to each other."""
    partners = [(b if a == i else a, step) for a, b, step in links if i in (a, b)]
    kept = [link for link in links if i not in link[:2]]
    if partners:
        first = partners[0][0]
        kept += [(first, other, step) for other, step in partners[1:]]
    return kept


def confirm(
    links: Sequence[Link],
    ids: np.ndarray,
    centers: np.ndarray,
    log_priors: np.ndarray,
    variances: np.ndarray,
    directions: np.ndarray,
    temperature: float,
    step: int,
    merge_threshold: float,
    converged: bool,
    final: bool = False,
) -> tuple[list[Link], list[Link]]:
    """Links still tentative after the temperature ``step``, and those confirmed there.

    ``variances`` are half each codevector's critical temperature (its largest
    variance) from the last pass.  ``final``: the annealing ends here with
    hard assignments, so halves apart are distinct whatever their age.
    """
    if not links:
        return [], []
    where = {int(i): n for n, i in enumerate(ids)}
    kept: list[Link] = []
    confirmed: list[Link] = []
    for a, b, born in links:
        ia, ib = where[a], where[b]
        gap = float(np.sum((centers[ia] - centers[ib]) ** 2))
        wa, wb = float(np.exp(log_priors[ia])), float(np.exp(log_priors[ib]))
        total = max(wa + wb, np.finfo(float).tiny)
        # Each half's variance along the line through both is at least its
        # largest variance times the squared cosine of its axis with the line.
        line = (centers[ia] - centers[ib]) / max(np.sqrt(gap), np.finfo(float).tiny)
        along = variances[[ia, ib]] * (directions[[ia, ib]] @ line) ** 2
        union = (wa * along[0] + wb * along[1]) / total + wa * wb / total**2 * gap
        apart = gap > merge_threshold
        unstable = temperature < 2.0 * union
        old = step > born
        if apart and (final or (converged and old and unstable)):
            confirmed.append((a, b, born))
        else:
            kept.append((a, b, born))
    return kept, confirmed


def settled_counts(phases: Sequence[dict]) -> np.ndarray:
    """Distinct clusters at each phase record that hold at every lower temperature.

    A cluster that a real merge absorbs later (or that loses its mass) did not
    stay apart: the split that made it distinct is no transition.  The count
    at a record is therefore the least count of that record and all later
    ones (a suffix minimum), so it never falls as the temperature falls; the
    records keep the real merges (``"merges"``, ``"absorbed"``: the record
    at which each lost cluster became distinct) for the plot's labels.
    """
    counts = np.array([p["n_clusters"] for p in phases], dtype=np.int64)
    if len(counts) == 0:
        return counts
    return np.minimum.accumulate(counts[::-1])[::-1]


def diagram(phases: Sequence[dict]) -> np.ndarray:
    """``[T, distinct clusters]`` rows of the annealing's phase records, as float64
    (the settled counts, see :func:`settled_counts`)."""
    temps = np.array([p["temperature"] for p in phases], dtype=np.float64)
    return np.column_stack([temps, settled_counts(phases)]).astype(np.float64).reshape(-1, 2)


def lifetimes(phase_diagram: np.ndarray, measured: np.ndarray | None = None
              ) -> dict[int, float]:
    """Range of ``log T`` over which each count held, the last (lowest-T) row left out.

    The count of row ``i`` holds from ``T_i`` down to ``T_{i+1}``; the last
    row's count holds down to an end the annealing chose (K codevectors or
    hard assignments), not the data, so it has no lifetime.  ``measured``
    (one bool per row): the rows whose step to the next temperature the data
    chose (see :func:`schedule_rows`); the others are left out.
    """
    rows = np.asarray(phase_diagram, dtype=np.float64).reshape(-1, 2)
    keep = np.ones(len(rows), dtype=bool) if measured is None else np.asarray(measured, bool)
    life: dict[int, float] = {}
    for i, ((t, n), (t_next, _)) in enumerate(itertools.pairwise(rows)):
        if keep[i] and t > 0 and t_next > 0:
            life[int(n)] = life.get(int(n), 0.0) + float(np.log(t / t_next))
    return life


def schedule_rows(phases: Sequence[dict], max_clusters: int) -> np.ndarray:
    """Rows whose next temperature followed the data's transitions.

    Once all ``max_clusters`` codevectors exist, the annealing cools by a
    fixed factor towards hard assignments: the range of ``log T`` a count
    holds there measures that factor, not the data.
    """
    return np.array([p.get("codevectors", p["n_clusters"]) < max_clusters for p in phases],
                    dtype=bool)


def choose_n_clusters(phase_diagram: np.ndarray, max_clusters: int,
                      measured: np.ndarray | None = None) -> int:
    """The count of at least 2 and below ``max_clusters`` with the largest lifetime.

    ``measured``: see :func:`lifetimes`; when it leaves no candidate, every
    row counts.  Ties go to the smaller count.  When no count has a lifetime
    (the annealing reached ``max_clusters`` in one step, or the data never
    split), the last count of the diagram, capped at ``max_clusters``.
    """

    def candidates(mask: np.ndarray | None) -> dict[int, float]:
        # The cap itself is the annealing's stopping rule, not the data's: never chosen.
        return {n: v for n, v in lifetimes(phase_diagram, mask).items()
                if 2 <= n < max_clusters and v > 0}

    life = candidates(measured) or candidates(None)
    if not life:
        rows = np.asarray(phase_diagram, dtype=np.float64).reshape(-1, 2)
        return int(min(max(rows[-1, 1], 1), max_clusters))
    best = max(life.values())
    return min(n for n, v in life.items() if v == best)


def settle_history(history: Sequence[dict], phases: Sequence[dict]) -> list[dict]:
    """``history`` with each annealing pass's ``n_clusters`` the settled count.

    The passes at a temperature run with the clusters of the record before it
    (splits there are tentative until its end), so each pass gets the settled
    count of the last record at a higher temperature.
    """
    rows = diagram(phases)
    out = []
    for record in history:
        if record.get("phase") == "anneal" and len(rows):
            above = np.flatnonzero(rows[:, 0] > record["temperature"])
            record = {**record, "n_clusters": int(rows[above[-1], 1] if len(above) else 1)}
        out.append(record)
    return out
