"""Parameters of the DFL protocol (the ``protocol:`` block of a config)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class DflParams(BaseModel):
    """DFL (Tian et al.): asynchronous partial consensus, one chain per node.

    Time is in ticks (one virtual second each). Defaults are the paper's simulation
    settings: 10 nodes each connecting to 2 peers, buffer 4, batch 64, ttl 1.

    topology: "random" (a seeded connected graph with average degree ``degree``),
        "full" (every node a neighbour of every other) or "edges" (``edges``: pairs of
        node indexes).
    observers: the first ``observers`` nodes only average, never train or send models.
    samples_per_interval / train_interval: a node receives this many new training samples
        every interval, the interval drawn uniformly from [lo, hi] ticks.
    batch_size: samples a node must hold before it trains (once per batch).
    buffer_size: received models that trigger a model update.
    ttl: a transaction's time to live (hops); expire_after: its expiry, in ticks.
    block_txs: own transactions per block; receipt_wait: ticks to wait for receipts of
        the last one before drafting; confirm_timeout: ticks to gather confirmations.
    finalize: "fraction_all" (at least ``finalize_fraction`` of all receipts confirmed)
        or "fraction_each" (at least that fraction of each transaction's receipts).
    update_rule: ``{name: <registered rule or "package.module:Class">, <param>: value}``.
    keep_solver: carry the SGD momentum buffer from one training to the next, as the
        authors' nodes keep one Caffe solver (momentum 0.9) for the whole run; False
        restarts momentum at zero for every batch (then one-batch trainings get none).
    ticks: the node halts at this tick; report_every: ticks between model reports.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    topology: Literal["random", "full", "edges"] = "random"
    degree: float = Field(4.0, gt=0.0, description="average degree of the random topology")
    edges: tuple[tuple[int, int], ...] = ()
    observers: int = Field(0, ge=0)
    samples_per_interval: int = Field(64, ge=1)
    train_interval: tuple[int, int] = (8, 12)
    batch_size: int = Field(64, ge=1)
    buffer_size: int = Field(4, ge=1)
    ttl: int = Field(1, ge=1, le=16)
    expire_after: float = Field(30.0, gt=0.0)
    block_txs: int = Field(4, ge=1)
    receipt_wait: float = Field(2.0, ge=0.0)
    confirm_timeout: float = Field(5.0, gt=0.0)
    finalize: Literal["fraction_all", "fraction_each"] = "fraction_all"
    finalize_fraction: float = Field(0.8, ge=0.0, le=1.0)
    update_rule: dict[str, Any] = Field(default_factory=lambda: {"name": "reputation-0.05"})
    keep_solver: bool = True
    ticks: int = Field(1000, ge=1)
    report_every: int = Field(10, ge=1)

    @model_validator(mode="after")
    def _check(self) -> DflParams:
        lo, hi = self.train_interval
        if not 1 <= lo <= hi:
            raise ValueError(f"train_interval must be [lo, hi] with 1 <= lo <= hi, got {[lo, hi]}")
        if self.topology == "edges" and not self.edges:
            raise ValueError("topology 'edges' needs a non-empty 'edges' list of [i, j] pairs")
        if self.topology != "edges" and self.edges:
            raise ValueError(f"'edges' is only used with topology 'edges', not {self.topology!r}")
        # the built-in rules register on import; unknown names and bad parameters fail
        # here, when the config loads, not when the first node is built
        from fedledger.protocols.dfl.rules import check_rule

        check_rule(self.update_rule)
        return self
