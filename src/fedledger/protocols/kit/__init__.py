"""The protocol kit: what protocol nodes share instead of re-writing it.

:mod:`.node` (``KitNode``: typed hooks, ``@handles`` message table), :mod:`.gate` (one
boundary gate and reject counter), :mod:`.ids` (typed job ids and timer keys),
:mod:`.schedule` (a round schedule on a network-time grid), :mod:`.blobs` (model blobs
stored and verified against a ``ModelRef``), :mod:`.stage` (a round-based node's stage).
"""

from fedledger.protocols.kit.blobs import BlobCipher, ModelBlobs
from fedledger.protocols.kit.gate import REFUSED, REJECTED, Gate, Reject
from fedledger.protocols.kit.ids import JobId, TimerKey
from fedledger.protocols.kit.node import KitNode, handles
from fedledger.protocols.kit.schedule import Join, JoinAction, Phase, RoundSchedule
from fedledger.protocols.kit.stage import Stage

__all__ = [
    "REFUSED",
    "REJECTED",
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
]
