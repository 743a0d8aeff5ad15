"""A μDFL node: every role keeps the microchain; committee members propose and vote;
the administrator arbitrates (Rule 3); the server, aggregator and clients run FL."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from fedledger.learning.jobs import EvalResult, JobResult
from fedledger.protocols.base import (
    BlobReceived,
    Broadcast,
    ChainSynced,
    Effect,
    Halt,
    JobFinished,
    MessageReceived,
    NodeSetup,
    Send,
    SetTimer,
    Start,
    TimerFired,
    TrainResult,
)
from fedledger.protocols.kit.gate import Reject
from fedledger.protocols.kit.ids import JobId, TimerKey
from fedledger.protocols.kit.node import KitNode, handles
from fedledger.protocols.mudfl import catchup, fetch, relay, tickets
from fedledger.protocols.mudfl.chain import Microchain
from fedledger.protocols.mudfl.context import AGGREGATOR, CLIENT, SERVER, Context
from fedledger.protocols.mudfl.fl import Aggregator, Server, Worker
from fedledger.protocols.mudfl.load import LOAD, LoadGen
from fedledger.protocols.mudfl.messages import (
    AggregateMsg,
    BlockMsg,
    BlocksGiven,
    BlocksWanted,
    DecisionMsg,
    FinishMsg,
    TaskMsg,
    TicketMsg,
    TxMsg,
    TxsMsg,
    VoteMsg,
    VotesReply,
    VotesRequest,
)
from fedledger.protocols.mudfl.params import MuDflParams
from fedledger.protocols.resources import MAIN

SLOT = "slot"
FALLBACK = "fallback"
VOTE = "vote"


class MuDflNode(KitNode[MuDflParams]):
    unexpected_message = "bad_payload"

    def __init__(self, setup: NodeSetup[MuDflParams]) -> None:
        ctx = Context.of(setup)
        super().__init__(setup, ctx.gate)
        self.ctx = ctx
        self.chain = Microchain(ctx, lambda: self.now)
        initial = np.asarray(setup.initial_weights, dtype=np.float32)
        shape = tuple(initial.shape)
        role = next(p.role for p in setup.all_nodes if p.node_id == setup.node_id)
        self.role = role
        self.server = Server(ctx, self.chain, initial) if role == SERVER else None
        self.aggregator = Aggregator(ctx, self.chain, shape) if role == AGGREGATOR else None
        self.worker = Worker(ctx, self.chain, shape) if role == CLIENT else None
        self.load = LoadGen(ctx, self.chain, role)
        self._asked = -1  # the slot this node last asked a peer for missed votes
        self._fetched = -1  # ... and for missed blocks
        # blocks of the next slot that came before this node's slot timer fired (its
        # timers run a little late on a loaded machine): checked once that slot begins
        self._early: list[MessageReceived] = []

    # ------------------------------------------------------------ clock

    def on_start(self, event: Start) -> list[Effect]:
        chain = self.chain
        chain.restore()
        slot = chain.slot_at(self.now)
        if slot >= self.ctx.params.max_slots:
            return [Halt("the microchain's last slot is over")]
        chain.slot = slot
        effects: list[Effect] = []
        start = slot * chain.slot_length
        if self.now <= start:
            effects.append(SetTimer(str(TimerKey(SLOT, slot)), 0.0))
        else:
            effects.append(
                SetTimer(str(TimerKey(SLOT, slot + 1)), start + chain.slot_length - self.now)
            )
        if self.server is not None and self.ctx.params.fl:
            effects += self.server.resume()
        effects += self.load.start(self.now)
        if chain.store.head().height > 0:  # a restart: ask for the votes it missed
            effects.append(self._ask_votes())
        return effects

    def _ask_votes(self) -> Broadcast:
        others = tuple(n for n in self.ctx.everyone if n != self.ctx.node_id)
        return Broadcast(VotesRequest(self.chain.vcf.highest_committed.height), to=others)

    def on_chain_synced(self, event: ChainSynced) -> list[Effect]:
        """The host appended blocks from peers (this node was behind or on a fork):
        rebuild the finality view and dynasties, and ask for the votes it missed."""
        if event.chain != MAIN or event.appended < 1:
            return []
        self.chain.restore()
        return [self._ask_votes()]

    def on_timer(self, key: str, event: TimerFired) -> list[Effect]:
        timer = TimerKey.parse(key)
        if timer is None or timer.index is None:
            return []
        chain, p = self.chain, self.ctx.params
        if timer.name == SLOT:
            # a node whose timers fired late (it was paused: SIGSTOP, a suspended machine)
            # skips to the network's slot instead of running slots behind it for good
            slot = max(timer.index, chain.slot_at(self.now))
            if slot >= p.max_slots:
                return [Halt("the microchain's last slot is over")]
            effects = [*self.load.slot_metrics(chain.slot), *chain.begin_slot(slot)]
            early, self._early = self._early, []
            for ev in early:
                if isinstance(ev.message, BlockMsg) and ev.message.slot == slot:
                    effects += self.on_block(ev)
            into = 0.0 if slot == timer.index else chain.into_slot(self.now)
            effects += [
                SetTimer(str(TimerKey(FALLBACK, slot)), max(0.0, p.slot - into)),
                SetTimer(str(TimerKey(VOTE, slot)), max(0.0, 2 * p.slot - into)),
                SetTimer(str(TimerKey(SLOT, slot + 1)), 3 * p.slot - into),
            ]
            if self.role == "admin":
                effects += chain.arbitrate()
            if self.aggregator is not None:
                effects += self.aggregator.check()
            return effects
        if timer.name == FALLBACK and timer.index == chain.slot:
            return chain.fallback()
        if timer.name == VOTE and timer.index == chain.slot:
            return chain.vote()
        if timer.name == LOAD:
            return self.load.tick(timer.index, self.now)
        return []

    # ------------------------------------------------------------ messages

    @handles(TxMsg)
    def on_tx(self, event: MessageReceived) -> list[Effect]:
        assert isinstance(event.message, TxMsg)
        if not self.ctx.in_committee:
            raise self.gate.fail("not_in_committee", f"transaction from {event.sender}")
        self.chain.add_tx(event.message.tx)
        return []

    @handles(TxsMsg)
    def on_txs(self, event: MessageReceived) -> list[Effect]:
        assert isinstance(event.message, TxsMsg)
        if not self.ctx.in_committee:
            raise self.gate.fail("not_in_committee", f"transactions from {event.sender}")
        if not event.message.txs:
            raise self.gate.fail("empty_batch", f"no transactions from {event.sender}")
        for tx in event.message.txs:
            try:
                self.chain.add_tx(tx)
            except Reject:  # each refused transaction is counted by the gate
                continue
        return []

    @handles(relay.CompactBlockMsg)
    def on_compact_block(self, event: MessageReceived) -> list[Effect]:
        msg = event.message
        assert isinstance(msg, relay.CompactBlockMsg)
        if not self.ctx.in_committee:
            raise self.gate.fail("not_in_committee", f"compact block from {event.sender}")
        block, asks = relay.on_compact(self.chain, msg, event.sender)
        if block is None:
            return asks
        return self.on_block(replace(event, message=BlockMsg(msg.slot, block)))

    @handles(relay.FullBlockWanted)
    def on_full_block_wanted(self, event: MessageReceived) -> list[Effect]:
        assert isinstance(event.message, relay.FullBlockWanted)
        return relay.on_wanted(self.chain, event.message, event.sender)

    @handles(BlockMsg)
    def on_block(self, event: MessageReceived) -> list[Effect]:
        assert isinstance(event.message, BlockMsg)
        if event.message.slot == self.chain.slot + 1:
            return self._hold_early(event)
        try:
            self.chain.on_block(event.message, event.sender)
        except Reject as err:  # counted by the gate
            if err.reason != "unknown_parent" or self._fetched == self.chain.slot:
                return []
            self._fetched = self.chain.slot
            above = self.chain.vcf.finalized.height
            return [Send(event.sender, BlocksWanted(event.message.block.hash, above))]
        return []

    @handles(TicketMsg)
    def on_ticket(self, event: MessageReceived) -> list[Effect]:
        assert isinstance(event.message, TicketMsg)
        tickets.on_ticket(self.chain, event.message, event.sender)
        return []

    def _hold_early(self, event: MessageReceived) -> list[Effect]:
        """Keep a block of the next slot until that slot begins here, once its sender
        and signatures pass (what fails is counted now; the rest is checked then)."""
        assert isinstance(event.message, BlockMsg)
        block = event.message.block
        if event.sender == self.ctx.node_id or (
            self.ctx.services.node_of(block.header.proposer) != event.sender
        ):
            raise self.gate.fail("wrong_sender", f"{event.sender} relayed a block early")
        self.gate.verifier.check_block(block)
        if len(self._early) >= 4 * len(self.ctx.everyone):
            raise self.gate.fail("too_early", f"block of slot {event.message.slot}")
        self._early.append(event)
        return []

    @handles(BlocksWanted)
    def on_blocks_wanted(self, event: MessageReceived) -> list[Effect]:
        assert isinstance(event.message, BlocksWanted)
        msg = event.message
        blocks = fetch.blocks_for(self.chain, msg.tip, msg.above)
        if not blocks or msg.above < 0:
            raise self.gate.fail("unknown_block", f"blocks wanted by {event.sender}")
        return [Send(event.sender, BlocksGiven(blocks))]

    @handles(BlocksGiven)
    def on_blocks_given(self, event: MessageReceived) -> list[Effect]:
        assert isinstance(event.message, BlocksGiven)
        fetch.adopt(self.chain, event.message.blocks, event.sender)
        return []

    @handles(VoteMsg)
    def on_vote(self, event: MessageReceived) -> list[Effect]:
        assert isinstance(event.message, VoteMsg)
        vote = event.message.vote
        asks = self._ask_if_behind(vote.source_height, event.sender)
        try:
            effects = self.chain.on_vote(vote, event.sender)
        except Reject:  # counted by the gate
            return asks
        if self.aggregator is not None and effects:
            effects += self.aggregator.check()
        return [*asks, *effects]

    def _ask_if_behind(self, source_height: int, peer: str) -> list[Effect]:
        """A vote or decision whose source is above this node's highest committed
        checkpoint: this node missed votes (late, or on a fork); ask the sender for
        them, once per slot."""
        committed = self.chain.vcf.highest_committed.height
        if source_height <= committed or self._asked == self.chain.slot:
            return []
        self._asked = self.chain.slot
        return [Send(peer, VotesRequest(committed))]

    @handles(DecisionMsg)
    def on_decision(self, event: MessageReceived) -> list[Effect]:
        assert isinstance(event.message, DecisionMsg)
        decision = event.message.decision
        asks = self._ask_if_behind(decision.source_height, event.sender)
        try:
            return [*asks, *self.chain.on_decision(decision, event.sender)]
        except Reject:  # counted by the gate
            return asks

    @handles(VotesRequest)
    def on_votes_request(self, event: MessageReceived) -> list[Effect]:
        assert isinstance(event.message, VotesRequest)
        above = event.message.above
        if above < 0 or above >= self.chain.vcf.highest_committed.height:
            raise self.gate.fail("nothing_missed", f"votes above {above} from {event.sender}")
        votes = catchup.votes_above(self.chain, above)
        reply = VotesReply(votes, tuple(self.chain.decisions))
        return [Send(event.sender, reply)]

    @handles(VotesReply)
    def on_votes_reply(self, event: MessageReceived) -> list[Effect]:
        assert isinstance(event.message, VotesReply)
        msg = event.message
        return catchup.catch_up(self.chain, msg.votes, msg.decisions)

    @handles(TaskMsg)
    def on_task(self, event: MessageReceived) -> list[Effect]:
        assert isinstance(event.message, TaskMsg)
        if self.aggregator is not None:
            return self.aggregator.on_task(event.message, event.sender)
        if self.worker is not None:
            return self.worker.on_task(event.message, event.sender)
        raise self.gate.fail("wrong_role", f"task at {self.role}")

    @handles(AggregateMsg)
    def on_aggregate(self, event: MessageReceived) -> list[Effect]:
        assert isinstance(event.message, AggregateMsg)
        if self.server is None:
            raise self.gate.fail("wrong_role", f"aggregate at {self.role}")
        return self.server.on_aggregate(event.message, event.sender)

    @handles(FinishMsg)
    def on_finish(self, event: MessageReceived) -> list[Effect]:
        if event.sender != self.ctx.server:
            raise self.gate.fail("wrong_sender", f"finish from {event.sender}")
        assert isinstance(event.message, FinishMsg)
        if event.message.round != self.setup.rounds:
            raise self.gate.fail("wrong_round", f"finish of round {event.message.round}")
        return [*self.gate.new_metrics(max(self.chain.slot, 0)), Halt("the server finished")]

    # ------------------------------------------------------------ jobs and blobs

    def on_job(self, job_id: JobId | None, result: JobResult, event: JobFinished) -> list[Effect]:
        if self.worker is not None and job_id is not None and isinstance(result, TrainResult):
            return self.worker.on_trained(job_id.index, result, self.now)
        if self.aggregator is not None and job_id is not None and isinstance(result, EvalResult):
            return self.aggregator.on_scored(job_id.index, result)
        return []

    def on_blob(self, event: BlobReceived) -> list[Effect]:
        for role in (self.server, self.aggregator, self.worker):
            if role is not None:
                return role.on_blob(event.cid, event.data)
        return []
