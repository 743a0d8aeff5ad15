"""Behavioural attacks: nodes that do not train, and nodes that are many.

lazy (also registered as free_rider; Lin et al. 2019's free-riders): re-sends
    ``context.start``, the model it was given, or with ``copy: true`` a copy of one honest
    model of the round chosen by the seed (falling back to ``start`` when the host gives
    no honest models); ``noise`` > 0 adds N(0, noise^2) to each weight to disguise it.
sybil (Douceur 2002; in FL, Fung et al. 2020): a group of identities that submit one
    identical colluding model, built by an ``inner`` attack ({name: ..., params...}) from
    a shared base with a seed shared by the group. The base is the mean of the round's
    honest models (``base: honest_mean``, the default; the node's own trained model when
    the host gives none) or ``start``; ``base: own`` applies the inner attack to each
    identity's own trained model (colluding, but identical only when the inner attack
    ignores the trained model). The shared seed is derived from ``group_seed`` and the
    start model, so it changes every round and is the same across the group. The inner
    attack's data poisoning runs with a generator seeded by ``group_seed``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator

from fedledger.learning.attacks.base import ATTACKS, Attack, AttackContext, Vector
from fedledger.learning.attacks.common import AttackParams, vector
from fedledger.seeding import derive_seed


@dataclass(frozen=True)
class Lazy(Attack):
    """Lazy / free-riding node: re-sends the start model, or copies one honest model."""

    copy_honest: bool = False
    noise: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "omniscient", self.copy_honest)

    def poison_model(self, trained: Vector, context: AttackContext) -> Vector:
        rng = np.random.default_rng(context.seed)
        start = vector(context.start)
        if self.copy_honest and context.honest:
            out = vector(context.honest[int(rng.integers(len(context.honest)))])
        else:
            out = start
        if out.shape != vector(trained).shape:
            raise ValueError(f"model to re-send has shape {out.shape}, trained {trained.shape}")
        if self.noise > 0:
            return (out + rng.normal(0.0, self.noise, out.shape)).astype(np.float32)
        return out.copy()


Base = Literal["honest_mean", "start", "own"]


def group_seed_for(group_seed: int, start: np.ndarray) -> int:
    """A seed shared by a Sybil group for the round whose start model is ``start``."""
    digest = hashlib.blake2b(np.ascontiguousarray(start).tobytes(), digest_size=16).hexdigest()
    return derive_seed(group_seed, "sybil", digest)


@dataclass(frozen=True)
class Sybil(Attack):
    """Sybil group: an inner attack applied to a shared base with a shared seed."""

    inner: Attack
    group_seed: int = 0
    base: Base = "honest_mean"

    def __post_init__(self) -> None:
        object.__setattr__(self, "omniscient", self.base == "honest_mean" or self.inner.omniscient)

    def poison_data(
        self, x: np.ndarray, y: np.ndarray, num_classes: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        shared = np.random.default_rng(derive_seed(self.group_seed, "sybil-data"))
        return self.inner.poison_data(x, y, num_classes, shared)

    def base_model(self, trained: Vector, context: AttackContext) -> np.ndarray:
        if self.base == "start":
            return vector(context.start)
        if self.base == "honest_mean" and context.honest:
            honest = np.stack([vector(w) for w in context.honest])
            return honest.mean(axis=0, dtype=np.float64).astype(np.float32)
        return vector(trained)

    def poison_model(self, trained: Vector, context: AttackContext) -> Vector:
        shared = AttackContext(
            start=context.start,
            honest=context.honest,
            num_attackers=context.num_attackers,
            seed=group_seed_for(self.group_seed, vector(context.start)),
        )
        return vector(self.inner.poison_model(self.base_model(trained, context), shared))


def make_sybil(inner: dict[str, Any], group_seed: int = 0, base: Base = "honest_mean") -> Sybil:
    """Build a Sybil group member around the inner attack ``{name: ..., params...}``."""
    params = {k: v for k, v in inner.items() if k != "name"}
    attack = ATTACKS.build(inner["name"], params, where="sybil.inner")
    return Sybil(attack, group_seed, base)


class LazyParams(AttackParams):
    copy_honest: bool = Field(
        False, alias="copy", description="copy one honest model instead of re-sending start"
    )
    noise: float = Field(0.0, ge=0.0, description="std of Gaussian noise added to disguise")


class SybilParams(AttackParams):
    inner: dict[str, Any] = Field(
        description="the colluding attack: {name: <attack>, <its parameters>...}"
    )
    group_seed: int = Field(0, description="seed shared by the group")
    base: Base = Field("honest_mean", description="what the inner attack rewrites")

    @field_validator("inner")
    @classmethod
    def _check_inner(cls, inner: dict[str, Any]) -> dict[str, Any]:
        name = inner.get("name")
        if not isinstance(name, str):
            raise ValueError(f"needs a 'name' naming an attack; got keys {sorted(inner)}")
        if name == "sybil":
            raise ValueError("a sybil group cannot wrap another sybil attack")
        ATTACKS.params(name, {k: v for k, v in inner.items() if k != "name"}, "sybil.inner")
        return inner


ATTACKS.add("lazy", Lazy, LazyParams)
ATTACKS.add("free_rider", Lazy, LazyParams, summary="Free-rider: the same as lazy.")
ATTACKS.add("sybil", make_sybil, SybilParams)
