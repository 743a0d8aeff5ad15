"""Parameters of the vanilla protocol (the ``protocol:`` block of a config)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from fedledger.privacy.he.config import EncryptionSettings
from fedledger.privacy.secagg.config import SecAggSettings
from fedledger.protocols.vanilla.dp import DP_AGGREGATORS, DPFedAvgParams

#: Aggregation rules that need ``AggregationContext.trusted_update``: the server's own
#: update, trained each round on its trusted root dataset (``root_samples``).
TRUSTED_UPDATE_RULES = frozenset({"fltrust"})
#: Rules the server can run on a masked or encrypted sum (it sees no single update).
SUM_RULES = frozenset({"weighted_fedavg", "fedavg"})


class VanillaParams(BaseModel):
    """Classic server-based FedAvg (McMahan et al. 2017).

    fraction: share of clients sampled each round (C in the paper), at least min_clients.
    aggregator: an aggregation rule from the registry, with its parameters.
    round_timeout: virtual seconds the server waits for updates before aggregating what
        it has (stragglers and lost messages are then left out of the round).
    root_samples: size of the server's trusted root dataset (FLTrust, Cao et al. 2021,
        uses 100), drawn with the seed, uniformly without replacement, from the union of
        the clients' clean local training sets; the clients keep all their data. 0: no
        root set. A rule that needs a trusted update (fltrust) needs root_samples >= 1;
        the server then trains on the root set from the global model each round and
        passes the result to the rule. Other rules ignore the root set.
    dp: DP-FedAvg, central or local (:mod:`fedledger.protocols.vanilla.dp`); None: off.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    fraction: float = Field(1.0, gt=0.0, le=1.0)
    min_clients: int = Field(1, ge=1)
    aggregator: dict[str, Any] = Field(default_factory=lambda: {"name": "weighted_fedavg"})
    round_timeout: float = Field(600.0, gt=0.0)
    root_samples: int = Field(0, ge=0, description="server's trusted root set (FLTrust: 100)")
    dp: DPFedAvgParams | None = Field(None, description="DP-FedAvg: {mode: central|local, ...}")
    secure_aggregation: SecAggSettings | None = Field(None, description="{threshold: t, ...}")
    encryption: EncryptionSettings | None = Field(None, description="{scheme: paillier|ckks}")

    @property
    def aggregator_name(self) -> str:
        return str(self.aggregator.get("name", "weighted_fedavg"))

    @property
    def needs_trusted_update(self) -> bool:
        """Whether the aggregator needs the server's update on its root set."""
        return self.aggregator_name in TRUSTED_UPDATE_RULES

    @model_validator(mode="after")
    def _root_set_for_trusted_rules(self) -> VanillaParams:
        if self.needs_trusted_update and self.root_samples < 1:
            raise ValueError(
                f"aggregator {self.aggregator_name!r} needs a trusted root dataset held by "
                f"the server: set protocol.root_samples >= 1 (the FLTrust paper uses 100); "
                f"got root_samples={self.root_samples}"
            )
        return self

    @model_validator(mode="after")
    def _dp_with_fedavg(self) -> VanillaParams:
        if self.dp is not None and self.aggregator_name not in DP_AGGREGATORS:
            raise ValueError(
                f"protocol.dp needs an averaging aggregator ({', '.join(sorted(DP_AGGREGATORS))})"
                f" whose sensitivity the noise is calibrated to; got {self.aggregator_name!r}"
            )
        return self


    @model_validator(mode="after")
    def _secure_needs_a_sum(self) -> VanillaParams:
        """secure_aggregation / encryption (privacy.secagg.config, privacy.he.config):
        the server sees only a masked or encrypted sum, so only a sum rule works."""
        if self.secure_aggregation is not None and self.encryption is not None:
            raise ValueError(
                "protocol.secure_aggregation and protocol.encryption exclude each other"
            )
        secure = self.secure_aggregation is not None or self.encryption is not None
        if secure and self.aggregator_name not in SUM_RULES:
            raise ValueError(
                f"aggregator {self.aggregator_name!r} needs every client's update, but the "
                f"server sees only a masked or encrypted sum; allowed: {sorted(SUM_RULES)}"
            )
        if secure and self.dp is not None and self.dp.mode != "local":
            raise ValueError(
                "central DP clips each client's update at the server, which a masked or "
                "encrypted sum hides; use protocol.dp.mode: local with secure aggregation"
            )
        return self
