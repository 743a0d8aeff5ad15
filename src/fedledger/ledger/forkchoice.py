"""Fork choice: which leaf of the block tree is the head.

A fork choice is any callable ``ForkChoice(tree: BlockTreeView) -> bytes`` returning the
hash of the new head; a protocol passes one to :class:`~fedledger.ledger.store.ChainStore`
(there is no registry: the protocol that needs stake- or credit-weighted chains builds
its own with :func:`heaviest_chain`). The store shows a fork choice only the part of the
tree that descends from the last finalized block (``tree.root``), and refuses a head
outside it (see ``ChainStore``), so a fork choice never has to know about finality.

Every rule here is deterministic: ties are broken by the smaller block hash, so all
nodes holding the same tree pick the same head.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from fedledger.ledger.records import Block, short


@dataclass(frozen=True)
class Tip:
    """A block the fork choice can pick, by hash and height."""

    hash: bytes
    height: int


class BlockTreeView(Protocol):
    """The live part of a node's block tree, as a fork choice sees it."""

    @property
    def root(self) -> Tip:
        """The last finalized block (genesis without a finality rule); every tip descends
        from it and the head must too."""
        ...

    def tips(self) -> Sequence[Tip]:
        """The leaves that descend from ``root`` (``root`` itself when it has none)."""
        ...

    def get(self, block_hash: bytes) -> Block | None:
        """A stored block by hash."""
        ...


ForkChoice = Callable[[BlockTreeView], bytes]


def longest_chain(tree: BlockTreeView) -> bytes:
    """The highest tip; among equally high tips, the one with the smaller hash."""
    tips = tree.tips()
    if not tips:
        return tree.root.hash
    return min(tips, key=lambda t: (-t.height, t.hash)).hash


def heaviest_chain(weight: Callable[[Block], float], cache_size: int = 65536) -> ForkChoice:
    """The tip whose chain has the largest total ``weight`` (e.g. the proposer's stake or
    credit as the protocol records it), counted from the last finalized block (blocks
    before it are common to every candidate). Ties: the higher tip, then the smaller hash.

    ``weight`` must be a pure function of the block, returning a finite number >= 0
    (so a tip always weighs at least as much as its ancestors); the sums are cached by
    block hash, for up to ``cache_size`` blocks.
    """
    if cache_size < 1:
        raise ValueError(f"cache_size must be >= 1, got {cache_size}")
    sums: OrderedDict[tuple[bytes, bytes], float] = OrderedDict()

    def total(tree: BlockTreeView, tip: Tip) -> float:
        root = tree.root.hash
        path: list[tuple[bytes, Block]] = []
        cur = tip.hash
        base = 0.0
        while cur != root:
            cached = sums.get((root, cur))
            if cached is not None:
                sums.move_to_end((root, cur))
                base = cached
                break
            block = tree.get(cur)
            if block is None:
                raise ValueError(f"block {short(cur)} below tip {short(tip.hash)} is unknown")
            path.append((cur, block))
            cur = block.parent
        for block_hash, block in reversed(path):
            w = weight(block)
            if not (w >= 0 and w != float("inf")):
                raise ValueError(
                    f"weight of block {short(block_hash)} at height {block.height} is {w!r}; "
                    "allowed: a finite number >= 0"
                )
            base += w
            sums[(root, block_hash)] = base
        while len(sums) > cache_size:
            sums.popitem(last=False)
        return base

    def choose(tree: BlockTreeView) -> bytes:
        tips = tree.tips()
        if not tips:
            return tree.root.hash
        return min(tips, key=lambda t: (-total(tree, t), -t.height, t.hash)).hash

    return choose
