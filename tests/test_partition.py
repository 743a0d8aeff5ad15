"""Partitioners: disjointness, coverage, class proportions, skew, errors."""

from __future__ import annotations

import numpy as np
import pytest

from fedledger.errors import ConfigError, UnknownComponentError
from fedledger.learning.partition import (
    PARTITIONERS,
    dirichlet,
    iid,
    k_labels,
    make_partitioner,
    shards,
    unbalanced,
)

# 10 classes of 100 samples each, in a scrambled order
LABELS = np.random.default_rng(7).permutation(np.repeat(np.arange(10), 100))


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def assert_disjoint(parts: list[np.ndarray], n: int, cover: bool = True) -> None:
    flat = np.concatenate(parts)
    assert len(flat) == len(np.unique(flat)), "partitions overlap"
    assert flat.min() >= 0 and flat.max() < n
    if cover:
        assert len(flat) == n


def class_counts(parts: list[np.ndarray], labels: np.ndarray = LABELS) -> np.ndarray:
    return np.stack([np.bincount(labels[p], minlength=10) for p in parts])


def test_registry_names() -> None:
    assert PARTITIONERS.names() == ["dirichlet", "iid", "labels", "shards", "unbalanced"]


def test_iid_equal_sizes_and_proportions() -> None:
    parts = iid(LABELS, 10, rng())
    assert_disjoint(parts, 1000)
    assert {len(p) for p in parts} == {100}
    # every node sees every class, roughly 10 each
    counts = class_counts(parts)
    assert counts.min() >= 1 and abs(counts.mean() - 10) < 1e-9


def test_seeded_and_seed_sensitive() -> None:
    a = make_partitioner("dirichlet", {"alpha": 0.5})(LABELS, 8, rng(3))
    b = make_partitioner("dirichlet", {"alpha": 0.5})(LABELS, 8, rng(3))
    c = make_partitioner("dirichlet", {"alpha": 0.5})(LABELS, 8, rng(4))
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))


def test_dirichlet_covers_and_respects_min_samples() -> None:
    parts = dirichlet(LABELS, 20, rng(1), alpha=0.3, min_samples=15)
    assert_disjoint(parts, 1000)
    assert min(len(p) for p in parts) >= 15


def _dominant_share(alpha: float) -> float:
    """Mean share of each node's most frequent class, over a few seeds."""
    shares = []
    for seed in range(5):
        counts = class_counts(dirichlet(LABELS, 10, rng(seed), alpha=alpha))
        shares.append((counts.max(axis=1) / counts.sum(axis=1)).mean())
    return float(np.mean(shares))


def test_dirichlet_skew_grows_as_alpha_shrinks() -> None:
    skewed, mild, flat = _dominant_share(0.1), _dominant_share(1.0), _dominant_share(100.0)
    assert skewed > mild > flat
    assert skewed > 0.5  # alpha 0.1: most of a node's data is one or two classes
    assert flat < 0.2  # alpha 100: close to IID (0.1 per class)


def test_dirichlet_gives_up_with_clear_error() -> None:
    with pytest.raises(ValueError, match=r"alpha=0.01.*min_samples=90"):
        dirichlet(LABELS, 11, rng(), alpha=0.01, min_samples=90, max_tries=5)


def test_dirichlet_rejects_bad_alpha() -> None:
    with pytest.raises(ValueError, match="alpha must be > 0, got 0"):
        dirichlet(LABELS, 4, rng(), alpha=0)
    with pytest.raises(ConfigError, match="alpha"):
        make_partitioner("dirichlet", {"alpha": -1}, where="data.partition")


def test_k_labels() -> None:
    parts = k_labels(LABELS, 10, rng(2), labels_per_node=2)
    assert_disjoint(parts, 1000)  # 10 nodes x 2 labels: every label held twice
    counts = class_counts(parts)
    assert ((counts > 0).sum(axis=1) == 2).all()
    assert ((counts > 0).sum(axis=0) == 2).all()
    assert set(counts[counts > 0].tolist()) == {50}  # each label split evenly


def test_k_labels_uncovered_labels_left_out() -> None:
    parts = k_labels(LABELS, 3, rng(), labels_per_node=2)
    assert_disjoint(parts, 1000, cover=False)
    assert sum(len(p) for p in parts) == 600
    assert ((class_counts(parts) > 0).sum(axis=1) == 2).all()


def test_k_labels_errors() -> None:
    with pytest.raises(ValueError, match=r"number of classes \(10\), got 11"):
        k_labels(LABELS, 4, rng(), labels_per_node=11)
    with pytest.raises(ValueError, match=r"label .* has 100 samples but 200 nodes"):
        k_labels(LABELS, 1000, rng(), labels_per_node=2)


@pytest.mark.parametrize("per_node", [1, 2, 5])
def test_shards_sorted(per_node: int) -> None:
    parts = shards(LABELS, 10, rng(5), shards_per_node=per_node)
    assert_disjoint(parts, 1000)
    assert {len(p) for p in parts} == {100}
    # a shard of 100 // per_node samples cut from label-sorted data spans <= 2 labels
    assert ((class_counts(parts) > 0).sum(axis=1) <= 2 * per_node).all()
    if per_node == 1:
        assert ((class_counts(parts) > 0).sum(axis=1) == 1).all()


def test_shards_random_and_leftovers() -> None:
    parts = shards(LABELS, 7, rng(), shards_per_node=3, random=True)
    assert_disjoint(parts, 1000, cover=False)
    assert {len(p) for p in parts} == {1000 // 21 * 3}
    assert (class_counts(parts) > 0).sum(axis=1).min() >= 8  # shuffled, not sorted


def test_unbalanced_sizes() -> None:
    parts = unbalanced(LABELS, 10, rng(), sigma=1.5, min_samples=5)
    assert_disjoint(parts, 1000)
    sizes = sorted(len(p) for p in parts)
    assert sizes[0] >= 5 and sizes[-1] > 3 * sizes[0]
    equal = unbalanced(LABELS, 10, rng(), sigma=0.0)
    assert {len(p) for p in equal} == {100}


def test_more_nodes_than_samples() -> None:
    with pytest.raises(ValueError, match=r"1001 nodes .* from 1000 samples"):
        iid(LABELS, 1001, rng())
    with pytest.raises(ValueError, match="at least 3 sample"):
        shards(LABELS, 400, rng(), shards_per_node=3)
    with pytest.raises(ValueError, match="num_nodes must be at least 1, got 0"):
        unbalanced(LABELS, 0, rng())


def test_make_partitioner_errors() -> None:
    with pytest.raises(UnknownComponentError, match="available: dirichlet, iid"):
        make_partitioner("pathological")
    with pytest.raises(ConfigError, match=r"shards\.bogus"):
        make_partitioner("shards", {"bogus": 1}, where="shards")
