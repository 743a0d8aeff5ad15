"""The microchain of one node: its state (pool, slot, votes, decisions, slashed
proposers), persistence, slot clock and transaction pool. Proposing is in
``proposing.py``, verify_block in ``verify_block.py``, checkpoint votes (VCF) and Rule-3
decisions in ``voting.py``.

A slot is ``3 T_Δ``: at its start committee members whose PoC proof is under their
threshold propose; at ``T_Δ`` the rule-iii validator proposes if no valid block came; at
``2 T_Δ`` the head is fixed and, if it is a checkpoint, the committee votes; votes count
until the slot ends. Blocks and votes of other slots are refused and counted.
"""

from __future__ import annotations

from collections.abc import Callable

from fedledger.codec import decode, encode
from fedledger.ledger.finality import Checkpoint
from fedledger.ledger.records import Block, Transaction, record_id
from fedledger.ledger.store import ChainStoreError
from fedledger.protocols.base import Broadcast, Effect, EmitMetric
from fedledger.protocols.kit.gate import Reject
from fedledger.protocols.mudfl import contents, proposing, succession, voting
from fedledger.protocols.mudfl import rotation as rot
from fedledger.protocols.mudfl.context import Context
from fedledger.protocols.mudfl.faults_pvss import PVSS_TX, evidence_problem
from fedledger.protocols.mudfl.load import LoadMeter, load_problem
from fedledger.protocols.mudfl.messages import (
    LOAD_TX,
    SLASH_TX,
    ArbitratorDecision,
    BlockMsg,
    LinkVote,
    SlashEvidence,
    VoteMsg,
)
from fedledger.protocols.mudfl.vcf import VcfTracker
from fedledger.protocols.mudfl.verify_block import verify_block

TX_PAYLOADS = contents.TX_PAYLOADS
RANDSHARE_TXS = contents.RANDSHARE_TXS
VOTES_KEY = "mudfl/votes"
DECISIONS_KEY = "mudfl/decisions"
SLASHED_KEY = "mudfl/slashed"


class Microchain:
    """One node's view of the microchain (every role keeps one)."""

    def __init__(self, ctx: Context, now: Callable[[], float]) -> None:
        self.ctx = ctx
        self.params = ctx.params
        self.store = ctx.services.ledger
        self._now = now
        self.pool: dict[bytes, Transaction] = {}
        self.slot = -1
        self.slot_blocks: dict[bytes, Block] = {}  # proposer -> its block this slot
        self.withheld: Block | None = None
        self.parent = self.store.head()  # the head when the slot began
        self.slashed: set[bytes] = set()
        self.votes: list[LinkVote] = []
        self.decisions: list[ArbitratorDecision] = []
        self.unquorate = 0  # finality slots since the last commit (the admin's count)
        self.randshare_done: set[tuple[int, str | None]] = set()
        self.tickets: dict[int, dict[str, bytes]] = {}  # dynasty -> client -> VRF proof
        self.tickets_sent: set[int] = set()  # dynasties whose ticket this client sent
        self.outbox: list[Transaction] = []  # evidence to send at the next slot's start
        self.initial = ctx.dynasty  # dynasty 0, drawn from the genesis
        genesis = Checkpoint(0, self.store.genesis().hash)
        self.vcf = VcfTracker(self.params.epoch_size, ctx.committee_addresses(), genesis)
        self.restore()
        self.meter = LoadMeter(self.params, self.store)
        # committed transactions leave the pool once final: heights up to here are done
        self.pruned = self.vcf.finalized.height

    # ------------------------------------------------------------ persistence

    def restore(self) -> None:
        votes = self.store.get_state(VOTES_KEY)
        decisions = self.store.get_state(DECISIONS_KEY)
        slashed = self.store.get_state(SLASHED_KEY)
        self.votes = list(decode(votes)) if votes else []
        self.decisions = list(decode(decisions)) if decisions else []
        self.slashed = set(decode(slashed)) if slashed else set()
        committees = succession.committees(self, self.initial)
        genesis = Checkpoint(0, self.store.genesis().hash)
        self.vcf = VcfTracker.rebuilt(
            self.params.epoch_size, committees, genesis, self.votes, self.decisions
        )
        succession.restore_current(self, self.initial)

    def save(self) -> None:
        self.store.put_state(VOTES_KEY, encode(tuple(self.votes)))
        self.store.put_state(DECISIONS_KEY, encode(tuple(self.decisions)))
        self.store.put_state(SLASHED_KEY, encode(tuple(sorted(self.slashed))))

    def credit_table(self, number: int) -> dict[bytes, int] | None:
        """Dynasty ``number``'s committee credits by address, if this node knows it."""
        dyn = self.ctx.state.known.get(number)
        if dyn is None:
            return None
        return {self.ctx.services.address_of(n): dyn.credit_of(n) for n in dyn.committee}

    # ------------------------------------------------------------ clock

    def now(self) -> float:
        return self._now()

    @property
    def slot_length(self) -> float:
        return 3 * self.params.slot

    def slot_at(self, t: float) -> int:
        return int(t // self.slot_length)

    def into_slot(self, t: float) -> float:
        return t - self.slot * self.slot_length

    # ------------------------------------------------------------ transactions

    def add_tx(self, tx: Transaction) -> None:
        """Verify a transaction for the pool (signature, sender, payload kind)."""
        gate = self.ctx.gate
        tid = gate.verifier.check(tx)
        payload_type = TX_PAYLOADS.get(tx.kind)
        if payload_type is None or not isinstance(tx.payload, payload_type):
            raise gate.fail("bad_tx", f"transaction kind {tx.kind!r} with {type(tx.payload)}")
        if tx.kind in RANDSHARE_TXS and contents.randshare_author(tx) != tx.sender:
            raise gate.fail("bad_tx", "a RandShare record sent by someone else than its author")
        if tx.kind == LOAD_TX:
            problem = load_problem(tx.payload, self.params, self.now())
            if problem is not None:
                raise gate.fail("bad_load", problem)
        if tx.kind == SLASH_TX:
            problem = contents.evidence_problem(
                gate.verifier, tx.payload, self.credit_table, self.params.xi
            )
            if problem is not None:
                raise gate.fail("bad_evidence", problem)
        if tx.kind == PVSS_TX:
            members = contents.members_lookup(self)
            problem = evidence_problem(gate.verifier, tx.payload, members)
            if problem is not None:
                raise gate.fail("bad_evidence", problem)
        if tid in self.pool or contents.on_chain(self.store, tid, self.store.head_hash()):
            raise gate.fail("duplicate_tx", tid.hex()[:16])
        if len(self.pool) >= 4 * self.params.max_block_txs:
            raise gate.fail("pool_full", tid.hex()[:16])
        self.pool[tid] = tx

    def prune_pool(self) -> None:
        """Drop the transactions of blocks finalized since the last call from the pool
        (a finalized block never leaves the chain)."""
        final = self.vcf.finalized
        if final.height <= self.pruned:
            return
        block = self.store.get(final.hash)
        while block is not None and block.height > self.pruned:
            for tx in block.transactions:
                self.pool.pop(record_id(tx), None)
            block = self.store.get(block.parent)
        self.pruned = final.height

    def branch_ids(self, tip: bytes) -> set[bytes]:
        """Ids of the transactions in ``tip`` and its ancestors above the pruned height
        (those below have left the pool)."""
        self.prune_pool()
        out: set[bytes] = set()
        block = self.store.get(tip)
        while block is not None and block.height > self.pruned:
            out.update(record_id(tx) for tx in block.transactions)
            block = self.store.get(block.parent)
        return out

    def pool_txs(self, height: int) -> tuple[Transaction, ...]:
        win = rot.window(self.store, self.parent.hash, self.ctx.dynasty.number + 1, self.params)
        on_branch = self.branch_ids(self.parent.hash)
        chosen = []
        for tid in sorted(self.pool):
            tx = self.pool[tid]
            if tx.kind in RANDSHARE_TXS and rot.window_problem(tx, height, self.slot, win):
                continue
            # a losing sibling block's transactions go back into blocks
            if tid not in on_branch:
                chosen.append(tx)
            if len(chosen) >= self.params.max_block_txs:
                break
        return tuple(chosen)

    # ------------------------------------------------------------ proposing (proposing.py)

    def begin_slot(self, slot: int) -> list[Effect]:
        return proposing.begin_slot(self, slot)

    def fallback(self) -> list[Effect]:
        return proposing.fallback(self)

    def broadcast(self, msg: BlockMsg | VoteMsg) -> Broadcast:
        others = tuple(n for n in self.ctx.everyone if n != self.ctx.node_id)
        return Broadcast(msg, to=others)

    # ------------------------------------------------------------ verify_block (verify_block.py)

    def on_block(self, msg: BlockMsg, sender: str) -> None:
        """Alg. 1 verify_block, plus the credit-table check and the slot rules."""
        verify_block(self, msg, sender)

    def report(self, evidence: SlashEvidence) -> None:
        """A committee member puts slashing evidence in its pool and sends it on."""
        if not self.ctx.in_committee or evidence.offender == self.ctx.address:
            return
        tx = self.ctx.sign(Transaction(self.ctx.address, 0.0, SLASH_TX, evidence, 0))
        try:
            self.add_tx(tx)
        except Reject:
            return
        self.outbox.append(tx)

    def append(self, block: Block) -> None:
        try:
            self.store.append(block)
        except ChainStoreError as err:
            raise Reject("wrong_parent", str(err)) from None
        now = self.now()
        self.meter.on_append(block, now, self.into_slot(now))

    # ------------------------------------------------------------ VCF (voting.py)

    def vote(self) -> list[Effect]:
        return voting.vote(self)

    def on_vote(self, vote: LinkVote, sender: str) -> list[Effect]:
        return voting.on_vote(self, vote, sender)

    def on_decision(self, decision: ArbitratorDecision, sender: str) -> list[Effect]:
        return voting.on_decision(self, decision, sender)

    def arbitrate(self) -> list[Effect]:
        return voting.arbitrate(self)

    # ------------------------------------------------------------ metrics

    def slot_metrics(self) -> list[Effect]:
        if self.slot < 0:
            return []
        head = self.store.head()
        return [
            EmitMetric("proposals", float(len(self.slot_blocks)), self.slot),
            EmitMetric("head_height", float(head.height), self.slot),
            EmitMetric("finalized_height", float(self.vcf.finalized.height), self.slot),
            *self.ctx.gate.new_metrics(self.slot),
            *self.meter.slot_metrics(self.store, self.slot, self.now(), self.ctx.in_committee),
        ]

    def finalized_height(self) -> int:
        if self.params.finality_wait == "committed":
            return self.vcf.highest_committed.height
        return self.vcf.finalized.height
