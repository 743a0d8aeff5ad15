"""The protocol kit: what protocol nodes share instead of re-writing it.

:mod:`.node` (``KitNode``: typed hooks, ``@handles`` message table), :mod:`.gate` (one
boundary gate and reject counter), :mod:`.ids` (typed job ids and timer keys),
:mod:`.schedule` (a round schedule on a network-time grid), :mod:`.blobs` (model blobs
stored and verified against a ``ModelRef``), :mod:`.stage` (a round-based node's stage),
:mod:`.shape` (a received message checked against its field types) and :mod:`.asked`
(the timers, jobs and fetches a node is waiting for).
"""

from fedledger.protocols.kit.blobs import BlobCipher, ModelBlobs
from fedledger.protocols.kit.gate import REFUSED, REJECTED, Gate, Reject
from fedledger.protocols.kit.ids import JobId, TimerKey
from fedledger.protocols.kit.node import (
    BAD_RESULT,
    MALFORMED_MESSAGE,
    UNEXPECTED_BLOB,
    UNEXPECTED_JOB,
    UNEXPECTED_TIMER,
    KitNode,
    handles,
)
from fedledger.protocols.kit.schedule import Join, JoinAction, Phase, RoundSchedule
from fedledger.protocols.kit.shape import mismatch
from fedledger.protocols.kit.stage import Stage

__all__ = [
    "BAD_RESULT",
    "MALFORMED_MESSAGE",
    "REFUSED",
    "REJECTED",
    "UNEXPECTED_BLOB",
    "UNEXPECTED_JOB",
    "UNEXPECTED_TIMER",
    "BlobCipher",
    "Gate",
    "JobId",
    "Join",
    "JoinAction",
    "KitNode",
    "ModelBlobs",
    "Phase",
    "Reject",
    "RoundSchedule",
    "Stage",
    "TimerKey",
    "handles",
    "mismatch",
]
