"""Aggregation rules; importing this package registers them in ``AGGREGATORS``.

basic: FedAvg, sample-weighted FedAvg, and the DFL paper's HalfFedAvg and
reputation-weighted rules. robust: Krum, Multi-Krum, Bulyan, coordinate median, trimmed
mean, centred clipping, geometric median and FLTrust.
"""

from fedledger.learning.aggregate import basic, robust
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
    "robust",
    "stack",
]
