"""Parameters of the PoS-BFL protocol (the ``protocol:`` block of a config)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: Aggregation rules that need a trusted update on a root dataset.
NEEDS_ROOT_DATA = frozenset({"fltrust"})


class PosBflParams(BaseModel):
    """PoS-BFL (survey section 5.3), with the choices of Chen et al. [30] where it is vague.

    workers / validators / miners: role counts per round (the paper's 12/5/3 and 8/9/3);
        when all three are 0, the fractions are used instead (rounded, miners >= 1,
        validators >= 1, the rest workers).
    worker_fraction / validator_fraction: shares of the devices (used with zero counts).
    local_epochs: le, local epochs a worker trains per round (eq. 1 uses it).
    vh: accuracy-drop threshold of Algorithm 1.
    unit_reward: r of eq. 1-3.
    validation: "paper" (Algorithm 1: negative if A(G_{j-1}) - A(L) > vh) or "reference"
        (negative if max(A(G_{j-1}), A(R_v)) - A(L) > vh, R_v the validator's own model
        trained from G_{j-1} for reference_epochs, as in Chen et al. [30]).
    reference_epochs: local epochs of a validator's reference model ("reference" only);
        None: local_epochs, the same training an honest worker does.
    blacklist_rounds: k, consecutive rounds of negative outcome that blacklist a worker.
    consensus: "pos" (legal block = the highest-stake miner's) or "pow" (the valid block
        whose nonce was found with the fewest attempts, i.e. the first miner to finish).
    pow_difficulty: leading zero bits of a PoW block's seal.
    pow_seconds_per_hash: virtual seconds one hash attempt costs a miner.
    tx_window, vote_at, mine_at, select_at, round_length: phase deadlines in virtual
        seconds after a round starts (validators take worker transactions until
        tx_window, send votes at vote_at; miners seal blocks at mine_at; every device picks
        the legal block at select_at and starts the next round at round_length).
    fetch_attempts: how many sources a device tries for each accepted update's blob.
    aggregator: the rule (from the aggregator registry, with its parameters) that turns
        a round's accepted updates into the new global model; default the paper's
        sample-weighted FedAvg. Rules that need a trusted root dataset (fltrust) do not
        apply: PoS-BFL has no server holding one.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    workers: int = Field(12, ge=0)
    validators: int = Field(5, ge=0)
    miners: int = Field(3, ge=0)
    worker_fraction: float = Field(0.6, gt=0.0, lt=1.0)
    validator_fraction: float = Field(0.25, gt=0.0, lt=1.0)
    local_epochs: int = Field(5, ge=1)
    vh: float = Field(0.08, ge=0.0, le=1.0)
    unit_reward: float = Field(1.0, gt=0.0)
    validation: Literal["paper", "reference"] = "paper"
    reference_epochs: int | None = Field(None, ge=1)
    blacklist_rounds: int = Field(3, ge=1)
    consensus: Literal["pos", "pow"] = "pos"
    pow_difficulty: int = Field(8, ge=0, le=24)
    pow_seconds_per_hash: float = Field(0.001, gt=0.0)
    tx_window: float = Field(60.0, gt=0.0)
    vote_at: float = Field(90.0, gt=0.0)
    mine_at: float = Field(120.0, gt=0.0)
    select_at: float = Field(180.0, gt=0.0)
    round_length: float = Field(300.0, gt=0.0)
    fetch_attempts: int = Field(4, ge=1)
    aggregator: dict[str, Any] = Field(default_factory=lambda: {"name": "weighted_fedavg"})

    @model_validator(mode="after")
    def _ordered(self) -> PosBflParams:
        phases = [self.tx_window, self.vote_at, self.mine_at, self.select_at, self.round_length]
        if phases != sorted(set(phases)) or len(set(phases)) != 5:
            raise ValueError(
                "phase deadlines must increase: tx_window < vote_at < mine_at < select_at < "
                f"round_length, got {phases}"
            )
        if self.worker_fraction + self.validator_fraction >= 1.0:
            raise ValueError(
                "worker_fraction + validator_fraction must leave room for miners (< 1), got "
                f"{self.worker_fraction} + {self.validator_fraction}"
            )
        name = self.aggregator.get("name")
        if not isinstance(name, str) or not name:
            raise ValueError(
                f"aggregator needs a 'name' (a registered rule), got {self.aggregator!r}"
            )
        if name in NEEDS_ROOT_DATA:
            raise ValueError(
                f"aggregator {name!r} needs a trusted root dataset, which PoS-BFL has no "
                "server to hold; use a rule without one (e.g. weighted_fedavg, median, krum)"
            )
        return self
