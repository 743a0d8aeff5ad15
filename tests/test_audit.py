"""``audit_path``: a clean run passes; one altered byte anywhere is found and named."""

from __future__ import annotations

import json
import shutil
import sqlite3
from fractions import Fraction
from pathlib import Path

import pytest

import chainkit as ck
from fedledger.codec import encode
from fedledger.ledger.audit import AuditReport, audit_path
from fedledger.ledger.finality import Checkpoint, FinalityRule, FinalityVote
from fedledger.ledger.records import Block, record_id
from fedledger.ledger.store import ChainStore
from fedledger.storage import BlobStore, cid_of

KEYS = ck.keys(4)
G = ck.genesis(KEYS)
MODEL_A = bytes(range(256)) * 40  # stored by n0
MODEL_B = b"\x01\x02" * 3000  # stored by n1 only
RULE = FinalityRule(2, Fraction(2, 3), frozenset(k.address for k in KEYS))


def build_chain() -> tuple[list[Block], list[Block]]:
    main: list[Block] = []
    prev = G
    for h in range(1, 7):
        key = KEYS[h % 4]
        if h == 2:
            txs = (ck.model_tx(key, 100, MODEL_A), ck.tx(key, h))
        elif h == 4:
            txs = (ck.model_tx(key, 101, MODEL_B),)
        else:
            txs = (ck.tx(key, h), ck.tx(KEYS[0], 50 + h))
        prev = ck.block(prev, key, txs)
        main.append(prev)
    fork = ck.chain(main[2], KEYS[3], 2, salt=9)  # heights 4, 5: a stored fork
    return main, fork


MAIN, FORK = build_chain()


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("run")
    for node in ["n0", "n1"]:
        d = run / "nodes" / node
        with ChainStore(d / "ledger.sqlite", finality=RULE) as s:
            for b in [G, *MAIN, *FORK]:
                s.append(b)
            for src, dst in [(G, MAIN[1]), (MAIN[1], MAIN[3])]:
                for k in KEYS[:3]:
                    vote = FinalityVote(k.address, Checkpoint(src.height, src.hash),
                                        Checkpoint(dst.height, dst.hash))
                    assert s.add_vote(vote).accepted
            assert s.finalized().hash == MAIN[1].hash
        BlobStore(d / "blobs").put(MODEL_A if node == "n0" else MODEL_B)
    return run


@pytest.fixture
def run(template: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(template, tmp_path / "run"))


def db(run: Path, node: str = "n1") -> sqlite3.Connection:
    return sqlite3.connect(run / "nodes" / node / "ledger.sqlite", isolation_level=None)


def rewrite_body(run: Path, block: Block, old: bytes, new: bytes, node: str = "n1") -> None:
    """Replace bytes ``old`` (found once in the stored block) by ``new``, same length."""
    conn = db(run, node)
    (body,) = conn.execute("SELECT body FROM blocks WHERE hash = ?", (block.hash,)).fetchone()
    assert body.count(old) == 1 and len(old) == len(new)
    conn.execute("UPDATE blocks SET body = ? WHERE hash = ?", (body.replace(old, new), block.hash))
    conn.close()


def first(report: AuditReport) -> str:
    assert not report.ok
    return str(report.problems[0])


def test_clean_run_passes(run: Path) -> None:
    report = audit_path(run)
    assert report.ok, report.describe()
    assert report.nodes == 2
    assert report.blocks == 2 * (1 + len(MAIN) + len(FORK))
    assert report.transactions == 2 * sum(len(b.transactions) for b in MAIN + FORK)
    assert report.model_refs == 4
    assert report.blobs_elsewhere == 2  # each node cites the model the other one stored
    assert report.finalized_height == {"n0": 2, "n1": 2}
    assert "2 node(s), 18 blocks" in report.describe()
    json.dumps(report.as_dict())


def test_node_dir_and_file_paths(run: Path) -> None:
    assert audit_path(run / "nodes" / "n0").nodes == 1
    single = audit_path(run / "nodes" / "n0" / "ledger.sqlite")
    assert single.nodes == 1
    # alone, n0 cannot find MODEL_B, which only n1 stored
    assert "transactions[0].ModelRef: model blob" in first(single)
    assert "height 4" in first(single) and "not found" in first(single)


def test_missing_path(tmp_path: Path) -> None:
    report = audit_path(tmp_path / "nope")
    assert "does not exist; expected a ledger.sqlite file" in first(report)
    (tmp_path / "empty").mkdir()
    assert "holds no ledger" in first(audit_path(tmp_path / "empty"))


def test_altered_block_header_byte(run: Path) -> None:
    parent = MAIN[2].header.parent
    rewrite_body(run, MAIN[2], parent, bytes([parent[0] ^ 1]) + parent[1:])
    message = first(audit_path(run))
    assert message.startswith("node n1, height 3 (block ")
    assert "hash: content hashes to" in message and "block bytes altered" in message


def test_altered_block_structure_byte(run: Path) -> None:
    conn = db(run)
    (body,) = conn.execute("SELECT body FROM blocks WHERE hash = ?", (MAIN[4].hash,)).fetchone()
    conn.execute("UPDATE blocks SET body = ? WHERE hash = ?", (b"\xff" + body[1:], MAIN[4].hash))
    conn.close()
    message = first(audit_path(run))
    assert message.startswith("node n1, height 5")
    assert "body: stored bytes do not decode to a Block" in message


def test_altered_transaction_byte(run: Path) -> None:
    rewrite_body(run, MAIN[4], b"tx 55", b"tx 56")  # the second transaction's payload
    report = audit_path(run)
    message = first(report)
    assert message.startswith("node n1, height 5")
    assert "transactions[1]: bad_signature" in message
    assert "transaction altered" in message


def test_altered_blob_byte(run: Path) -> None:
    store = BlobStore(run / "nodes" / "n0" / "blobs")
    path = store.path(cid_of(MODEL_A))
    data = bytearray(path.read_bytes())
    data[1000] ^= 0x10
    path.write_bytes(bytes(data))
    message = first(audit_path(run))
    assert message.startswith("node n0, height 2")
    assert "transactions[0].ModelRef: blob " + cid_of(MODEL_A) in message
    assert "is corrupt: content hashes to" in message


def test_missing_blob(run: Path) -> None:
    BlobStore(run / "nodes" / "n1" / "blobs").path(cid_of(MODEL_B)).unlink()
    message = first(audit_path(run))
    assert message.startswith("node n0, height 4")
    assert f"model blob {cid_of(MODEL_B)} not found" in message


def test_tx_index_and_columns(run: Path) -> None:
    conn = db(run)
    conn.execute("UPDATE txs SET idx = 1 WHERE id = ?", (record_id(MAIN[0].transactions[0]),))
    conn.close()
    assert "height 1 (block" in first(audit_path(run))
    assert "txs index [0]: index names nothing" in first(audit_path(run))
    conn = db(run, "n0")
    conn.execute("UPDATE blocks SET proposer = ? WHERE hash = ?", (b"\x00" * 32, MAIN[1].hash))
    conn.close()
    assert "node n0, height 2" in first(audit_path(run))
    assert "proposer column: index says" in first(audit_path(run))


def test_head_off_the_canonical_chain(run: Path) -> None:
    conn = db(run)
    conn.execute("UPDATE meta SET value = ? WHERE key = 'head'", (FORK[-1].hash,))
    conn.close()
    assert "head: head" in first(audit_path(run))
    assert "is not the top of the canonical chain" in first(audit_path(run))


def test_reverted_finality(run: Path) -> None:
    """A finalized mark off the canonical chain (here: the chain rewritten onto the fork)."""
    conn = db(run)
    conn.execute("DELETE FROM canonical WHERE height >= 4")
    conn.executemany("INSERT INTO canonical VALUES (?, ?)", [(b.height, b.hash) for b in FORK])
    conn.execute("UPDATE meta SET value = ? WHERE key = 'head'", (FORK[-1].hash,))
    conn.execute("INSERT INTO marks VALUES ('finalized', ?, 4)", (MAIN[3].hash,))
    conn.close()
    message = first(audit_path(run))
    assert "node n1, height 4" in message
    assert "finality: finalized checkpoint" in message and "finality reverted" in message


def test_marks_must_follow_from_votes(run: Path) -> None:
    conn = db(run)
    conn.execute("DELETE FROM votes WHERE seq = (SELECT MAX(seq) FROM votes)")
    conn.close()
    message = first(audit_path(run))
    assert "node n1, height 2" in message
    assert "finalized mark on" in message and "not supported by the votes" in message


def test_forged_vote_is_named(run: Path) -> None:
    conn = db(run)
    conn.execute("UPDATE votes SET voter = ? WHERE seq = 1", (b"\x05" * 32,))
    conn.close()
    assert "finality vote: stored vote 1 is not valid: not_member" in first(audit_path(run))


def finalized_node(path: Path, chain: list[Block]) -> None:
    """A node holding ``chain`` (from genesis) with chain[1] (height 2) finalized."""
    with ChainStore(path, finality=RULE) as s:
        for b in [G, *chain]:
            s.append(b)
        for src, dst in [(G, chain[1]), (chain[1], chain[3])]:
            for k in KEYS[:3]:
                s.add_vote(FinalityVote(k.address, Checkpoint(src.height, src.hash),
                                        Checkpoint(dst.height, dst.hash)))
        assert s.finalized().hash == chain[1].hash


def test_nodes_that_finalized_conflicting_chains(tmp_path: Path) -> None:
    main = ck.chain(G, KEYS[0], 4)
    alt = [main[0], *ck.chain(main[0], KEYS[1], 3, salt=3)]
    finalized_node(tmp_path / "nodes" / "a" / "ledger.sqlite", main)
    finalized_node(tmp_path / "nodes" / "b" / "ledger.sqlite", alt)
    assert audit_path(tmp_path / "nodes" / "a").ok
    assert audit_path(tmp_path / "nodes" / "b").ok
    report = audit_path(tmp_path)
    assert [str(p) for p in report.problems] == [
        f"node a/b, height 2, finality: the nodes finalized conflicting chains: "
        f"{main[1].hash[:4].hex()} and {alt[1].hash[:4].hex()} at this checkpoint height"
    ]


def test_nodes_with_different_genesis(tmp_path: Path) -> None:
    other = ck.genesis(KEYS[:3])
    for node, g in [("a", G), ("b", other)]:
        with ChainStore(tmp_path / "nodes" / node / "ledger.sqlite") as s:
            s.append(g)
    assert "node a/b, height 0, genesis: nodes have different genesis" in first(
        audit_path(tmp_path))


def test_second_genesis_row(run: Path) -> None:
    other = ck.genesis(KEYS[:3])
    conn = db(run)
    conn.execute("INSERT INTO blocks VALUES (?, ?, 0, ?, 0.0, ?)",
                 (other.hash, other.header.parent, other.header.proposer, encode(other)))
    conn.close()
    assert "height 0 (block" in first(audit_path(run))
    assert "genesis: a second genesis block is stored" in first(audit_path(run))


def test_slashable_vote_among_stored_votes(run: Path) -> None:
    """A vote the store would have refused (a double vote) is named by its position."""
    conn = db(run)
    conn.execute("INSERT INTO votes(voter, source_height, source, target_height, target) "
                 "VALUES (?, 2, ?, 4, ?)", (KEYS[0].address, MAIN[1].hash, FORK[0].hash))
    conn.close()
    message = first(audit_path(run))
    assert message.startswith("node n1, height 4")
    assert "finality vote: stored vote 7 is not valid: double_vote" in message
