"""The contract of learning attacks: wrappers around an honest node's data and model.

The host applies a node's attack around its jobs, so protocol code never knows whether
its node is honest. A data attack rewrites the node's local training data once, when
the node is set up; a model attack rewrites each trained model before the protocol sees
it. Omniscient model attacks ("a little is enough", inner-product manipulation,
min-max, min-sum) read the honest models trained in the same round (``honest`` below);
the simulator can give them those, a real deployment could not without collusion.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from fedledger.registry import Registry

Vector = np.ndarray


@dataclass(frozen=True)
class AttackContext:
    """What a model attack may look at.

    start: the weights training started from (the round's global model, or the node's
        own model in asynchronous protocols).
    honest: the honest nodes' trained weights of the same round (empty if unknown).
    num_attackers: how many nodes run this attack (for attacks that coordinate).
    seed: per node and round, for reproducible randomness.
    """

    start: Vector
    honest: tuple[Vector, ...] = ()
    num_attackers: int = 1
    seed: int = 0


class Attack:
    """Honest behaviour; attacks override one or both hooks."""

    #: whether poison_model needs ``AttackContext.honest`` (the host then trains the
    #: honest nodes of a round first).
    omniscient: bool = False

    def poison_data(
        self, x: np.ndarray, y: np.ndarray, num_classes: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        return x, y

    def poison_model(self, trained: Vector, context: AttackContext) -> Vector:
        return trained

    def test_metrics(
        self,
        predict: Callable[[np.ndarray], np.ndarray],
        x_test: np.ndarray,
        y_test: np.ndarray,
    ) -> dict[str, float]:
        """Metrics of the attack's own success on the global test set, measured by the host
        for every reported model (e.g. a backdoor's ``backdoor_asr``). ``predict`` maps
        inputs to predicted labels under the model being measured. Default: none."""
        return {}


ATTACKS: Registry[Attack] = Registry("attack")
