"""Dynasty rotation from the chain: RandShare windows, the dynasty record, credits.

Dynasty ``n >= 1`` has its record in the block at ``S = switch_height(n)``. The
committee in charge before it (the *running* committee) produces the seed by RandShare
at the end of its dynasty, with every record on chain and every deadline in slots:

- the block at the trigger height ``T = S - (deal_slots + reveal_slots + 2)`` opens the
  run; let ``s0`` be its slot;
- deals count in blocks of slots ``(s0, s0 + deal_slots]``, reveals in blocks of slots
  ``(s0 + deal_slots, s0 + deal_slots + reveal_slots]``, all below ``S`` (a height grows
  by at most one per slot, so ``S`` comes after the reveal deadline);
- the seed is :func:`randshare.finish` over those records (the flagged fallback
  seed, bound to the trigger block's hash, when too few qualify or reveal).

The record's credit table is the previous table updated by :func:`credits.next_credits`
from the chain of the previous dynasty (heights ``(S_prev, S)``): an honest act is a
block proposed or a model transaction sent; a fault is a ``Fault`` transaction naming
the offender or a distinct offence proven by ``SlashEvidence`` (equivocation, double
vote) or ``PvssEvidence`` (a bad PVSS transcript), one per offence however many report
it, and not again when a copy lands in a later dynasty's blocks. Everything here
reads only the ancestors of a given block, so every node recomputes the same record for
the same chain.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from fedledger.crypto.vrf import VrfPublicKey
from fedledger.ledger.records import Block, Transaction
from fedledger.ledger.store import ChainStore
from fedledger.protocols.mudfl import credits as cr
from fedledger.protocols.mudfl import randshare as rs
from fedledger.protocols.mudfl import settlement as st
from fedledger.protocols.mudfl.dynasty import (
    Dynasty,
    DynastyRecord,
    propose_record,
    switch_height,
    verify_record,
)
from fedledger.protocols.mudfl.faults_pvss import PvssEvidence
from fedledger.protocols.mudfl.messages import (
    FAULT_TX,
    MODEL_TX,
    Fault,
    PocClaim,
    SlashEvidence,
)
from fedledger.protocols.mudfl.params import MuDflParams

DEAL = "deal"
REVEAL = "reveal"


@dataclass
class DynastyState:
    """A node's mutable dynasty state: the dynasty in charge and every known one."""

    current: Dynasty
    known: dict[int, Dynasty] = field(default_factory=dict)
    heights: dict[int, int] = field(default_factory=dict)  # number -> record height

    def __post_init__(self) -> None:
        self.known.setdefault(self.current.number, self.current)


@dataclass(frozen=True)
class Window:
    """RandShare of dynasty ``number`` (run by the committee before it)."""

    number: int
    switch: int  # S
    trigger: int  # T
    start_slot: int  # s0, the trigger block's slot
    deal_slots: int
    reveal_slots: int

    def phase(self, slot: int) -> str | None:
        """``deal``, ``reveal`` or None for a block (or a slot) ``slot``."""
        if self.start_slot < slot <= self.start_slot + self.deal_slots:
            return DEAL
        end = self.start_slot + self.deal_slots + self.reveal_slots
        if self.start_slot + self.deal_slots < slot <= end:
            return REVEAL
        return None


def span(params: MuDflParams) -> int:
    """Blocks per dynasty (R * dynasty_epochs)."""
    return params.epoch_size * params.dynasty_epochs


def trigger_height(number: int, params: MuDflParams) -> int:
    s = switch_height(number, params.epoch_size, params.dynasty_epochs)
    return s - (params.randshare_deal_slots + params.randshare_reveal_slots + 2)


def record_number(height: int, params: MuDflParams) -> int | None:
    """The dynasty whose record the block at ``height`` carries, or None."""
    if height <= 0 or height % span(params):
        return None
    return height // span(params)


def chain_below(store: ChainStore, tip: bytes, low: int) -> list[Block]:
    """``tip`` and its ancestors down to height ``low`` (inclusive), oldest first."""
    block = store.get(tip)
    if block is None:
        raise ValueError(f"block {tip.hex()[:16]} is not stored")
    if block.height < low:
        return []
    return [*reversed(store.ancestors(tip, block.height - low)), block]


def claim_of(block: Block) -> PocClaim | None:
    claim = block.header.extra
    return claim if isinstance(claim, PocClaim) else None


def window(store: ChainStore, tip: bytes, number: int, params: MuDflParams) -> Window | None:
    """Dynasty ``number``'s RandShare window on the chain of ``tip`` (None before the
    trigger block exists there)."""
    t = trigger_height(number, params)
    tip_height = store.height_of(tip)
    if tip_height is None or tip_height < t:
        return None
    h = store.ancestor_at(tip, t)
    block = store.get(h) if h is not None else None
    claim = claim_of(block) if block is not None else None
    slot = claim.slot if claim is not None else 0
    s = switch_height(number, params.epoch_size, params.dynasty_epochs)
    return Window(number, s, t, slot, params.randshare_deal_slots, params.randshare_reveal_slots)


def randshare_records(
    store: ChainStore, tip: bytes, win: Window
) -> tuple[list[rs.RandShareDeal], list[rs.RandShareReveal]]:
    """The deals and reveals of ``win`` in blocks of their windows on ``tip``'s chain."""
    deals: list[rs.RandShareDeal] = []
    reveals: list[rs.RandShareReveal] = []
    for block in chain_below(store, tip, win.trigger + 1):
        claim = claim_of(block)
        if block.height >= win.switch or claim is None:
            continue
        phase = win.phase(claim.slot)
        for tx in block.transactions:
            p = tx.payload
            if getattr(p, "dynasty", None) != win.number:
                continue
            deal_ok = phase == DEAL and tx.kind == rs.DEAL_TX
            if deal_ok and isinstance(p, rs.RandShareDeal) and p.dealer == tx.sender:
                deals.append(p)
            reveal_ok = phase == REVEAL and tx.kind == rs.REVEAL_TX
            if reveal_ok and isinstance(p, rs.RandShareReveal) and p.member == tx.sender:
                reveals.append(p)
    return deals, reveals


def window_problem(tx: Transaction, block_height: int, slot: int, win: Window | None) -> str | None:
    """Why a RandShare transaction may not be in a block of ``slot`` at ``block_height``."""
    want = DEAL if tx.kind == rs.DEAL_TX else REVEAL
    number = getattr(tx.payload, "dynasty", None)
    if win is None or number != win.number or block_height >= win.switch:
        return f"{want} of dynasty {number} outside any RandShare run"
    if win.phase(slot) != want:
        return f"{want} of dynasty {number} in slot {slot}, outside its window"
    return None


class Rotation:
    """Computes (and caches) what the chain says about the next dynasty."""

    def __init__(
        self,
        params: MuDflParams,
        store: ChainStore,
        clients: tuple[str, ...],
        run_seed: int,
        address_of: dict[str, bytes],
        aggregator: str,
        vrf_public: Mapping[str, VrfPublicKey],
    ) -> None:
        self.params, self.store = params, store
        self.clients, self.run_seed = clients, run_seed
        self.address_of = address_of
        self.aggregator = aggregator
        self.node_of = {a: n for n, a in address_of.items()}
        self.vrf_public = dict(vrf_public)  # the clients' registered VRF keys
        self._base: dict[tuple[bytes, int], DynastyRecord] = {}
        self._seeds: dict[tuple[bytes, int], tuple[bytes, bool]] = {}

    def members(self, dyn: Dynasty) -> list[rs.Member]:
        return [
            rs.Member(self.address_of[n], rs.member_key(self.run_seed, n).public)
            for n in dyn.committee
        ]

    def secret_seed(self, node: str, number: int) -> bytes:
        """A dealer's secret for dynasty ``number`` (from its PVSS key, never sent)."""
        key = rs.member_key(self.run_seed, node)
        return hashlib.sha256(
            b"mudfl/randshare/secret" + key.x.to_bytes(32, "little") + number.to_bytes(8, "little")
        ).digest()

    def next_credits(self, parent: bytes, running: Dynasty, number: int) -> dict[str, int]:
        """The frozen credit table of dynasty ``number`` from the chain of ``parent``."""
        low = (
            1
            if number == 1
            else switch_height(number - 1, self.params.epoch_size, self.params.dynasty_epochs) + 1
        )
        honest: dict[str, int] = {}
        faults: dict[str, int] = {}
        offences: set[tuple[str, bytes, int]] = set()
        for block in chain_below(self.store, parent, low):
            proposer = self.node_of.get(block.header.proposer)
            if proposer in running.credits:
                honest[proposer] = honest.get(proposer, 0) + 1
            for tx in block.transactions:
                sender = self.node_of.get(tx.sender)
                if tx.kind == MODEL_TX and sender is not None:
                    honest[sender] = honest.get(sender, 0) + 1
                if tx.kind == FAULT_TX and isinstance(tx.payload, Fault):
                    offender = self.node_of.get(tx.payload.offender)
                    if offender is not None:
                        faults[offender] = faults.get(offender, 0) + 1
                ev = st.evidence(tx)
                offender = self.node_of.get(ev.offender) if ev is not None else None
                if ev is None or offender is None or ev.key in offences:
                    continue
                offences.add(ev.key)
                # late evidence whose offence an earlier dynasty's table already charged
                if ev.dynasty < running.number and self._charged_before(parent, low, ev):
                    continue
                faults[offender] = faults.get(offender, 0) + 1
        table = {c: running.credit_of(c) for c in self.clients}
        p = self.params
        return cr.next_credits(
            table, honest, faults, p.credit_reward, p.credit_penalty, p.credit_max
        )

    def _charged_before(
        self, parent: bytes, low: int, ev: SlashEvidence | PvssEvidence
    ) -> bool:
        """Whether evidence of the offence ``ev.key`` already lies in a block of the
        chain of ``parent`` from the offence's dynasty on and below height ``low`` (a
        credit table before this one charged it)."""
        d, p = ev.dynasty, self.params
        if d < 0:
            return False
        start = 1 if d == 0 else switch_height(d, p.epoch_size, p.dynasty_epochs) + 1
        below = self.store.ancestor_at(parent, low - 1) if low - 1 >= start else None
        if below is None:
            return False
        for block in chain_below(self.store, below, start):
            for tx in block.transactions:
                other = st.evidence(tx)
                if other is not None and other.key == ev.key:
                    return True
        return False

    def seed(self, parent: bytes, running: Dynasty, number: int) -> tuple[bytes, bool]:
        """RandShare's output for dynasty ``number`` on the chain of ``parent`` (cached)."""
        key = (parent, number)
        if key not in self._seeds:
            self._seeds[key] = self._seed(parent, running, number)
        return self._seeds[key]

    def _seed(self, parent: bytes, running: Dynasty, number: int) -> tuple[bytes, bool]:
        win = window(self.store, parent, number, self.params)
        if win is None:
            raise ValueError(f"no RandShare trigger block for dynasty {number} below the record")
        deals, reveals = randshare_records(self.store, parent, win)
        trig = self.store.ancestor_at(parent, win.trigger)
        assert trig is not None
        result = rs.finish(number, self.members(running), deals, reveals, running.seed, trig)
        return result.seed, result.fallback

    def base_record(self, parent: bytes, running: Dynasty, number: int) -> DynastyRecord:
        """What the chain fixes in the record the block after ``parent`` must carry: seed,
        flag, credit table and settlement (no tickets, no committee; cached per parent)."""
        key = (parent, number)
        if key not in self._base:
            seed, flagged = self.seed(parent, running, number)
            self._base[key] = DynastyRecord(
                number,
                seed,
                flagged,
                (),
                tuple(sorted(self.next_credits(parent, running, number).items())),
                (),
                self.settlement(parent, running, number),
            )
        return self._base[key]

    def expected_record(
        self, parent: bytes, running: Dynasty, number: int, tickets: Mapping[str, bytes]
    ) -> DynastyRecord:
        """The record a proposer puts in the block after ``parent``: the chain's part and
        the committee drawn from the valid ``tickets`` it received."""
        base = self.base_record(parent, running, number)
        return propose_record(
            number,
            base.seed,
            base.seed_fallback,
            dict(base.credits),
            self.params.committee,
            tickets,
            self.vrf_public,
            base.settlement,
        )

    def settlement(self, parent: bytes, running: Dynasty, number: int) -> st.Settlement:
        """The settlement of ``running`` (dynasty ``number - 1``) from its blocks on the
        chain of ``parent``."""
        p = self.params
        low = 1 if number == 1 else switch_height(number - 1, p.epoch_size, p.dynasty_epochs) + 1
        return st.settle(
            running.number,
            running.committee,
            chain_below(self.store, parent, low),
            self.address_of[self.aggregator],
            self.node_of,
            p.deposit,
            p.slash_fraction,
            p.tx_fee,
            p.round_fee,
            self.prior_settlements(parent, number),
        )

    def prior_settlements(self, parent: bytes, number: int) -> list[st.Settlement]:
        """The settlements of dynasties ``0 .. number - 2`` on the chain of ``parent`` (in
        the records at heights ``S_1 .. S_{number - 1}``), for late evidence."""
        out = []
        for k in range(1, number):
            h = self.store.ancestor_at(parent, span(self.params) * k)
            block = self.store.get(h) if h is not None else None
            claim = claim_of(block) if block is not None else None
            settled = claim.record.settlement if claim and claim.record else None
            if isinstance(settled, st.Settlement):
                out.append(settled)
        return out

    def check_record(
        self, rec: DynastyRecord | None, parent: bytes, running: Dynasty, number: int
    ) -> str | None:
        """Why ``rec`` is not the record the block after ``parent`` must carry, or None."""
        if rec is None:
            return f"the block at the switch height carries no record of dynasty {number}"
        expected = self.base_record(parent, running, number)
        table = dict(expected.credits)
        try:
            verify_record(rec, number, expected.seed, table, self.params.committee, self.vrf_public)
        except ValueError as err:
            return str(err)
        if rec.settlement != expected.settlement:
            return f"dynasty {number - 1} settlement is not the one recomputed from the chain"
        if replace(rec, committee=(), tickets=()) != expected:
            return f"dynasty {number} record differs from the chain's (seed flag)"
        return None
