"""Data poisoning: the node trains honestly on data it has rewritten once, at set-up.

label_flip: labels through a fixed permutation (default y -> num_classes - 1 - y, as in
    Tolpegin et al. 2020 and Fang et al. 2020), or all to one ``target`` class.
random_labels: labels drawn uniformly from the classes (Zhang et al. 2017's noise labels).
random_data: images replaced by uniform noise in [0, 1) of the same shape and dtype,
    labels kept.
gaussian_data: N(0, sigma^2) noise added to the features, labels kept (the PoS-BFL
    paper's malicious devices add Gaussian noise to their dataset).

Each takes ``fraction`` (default 1): the share of the node's samples rewritten, drawn with
the host's random generator; shapes and dtypes are kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import Field, model_validator

from fedledger.errors import ConfigError
from fedledger.learning.attacks.base import ATTACKS, Attack
from fedledger.learning.attacks.common import AttackParams, chosen_rows


def fraction_field() -> Any:
    """The ``fraction`` parameter: the share of the node's samples rewritten, in (0, 1]."""
    return Field(1.0, gt=0.0, le=1.0, description="share of the node's samples rewritten")


def check_class(name: str, label: int, num_classes: int) -> None:
    if not 0 <= label < num_classes:
        raise ConfigError(
            name, f"class {label} is outside the dataset's classes 0..{num_classes - 1}"
        )


@dataclass(frozen=True)
class LabelFlip(Attack):
    """Label flipping: a fixed permutation of the classes, or every label to ``target``."""

    mapping: tuple[int, ...] | None = None
    target: int | None = None
    fraction: float = 1.0

    def flipped(self, y: np.ndarray, num_classes: int) -> np.ndarray:
        if self.target is not None:
            check_class("label_flip.target", self.target, num_classes)
            return np.full_like(y, self.target)
        if self.mapping is None:
            return (num_classes - 1 - y).astype(y.dtype)
        if len(self.mapping) != num_classes:
            raise ConfigError(
                "label_flip.mapping",
                f"has {len(self.mapping)} entries, the dataset has {num_classes} classes",
            )
        return np.asarray(self.mapping, dtype=y.dtype)[y]

    def poison_data(
        self, x: np.ndarray, y: np.ndarray, num_classes: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        rows = chosen_rows(len(y), self.fraction, rng)
        out = y.copy()
        out[rows] = self.flipped(y[rows], num_classes)
        return x, out


@dataclass(frozen=True)
class RandomLabels(Attack):
    """Random labels: each chosen sample gets a class drawn uniformly."""

    fraction: float = 1.0

    def poison_data(
        self, x: np.ndarray, y: np.ndarray, num_classes: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        rows = chosen_rows(len(y), self.fraction, rng)
        out = y.copy()
        out[rows] = rng.integers(0, num_classes, size=len(rows)).astype(y.dtype)
        return x, out


@dataclass(frozen=True)
class RandomData(Attack):
    """Random data: each chosen sample's features become uniform noise in [0, 1)."""

    fraction: float = 1.0

    def poison_data(
        self, x: np.ndarray, y: np.ndarray, num_classes: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        rows = chosen_rows(len(y), self.fraction, rng)
        out = x.copy()
        noise = rng.random((len(rows), *x.shape[1:]))
        out[rows] = noise.astype(x.dtype)
        return out, y


@dataclass(frozen=True)
class GaussianData(Attack):
    """Gaussian data noise: N(0, sigma^2) added to each chosen sample's features."""

    sigma: float = 1.0
    fraction: float = 1.0

    def poison_data(
        self, x: np.ndarray, y: np.ndarray, num_classes: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        rows = chosen_rows(len(y), self.fraction, rng)
        out = x.copy()
        noise = rng.normal(0.0, self.sigma, (len(rows), *x.shape[1:]))
        out[rows] = (x[rows] + noise).astype(x.dtype)
        return out, y


class LabelFlipParams(AttackParams):
    mapping: tuple[int, ...] | None = Field(
        None, description="new label of each class (a permutation of 0..num_classes-1)"
    )
    target: int | None = Field(None, ge=0, description="flip every label to this class")
    fraction: float = fraction_field()

    @model_validator(mode="after")
    def _check(self) -> LabelFlipParams:
        if self.mapping is not None and self.target is not None:
            raise ValueError(
                f"give either mapping or target, not both (got mapping={list(self.mapping)}, "
                f"target={self.target})"
            )
        if self.mapping is not None and sorted(self.mapping) != list(range(len(self.mapping))):
            raise ValueError(
                f"mapping must be a permutation of 0..{len(self.mapping) - 1}, "
                f"got {list(self.mapping)}"
            )
        return self


class FractionParams(AttackParams):
    fraction: float = fraction_field()


class GaussianDataParams(AttackParams):
    sigma: float = Field(1.0, gt=0.0, description="standard deviation of the added noise")
    fraction: float = fraction_field()


ATTACKS.add("label_flip", LabelFlip, LabelFlipParams)
ATTACKS.add("random_labels", RandomLabels, FractionParams)
ATTACKS.add("random_data", RandomData, FractionParams)
ATTACKS.add("gaussian_data", GaussianData, GaussianDataParams)
