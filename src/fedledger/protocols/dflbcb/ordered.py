"""What the committee's PBFT ordered, per (iteration, stage), and each stage's result.

Every committee member feeds the requests its PBFT replica executes, in sequence order,
into an :class:`OrderedLog`; the result of a stage is computed over the stage's requests
with sequence number <= ``cut`` (the End rule of ``shared/specs/dflbcb.md`` section 7),
so every honest member computes the same result, and so the same hash, for the same cut.
Requests are the participants' own secp256k1-signed requests (checked here against the
contract's digest; the contract checks them again), first one per node kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fedledger.contracts import eth
from fedledger.contracts.eth import EcdsaSig, SignedRequest

CAND, PLEDGE, SUB, ALIVE, END = "cand", "pledge", "sub", "alive", "end"
KINDS = (CAND, PLEDGE, SUB, ALIVE, END)
STAGE_OF = {CAND: 0, PLEDGE: 1, SUB: 2, ALIVE: 3}


@dataclass(frozen=True)
class Entry:
    seq: int
    node: str  # Ethereum address (checksummed)
    request: SignedRequest | None  # None for ALIVE


def request_payload(it: int, stage: int, req: SignedRequest) -> tuple:
    return (it, stage, eth.checksum(req.node), req.value.to_bytes(32, "big"),
            req.sig.v, req.sig.r, req.sig.s)


def parse_request(payload: object) -> tuple[int, int, SignedRequest]:
    """(it, stage, request) of a candidacy, pledge or submission payload; ValueError if
    it is not one."""
    if not isinstance(payload, tuple) or len(payload) != 7:
        raise ValueError("request payload: a 7-tuple")
    it, stage, node, value, v, r, s = payload
    if not (isinstance(it, int) and isinstance(stage, int) and isinstance(node, str)
            and isinstance(value, bytes) and len(value) == 32 and isinstance(v, int)
            and isinstance(r, bytes) and isinstance(s, bytes)):
        raise ValueError("request payload: field types")
    req = SignedRequest(eth.checksum(node), int.from_bytes(value, "big"), EcdsaSig(v, r, s))
    return it, stage, req


@dataclass
class OrderedLog:
    """The ordered requests of one committee member, for one contract deployment."""

    chain_id: int
    contract: str
    entries: dict[tuple[int, int], list[Entry]] = field(default_factory=dict)

    def valid(self, it: int, stage: int, req: SignedRequest) -> bool:
        digest = eth.request_digest(self.chain_id, self.contract, it, stage, req.value, req.node)
        return eth.recover(digest, req.sig) == eth.checksum(req.node)

    def add(self, seq: int, it: int, stage: int, node: str, req: SignedRequest | None) -> bool:
        """Records a request executed at ``seq``; False (ignored) when it is invalid or a
        repeat of the node's request in this stage."""
        if req is not None and not self.valid(it, stage, req):
            return False
        rows = self.entries.setdefault((it, stage), [])
        if any(e.node == node for e in rows):
            return False
        rows.append(Entry(seq, eth.checksum(node), req))
        return True

    def upto(self, it: int, stage: int, cut: int) -> list[Entry]:
        return [e for e in self.entries.get((it, stage), []) if e.seq <= cut]

    def requests(self, it: int, stage: int, cut: int) -> list[SignedRequest]:
        return [e.request for e in self.upto(it, stage, cut) if e.request is not None]

    def forget_before(self, it: int) -> None:
        for key in [k for k in self.entries if k[0] < it]:
            del self.entries[key]
