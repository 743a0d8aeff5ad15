"""Byzantine behaviour: a faulty replica's honest actions, rewritten by its switches.

A replica computes what an honest replica would send; :func:`corrupt` then rewrites the
outgoing messages according to ``config.byzantine`` (see :class:`~.config.Byzantine`).
Censoring is the one switch that acts inside the replica (it never proposes, forwards
or times a censored client's request). Rewritten messages are signed again with the
replica's key (or, under ``forge``, with a key that is not a member's).
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import TYPE_CHECKING, Any

from fedledger.consensus.pbft.actions import Action, BroadcastAll, ReplyTo, SendTo
from fedledger.consensus.pbft.messages import Commit, Prepare, Proposal, Reply, batch_digest
from fedledger.crypto.keys import KeyPair, derive_seed
from fedledger.ledger.records import SIGNING_CONTEXT, Transaction, record_id, sign

if TYPE_CHECKING:
    from fedledger.consensus.pbft.replica import Replica


def _bogus(digest: bytes) -> bytes:
    return hashlib.sha256(b"fedledger/pbft/bogus" + digest).digest()


def _forged(rec: Any, index: int) -> Any:
    """``rec`` with a signature by a key that is not the signer's."""
    fake = KeyPair.generate(seed=derive_seed("pbft-forger", index))
    return dataclasses.replace(rec, signature=fake.sign(SIGNING_CONTEXT + record_id(rec)))


def _wrong(msg: Any, replica: Replica) -> Any:
    """The wrong-digest version of an outgoing message."""
    key = replica.keypair
    if isinstance(msg, Proposal):
        pp = dataclasses.replace(msg.preprepare, digest=_bogus(msg.preprepare.digest),
                                 signature=b"")
        return Proposal(sign(pp, key), msg.batch)
    if isinstance(msg, Prepare | Commit):
        return sign(dataclasses.replace(msg, digest=_bogus(msg.digest), signature=b""), key)
    if isinstance(msg, Reply):
        return sign(dataclasses.replace(msg, result="bogus", signature=b""), key)
    return msg


def _other(msg: Any, replica: Replica) -> Any:
    """What an equivocating replica tells the odd-numbered half of its peers."""
    key = replica.keypair
    if isinstance(msg, Proposal):
        batch = msg.batch[:-1] if msg.batch else msg.batch
        pp = dataclasses.replace(msg.preprepare, digest=batch_digest(batch), signature=b"")
        if not msg.batch:  # a null batch: claim a different timestamp instead
            pp = dataclasses.replace(pp, timestamp=pp.timestamp + 1.0)
        return Proposal(sign(pp, key), batch)
    if isinstance(msg, Prepare | Commit):
        return sign(dataclasses.replace(msg, digest=_bogus(msg.digest), signature=b""), key)
    return msg


def _forge(msg: Any, index: int) -> Any:
    if isinstance(msg, Proposal):
        return Proposal(_forged(msg.preprepare, index), msg.batch)
    if isinstance(msg, Transaction) or not hasattr(msg, "signature"):
        return msg  # a client's request is the client's to sign; wrappers carry no signature
    return _forged(msg, index)


def corrupt(actions: list[Action], replica: Replica) -> list[Action]:
    """Rewrite ``actions`` by ``replica``'s switches; honest replicas' pass unchanged."""
    byz = replica.config.byzantine
    if byz.honest or not (byz.silent or byz.forge or byz.equivocate or byz.wrong_digest):
        return actions
    out: list[Action] = []
    for action in actions:
        if isinstance(action, SendTo | BroadcastAll | ReplyTo):
            if byz.silent:
                continue
            msg = action.reply if isinstance(action, ReplyTo) else action.msg
            if byz.wrong_digest:
                msg = _wrong(msg, replica)
            if byz.forge:
                msg = _forge(msg, replica.index)
            if isinstance(action, ReplyTo):
                out.append(ReplyTo(action.client, msg))
            elif byz.equivocate and isinstance(action, BroadcastAll) and isinstance(
                msg, Proposal | Prepare | Commit
            ):
                other = _other(msg, replica)
                for j in range(replica.n):
                    if j != replica.index:
                        out.append(SendTo(j, msg if j % 2 == 0 else other))
            else:
                out.append(dataclasses.replace(action, msg=msg))
        else:
            out.append(action)
    return out
