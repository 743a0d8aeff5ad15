"""μDFL dynasty change: the dynasty record, its verification, the takeover rule."""

from __future__ import annotations

import dataclasses

import pytest

from fedledger.codec import decode, encode
from fedledger.crypto.vrf import derive_vrf_key
from fedledger.protocols.mudfl import dynasty as dy

CLIENTS = [f"c{i:03d}" for i in range(8)]
CREDITS = {c: 1000 + 100 * (i % 3) for i, c in enumerate(CLIENTS)}
KEYS = {c: derive_vrf_key(5, c).public for c in CLIENTS}
SEED = b"s" * 32


def _record() -> dy.DynastyRecord:
    tickets = dy.derived_tickets(1, SEED, CLIENTS, 5)
    return dy.propose_record(1, SEED, False, CREDITS, 4, tickets, KEYS)


def test_record_matches_draw_and_round_trips() -> None:
    rec = _record()
    assert rec.committee == dy.draw(1, SEED, CLIENTS, CREDITS, 4, 5).committee
    assert len(rec.committee) == 4 and decode(encode(rec)) == rec
    dyn = dy.verify_record(decode(encode(rec)), 1, SEED, CREDITS, 4, KEYS)
    assert dyn.number == 1 and dyn.committee == rec.committee and dyn.credit_of("c001") == 1100


def test_new_seed_changes_committee_order() -> None:
    seeds = [bytes([i]) * 32 for i in range(6)]
    committees = {dy.draw(1, s, CLIENTS, CREDITS, 4, 5).committee for s in seeds}
    assert len(committees) > 1


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (dict(number=2), "dynasty record 2, expected 1"),
        (dict(seed=b"x" * 32), "seed"),
        (dict(credits=(("c000", 1500),)), "credit table"),
        (dict(committee=tuple(reversed(CLIENTS[:4]))), "is not the drawn"),
    ],
)
def test_tampered_record_is_refused(change: dict, match: str) -> None:
    rec = dataclasses.replace(_record(), **change)
    with pytest.raises(ValueError, match=match):
        dy.verify_record(rec, 1, SEED, CREDITS, 4, KEYS)


def test_forged_vrf_ticket_is_refused() -> None:
    rec = _record()
    forged = ((rec.tickets[0][0], rec.tickets[1][1]), *rec.tickets[1:])
    with pytest.raises(ValueError, match=f"VRF ticket of {rec.tickets[0][0]} refused"):
        dy.verify_record(dataclasses.replace(rec, tickets=forged), 1, SEED, CREDITS, 4, KEYS)


def test_switch_height_and_takeover_only_after_finality() -> None:
    assert dy.switch_height(1, 3, 10) == 30 and dy.switch_height(2, 3, 10) == 60
    assert not dy.takes_over(30, 27)
    assert dy.takes_over(30, 30) and dy.takes_over(30, 33)
    with pytest.raises(ValueError, match="need >= 1"):
        dy.switch_height(0, 3, 10)


def test_a_ticket_proved_with_an_unregistered_key_is_refused() -> None:
    """A record whose ticket of c000 was proved with a key other than the registered one
    is refused, and a proposer leaves such a ticket out of its record."""
    rec = _record()
    stranger = derive_vrf_key(99, "c000")  # not c000's registered key
    bad = dy.own_ticket(stranger, SEED, 1)
    tickets = ((rec.tickets[0][0], bad), *rec.tickets[1:])
    with pytest.raises(ValueError, match="VRF ticket of c000 refused"):
        dy.verify_record(dataclasses.replace(rec, tickets=tickets), 1, SEED, CREDITS, 4, KEYS)
    held = {**dy.derived_tickets(1, SEED, CLIENTS, 5), "c000": bad}
    left_out = dy.propose_record(1, SEED, False, CREDITS, 4, held, KEYS)
    assert "c000" not in dict(left_out.tickets) and "c000" not in left_out.committee
    assert dy.verify_record(left_out, 1, SEED, CREDITS, 4, KEYS).committee == left_out.committee


def test_a_record_drawn_from_the_tickets_received() -> None:
    """Missing tickets: the committee is drawn from those present; fewer than K: all
    serve; none: refused."""
    tickets = dy.derived_tickets(1, SEED, CLIENTS, 5)
    few = {c: tickets[c] for c in CLIENTS[:3]}
    rec = dy.propose_record(1, SEED, False, CREDITS, 4, few, KEYS)
    assert set(rec.committee) == set(CLIENTS[:3])
    assert dy.verify_record(rec, 1, SEED, CREDITS, 4, KEYS).committee == rec.committee
    with pytest.raises(ValueError, match="no VRF ticket"):
        dy.verify_record(
            dataclasses.replace(rec, tickets=(), committee=()), 1, SEED, CREDITS, 4, KEYS
        )


def test_d_init_is_fixed_by_the_genesis() -> None:
    a = dy.d_init(b"g" * 32, CLIENTS, CREDITS, 4)
    assert a == dy.d_init(b"g" * 32, list(reversed(CLIENTS)), CREDITS, 4)
    assert a.number == 0 and len(a.committee) == 4 and set(a.committee) <= set(CLIENTS)
    others = {dy.d_init(bytes([i]) * 32, CLIENTS, CREDITS, 4).committee for i in range(8)}
    assert len(others) > 1
