"""Parameters of the ``pbft-ledger`` protocol (the ``protocol:`` block of a config)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from fedledger.consensus.pbft import PbftConfig


class PbftLedgerParams(BaseModel):
    """A permissioned ledger of signed transactions ordered by PBFT.

    The config's ``nodes.count`` is the number of replicas n (the committee, n >= 4 to
    tolerate one fault); ``clients`` more nodes submit requests. The config's ``rounds``
    is the number of requests each client submits (one "round" = one request per client).

    clients: how many clients submit requests.
    rate: requests per second each client submits (a timer; a request that comes due
        while the previous one is outstanding waits for it: one outstanding at a time).
    payload_size: bytes of payload in each transaction.
    client_retry: seconds a client waits for f+1 replies before it broadcasts again.
    batch_window, max_batch, checkpoint_interval, watermark_window, view_timeout,
    resend_interval: the engine's (``consensus.pbft.PbftConfig``).
    linger: seconds a replica keeps serving (catch-up, retransmission) after it executed
        every client's last request, before it halts.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    clients: int = Field(4, ge=1)
    rate: float = Field(10.0, gt=0.0, description="requests per second per client")
    payload_size: int = Field(64, ge=0, le=1 << 20)
    client_retry: float = Field(1.0, gt=0.0)
    batch_window: float = Field(0.0, ge=0.0)
    max_batch: int = Field(64, ge=1)
    checkpoint_interval: int = Field(16, ge=1)
    watermark_window: int = Field(64, ge=2)
    view_timeout: float = Field(1.0, gt=0.0)
    resend_interval: float = Field(0.25, gt=0.0)
    linger: float = Field(2.0, ge=0.0)

    @model_validator(mode="after")
    def _engine_accepts(self) -> PbftLedgerParams:
        self.engine()  # raises ConfigError naming the bad value
        return self

    def engine(self) -> PbftConfig:
        """The engine's configuration (honest; a node adds its fault switches)."""
        return PbftConfig(
            batch_window=self.batch_window,
            max_batch=self.max_batch,
            checkpoint_interval=self.checkpoint_interval,
            watermark_window=self.watermark_window,
            view_timeout=self.view_timeout,
            resend_interval=self.resend_interval,
        )
