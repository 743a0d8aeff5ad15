"""The ``protocol.secure_aggregation`` block: settings of a secure aggregation round."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from fedledger.privacy.secagg.errors import SecAggError
from fedledger.privacy.secagg.ring import RingCodec


class SecAggSettings(BaseModel):
    """Pairwise-masked secure aggregation (Bonawitz et al. 2017).

    threshold: t, the Shamir threshold; every phase needs at least t clients, so up to
        (sampled - t) clients may drop out; t also bounds collusion (t clients, or the
        server with t - 1 clients, could unmask one client's input).
    frac_bits, clamp: fixed-point encoding into Z_{2**64} (coordinates clamped to
        [-clamp, clamp]); the model is exact to 2**-(frac_bits+1).
    phase_timeout: virtual seconds the server waits in each key/share/unmask phase.
    randomness: "seeded" derives every key and seed from the experiment seed (the
        simulator: reproducible, but whoever knows the seed can unmask); "os" draws them
        from the operating system (real nodes).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    threshold: int = Field(..., ge=1)
    frac_bits: int = Field(20, ge=0, le=52)
    clamp: float = Field(64.0, gt=0.0)
    phase_timeout: float = Field(60.0, gt=0.0)
    randomness: Literal["seeded", "os"] = "seeded"

    @model_validator(mode="after")
    def _codec_fits(self) -> SecAggSettings:
        try:
            self.codec()
        except SecAggError as exc:
            raise ValueError(str(exc)) from exc
        return self

    def codec(self) -> RingCodec:
        return RingCodec(frac_bits=self.frac_bits, clamp=self.clamp)
