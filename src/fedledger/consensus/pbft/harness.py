"""A deterministic network for PBFT replicas and clients, in virtual time.

:class:`Network` delivers every message after a seeded random delay (so messages are
reordered), loses each with probability ``loss`` and drops those that cross a partition,
until ``heal_at``; after that the network is reliable and whole. Timers fire in virtual
time. One seed gives one schedule. It records what each replica executed, so tests can
check that honest replicas agree (safety) and that clients got their results (liveness).
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from fedledger.consensus.pbft.actions import (
    BroadcastAll,
    CancelTimer,
    Execute,
    ReplyTo,
    SendTo,
    SetTimer,
)
from fedledger.consensus.pbft.client import Client
from fedledger.consensus.pbft.config import PbftConfig
from fedledger.consensus.pbft.replica import Replica
from fedledger.crypto.keys import KeyPair, derive_seed
from fedledger.errors import ConfigError


@dataclass(frozen=True)
class Partition:
    """From ``start`` to ``end``, replicas in ``group`` and the others cannot talk."""

    start: float
    end: float
    group: frozenset[int]


@dataclass(frozen=True)
class NetConfig:
    """Link behaviour: delay uniform in [min_delay, max_delay]; loss and partitions only
    before ``heal_at``."""

    min_delay: float = 0.001
    max_delay: float = 0.02
    loss: float = 0.0
    partitions: tuple[Partition, ...] = ()
    heal_at: float = 0.0

    def __post_init__(self) -> None:
        if not 0 <= self.min_delay <= self.max_delay:
            raise ConfigError("net.delay", f"need 0 <= min_delay <= max_delay, got "
                              f"{self.min_delay}, {self.max_delay}")
        if not 0 <= self.loss < 1:
            raise ConfigError("net.loss", f"must be in [0, 1), got {self.loss}")


@dataclass
class Network:
    """Replicas ``0..n-1`` and clients, driven by one seeded event queue."""

    replicas: list[Replica]
    clients: list[Client]
    net: NetConfig = field(default_factory=NetConfig)
    seed: int = 0
    now: float = 0.0
    executed: dict[int, dict[int, Execute]] = field(default_factory=dict)
    delivered: int = 0

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._queue: list[tuple[float, int, str, Any]] = []
        self._order = itertools.count()
        self._timers: dict[tuple[str, int, str], int] = {}
        self._by_address = {c.address: i for i, c in enumerate(self.clients)}
        self._work: dict[int, list[tuple[str, Any]]] = {i: [] for i in range(len(self.clients))}
        self.executed = {i: {} for i in range(len(self.replicas))}

    # ------------------------------------------------------------ scheduling

    def _push(self, at: float, kind: str, item: Any) -> None:
        heapq.heappush(self._queue, (at, next(self._order), kind, item))

    def _cut(self, src: int, dst: int, now: float) -> bool:
        """Whether a message between replicas src and dst sent now is lost."""
        if now >= self.net.heal_at:
            return False
        if self._rng.random() < self.net.loss:
            return True
        return any(p.start <= now < p.end and ((src in p.group) != (dst in p.group))
                   for p in self.net.partitions)

    def _send(self, src: tuple[str, int], dst: tuple[str, int], msg: Any) -> None:
        src_r = src[1] if src[0] == "r" else -1
        dst_r = dst[1] if dst[0] == "r" else -1
        if self._cut(src_r, dst_r, self.now):
            return
        delay = self._rng.uniform(self.net.min_delay, self.net.max_delay)
        self._push(self.now + delay, "msg", (src, dst, msg))

    def submit(self, client: int, kind: str, payload: Any, at: float = 0.0) -> None:
        """Queue a request for ``client`` (sent once its earlier requests have results)."""
        self._work[client].append((kind, payload))
        self._push(at, "kick", client)

    # ------------------------------------------------------------ actions

    def _replica_actions(self, i: int, actions: Sequence[Any]) -> None:
        for a in actions:
            if isinstance(a, SendTo):
                self._send(("r", i), ("r", a.replica), a.msg)
            elif isinstance(a, BroadcastAll):
                for j in range(len(self.replicas)):
                    if j != i:
                        self._send(("r", i), ("r", j), a.msg)
            elif isinstance(a, ReplyTo):
                c = self._by_address.get(a.client)
                if c is not None:
                    self._send(("r", i), ("c", c), a.reply)
            elif isinstance(a, SetTimer):
                self._set_timer(("r", i), a.key, a.delay)
            elif isinstance(a, CancelTimer):
                self._timers.pop(("r", i, a.key), None)
            elif isinstance(a, Execute):
                if a.seq in self.executed[i]:
                    raise AssertionError(f"replica {i} executed seq {a.seq} twice")
                if a.seq != len(self.executed[i]) + 1:
                    raise AssertionError(f"replica {i} executed seq {a.seq} out of order")
                self.executed[i][a.seq] = a

    def _client_actions(self, c: int, actions: Sequence[Any]) -> None:
        for a in actions:
            if isinstance(a, SendTo):
                self._send(("c", c), ("r", a.replica), a.msg)
            elif isinstance(a, BroadcastAll):
                for j in range(len(self.replicas)):
                    self._send(("c", c), ("r", j), a.msg)
            elif isinstance(a, SetTimer):
                self._set_timer(("c", c), a.key, a.delay)
            elif isinstance(a, CancelTimer):
                self._timers.pop(("c", c, a.key), None)
        self._kick(c)

    def _set_timer(self, who: tuple[str, int], key: str, delay: float) -> None:
        token = next(self._order)
        self._timers[(who[0], who[1], key)] = token
        self._push(self.now + delay, "timer", (who, key, token))

    def _kick(self, c: int) -> None:
        client = self.clients[c]
        if not client.busy and self._work[c]:
            kind, payload = self._work[c].pop(0)
            self._client_actions(c, client.request(self.now, kind, payload))

    # ------------------------------------------------------------ running

    def run(self, until: float, max_events: int = 2_000_000) -> None:
        """Process events in time order up to virtual time ``until``."""
        for _ in range(max_events):
            if not self._queue or self._queue[0][0] > until:
                self.now = max(self.now, until)
                return
            at, _, kind, item = heapq.heappop(self._queue)
            self.now = at
            if kind == "kick":
                self._kick(item)
            elif kind == "timer":
                (who, key, token) = item
                if self._timers.get((who[0], who[1], key)) != token:
                    continue
                del self._timers[(who[0], who[1], key)]
                if who[0] == "r":
                    self._replica_actions(who[1], self.replicas[who[1]].on_timer(at, key))
                else:
                    self._client_actions(who[1], self.clients[who[1]].on_timer(at, key))
            else:
                (src, dst, msg) = item
                self.delivered += 1
                if dst[0] == "c":
                    self._client_actions(dst[1], self.clients[dst[1]].on_reply(at, msg))
                elif src[0] == "c":
                    self._replica_actions(dst[1], self.replicas[dst[1]].on_request(at, msg))
                else:
                    out = self.replicas[dst[1]].on_message(at, src[1], msg)
                    self._replica_actions(dst[1], out)
        raise AssertionError(f"more than {max_events} events before time {until}")

    def done(self) -> bool:
        """Every submitted request has its result."""
        return all(not c.busy and not self._work[i] for i, c in enumerate(self.clients))

    def run_until_done(self, limit: float, step: float = 0.5) -> bool:
        while self.now < limit:
            self.run(min(limit, self.now + step))
            if self.done():
                return True
        return self.done()


def build(
    n: int,
    clients: int = 1,
    seed: int = 0,
    config: PbftConfig | None = None,
    byzantine: dict[int, PbftConfig] | None = None,
    net: NetConfig | None = None,
    client_retry: float = 1.0,
) -> Network:
    """A network of ``n`` replicas (keys derived from ``seed``) and ``clients`` clients;
    ``byzantine`` gives some replicas their own config (with fault switches)."""
    keys = [KeyPair.generate(seed=derive_seed(seed, "pbft-replica", i)) for i in range(n)]
    client_keys = [KeyPair.generate(seed=derive_seed(seed, "pbft-client", i))
                   for i in range(clients)]
    members = [k.public for k in keys]
    directory = {k.address: k.public for k in client_keys}
    base = config or PbftConfig()
    special = byzantine or {}
    replicas = [Replica(i, members, keys[i], directory, special.get(i, base)) for i in range(n)]
    cls = [Client(k, members, retry=client_retry) for k in client_keys]
    return Network(replicas, cls, net or NetConfig(), seed)
