"""Explicit stages of a round-based node, instead of sets of flags."""

from __future__ import annotations

from enum import StrEnum


class Stage(StrEnum):
    """Where a round-based node stands.

    IDLE: not started, or waiting for the next round on the grid;
    ROUND: in a round's phases;
    APPLYING: the round's block is chosen, its accepted models are being gathered;
    APPLYING_LATE: as APPLYING, but the round's end has passed: begin the next round as
        soon as the models are in;
    RESTORING: on (re)start, gathering the models of the last block on the ledger
        before joining the network's current round.
    """

    IDLE = "idle"
    ROUND = "round"
    APPLYING = "applying"
    APPLYING_LATE = "applying_late"
    RESTORING = "restoring"

    @property
    def gathering(self) -> bool:
        """Whether the node is gathering models for a new global model."""
        return self in (Stage.APPLYING, Stage.APPLYING_LATE, Stage.RESTORING)
