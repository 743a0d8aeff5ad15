"""μDFL settlement of late slashing evidence, as pure functions: evidence that lands in
a later dynasty's blocks than the offence's costs the deposit once, in the next
settlement, and never twice (the chain-level checks are in test_mudfl_faults.py)."""

from __future__ import annotations

import pytest

from fedledger.codec import decode, encode
from fedledger.ledger.records import Block, Transaction
from fedledger.protocols.mudfl import settlement as st
from fedledger.protocols.mudfl.faults_pvss import PVSS_TX, PvssEvidence
from fedledger.protocols.mudfl.messages import EQUIVOCATION, SLASH_TX, PocClaim, SlashEvidence
from fedledger.protocols.mudfl.randshare import DEAL_TX, RandShareDeal

ADDR = {n: bytes([i + 1]) * 32 for i, n in enumerate("abcdefg")}
NODE_OF = {a: n for n, a in ADDR.items()}
AGG = b"\xaa" * 32
DEPOSIT, FRACTION = 10.0, 0.5


def _equivocation(offender: str, dynasty: int, slot: int) -> Transaction:
    claim = PocClaim(slot, dynasty, 1000, True)
    headers = tuple(
        Block.create(b"\x00" * 32, 5, ADDR[offender], t, (), claim).header for t in (1.0, 2.0)
    )
    ev = SlashEvidence(EQUIVOCATION, ADDR[offender], headers)
    return Transaction(ADDR["g"], float(slot), SLASH_TX, ev, 0)


def _blocks(*txs: Transaction) -> list[Block]:
    return [Block.create(b"\x00" * 32, 1, ADDR["a"], 0.0, tuple(txs), None)]


def _settle(dynasty, members, blocks, prior=(), fraction=FRACTION):
    return st.settle(dynasty, members, blocks, AGG, NODE_OF, DEPOSIT, fraction, 0.0, 0.0, prior)


S0 = _settle(0, "abcd", [])  # a clean dynasty 0: a, b, c, d refunded


def test_late_evidence_is_charged_once_in_the_next_settlement():
    # c equivocated in dynasty 0; the evidence lands in dynasty 1's blocks, twice
    blocks = _blocks(_equivocation("c", 0, 3), _equivocation("c", 0, 4))
    s1 = _settle(1, "abef", blocks, [S0])
    assert isinstance(s1, st.LateSettlement)
    assert s1.late == ((0, "c", DEPOSIT * FRACTION),)
    assert s1.slashed == ()  # no member of dynasty 1 is slashed for it
    assert sorted(dict(s1.fees)) == ["a", "b", "e", "f"]  # c sits on no dynasty-1 seat
    # the same evidence again in dynasty 2's blocks: not charged a second time
    s2 = _settle(2, "abcd", _blocks(_equivocation("c", 0, 3)), [S0, s1])
    assert type(s2) is st.Settlement and st.late_charges(s2) == ()
    assert s2.slashed == ()  # dynasty 0's offence does not slash c's dynasty-2 deposit
    assert st.balances([S0, s1, s2])["c"] == -DEPOSIT * FRACTION


def test_evidence_on_time_is_not_charged_again_late():
    s0 = _settle(0, "abcd", _blocks(_equivocation("b", 0, 2)))
    assert s0.slashed == ("b",) and type(s0) is st.Settlement
    s1 = _settle(1, "abcd", _blocks(_equivocation("b", 0, 2)), [s0])
    assert type(s1) is st.Settlement and s1.slashed == ()
    assert st.balances([s0, s1])["b"] == -DEPOSIT * FRACTION


def test_late_evidence_needs_a_member_of_the_named_dynasty():
    # e was no member of dynasty 0; dynasty 5 has no settlement on chain
    blocks = _blocks(_equivocation("e", 0, 3), _equivocation("a", 5, 3))
    assert type(_settle(6, "abcd", blocks, [S0])) is st.Settlement
    assert st.late_offenders(blocks, 6, [S0], NODE_OF) == []


def test_current_dynasty_evidence_stays_on_time_and_nothing_is_charged_at_zero_fraction():
    blocks = _blocks(_equivocation("a", 1, 3), _equivocation("d", 0, 1))
    s1 = _settle(1, "abcd", blocks, [S0])
    assert s1.slashed == ("a",) and s1.late == ((0, "d", DEPOSIT * FRACTION),)
    assert type(_settle(1, "abcd", blocks, [S0], fraction=0.0)) is st.Settlement


def test_bad_pvss_evidence_names_the_running_dynasty():
    deal = RandShareDeal(2, ADDR["b"], (), (), ())  # the deal for dynasty 2's seed
    ev = PvssEvidence(Transaction(ADDR["b"], 0.0, DEAL_TX, deal, 2))
    assert ev.dynasty == 1 and ev.offender == ADDR["b"] and ev.key == ("bad_pvss", ADDR["b"], 2)
    tx = Transaction(ADDR["a"], 0.0, PVSS_TX, ev, 0)
    s1 = _settle(1, "abcd", _blocks(tx), [S0])
    assert s1.slashed == ("b",) and type(s1) is st.Settlement
    s2 = _settle(2, "cdef", _blocks(tx), [S0, s1])  # a copy one dynasty late: charged already
    assert type(s2) is st.Settlement


def test_a_late_settlement_round_trips_and_a_plain_one_keeps_its_bytes():
    s1 = _settle(1, "abef", _blocks(_equivocation("c", 0, 3)), [S0])
    again = decode(encode(s1))
    assert again == s1 and isinstance(again, st.LateSettlement)
    plain = st.Settlement(S0.dynasty, S0.fee_pool, S0.deposits, S0.fees, S0.rewards)
    assert encode(S0) == encode(plain)
    with pytest.raises(AttributeError):
        S0.late  # noqa: B018 - a plain settlement has no late table
