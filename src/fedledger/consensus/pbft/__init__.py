"""A sans-IO PBFT engine (Castro and Liskov, OSDI 1999); see ``replica`` for the rules."""

from fedledger.consensus.pbft.actions import (
    Action,
    BroadcastAll,
    CancelTimer,
    Execute,
    ReplyTo,
    SendTo,
    SetTimer,
)
from fedledger.consensus.pbft.client import Client
from fedledger.consensus.pbft.config import Byzantine, PbftConfig, max_faulty, quorum
from fedledger.consensus.pbft.messages import (
    NULL_DIGEST,
    CatchUp,
    Checkpoint,
    Commit,
    CommitCertificate,
    Executed,
    NewView,
    Prepare,
    PreparedCert,
    PrePrepare,
    Proposal,
    Reply,
    Status,
    ViewChange,
    batch_digest,
)
from fedledger.consensus.pbft.replica import Replica

__all__ = [
    "NULL_DIGEST",
    "Action",
    "BroadcastAll",
    "Byzantine",
    "CancelTimer",
    "CatchUp",
    "Checkpoint",
    "Client",
    "Commit",
    "CommitCertificate",
    "Execute",
    "Executed",
    "NewView",
    "PbftConfig",
    "PrePrepare",
    "Prepare",
    "PreparedCert",
    "Proposal",
    "Replica",
    "Reply",
    "ReplyTo",
    "SendTo",
    "SetTimer",
    "Status",
    "ViewChange",
    "batch_digest",
    "max_faulty",
    "quorum",
]
