"""DFLBCB's configuration keys (``protocol:`` in an experiment config)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class DflbcbParams(BaseModel):
    """committee: initial committee size (>= 4, F = (n-1)//3); the other nodes are plain
    participants. mt_*: each stage's hard cap in seconds (Alg. 2); floor: Alg. 2's quiet
    timer floor. batch_window: PBFT request aggregation (the paper: 5 s). shared_eval:
    samples of the pre-agreed test set every committee member scores on. block_time: seconds
    between the simulated chain's blocks (0: instant, each call mined at once); block_mode:
    ``exponential`` (PoW-like gaps of mean block_time, the paper's Geth: about 13 s) or
    ``fixed``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    committee: int = Field(4, ge=4)
    elect_times: int = Field(5, ge=1)
    p_bps: int = Field(3000, ge=0, le=10_000)
    elect_ratio_bps: int = Field(2000, ge=0, le=10_000)
    malicious_permille: int = Field(500, ge=0, le=1000)
    mt_elect: float = Field(10.0, gt=0)
    mt_pledge: float = Field(10.0, gt=0)
    mt_commit: float = Field(60.0, gt=0)
    mt_work: float = Field(60.0, gt=0)
    floor: float = Field(0.5, gt=0)
    batch_window: float = Field(0.1, ge=0)
    view_timeout: float = Field(2.0, gt=0)
    shared_eval: int = Field(200, ge=1)
    chain_id: int = Field(1337, ge=1)
    block_time: float = Field(0.0, ge=0)
    block_mode: Literal["fixed", "exponential"] = "exponential"

    @model_validator(mode="after")
    def _timeouts(self) -> DflbcbParams:
        if self.view_timeout <= self.batch_window:
            raise ValueError(
                f"view_timeout ({self.view_timeout} s) must exceed batch_window "
                f"({self.batch_window} s): backups would start a view change while the "
                "primary is still filling a batch")
        return self
