"""PBFT engine rules, fed event by event (consensus/pbft)."""

from __future__ import annotations

import pytest

from fedledger.codec import decode, encode
from fedledger.consensus.pbft import (
    NULL_DIGEST,
    BroadcastAll,
    Byzantine,
    CatchUp,
    Checkpoint,
    Client,
    Commit,
    Execute,
    NewView,
    PbftConfig,
    Prepare,
    PrePrepare,
    Proposal,
    Replica,
    ReplyTo,
    SendTo,
    SetTimer,
    Status,
    ViewChange,
    batch_digest,
    max_faulty,
    quorum,
)
from fedledger.consensus.pbft.block import block_of, certificate_ok
from fedledger.consensus.pbft.checks import next_state
from fedledger.consensus.pbft.viewchange import compute_new_view
from fedledger.crypto.keys import KeyDirectory, KeyPair, derive_seed
from fedledger.errors import ConfigError
from fedledger.ledger.records import Transaction, sign
from fedledger.ledger.verify import Verifier

CFG = PbftConfig(checkpoint_interval=2, watermark_window=4, view_timeout=1.0)


class Cluster:
    """n replicas whose messages the test moves by hand."""

    def __init__(self, n: int = 4, config: PbftConfig = CFG) -> None:
        self.keys = [KeyPair.generate(seed=derive_seed("units", i)) for i in range(n)]
        self.client_key = KeyPair.generate(seed=derive_seed("units", "client"))
        self.members = [k.public for k in self.keys]
        self.clients = {self.client_key.address: self.client_key.public}
        self.replicas = [Replica(i, self.members, self.keys[i], self.clients, config)
                         for i in range(n)]
        self.nonce = 0

    def request(self, payload: object = "op") -> Transaction:
        self.nonce += 1
        tx = Transaction(self.client_key.address, 0.0, "op", payload, self.nonce)
        return sign(tx, self.client_key)

    def signed(self, i: int, rec: object) -> object:
        return sign(rec, self.keys[i])

    def addr(self, i: int) -> bytes:
        return self.keys[i].address


def sent(actions: list, kind: type) -> list:
    """Messages of type ``kind`` in SendTo/BroadcastAll actions."""
    return [a.msg for a in actions if isinstance(a, SendTo | BroadcastAll)
            and isinstance(a.msg, kind)]


def executes(actions: list) -> list[Execute]:
    return [a for a in actions if isinstance(a, Execute)]


def proposal(c: Cluster, view: int, seq: int, batch: tuple, primary: int | None = None):
    p = view % len(c.keys) if primary is None else primary
    pp = c.signed(p, PrePrepare(view, seq, batch_digest(batch), 1.0, c.addr(p)))
    return Proposal(pp, batch)


# ---------------------------------------------------------------- config


def test_fault_bound_and_quorums() -> None:
    assert [max_faulty(n) for n in (1, 3, 4, 6, 7, 10, 13, 20)] == [0, 0, 1, 1, 2, 3, 4, 6]
    assert [quorum(n) for n in (4, 7, 20)] == [3, 5, 13]
    with pytest.raises(ConfigError, match="replicas"):
        max_faulty(0)


def test_config_errors_name_the_value() -> None:
    with pytest.raises(ConfigError, match="multiple of checkpoint_interval"):
        PbftConfig(checkpoint_interval=4, watermark_window=6)
    with pytest.raises(ConfigError, match="view_timeout"):
        PbftConfig(view_timeout=0)
    with pytest.raises(ConfigError, match="unknown switch 'lazy'"):
        Byzantine.switch("lazy")
    c = Cluster()
    with pytest.raises(ConfigError, match="not the key of member 1"):
        Replica(1, c.members, c.keys[0], c.clients)


def test_messages_round_trip_the_codec() -> None:
    c = Cluster()
    tx = c.request()
    prop = proposal(c, 0, 1, (tx,))
    prep = c.signed(1, Prepare(0, 1, prop.preprepare.digest, c.addr(1)))
    cp = c.signed(2, Checkpoint(2, bytes(32), c.addr(2)))
    vc = c.signed(1, ViewChange(1, 0, (), (), c.addr(1)))
    nv = c.signed(1, NewView(1, (vc,), (), c.addr(1)))
    st = c.signed(3, Status(0, True, 0, c.addr(3)))
    for msg in (prop, prep, cp, vc, nv, st, CatchUp(())):
        assert decode(encode(msg)) == msg


# ---------------------------------------------------------------- normal case


def test_prepared_needs_2f_prepares_and_committed_needs_2f_plus_1_commits() -> None:
    c = Cluster()
    r1 = c.replicas[1]
    prop = proposal(c, 0, 1, (c.request(),))
    d = prop.preprepare.digest
    out = r1.on_message(0.0, 0, prop)
    assert [p.sender for p in sent(out, Prepare)] == [c.addr(1)]
    assert not sent(out, Commit)  # own prepare only: 1 < 2f
    out = r1.on_message(0.0, 2, c.signed(2, Prepare(0, 1, d, c.addr(2))))
    assert [m.sender for m in sent(out, Commit)] == [c.addr(1)]  # prepared: 2f = 2
    out = r1.on_message(0.0, 3, c.signed(3, Commit(0, 1, d, c.addr(3))))
    assert not executes(out)  # 2 commits < 2f+1
    out = r1.on_message(0.0, 0, c.signed(0, Commit(0, 1, d, c.addr(0))))
    (ex,) = executes(out)
    assert (ex.seq, ex.view, ex.fresh) == (1, 0, prop.batch)
    assert len(ex.certificate.commits) == 3
    assert {a.client for a in out if isinstance(a, ReplyTo)} == {c.client_key.address}


def test_prepares_from_the_primary_and_mismatched_digests_do_not_count() -> None:
    c = Cluster()
    r1 = c.replicas[1]
    prop = proposal(c, 0, 1, (c.request(),))
    r1.on_message(0.0, 0, prop)
    d = prop.preprepare.digest
    r1.on_message(0.0, 0, c.signed(0, Prepare(0, 1, d, c.addr(0))))
    assert r1.drops["wrong_sender"] == 1
    out = r1.on_message(0.0, 2, c.signed(2, Prepare(0, 1, bytes(32), c.addr(2))))
    assert not sent(out, Commit) and not r1.slots[1].prepared


def test_primary_batches_within_the_window_and_by_size() -> None:
    cfg = PbftConfig(batch_window=0.5, max_batch=2, checkpoint_interval=2, watermark_window=4)
    c = Cluster(config=cfg)
    r0 = c.replicas[0]
    out = r0.on_request(0.0, c.request("a"))
    assert SetTimer("batch", 0.5) in out and not sent(out, Proposal)
    out = r0.on_request(0.1, c.request("b"))  # the batch is full: proposed at once
    (prop,) = sent(out, Proposal)
    assert [tx.payload for tx in prop.batch] == ["a", "b"]
    r0.on_request(0.2, c.request("c"))
    (prop,) = sent(r0.on_timer(0.5, "batch"), Proposal)
    assert (prop.preprepare.seq, [tx.payload for tx in prop.batch]) == (2, ["c"])


def test_backup_forwards_to_the_primary_and_starts_its_timer() -> None:
    c = Cluster()
    tx = c.request()
    out = c.replicas[2].on_request(0.0, tx)
    assert SendTo(0, tx) in out and SetTimer("view", 1.0) in out


def test_watermarks_drop_out_of_window_sequence_numbers() -> None:
    c = Cluster()
    r1 = c.replicas[1]
    r1.on_message(0.0, 0, proposal(c, 0, 5, (c.request(),)))  # L = 4: (0, 4]
    assert r1.drops["out_of_window"] == 1 and 5 not in r1.slots
    r1.on_message(0.0, 0, proposal(c, 0, 4, (c.request(),)))
    assert r1.slots[4].preprepare is not None


def route(c: Cluster, i: int, actions: list, cut: frozenset | set = frozenset()) -> list:
    """The deliveries that replica ``i``'s actions ask for (none to or from ``cut``)."""
    out = []
    for a in actions:
        if isinstance(a, BroadcastAll):
            out += [(i, j, a.msg) for j in range(len(c.replicas)) if j != i]
        elif isinstance(a, SendTo):
            out.append((i, a.replica, a.msg))
    return [(s, d, m) for s, d, m in out if s not in cut and d not in cut]


def pump(c: Cluster, queue: list, cut: frozenset | set = frozenset()) -> dict[int, list]:
    """Deliver messages in order until none is left (a synchronous, loss-free network)."""
    executed: dict[int, list] = {i: [] for i in range(len(c.replicas))}
    while queue:
        src, dst, msg = queue.pop(0)
        out = c.replicas[dst].on_message(0.0, src, msg)
        executed[dst] += executes(out)
        queue += route(c, dst, out, cut)
    return executed


def run_normal(c: Cluster, seqs: int) -> None:
    """Drive all replicas of ``c`` through ``seqs`` single-request batches."""
    for _ in range(seqs):
        pump(c, route(c, 0, c.replicas[0].on_request(0.0, c.request())))


def test_checkpoint_becomes_stable_with_2f_plus_1_and_collects_the_log() -> None:
    c = Cluster()
    run_normal(c, 3)
    for r in c.replicas:
        assert r.last_executed == 3 and r.low == 2  # checkpoint every 2
        assert set(r.slots) == {3} and set(r.prepared_certs) == {3}
        assert len(r.stable_proof) == 3 and {cp.seq for cp in r.stable_proof} == {2}
    r1 = c.replicas[1]
    r1.on_message(0.0, 0, proposal(c, 0, 2, (c.request(),)))
    assert r1.drops["out_of_window"] == 1  # at or below h now


def test_checkpoint_needs_2f_plus_1_matching_states() -> None:
    c = Cluster()
    r3 = c.replicas[3]
    good, bad = bytes(32), b"\x01" * 32
    r3.on_message(0.0, 0, c.signed(0, Checkpoint(2, good, c.addr(0))))
    r3.on_message(0.0, 1, c.signed(1, Checkpoint(2, good, c.addr(1))))
    r3.on_message(0.0, 2, c.signed(2, Checkpoint(2, bad, c.addr(2))))
    assert r3.low == 0  # 2 + 1 disagreeing: not stable
    r3.on_message(0.0, 0, c.signed(0, Checkpoint(2, good, c.addr(0))))
    assert r3.drops["duplicate"] == 1 and r3.low == 0
    out = r3.on_message(0.0, 2, c.signed(2, Checkpoint(4, good, c.addr(2))))
    assert r3.low == 0 and not sent(out, CatchUp)
    c2 = Cluster()
    r = c2.replicas[3]
    for i in range(3):
        out = r.on_message(0.0, i, c2.signed(i, Checkpoint(2, good, c2.addr(i))))
    assert r.low == 2 and r.stable_state == good
    assert sent(out, Status)  # stable but not executed: it asks a peer to catch up


def test_state_digest_is_a_chain_over_batches() -> None:
    c = Cluster()
    run_normal(c, 2)
    digests = [c.replicas[0].history[s].certificate.digest for s in (1, 2)]
    from fedledger.consensus.pbft.checks import GENESIS_STATE

    assert c.replicas[2].state == next_state(next_state(GENESIS_STATE, 1, digests[0]), 2,
                                             digests[1])


# ---------------------------------------------------------------- drops


def test_forged_replayed_unknown_and_wrong_view_messages_are_counted_and_dropped() -> None:
    c = Cluster()
    r1 = c.replicas[1]
    prop = proposal(c, 0, 1, (c.request(),))
    d = prop.preprepare.digest
    r1.on_message(0.0, 0, prop)
    forged = Prepare(0, 1, d, c.addr(2), signature=c.keys[3].sign(b"x" * 52))
    r1.on_message(0.0, 2, forged)
    prep = c.signed(2, Prepare(0, 1, d, c.addr(2)))
    r1.on_message(0.0, 2, prep)
    r1.on_message(0.0, 2, prep)  # replayed
    r1.on_message(0.0, 3, prep)  # relayed by another replica
    outsider = KeyPair.generate(seed=derive_seed("units", "outsider"))
    r1.on_message(0.0, 3, sign(Prepare(0, 1, d, outsider.address), outsider))
    r1.on_message(0.0, 3, c.signed(3, Prepare(7, 1, d, c.addr(3))))
    r1.on_message(0.0, 9, prep)  # no such replica
    r1.on_message(0.0, 0, proposal(c, 0, 1, (c.request("other"),)))  # second pre-prepare
    r1.on_message(0.0, 2, proposal(c, 0, 2, (c.request(),), primary=2))  # not the primary
    r1.on_message(0.0, 2, "hello")
    assert dict(r1.drops) == {
        "bad_signature": 1, "duplicate": 1, "wrong_sender": 1, "unknown_sender": 2,
        "wrong_view": 1, "conflict": 1, "not_primary": 1, "malformed": 1,
    }


def test_bad_batches_and_digests_are_dropped() -> None:
    c = Cluster()
    r1 = c.replicas[1]
    tx = c.request()
    pp = c.signed(0, PrePrepare(0, 1, bytes(32), 1.0, c.addr(0)))
    r1.on_message(0.0, 0, Proposal(pp, (tx,)))
    r1.on_message(0.0, 0, proposal(c, 0, 2, (tx, tx)))
    stranger = KeyPair.generate(seed=derive_seed("units", "stranger"))
    alien = sign(Transaction(stranger.address, 0.0, "op", 1, 1), stranger)
    r1.on_message(0.0, 0, proposal(c, 0, 3, (alien,)))
    r1.on_request(0.0, alien)
    assert dict(r1.drops) == {"bad_digest": 1, "bad_batch": 2, "unknown_client": 1}


# ---------------------------------------------------------------- view change


def test_view_change_carries_a_prepared_request_into_the_new_view() -> None:
    c = Cluster()
    tx = c.request()
    prop = proposal(c, 0, 1, (tx,))
    d = prop.preprepare.digest
    # replicas 1..3 accept the pre-prepare and see each other's prepares: prepared, but
    # no commit is delivered (the primary, replica 0, is cut off from here on)
    prepares = {i: c.signed(i, Prepare(0, 1, d, c.addr(i))) for i in (1, 2, 3)}
    for i in (1, 2, 3):
        c.replicas[i].on_message(0.0, 0, prop)
        for j in (1, 2, 3):
            if j != i:
                c.replicas[i].on_message(0.0, j, prepares[j])
        assert c.replicas[i].slots[1].prepared and c.replicas[i].last_executed == 0
    queue = []
    for i in (1, 2, 3):
        out = c.replicas[i].on_timer(1.0, "view")
        (vc,) = sent(out, ViewChange)
        assert vc.view == 1 and [p.preprepare.seq for p in vc.prepared] == [1]
        queue += route(c, i, out, cut={0})
    executed = pump(c, queue, cut={0})
    for i in (1, 2, 3):
        r = c.replicas[i]
        assert (r.view, r.active, r.new_view.preprepares[0].digest) == (1, True, d)
        (ex,) = executed[i]
        assert (ex.seq, ex.view, ex.batch) == (1, 1, (tx,))


def test_new_view_fills_gaps_with_null_batches_and_is_recomputed_by_backups() -> None:
    c = Cluster()
    tx = c.request()
    prop = proposal(c, 0, 3, (tx,))
    d = prop.preprepare.digest
    from fedledger.consensus.pbft import PreparedCert

    prepares = tuple(c.signed(i, Prepare(0, 3, d, c.addr(i))) for i in (2, 3))
    cert = PreparedCert(prop.preprepare, prepares, prop.batch)
    vcs = tuple(c.signed(i, ViewChange(1, 0, (), (cert,) if i == 2 else (), c.addr(i)))
                for i in (1, 2, 3))
    plan = compute_new_view(vcs)
    assert [(e.seq, e.digest) for e in plan.entries] == [(1, NULL_DIGEST), (2, NULL_DIGEST),
                                                         (3, d)]
    # a new-view whose O does not follow from its V is refused
    bogus = tuple(c.signed(1, PrePrepare(1, s, NULL_DIGEST, 1.0, c.addr(1))) for s in (1, 2, 3))
    r3 = c.replicas[3]
    r3.on_message(1.0, 1, c.signed(1, NewView(1, vcs, bogus, c.addr(1))))
    assert r3.drops["bad_new_view"] == 1 and r3.view == 0
    good = tuple(c.signed(1, PrePrepare(1, e.seq, e.digest, e.timestamp, c.addr(1)))
                 for e in plan.entries)
    out = r3.on_message(1.0, 1, c.signed(1, NewView(1, vcs, good, c.addr(1))))
    assert r3.view == 1 and r3.active
    assert [p.seq for p in sent(out, Prepare)] == [1, 2, 3]


def test_f_plus_1_view_changes_for_higher_views_make_a_replica_join() -> None:
    c = Cluster()
    r3 = c.replicas[3]
    out = r3.on_message(0.0, 1, c.signed(1, ViewChange(2, 0, (), (), c.addr(1))))
    assert not sent(out, ViewChange) and r3.active
    out = r3.on_message(0.0, 2, c.signed(2, ViewChange(3, 0, (), (), c.addr(2))))
    (vc,) = sent(out, ViewChange)
    assert vc.view == 2 and r3.view == 2 and not r3.active  # the smallest such view


def test_view_change_timeout_doubles_while_no_request_executes() -> None:
    c = Cluster()
    r3 = c.replicas[3]
    delays = []
    for view in (1, 2, 3):
        r3.on_timer(0.0, "view")
        assert r3.view == view
        for i in (0, 1, 2):
            if c.replicas[i].view < view:
                c.replicas[i].start_view_change(0.0, view)
        vcs = [c.replicas[i].my_view_change for i in (0, 1)]
        out = []
        for i, vc in zip((0, 1), vcs, strict=True):
            out += r3.on_message(0.0, i, vc)
        delays += [a.delay for a in out if isinstance(a, SetTimer) and a.key == "view"]
    assert delays == [1.0, 2.0, 4.0]


# ---------------------------------------------------------------- clients, blocks


def test_client_accepts_a_result_on_f_plus_1_matching_replies() -> None:
    c = Cluster()
    client = Client(c.client_key, c.members)
    client.request(0.0, "op", 1)
    from fedledger.consensus.pbft import Reply

    def reply(i: int, result: object) -> Reply:
        return c.signed(i, Reply(0, c.client_key.address, 1, result, c.addr(i)))

    client.on_reply(0.1, reply(0, "bad"))
    client.on_reply(0.1, reply(1, "good"))
    assert client.busy
    forged = Reply(0, c.client_key.address, 1, "good", c.addr(2), signature=bytes(64))
    client.on_reply(0.1, forged)
    assert client.busy and client.drops["bad_signature"] == 1
    client.on_reply(0.2, reply(3, "good"))
    assert not client.busy and client.results == {1: "good"}


def test_a_request_executes_once_even_if_two_sequence_numbers_carry_it() -> None:
    c = Cluster()
    run_normal(c, 1)
    r2 = c.replicas[2]
    tx = r2.history[1].batch[0]
    out = r2.on_request(0.0, tx)  # a retransmission gets the kept reply again
    assert [a.reply.nonce for a in out if isinstance(a, ReplyTo)] == [1]
    prop = proposal(c, 0, 2, (tx,))
    d = prop.preprepare.digest
    r2.on_message(0.0, 0, prop)
    r2.on_message(0.0, 1, c.signed(1, Prepare(0, 2, d, c.addr(1))))
    r2.on_message(0.0, 0, c.signed(0, Commit(0, 2, d, c.addr(0))))
    (ex,) = executes(r2.on_message(0.0, 1, c.signed(1, Commit(0, 2, d, c.addr(1)))))
    assert ex.batch == (tx,) and ex.fresh == ()


def test_committed_batches_become_verifiable_blocks() -> None:
    from fedledger.ledger.records import Genesis, Member, genesis_block

    c = Cluster()
    run_normal(c, 2)
    members = (*(Member.of(k) for k in c.keys), Member.of(c.client_key))
    genesis = genesis_block(Genesis(members, bytes(32)))
    verifier = Verifier(KeyDirectory([*c.members, c.client_key.public]))
    parent = genesis
    r3 = c.replicas[3]
    for seq in (1, 2):
        entry = r3.history[seq]
        ex = Execute(seq, entry.certificate.view, entry.batch, entry.certificate, entry.batch)
        block = block_of(ex, parent.hash, c.keys[3])
        verifier.check_block(block, parent.header)
        assert certificate_ok(block, c.members, c.clients) is None
        parent = block
    other = r3.history[1].certificate
    forged = block_of(Execute(2, 0, r3.history[2].batch, other, ()), genesis.hash, c.keys[3])
    assert "sequence 1" in certificate_ok(forged, c.members, c.clients)
