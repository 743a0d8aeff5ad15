"""A sans-IO PBFT client: sends signed requests, accepts a result on f+1 matching replies.

One request is outstanding at a time (as in the paper). The request goes to the replica
the client believes is primary (the highest view seen in a reply, mod n); if no result
arrives within ``retry`` seconds it is broadcast to every replica, again each ``retry``,
and backups forward it to their primary (and time it, so a faulty primary is replaced).
A result is accepted when f+1 distinct replicas sent valid signed replies with the same
nonce and result: at least one of them is honest.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from fedledger.consensus.pbft.actions import BroadcastAll, CancelTimer, SendTo, SetTimer
from fedledger.consensus.pbft.checks import Checker, Drop
from fedledger.consensus.pbft.messages import Reply
from fedledger.crypto.keys import KeyPair, PublicKey
from fedledger.errors import ConfigError
from fedledger.ledger.records import Transaction, sign

ClientAction = SendTo | BroadcastAll | SetTimer | CancelTimer


class Client:
    """One client of a PBFT instance; ``results`` maps each accepted nonce to its result."""

    def __init__(self, keypair: KeyPair, members: Sequence[PublicKey], retry: float = 1.0,
                 ) -> None:
        if not retry > 0:
            raise ConfigError("pbft.client.retry", f"must be > 0 seconds, got {retry!r}")
        self.keypair = keypair
        self.address = keypair.address
        self.check = Checker(tuple(members), {})
        self.n, self.f = self.check.n, self.check.f
        self.retry = retry
        self.view = 0
        self.nonce = 0
        self.outstanding: Transaction | None = None
        self.sent_at = 0.0
        self.replies: dict[int, Reply] = {}
        self.results: dict[int, Any] = {}
        self.latency: dict[int, float] = {}
        self.drops: Counter[str] = Counter()

    @property
    def busy(self) -> bool:
        return self.outstanding is not None

    def request(self, time: float, kind: str, payload: Any) -> list[ClientAction]:
        """Sign and send a new request (the previous one must have its result)."""
        if self.outstanding is not None:
            raise ConfigError("pbft.client", f"request {self.nonce} is still outstanding")
        self.nonce += 1
        tx = sign(Transaction(self.address, time, kind, payload, self.nonce), self.keypair)
        self.outstanding, self.sent_at, self.replies = tx, time, {}
        return [SendTo(self.view % self.n, tx), SetTimer("retry", self.retry)]

    def on_timer(self, time: float, key: str) -> list[ClientAction]:
        if key != "retry" or self.outstanding is None:
            return []
        return [BroadcastAll(self.outstanding), SetTimer("retry", self.retry)]

    def on_reply(self, time: float, reply: Any) -> list[ClientAction]:
        """A reply from a replica; the result is accepted with f+1 matching ones."""
        try:
            if not isinstance(reply, Reply):
                raise Drop("malformed", f"expected a Reply, got {type(reply).__name__}")
            sender = self.check.member(reply)
            tx = self.outstanding
            if tx is None or reply.client != self.address or reply.nonce != tx.nonce:
                raise Drop("stale", f"reply for nonce {reply.nonce}")
        except Drop as drop:
            self.drops[drop.reason] += 1
            return []
        self.replies[sender] = reply
        votes = Counter(_key(r.result) for r in self.replies.values())
        key, count = votes.most_common(1)[0]
        if count < self.f + 1:
            return []
        self.results[tx.nonce] = next(r.result for r in self.replies.values()
                                      if _key(r.result) == key)
        self.latency[tx.nonce] = time - self.sent_at
        self.view = max(self.view, max(r.view for r in self.replies.values()))
        self.outstanding = None
        return [CancelTimer("retry")]


def _key(result: Any) -> str:
    return repr(result)
