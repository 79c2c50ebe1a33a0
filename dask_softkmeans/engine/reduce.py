"""The reduction tree of a pass: which sums are made, in which order, and where.

A pass adds up one packed float64 vector per row block.  The sums always
follow one tree over the block indices, ``split_every`` children per node:
node ``(0, i)`` is block ``i``; node ``(L, j)`` is the sum, left to right, of
nodes ``(L - 1, j * split_every)`` .. ``(L - 1, (j + 1) * split_every - 1)``.
Floating-point addition is not associative, so fixing the tree fixes the
result: whichever process adds a node up (a Dask task, a worker, the client),
the same blocks give the same bits.

On a cluster each worker adds up every node whose blocks it holds or reads
(:func:`covering_nodes`, :func:`fold_nodes`) and sends only those; the client
completes the tree from them (:func:`combine_nodes`).  A worker holding a
contiguous run of blocks sends at most ``2 (split_every - 1)`` nodes per
level of the tree, so the bytes that reach the client per pass do not grow
with the number of blocks.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor
from typing import Any

import numpy as np

#: A node of the reduction tree: ``(level, index)``; level 0 nodes are the blocks.
Node = tuple[int, int]


def sum_vectors(*vectors: np.ndarray) -> np.ndarray:
    """One node of the tree: its children added left to right into a fresh float64 vector."""
    total = np.array(vectors[0], dtype=np.float64, copy=True)
    for v in vectors[1:]:
        total += v
    return total


def tree_sum(parts: list[Any], split_every: int) -> Any:
    """The whole tree over ``parts`` (block vectors in block order), computed here."""
    while len(parts) > 1:
        parts = [sum_vectors(*parts[i : i + split_every]) for i in range(0, len(parts), split_every)]
    return parts[0]


def level_sizes(n_blocks: int, split_every: int) -> list[int]:
    """Nodes per level, from the blocks (level 0) up to the root (one node)."""
    sizes = [n_blocks]
    while sizes[-1] > 1:
        sizes.append(-(-sizes[-1] // split_every))
    return sizes


def _children(node: Node, sizes: list[int], split_every: int) -> range:
    level, index = node
    return range(index * split_every, min((index + 1) * split_every, sizes[level - 1]))


def covering_nodes(blocks: Iterable[int], n_blocks: int, split_every: int) -> list[Node]:
    """The largest nodes all of whose blocks are in ``blocks``, ordered by their first block.

    Their sums are what a worker holding ``blocks`` sends for the client to
    complete the tree.
    """
    sizes = level_sizes(n_blocks, split_every)
    complete = [set(blocks)]
    for level in range(1, len(sizes)):
        below = complete[-1]
        parents = {i // split_every for i in below}
        complete.append({j for j in parents
                         if all(c in below for c in _children((level, j), sizes, split_every))})
    nodes = [(level, j) for level, found in enumerate(complete) for j in found
             if level + 1 == len(complete) or j // split_every not in complete[level + 1]]
    return sorted(nodes, key=lambda node: node[1] * split_every ** node[0])


def ordered_map(function: Callable[[Any], Any], items: Sequence[Any],
                pool: Executor | None, window: int) -> Iterator[Any]:
    """``function`` over ``items``, results in order, at most ``window`` running or waiting
    (on ``pool``, or here without one): memory stays a few results, not all of them."""
    if pool is None:
        yield from map(function, items)
        return
    pending: deque = deque()
    for item in items:
        pending.append(pool.submit(function, item))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def fold_nodes(nodes: list[Node], blocks: Iterator[np.ndarray], n_blocks: int,
               split_every: int) -> list[np.ndarray]:
    """The sums of ``nodes`` (from :func:`covering_nodes`) from their block vectors, which
    ``blocks`` yields in block order; at most a few vectors per level are held at a time."""
    sizes = level_sizes(n_blocks, split_every)

    def value(node: Node) -> np.ndarray:
        if node[0] == 0:
            return next(blocks)
        return sum_vectors(*(value((node[0] - 1, c)) for c in _children(node, sizes, split_every)))

    return [value(node) for node in nodes]


def combine_nodes(values: dict[Node, np.ndarray], n_blocks: int, split_every: int) -> np.ndarray:
    """The root of the tree from node sums that, together, cover every block once."""
    sizes = level_sizes(n_blocks, split_every)

    def value(node: Node) -> np.ndarray:
        if node in values:
            return values[node]
        if node[0] == 0:
            raise RuntimeError(f"block {node[1]} of {n_blocks} was not reduced by any worker")
        return sum_vectors(*(value((node[0] - 1, c)) for c in _children(node, sizes, split_every)))

    return value((len(sizes) - 1, 0))


def reduce_blocks(block_vector: Callable[[int], np.ndarray], blocks: Sequence[int], n_blocks: int,
                  split_every: int, *, pool: Executor | None = None,
                  window: int = 1) -> dict[Node, np.ndarray]:
    """The node sums a worker sends: ``block_vector(position)`` for each of its ``blocks``
    (global indices, ascending), folded into :func:`covering_nodes`."""
    nodes = covering_nodes(blocks, n_blocks, split_every)
    vectors = ordered_map(block_vector, range(len(blocks)), pool, window)
    return dict(zip(nodes, fold_nodes(nodes, vectors, n_blocks, split_every), strict=True))


def combine_results(results: Iterable[dict[Node, np.ndarray]], n_blocks: int,
                    split_every: int) -> tuple[np.ndarray, int]:
    """The root from every worker's node sums, and the bytes those sums took."""
    values: dict[Node, np.ndarray] = {}
    for result in results:
        values.update(result)
    received = sum(v.nbytes for v in values.values())
    return combine_nodes(values, n_blocks, split_every), received
