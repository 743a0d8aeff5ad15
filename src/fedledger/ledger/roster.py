"""Committees fixed at genesis: the genesis block's ``Genesis.extra`` for a protocol that
declares any (``Protocol.committees``), e.g. the PBFT replicas of ``pbft-ledger``.

Each committee is a name and its members' addresses in the committee's own order (a PBFT
replica's index is its place here). The addresses are the founding members' (the
genesis block lists their keys), so ``fedledger chain verify`` can check a commit
certificate against exactly the keys the network started with. A genesis without
committees keeps ``extra = None``, so other protocols' genesis blocks are unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

from fedledger.codec import record
from fedledger.ledger.records import Block, Genesis, RecordError


@record("ledger.Committee")
@dataclass(frozen=True)
class Committee:
    """One named committee: its members' addresses in order."""

    name: str
    members: tuple[bytes, ...]

    def __post_init__(self) -> None:
        if not self.name:
            raise RecordError("Committee.name must not be empty")
        if not self.members or len(set(self.members)) != len(self.members):
            raise RecordError(f"committee {self.name!r} needs distinct members, got none or twice")
        for address in self.members:
            if not isinstance(address, bytes) or len(address) != 32:
                raise RecordError(f"committee {self.name!r}: a member address is not 32 bytes")


@record("ledger.Roster")
@dataclass(frozen=True)
class Roster:
    """The committees a genesis fixes, by name (sorted)."""

    committees: tuple[Committee, ...]

    def __post_init__(self) -> None:
        names = [c.name for c in self.committees]
        if names != sorted(set(names)):
            raise RecordError(f"Roster committees must have distinct sorted names, got {names}")

    def committee(self, name: str) -> tuple[bytes, ...] | None:
        for c in self.committees:
            if c.name == name:
                return c.members
        return None


def roster_of(genesis: Block) -> Roster | None:
    """The committees the genesis block fixes, or None when it fixes none."""
    extra = genesis.header.extra
    if isinstance(extra, Genesis) and isinstance(extra.extra, Roster):
        return extra.extra
    return None
