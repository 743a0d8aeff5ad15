"""A bad PVSS transcript as slashing evidence (the ``bad_pvss`` fault).

A committee member that deals a RandShare transcript failing public verification (an
encrypted share inconsistent with the commitments, a broken DLEQ proof, wrong sizes) is
excluded from the qualified set by :func:`randshare.qualify` on every node. Besides, an
honest member records :class:`PvssEvidence` on chain: the dealer's own signed deal
transaction. Anyone re-checks it (:func:`evidence_problem`) from the dealer's signature,
the committee of the dealer's dynasty and its registered PVSS keys alone; the dealer
then loses ``credit_penalty`` (one per dealing, however many members report it) and its
deposit at the settlement of that dynasty (or late, :mod:`settlement`).

Pure functions and records only; the node's side is in :mod:`faults_step`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from fedledger.codec import record
from fedledger.crypto import pvss
from fedledger.ledger.records import Transaction
from fedledger.ledger.verify import Rejected, Verifier
from fedledger.protocols.mudfl import randshare as rs

PVSS_TX = "mudfl.slash.pvss"
BAD_PVSS = "bad_pvss"

#: dynasty number -> its committee (in committee order) with their PVSS keys, or None
MembersLookup = Callable[[int], Sequence[rs.Member] | None]


@record("mudfl.PvssEvidence")
@dataclass(frozen=True)
class PvssEvidence:
    """``deal``: the dealer's signed RandShare deal transaction whose transcript does
    not verify against the committee keys of the dealer's dynasty."""

    deal: Transaction

    @property
    def offender(self) -> bytes:
        return self.deal.sender

    @property
    def number(self) -> int:
        """The dynasty whose seed the deal was for (-1 if the payload is no deal)."""
        payload = self.deal.payload
        return payload.dynasty if isinstance(payload, rs.RandShareDeal) else -1

    @property
    def dynasty(self) -> int:
        """The dynasty the offence was committed in: the committee running RandShare."""
        return self.number - 1 if self.number >= 1 else -1

    @property
    def key(self) -> tuple[str, bytes, int]:
        """One offence: (kind, offender, dynasty of the seed)."""
        return (BAD_PVSS, self.offender, self.number)


def transcript_problem(deal: rs.RandShareDeal, members: Sequence[rs.Member]) -> str | None:
    """Why ``deal`` fails public verification against ``members``, or None if valid."""
    keys = [m.public_key for m in members]
    try:
        pvss.verify_dealing(
            deal.dealing, keys, rs.threshold(len(members)), rs.context(deal.dynasty, deal.dealer)
        )
    except (pvss.PvssError, ValueError, TypeError) as err:
        return str(err)
    return None


def evidence_problem(verifier: Verifier, ev: PvssEvidence, members: MembersLookup) -> str | None:
    """Why ``ev`` does not prove a bad transcript, or None if it does."""
    tx = ev.deal
    try:
        verifier.check(tx)
    except Rejected as err:
        return f"deal signature refused: {err}"
    deal = tx.payload
    if tx.kind != rs.DEAL_TX or not isinstance(deal, rs.RandShareDeal):
        return f"evidence holds a {tx.kind!r} transaction, not a RandShare deal"
    if deal.dealer != tx.sender:
        return "the deal is not signed by its dealer"
    committee = members(ev.dynasty) if ev.dynasty >= 0 else None
    if committee is None:
        return f"dynasty {ev.dynasty} (of the deal for {deal.dynasty}) is not known here"
    if deal.dealer not in {m.address for m in committee}:
        return f"the dealer is not a member of dynasty {ev.dynasty}"
    if transcript_problem(deal, committee) is None:
        return "the transcript verifies"
    return None


def garble(deal: rs.RandShareDeal) -> rs.RandShareDeal:
    """The ``bad_pvss`` fault's transcript: encrypted share 1 replaced by share 2 (valid
    points, so only the DLEQ proof of share 1 fails)."""
    enc = deal.encrypted
    if len(enc) < 2:
        raise ValueError(f"a committee of {len(enc)} member(s): nothing to garble")
    return replace(deal, encrypted=(enc[1], *enc[1:]))
