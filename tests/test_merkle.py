"""Merkle roots and inclusion proofs (RFC 6962 shape, domain-separated SHA-256)."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedledger.codec import decode, encode
from fedledger.ledger.merkle import (
    EMPTY_ROOT,
    MerkleProof,
    leaf_hash,
    merkle_proof,
    merkle_root,
    node_hash,
    verify_proof,
)

leaf_lists = st.lists(st.binary(min_size=0, max_size=40), min_size=1, max_size=40)


def reference_root(leaves: list[bytes]) -> bytes:
    """RFC 6962 §2.1 MTH, written recursively as the RFC states it."""
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(
        b"\x01" + reference_root(leaves[:k]) + reference_root(leaves[k:])
    ).digest()


def test_small_trees() -> None:
    a, b, c = b"a", b"b", b"c"
    assert merkle_root([]) == EMPTY_ROOT == hashlib.sha256(b"").digest()
    assert merkle_root([a]) == leaf_hash(a) == hashlib.sha256(b"\x00a").digest()
    assert merkle_root([a, b]) == node_hash(leaf_hash(a), leaf_hash(b))
    # odd count: c is carried up, not paired with itself
    assert merkle_root([a, b, c]) == node_hash(node_hash(leaf_hash(a), leaf_hash(b)), leaf_hash(c))
    assert merkle_root([a, b, c]) != merkle_root([a, b, c, c])


def test_leaf_cannot_pose_as_node() -> None:
    a, b = b"a", b"b"
    inner = leaf_hash(a) + leaf_hash(b)
    assert merkle_root([inner]) != merkle_root([a, b])


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=40))
def test_root_matches_rfc6962_definition(leaves: list[bytes]) -> None:
    assert merkle_root(leaves) == reference_root(leaves)


@settings(max_examples=60, deadline=None)
@given(leaf_lists)
def test_every_member_proof_verifies(leaves: list[bytes]) -> None:
    root = merkle_root(leaves)
    for i, leaf in enumerate(leaves):
        proof = merkle_proof(leaves, i)
        assert proof.index == i and proof.size == len(leaves)
        assert verify_proof(root, leaf, proof)
        assert decode(encode(proof)) == proof


@settings(max_examples=100, deadline=None)
@given(leaf_lists, st.data())
def test_changed_leaf_fails(leaves: list[bytes], data: st.DataObject) -> None:
    i = data.draw(st.integers(0, len(leaves) - 1))
    proof = merkle_proof(leaves, i)
    other = data.draw(st.binary(max_size=40).filter(lambda b: b != leaves[i]))
    assert not verify_proof(merkle_root(leaves), other, proof)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(max_size=40), min_size=2, max_size=40, unique=True), st.data())
def test_wrong_index_fails(leaves: list[bytes], data: st.DataObject) -> None:
    # unique leaves: with two equal leaves, either index is a true statement
    i = data.draw(st.integers(0, len(leaves) - 1))
    j = data.draw(st.integers(0, len(leaves) - 1).filter(lambda j: j != i))
    proof = merkle_proof(leaves, i)
    root = merkle_root(leaves)
    assert not verify_proof(root, leaves[i], dataclasses.replace(proof, index=j))
    assert verify_proof(root, leaves[j], merkle_proof(leaves, j))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(max_size=40), min_size=2, max_size=40), st.data())
def test_tampered_sibling_fails(leaves: list[bytes], data: st.DataObject) -> None:
    i = data.draw(st.integers(0, len(leaves) - 1))
    proof = merkle_proof(leaves, i)
    k = data.draw(st.integers(0, len(proof.siblings) - 1))
    bit = data.draw(st.integers(0, 255))
    sibling = bytearray(proof.siblings[k])
    sibling[bit // 8] ^= 1 << (bit % 8)
    siblings = (*proof.siblings[:k], bytes(sibling), *proof.siblings[k + 1 :])
    root = merkle_root(leaves)
    assert not verify_proof(root, leaves[i], dataclasses.replace(proof, siblings=siblings))
    assert not verify_proof(root, leaves[i], dataclasses.replace(proof, siblings=siblings[:-1]))
    extra = (*proof.siblings, proof.siblings[0])
    assert not verify_proof(root, leaves[i], dataclasses.replace(proof, siblings=extra))


def test_proof_errors_and_junk() -> None:
    leaves = [b"a", b"b", b"c"]
    with pytest.raises(IndexError, match=r"leaf index must be in \[0, 3\), got 3"):
        merkle_proof(leaves, 3)
    with pytest.raises(TypeError, match="leaf 1 is str"):
        merkle_root([b"a", "b"])  # type: ignore[list-item]
    root = merkle_root(leaves)
    proof = merkle_proof(leaves, 0)
    assert not verify_proof(root, b"a", MerkleProof(-1, 3, proof.siblings))
    assert not verify_proof(root, b"a", MerkleProof(0, 0, ()))
    assert not verify_proof(root, b"a", MerkleProof(0, 3, (b"short",)))
    assert not verify_proof(root, "a", proof)  # type: ignore[arg-type]
    assert not verify_proof(root, b"a", "proof")  # type: ignore[arg-type]
    single = merkle_proof([b"x"], 0)
    assert single.siblings == () and verify_proof(merkle_root([b"x"]), b"x", single)
