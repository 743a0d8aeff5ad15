"""One DFL node fed events: receipts and forwarding, drops, blocks and confirmations."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import pytest

from fedledger.assembly.services import make_genesis, node_keys, open_node_services
from fedledger.learning.weights import Layout, to_safetensors
from fedledger.ledger.records import ModelRef, record_id, sign
from fedledger.protocols.base import (
    BlobReceived,
    Broadcast,
    EvalResult,
    FetchBlob,
    JobFinished,
    MessageReceived,
    NodePlan,
    RunJob,
    Send,
    SetTimer,
    Start,
    TimerFired,
    TrainResult,
    TrainSettings,
)
from fedledger.protocols.dfl import blocks
from fedledger.protocols.dfl import transactions as txs
from fedledger.protocols.dfl.chain import BLOCK_TIMER, CONFIRM_TIMER
from fedledger.protocols.dfl.messages import ConfirmReply, ConfirmRequest, Gossip
from fedledger.protocols.dfl.node import DATA, DflNode
from fedledger.protocols.dfl.params import DflParams
from fedledger.protocols.dfl.records import Receipt
from fedledger.protocols.resources import NodeServices
from setupkit import make_setup

IDS = ("n000", "n001", "n002", "n003")
SIZE = 6


class World:
    """Four nodes' keys and stores; node n000 is the node under test, peers n001-n003."""

    def __init__(self, root: Path, **params: object) -> None:
        plans = [NodePlan(i, "trainer", True, tuple(p for p in IDS if p != i)) for i in IDS]
        self.keys = node_keys(plans, seed=3)
        genesis = make_genesis(self.keys, "dfl unit test")
        self.svc: dict[str, NodeServices] = {
            i: open_node_services(i, root / i, self.keys, genesis) for i in IDS
        }
        self.params = DflParams(**{"topology": "full", "ttl": 2, "block_txs": 2, **params})
        self.plans = plans
        self.genesis = genesis.hash

    def node(self, node_id: str = "n000") -> DflNode:
        setup = make_setup(
            plan=next(p for p in self.plans if p.node_id == node_id),
            all_nodes=tuple(self.plans),
            seed=1,
            train=TrainSettings(),
            initial_weights=np.zeros(SIZE, dtype=np.float32),
            num_train_samples=256,
            params=self.params,
            rounds=1,
            services=self.svc[node_id],
        )
        return DflNode(setup)

    def model_tx(self, node_id: str, value: float, now: float = 0.0, ttl: int | None = None):
        weights = np.full(SIZE, value, dtype=np.float32)
        data = to_safetensors(weights, Layout((("weights", (SIZE,)),)))
        cid = self.svc[node_id].blobs.put(data)
        ref = ModelRef(cid=cid, sha256=hashlib.sha256(data).digest())
        ttl = self.params.ttl if ttl is None else ttl
        tx = txs.make_transaction(self.keys[node_id], self.genesis, now, 30.0, ref, ttl, 0)
        return tx, data

    def close(self) -> None:
        for svc in self.svc.values():
            svc.ledger.close()


@pytest.fixture
def world(tmp_path):
    w = World(tmp_path)
    yield w
    w.close()


def receive(node: DflNode, sender: str, gossip: Gossip, data: bytes, accuracy: float, t=1.0):
    """Feed gossip, its blob and the evaluation; the effects of the last step."""
    (fetch,) = node.handle(MessageReceived(t, sender, gossip))
    assert isinstance(fetch, FetchBlob) and fetch.source == sender
    (run,) = node.handle(BlobReceived(t, fetch.cid, sender, data))
    assert isinstance(run, RunJob)
    return node.handle(JobFinished(t, run.job_id, EvalResult(accuracy, 0.5, 10)))


def test_receipt_is_appended_with_eq1_ttl_and_forwarded_while_ttl_allows(world):
    node = world.node()
    tx, data = world.model_tx("n001", 0.5)
    effects = receive(node, "n001", Gossip(tx), data, accuracy=0.75)
    back = [e for e in effects if isinstance(e, Send)]
    onward = [e for e in effects if isinstance(e, Broadcast)]
    assert [e.to for e in back] == ["n001"]  # to the generator
    (receipt,) = back[0].message.receipts
    assert receipt.creator == world.keys["n000"].address
    assert receipt.tx_digest == record_id(tx)
    assert receipt.received_at_ttl == 1  # eq. 1: min(2) - 1
    assert receipt.accuracy == pytest.approx(0.75)
    assert set(onward[0].to) == {"n002", "n003"}
    # n002 receives it with n000's receipt: min(2, 1) - 1 = 0, so it is not forwarded
    other = world.node("n002")
    effects = receive(other, "n000", onward[0].message, data, accuracy=0.5)
    assert not [e for e in effects if isinstance(e, Broadcast)]
    (send,) = [e for e in effects if isinstance(e, Send)]
    assert send.to == "n001" and send.message.receipts[-1].received_at_ttl == 0


def test_duplicate_and_expired_transactions_are_dropped(world):
    node = world.node()
    tx, data = world.model_tx("n001", 0.5)
    receive(node, "n001", Gossip(tx), data, accuracy=0.5)
    assert node.handle(MessageReceived(2.0, "n002", Gossip(tx))) == []
    assert node.drops["duplicate"] == 1
    late, _ = world.model_tx("n002", 0.1, now=0.0)
    assert node.handle(MessageReceived(31.0, "n002", Gossip(late))) == []
    assert node.drops["expired"] == 1


def test_forged_receipts_and_transactions_are_rejected_and_counted(world):
    node = world.node()
    tx, _ = world.model_tx("n001", 0.5)
    forged = sign(
        Receipt(world.keys["n002"].address, record_id(tx), 1, 0.9, 1.0), world.keys["n002"]
    )
    forged = dataclasses.replace(forged, accuracy=0.99)  # altered after signing
    assert node.handle(MessageReceived(1.0, "n002", Gossip(tx, (forged,)))) == []
    assert node.verifier.counter["bad_signature"] == 1
    # a receipt claiming a ttl the transaction never had (ttl 2 -> received_at_ttl <= 1)
    too_high = sign(
        Receipt(world.keys["n002"].address, record_id(tx), 2, 0.9, 1.0), world.keys["n002"]
    )
    assert node.handle(MessageReceived(1.0, "n002", Gossip(tx, (too_high,)))) == []
    assert node.drops["receipt_bad_ttl"] == 1
    tampered = dataclasses.replace(tx, timestamp=tx.timestamp + 1)
    assert node.handle(MessageReceived(1.0, "n001", Gossip(tampered))) == []
    assert node.verifier.counter["bad_signature"] == 2
    # a model whose bytes do not match the transaction's hash is refused
    good, _ = world.model_tx("n003", 0.2)
    (fetch,) = node.handle(MessageReceived(1.0, "n003", Gossip(good)))
    wrong = to_safetensors(np.ones(SIZE, np.float32), Layout((("weights", (SIZE,)),)))
    assert node.handle(BlobReceived(1.0, fetch.cid, "n003", wrong)) == []
    assert node.drops["bad_model_hash"] == 1


def _own_transactions(world, node, count):
    """Let ``node`` train ``count`` times; the transactions it broadcast."""
    node.handle(Start(0.0))
    out = []
    for k in range(count):
        data = node.handle(TimerFired(float(k), DATA))  # a batch arrives: it trains
        (run,) = [e for e in data if isinstance(e, RunJob)]
        weights = np.full(SIZE, 0.1 * (k + 1), np.float32)
        effects = node.handle(JobFinished(float(k), run.job_id, TrainResult(weights, 64, 0.1)))
        (gossip,) = [e.message for e in effects if isinstance(e, Broadcast)]
        out.append((gossip.tx, effects))
    return out


def _receipt(world, creator, tx, accuracy=0.9):
    return txs.make_receipt(world.keys[creator], tx, (), accuracy, 1.0)


def test_draft_is_finalized_only_with_valid_confirmations(world):
    node = world.node()
    sent = _own_transactions(world, node, 2)
    assert any(isinstance(e, SetTimer) and e.key == BLOCK_TIMER for e in sent[-1][1])
    confirmers = {}
    for tx, _ in sent:
        for peer in ("n001", "n002"):
            r = _receipt(world, peer, tx)
            node.handle(MessageReceived(2.0, peer, Gossip(tx, (r,))))
    requests = node.handle(TimerFired(4.0, BLOCK_TIMER))
    asked = {e.to: e.message for e in requests if isinstance(e, Send)}
    assert set(asked) == {"n001", "n002"}
    draft = asked["n001"].draft
    assert len(blocks.body_of(draft).receipts) == 4
    # n001 confirms its two receipts (it knows them as its own)
    peer = world.node("n001")
    peer.chain.my_receipts.update(
        record_id(r)
        for r in blocks.body_of(draft).receipts
        if r.creator == world.keys["n001"].address
    )
    (reply,) = peer.chain.on_request("n000", ConfirmRequest(draft), 5.0)
    confirmers["n001"] = reply.message
    # ... and never twice
    assert peer.chain.on_request("n000", ConfirmRequest(draft), 5.0) == []
    # a forged confirmation for n002 (signed by n003) and one for another block are refused
    bad = blocks.make_confirmation(world.keys["n003"], draft, (), 5.0)
    bad = dataclasses.replace(bad, creator=world.keys["n002"].address)
    node.handle(MessageReceived(5.0, "n003", ConfirmReply(bad)))
    assert node.verifier.counter["bad_signature"] == 1
    assert node.handle(MessageReceived(5.0, "n001", ConfirmReply(confirmers["n001"]))) == []
    assert node.svc.ledger.head().height == 0
    # 2 of 4 receipts confirmed < 80%: the draft is given up at the timeout, no block
    node.handle(TimerFired(9.0, CONFIRM_TIMER))
    assert node.svc.ledger.head().height == 0 and node.chain.failed == 1


def test_block_with_all_confirmations_is_chained_and_verifiable(world):
    from fedledger.ledger.verify import Verifier

    node = world.node()
    sent = _own_transactions(world, node, 2)
    peers = {}
    for tx, _ in sent:
        r = _receipt(world, "n001", tx)
        node.handle(MessageReceived(2.0, "n001", Gossip(tx, (r,))))
    (request,) = [e for e in node.handle(TimerFired(4.0, BLOCK_TIMER)) if isinstance(e, Send)]
    peers["n001"] = world.node("n001")
    peers["n001"].chain.my_receipts.update(
        record_id(r) for r in blocks.body_of(request.message.draft).receipts
    )
    (reply,) = peers["n001"].chain.on_request("n000", request.message, 5.0)
    effects = node.handle(MessageReceived(5.0, "n001", reply.message))
    assert any(getattr(e, "name", "") == "block" for e in effects)
    head = node.svc.ledger.head()
    assert head.height == 1 and len(head.transactions) == 2
    blocks.check_final_block(Verifier(node.svc.directory), head, node.svc.ledger.genesis())
    # a confirmation replaced by a forged one makes the block fail verification
    body = blocks.body_of(head)
    conf = dataclasses.replace(body.confirmations[0], timestamp=99.0)
    forged = dataclasses.replace(
        head.header, extra=dataclasses.replace(body, confirmations=(conf,))
    )
    with pytest.raises(Exception, match="signature"):
        blocks.check_final_block(
            Verifier(node.svc.directory), dataclasses.replace(head, header=forged), None
        )


def test_restart_rebuilds_nonce_and_model_from_the_ledger(world):
    node = world.node()
    sent = _own_transactions(world, node, 2)
    node.handle(TimerFired(4.0, BLOCK_TIMER))  # no receipts: finalized at once
    assert node.svc.ledger.head().height == 1
    again = world.node()
    again.handle(Start(50.0))
    assert again.nonce == 2
    assert np.allclose(again.weights, 0.2)
    assert record_id(sent[0][0]) in again.seen


def test_a_forged_draft_gets_no_confirmation(world):
    node = world.node()
    sent = _own_transactions(world, node, 2)
    for tx, _ in sent:
        node.handle(MessageReceived(2.0, "n001", Gossip(tx, (_receipt(world, "n001", tx),))))
    (request,) = [e for e in node.handle(TimerFired(4.0, BLOCK_TIMER)) if isinstance(e, Send)]
    draft = request.message.draft
    peer = world.node("n001")
    peer.chain.my_receipts.update(record_id(r) for r in blocks.body_of(draft).receipts)
    forged = dataclasses.replace(draft, header=dataclasses.replace(draft.header, timestamp=0.5))
    assert peer.chain.on_request("n000", ConfirmRequest(forged), 5.0) == []
    assert peer.verifier.counter["bad_signature"] == 1
    # from a node that is not the proposer: refused too
    assert peer.chain.on_request("n002", ConfirmRequest(draft), 5.0) == []
    assert peer.drops["draft_not_from_proposer"] == 1
    assert len(peer.chain.on_request("n000", ConfirmRequest(draft), 5.0)) == 1
