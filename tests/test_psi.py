"""Diffie-Hellman PSI: each side learns the intersection and the sizes, and nothing else."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedledger.crypto import edpoints
from fedledger.crypto.psi import (
    BlindedSet,
    PsiError,
    PsiParty,
    Reblinded,
    hash_to_group,
    run_psi,
    scalar_from_seed,
)

ids = st.sets(st.binary(min_size=0, max_size=6), max_size=12)


@settings(max_examples=25, deadline=None)
@given(ids, ids, st.binary(min_size=1, max_size=8))
def test_both_sides_learn_exactly_the_intersection(xs: set, ys: set, seed: bytes) -> None:
    ra, rb, _ = run_psi(sorted(xs), sorted(ys), seed)
    assert set(ra.intersection) == xs & ys
    assert ra.intersection == rb.intersection  # the common (aligned) order
    assert (ra.own_size, ra.other_size) == (len(xs), len(ys))
    assert (rb.own_size, rb.other_size) == (len(ys), len(xs))


def test_transcript_holds_no_id_and_no_unblinded_hash() -> None:
    xs = [f"patient-{i}" for i in range(20)]
    ys = [f"patient-{i}" for i in range(10, 40)]
    ra, _, transcript = run_psi(xs, ys, b"seed")
    assert set(ra.intersection) == {f"patient-{i}".encode() for i in range(10, 20)}
    hashes = {hash_to_group(x) for x in xs + ys}
    for _, message in transcript.messages:
        for point in message.points:
            assert point not in hashes
            assert all(x.encode() not in point for x in xs + ys)


def test_non_members_are_unlinkable_across_runs() -> None:
    # the same id blinded under two keys gives unrelated points; only the double-blinded
    # values of *common* ids coincide
    p = hash_to_group("only-in-B")
    a1, a2 = scalar_from_seed(b"1"), scalar_from_seed(b"2")
    assert edpoints.mul(a1, p) != edpoints.mul(a2, p)
    ra, _, transcript = run_psi(["x", "y"], ["y", "z"], b"s")
    reblinded_for_a = transcript.messages[3][1].points  # B's reply to A's set
    reblinded_for_b = transcript.messages[2][1].points  # A's reply to B's set
    assert len(set(reblinded_for_a) & set(reblinded_for_b)) == 1  # only "y"
    assert ra.intersection == (b"y",)


def test_hash_to_group_lands_in_the_prime_order_subgroup() -> None:
    for i in range(20):
        point = hash_to_group(str(i))
        assert point != edpoints.IDENTITY
        assert edpoints.mul(edpoints.L, point) == edpoints.IDENTITY
    assert hash_to_group("a") != hash_to_group("a", domain=b"other")


def test_malformed_messages_are_refused_with_a_reason() -> None:
    party = PsiParty(["a", "b"], scalar_from_seed(b"k"))
    with pytest.raises(PsiError, match="prime-order subgroup"):
        party.reblind(BlindedSet((edpoints.IDENTITY,)))
    with pytest.raises(PsiError, match="32-byte"):
        party.reblind(BlindedSet((b"short",)))
    good = hash_to_group("q")
    with pytest.raises(PsiError, match="repeats"):
        party.reblind(BlindedSet((good, good)))
    with pytest.raises(PsiError, match="before reblind"):
        party.finish(Reblinded(()))
    party.reblind(BlindedSet((good,)))
    with pytest.raises(PsiError, match="one point per sent point"):
        party.finish(Reblinded((good,)))
    with pytest.raises(PsiError, match="duplicate ids"):
        PsiParty(["a", "a"], 5)
    with pytest.raises(PsiError, match="outside"):
        PsiParty(["a"], 0)
