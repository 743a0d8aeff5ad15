"""Applying a chosen block: fetch its vectors (own cache, store or the sender), then
fold them into the model state; under encryption, aggregate the ciphertexts, publish a
committee member's partial decryption and combine the partials a device receives."""

from __future__ import annotations

import hashlib

import numpy as np

from fedledger.ledger.records import Block
from fedledger.protocols.base import (
    BlobReceived,
    Broadcast,
    Effect,
    EmitMetric,
    FetchBlob,
    MessageReceived,
    ReportModel,
    Send,
)
from fedledger.protocols.kit.node import handles
from fedledger.protocols.kit.stage import Stage
from fedledger.protocols.nagar.chainstate import submissions
from fedledger.protocols.nagar.core import (
    DEVICE,
    MINER,
    NagarCore,
)
from fedledger.protocols.nagar.messages import (
    GRAD,
    UPDATE,
    PartialMsg,
    PartialRequest,
    StepRecord,
)
from fedledger.protocols.nagar.vault import (
    Sealed,
    VaultError,
    digest,
    holders,
)


class Applying(NagarCore):
    """Fetch, decrypt and fold the vectors of chosen blocks."""

    def _gather(self, blocks: list[Block]) -> list[Effect]:
        """Collect the vectors of ``blocks`` (own cache or store, else fetch), then fold."""
        self.to_fold = blocks
        self.fetches = {}
        self.vault.clear()
        if self.stage is not Stage.RESTORING:
            self.stage = Stage.APPLYING
        effects: list[Effect] = []
        for block in blocks:
            encrypted = self._encrypted(block)
            for item in submissions(block):
                ref = item.sub.model
                if ref.cid in self.vectors or ref.cid in self.fetches or ref.cid in self.ciphers:
                    continue
                if encrypted:
                    store = self.blobs.store_
                    data = store.get(ref.cid) if store.has(ref.cid) else None
                    if data is not None and hashlib.sha256(data).digest() == ref.sha256:
                        self.ciphers[ref.cid] = data
                        continue
                own = None if encrypted else self.blobs.own(ref)
                if own is not None:
                    self.vectors[ref.cid] = own
                    continue
                if item.sub.vault is not None:  # consortium: parts from the members
                    parts = self._fetch_parts(ref.cid, item.sub.vault)
                    if parts:
                        self.fetches[ref.cid] = item
                        effects += parts
                    continue
                source = self.setup.services.node_of(item.sender)
                if source is None:
                    continue
                self.fetches[ref.cid] = item
                effects.append(FetchBlob(ref.cid, source))
        if not self.fetches:
            effects += self._fold()
        return effects

    def _fetch_parts(self, cid: str, sealed: Sealed) -> list[Effect]:
        """Fetch a sealed blob's chunks (each from its first holder) and every key share."""
        m = len(self.miners)
        if len(sealed.chunks) != m or len(sealed.shares) != m:
            self.gate.fail("bad_blob", f"sealed blob {cid} has {len(sealed.chunks)} chunks")
            return []
        self.vault.want(cid, sealed)
        out: list[Effect] = []
        for i, part in enumerate(sealed.chunks):
            self.vault.pending[part] = (cid, i, 0)
            out.append(FetchBlob(part, self.miners[holders(i, m)[0]]))
        for j, part in enumerate(sealed.shares):
            self.vault.pending[part] = (cid, -1, j)
            out.append(FetchBlob(part, self.miners[j]))
        return out

    def _on_part(self, event: BlobReceived) -> list[Effect]:
        """A chunk or key share arrived (or not): retry a lost chunk at its other holder;
        once every chunk and t shares are in, open the blob and take it."""
        cid, index, tried = self.vault.pending.pop(event.cid)
        if cid not in self.fetches:
            return []
        data = event.data if event.data is not None and digest(event.data) == event.cid else None
        m = len(self.miners)
        if data is None and index >= 0 and tried + 1 < len(holders(index, m)):
            self.vault.pending[event.cid] = (cid, index, tried + 1)
            return [FetchBlob(event.cid, self.miners[holders(index, m)[tried + 1]])]
        state = self.vault.add(cid, event.cid, data)
        if state is None:
            return []  # waiting for more parts
        self.vault.drop(cid)
        if isinstance(state, VaultError):
            self.fetches.pop(cid, None)
            self.gate.fail("vault_unreadable", f"sealed blob {cid}: {state}")
            return self._fold() if not self.fetches else []
        return self.on_blob(BlobReceived(event.time, cid, event.source, state))

    def on_blob(self, event: BlobReceived) -> list[Effect]:
        if event.cid in self.vault.pending:
            return self._on_part(event)
        item = self.fetches.pop(event.cid, None)
        if item is None:
            return []
        if self.secure is not None and item.sub.phase in (GRAD, UPDATE):
            data = event.data
            if data is None or hashlib.sha256(data).digest() != item.sub.model.sha256:
                self.gate.fail("bad_blob", f"ciphertext {event.cid} missing or not matching")
            else:
                self.ciphers[event.cid] = data
            return self._fold() if not self.fetches else []
        weights = self.blobs.load(event.data, item.sub.model)
        if weights is None:
            self.gate.fail("bad_blob", f"vector {event.cid} missing or not matching its reference")
        else:
            self.vectors[event.cid] = weights
        return self._fold() if not self.fetches else []

    def _fold(self) -> list[Effect]:
        effects: list[Effect] = []
        if self.secure is not None:
            effects, waiting = self._decrypt_blocks()
            if waiting and not self.give_up:
                return effects
            if self.give_up and waiting:
                effects.append(EmitMetric("decryption_failed", 1.0, self._round_now()))
            self.give_up = False
            if self.role != DEVICE:
                self.to_fold = []
        for block in self.to_fold:
            rec = block.header.extra
            assert isinstance(rec, StepRecord)
            if self._encrypted(block):
                assert self.secure is not None
                agg = self.secure.aggs[rec.step]
                total = self.secure.totals.get(rec.step)
                applied = total is not None and self.model.fold_total(rec.phase, agg.items, total)
            else:
                items = [i for i in submissions(block) if i.sub.model.cid in self.vectors]
                vecs = [self.vectors[i.sub.model.cid] for i in items]
                applied = self.model.fold(rec.phase, items, vecs)
            rnd = self.steps[rec.step - 1].round
            if rec.phase == UPDATE:
                if not applied:
                    effects.append(EmitMetric("too_few_updates", 1.0, rnd))
                effects.append(ReportModel(rnd, self.model.weights.astype(np.float32)))
        self.to_fold, stage = [], self.stage
        # keep only what later folds can need: the vectors of the current step
        self.vectors, self.ciphers = {}, {}
        if stage is Stage.RESTORING:
            return [e for e in effects if not isinstance(e, ReportModel)] + self._resume()
        self.stage = Stage.ROUND
        if stage is Stage.APPLYING_LATE:
            effects += self._next()
        return effects

    # ------------------------------------------------------------ encrypted aggregates
    def _decrypt_blocks(self) -> tuple[list[Effect], bool]:
        """Aggregate the encrypted blocks in ``to_fold``; a member publishes its partial;
        whether a device still waits for partial decryptions."""
        sec = self.secure
        assert sec is not None
        effects: list[Effect] = []
        waiting = False
        devices = tuple(n.node_id for n in self.setup.all_nodes if n.role == DEVICE)
        for block in self.to_fold:
            if not self._encrypted(block):
                continue
            rec = block.header.extra
            assert isinstance(rec, StepRecord)
            items = submissions(block)
            agg = sec.aggregate(self.state.plan_id, rec.step, rec.phase, items, self.ciphers)
            if sec.share is not None and self.role == MINER:
                blob = sec.decrypt(self.state.plan_id, rec.step, agg, agg.agg_id)
                if blob is not None:
                    effects.append(Broadcast(PartialMsg(rec.step, blob), to=devices))
            decryptable = agg.vec is not None and len(agg.items) >= sec.guard.min_updates
            if self.role == DEVICE and decryptable and sec.total(rec.step) is None:
                waiting = True
        return effects, waiting

    @handles(PartialMsg)
    def on_partial(self, event: MessageReceived) -> list[Effect]:
        msg = event.message
        assert isinstance(msg, PartialMsg)
        if self.secure is None or self.role != DEVICE:
            raise self.gate.fail("wrong_role", f"partial decryption sent to a {self.role}")
        if not 1 <= msg.step <= len(self.steps):
            raise self.gate.fail("wrong_step", f"partial of step {msg.step}")
        self.secure.receive(msg.step, event.sender, msg.blob)
        if self.to_fold and not self.fetches and self.stage.gathering:
            return self._fold()
        return []

    @handles(PartialRequest)
    def on_partial_request(self, event: MessageReceived) -> list[Effect]:
        msg = event.message
        assert isinstance(msg, PartialRequest)
        if self.secure is None or self.secure.share is None:
            raise self.gate.fail("not_a_key_holder", f"{event.sender} asked {self.node_id}")
        if len(msg.steps) > len(self.steps):
            raise self.gate.fail("bad_payload", f"{len(msg.steps)} steps asked")
        published = self.secure.published
        return [
            Send(event.sender, PartialMsg(s, published[s])) for s in msg.steps if s in published
        ]
