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
    return dy.propose_record(1, SEED, False, CLIENTS, CREDITS, 4, 5)


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
