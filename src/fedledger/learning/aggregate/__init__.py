"""Aggregation rules; importing this package registers them in ``AGGREGATORS``.

basic: FedAvg, sample-weighted FedAvg, and the DFL paper's HalfFedAvg and
reputation-weighted rules. The robust family (robust_*.py) is registered by the imports
the lead adds below.
"""

from fedledger.learning.aggregate import basic
from fedledger.learning.aggregate.base import (
    AGGREGATORS,
    AggregationContext,
    AggregationError,
    Aggregator,
    Update,
    stack,
)

__all__ = [
    "AGGREGATORS",
    "AggregationContext",
    "AggregationError",
    "Aggregator",
    "Update",
    "basic",
    "stack",
]
