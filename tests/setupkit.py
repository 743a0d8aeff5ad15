"""Building a NodeSetup by hand in unit tests: ``rounds`` becomes a rounds horizon and a
node without a ledger gets keys-only services (derived from seed 0)."""

from __future__ import annotations

from typing import Any

from fedledger.assembly.services import keys_only_services
from fedledger.protocols.base import Horizon, NodeSetup


def make_setup(*, rounds: int = 1, services: Any = None, **fields: Any) -> NodeSetup[Any]:
    plans = fields["all_nodes"]
    if services is None:
        services = keys_only_services(fields["plan"].node_id, plans, fields.get("seed", 0))
    return NodeSetup(horizon=Horizon("rounds", rounds), services=services, **fields)
