"""Which unauthenticated connections a node keeps while their handshakes run.

At most ``limit`` handshakes run at once, at most ``per_source`` of them from one source
(an IPv4 address, or an IPv6 /64). A new connection that finds its source full closes one
of that source's handshakes; one that finds the node full closes one of the source
holding the most. The one closed is the oldest that has not yet sent a Hello naming a
member key, else the oldest. So idle, slow or flooding clients cannot hold every slot: a
member's handshake, a few round trips long, always gets one and keeps it. (The absolute
handshake deadline is the handshake's own, see ``handshake``.)
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
from collections import Counter
from dataclasses import dataclass


def source_of(host: str) -> str:
    """The source a connection is counted under: its IPv4 address, or the /64 network of
    an IPv6 one (a single host often holds a whole /64)."""
    try:
        ip = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


@dataclass
class Pending:
    """A connection still in its handshake."""

    arrival: int
    address: str
    writer: asyncio.StreamWriter
    member_hello: bool = False  # its Hello named a member key (public: not yet proven)
    evicted: bool = False


class Admission:
    """The handshakes in progress of one listener, oldest first."""

    def __init__(self, limit: int, per_source: int) -> None:
        if limit < 1 or per_source < 1:
            raise ValueError(f"handshake limits must be >= 1, got {limit} and {per_source}")
        self.limit = limit
        self.per_source = per_source
        self._pending: dict[int, Pending] = {}
        self._arrivals = itertools.count()

    def by_source(self) -> dict[str, int]:
        return dict(Counter(p.address for p in self._pending.values()))

    def make_room(self, address: str) -> Pending | None:
        """The handshake to close (marked evicted) so that one more from ``address``
        fits, or None when it fits already; the caller closes its connection."""
        by_address = Counter(p.address for p in self._pending.values())
        if by_address[address] >= self.per_source:
            victim = min(
                (p for p in self._pending.values() if p.address == address),
                key=lambda p: (p.member_hello, p.arrival),
            )
        elif len(self._pending) >= self.limit:
            victim = min(
                self._pending.values(),
                key=lambda p: (p.member_hello, -by_address[p.address], p.arrival),
            )
        else:
            return None
        victim.evicted = True
        return victim

    def add(self, address: str, writer: asyncio.StreamWriter) -> Pending:
        slot = next(self._arrivals)
        pending = self._pending[slot] = Pending(slot, address, writer)
        return pending

    def remove(self, pending: Pending) -> None:
        self._pending.pop(pending.arrival, None)
