"""μDFL RandShare on PVSS: qualified set, reveals, output, fallback (randshare.py)."""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from fedledger.codec import decode, encode
from fedledger.crypto import pvss
from fedledger.protocols.mudfl import randshare as rs
from fedledger.protocols.mudfl.dynasty import fallback_seed

D = 3
PREV = b"p" * 32
CP = b"c" * 32


def _committee(n: int):
    keys = [rs.member_key(7, f"client-{i}") for i in range(n)]
    members = [rs.Member(bytes([i + 1]) * 20, k.public) for i, k in enumerate(keys)]
    return keys, members


def _deals(members, seeds=None):
    return [
        rs.deal(D, m.address, (seeds or {}).get(m.address, b"secret" + m.address), members)
        for m in members
    ]


def _reveals(keys, members, qualified, skip=()):
    out = []
    for j, (k, m) in enumerate(zip(keys, members, strict=True), start=1):
        if m.address not in skip:
            out += rs.reveal(D, k, m.address, j, qualified)
    return out


def _run(keys, members, deals, skip=()):
    qualified, _ = rs.qualify(D, members, deals)
    reveals = _reveals(keys, members, list(qualified.values()), skip)
    return rs.finish(D, members, deals, reveals, PREV, CP)


def test_thresholds() -> None:
    assert [(rs.fault_bound(n), rs.threshold(n)) for n in (4, 7, 20)] == [(1, 2), (2, 3), (6, 7)]


def test_honest_run_gives_an_unflagged_seed_every_node_recomputes() -> None:
    keys, members = _committee(4)
    deals = _deals(members)
    result = _run(keys, members, deals)
    assert not result.fallback and result.excluded == ()
    assert result.qualified == tuple(m.address for m in members)
    assert len(result.seed) == 32 and result.seed != fallback_seed(PREV, CP)
    # a node that only reads the chain (records decoded from their wire form) agrees
    qualified, _ = rs.qualify(D, members, deals)
    reveals = _reveals(keys, members, list(qualified.values()))
    on_chain_deals = [decode(encode(d)) for d in deals]
    on_chain_reveals = [decode(encode(r)) for r in reveals]
    assert on_chain_deals == deals
    again = rs.finish(D, members, on_chain_deals, on_chain_reveals, PREV, CP)
    assert again == result


def test_withheld_reveals_of_f_members_still_recover_the_same_seed() -> None:
    keys, members = _committee(7)  # f = 2
    deals = _deals(members)
    full = _run(keys, members, deals)
    withheld = _run(keys, members, deals, skip={members[0].address, members[5].address})
    assert not withheld.fallback and withheld.seed == full.seed


def test_f_colluders_cannot_change_or_predict_the_output() -> None:
    keys, members = _committee(7)  # f = 2
    colluders = {members[1].address, members[4].address}
    honest_seeds = {m.address: b"other" + m.address for m in members if m.address not in colluders}
    base = _run(keys, members, _deals(members))
    # the honest members' secrets change, the colluders' stay: the output changes too,
    # so what the colluders dealt does not fix it
    changed = _run(keys, members, _deals(members, honest_seeds))
    assert changed.seed != base.seed
    # the colluders' f shares of an honest secret fall short of the threshold t = f + 1
    qualified, _ = rs.qualify(D, members, _deals(members))
    honest_deal = qualified[members[0].address]
    shares = [
        r for r in _reveals(keys, members, [honest_deal]) if r.member in colluders
    ]
    assert len(shares) == rs.threshold(7) - 1
    _, secret = pvss.deal(
        b"secret" + members[0].address,
        [m.public_key for m in members],
        rs.threshold(7),
        rs.context(D, members[0].address),
    )
    guess = pvss.recover({r.index: r.share for r in shares}, len(shares))
    assert guess != secret


def test_bad_transcript_is_excluded_with_evidence() -> None:
    keys, members = _committee(4)
    deals = _deals(members)
    bad_proofs = (deals[2].proofs[1], deals[2].proofs[0], *deals[2].proofs[2:])
    deals[2] = dataclasses.replace(deals[2], proofs=bad_proofs)
    result = _run(keys, members, deals)
    assert not result.fallback  # 3 = 2f + 1 still qualify
    assert members[2].address not in result.qualified
    (ev,) = result.excluded
    assert ev.offender == members[2].address and ev.phase == "deal"
    assert "encrypted share 1: the DLEQ proof does not verify" in ev.reason


def test_second_dealing_and_outsider_are_excluded() -> None:
    _, members = _committee(4)
    deals = _deals(members)
    twin = rs.deal(D, members[0].address, b"twin", members)
    outsider = rs.deal(D, b"\xee" * 20, b"x", members)
    qualified, excluded = rs.qualify(D, members, [*deals, twin, outsider])
    assert members[0].address not in qualified and len(qualified) == 3
    assert {(e.offender, e.reason) for e in excluded} == {
        (members[0].address, "second dealing"),
        (b"\xee" * 20, "dealer not in committee"),
    }


def test_bad_reveal_is_excluded_and_the_rest_recover() -> None:
    keys, members = _committee(4)
    deals = _deals(members)
    full = _run(keys, members, deals)
    qualified, _ = rs.qualify(D, members, deals)
    reveals = _reveals(keys, members, list(qualified.values()))
    reveals[0] = dataclasses.replace(reveals[0], share=reveals[1].share)
    result = rs.finish(D, members, deals, reveals, PREV, CP)
    assert result.seed == full.seed and not result.fallback
    (ev,) = result.excluded
    assert ev.phase == "reveal" and ev.offender == members[0].address
    assert "decrypted share 1" in ev.reason


def test_fewer_than_2f_plus_1_dealings_give_the_flagged_fallback() -> None:
    keys, members = _committee(4)
    deals = _deals(members)[:2]  # 2 < 2f + 1 = 3
    result = _run(keys, members, deals)
    assert result.fallback and result.seed == fallback_seed(PREV, CP)


def test_too_few_reveals_give_the_flagged_fallback() -> None:
    keys, members = _committee(4)  # t = 2
    deals = _deals(members)
    result = _run(keys, members, deals, skip={m.address for m in members[1:]})
    assert result.fallback and result.seed == fallback_seed(PREV, CP)


_K4_KEYS, _K4_MEMBERS = _committee(4)  # f = 1, t = 2
_K4_DEALS = _deals(_K4_MEMBERS)
_K4_QUALIFIED = list(rs.qualify(D, _K4_MEMBERS, _K4_DEALS)[0].values())
_K4_REVEALS = _reveals(_K4_KEYS, _K4_MEMBERS, _K4_QUALIFIED)
_K4_SEED = rs.finish(D, _K4_MEMBERS, _K4_DEALS, _K4_REVEALS, PREV, CP).seed


@settings(max_examples=25, deadline=None)
@given(
    st.integers(0, 3),
    st.sampled_from(["withhold", "garble", "reorder", "duplicate"]),
    st.randoms(use_true_random=False),
)
def test_once_the_qualified_set_is_fixed_f_colluders_cannot_change_the_seed(who, how, rnd):
    """Any f = 1 member of K = 4 withholds, garbles, reorders or repeats its reveals: the
    seed is the honest one, unflagged, and a garbled reveal is excluded with evidence."""
    colluder = _K4_MEMBERS[who].address
    own = [r for r in _K4_REVEALS if r.member == colluder]
    rest = [r for r in _K4_REVEALS if r.member != colluder]
    if how == "withhold":
        mine = []
    elif how == "garble":
        mine = [dataclasses.replace(r, share=rest[0].share) for r in own]
    elif how == "reorder":
        mine = list(own)
        rnd.shuffle(mine)
    else:
        mine = own + own
    reveals = rest + mine
    rnd.shuffle(reveals)
    result = rs.finish(D, _K4_MEMBERS, _K4_DEALS, reveals, PREV, CP)
    assert result.seed == _K4_SEED and not result.fallback
    if how == "garble":
        assert {e.offender for e in result.excluded} == {colluder}
