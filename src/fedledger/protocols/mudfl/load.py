"""The μDFL load generator and its commit meter (sans-IO, deterministic under the seed).

- :class:`LoadGen`: with ``load_tps > 0`` every client fires a timer every
  ``load_interval`` seconds; the emitters (the clients outside the current committee, or
  every client when all are validators) each send their share of ``load_tps`` as signed
  :data:`LOAD_TX` transactions, in one :class:`TxsMsg` per tick, to the committee. The
  number per tick follows the time elapsed since the last tick (a fraction is carried
  over), so a late timer does not lower the offered rate.
- :class:`LoadMeter`: a validator notes when each block became part of its chain (its own
  proposal or a verified block) and, at each slot's end, for the blocks that newly became
  its canonical chain, emits the data transactions committed and their commit latency
  (commit time - creation time) as per-slot aggregates, and when it stored the slot's
  Proof-of-Credit blocks (Fig. 4's proposal latency).
"""

from __future__ import annotations

import contextlib
import math
from typing import TYPE_CHECKING

from fedledger.ledger.records import Block, Transaction
from fedledger.protocols.base import Broadcast, Effect, EmitMetric, SetTimer
from fedledger.protocols.kit.gate import Reject
from fedledger.protocols.kit.ids import TimerKey
from fedledger.protocols.mudfl.context import CLIENT, Context
from fedledger.protocols.mudfl.messages import LOAD_TX, LoadData, PocClaim, TxsMsg
from fedledger.protocols.mudfl.params import MuDflParams

if TYPE_CHECKING:
    from fedledger.ledger.store import ChainStore
    from fedledger.protocols.mudfl.chain import Microchain

LOAD = "load"

#: metric names (declared in the protocol's MetricSpecs)
SENT = "load_sent"
COMMITTED = "load_committed"
LATENCY_SUM = "load_latency_sum"
LATENCY_P50 = "load_latency_p50"
LATENCY_P95 = "load_latency_p95"
LATENCY_MAX = "load_latency_max"
BLOCK_DELAY = "block_delay"


def load_problem(payload: LoadData, params: MuDflParams, now: float) -> str | None:
    """Why a data transaction's payload is refused, or None."""
    if len(payload.pad) > params.load_payload_bytes:
        return f"padding of {len(payload.pad)} bytes; at most {params.load_payload_bytes}"
    created = payload.created
    if not isinstance(created, float | int) or not math.isfinite(created) or created < 0:
        return f"creation time {created!r}; a finite time >= 0"
    if created > now + params.slot:
        return f"creation time {created:.3f} is after now {now:.3f} + T_delta"
    if payload.seq < 0:
        return f"sequence number {payload.seq}; >= 0"
    return None


def quantile(sorted_xs: list[float], q: float) -> float:
    """The ``q`` quantile of sorted values (nearest rank)."""
    if not sorted_xs:
        return math.nan
    rank = max(0, math.ceil(q * len(sorted_xs)) - 1)
    return sorted_xs[rank]


class LoadGen:
    """One client's load generator."""

    def __init__(self, ctx: Context, chain: Microchain, role: str) -> None:
        self.ctx, self.chain = ctx, chain
        self.on = ctx.params.load_tps > 0 and role == CLIENT
        self.carry = 0.0
        self.seq = 0
        self.last: float | None = None  # time of the previous tick
        self.sent = 0  # transactions sent since the last slot metric
        self.pad = b"\x00" * ctx.params.load_payload_bytes

    def emitters(self) -> tuple[str, ...]:
        committee = set(self.ctx.dynasty.committee)
        outside = tuple(c for c in self.ctx.clients if c not in committee)
        return outside or self.ctx.clients

    def start(self, now: float) -> list[Effect]:
        if not self.on:
            return []
        self.last = now
        return [SetTimer(str(TimerKey(LOAD, 0)), self.ctx.params.load_interval)]

    def tick(self, index: int, now: float) -> list[Effect]:
        """Timer ``load/<index>``: send this emitter's share since the last tick."""
        if not self.on:
            return []
        p, ctx = self.ctx.params, self.ctx
        effects: list[Effect] = [SetTimer(str(TimerKey(LOAD, index + 1)), p.load_interval)]
        last, self.last = self.last if self.last is not None else now, now
        emitters = self.emitters()
        if ctx.node_id not in emitters:
            self.carry = 0.0
            return effects
        self.carry += p.load_tps * max(0.0, now - last) / len(emitters)
        count = int(self.carry)
        self.carry -= count
        if count == 0:
            return effects
        txs = tuple(self._make(now) for _ in range(count))
        self.sent += count
        if ctx.in_committee:
            for tx in txs:
                with contextlib.suppress(Reject):  # counted by the gate (e.g. a full pool)
                    self.chain.add_tx(tx)
        to = tuple(n for n in ctx.dynasty.committee if n != ctx.node_id)
        effects.append(Broadcast(TxsMsg(txs), to=to))
        return effects

    def _make(self, now: float) -> Transaction:
        seq, self.seq = self.seq, self.seq + 1
        data = LoadData(float(now), seq, self.pad)
        return self.ctx.sign(Transaction(self.ctx.address, float(now), LOAD_TX, data, seq))

    def slot_metrics(self, slot: int) -> list[Effect]:
        if not self.on or slot < 0:
            return []
        sent, self.sent = self.sent, 0
        return [EmitMetric(SENT, float(sent), slot)] if sent else []


class LoadMeter:
    """A validator's record of when blocks joined its chain, and the per-slot metrics."""

    def __init__(self, params: MuDflParams, store: ChainStore) -> None:
        self.on = params.load_tps > 0
        self.params = params
        self.arrived: dict[bytes, tuple[int, float]] = {}  # block -> (height, time)
        self.delays: list[float] = []  # into-slot times of this slot's PoC blocks
        self.reported = store.head().height  # canonical heights already counted

    def on_append(self, block: Block, now: float, into_slot: float) -> None:
        if not self.on:
            return
        self.arrived.setdefault(block.hash, (block.height, now))
        claim = block.header.extra
        if isinstance(claim, PocClaim) and not claim.fallback:
            self.delays.append(into_slot)

    def slot_metrics(
        self, store: ChainStore, slot: int, now: float, emit: bool = True
    ) -> list[Effect]:
        """The data transactions of blocks that became canonical since the last call
        (metrics only if ``emit``: validators emit them)."""
        if not self.on or slot < 0:
            return []
        effects: list[Effect] = []
        if self.delays:
            effects.append(EmitMetric(BLOCK_DELAY, max(self.delays), slot))
            self.delays = []
        block = store.head()
        fresh: list[Block] = []
        while block.height > self.reported:
            fresh.append(block)
            parent = store.get(block.parent)
            if parent is None:
                break
            block = parent
        self.reported = max(self.reported, store.head().height)
        latencies = []
        for b in fresh:
            at = self.arrived.get(b.hash, (b.height, now))[1]
            latencies += [
                at - tx.payload.created
                for tx in b.transactions
                if tx.kind == LOAD_TX and isinstance(tx.payload, LoadData)
            ]
        self.arrived = {h: v for h, v in self.arrived.items() if v[0] > self.reported}
        if not latencies or not emit:
            return effects if emit else []
        latencies.sort()
        return [
            *effects,
            EmitMetric(COMMITTED, float(len(latencies)), slot),
            EmitMetric(LATENCY_SUM, sum(latencies), slot),
            EmitMetric(LATENCY_P50, quantile(latencies, 0.5), slot),
            EmitMetric(LATENCY_P95, quantile(latencies, 0.95), slot),
            EmitMetric(LATENCY_MAX, latencies[-1], slot),
        ]
