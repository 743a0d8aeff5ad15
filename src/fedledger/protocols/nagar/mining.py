"""The miner's side: verify and forward submissions, build a candidate block (PoW: seal
it and release it after attempts x seconds-per-hash; PoS: only the elected miner), and on
every node: check candidates, choose one at ``select_at``, append and replay it."""

from __future__ import annotations

import dataclasses

from fedledger.consensus.selection import find_nonce, first_sealed
from fedledger.ledger.records import Block, record_id, sign
from fedledger.ledger.store import ChainStoreError
from fedledger.protocols.base import (
    Broadcast,
    Effect,
    EmitMetric,
    MessageReceived,
    SetTimer,
)
from fedledger.protocols.kit.node import handles
from fedledger.protocols.kit.stage import Stage
from fedledger.protocols.nagar.applying import Applying
from fedledger.protocols.nagar.chainstate import submissions
from fedledger.protocols.nagar.core import (
    DEVICE,
    MINER,
    POS_BACKUP,
    POW_SEND,
)
from fedledger.protocols.nagar.faults import VAULT_SNOOP
from fedledger.protocols.nagar.messages import (
    PLAN,
    CandidateMsg,
    StepRecord,
    TxMsg,
    VaultMsg,
)
from fedledger.protocols.nagar.rules import (
    POW_CONTEXT,
    Step,
    pos_ranking,
    pow_base,
    pow_target,
    rewards_of,
)


class Mining(Applying):
    """Verify submissions, mine blocks, choose the step's block."""

    @handles(TxMsg)
    def on_tx(self, event: MessageReceived) -> list[Effect]:
        msg = event.message
        assert isinstance(msg, TxMsg)
        step = self.step
        if self.role != MINER:
            raise self.gate.fail("wrong_role", f"TxMsg from {event.sender} at a {self.role}")
        if step is None or msg.step != step.index or self.stage is not Stage.ROUND:
            raise self.gate.fail("wrong_step", f"TxMsg of step {msg.step}")
        tx_id = record_id(msg.tx)
        if tx_id in self.pool:
            return []
        node_of = self.setup.services.node_of
        if msg.forwarded and event.sender not in self.miners:
            raise self.gate.fail("wrong_role", f"{event.sender} forwarded but is no miner")
        if not msg.forwarded and node_of(msg.tx.sender) != event.sender:
            raise self.gate.fail("wrong_role", f"{event.sender} relayed another's transaction")
        if step.phase == PLAN:
            self.checks.plan_tx(msg.tx)
        else:
            self.checks.submission(msg.tx, self.state, step, tx_id)
            sender = msg.tx.sender
            if not msg.forwarded and not self.checks.assoc_ok(
                self.state, step, sender, self.address
            ):
                raise self.gate.fail("wrong_role", f"{event.sender} is not associated with me")
            if sender in self.by_sender:
                raise self.gate.fail("duplicate", f"second submission of {event.sender}")
            self.by_sender[sender] = tx_id
        self.pool[tx_id] = msg.tx
        if msg.forwarded or step.phase == PLAN:
            return []
        others = tuple(m for m in self.miners if m != self.node_id)
        return [Broadcast(TxMsg(msg.step, msg.tx, True), to=others)] if others else []

    @handles(VaultMsg)
    def on_vault(self, event: MessageReceived) -> list[Effect]:
        """Consortium mode: keep the parts of a device's sealed blob (never a whole one)."""
        msg = event.message
        assert isinstance(msg, VaultMsg)
        plan, step = self.state.plan, self.step
        if self.role != MINER or plan is None or not plan.vault_threshold:
            raise self.gate.fail("wrong_role", f"VaultMsg to a {self.role} outside consortium mode")
        if not any(n.node_id == event.sender and n.role == DEVICE for n in self.setup.all_nodes):
            raise self.gate.fail("wrong_role", f"VaultMsg from {event.sender}, not a device")
        if step is None or msg.step != step.index or step.phase == PLAN:
            raise self.gate.fail("wrong_step", f"VaultMsg of step {msg.step}")
        if self.intake is None:  # a consortium plan on chain, consortium params off
            raise self.gate.fail("wrong_role", "VaultMsg to a member without vault limits")
        store = self.blobs.store_
        keep, refusals = self.intake.admit(step.index, event.sender, msg.parts, store.has)
        for reason, detail in refusals:
            self.gate.fail(reason, detail)
        for part in keep:
            store.put(part)
        return []

    def may_serve(self, peer: str, cid: str) -> bool:
        """Consortium mode: a storage member hands what it stores only to the nodes that
        read whole sealed blobs (the devices, and the decryption committee when updates
        are Paillier-encrypted), never to another storage member or the requester, so no
        member can gather every chunk and t key shares from the others."""
        plan = self.state.plan
        if self.role != MINER or plan is None or not plan.vault_threshold:
            return True
        if peer in self.committee:
            return True
        return any(n.node_id == peer and n.role == DEVICE for n in self.setup.all_nodes)

    def _mine(self, backup: bool = False) -> list[Effect]:
        """Build this miner's candidate (PoW: seal it; PoS: the elected miner now, a backup
        ``rank`` gaps later, unless a better-ranked candidate came first)."""
        step = self.step
        assert step is not None
        head = self.setup.services.ledger.head()
        plan = self.state.plan or self.own_plan
        height = head.height + 1
        if plan.consensus == "pos" and not backup:
            ranking = pos_ranking(plan, self.state.stakes, head.hash, height)
            rank = ranking.index(self.address) if self.address in ranking else -1
            if rank < 0:
                return []
            if rank > 0:  # a backup: propose only if no better-ranked block has come
                gap = (self.params.select_at - self.params.mine_at) / (len(ranking) + 1)
                return [SetTimer(POS_BACKUP, rank * gap)]
        txs = tuple(sorted(self.pool.values(), key=record_id)[: plan.block_size])
        plan_id = record_id(txs[0]) if step.phase == PLAN and txs else self.state.plan_id
        if step.phase == PLAN and not txs:
            plan_id = b""
        rec = StepRecord(step.index, step.phase, plan_id, rewards_of(plan, txs, self.address))
        if plan.consensus == "pos":
            block = sign(
                Block.create(head.hash, height, self.address, self.now, txs, rec),
                self.setup.services.keys,
            )
            self.candidates[self.address] = block
            return [self._send_block(block)]
        draft = Block.create(head.hash, height, self.address, self.now, txs, rec)
        target = pow_target(plan, height, self.state.times)
        nonce = find_nonce(POW_CONTEXT, pow_base(draft), target)
        room = 0.9 * (self.params.select_at - self.params.mine_at)
        delay = min(room, (nonce + 1) * self.params.pow_seconds_per_hash)
        sealed = dataclasses.replace(rec, nonce=nonce)
        block = Block.create(head.hash, height, self.address, self.now + delay, txs, sealed)
        self.sealed = sign(block, self.setup.services.keys)
        self.candidates[self.address] = self.sealed
        return [SetTimer(POW_SEND, delay), EmitMetric("hashes", float(nonce + 1), step.round)]

    @handles(CandidateMsg)
    def on_candidate(self, event: MessageReceived) -> list[Effect]:
        msg = event.message
        assert isinstance(msg, CandidateMsg)
        step = self.step
        if step is None or msg.step != step.index or self.stage is not Stage.ROUND:
            raise self.gate.fail("wrong_step", f"CandidateMsg of step {msg.step}")
        proposer = msg.block.header.proposer
        if self.setup.services.node_of(proposer) != event.sender:
            raise self.gate.fail("wrong_role", f"{event.sender} relayed another miner's block")
        head = self.setup.services.ledger.head()
        self.checks.block(msg.block, head.header, self.state, step)
        known = self.candidates.get(proposer)
        if known is not None and known.hash != msg.block.hash:
            raise self.gate.fail("duplicate", f"miner {event.sender} sent two blocks")
        self.candidates[proposer] = msg.block
        return []

    def _select(self) -> list[Effect]:
        step = self.step
        assert step is not None
        self.sealed = None
        blocks = sorted(self.candidates.values(), key=lambda b: b.hash)
        plan = self.state.plan or self.own_plan
        chosen: Block | None
        if plan.consensus == "pow":
            chosen = first_sealed(blocks, lambda b: b.header.extra.nonce, lambda b: b.hash)
        else:  # the best-ranked of the lottery (the elected miner unless it was silent)
            chosen = self._best_ranked(blocks)
        effects: list[Effect] = [
            EmitMetric(
                "candidate_blocks", float(len(blocks)), step.round, (("phase", step.phase),)
            ),
            EmitMetric("forks", float(max(0, len(blocks) - 1)), step.round),
        ]
        if chosen is not None:
            try:
                self.setup.services.ledger.append(chosen)
            except ChainStoreError as err:
                self.gate.fail("wrong_parent", str(err))
                chosen = None
        effects += list(self.gate.new_metrics(step.round))
        if chosen is None:
            effects.append(EmitMetric("no_block", 1.0, step.round, (("phase", step.phase),)))
            return effects + self._gather([])
        self.state.apply(chosen)
        effects += self._block_metrics(chosen, step)
        member = self.secure is not None and self.secure.share is not None
        gather = self.role == DEVICE or (member and self._encrypted(chosen))
        gather = gather or VAULT_SNOOP in self.setup.faults  # a curious member tries
        return effects + self._gather([chosen] if gather else [])

    def _best_ranked(self, blocks: list[Block]) -> Block | None:
        head = self.setup.services.ledger.head()
        plan = self.state.plan or self.own_plan
        ranking = pos_ranking(plan, self.state.stakes, head.hash, head.height + 1)
        ranked = [b for b in blocks if b.header.proposer in ranking]
        return min(ranked, key=lambda b: ranking.index(b.header.proposer), default=None)

    def _backup(self) -> list[Effect]:
        """A backup's turn: propose unless a better-ranked candidate is in."""
        head = self.setup.services.ledger.head()
        plan = self.state.plan or self.own_plan
        ranking = pos_ranking(plan, self.state.stakes, head.hash, head.height + 1)
        if self.address not in ranking:
            return []
        mine = ranking.index(self.address)
        if any(ranking.index(p) < mine for p in self.candidates if p in ranking):
            return []
        return self._mine(backup=True)

    def _block_metrics(self, block: Block, step: Step) -> list[Effect]:
        node_of = self.setup.services.node_of
        miner = node_of(block.header.proposer) or "?"
        n_subs = len(submissions(block))
        out: list[Effect] = [
            EmitMetric("block", float(block.height), step.round, (("miner", miner),)),
            EmitMetric("block_updates", float(n_subs), step.round, (("phase", step.phase),)),
            EmitMetric(
                "stake",
                self.state.stakes.get(self.address, 0.0),
                step.round,
                (("node", self.node_id),),
            ),
        ]
        if self.role == DEVICE:
            out.append(
                EmitMetric(
                    "epsilon_spent",
                    self.state.epsilon.get(self.address, 0.0),
                    step.round,
                    (("node", self.node_id),),
                )
            )
        return out
