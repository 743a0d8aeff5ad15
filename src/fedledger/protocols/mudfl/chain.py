"""The microchain of one node: slot clock, PoC proposals, verify_block, rules i-iii,
checkpoint votes (VCF) and Rule-3 decisions.

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
from fedledger.protocols.mudfl import contents, poc, succession
from fedledger.protocols.mudfl import rotation as rot
from fedledger.protocols.mudfl.context import (
    FAULT_DOUBLE_VOTE,
    FAULT_EQUIVOCATE,
    FAULT_FORGE_CREDIT,
    FAULT_WITHHOLD,
    Context,
)
from fedledger.protocols.mudfl.messages import (
    DOUBLE_VOTE,
    EQUIVOCATION,
    FORGED_CREDIT,
    INVALID_PROOF,
    SLASH_TX,
    ArbitratorDecision,
    BlockMsg,
    DecisionMsg,
    LinkVote,
    PocClaim,
    SlashEvidence,
    TxMsg,
    VoteMsg,
)
from fedledger.protocols.mudfl.vcf import VcfTracker, rule1_problem

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
        self.outbox: list[Transaction] = []  # evidence to send at the next slot's start
        self.initial = ctx.dynasty  # dynasty 0, drawn from the genesis
        genesis = Checkpoint(0, self.store.genesis().hash)
        self.vcf = VcfTracker(self.params.epoch_size, ctx.committee_addresses(), genesis)
        self.restore()

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
        if tx.kind == SLASH_TX:
            problem = contents.evidence_problem(
                gate.verifier, tx.payload, self.credit_table, self.params.xi
            )
            if problem is not None:
                raise gate.fail("bad_evidence", problem)
        if tid in self.pool or contents.on_chain(self.store, tid, self.store.head_hash()):
            raise gate.fail("duplicate_tx", tid.hex()[:16])
        if len(self.pool) >= 4 * self.params.max_block_txs:
            raise gate.fail("pool_full", tid.hex()[:16])
        self.pool[tid] = tx

    def _pool_txs(self, height: int) -> tuple[Transaction, ...]:
        win = rot.window(self.store, self.parent.hash, self.ctx.dynasty.number + 1, self.params)
        chosen = []
        for tid in sorted(self.pool):
            tx = self.pool[tid]
            if tx.kind in RANDSHARE_TXS and rot.window_problem(tx, height, self.slot, win):
                continue
            # a losing sibling block's transactions go back into blocks
            if not contents.on_chain(self.store, tid, self.parent.hash):
                chosen.append(tx)
            if len(chosen) >= self.params.max_block_txs:
                break
        return tuple(chosen)

    # ------------------------------------------------------------ proposing

    def begin_slot(self, slot: int) -> list[Effect]:
        """Slot start: forget the last slot's blocks, propose if the PoC proof wins."""
        effects = self._slot_metrics()
        self.slot = slot
        self.slot_blocks = {}
        self.parent = self.store.head()
        effects += succession.takeover(self)
        effects += succession.randshare_step(self)
        if self.outbox:
            to = tuple(n for n in self.ctx.dynasty.committee if n != self.ctx.node_id)
            effects += [Broadcast(TxMsg(tx), to=to) for tx in self.outbox]
            self.outbox = []
        if self.withheld is not None:
            late, self.withheld = self.withheld, None
            effects.append(self._broadcast(BlockMsg(slot - 1, late)))
        if not self.ctx.in_committee:
            return effects
        block = self._propose(fallback=False)
        if block is None:
            return effects
        if self.ctx.has_fault(FAULT_WITHHOLD):
            self.withheld = block
            return effects
        self.slot_blocks[block.header.proposer] = block
        self._append(block)
        effects.append(self._broadcast(BlockMsg(slot, block)))
        if self.ctx.has_fault(FAULT_EQUIVOCATE):
            twin = self._propose(fallback=False, drop_one=True)
            if twin is not None and twin.hash != block.hash:
                effects.append(self._broadcast(BlockMsg(slot, twin)))
        return effects

    def fallback(self) -> list[Effect]:
        """Rule iii at T_Δ: the ranked validator proposes when no valid block came."""
        if self.slot_blocks or not self.ctx.in_committee:
            return []
        chosen = poc.fallback_proposer(
            self.ctx.committee_addresses(), self.parent.height + 1, self.params.fallback_order
        )
        if chosen != self.ctx.address:
            return []
        block = self._propose(fallback=True)
        assert block is not None
        self.slot_blocks[block.header.proposer] = block
        self._append(block)
        return [self._broadcast(BlockMsg(self.slot, block))]

    def _propose(self, fallback: bool, drop_one: bool = False) -> Block | None:
        ctx = self.ctx
        head = self.parent
        height = head.height + 1
        txs = self._pool_txs(height)
        if drop_one:
            txs = txs[1:] if txs else ()
        credit = ctx.dynasty.credit_of(ctx.node_id)
        if ctx.has_fault(FAULT_FORGE_CREDIT):
            credit = max(credit, ctx.params.credit_max) * 4
        if not fallback:
            ids = [record_id(tx) for tx in txs]
            proof = poc.low_bits(
                poc.poc_hash(head.hash, ids, ctx.address, credit, height, self.slot),
                self.params.xi,
            )
            total = ctx.dynasty.total_credit - ctx.dynasty.credit_of(ctx.node_id) + credit
            if not poc.wins(proof, credit, total, self.params.xi):
                return None
        number = ctx.dynasty.number + 1
        record = None
        if rot.record_number(height, self.params) == number:
            record = ctx.rotation.expected_record(head.hash, ctx.dynasty, number)
        claim = PocClaim(self.slot, ctx.dynasty.number, credit, fallback, record)
        block = Block.create(head.hash, height, ctx.address, self._now(), txs, claim)
        return ctx.sign(block)

    def _broadcast(self, msg: BlockMsg | VoteMsg) -> Broadcast:
        others = tuple(n for n in self.ctx.everyone if n != self.ctx.node_id)
        return Broadcast(msg, to=others)

    # ------------------------------------------------------------ verify_block

    def on_block(self, msg: BlockMsg, sender: str) -> None:
        """Alg. 1 verify_block, plus the credit-table check and the slot rules."""
        gate, ctx = self.ctx.gate, self.ctx
        block = msg.block
        if msg.slot != self.slot or self.into_slot(self._now()) >= 2 * self.params.slot:
            raise gate.fail("late_block", f"block of slot {msg.slot} in slot {self.slot}")
        claim = block.header.extra
        if not isinstance(claim, PocClaim) or claim.slot != msg.slot:
            raise gate.fail("bad_claim", f"block from {sender} without a PocClaim of its slot")
        proposer = block.header.proposer
        if ctx.services.node_of(proposer) != sender:
            raise gate.fail("wrong_sender", f"{sender} relayed another proposer's block")
        # the head at the slot's start, or a stored block of its height or above: a node
        # that missed a block (it came late) joins the branch the proposer built on
        head = self.parent
        parent = head if block.parent == head.hash else self.store.get(block.parent)
        if parent is None:
            raise gate.fail("unknown_parent", f"block at {block.height} from {sender}")
        if parent.height < head.height or block.height != parent.height + 1:
            raise gate.fail("wrong_parent", f"block at {block.height} not on head {head.height}")
        gate.verifier.check_block(block, parent.header)
        if sender not in ctx.dynasty.committee or claim.dynasty != ctx.dynasty.number:
            raise gate.fail("not_in_committee", f"{sender} in dynasty {claim.dynasty}")
        if proposer in self.slashed:
            raise gate.fail("slashed_proposer", sender)
        known = self.slot_blocks.get(proposer)
        if known is not None:
            if known.hash != block.hash:
                self.slashed.add(proposer)
                self._report(SlashEvidence(EQUIVOCATION, proposer, (known.header, block.header)))
                self.save()
                raise gate.fail("equivocation", f"{sender} proposed two blocks in slot {self.slot}")
            raise gate.fail("duplicate_block", sender)
        if claim.credit != ctx.dynasty.credit_of(sender):
            self.slashed.add(proposer)
            self._report(SlashEvidence(FORGED_CREDIT, proposer, (block.header,)))
            self.save()
            raise gate.fail(
                "forged_credit",
                f"{sender} claims credit {claim.credit}, table has {ctx.dynasty.credit_of(sender)}",
            )
        if claim.fallback:
            chosen = poc.fallback_proposer(
                ctx.committee_addresses(), block.height, self.params.fallback_order
            )
            if proposer != chosen or self.into_slot(self._now()) < self.params.slot * 0.999:
                raise gate.fail("bad_fallback", f"{sender} is not the rule-iii proposer now")
        elif not poc.wins(
            poc.block_proof(block, self.params.xi),
            claim.credit,
            ctx.dynasty.total_credit,
            self.params.xi,
        ):
            self.slashed.add(proposer)
            ids = tuple(record_id(tx) for tx in block.transactions)
            self._report(SlashEvidence(INVALID_PROOF, proposer, (block.header,), tx_ids=ids))
            self.save()
            raise gate.fail("bad_proof", f"{sender}'s proof is over its threshold")
        contents.check(self, block, claim, sender)
        self.slot_blocks[proposer] = block
        self._append(block)

    def _report(self, evidence: SlashEvidence) -> None:
        """A committee member puts slashing evidence in its pool and sends it on."""
        if not self.ctx.in_committee or evidence.offender == self.ctx.address:
            return
        tx = self.ctx.sign(Transaction(self.ctx.address, 0.0, SLASH_TX, evidence, 0))
        try:
            self.add_tx(tx)
        except Reject:
            return
        self.outbox.append(tx)

    def _append(self, block: Block) -> None:
        try:
            self.store.append(block)
        except ChainStoreError as err:
            raise Reject("wrong_parent", str(err)) from None

    # ------------------------------------------------------------ VCF

    def vote(self) -> list[Effect]:
        """At 2 T_Δ: the head is fixed; committee members vote if it is a checkpoint."""
        head = self.store.head()
        for tid in [record_id(tx) for tx in head.transactions]:
            self.pool.pop(tid, None)
        R = self.params.epoch_size
        if head.height == 0 or head.height % R:
            return []
        if not self.ctx.in_committee or self.ctx.address in self.slashed:
            return []
        source = self.vcf.highest_committed
        if head.height != source.height + R:
            return []
        vote = self.ctx.sign(
            LinkVote(
                self.ctx.address,
                source.hash,
                source.height,
                head.hash,
                head.height,
                self.ctx.dynasty.number,
                self.slot,
            )
        )
        self._count(vote)
        effects: list[Effect] = [self._broadcast(VoteMsg(vote))]
        if self.ctx.has_fault(FAULT_DOUBLE_VOTE):
            other = [b for b in self.slot_blocks.values() if b.hash != head.hash]
            if other:
                twin = self.ctx.sign(
                    LinkVote(
                        self.ctx.address,
                        source.hash,
                        source.height,
                        other[0].hash,
                        other[0].height,
                        self.ctx.dynasty.number,
                        self.slot,
                    )
                )
                effects.append(self._broadcast(VoteMsg(twin)))
        return effects

    def on_vote(self, vote: LinkVote, sender: str) -> list[Effect]:
        gate = self.ctx.gate
        if vote.slot != self.slot or self.into_slot(self._now()) < 2 * self.params.slot * 0.999:
            raise gate.fail("late_vote", f"vote of slot {vote.slot} in slot {self.slot}")
        if self.ctx.services.node_of(vote.voter) != sender:
            raise gate.fail("wrong_sender", f"{sender} relayed another voter's vote")
        gate.verifier.check(vote)
        if vote.dynasty != self.ctx.dynasty.number:
            raise gate.fail("wrong_dynasty", f"vote of dynasty {vote.dynasty}")
        problem = rule1_problem(vote, self.store.head().height, self.params.epoch_size)
        if problem is not None:
            raise gate.fail("rule1", problem)
        return self._count(vote)

    def _count(self, vote: LinkVote) -> list[Effect]:
        result = self.vcf.add_link_vote(vote, self.store)
        if result.evidence is not None:
            self.slashed.add(vote.voter)
            first = [
                v
                for v in self.votes
                if v.voter == vote.voter
                and v.target_height == vote.target_height
                and v.target != vote.target
            ]
            if first:
                self._report(SlashEvidence(DOUBLE_VOTE, vote.voter, votes=(first[0], vote)))
            self.save()
        if not result.accepted:
            raise self.ctx.gate.fail(str(result.status.value), result.detail)
        self.votes.append(vote)
        self.save()
        effects: list[Effect] = []
        for cp in result.committed:
            self.unquorate = 0
            effects.append(EmitMetric("committed", float(cp.height), self.slot))
        for cp in result.finalized:
            effects.append(EmitMetric("finalized", float(cp.height), self.slot))
        return effects

    def on_decision(self, decision: ArbitratorDecision, sender: str) -> list[Effect]:
        """Rule 3: the administrator's signed decision commits the checkpoint."""
        gate = self.ctx.gate
        if sender != self.ctx.admin or decision.admin != self.ctx.services.address_of(sender):
            raise gate.fail("wrong_sender", f"decision from {sender}")
        gate.verifier.check(decision)
        if self.store.height_of(decision.target) != decision.target_height:
            raise gate.fail("unknown_block", "decided checkpoint is not stored here")
        try:
            self.vcf.arbitrate(decision)
        except ValueError as err:
            raise gate.fail("bad_decision", str(err)) from None
        self.decisions.append(decision)
        self.save()
        return [EmitMetric("arbitrated", float(decision.target_height), self.slot)]

    def arbitrate(self) -> list[Effect]:
        """The administrator at a slot's start: after ``arbiter_timeout`` slots with an
        uncommitted checkpoint on its chain, decide it and every later checkpoint up to
        the head (Rule 3), so that the committee can vote again: Rule 1 only lets it
        vote for the checkpoint one epoch above the highest committed one."""
        R = self.params.epoch_size
        source = self.vcf.highest_committed
        head = self.store.head()
        if head.height < source.height + R:
            return []
        self.unquorate += 1
        if self.unquorate < self.params.arbiter_timeout:
            return []
        self.unquorate = 0
        others = tuple(n for n in self.ctx.everyone if n != self.ctx.node_id)
        effects: list[Effect] = []
        while head.height >= source.height + R:
            target = self.store.ancestor_at(head.hash, source.height + R)
            if target is None:
                break
            height = source.height + R
            decision = self.ctx.sign(
                ArbitratorDecision(
                    self.ctx.address, source.hash, source.height, target, height, self.slot
                )
            )
            self.vcf.arbitrate(decision)
            self.decisions.append(decision)
            effects += [
                Broadcast(DecisionMsg(decision), to=others),
                EmitMetric("arbitrated", float(height), self.slot),
            ]
            source = Checkpoint(height, target)
        self.save()
        return effects

    # ------------------------------------------------------------ metrics

    def _slot_metrics(self) -> list[Effect]:
        if self.slot < 0:
            return []
        head = self.store.head()
        return [
            EmitMetric("proposals", float(len(self.slot_blocks)), self.slot),
            EmitMetric("head_height", float(head.height), self.slot),
            EmitMetric("finalized_height", float(self.vcf.finalized.height), self.slot),
            *self.ctx.gate.new_metrics(self.slot),
        ]

    def finalized_height(self) -> int:
        if self.params.finality_wait == "committed":
            return self.vcf.highest_committed.height
        return self.vcf.finalized.height
