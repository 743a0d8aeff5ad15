"""μDFL recovery from what a real network does to a node (fetch.py, catchup.py and the
administrator's Rule 3): missed blocks fetched from a peer and checked, missed checkpoint
votes counted after the fact, and Rule 3 deciding every stalled checkpoint up to the
head. A simulated run gives the chain; fresh nodes of the same experiment (at genesis)
are fed its blocks and votes."""

from __future__ import annotations

import dataclasses

import pytest

import conformance as kit
from fedledger.assembly.build import build_experiment
from fedledger.assembly.config import parse_config
from fedledger.ledger.records import Block, sign
from fedledger.protocols.base import MessageReceived, Send, Start
from fedledger.protocols.mudfl import fetch
from fedledger.protocols.mudfl.messages import (
    BlockMsg,
    BlocksGiven,
    BlocksWanted,
    VotesReply,
    VotesRequest,
)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    config = parse_config({"name": "mudfl-rec", **kit.BASE, **kit.CONFORMANCE_CONFIGS["mudfl"]})
    base = tmp_path_factory.mktemp("mudfl-recovery")
    exp = kit.simulate(config, base / "run", 30.0)
    fresh = build_experiment(config, base / "fresh")
    for node in fresh.nodes.values():
        node.handle(Start(0.0))
    yield exp, fresh
    exp.close()
    fresh.close()


def _given(node, blocks, sender="c001"):
    return node.handle(MessageReceived(node.now + 0.01, sender, BlocksGiven(tuple(blocks))))


def test_missed_blocks_are_fetched_checked_and_adopted(pair):
    exp, fresh = pair
    src, dst = exp.nodes["c000"].chain, fresh.nodes["c000"]
    blocks = fetch.blocks_for(src, src.store.head_hash(), 0)
    assert [b.height for b in blocks] == list(range(1, src.store.head().height + 1))
    assert src.store.head().height >= 8
    _given(dst, blocks)
    assert dst.chain.store.head_hash() == src.store.head_hash()
    # the same blocks again bring nothing new: counted
    before = dst.gate.rejections().get("nothing_new", 0)
    _given(dst, blocks)
    assert dst.gate.rejections()["nothing_new"] == before + 1


def test_a_fetched_block_with_a_forged_credit_is_refused(pair):
    exp, fresh = pair
    src, dst = exp.nodes["c000"].chain, fresh.nodes["c002"]
    blocks = list(fetch.blocks_for(src, src.store.head_hash(), 0))
    first = blocks[0]
    claim = dataclasses.replace(first.header.extra, credit=first.header.extra.credit * 4)
    proposer = src.ctx.services.node_of(first.header.proposer)
    forged = Block.create(
        first.parent, 1, first.header.proposer, first.header.timestamp, first.transactions, claim
    )
    forged = sign(forged, exp.services[proposer].keys)
    _given(dst, [forged, *blocks[1:]])
    assert dst.gate.rejections().get("bad_fetched_block", 0) == 1
    assert dst.chain.store.head().height == 0


def test_a_block_on_an_unknown_parent_makes_the_node_ask_the_sender(pair):
    exp, fresh = pair
    src, dst = exp.nodes["c000"].chain, fresh.nodes["c003"]
    block = src.store.head()
    claim = block.header.extra
    dst.chain.slot = claim.slot
    sender = src.ctx.services.node_of(block.header.proposer)
    t = claim.slot * dst.chain.slot_length + 0.5
    effects = dst.handle(MessageReceived(t, sender, BlockMsg(claim.slot, block)))
    assert dst.gate.rejections().get("unknown_parent") == 1
    (ask,) = [e for e in effects if isinstance(e, Send)]
    assert ask.to == sender and ask.message == BlocksWanted(block.hash, 0)
    # the sender answers with the block and its ancestors
    reply = exp.nodes[sender].handle(MessageReceived(t, "c003", ask.message))
    (given,) = [e for e in reply if isinstance(e, Send)]
    assert given.message.blocks[-1] == block and given.message.blocks[0].height == 1


def test_missed_votes_are_counted_after_the_fact(pair):
    exp, fresh = pair
    src = exp.nodes["c000"].chain
    dst = fresh.nodes["server"]
    _given(dst, fetch.blocks_for(src, src.store.head_hash(), 0))
    assert dst.chain.vcf.finalized.height == 0 < src.vcf.finalized.height
    asked = exp.nodes["c000"].handle(MessageReceived(30.0, "server", VotesRequest(0)))
    (reply,) = [e for e in asked if isinstance(e, Send)]
    assert isinstance(reply.message, VotesReply) and reply.message.votes
    dst.handle(MessageReceived(dst.now + 0.01, "c000", reply.message))
    assert dst.chain.vcf.finalized == src.vcf.finalized
    assert dst.chain.vcf.highest_committed == src.vcf.highest_committed
    # nothing new the second time: counted
    dst.handle(MessageReceived(dst.now + 0.02, "c000", reply.message))
    assert dst.gate.rejections().get("no_new_votes") == 1
    # a node not behind refuses a request for votes above its own mark
    mark = src.vcf.highest_committed.height
    exp.nodes["c000"].handle(MessageReceived(30.0, "server", VotesRequest(mark)))
    assert exp.nodes["c000"].gate.rejections().get("nothing_missed", 0) >= 1


def test_rule3_decides_every_stalled_checkpoint_up_to_the_head(pair):
    exp, fresh = pair
    src = exp.nodes["c000"].chain
    admin = fresh.nodes["admin"]
    _given(admin, fetch.blocks_for(src, src.store.head_hash(), 0))
    chain = admin.chain
    assert chain.vcf.highest_committed.height == 0  # no votes seen
    effects = []
    for _ in range(chain.params.arbiter_timeout):
        effects += chain.arbitrate()
    R = chain.params.epoch_size
    head = chain.store.head().height
    assert chain.vcf.highest_committed.height == head - head % R
    decided = [d.target_height for d in chain.decisions]
    assert decided == list(range(R, head - head % R + 1, R))
    assert len([e for e in effects if type(e).__name__ == "Broadcast"]) == len(decided)
