"""Merkle trees over byte strings (RFC 6962 / RFC 9162 §2.1 shape), with inclusion proofs.

Hashing is SHA-256 with domain separation: a leaf hashes as ``H(0x00 || leaf)`` and an
inner node as ``H(0x01 || left || right)``, so no leaf can pose as an inner node (the
second-preimage trick that lets a shorter tree claim a longer tree's root).

Odd counts: a level with an odd number of nodes carries its last node up unchanged; it
is never paired with a copy of itself. (Duplicating it, as Bitcoin does, makes the lists
``[a, b, c]`` and ``[a, b, c, c]`` share one root - CVE-2012-2459.) This is exactly RFC
6962's definition: the left subtree holds the largest power of two of leaves smaller
than the count. Proofs therefore skip the levels where a node was carried.

Empty tree: the root is ``H(b"")``, SHA-256 of the empty string (RFC 6962), distinct from
every leaf hash and node hash because those always hash a prefixed input. A single
leaf's root is its leaf hash.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from fedledger.codec import record

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(LEAF_PREFIX + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


@record("ledger.MerkleProof")
@dataclass(frozen=True)
class MerkleProof:
    """Inclusion proof of leaf ``index`` in a tree of ``size`` leaves.

    siblings: the audit path, from the leaf's level up to the root's children.
    """

    index: int
    size: int
    siblings: tuple[bytes, ...]


def _check_leaves(leaves: Sequence[bytes]) -> None:
    for i, leaf in enumerate(leaves):
        if not isinstance(leaf, bytes):
            raise TypeError(f"merkle leaves must be bytes; leaf {i} is {type(leaf).__name__}")


def _next_level(level: list[bytes]) -> list[bytes]:
    up = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
    if len(level) % 2:
        up.append(level[-1])
    return up


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """The root of the tree over ``leaves`` (in order); see the module doc for the rules."""
    _check_leaves(leaves)
    if not leaves:
        return EMPTY_ROOT
    level = [leaf_hash(leaf) for leaf in leaves]
    while len(level) > 1:
        level = _next_level(level)
    return level[0]


def merkle_proof(leaves: Sequence[bytes], index: int) -> MerkleProof:
    """The inclusion proof of ``leaves[index]``."""
    _check_leaves(leaves)
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(leaves):
        raise IndexError(f"leaf index must be in [0, {len(leaves)}), got {index!r}")
    level = [leaf_hash(leaf) for leaf in leaves]
    siblings = []
    pos = index
    while len(level) > 1:
        sibling = pos ^ 1
        if sibling < len(level):
            siblings.append(level[sibling])
        level = _next_level(level)
        pos //= 2
    return MerkleProof(index, len(leaves), tuple(siblings))


def verify_proof(root: bytes, leaf: bytes, proof: MerkleProof) -> bool:
    """True if ``proof`` shows ``leaf`` at ``proof.index`` under ``root``; never raises.

    The algorithm of RFC 9162 §2.1.3.2: it uses the index and the tree size to know, at
    each step, whether the sibling is on the left or the right and which levels the
    node was carried through, so a proof for one index does not pass for another.
    As in RFC 6962, the root does not commit to the leaf count: the verifier must take
    ``proof.size`` from a trusted source (a block's transaction count), because a proof
    can also fit a larger claimed size whose extra right-hand subtree it never visits.
    """
    if not (
        isinstance(root, bytes)
        and isinstance(leaf, bytes)
        and isinstance(proof, MerkleProof)
        and type(proof.index) is int
        and type(proof.size) is int
        and isinstance(proof.siblings, tuple)
        and all(isinstance(s, bytes) and len(s) == 32 for s in proof.siblings)
    ):
        return False
    if not 0 <= proof.index < proof.size:
        return False
    fn = proof.index
    sn = proof.size - 1
    node = leaf_hash(leaf)
    for sibling in proof.siblings:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            node = node_hash(sibling, node)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            node = node_hash(node, sibling)
        fn >>= 1
        sn >>= 1
    return sn == 0 and node == root
