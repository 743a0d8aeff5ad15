"""Partitioners: how a training set is divided among the data-holding nodes.

A partitioner is a function ``(labels, num_nodes, rng, **params) -> list of index
arrays``, one array per node. The arrays are disjoint; each partitioner's docstring says
which samples they cover. All randomness comes from ``rng``, so a seed fixes the split.
Registered in :data:`PARTITIONERS` with a pydantic model of the parameters; use
:func:`make_partitioner` to get a ready ``(labels, num_nodes, rng)`` callable from a name.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from fedledger.errors import ConfigError
from fedledger.registry import NoParams, Registry

Partitioner = Callable[[np.ndarray, int, np.random.Generator], list[np.ndarray]]
PartitionFn = Callable[..., list[np.ndarray]]

PARTITIONERS: Registry[list[np.ndarray]] = Registry("partitioner")


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_nodes(labels: np.ndarray, num_nodes: int, per_node: int = 1) -> int:
    """Validate the common arguments; return the number of samples."""
    if labels.ndim != 1:
        raise ValueError(f"labels must be a 1-D array, got shape {labels.shape}")
    if num_nodes < 1:
        raise ValueError(f"num_nodes must be at least 1, got {num_nodes}")
    n = int(labels.shape[0])
    if num_nodes * per_node > n:
        raise ValueError(
            f"cannot give {num_nodes} nodes at least {per_node} sample(s) each from "
            f"{n} samples; use at most {n // per_node} nodes"
        )
    return n


def _largest_remainder(total: int, shares: np.ndarray) -> np.ndarray:
    """Integer counts proportional to ``shares`` that sum exactly to ``total``."""
    exact = shares / shares.sum() * total
    counts = np.floor(exact).astype(np.int64)
    short = total - int(counts.sum())
    if short:
        order = np.argsort(-(exact - counts), kind="stable")
        counts[order[:short]] += 1
    return counts


# ---------------------------------------------------------------- iid


def iid(labels: np.ndarray, num_nodes: int, rng: np.random.Generator) -> list[np.ndarray]:
    """IID: a random permutation cut into near-equal parts; covers every sample."""
    n = _check_nodes(labels, num_nodes)
    return [np.sort(part) for part in np.array_split(rng.permutation(n), num_nodes)]


# ---------------------------------------------------------------- dirichlet


class DirichletParams(_Params):
    alpha: float = Field(0.5, gt=0, description="concentration; small = skewed labels")
    min_samples: int = Field(2, ge=1, description="every node gets at least this many")
    max_tries: int = Field(1000, ge=1, description="re-draws before giving up")


def dirichlet(
    labels: np.ndarray,
    num_nodes: int,
    rng: np.random.Generator,
    alpha: float = 0.5,
    min_samples: int = 2,
    max_tries: int = 1000,
) -> list[np.ndarray]:
    """Label-Dirichlet (Hsu et al. 2019): each class split by proportions ~ Dir(alpha).

    For every class, node shares are drawn from a symmetric Dirichlet(alpha) and the
    class's shuffled samples are cut by them. The whole draw is repeated until every node
    holds at least ``min_samples`` samples (at most ``max_tries`` times). Covers every
    sample.
    """
    if not alpha > 0:
        raise ValueError(f"dirichlet alpha must be > 0, got {alpha}")
    if min_samples < 1:
        raise ValueError(f"dirichlet min_samples must be >= 1, got {min_samples}")
    n = _check_nodes(labels, num_nodes, min_samples)
    by_class = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    for _ in range(max_tries):
        parts: list[list[np.ndarray]] = [[] for _ in range(num_nodes)]
        for members in by_class:
            shares = rng.dirichlet(np.full(num_nodes, alpha))
            cuts = (np.cumsum(shares)[:-1] * len(members)).astype(np.int64)
            for node, chunk in enumerate(np.split(rng.permutation(members), cuts)):
                parts[node].append(chunk)
        sizes = [sum(len(c) for c in p) for p in parts]
        if min(sizes) >= min_samples:
            return [np.sort(np.concatenate(p)) for p in parts]
    raise ValueError(
        f"dirichlet(alpha={alpha}) gave some of {num_nodes} nodes fewer than "
        f"min_samples={min_samples} of {n} samples in {max_tries} draws; raise alpha, "
        "lower min_samples or use fewer nodes"
    )


# ---------------------------------------------------------------- k labels per node


class LabelsParams(_Params):
    labels_per_node: int = Field(2, ge=1, description="distinct labels each node holds")


def k_labels(
    labels: np.ndarray, num_nodes: int, rng: np.random.Generator, labels_per_node: int = 2
) -> list[np.ndarray]:
    """k labels per node; each label's samples are split evenly among its holders.

    Labels are put in a random order and dealt round-robin: node i holds the labels at
    positions i*k .. i*k+k-1 (mod the number of classes), so every label is held by
    floor or ceil of num_nodes*k/num_classes nodes. When num_nodes*k is smaller than the
    number of classes, the samples of labels nobody holds are left out; otherwise every
    sample is covered.
    """
    _check_nodes(labels, num_nodes)
    classes = np.unique(labels)
    k = labels_per_node
    if not 1 <= k <= len(classes):
        raise ValueError(
            f"labels_per_node must be between 1 and the number of classes ({len(classes)}), got {k}"
        )
    order = classes[rng.permutation(len(classes))]
    held = [[order[(i * k + j) % len(classes)] for j in range(k)] for i in range(num_nodes)]
    holders: dict[Any, list[int]] = {}
    for node, node_labels in enumerate(held):
        for label in node_labels:
            holders.setdefault(label, []).append(node)
    parts: list[list[np.ndarray]] = [[] for _ in range(num_nodes)]
    for label, nodes in holders.items():
        members = rng.permutation(np.flatnonzero(labels == label))
        if len(members) < len(nodes):
            raise ValueError(
                f"label {label} has {len(members)} samples but {len(nodes)} nodes hold it; "
                "use fewer nodes or fewer labels_per_node"
            )
        for node, chunk in zip(nodes, np.array_split(members, len(nodes)), strict=True):
            parts[node].append(chunk)
    return [np.sort(np.concatenate(p)) for p in parts]


# ---------------------------------------------------------------- shards


class ShardsParams(_Params):
    shards_per_node: int = Field(2, ge=1, description="shards each node receives")
    random: bool = Field(False, description="shuffle instead of sorting by label")


def shards(
    labels: np.ndarray,
    num_nodes: int,
    rng: np.random.Generator,
    shards_per_node: int = 2,
    random: bool = False,
) -> list[np.ndarray]:
    """Equal shards (McMahan et al. 2017): sort by label, cut, deal shards_per_node each.

    The samples are sorted by label (ties in random order), cut into
    num_nodes * shards_per_node shards of equal size, and the shards are dealt at random.
    With ``random=True`` the samples are shuffled instead of sorted (PoS-BFL's random
    equal shards, an IID split of equal sizes). The n mod (number of shards) samples
    left over by equal sizes are left out.
    """
    if shards_per_node < 1:
        raise ValueError(f"shards_per_node must be >= 1, got {shards_per_node}")
    n = _check_nodes(labels, num_nodes, shards_per_node)
    num_shards = num_nodes * shards_per_node
    size = n // num_shards
    shuffled = rng.permutation(n)
    ordered = shuffled if random else shuffled[np.argsort(labels[shuffled], kind="stable")]
    cut = ordered[: num_shards * size].reshape(num_shards, size)
    dealt = rng.permutation(num_shards).reshape(num_nodes, shards_per_node)
    return [np.sort(cut[row].reshape(-1)) for row in dealt]


# ---------------------------------------------------------------- unbalanced


class UnbalancedParams(_Params):
    sigma: float = Field(1.0, ge=0, description="lognormal sigma of the node sizes")
    min_samples: int = Field(2, ge=1, description="every node gets at least this many")


def unbalanced(
    labels: np.ndarray,
    num_nodes: int,
    rng: np.random.Generator,
    sigma: float = 1.0,
    min_samples: int = 2,
) -> list[np.ndarray]:
    """Unbalanced sizes, IID labels: sizes proportional to lognormal(0, sigma) draws.

    Every node first gets ``min_samples``; the rest is shared in proportion to the draws.
    Sigma 0 gives equal sizes. Covers every sample.
    """
    if sigma < 0:
        raise ValueError(f"unbalanced sigma must be >= 0, got {sigma}")
    if min_samples < 1:
        raise ValueError(f"unbalanced min_samples must be >= 1, got {min_samples}")
    n = _check_nodes(labels, num_nodes, min_samples)
    shares = rng.lognormal(0.0, sigma, size=num_nodes)
    sizes = min_samples + _largest_remainder(n - num_nodes * min_samples, shares)
    cuts = np.cumsum(sizes)[:-1]
    return [np.sort(part) for part in np.split(rng.permutation(n), cuts)]


# ---------------------------------------------------------------- registry

PARTITIONERS.add("iid", iid, NoParams)
PARTITIONERS.add("dirichlet", dirichlet, DirichletParams)
PARTITIONERS.add("labels", k_labels, LabelsParams)
PARTITIONERS.add("shards", shards, ShardsParams)
PARTITIONERS.add("unbalanced", unbalanced, UnbalancedParams)


def make_partitioner(
    name: str, params: Mapping[str, Any] | None = None, where: str = ""
) -> Partitioner:
    """The registered partitioner ``name`` with validated ``params`` bound.

    Raises UnknownComponentError / ConfigError naming ``where`` for a bad name or value.
    """
    comp = PARTITIONERS.get(name, where)
    values = PARTITIONERS.params(name, params or {}, where).model_dump()
    fn: PartitionFn = comp.factory
    return functools.partial(fn, **values)


def partition(
    labels: np.ndarray,
    num_nodes: int,
    partitioner: Partitioner,
    rng: np.random.Generator,
    where: str = "partition",
) -> list[np.ndarray]:
    """Run ``partitioner`` and turn its ValueErrors into ConfigErrors naming ``where``."""
    try:
        return partitioner(labels, num_nodes, rng)
    except ConfigError:
        raise
    except ValueError as exc:
        raise ConfigError(where, str(exc)) from None
