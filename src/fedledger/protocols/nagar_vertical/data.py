"""Party data for vertical and transfer FL: scikit-learn's breast_cancer split by features.

Party A holds the first ``features_a`` columns, party B the rest (and, in vertical FL,
the labels). Which samples each party holds is set by ``overlap``: that fraction of all
samples is held by both, the rest is split evenly between A only and B only. Ids are
``"case-<row>"`` strings; rows are shuffled by the seed so no order leaks the overlap.
Each party standardises its own columns with its own rows' mean and standard deviation
(local statistics, nothing shared).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from fedledger.errors import ConfigError


@dataclass(frozen=True)
class PartyData:
    """One party's rows: ids, standardised features and (if it holds them) labels in {-1, +1}."""

    ids: tuple[str, ...]
    x: np.ndarray
    y: np.ndarray | None

    def rows(self, ids: tuple[str, ...]) -> np.ndarray:
        where = {k: i for i, k in enumerate(self.ids)}
        return self.x[[where[k] for k in ids]]

    def labels(self, ids: tuple[str, ...]) -> np.ndarray:
        if self.y is None:
            raise ConfigError("party", "this party holds no labels")
        where = {k: i for i, k in enumerate(self.ids)}
        return self.y[[where[k] for k in ids]]


@dataclass(frozen=True)
class FeatureSplit:
    """Both parties' data plus the ground truth the evaluation (never a party) may use."""

    a: PartyData
    b: PartyData
    common: frozenset[str]
    all_labels: dict[str, int]


def _standardise(x: np.ndarray) -> np.ndarray:
    std = x.std(axis=0)
    return (x - x.mean(axis=0)) / np.where(std > 0, std, 1.0)


def load_breast_cancer_xy() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    return np.asarray(data.data, dtype=np.float64), np.where(data.target == 1, 1, -1)


def feature_split(
    overlap: float, seed: int, features_a: int = 15, labels_at: str = "b"
) -> FeatureSplit:
    """Split breast_cancer between A and B with ``overlap`` of the samples held by both."""
    if not 0.0 < overlap <= 1.0:
        raise ConfigError("overlap", f"{overlap}; allowed: 0 < overlap <= 1")
    if labels_at not in ("a", "b"):
        raise ConfigError("labels_at", f"{labels_at!r}; allowed: 'a' or 'b'")
    x, y = load_breast_cancer_xy()
    if not 1 <= features_a < x.shape[1]:
        raise ConfigError("features_a", f"{features_a}; allowed: 1..{x.shape[1] - 1}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    n_common = max(2, round(overlap * len(y)))
    common, rest = order[:n_common], order[n_common:]
    only_a, only_b = rest[: len(rest) // 2], rest[len(rest) // 2 :]
    rows_a = np.sort(np.concatenate([common, only_a]))
    rows_b = np.sort(np.concatenate([common, only_b]))
    rows_a, rows_b = rng.permutation(rows_a), rng.permutation(rows_b)
    ids_a = tuple(f"case-{r}" for r in rows_a)
    ids_b = tuple(f"case-{r}" for r in rows_b)
    xa = _standardise(x[rows_a, :features_a])
    xb = _standardise(x[rows_b, features_a:])
    a = PartyData(ids_a, xa, y[rows_a] if labels_at == "a" else None)
    b = PartyData(ids_b, xb, y[rows_b] if labels_at == "b" else None)
    truth = {f"case-{r}": int(y[r]) for r in range(len(y))}
    return FeatureSplit(a, b, frozenset(f"case-{r}" for r in common), truth)


def is_test_id(case_id: str, seed: int, test_fraction: float) -> bool:
    """A split both parties compute from the shared seed alone (a hash of the id)."""
    digest = hashlib.sha256(f"{seed}/{case_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < test_fraction
