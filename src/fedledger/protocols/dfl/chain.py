"""A node's chain work: drafting blocks of its own transactions, asking the receipt
creators for confirmations, confirming others' drafts (each receipt at most once),
finalizing and appending, and rebuilding this state from the ledger on restart."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from fedledger.ledger.records import Block, record_id, tx_root
from fedledger.ledger.verify import Rejected, Verifier
from fedledger.protocols.base import Effect, EmitMetric, Send, SetTimer
from fedledger.protocols.dfl import blocks
from fedledger.protocols.dfl.buffer import OwnTransactions
from fedledger.protocols.dfl.messages import ConfirmReply, ConfirmRequest, ModelTx
from fedledger.protocols.dfl.params import DflParams
from fedledger.protocols.dfl.records import Confirmation
from fedledger.protocols.kit.gate import Reject
from fedledger.protocols.resources import NodeServices

BLOCK_TIMER = "dfl-block"
CONFIRM_TIMER = "dfl-confirm"


@dataclass
class ChainWork:
    services: NodeServices
    params: DflParams
    verifier: Verifier
    drop: Callable[[str], None]
    own: OwnTransactions = field(default_factory=OwnTransactions)
    my_receipts: set[bytes] = field(default_factory=set)
    confirmed: set[bytes] = field(default_factory=set)
    draft: Block | None = None
    digest: bytes = b""
    confirmations: dict[bytes, Confirmation] = field(default_factory=dict)
    block_timer: bool = False
    blocks: int = 0
    failed: int = 0
    head: Block | None = None  # the ledger's head, kept so a draft does not re-read it
    _genesis: bytes = field(default=b"", init=False, repr=False)

    @property
    def genesis(self) -> bytes:
        """The genesis block's hash (read once: it never changes)."""
        if not self._genesis:
            self._genesis = self.services.genesis.hash
        return self._genesis

    def head_block(self) -> Block:
        """The ledger's head block: the one kept in memory while it is still the head
        (only this node appends to its ledger; the head's hash is checked all the same)."""
        head = self.head
        if head is None or self.services.ledger.head_hash() != head.hash:
            head = self.head = self.services.ledger.head()
        return head

    # ------------------------------------------------------------ restart

    def restore(self) -> tuple[int, set[bytes], Block | None]:
        """From the ledger: the next nonce, the ids of own transactions, and the last
        block holding one (its last transaction names the newest recorded model)."""
        me = self.services.keys.address
        nonce, seen, last = 0, set(), None
        for block in self.services.ledger.canonical_chain():
            self.head = block  # the last one is the head
            if block.height == 0:
                continue
            for tx in block.transactions:
                seen.add(record_id(tx))
                if tx.sender == me:
                    nonce = max(nonce, tx.nonce + 1)
                    last = block
            if block.header.proposer == me:
                self.blocks += 1
        return nonce, seen, last

    # ------------------------------------------------------------ own blocks

    def after_own_tx(self) -> list[Effect]:
        ready = len(self.own.pending) >= self.params.block_txs and self.draft is None
        if ready and not self.block_timer:
            self.block_timer = True
            return [SetTimer(BLOCK_TIMER, self.params.receipt_wait)]
        return []

    def start_draft(self, now: float) -> list[Effect]:
        self.block_timer = False
        if self.draft is not None or len(self.own.pending) < self.params.block_txs:
            return []
        txs = self.own.oldest(self.params.block_txs)
        keys = self.services.keys
        self.draft = blocks.draft_block(
            keys, self.head_block(), now, txs, self.own.receipts_of(txs), self.genesis
        )
        self.digest = blocks.draft_digest(self.draft)
        self.confirmations = {}
        creators = sorted({r.creator for r in blocks.body_of(self.draft).receipts})
        if not creators:
            return self.finish(now)
        effects: list[Effect] = []
        for address in creators:
            node = self.services.node_of(address)
            if node is not None:
                effects.append(Send(node, ConfirmRequest(self.draft)))
        return [*effects, SetTimer(CONFIRM_TIMER, self.params.confirm_timeout)]

    def on_reply(self, reply: ConfirmReply, now: float) -> list[Effect]:
        conf = reply.confirmation
        if self.draft is None:
            self.drop("confirmation_unsolicited")
            return []
        try:
            blocks.check_confirmation(self.verifier, self.draft, conf, self.digest)
        except Rejected:
            return []
        except Reject as d:
            self.drop(d.reason)
            return []
        if conf.creator in self.confirmations:
            self.drop("confirmation_duplicate")
            return []
        self.confirmations[conf.creator] = conf
        wanted = {r.creator for r in blocks.body_of(self.draft).receipts}
        if wanted <= set(self.confirmations):
            return self.finish(now)
        return []

    def finish(self, now: float) -> list[Effect]:
        """Finalize the draft if the rule is met, else give it up; either way its
        transactions leave the pending list."""
        draft = self.draft
        if draft is None:
            return []
        self.draft = None
        confs = list(self.confirmations.values())
        self.confirmations = {}
        self.own.remove(draft.transactions)
        step = int(now)
        p = self.params
        if not blocks.finalize_ok(draft, confs, p.finalize, p.finalize_fraction):
            self.failed += 1
            return [EmitMetric("block_failed", 1.0, step), *self.after_own_tx()]
        block = blocks.final_block(self.services.keys, draft, confs)
        self.services.ledger.append(block)
        self.head = block
        self.blocks += 1
        body = blocks.body_of(block)
        return [
            EmitMetric("block", float(block.height), step),
            EmitMetric(
                "confirmations_per_block", float(len(blocks.confirmed_ids(confs))), step
            ),
            EmitMetric("receipts_per_block", float(len(body.receipts)), step),
            *self.after_own_tx(),
        ]

    # ------------------------------------------------------------ others' drafts

    def on_request(self, sender: str, request: ConfirmRequest, now: float) -> list[Effect]:
        draft = request.draft
        try:
            # the proposer's signature over the header (which commits to the
            # transactions by tx_root and to the receipts in extra) is what matters
            # here: the confirmer vouches only for receipts it made itself
            self.verifier.check(draft.header)
            if draft.header.tx_root != tx_root(draft.transactions):
                raise Reject("malformed_block", "tx_root does not match the transactions")
            body = blocks.body_of(draft)
        except Rejected:
            return []
        except Reject as d:
            self.drop(d.reason)
            return []
        if body.genesis != self.genesis:
            self.drop("wrong_genesis")
            return []
        if self.services.node_of(draft.header.proposer) != sender:
            self.drop("draft_not_from_proposer")
            return []
        if any(not isinstance(tx.payload, ModelTx) for tx in draft.transactions):
            self.drop("wrong_kind")
            return []
        me = self.services.keys.address
        ids = blocks.confirmable(draft, me, self.my_receipts, self.confirmed)
        if not ids:
            return []
        self.confirmed.update(ids)
        conf = blocks.make_confirmation(self.services.keys, draft, ids, now)
        return [Send(sender, ConfirmReply(conf))]
