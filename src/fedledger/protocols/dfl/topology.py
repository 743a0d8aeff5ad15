"""Who is whose neighbour: fully connected, seeded random with an average degree, or an
explicit edge list. Links are undirected; the result is each node's sorted neighbours."""

from __future__ import annotations

import numpy as np

from fedledger.errors import ConfigError
from fedledger.seeding import derive_seed


def full(n: int) -> set[tuple[int, int]]:
    return {(i, j) for i in range(n) for j in range(i + 1, n)}


def random_graph(n: int, degree: float, seed: int) -> set[tuple[int, int]]:
    """A connected graph with ``round(n * degree / 2)`` edges (at least n - 1, at most
    all): a random spanning tree, then random extra edges."""
    if n < 2:
        return set()
    rng = np.random.default_rng(derive_seed(seed, "dfl-topology"))
    order = [int(i) for i in rng.permutation(n)]
    edges: set[tuple[int, int]] = set()
    for k in range(1, n):
        a, b = order[k], order[int(rng.integers(0, k))]
        edges.add((min(a, b), max(a, b)))
    target = min(max(round(n * degree / 2), n - 1), n * (n - 1) // 2)
    missing = sorted(full(n) - edges)
    extra = rng.permutation(len(missing))[: target - len(edges)]
    edges.update(missing[int(i)] for i in extra)
    return edges


def explicit(n: int, pairs: tuple[tuple[int, int], ...]) -> set[tuple[int, int]]:
    edges: set[tuple[int, int]] = set()
    for k, (a, b) in enumerate(pairs):
        if not (0 <= a < n and 0 <= b < n) or a == b:
            raise ConfigError(
                f"protocol.edges.{k}",
                f"edge {[a, b]} must join two different node indexes in 0..{n - 1}",
            )
        edges.add((min(a, b), max(a, b)))
    return edges


def neighbours(
    n: int, kind: str, degree: float, pairs: tuple[tuple[int, int], ...], seed: int
) -> list[tuple[int, ...]]:
    """Each node index's sorted neighbour indexes."""
    if kind == "full":
        edges = full(n)
    elif kind == "random":
        edges = random_graph(n, degree, seed)
    elif kind == "edges":
        edges = explicit(n, pairs)
    else:
        raise ConfigError("protocol.topology", f"{kind!r}; allowed: full, random, edges")
    out: list[set[int]] = [set() for _ in range(n)]
    for a, b in edges:
        out[a].add(b)
        out[b].add(a)
    return [tuple(sorted(s)) for s in out]
