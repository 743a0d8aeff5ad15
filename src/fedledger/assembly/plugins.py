"""Imports the built-in components so they register, and lists the registries."""

from __future__ import annotations

from typing import Any

from fedledger.registry import Registry


def registries() -> dict[str, Registry[Any]]:
    """Every plug-in registry by kind, with the built-in components loaded."""
    import fedledger.learning.aggregate
    import fedledger.learning.attacks
    import fedledger.privacy  # registers the dp_sgd solver
    import fedledger.protocols.dfl
    import fedledger.protocols.dflbcb
    import fedledger.protocols.mudfl
    import fedledger.protocols.nagar
    import fedledger.protocols.nagar_vertical
    import fedledger.protocols.pbft_ledger
    import fedledger.protocols.posbfl
    import fedledger.protocols.vanilla
    from fedledger.learning.aggregate.base import AGGREGATORS
    from fedledger.learning.attacks.base import ATTACKS
    from fedledger.learning.data import DATASETS
    from fedledger.learning.executor import EXECUTORS
    from fedledger.learning.models import MODELS
    from fedledger.learning.partition import PARTITIONERS
    from fedledger.learning.solvers import SOLVERS
    from fedledger.protocols.base import PROTOCOLS

    return {
        "protocol": PROTOCOLS,
        "dataset": DATASETS,
        "partitioner": PARTITIONERS,
        "model": MODELS,
        "aggregator": AGGREGATORS,
        "attack": ATTACKS,
        "solver": SOLVERS,
        "executor": EXECUTORS,
        "update_rule": fedledger.protocols.dfl.UPDATE_RULES,
    }
